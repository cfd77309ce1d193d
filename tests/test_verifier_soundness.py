"""Soundness: whatever the verifier accepts runs without faults on the interpreter.

Random programs over ALU/ALU32 (all ops, movsx, bswap), loads/stores/atomics on the stack and on the
conformance memory (r1, length in r2), spills and fills of whole slots, pointer arithmetic,
JMP/JMP32 forward jumps and bounded backward ones, helper calls and exit.  For every accepted
program the interpreter runs it on random memory: no memory fault, no budget overrun, and no
uninitialised register influences the outcome (two runs whose untouched registers start with
different garbage agree on r0 and memory).
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.isa import Insn

from tests.conftest import FUZZ_LONG

MEM_SIZE = 16
# Processed-insn limit of the verifier and instruction budget of the runs: soundness does not
# depend on the limit, and a long loop (a counter of 1 << 31) is rejected in about half a second.
LIMIT = 100_000
ALU_OPS = [isa.ADD, isa.SUB, isa.MUL, isa.DIV, isa.OR, isa.AND, isa.LSH, isa.RSH, isa.MOD,
           isa.XOR, isa.MOV, isa.ARSH]
JMP_OPS = list(isa.CONDITIONAL_JUMPS)
SIZES = [isa.B, isa.H, isa.W, isa.DW]
REG = hs.integers(0, 6)
SMALL = hs.one_of(hs.integers(-20, 40), hs.sampled_from([0xFF, 0xFFFF, -1, 1 << 31, 0x7FFFFFFF]))


@hs.composite
def instruction(draw, pos: int) -> list[Insn]:
    kind = draw(hs.sampled_from(["alu", "alu", "alu", "ldx", "stx", "st", "ptr", "jmp", "jmp",
                                 "misc", "atomic", "call", "loop", "spill"]))
    d, s = draw(REG), draw(REG)
    if kind == "alu":
        cls = draw(hs.sampled_from([isa.ALU, isa.ALU64]))
        op = draw(hs.sampled_from(ALU_OPS))
        if draw(hs.booleans()):
            return [Insn(cls | op | isa.X, d, s, 1 if op in (isa.DIV, isa.MOD)
                         and draw(hs.booleans()) else 0, 0)]
        imm = draw(SMALL)
        if op in (isa.DIV, isa.MOD) and imm == 0:
            imm = 3
        if op in (isa.LSH, isa.RSH, isa.ARSH):
            imm = draw(hs.integers(0, 31 if cls == isa.ALU else 63))
        return [Insn(cls | op | isa.K, d, 0, 0, imm)]
    if kind == "misc":
        choice = draw(hs.integers(0, 3))
        if choice == 0:
            return [Insn(isa.ALU64 | isa.NEG, d, 0, 0, 0)]
        if choice == 1:
            return [Insn(isa.ALU | isa.END | draw(hs.sampled_from([isa.TO_LE, isa.TO_BE])), d, 0,
                         0, draw(hs.sampled_from([16, 32, 64])))]
        if choice == 2:
            return [Insn(isa.ALU64 | isa.MOV | isa.X, d, s, draw(hs.sampled_from([8, 16, 32])), 0)]
        return list(isa.ld_imm64(d, draw(hs.integers(0, (1 << 64) - 1))))
    if kind == "ldx":
        base = draw(hs.sampled_from([1, 10, 6]))
        off = draw(hs.integers(-24, 0) if base == 10 else hs.integers(-4, 20))
        mode = draw(hs.sampled_from([isa.MEM, isa.MEM, isa.MEMSX]))
        size = draw(hs.sampled_from(SIZES if mode == isa.MEM else SIZES[:3]))
        return [Insn(isa.LDX | mode | size, d, base, off, 0)]
    if kind in ("stx", "st"):
        base = draw(hs.sampled_from([1, 10, 6]))
        off = draw(hs.integers(-24, 0) if base == 10 else hs.integers(-4, 20))
        size = draw(hs.sampled_from(SIZES))
        if kind == "st":
            return [Insn(isa.ST | isa.MEM | size, base, 0, off, draw(SMALL))]
        return [Insn(isa.STX | isa.MEM | size, base, s, off, 0)]
    if kind == "spill":
        # a whole-slot spill or fill: pointers and offsets that come back from the stack
        slot = draw(hs.sampled_from([-8, -16, -24]))
        if draw(hs.booleans()):
            return [Insn(isa.STX | isa.MEM | isa.DW, 10, draw(hs.sampled_from([1, 6, s])), slot, 0)]
        return [Insn(isa.LDX | isa.MEM | isa.DW, draw(hs.sampled_from([6, d])), 10, slot, 0)]
    if kind == "atomic":
        base = draw(hs.sampled_from([1, 10]))
        op = draw(hs.sampled_from([isa.ATOMIC_ADD, isa.ATOMIC_OR | isa.FETCH, isa.XCHG,
                                   isa.CMPXCHG]))
        return [Insn(isa.STX | isa.ATOMIC | draw(hs.sampled_from([isa.W, isa.DW])), base, s,
                     draw(hs.sampled_from([-8, -16, 0, 8])), op)]
    if kind == "ptr":
        return [Insn(isa.ALU64 | isa.MOV | isa.X, 6, draw(hs.sampled_from([1, 10])), 0, 0),
                Insn(isa.ALU64 | isa.ADD | isa.X, 6, s, 0, 0)]
    if kind == "call":
        return [Insn(isa.OP_CALL, 0, 0, 0, 5)]
    if kind == "loop":
        # a counted loop: r7 = n; body; r7 -= 1; if r7 != 0 goto body
        n = draw(hs.integers(1, 4))
        return [Insn(isa.ALU64 | isa.MOV | isa.K, 7, 0, 0, n),
                Insn(isa.ALU64 | isa.ADD | isa.K, 0, 0, 0, 1),
                Insn(isa.ALU64 | isa.SUB | isa.K, 7, 0, 0, 1),
                Insn(isa.JMP | isa.JNE | isa.K, 7, 0, -3, 0)]
    cls = draw(hs.sampled_from([isa.JMP, isa.JMP32]))
    op = draw(hs.sampled_from(JMP_OPS))
    off = draw(hs.integers(0, 3))
    if draw(hs.booleans()):
        return [Insn(cls | op | isa.X, d, s, off, 0)]
    return [Insn(cls | op | isa.K, d, 0, off, draw(SMALL))]


@hs.composite
def program(draw) -> list[Insn]:
    out: list[Insn] = []
    for r in (0, 3, 4, 5, 6, 7):     # mostly initialised, so that many programs get accepted
        if draw(hs.integers(0, 9)):
            out.append(Insn(isa.ALU64 | isa.MOV | isa.K, r, 0, 0, draw(SMALL)))
    for _ in range(draw(hs.integers(1, 14))):
        out += draw(instruction(len(out)))
    out.append(Insn(isa.OP_EXIT))
    # forward jumps must land on an instruction (not past exit, not inside an LD_IMM64)
    fixed = []
    for i, insn in enumerate(out):
        if isa.is_jump(insn) and insn.off >= 0:
            insn = insn._replace(off=min(insn.off, len(out) - 1 - i - 1))
        fixed.append(insn)
    return fixed


def _run(insns, mem: bytes, garbage: int):
    from tracesim.filters.bpf.runtime.program import load_program
    from tracesim.filters.bpf.vm.conformance import suite_helpers
    from tracesim.filters.bpf.vm.interp import Interpreter

    class Poisoned(Interpreter):
        def _start(self, ctx, env, packet, args):
            super()._start(ctx, env, packet, args)
            for r in (0, 3, 4, 5, 6, 7, 8, 9):
                self.regs[r] = garbage

    prog = load_program(insns, helpers=suite_helpers(), ctx_size=len(mem), ctx_writable=True)
    buf = bytearray(mem)
    # an accepted bounded loop may run as many instructions as the verifier may process
    res = Poisoned(prog, budget=LIMIT).run(buf, args=(len(mem),))
    return res, bytes(buf)


def _check(insns, mem: bytes) -> None:
    from tracesim.filters.bpf.verifier import ContextSpec, verify
    res = verify(insns, prog_type="conformance", ctx=ContextSpec.memory(len(mem)), log_level=0,
                 complexity_limit=LIMIT)
    if not res.ok:
        return
    a, mem_a = _run(insns, mem, 0x5A5A5A5A5A5A5A5A)
    b, mem_b = _run(insns, mem, 0x0123456789ABCDEF)
    assert a.ok, f"accepted program faulted: {a.error}"
    assert b.ok, f"accepted program faulted: {b.error}"
    assert (a.value, mem_a) == (b.value, mem_b), "an uninitialised register reached the result"


_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                        HealthCheck.filter_too_much])


@settings(max_examples=120, **_SETTINGS)
@given(program(), hs.binary(min_size=MEM_SIZE, max_size=MEM_SIZE))
def test_accepted_programs_run_safely(insns, mem):
    _check(insns, mem)


@pytest.mark.fuzz
@pytest.mark.skipif(not FUZZ_LONG, reason="long fuzz: TRACESIM_FUZZ=long (make fuzz)")
@settings(max_examples=20_000, **_SETTINGS)
@given(program(), hs.binary(min_size=MEM_SIZE, max_size=MEM_SIZE))
def test_accepted_programs_run_safely_long(insns, mem):
    _check(insns, mem)
