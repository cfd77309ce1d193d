"""Reader and runner of the eBPF conformance suite (``bpf_conformance`` ``*.data`` files).

A file has sections introduced by ``-- NAME`` lines: ``asm`` (the suite's assembler dialect:
``mov32 %r0, 1``, ``ldxdw %r0, [%r1+8]``, ``lock fetch add [%r10-8], %r1``, labels, ``call local
f``), ``raw`` (instructions as 8 hex bytes a line, or one 64-bit number per word), ``mem`` (hex
bytes of the input memory), ``result`` (expected r0), ``error`` (the program must be rejected);
``-- c`` and ``-- no register offset`` are commentary.  ``raw`` wins over ``asm`` when both exist.

Execution model of the suite: r1 points to a copy of ``mem`` (the context, writable), r2 holds its
length, r10 the top of a 512-byte stack; helper 5 "unwind" returns its r1 and ends the program with
r0 = 0 when that is 0 (``helper_table.CONFORMANCE_TABLE``); the runner gives each program a copy.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tracesim.filters.bpf.loader import ENGINES, LoadedProgram, LoadError, load
from tracesim.filters.bpf.runtime.helper_table import CONFORMANCE_TABLE, implementations
from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.alu import M64
from tracesim.filters.bpf.vm.isa import Insn


class AsmError(ValueError):
    pass


@dataclass
class TestCase:
    name: str
    insns: list[Insn]
    mem: bytes
    result: int | None          # expected r0; None when the file expects an error
    error: str | None           # text of the "-- error" section ("" when present but empty)


# --------------------------------------------------------------------------------------------
# Parsing the file

def parse_file(path: Path) -> TestCase:
    sections: dict[str, list[str]] = {}
    current = None
    for raw_line in path.read_text().splitlines():
        line = raw_line.rstrip("\r")
        if "--" in line:
            name = line.split("--", 1)[1].strip()
            current = name if name in ("asm", "raw", "mem", "result", "error") else None
            if current is not None:
                sections.setdefault(current, [])
            continue
        if current is None:
            continue
        if current == "asm" and "#" in line:
            line = line[:line.index("#")]
        if line.strip():
            sections[current].append(line.strip())
    if "raw" in sections:
        insns = parse_raw(sections["raw"])
    else:
        insns = assemble_dialect("\n".join(sections.get("asm", [])))
    mem = bytes(int(tok, 16) for line in sections.get("mem", []) for tok in line.split())
    result = None
    if sections.get("result"):
        result = int(sections["result"][-1], 0) & M64
    error = " ".join(sections["error"]) if "error" in sections else None
    return TestCase(path.stem, insns, mem, result, error)


def parse_raw(lines: list[str]) -> list[Insn]:
    """Either lines of 8 hex bytes (``85 01 00 00 00 00 00 00``) or one little-endian 64-bit
    number per word (``0x0000000000000095``)."""
    data = bytearray()
    for line in lines:
        words = line.split()
        if len(words) == 8 and all(len(w) == 2 for w in words):
            data += bytes(int(w, 16) for w in words)
        else:
            for w in words:
                data += (int(w, 0) & M64).to_bytes(8, "little")
    return isa.decode(bytes(data))


# --------------------------------------------------------------------------------------------
# The suite's assembler dialect

_REGS = {f"%r{i}": i for i in range(16)}
_ALU = {"add": isa.ADD, "sub": isa.SUB, "mul": isa.MUL, "div": isa.DIV, "sdiv": isa.DIV,
        "or": isa.OR, "and": isa.AND, "lsh": isa.LSH, "rsh": isa.RSH, "neg": isa.NEG,
        "mod": isa.MOD, "smod": isa.MOD, "xor": isa.XOR, "mov": isa.MOV, "arsh": isa.ARSH}
_JMP = {"jeq": isa.JEQ, "jgt": isa.JGT, "jge": isa.JGE, "jset": isa.JSET, "jne": isa.JNE,
        "jsgt": isa.JSGT, "jsge": isa.JSGE, "jlt": isa.JLT, "jle": isa.JLE, "jslt": isa.JSLT,
        "jsle": isa.JSLE}
_SIZES = {"b": isa.B, "h": isa.H, "w": isa.W, "dw": isa.DW}
_ATOMIC = {"add": isa.ATOMIC_ADD, "or": isa.ATOMIC_OR, "and": isa.ATOMIC_AND,
           "xor": isa.ATOMIC_XOR, "xchg": isa.XCHG, "cmpxchg": isa.CMPXCHG}
_MEMREF = re.compile(r"^\[(%r\d+)\s*(?:([+-])\s*(\w+))?\]$")


def _reg(tok: str) -> int:
    try:
        return _REGS[tok]
    except KeyError:
        raise AsmError(f"invalid register: {tok}") from None


def _num(tok: str, bits: int) -> int:
    """A number as the suite writes it (decimal or 0x, maybe negative) taken modulo 2**bits,
    then as the signed field value."""
    try:
        v = int(tok, 0)
    except ValueError:
        raise AsmError(f"invalid number: {tok}") from None
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _memref(tok: str) -> tuple[int, int]:
    m = _MEMREF.match(tok.replace(" ", ""))
    if not m:
        raise AsmError(f"invalid memory operand: {tok}")
    off = 0
    if m.group(3):
        off = _num(("-" if m.group(2) == "-" else "") + m.group(3), 16)
    return _reg(m.group(1)), off


def assemble_dialect(text: str) -> list[Insn]:
    """Assemble the conformance suite's dialect into slots."""
    out: list[Insn] = []
    fixups: list[tuple[int, str, str]] = []        # (slot, label, field)
    labels: dict[str, int] = {}

    def target(tok: str, slot: int, field: str) -> int:
        if tok[0] in "+-" or tok[0].isdigit():
            return _num(tok, 16 if field == "off" else 32)
        fixups.append((slot, tok, field))
        return 0

    for lineno, line in enumerate(text.splitlines(), 1):
        words = line.replace(",", " ").split()
        if not words:
            continue
        if len(words) == 1 and words[0].endswith(":"):
            label = words[0][:-1]
            if label in labels:
                raise AsmError(f"line {lineno}: duplicate label {label}")
            labels[label] = len(out)
            continue
        mnem, ops = words[0], words[1:]
        # A jump to "exit" goes to the first exit instruction (the suite's convention).
        if mnem == "exit":
            labels.setdefault("exit", len(out))
        try:
            out.extend(_encode(mnem, ops, len(out), target))
        except (AsmError, IndexError) as err:
            raise AsmError(f"line {lineno}: {line.strip()}: {err}") from None
    for slot, label, field in fixups:
        if label not in labels:
            raise AsmError(f"undefined label: {label}")
        out[slot] = out[slot]._replace(**{field: labels[label] - slot - 1})
    return out


