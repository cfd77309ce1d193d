"""Disassembler printing LLVM's BPF syntax exactly as ``llvm-objdump -d`` (LLVM 14) does.

``hex=True`` prints immediates and offsets the way newer LLVM releases do (``r1 = *(u64 *)(r7 +
0x8)``, ``goto +0x15``, ``call 0x4``).  Instructions LLVM 14 cannot decode (it prints
``<unknown>``: signed div/mod, movsx, sign-extending loads, bswap, gotol, jset, ST imm, 32-bit
atomics other than add) use the syntax of the LLVM releases that added them.  Two LLVM 14 quirks are
not copied so that text -> bytes stays exact: fetch-add32 prints as ``atomic_fetch_add`` and an
LD_IND/LD_PSEUDO whose extra field is non-zero shows it.  A bpf-to-bpf call prints ``call N`` like
LLVM; the assembler turns ``call N`` into a helper call and ``call label`` into a local call.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.isa import Insn

_ALU_OPS = {isa.ADD: "+=", isa.SUB: "-=", isa.MUL: "*=", isa.DIV: "/=", isa.OR: "|=",
            isa.AND: "&=", isa.LSH: "<<=", isa.RSH: ">>=", isa.MOD: "%=", isa.XOR: "^=",
            isa.MOV: "=", isa.ARSH: "s>>="}
_JMP_OPS = {isa.JEQ: "==", isa.JNE: "!=", isa.JGT: ">", isa.JGE: ">=", isa.JLT: "<", isa.JLE: "<=",
            isa.JSGT: "s>", isa.JSGE: "s>=", isa.JSLT: "s<", isa.JSLE: "s<=", isa.JSET: "&"}
_SIZE_NAMES = {isa.W: "32", isa.H: "16", isa.B: "8", isa.DW: "64"}
_ATOMIC_NAMES = {isa.ATOMIC_ADD: ("+=", "add"), isa.ATOMIC_OR: ("|=", "or"),
                 isa.ATOMIC_AND: ("&=", "and"), isa.ATOMIC_XOR: ("^=", "xor")}
UNKNOWN = "<unknown>"


def _num(v: int, hex_: bool) -> str:
    if not hex_:
        return str(v)
    return f"-{-v:#x}" if v < 0 else f"{v:#x}"


def _off(v: int, hex_: bool) -> str:
    """A memory offset: ``+ 8`` / ``- 8``."""
    return f"- {_num(-v, hex_)}" if v < 0 else f"+ {_num(v, hex_)}"


def _target(v: int, hex_: bool) -> str:
    """A jump offset: ``+3`` / ``-3``."""
    return f"-{_num(-v, hex_)}" if v < 0 else f"+{_num(v, hex_)}"


def format_insn(insn: Insn, next_insn: Insn | None = None, *, hex: bool = False) -> str:
    """One instruction in LLVM syntax; ``next_insn`` is the second slot of an LD_IMM64."""
    op, cls = insn.opcode, insn.opcode & 7
    d, s = insn.dst, insn.src
    if cls in (isa.ALU, isa.ALU64):
        return _format_alu(insn, hex)
    if cls in (isa.JMP, isa.JMP32):
        return _format_jmp(insn, hex)
    size = op & 0x18
    mode = op & 0xE0
    bits = _SIZE_NAMES[size]
    if cls == isa.LD:
        if op == isa.LD_IMM64:
            hi = next_insn.imm if next_insn is not None else 0
            if s == 0:
                value = isa.to_s64((insn.imm & 0xFFFFFFFF) | ((hi & 0xFFFFFFFF) << 32))
                return f"r{d} = {_num(value, hex)} ll"       # LLVM prints it signed
            text = f"ld_pseudo\tr{d}, {s}, {_num(insn.imm, hex)}"
            return text + (f", {_num(hi, hex)}" if hi else "")
        if mode == isa.ABS and size != isa.DW:
            return f"r0 = *(u{bits} *)skb[{_num(insn.imm, hex)}]"
        if mode == isa.IND and size != isa.DW:
            extra = f" {_off(insn.imm, hex)}" if insn.imm else ""
            return f"r0 = *(u{bits} *)skb[r{s}{extra}]"
        return UNKNOWN
    if cls == isa.LDX:
        if mode == isa.MEM:
            return f"r{d} = *(u{bits} *)(r{s} {_off(insn.off, hex)})"
        if mode == isa.MEMSX and size != isa.DW:
            return f"r{d} = *(s{bits} *)(r{s} {_off(insn.off, hex)})"
        return UNKNOWN
    if cls == isa.ST:
        if mode == isa.MEM:
            return f"*(u{bits} *)(r{d} {_off(insn.off, hex)}) = {_num(insn.imm, hex)}"
        return UNKNOWN
    # STX
    addr = f"r{d} {_off(insn.off, hex)}"
    if mode == isa.MEM:
        return f"*(u{bits} *)({addr}) = r{s}"
    if mode == isa.ATOMIC and size in (isa.W, isa.DW):
        return _format_atomic(insn, size, addr)
    return UNKNOWN


def _format_alu(insn: Insn, hex_: bool) -> str:
    op, cls = insn.opcode & 0xF0, insn.opcode & 7
    use_x = insn.opcode & isa.X
    r = "r" if cls == isa.ALU64 else "w"
    d = f"{r}{insn.dst}"
    if op == isa.END:
        if cls == isa.ALU64:
            return f"r{insn.dst} = bswap{insn.imm} r{insn.dst}" if not use_x else UNKNOWN
        kind = "be" if use_x else "le"
        return f"r{insn.dst} = {kind}{insn.imm} r{insn.dst}"
    if op == isa.NEG:
        return f"{d} = -{d}" if not use_x else UNKNOWN
    if op not in _ALU_OPS:
        return UNKNOWN
    src = f"{r}{insn.src}" if use_x else _num(insn.imm, hex_)
    if op == isa.MOV and use_x and insn.off:
        return f"{d} = (s{insn.off}){src}"
    sym = _ALU_OPS[op]
    if op in (isa.DIV, isa.MOD) and insn.off == 1:
        sym = "s" + sym
    return f"{d} {sym} {src}"


def _format_jmp(insn: Insn, hex_: bool) -> str:
    op, cls = insn.opcode & 0xF0, insn.opcode & 7
    use_x = insn.opcode & isa.X
    if op == isa.JA:
        if use_x:
            return UNKNOWN
        return f"gotol {_target(insn.imm, hex_)}" if cls == isa.JMP32 else f"goto {_target(insn.off, hex_)}"
    if op == isa.CALL and cls == isa.JMP:
        return f"callx r{insn.dst}" if use_x else f"call {_num(insn.imm, hex_)}"
    if op == isa.EXIT and cls == isa.JMP:
        return "exit" if not use_x else UNKNOWN
    if op not in _JMP_OPS:
        return UNKNOWN
    r = "r" if cls == isa.JMP else "w"
    src = f"{r}{insn.src}" if use_x else _num(insn.imm, hex_)
    return f"if {r}{insn.dst} {_JMP_OPS[op]} {src} goto {_target(insn.off, hex_)}"


def _format_atomic(insn: Insn, size: int, addr: str) -> str:
    wide = size == isa.DW
    u = "u64" if wide else "u32"
    r = "r" if wide else "w"
    s = insn.src
    if insn.imm == isa.XCHG:
        return f"r{s} = xchg_64({addr}, r{s})" if wide else f"w{s} = xchg32_32({addr}, w{s})"
    if insn.imm == isa.CMPXCHG:
        return f"r0 = cmpxchg_64({addr}, r0, r{s})" if wide else f"w0 = cmpxchg32_32({addr}, w0, w{s})"
    names = _ATOMIC_NAMES.get(insn.imm & ~isa.FETCH)
    if names is None:
        return UNKNOWN
    if insn.imm & isa.FETCH:
        return f"{r}{s} = atomic_fetch_{names[1]}(({u} *)({addr}), {r}{s})"
    # LLVM 14 prints the plain 32-bit add with an r register (without +alu32) and the others with w.
    reg = "r" if wide or insn.imm == isa.ATOMIC_ADD else "w"
    return f"lock *({u} *)({addr}) {names[0]} {reg}{s}"


def disassemble(insns: Sequence[Insn], *, hex: bool = False,
                labels: Mapping[int, str] | None = None) -> list[str]:
    """One line per instruction (an LD_IMM64 pair gives one line).

    ``labels`` maps slot indexes to names; a jump whose target has one gets `` <name>`` appended,
    as llvm-objdump does with the object's symbols.
    """
    out = []
    pc = 0
    while pc < len(insns):
        insn = insns[pc]
        nxt = insns[pc + 1] if insn.opcode == isa.LD_IMM64 and pc + 1 < len(insns) else None
        text = format_insn(insn, nxt, hex=hex)
        if labels is not None and isa.is_jump(insn):
            name = labels.get(isa.jump_target(pc, insn))
            if name is not None:
                text += f" <{name}>"
        out.append(text)
        pc += 2 if nxt is not None else 1
    return out
