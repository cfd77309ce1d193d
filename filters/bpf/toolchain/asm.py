"""Assembler for LLVM's BPF syntax, as ``llvm-objdump -d`` prints it (decimal or 0x numbers).

``assemble(text)`` takes one instruction per line; ``name:`` defines a label, ``goto name`` /
``if ... goto name`` / ``gotol name`` jump to it and ``call name`` is a bpf-to-bpf call (``call N``
is helper N).  Lines copied from llvm-objdump (``  3:  07 01 ... <tab> r1 += -8``) are accepted:
the address, the bytes and a trailing `` <LBB0_3>`` annotation are ignored, as are ``#`` and ``;``
comments.  Both ``r`` and ``w`` spellings of loads/stores/atomics are accepted.
"""
from __future__ import annotations

import re

from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.isa import Insn


class AsmError(ValueError):
    pass


_N = r"[+-]?(?:0x[0-9a-fA-F]+|\d+)"
_T = r"(?P<t>[+-]?(?:0x[0-9a-fA-F]+|\d+)|[A-Za-z_.$][\w.$]*)"
_R = r"[rw](?P<{}>\d+)"
_ADDR = r"r(?P<b>\d+)\s*(?P<sign>[+-])\s*(?P<o>" + _N + r")"
_SIZE = {"8": isa.B, "16": isa.H, "32": isa.W, "64": isa.DW}
_ALU = {"+=": isa.ADD, "-=": isa.SUB, "*=": isa.MUL, "/=": isa.DIV, "|=": isa.OR, "&=": isa.AND,
        "<<=": isa.LSH, ">>=": isa.RSH, "%=": isa.MOD, "^=": isa.XOR, "=": isa.MOV,
        "s>>=": isa.ARSH, "s/=": isa.DIV, "s%=": isa.MOD}
_JMP = {"==": isa.JEQ, "!=": isa.JNE, ">": isa.JGT, ">=": isa.JGE, "<": isa.JLT, "<=": isa.JLE,
        "s>": isa.JSGT, "s>=": isa.JSGE, "s<": isa.JSLT, "s<=": isa.JSLE, "&": isa.JSET}
_ATOMIC = {"+": isa.ATOMIC_ADD, "|": isa.ATOMIC_OR, "&": isa.ATOMIC_AND, "^": isa.ATOMIC_XOR,
           "add": isa.ATOMIC_ADD, "or": isa.ATOMIC_OR, "and": isa.ATOMIC_AND, "xor": isa.ATOMIC_XOR}


def _c(pattern: str) -> re.Pattern:
    return re.compile("^" + pattern + "$")


