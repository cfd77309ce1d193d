"""Assembler and disassembler: LLVM text for every kind of instruction, round trips."""
from __future__ import annotations

import pytest
from tracesim.filters.bpf.runtime.program import ProgramError, check_reserved
from tracesim.filters.bpf.toolchain.asm import AsmError, assemble
from tracesim.filters.bpf.toolchain.disasm import disassemble, format_insn
from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.isa import Insn

# (bytes as llvm-objdump shows them, the text LLVM 14's llvm-objdump prints for them)
LLVM14 = [
    ("04 01 00 00 fb ff ff ff", "w1 += -5"),
    ("0c 21 00 00 00 00 00 00", "w1 += w2"),
    ("84 01 00 00 00 00 00 00", "w1 = -w1"),
    ("c4 01 00 00 fb ff ff ff", "w1 s>>= -5"),
    ("d4 01 00 00 10 00 00 00", "r1 = le16 r1"),
    ("dc 01 00 00 40 00 00 00", "r1 = be64 r1"),
    ("87 01 00 00 00 00 00 00", "r1 = -r1"),
    ("b7 01 00 00 fb ff ff ff", "r1 = -5"),
    ("bf 21 00 00 00 00 00 00", "r1 = r2"),
    ("05 00 03 00 00 00 00 00", "goto +3"),
    ("15 01 03 00 fd ff ff ff", "if r1 == -3 goto +3"),
    ("6d 21 03 00 00 00 00 00", "if r1 s> r2 goto +3"),
    ("de 21 fd ff 00 00 00 00", "if w1 s<= w2 goto -3"),
    ("85 00 00 00 07 00 00 00", "call 7"),
    ("95 00 00 00 00 00 00 00", "exit"),
    ("61 21 f8 ff 00 00 00 00", "r1 = *(u32 *)(r2 - 8)"),
    ("79 63 00 00 00 00 00 00", "r3 = *(u64 *)(r6 + 0)"),
    ("63 2a 10 00 00 00 00 00", "*(u32 *)(r10 + 16) = r2"),
    ("20 00 00 00 0c 00 00 00", "r0 = *(u32 *)skb[12]"),
    ("50 30 00 00 00 00 00 00", "r0 = *(u8 *)skb[r3]"),
    ("c3 21 08 00 00 00 00 00", "lock *(u32 *)(r1 + 8) += r2"),
    ("db 21 08 00 01 00 00 00", "r2 = atomic_fetch_add((u64 *)(r1 + 8), r2)"),
    ("db 21 08 00 50 00 00 00", "lock *(u64 *)(r1 + 8) &= r2"),
    ("db 21 08 00 e1 00 00 00", "r2 = xchg_64(r1 + 8, r2)"),
    ("db 21 08 00 f1 00 00 00", "r0 = cmpxchg_64(r1 + 8, r0, r2)"),
    ("18 01 00 00 78 56 34 12 00 00 00 00 bc 9a 00 00", "r1 = 170132549949048 ll"),
    ("18 11 00 00 03 00 00 00 00 00 00 00 00 00 00 00", "ld_pseudo\tr1, 1, 3"),
]


def _insns(hexbytes: str) -> list[Insn]:
    return isa.decode(bytes.fromhex(hexbytes.replace(" ", "")))


@pytest.mark.parametrize("hexbytes,text", LLVM14, ids=[t for _, t in LLVM14])
def test_llvm14_text(hexbytes, text):
    insns = _insns(hexbytes)
    assert disassemble(insns) == [text]
    assert assemble(text) == insns


def test_issue_examples_in_hex_style():
    lines = ["r1 = *(u64 *)(r7 + 0x8)", "if r1 != 0x65 goto +0x15", "w0 += w1",
             "r1 = 0x7465207025207665 ll", "lock *(u64 *)(r1 + 0x0) += r2", "call 0x4", "exit"]
    insns = assemble("\n".join(lines))
    assert disassemble(insns, hex=True) == lines
    assert insns[6] == Insn(isa.OP_CALL, imm=4)


def test_newer_instructions():
    text = ["r1 s/= r2", "w1 s%= -7", "r1 = (s8)r2", "w3 = (s16)w4", "r0 = *(s16 *)(r1 - 2)",
            "r2 = bswap32 r2", "gotol -2", "if r1 & 5 goto +1", "*(u64 *)(r10 - 8) = -1",
            "w2 = atomic_fetch_xor((u32 *)(r1 + 4), w2)", "w0 = cmpxchg32_32(r1 + 0, w0, w3)",
            "w5 = xchg32_32(r1 + 0, w5)", "lock *(u32 *)(r1 + 0) |= w2", "callx r3",
            "r0 = *(u16 *)skb[r4 + 14]", "ld_pseudo\tr1, 2, 0, 16"]
    assert disassemble(assemble("\n".join(text))) == text


def test_labels_and_local_calls():
    insns = assemble("""
        r0 = 0
    top:
        r0 += 1
        if r0 < 10 goto top
        call sub
        exit
    sub:
        r0 = 7
        exit
    """)
    assert insns[2].off == -2
    assert insns[3] == Insn(isa.OP_CALL, 0, isa.PSEUDO_CALL, 0, 1)
    with pytest.raises(AsmError, match="undefined label"):
        assemble("goto nowhere")
    with pytest.raises(AsmError, match="line 2"):
        assemble("exit\nr1 = = 2")


def test_objdump_lines_accepted():
    text = "       7:\t55 01 05 00 65 00 00 00\tif r1 != 101 goto +5 <LBB0_3>\n"
    assert assemble(text) == [Insn(0x55, 1, 0, 5, 101)]


def _all_valid_slots():
    """One instruction of every valid opcode with varied fields (checked by check_reserved)."""
    out = []
    for op in range(256):
        for dst, src, off, imm in ((1, 2, 0, 0), (3, 0, -4, 16), (0, 7, 1, 0), (9, 1, 0, 32),
                                   (2, 3, 8, 0), (4, 5, 0, -1), (6, 0, 5, 0x41), (0, 0, 0, 64)):
            insn = Insn(op, dst, src, off, imm)
            if op == isa.LD_IMM64:
                continue
            try:
                check_reserved([insn])
            except ProgramError:
                continue
            out.append(insn)
    return out


def test_round_trip_every_opcode():
    slots = _all_valid_slots()
    assert len({i.opcode for i in slots}) >= 120
    for insn in slots:
        text = format_insn(insn)
        assert "unknown" not in text, insn
        assert assemble(text) == [insn], (insn, text)
        assert assemble(format_insn(insn, hex=True)) == [insn], (insn, text)


def test_round_trip_ld_imm64_values():
    for value in (0, 1, 0xFFFFFFFF, 1 << 32, 0xFFFFFFFFFFFFFFFF, 0x8000000000000000):
        pair = list(isa.ld_imm64(5, value))
        assert assemble(disassemble(pair)[0]) == pair
        assert assemble(disassemble(pair, hex=True)[0]) == pair


def test_jump_labels_from_symbols():
    insns = assemble("if r1 == 0 goto +1\nr0 = 1\nexit")
    assert disassemble(insns, labels={2: "LBB0_2"})[0] == "if r1 == 0 goto +1 <LBB0_2>"
