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

from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.isa import Insn

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

# v1 helpers by name.  The three without an upstream equivalent are lowered into today's helpers
# (see ``lower_load_pointer``/``lower_memcmp``); the table helpers become map helpers.
V1_HELPERS = ("bpf_load_pointer", "bpf_memcmp", "bpf_dump_stack", "bpf_trace_printk",
              "bpf_table_lookup", "bpf_table_update")
PROBE_READ_KERNEL = isa.HELPER_IDS["probe_read_kernel"]
TRACE_PRINTK = isa.HELPER_IDS["trace_printk"]
MAP_LOOKUP = isa.HELPER_IDS["map_lookup_elem"]
MAP_UPDATE = isa.HELPER_IDS["map_update_elem"]

# A v1 program may use fp-480 .. fp-1 only (the JIT kept 4 saved registers below), so the
# lowered helpers own the 32 bytes under it: a 16-byte copy buffer and two saved pointers.
SCRATCH_BUF = -512          # .. -497
SAVED_UNSAFE = -496
SAVED_SAFE = -488
MEMCMP_CHUNK = 16
MEMCMP_MAX = 64             # the RFC's bpf_memcmp returns -1 for size >= 64


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
    for pc, (ins, piece) in enumerate(zip(v1, pieces, strict=False)):
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
    if name == "bpf_trace_printk":         # same arguments today: fmt, fmt_size, 3 values
        return [_call(TRACE_PRINTK)]
    if name == "bpf_load_pointer":
        return lower_load_pointer()
    if name == "bpf_memcmp":
        size = constant_reg(pc, v1, isa.R3)
        if size is None:
            raise ImageError(errno.EACCES, f"insn {pc}: bpf_memcmp size must be a constant")
        return lower_memcmp(size)
    if name == "bpf_dump_stack":
        # No stack unwinder in the model: the call does nothing (it returned void).
        return [_mov_k(isa.R0, 0)]
    # bpf_table_*(ctx, table_id, key[, leaf]) → map_*(map, key[, value, flags]). The table id
    # must be a constant (the RFC's verifier required a MOV K into r2 on every path).
    table = constant_reg(pc, v1, isa.R2)
    if table is None or not 0 <= table < len(tables):
        raise ImageError(errno.EACCES, f"insn {pc}: table id must be a constant below "
                                       f"{len(tables)}")
    seq = [_mov_x(isa.R2, isa.R3)]
    if name == "bpf_table_update":
        seq += [_mov_x(isa.R3, isa.R4), _mov_k(isa.R4, 0)]
    seq += list(isa.ld_imm64(isa.R1, table, src=isa.PSEUDO_MAP_FD))
    return seq + [_call(MAP_LOOKUP if name == "bpf_table_lookup" else MAP_UPDATE)]


def _call(helper: int) -> Insn:
    return Insn(isa.OP_CALL, 0, 0, 0, helper)


def _mov_k(dst: int, imm: int) -> Insn:
    return Insn(isa.ALU64 | isa.MOV | isa.K, dst, 0, 0, imm)


def _mov_x(dst: int, src: int) -> Insn:
    return Insn(isa.ALU64 | isa.MOV | isa.X, dst, src)


def _add_k(dst: int, imm: int) -> Insn:
    return Insn(isa.ALU64 | isa.ADD | isa.K, dst, 0, 0, imm)


def _ldx(size: int, dst: int, src: int, off: int) -> Insn:
    return Insn(isa.LDX | isa.MEM | size, dst, src, off)


def _stx(size: int, dst: int, src: int, off: int) -> Insn:
    return Insn(isa.STX | isa.MEM | size, dst, src, off)


def lower_load_pointer() -> list[Insn]:
    """``r0 = bpf_load_pointer(r1)``: 8 bytes read with probe_read_kernel into scratch stack
    (a fault leaves zeros there, so the result is NULL as in the RFC)."""
    return [_mov_x(isa.R3, isa.R1), _mov_x(isa.R1, isa.FP), _add_k(isa.R1, SAVED_SAFE),
            _mov_k(isa.R2, 8), _call(PROBE_READ_KERNEL),
            _ldx(isa.DW, isa.R0, isa.FP, SAVED_SAFE)]


def lower_memcmp(size: int) -> list[Insn]:
    """``r0 = bpf_memcmp(unsafe r1, stack r2, size)`` with a constant size: copy the unsafe
    bytes in 16-byte chunks with probe_read_kernel (a fault returns its negative errno), then
    compare byte by byte; r0 is the first difference (as the kernel's memcmp) or 0."""
    if size >= MEMCMP_MAX or size < 0:
        return [_mov_k(isa.R0, -1)]
    if size == 0:
        return [_mov_k(isa.R0, 0)]
    seq = [_stx(isa.DW, isa.FP, isa.R2, SAVED_SAFE), _stx(isa.DW, isa.FP, isa.R1, SAVED_UNSAFE)]
    exits: list[int] = []                    # positions of the jumps to the end
    for start in range(0, size, MEMCMP_CHUNK):
        n = min(MEMCMP_CHUNK, size - start)
        seq += [_mov_x(isa.R1, isa.FP), _add_k(isa.R1, SCRATCH_BUF), _mov_k(isa.R2, n),
                _ldx(isa.DW, isa.R3, isa.FP, SAVED_UNSAFE)]
        if start:
            seq.append(_add_k(isa.R3, start))
        seq.append(_call(PROBE_READ_KERNEL))
        exits.append(len(seq))
        seq.append(Insn(isa.JMP | isa.JNE | isa.K, isa.R0, 0, 0, 0))
        seq.append(_ldx(isa.DW, isa.R2, isa.FP, SAVED_SAFE))
        for k in range(n):
            seq += [_ldx(isa.B, isa.R0, isa.FP, SCRATCH_BUF + k),
                    _ldx(isa.B, isa.R1, isa.R2, start + k),
                    Insn(isa.ALU64 | isa.SUB | isa.X, isa.R0, isa.R1)]
            exits.append(len(seq))
            seq.append(Insn(isa.JMP | isa.JNE | isa.K, isa.R0, 0, 0, 0))
    end = len(seq)
    for at in exits:
        seq[at] = seq[at]._replace(off=end - at - 1)
    return seq


def constant_reg(pc: int, v1: list[Insn], reg: int) -> int | None:
    """The value of the last ``MOV reg, K`` before ``pc`` in straight-line code, if any."""
    jump_targets = {i + x.off + 1 for i, x in enumerate(v1)
                    if x.opcode & 7 == isa.JMP and x.opcode & 0xF0 not in (isa.CALL, isa.EXIT)}
    for i in range(pc - 1, -1, -1):
        if i + 1 in jump_targets:      # another path joins after this point
            return None
        x = v1[i]
        if x.dst == reg and x.opcode == V1_ALU64 | isa.MOV | isa.K:
            return x.imm
        if x.dst == reg and x.opcode & 7 in (V1_ALU64, isa.LDX) or x.opcode == isa.OP_CALL:
            return None
    return None