def _encode(mnem: str, ops: list[str], slot: int,
            target: Callable[[str, int, str], int]) -> list[Insn]:
    if mnem == "exit":
        return [Insn(isa.OP_EXIT)]
    if mnem == "lddw":
        return list(isa.ld_imm64(_reg(ops[0]), int(ops[1], 0)))
    if mnem == "ja":
        return [Insn(isa.OP_JA, off=target(ops[0], slot, "off"))]
    if mnem == "ja32":
        return [Insn(isa.OP_JA32, imm=target(ops[0], slot, "imm"))]
    if mnem == "call":
        mode, what = ("helper", ops[0]) if len(ops) == 1 else (ops[0], ops[1])
        if mode == "local":
            return [Insn(isa.OP_CALL, src=isa.PSEUDO_CALL, imm=target(what, slot, "imm"))]
        if mode == "helper" and what.startswith("%"):
            return [Insn(isa.JMP | isa.CALL | isa.X, dst=_reg(what))]
        src = {"helper": 0, "runtime": isa.PSEUDO_KFUNC_CALL}.get(mode)
        if src is None:
            raise AsmError(f"invalid call mode {mode}")
        return [Insn(isa.OP_CALL, src=src, imm=_num(what, 32))]
    if mnem == "lock":
        fetch = ops[0] == "fetch"
        if fetch:
            ops = ops[1:]
        name, wide = (ops[0][:-2], False) if ops[0].endswith("32") else (ops[0], True)
        if name not in _ATOMIC:
            raise AsmError(f"invalid atomic operation {ops[0]}")
        dst, off = _memref(ops[1])
        imm = _ATOMIC[name] | (isa.FETCH if fetch else 0)
        cls = isa.STX | isa.ATOMIC | (isa.DW if wide else isa.W)
        return [Insn(cls, dst, _reg(ops[2]), off, imm)]
    for prefix, cls in (("ldxs", isa.LDX | isa.MEMSX), ("ldx", isa.LDX | isa.MEM),
                        ("stx", isa.STX | isa.MEM), ("st", isa.ST | isa.MEM)):
        if mnem.startswith(prefix) and mnem[len(prefix):] in _SIZES:
            op = cls | _SIZES[mnem[len(prefix):]]
            if prefix.startswith("ldx"):
                src, off = _memref(ops[1])
                return [Insn(op, _reg(ops[0]), src, off)]
            dst, off = _memref(ops[0])
            if prefix == "stx":
                return [Insn(op, dst, _reg(ops[1]), off)]
            return [Insn(op, dst, 0, off, _num(ops[1], 32))]
    for prefix, cls, src_bit in (("be", isa.ALU, isa.TO_BE), ("le", isa.ALU, isa.TO_LE),
                                 ("bswap", isa.ALU64, 0), ("swap", isa.ALU64, 0)):
        if mnem.startswith(prefix) and mnem[len(prefix):] in ("16", "32", "64"):
            return [Insn(cls | isa.END | src_bit, _reg(ops[0]), imm=int(mnem[len(prefix):]))]
    base, wide = mnem, True
    if mnem.endswith("32") and mnem[:-2] in _ALU | _JMP:
        base, wide = mnem[:-2], False
    elif mnem.endswith("64") and mnem[:-2] in _ALU:
        base = mnem[:-2]
    if mnem.startswith("movsx") and len(mnem) > 7:          # movsx832, movsx1664, movsx3264 ...
        bits, width = mnem[5:-2], mnem[-2:]
        cls = isa.ALU64 if width == "64" else isa.ALU
        return [Insn(cls | isa.MOV | isa.X, _reg(ops[0]), _reg(ops[1]), int(bits))]
    if base in _ALU:
        cls = isa.ALU64 if wide else isa.ALU
        off = 1 if base in ("sdiv", "smod") else 0
        dst = _reg(ops[0])
        if base == "neg":
            return [Insn(cls | isa.NEG, dst)]
        if ops[1].startswith("%"):
            return [Insn(cls | _ALU[base] | isa.X, dst, _reg(ops[1]), off)]
        return [Insn(cls | _ALU[base] | isa.K, dst, 0, off, _num(ops[1], 32))]
    if base in _JMP:
        cls = isa.JMP if wide else isa.JMP32
        dst = _reg(ops[0])
        off = target(ops[2], slot, "off")
        if ops[1].startswith("%"):
            return [Insn(cls | _JMP[base] | isa.X, dst, _reg(ops[1]), off)]
        return [Insn(cls | _JMP[base] | isa.K, dst, 0, off, _num(ops[1], 32))]
    raise AsmError(f"invalid mnemonic {mnem}")


