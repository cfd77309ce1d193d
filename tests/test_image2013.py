"""The 2013 RFC's ``"bpf\\0"`` images: parsing, translation to eBPF, the lowered v1 helpers, and
filter_ex1 / a table-counting program built from v1 instructions and written to ``filter``."""
from __future__ import annotations

import errno
import os
import re
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tracesim.filters.bpf.runtime.program import load_program
from tracesim.filters.bpf.toolchain import image2013
from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.interp import Interpreter
from tracesim.filters.bpf.vm.isa import Insn
from tracesim.kernel_model.c_types import kernel_types

from tests.conftest import FUZZ_LONG

NETIF = "/events/net/netif_receive_skb"
SKB_DEV = kernel_types().struct("sk_buff").offsetof("dev")   # 3.13 had 32; the model is 6.18
DEV_NAME = kernel_types().struct("net_device").offsetof("name")   # 3.13 had 0; 6.18 has 0x118
R0, R1, R2, R3, R4, R5, R6, R7, FP = 0, 1, 2, 3, 4, 5, 6, 7, 10


# v1 encodings (notes §1): class 4 is the 64-bit ALU, memory mode REL 0xc0, XADD 0xe0, RET 0x06
def st_w(dst: int, off: int, imm: int) -> Insn: return Insn(0xC2, dst, 0, off, imm)
def st_dw(dst: int, off: int, imm: int) -> Insn: return Insn(0xDA, dst, 0, off, imm)
def ldx_dw(dst: int, src: int, off: int) -> Insn: return Insn(0xD9, dst, src, off, 0)
def stx_dw(dst: int, src: int, off: int) -> Insn: return Insn(0xDB, dst, src, off, 0)
def xadd_dw(dst: int, src: int, off: int) -> Insn: return Insn(0xFB, dst, src, off, 0)
def mov_x(dst: int, src: int) -> Insn: return Insn(0xBC, dst, src)
def mov_k(dst: int, imm: int) -> Insn: return Insn(0xB4, dst, 0, 0, imm)
def add_k(dst: int, imm: int) -> Insn: return Insn(0x04, dst, 0, 0, imm)
def call(name_off: int) -> Insn: return Insn(0x85, 0, 0, 0, name_off)
def jne_k(dst: int, imm: int, off: int) -> Insn: return Insn(0x55, dst, 0, off, imm)
def jeq_k(dst: int, imm: int, off: int) -> Insn: return Insn(0x15, dst, 0, off, imm)
def ja(off: int) -> Insn: return Insn(0x0D, 0, 0, off, 0)
RET = Insn(0x06)


def image(insns: list[Insn], strtab: bytes, tables: list[tuple[int, ...]] = ()) -> bytes:
    code = isa.encode(insns)
    htab = b"".join(struct.pack("<IIIII", *t) for t in tables)
    return b"bpf\0" + struct.pack("<iii", len(code), len(htab), len(strtab)) + code + htab + strtab


EX1_STRTAB = b"\0bpf_load_pointer\0bpf_memcmp\0bpf_trace_printk\0"


def filter_ex1(dev_offset: int = SKB_DEV, name_offset: int = DEV_NAME) -> bytes:
    """The RFC's filter_ex1 (notes §7), with the model's offsets of skb->dev and dev->name (the
    RFC's image, for 3.13, compares dev->name at the start of the net_device)."""
    name_at = [add_k(R1, name_offset)] if name_offset else []
    fmt = b"skb %p dev %p \n\0"
    words = [int.from_bytes(fmt[i:i + 4], "little") for i in range(0, 16, 4)]
    insns = [
        st_w(FP, -20, int.from_bytes(b"lo\0\0", "little")),
        ldx_dw(R6, R1, 104),                      # skb = ctx->regs.si
        mov_x(R1, R6), add_k(R1, dev_offset),
        call(1),                                  # dev = bpf_load_pointer(&skb->dev)
        mov_x(R7, R0),
        mov_k(R3, 2), mov_x(R2, FP), add_k(R2, -20), mov_x(R1, R7), *name_at,
        call(18),                                 # bpf_memcmp(dev->name, "lo", 2)
        jne_k(R0, 0, 11),
        *[st_w(FP, -16 + 4 * i, w) for i, w in enumerate(words)],
        mov_x(R1, FP), add_k(R1, -16), mov_k(R2, 16), mov_x(R3, R6), mov_x(R4, R7),
        mov_k(R5, 0),
        call(29),                                 # bpf_trace_printk(fmt, 16, skb, dev, 0)
        RET,
    ]
    assert len(insns) == 24 + len(name_at)
    return image(insns, EX1_STRTAB)


