"""The eBPF instruction set as data (RFC 9669).

A program is a list of 8-byte *slots*, exactly as the kernel keeps it: one ``Insn`` per slot, so an
LD_IMM64 takes two ``Insn``s (the second has opcode 0 and carries the upper 32 bits in ``imm``), and
jump offsets count slots.  Everything else in ``filters/bpf/`` (assembler, disassembler, verifier,
interpreter, JIT, ELF loader, compiler) speaks in these terms.
"""
from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import NamedTuple

# Instruction classes (opcode & 0x07).
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = range(8)
CLASS_NAMES = ("ld", "ldx", "st", "stx", "alu", "jmp", "jmp32", "alu64")

# Source operand (opcode & 0x08) for ALU/JMP classes.
K = 0x00  # use imm
X = 0x08  # use src register

# Size (opcode & 0x18) and mode (opcode & 0xe0) for load/store classes.
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
SIZE_BYTES = {W: 4, H: 2, B: 1, DW: 8}
IMM, ABS, IND, MEM, MEMSX, ATOMIC = 0x00, 0x20, 0x40, 0x60, 0x80, 0xC0

# ALU operations (opcode & 0xf0).
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR, MOV, ARSH, END = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0)
ALU_OP_NAMES = {ADD: "add", SUB: "sub", MUL: "mul", DIV: "div", OR: "or", AND: "and", LSH: "lsh",
                RSH: "rsh", NEG: "neg", MOD: "mod", XOR: "xor", MOV: "mov", ARSH: "arsh", END: "end"}
# END: source bit selects the byte order (TO_LE = K, TO_BE = X); in ALU64 it is the unconditional bswap.
TO_LE, TO_BE = K, X

# Jump operations (opcode & 0xf0).
JA, JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, CALL, EXIT, JLT, JLE, JSLT, JSLE = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0)
JMP_OP_NAMES = {JA: "ja", JEQ: "jeq", JGT: "jgt", JGE: "jge", JSET: "jset", JNE: "jne", JSGT: "jsgt",
                JSGE: "jsge", CALL: "call", EXIT: "exit", JLT: "jlt", JLE: "jle", JSLT: "jslt",
                JSLE: "jsle"}
CONDITIONAL_JUMPS = (JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, JLT, JLE, JSLT, JSLE)

# Atomic operations (imm of STX|ATOMIC).
ATOMIC_ADD, ATOMIC_OR, ATOMIC_AND, ATOMIC_XOR = 0x00, 0x40, 0x50, 0xA0
FETCH = 0x01
XCHG = 0xE0 | FETCH
CMPXCHG = 0xF0 | FETCH

# src_reg values of LD_IMM64 (pseudo sources) and of CALL.
PSEUDO_MAP_FD = 1
PSEUDO_MAP_VALUE = 2
PSEUDO_BTF_ID = 3
PSEUDO_FUNC = 4
PSEUDO_MAP_IDX = 5
PSEUDO_MAP_IDX_VALUE = 6
PSEUDO_CALL = 1       # call to a bpf-to-bpf subprogram, imm = relative slot offset
PSEUDO_KFUNC_CALL = 2

# Registers.
R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)
FP = R10
NUM_REGS = 11
STACK_SIZE = 512
MAX_CALL_DEPTH = 8

# Frequently used full opcodes.
LD_IMM64 = LD | IMM | DW      # 0x18
OP_CALL = JMP | CALL          # 0x85
OP_EXIT = JMP | EXIT          # 0x95
OP_JA = JMP | JA              # 0x05
OP_JA32 = JMP32 | JA          # 0x06 (gotol: offset in imm)


class Insn(NamedTuple):
    """One 8-byte slot: opcode u8, dst_reg u4, src_reg u4, off s16, imm s32."""
    opcode: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0


_SLOT = struct.Struct("<BBhi")


def decode(data: bytes) -> list[Insn]:
    """Split little-endian program bytes into slots.  Raises ValueError on a partial slot."""
    if len(data) % 8:
        raise ValueError(f"program length {len(data)} is not a multiple of 8")
    out = []
    for op, regs, off, imm in _SLOT.iter_unpack(data):
        out.append(Insn(op, regs & 0x0F, regs >> 4, off, imm))
    return out


def encode(insns: Iterable[Insn]) -> bytes:
    """Pack slots into little-endian program bytes."""
    return b"".join(_SLOT.pack(i.opcode, (i.src << 4) | i.dst, i.off, i.imm) for i in insns)


def ld_imm64(dst: int, value: int, src: int = 0) -> tuple[Insn, Insn]:
    """The two slots of ``dst = value ll`` (value taken modulo 2**64)."""
    value &= 0xFFFFFFFFFFFFFFFF
    lo, hi = value & 0xFFFFFFFF, value >> 32
    return (Insn(LD_IMM64, dst, src, 0, to_s32(lo)), Insn(0, 0, 0, 0, to_s32(hi)))


def imm64(first: Insn, second: Insn) -> int:
    """The unsigned 64-bit constant of an LD_IMM64 pair."""
    return (first.imm & 0xFFFFFFFF) | ((second.imm & 0xFFFFFFFF) << 32)


def is_jump(insn: Insn) -> bool:
    """True for JA/conditional jumps (JMP or JMP32), false for CALL and EXIT."""
    cls = insn.opcode & 7
    return cls in (JMP, JMP32) and (insn.opcode & 0xF0) not in (CALL, EXIT)


def jump_target(pc: int, insn: Insn) -> int:
    """Slot index a jump at ``pc`` goes to (``gotol`` keeps its offset in imm)."""
    if insn.opcode == OP_JA32:
        return pc + insn.imm + 1
    return pc + insn.off + 1


def to_s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def to_s64(v: int) -> int:
    v &= 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v & (1 << 63) else v


# Linux helper ids (uapi enum bpf_func_id) used across tracesim.
HELPER_IDS = {
    "map_lookup_elem": 1, "map_update_elem": 2, "map_delete_elem": 3, "probe_read": 4,
    "ktime_get_ns": 5, "trace_printk": 6, "get_prandom_u32": 7, "get_smp_processor_id": 8,
    "skb_store_bytes": 9, "tail_call": 12, "get_current_pid_tgid": 14,
    "get_current_uid_gid": 15, "get_current_comm": 16, "perf_event_output": 25,
    "skb_load_bytes": 26, "probe_read_str": 45, "skb_load_bytes_relative": 68,
    "probe_read_user": 112, "probe_read_kernel": 113, "probe_read_user_str": 114,
    "probe_read_kernel_str": 115, "ringbuf_output": 130, "ringbuf_reserve": 131,
    "ringbuf_submit": 132, "ringbuf_discard": 133, "ringbuf_query": 134,
}
HELPER_NAMES = {v: k for k, v in HELPER_IDS.items()}