# --------------------------------------------------------------------------------------------
# Running

def suite_helpers() -> dict[int, Callable[..., int]]:
    """The suite's helper table (its one helper, 5 "unwind"), a fresh copy."""
    return implementations(CONFORMANCE_TABLE)


def load_case(case: TestCase, engine: str | None = None) -> LoadedProgram:
    """The case's program, checked (not verified: the suite tests the engines), with the suite's
    helpers and ``engine`` prepared; raises ``LoadError``."""
    return load(case.insns, prog_type="conformance", name=case.name, helpers=suite_helpers(),
                ctx_size=len(case.mem), ctx_writable=True, engine=engine, verify=False)


def run_case(case: TestCase, engine: str) -> tuple[bool, str]:
    """(passed, detail) of one case on one engine."""
    try:
        loaded = load_case(case, engine)
    except LoadError as err:
        if case.error is not None:
            return True, f"rejected: {err}"
        return False, f"load failed: {err}"
    if case.error is not None:
        return False, "loaded a program that must be rejected"
    assert loaded.runner is not None
    result = loaded.runner.run(bytearray(case.mem), args=(len(case.mem),))
    if not result.ok:
        return False, f"error: {result.error}"
    if result.value != case.result:
        return False, f"r0 = {result.value:#x}, expected {case.result:#x}"
    return True, f"r0 = {result.value:#x}"


def run_dir(directory: Path, engines: tuple[str, ...] = ENGINES) -> Iterator[tuple[str, str, bool, str]]:
    """(file name, engine, passed, detail) for every ``*.data`` file, sorted by name."""
    for path in sorted(Path(directory).glob("*.data")):
        try:
            case = parse_file(path)
        except AsmError as err:
            for engine in engines:
                yield path.name, engine, False, f"parse error: {err}"
            continue
        for engine in engines:
            passed, detail = run_case(case, engine)
            yield path.name, engine, passed, detail