def counter_image() -> bytes:
    """Packets per device in table 0 (HASH, key = dev pointer): lookup + XADD, else update."""
    insns = [
        ldx_dw(R6, R1, 104), mov_x(R1, R6), add_k(R1, SKB_DEV), call(1),
        stx_dw(FP, R0, -8),
        mov_k(R2, 0), mov_x(R3, FP), add_k(R3, -8), call(18),    # bpf_table_lookup(ctx, 0, &dev)
        jeq_k(R0, 0, 3),
        mov_k(R1, 1), xadd_dw(R0, R1, 0),
        ja(7),
        st_dw(FP, -16, 1),
        mov_k(R2, 0), mov_x(R3, FP), add_k(R3, -8), mov_x(R4, FP), add_k(R4, -16),
        call(35),                                                # bpf_table_update(...)
        RET,
    ]
    strtab = b"\0bpf_load_pointer\0bpf_table_lookup\0bpf_table_update\0"
    return image(insns, strtab, [(1, 8, 8, 64, 0)])


# ---------------------------------------------------------------------------------------------

def test_sizes_match_the_rfc():
    assert len(filter_ex1(name_offset=0)) == 254          # notes §2: 16 + 24*8 + 0 + 46


@pytest.mark.parametrize("data, err, text", [
    (b"bpf\0" + bytes(4), errno.EINVAL, "invalid bpf image, size=8"),
    (b"elf\0" + bytes(20), errno.EINVAL, "invalid bpf image, size=24"),
    (b"bpf\0" + struct.pack("<iii", 12, 0, 0) + bytes(12), errno.E2BIG, "BPF program has 1 insn"),
    (b"bpf\0" + struct.pack("<iii", 8, 0, 0) + bytes(16), errno.E2BIG, "Max is 4096/64"),
    (image([RET], b"\0x"), errno.EINVAL, "string table does not end"),
    (image([call(5), RET], b"\0abc\0"), errno.EINVAL, "invalid func offset 5"),
    (image([call(1), RET], b"\0nosuch\0"), errno.EINVAL, "unknown func 'nosuch'"),
    (image([Insn(0x05), RET], b"\0"), errno.EINVAL, "'ja' without the X bit"),
    (image([jne_k(R0, 0, 5), RET], b"\0"), errno.EACCES, "jump out of range"),
    (image([mov_x(R2, R3), call(1), RET], b"\0bpf_table_lookup\0", [(1, 8, 8, 4, 0)]),
     errno.EACCES, "table id must be a constant"),
])
def test_rejected_images(data, err, text):
    with pytest.raises(image2013.ImageError) as info:
        image2013.parse_image(data)
    assert info.value.errno == err and text in info.value.message


def test_translation_of_v1_forms():
    img = image2013.parse_image(image([add_k(R1, 3), ldx_dw(R2, R1, 8), xadd_dw(FP, R2, -8),
                                       Insn(0xD4, R2, 0, 0, 0), ja(0), RET], b"\0"))
    assert img.insns == [
        Insn(isa.ALU64 | isa.ADD | isa.K, R1, 0, 0, 3),
        Insn(isa.LDX | isa.MEM | isa.DW, R2, R1, 8),
        Insn(isa.STX | isa.ATOMIC | isa.DW, FP, R2, -8, isa.ATOMIC_ADD),
        Insn(isa.ALU64 | isa.END | isa.K, R2, 0, 0, 32),           # BSWAP32
        Insn(isa.OP_JA),
        Insn(isa.ALU64 | isa.MOV | isa.K, R0, 0, 0, 0), Insn(isa.OP_EXIT),   # RET: r0 = 0
    ]


def test_table_calls_become_map_calls_and_jumps_are_reaimed():
    img = image2013.parse_image(counter_image())
    assert img.tables[0].key_size == 8 and img.tables[0].max_entries == 64
    calls = [i.imm for i in img.insns if i.opcode == isa.OP_CALL]
    assert calls == [113, 1, 2]
    maps = [i for i in img.insns if i.opcode == isa.LD_IMM64]
    assert all(m.src == isa.PSEUDO_MAP_FD and m.imm == 0 for m in maps) and len(maps) == 2
    for pc, insn in enumerate(img.insns):        # every jump lands on a translated v1 start
        if isa.is_jump(insn):
            assert 0 <= isa.jump_target(pc, insn) < len(img.insns)


def run_lowered(body: list[Insn]) -> int:
    program = load_program(body + [Insn(isa.OP_EXIT)])
    return Interpreter(program)(b"")


def stores(base: int, data: bytes) -> list[Insn]:
    return [Insn(isa.ST | isa.MEM | isa.B, FP, 0, base + i, b) for i, b in enumerate(data)]


