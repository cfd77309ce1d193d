"""The 2013 RFC's ``"bpf\\0"`` program image, translated into today's eBPF.

Layout (``bpf_load_image()`` in the RFC's ``kernel/bpf_jit/bpf_run.c``): magic, three int32 sizes
(instructions, table descriptors, string table), then the three sections.  The v1 encoding differs
from RFC 9669 in a few places (class 4 is the 64-bit ALU, memory mode REL 0xc0, XADD 0xe0, JA
carries the X bit, RET 0x06 ends the program, CALL names its helper by string-table offset); this
module rewrites each of those into the eBPF form and fixes up jump offsets where a translation
inserts instructions.  See shared/notes/rfc-2013-bpf-tracing.md §2, §4 and §11.
"""
from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from filters.bpf import isa
from filters.bpf.isa import Insn

MAGIC = b"bpf\0"
MAX_INSNS = 4096
MAX_TABLES = 64
MAX_STRTAB = 1024

# v1 opcode pieces that differ from eBPF.
V1_ALU64 = 0x04
V1_RET = 0x06
V1_MODE_REL = 0xC0
V1_MODE_XADD = 0xE0
V1_BSWAP32, V1_BSWAP64 = 0xD0, 0xE0
V1_TABLE_HASH = 1

# v1 helpers that have no upstream equivalent get tracesim-private ids (never valid on a real
# kernel; only translated 2013 images can name them).
HELPER_LOAD_POINTER = 0x7F00
HELPER_MEMCMP = 0x7F01
HELPER_DUMP_STACK = 0x7F02
V1_HELPERS = {
    "bpf_load_pointer": HELPER_LOAD_POINTER,
    "bpf_memcmp": HELPER_MEMCMP,
    "bpf_dump_stack": HELPER_DUMP_STACK,
    "bpf_trace_printk": isa.HELPER_IDS["trace_printk"],
    "bpf_table_lookup": isa.HELPER_IDS["map_lookup_elem"],
    "bpf_table_update": isa.HELPER_IDS["map_update_elem"],
}


class ImageError(Exception):
    """A malformed image: ``errno`` is what the RFC's loader returned, ``message`` its log text."""

    def __init__(self, err: int, message: str) -> None:
        super().__init__(message)
        self.errno = err
        self.message = message


@dataclass(frozen=True)
class TableSpec:
    """A v1 table descriptor, presented as a map definition (HASH → BPF_MAP_TYPE_HASH)."""
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    name: str


@dataclass
class Image:
    insns: list[Insn]          # translated eBPF slots
    tables: list[TableSpec]
    v1_insn_count: int


def is_image(data: bytes) -> bool:
    return data[:4] == MAGIC


def parse_image(data: bytes) -> Image:
    """Check the image as ``bpf_load_image()`` did and translate its program to eBPF."""
    if len(data) < 16 or data[:4] != MAGIC:
        raise ImageError(errno.EINVAL, f"invalid bpf image, size={len(data)}")
    insn_size, htab_size, strtab_size = struct.unpack_from("<iii", data, 4)
    if (insn_size <= 0 or insn_size % 8 or htab_size < 0 or htab_size % 20 or strtab_size < 0
            or insn_size // 8 > MAX_INSNS or htab_size // 20 > MAX_TABLES
            or strtab_size > MAX_STRTAB or 16 + insn_size + htab_size + strtab_size != len(data)):
        raise ImageError(errno.E2BIG, f"BPF program has {max(insn_size, 0) // 8} insn and "
                                      f"{max(htab_size, 0) // 20} tables. Max is "
                                      f"{MAX_INSNS}/{MAX_TABLES}")
    code = data[16:16 + insn_size]
    htab = data[16 + insn_size:16 + insn_size + htab_size]
    strtab = data[16 + insn_size + htab_size:]
    if strtab and strtab[-1] != 0:
        raise ImageError(errno.EINVAL, "string table does not end with '\\0'")
    tables = []
    for i, (ttype, key_size, elem_size, max_entries, _param) in enumerate(
            struct.iter_unpack("<IIIII", htab)):
        if ttype != V1_TABLE_HASH:
            raise ImageError(errno.EINVAL, f"table {i}: unsupported type {ttype}")
        tables.append(TableSpec(1, key_size, elem_size, max_entries, f"table{i}"))
    v1 = isa.decode(code)
    return Image(translate(v1, strtab, tables), tables, len(v1))


def helper_name(strtab: bytes, offset: int) -> str:
    if not 0 < offset < len(strtab):
        raise ImageError(errno.EINVAL, f"invalid func offset {offset}")
    end = strtab.index(b"\0", offset)
    return strtab[offset:end].decode("ascii", "replace")