_FORMS = [
    ("ld_imm64", _c(r"r(?P<d>\d+) = (?P<v>" + _N + r") ll")),
    ("ld_pseudo", _c(r"ld_pseudo\s+r(?P<d>\d+),\s*(?P<s>\d+),\s*(?P<v>" + _N
                     + r")(?:,\s*(?P<v2>" + _N + r"))?")),
    ("ld_abs", _c(r"r0 = \*\(u(?P<sz>8|16|32) \*\)skb\[(?P<v>" + _N + r")\]")),
    ("ld_ind", _c(r"r0 = \*\(u(?P<sz>8|16|32) \*\)skb\[r(?P<s>\d+)"
                  r"(?:\s*(?P<sign>[+-])\s*(?P<v>" + _N + r"))?\]")),
    ("ldx", _c(_R.format("d") + r" = \*\((?P<k>[us])(?P<sz>8|16|32|64) \*\)\(" + _ADDR + r"\)")),
    ("stx", _c(r"\*\(u(?P<sz>8|16|32|64) \*\)\(" + _ADDR + r"\) = " + _R.format("s"))),
    ("st", _c(r"\*\(u(?P<sz>8|16|32|64) \*\)\(" + _ADDR + r"\) = (?P<v>" + _N + r")")),
    ("lock", _c(r"lock \*\(u(?P<sz>32|64) \*\)\(" + _ADDR + r"\) (?P<op>[+|&^])= " + _R.format("s"))),
    ("fetch", _c(_R.format("d") + r" = atomic_fetch_(?P<op>add|or|and|xor)\(\(u(?P<sz>32|64) \*\)\("
                 + _ADDR + r"\), " + _R.format("s") + r"\)")),
    ("xchg", _c(_R.format("d") + r" = xchg(?:32)?_(?P<sz>32|64)\(" + _ADDR + r", " + _R.format("s") + r"\)")),
    ("cmpxchg", _c(r"[rw]0 = cmpxchg(?:32)?_(?P<sz>32|64)\(" + _ADDR + r", [rw]0, "
                   + _R.format("s") + r"\)")),
    ("end", _c(r"r(?P<d>\d+) = (?P<k>le|be|bswap)(?P<sz>16|32|64) r(?P=d)")),
    ("neg", _c(r"(?P<w>[rw])(?P<d>\d+) = -(?P=w)(?P=d)")),
    ("movsx", _c(r"(?P<w>[rw])(?P<d>\d+) = \(s(?P<sz>8|16|32)\)[rw](?P<s>\d+)")),
    ("alu_x", _c(r"(?P<w>[rw])(?P<d>\d+) (?P<op>s?[-+*/%|&^]?=|<<=|>>=|s>>=) [rw](?P<s>\d+)")),
    ("alu_k", _c(r"(?P<w>[rw])(?P<d>\d+) (?P<op>s?[-+*/%|&^]?=|<<=|>>=|s>>=) (?P<v>" + _N + r")")),
    ("jmp_x", _c(r"if (?P<w>[rw])(?P<d>\d+) (?P<op>s?[<>]=?|==|!=|&) [rw](?P<s>\d+) goto " + _T)),
    ("jmp_k", _c(r"if (?P<w>[rw])(?P<d>\d+) (?P<op>s?[<>]=?|==|!=|&) (?P<v>" + _N + r") goto " + _T)),
    ("goto", _c(r"goto " + _T)),
    ("gotol", _c(r"gotol " + _T)),
    ("callx", _c(r"callx r(?P<d>\d+)")),
    ("call", _c(r"call " + _T)),
    ("exit", _c(r"exit")),
]

_OBJDUMP_PREFIX = re.compile(r"^\s*\d+:\s+(?:[0-9a-f]{2}[ \t])+\s*")
_ANNOTATION = re.compile(r"\s+<[^>]*>$")


def _int(text: str) -> int:
    return int(text, 0)


def _off(m: re.Match) -> int:
    v = _int(m["o"])
    return -v if m["sign"] == "-" else v


def assemble(text: str) -> list[Insn]:
    """Assemble LLVM-syntax text into instruction slots; raises AsmError naming the line."""
    out: list[Insn] = []
    labels: dict[str, int] = {}
    fixups: list[tuple[int, str, str, int]] = []     # (slot, label, field, line number)
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = re.split(r"[#;]", raw, maxsplit=1)[0]
        line = _OBJDUMP_PREFIX.sub("", line).strip()
        line = _ANNOTATION.sub("", line)
        if not line:
            continue
        label = re.match(r"^([A-Za-z_.$][\w.$]*):$", line)
        if label:
            labels[label.group(1)] = len(out)
            continue
        line = re.sub(r"\s+", " ", line)
        for kind, pattern in _FORMS:  # noqa: B007 - the matching kind is used after the loop
            m = pattern.match(line)
            if m:
                break
        else:
            raise AsmError(f"line {lineno}: cannot assemble {raw.strip()!r}")
        try:
            insns, field = _encode(kind, m)
        except (ValueError, KeyError) as err:
            raise AsmError(f"line {lineno}: {raw.strip()!r}: {err}") from None
        if field is not None:
            t = m["t"]
            if re.match(r"^[+-]?(?:0x[0-9a-fA-F]+|\d+)$", t):
                value = _int(t)
                if kind == "call":          # call N: helper N (a label names a local call)
                    insns[0] = Insn(isa.OP_CALL, imm=isa.to_s32(value))
                else:
                    insns[0] = insns[0]._replace(**{field: value})
            else:
                fixups.append((len(out), t, field, lineno))
        out.extend(insns)
    for slot, name, field, lineno in fixups:
        if name not in labels:
            raise AsmError(f"line {lineno}: undefined label {name!r}")
        out[slot] = out[slot]._replace(**{field: labels[name] - slot - 1})
    return out