@settings(max_examples=400 if FUZZ_LONG else 40, deadline=None)
@given(st.binary(min_size=1, max_size=63), st.data())
def test_lowered_memcmp_is_memcmp(a, data):
    b = bytearray(a)
    if data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(a) - 1))
        b[i] = data.draw(st.integers(0, 255))
    body = stores(-200, a) + stores(-400, bytes(b)) + [
        Insn(isa.ALU64 | isa.MOV | isa.X, R1, FP), Insn(isa.ALU64 | isa.ADD | isa.K, R1, 0, 0, -200),
        Insn(isa.ALU64 | isa.MOV | isa.X, R2, FP), Insn(isa.ALU64 | isa.ADD | isa.K, R2, 0, 0, -400),
        *image2013.lower_memcmp(len(a))]
    got = isa.to_s64(run_lowered(body))
    diff = next((x - y for x, y in zip(a, b, strict=False) if x != y), 0)
    assert got == diff


def test_lowered_memcmp_limits():
    assert isa.to_s64(run_lowered(image2013.lower_memcmp(64))) == -1
    assert run_lowered(image2013.lower_memcmp(0)) == 0


def test_lowered_load_pointer_reads_or_gives_null():
    value = 0xFFFF888812345678
    body = [*isa.ld_imm64(R3, value), Insn(isa.STX | isa.MEM | isa.DW, FP, R3, -64),
            Insn(isa.ALU64 | isa.MOV | isa.X, R1, FP), Insn(isa.ALU64 | isa.ADD | isa.K, R1, 0, 0, -64),
            *image2013.lower_load_pointer()]
    assert run_lowered(body) == value
    assert run_lowered([Insn(isa.ALU64 | isa.MOV | isa.K, R1, 0, 0, 0x1234),
                        *image2013.lower_load_pointer()]) == 0


# ---------------------------------------------------------------------------------------------
# through the filter file

def write(tree, path: str, data: bytes) -> None:
    handle = tree.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        handle.write(data, 0)
        handle.flush()
    finally:
        handle.release()


def test_filter_ex1_image_on_netif_receive_skb(system):
    tree = system.tree
    write(tree, NETIF + "/filter", filter_ex1())
    shown = tree.read_text(NETIF + "/filter")
    assert re.fullmatch(r"bpf bpf-2013 bpf_image \d+ insns jited\n", shown)
    tree.echo(NETIF + "/enable", "1")
    for dev in ("lo", "eth0", "lo"):
        assert system.control(["send", dev, "--len", "84"])[0] == 0
    lines = [line for line in tree.read_text("/trace").splitlines() if not line.startswith("#")]
    # 2013 semantics: the event itself is never recorded; only lo packets print, each message
    # ("...\n") followed by the empty line TP_printk's own "\n" makes
    assert len(lines) == 4 and lines[1::2] == ["", ""]
    for line in lines[0::2]:
        assert re.search(r"tracesim-ctl-\d+ +\[000\] \S{5} +\d+\.\d{6}: bpf_trace_printk: "
                         r"skb [0-9a-f]{16} dev [0-9a-f]{16} $", line), line


def test_filter_ex1_image_on_the_interpreter(system):
    tree = system.tree
    system.control(["bpf-engine", "interp"])
    write(tree, NETIF + "/filter", filter_ex1())
    assert tree.read_text(NETIF + "/filter").endswith("insns interpreted\n")
    tree.echo(NETIF + "/enable", "1")
    system.control(["send", "lo", "--len", "84"])
    system.control(["send", "eth0", "--len", "84"])
    assert tree.read_text("/trace").count("bpf_trace_printk: skb ") == 1


def test_counting_image_fills_its_table(system):
    tree = system.tree
    write(tree, NETIF + "/filter", counter_image())
    tree.echo(NETIF + "/enable", "1")
    system.control(["send", "lo", "--len", "84", "--count", "2"])
    system.control(["send", "eth0", "--len", "84", "--count", "3"])
    status, dump = system.control(["map", "dump", "table0"])
    assert status == 0
    values = sorted(re.findall(r"value: ((?:[0-9a-f]{2} ?){8})", dump))
    assert values == ["02 00 00 00 00 00 00 00", "03 00 00 00 00 00 00 00"]
    assert "bpf_trace_printk" not in tree.read_text("/trace")


def test_bad_image_is_eacces_with_the_rfc_message(system):
    tree = system.tree
    with pytest.raises(OSError) as info:
        write(tree, NETIF + "/filter", b"bpf\0" + bytes(10))
    assert info.value.errno == errno.EACCES
    assert "bpf: error: invalid bpf image, size=14" in tree.read_text("/error_log")
    assert tree.read_text(NETIF + "/filter") == "none\n"
