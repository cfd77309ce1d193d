"""Reference semantics of eBPF arithmetic and comparisons (RFC 9669 section 4), as plain functions.

Values are canonical: 64-bit registers hold ints in [0, 2**64), 32-bit operations take and give ints
in [0, 2**32).  Both engines use these tables: the interpreter directly, the JIT for the rare
operations it does not inline.
"""
from __future__ import annotations

from tracesim.filters.bpf.vm import isa

M64 = 0xFFFFFFFFFFFFFFFF
M32 = 0xFFFFFFFF
SIGN64 = 1 << 63
SIGN32 = 1 << 31


def s64(v: int) -> int:
    return v - (1 << 64) if v & SIGN64 else v


def s32(v: int) -> int:
    v &= M32
    return v - (1 << 32) if v & SIGN32 else v


def _trunc_div(a: int, b: int) -> int:
    """C division (rounds toward zero) of signed ints, b != 0."""
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def _trunc_mod(a: int, b: int) -> int:
    """C remainder (sign of the dividend) of signed ints, b != 0."""
    r = abs(a) % abs(b)
    return -r if a < 0 else r


def sext(v: int, bits: int) -> int:
    """Sign-extend the low ``bits`` of v to a Python int."""
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def bswap(v: int, bits: int) -> int:
    return int.from_bytes((v & ((1 << bits) - 1)).to_bytes(bits // 8, "little"), "big")


# (dst, src) -> result, for ALU64: operands and result in [0, 2**64).
ALU64 = {
    "add": lambda a, b: (a + b) & M64,
    "sub": lambda a, b: (a - b) & M64,
    "mul": lambda a, b: (a * b) & M64,
    "div": lambda a, b: a // b if b else 0,
    "sdiv": lambda a, b: _trunc_div(s64(a), s64(b)) & M64 if b else 0,
    "or": lambda a, b: a | b,
    "and": lambda a, b: a & b,
    "lsh": lambda a, b: (a << (b & 63)) & M64,
    "rsh": lambda a, b: a >> (b & 63),
    "neg": lambda a, b: -a & M64,
    "mod": lambda a, b: a % b if b else a,
    "smod": lambda a, b: _trunc_mod(s64(a), s64(b)) & M64 if b else a,
    "xor": lambda a, b: a ^ b,
    "mov": lambda a, b: b,
    "movsx8": lambda a, b: sext(b, 8) & M64,
    "movsx16": lambda a, b: sext(b, 16) & M64,
    "movsx32": lambda a, b: sext(b, 32) & M64,
    "arsh": lambda a, b: (s64(a) >> (b & 63)) & M64,
}

# Same for ALU (32-bit): operands are taken modulo 2**32, results are zero-extended.
ALU32 = {
    "add": lambda a, b: (a + b) & M32,
    "sub": lambda a, b: (a - b) & M32,
    "mul": lambda a, b: (a * b) & M32,
    "div": lambda a, b: (a & M32) // (b & M32) if b & M32 else 0,
    "sdiv": lambda a, b: _trunc_div(s32(a), s32(b)) & M32 if b & M32 else 0,
    "or": lambda a, b: (a | b) & M32,
    "and": lambda a, b: a & b & M32,
    "lsh": lambda a, b: (a << (b & 31)) & M32,
    "rsh": lambda a, b: (a & M32) >> (b & 31),
    "neg": lambda a, b: -a & M32,
    "mod": lambda a, b: (a & M32) % (b & M32) if b & M32 else a & M32,
    "smod": lambda a, b: _trunc_mod(s32(a), s32(b)) & M32 if b & M32 else a & M32,
    "xor": lambda a, b: (a ^ b) & M32,
    "mov": lambda a, b: b & M32,
    "movsx8": lambda a, b: sext(b, 8) & M32,
    "movsx16": lambda a, b: sext(b, 16) & M32,
    "arsh": lambda a, b: (s32(a) >> (b & 31)) & M32,
}

# Condition of a conditional jump on canonical operands of the given width.
JUMP64 = {
    isa.JEQ: lambda a, b: a == b,
    isa.JNE: lambda a, b: a != b,
    isa.JGT: lambda a, b: a > b,
    isa.JGE: lambda a, b: a >= b,
    isa.JLT: lambda a, b: a < b,
    isa.JLE: lambda a, b: a <= b,
    isa.JSET: lambda a, b: a & b != 0,
    isa.JSGT: lambda a, b: a ^ SIGN64 > b ^ SIGN64,
    isa.JSGE: lambda a, b: a ^ SIGN64 >= b ^ SIGN64,
    isa.JSLT: lambda a, b: a ^ SIGN64 < b ^ SIGN64,
    isa.JSLE: lambda a, b: a ^ SIGN64 <= b ^ SIGN64,
}
JUMP32 = dict(JUMP64)
JUMP32.update({
    isa.JSGT: lambda a, b: a ^ SIGN32 > b ^ SIGN32,
    isa.JSGE: lambda a, b: a ^ SIGN32 >= b ^ SIGN32,
    isa.JSLT: lambda a, b: a ^ SIGN32 < b ^ SIGN32,
    isa.JSLE: lambda a, b: a ^ SIGN32 <= b ^ SIGN32,
})


def alu_name(insn: isa.Insn) -> str:
    """Key into ALU64/ALU32 for an ALU-class instruction (END excluded)."""
    op = insn.opcode & 0xF0
    name = isa.ALU_OP_NAMES[op]
    if op in (isa.DIV, isa.MOD) and insn.off == 1:
        return "s" + name
    if op == isa.MOV and insn.off:
        return f"movsx{insn.off}"
    return name


def endian(insn: isa.Insn, value: int) -> int:
    """Result of an END instruction (byte swap / conversion) on a 64-bit value."""
    bits = insn.imm
    if insn.opcode & 7 == isa.ALU and insn.opcode & 0x08 == isa.TO_LE:
        return value & ((1 << bits) - 1)       # host is little-endian: just truncate
    return bswap(value, bits)


def atomic(op: int, old: int, src: int, mask: int) -> int:
    """New memory value of a non-cmpxchg atomic operation."""
    op &= ~isa.FETCH
    if op == isa.ATOMIC_ADD:
        return (old + src) & mask
    if op == isa.ATOMIC_OR:
        return old | (src & mask)
    if op == isa.ATOMIC_AND:
        return old & src
    if op == isa.ATOMIC_XOR:
        return (old ^ src) & mask
    return src & mask                            # XCHG