def _encode(kind: str, m: re.Match) -> tuple[list[Insn], str | None]:
    """Slots for one matched form, and the field a label target goes to (or None)."""
    g = m.groupdict()
    d = int(g["d"]) if g.get("d") else 0
    s = int(g["s"]) if g.get("s") else 0
    if kind == "ld_imm64":
        return list(isa.ld_imm64(d, _int(g["v"]))), None
    if kind == "ld_pseudo":
        second = isa.to_s32(_int(g["v2"])) if g["v2"] else 0
        return [Insn(isa.LD_IMM64, d, s, 0, isa.to_s32(_int(g["v"]))), Insn(0, imm=second)], None
    if kind in ("ld_abs", "ld_ind"):
        mode = isa.ABS if kind == "ld_abs" else isa.IND
        v = _int(g["v"]) if g["v"] else 0
        if g.get("sign") == "-":
            v = -v
        return [Insn(isa.LD | mode | _SIZE[g["sz"]], 0, s, 0, isa.to_s32(v))], None
    if kind == "ldx":
        mode = isa.MEMSX if g["k"] == "s" else isa.MEM
        return [Insn(isa.LDX | mode | _SIZE[g["sz"]], d, int(g["b"]), _off(m))], None
    if kind == "stx":
        return [Insn(isa.STX | isa.MEM | _SIZE[g["sz"]], int(g["b"]), s, _off(m))], None
    if kind == "st":
        return [Insn(isa.ST | isa.MEM | _SIZE[g["sz"]], int(g["b"]), 0, _off(m),
                     isa.to_s32(_int(g["v"])))], None
    if kind in ("lock", "fetch", "xchg", "cmpxchg"):
        imm = {"xchg": isa.XCHG, "cmpxchg": isa.CMPXCHG}.get(kind)
        if imm is None:
            imm = _ATOMIC[g["op"]] | (isa.FETCH if kind == "fetch" else 0)
        if kind == "fetch" and d != s:
            raise ValueError("atomic_fetch_* must name the same register twice")
        op = isa.STX | isa.ATOMIC | _SIZE[g["sz"]]
        return [Insn(op, int(g["b"]), s, _off(m), imm)], None
    if kind == "end":
        cls, src = {"le": (isa.ALU, isa.TO_LE), "be": (isa.ALU, isa.TO_BE),
                    "bswap": (isa.ALU64, 0)}[g["k"]]
        return [Insn(cls | isa.END | src, d, 0, 0, int(g["sz"]))], None
    cls = isa.ALU64 if g.get("w") == "r" else isa.ALU
    if kind == "neg":
        return [Insn(cls | isa.NEG, d)], None
    if kind == "movsx":
        return [Insn(cls | isa.MOV | isa.X, d, s, int(g["sz"]))], None
    if kind in ("alu_x", "alu_k"):
        op = g["op"]
        off = 1 if op in ("s/=", "s%=") else 0
        if kind == "alu_x":
            return [Insn(cls | _ALU[op] | isa.X, d, s, off)], None
        return [Insn(cls | _ALU[op] | isa.K, d, 0, off, isa.to_s32(_int(g["v"])))], None
    if kind in ("jmp_x", "jmp_k"):
        jcls = isa.JMP if g["w"] == "r" else isa.JMP32
        if kind == "jmp_x":
            return [Insn(jcls | _JMP[g["op"]] | isa.X, d, s)], "off"
        return [Insn(jcls | _JMP[g["op"]] | isa.K, d, 0, 0, isa.to_s32(_int(g["v"])))], "off"
    if kind == "goto":
        return [Insn(isa.OP_JA)], "off"
    if kind == "gotol":
        return [Insn(isa.OP_JA32)], "imm"
    if kind == "callx":
        return [Insn(isa.JMP | isa.CALL | isa.X, d)], None
    if kind == "call":
        return [Insn(isa.OP_CALL, 0, isa.PSEUDO_CALL)], "imm"
    return [Insn(isa.OP_EXIT)], None