def translate(v1: list[Insn], strtab: bytes, tables: list[TableSpec]) -> list[Insn]:
    """Rewrite v1 instructions into eBPF, then re-aim jumps at the translated positions."""
    pieces: list[list[Insn]] = []
    for pc, ins in enumerate(v1):
        pieces.append(translate_one(pc, ins, v1, strtab, tables))
    start = [0]
    for p in pieces:
        start.append(start[-1] + len(p))
    out: list[Insn] = []
    for pc, (ins, piece) in enumerate(zip(v1, pieces)):
        cls = ins.opcode & 7
        if cls == isa.JMP and (ins.opcode & 0xF0) not in (isa.CALL, isa.EXIT):
            target = pc + ins.off + 1
            if not 0 <= target < len(v1):
                raise ImageError(errno.EACCES, f"jump out of range from insn {pc} to {target}")
            j = piece[-1]
            piece[-1] = j._replace(off=start[target] - (start[pc] + len(piece) - 1) - 1)
        out.extend(piece)
    return out


def translate_one(pc: int, ins: Insn, v1: list[Insn], strtab: bytes,
                  tables: list[TableSpec]) -> list[Insn]:
    op = ins.opcode
    cls = op & 7
    if op == V1_RET:
        # A v1 program returns nothing and its event is never recorded: r0 = 0; exit.
        return [Insn(isa.ALU64 | isa.MOV | isa.K, isa.R0, 0, 0, 0), Insn(isa.OP_EXIT)]
    if cls == V1_ALU64:
        alu = op & 0xF0
        if alu == V1_BSWAP32:
            return [Insn(isa.ALU64 | isa.END | isa.K, ins.dst, 0, 0, 32)]
        if alu == V1_BSWAP64:
            return [Insn(isa.ALU64 | isa.END | isa.K, ins.dst, 0, 0, 64)]
        return [ins._replace(opcode=(op & ~7) | isa.ALU64)]
    if cls in (isa.LDX, isa.ST, isa.STX):
        mode = op & 0xE0
        if mode == V1_MODE_REL:
            return [ins._replace(opcode=(op & 0x1F) | isa.MEM)]
        if mode == V1_MODE_XADD and cls == isa.STX:
            return [ins._replace(opcode=(op & 0x1F) | isa.ATOMIC, imm=isa.ATOMIC_ADD)]
        raise ImageError(errno.EINVAL, f"insn {pc}: unsupported memory mode 0x{mode:02x}")
    if cls == isa.JMP:
        jop = op & 0xF0
        if jop == isa.JA:
            if not op & isa.X:
                raise ImageError(errno.EINVAL, f"insn {pc}: 'ja' without the X bit")
            return [Insn(isa.OP_JA, 0, 0, ins.off, 0)]
        if jop == isa.CALL:
            return translate_call(pc, ins, v1, strtab, tables)
        if jop in (isa.JEQ, isa.JGT, isa.JGE, isa.JSET, isa.JNE, isa.JSGT, isa.JSGE):
            return [ins]
    raise ImageError(errno.EINVAL, f"insn {pc}: unknown opcode 0x{op:02x}")


def translate_call(pc: int, ins: Insn, v1: list[Insn], strtab: bytes,
                   tables: list[TableSpec]) -> list[Insn]:
    name = helper_name(strtab, ins.imm)
    if name not in V1_HELPERS:
        raise ImageError(errno.EINVAL, f"unknown func '{name}'")
    call = Insn(isa.OP_CALL, 0, 0, 0, V1_HELPERS[name])
    if name not in ("bpf_table_lookup", "bpf_table_update"):
        return [call]
    # bpf_table_*(ctx, table_id, key[, leaf]) → map_*(map, key[, value, flags]). The table id
    # must be a constant (the RFC's verifier required a MOV K into r2 on every path).
    table = constant_r2(pc, v1)
    if table is None or not 0 <= table < len(tables):
        raise ImageError(errno.EACCES, f"insn {pc}: table id must be a constant below "
                                       f"{len(tables)}")
    mov = isa.ALU64 | isa.MOV | isa.X
    seq = [Insn(mov, isa.R2, isa.R3)]
    if name == "bpf_table_update":
        seq += [Insn(mov, isa.R3, isa.R4), Insn(isa.ALU64 | isa.MOV | isa.K, isa.R4, 0, 0, 0)]
    seq += list(isa.ld_imm64(isa.R1, table, src=isa.PSEUDO_MAP_FD))
    return seq + [call]


def constant_r2(pc: int, v1: list[Insn]) -> int | None:
    """The value of the last ``MOV r2, K`` before ``pc`` in straight-line code, if any."""
    jump_targets = {i + x.off + 1 for i, x in enumerate(v1)
                    if x.opcode & 7 == isa.JMP and x.opcode & 0xF0 not in (isa.CALL, isa.EXIT)}
    for i in range(pc - 1, -1, -1):
        if i + 1 in jump_targets:      # another path joins after this point
            return None
        x = v1[i]
        if x.dst == isa.R2 and x.opcode == V1_ALU64 | isa.MOV | isa.K:
            return x.imm
        if x.dst == isa.R2 and x.opcode & 7 in (V1_ALU64, isa.LDX) or x.opcode == isa.OP_CALL:
            return None
    return None
