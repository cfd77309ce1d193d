"""Differential property test: random programs give identical results, registers and memory on
the interpreter and the JIT (ALU, jumps, stack loads/stores, atomics, bpf-to-bpf calls)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import FUZZ_LONG
from filters.bpf import isa
from filters.bpf.interp import Interpreter
from filters.bpf.isa import Insn
from filters.bpf.jit import JitProgram
from filters.bpf.program import load_program

ALU_OPS = [isa.ADD, isa.SUB, isa.MUL, isa.DIV, isa.OR, isa.AND, isa.LSH, isa.RSH, isa.NEG,
           isa.MOD, isa.XOR, isa.MOV, isa.ARSH]
JMP_OPS = list(isa.CONDITIONAL_JUMPS)
IMMS = st.one_of(st.integers(-2**31, 2**31 - 1), st.sampled_from([0, 1, -1, 31, 32, 63, 64, 7,
                                                                   -2**31, 2**31 - 1, 0x80]))
REG = st.integers(0, 9)


@st.composite
def alu(draw):
    cls = draw(st.sampled_from([isa.ALU, isa.ALU64]))
    op = draw(st.sampled_from(ALU_OPS + [isa.END]))
    dst = draw(REG)
    if op == isa.END:
        if cls == isa.ALU64:
            return Insn(isa.ALU64 | isa.END, dst, imm=draw(st.sampled_from([16, 32, 64])))
        return Insn(isa.ALU | isa.END | draw(st.sampled_from([isa.TO_LE, isa.TO_BE])), dst,
                    imm=draw(st.sampled_from([16, 32, 64])))
    if op == isa.NEG:
        return Insn(cls | op, dst)
    off = 0
    if op in (isa.DIV, isa.MOD):
        off = draw(st.sampled_from([0, 1]))
    if draw(st.booleans()):
        if op == isa.MOV:
            off = draw(st.sampled_from([0, 8, 16, 32] if cls == isa.ALU64 else [0, 8, 16]))
        return Insn(cls | op | isa.X, dst, draw(REG), off)
    return Insn(cls | op, dst, 0, off, draw(IMMS))


SIZES = st.sampled_from([isa.B, isa.H, isa.W, isa.DW])


@st.composite
def stack_access(draw):
    size_code = draw(SIZES)
    size = isa.SIZE_BYTES[size_code]
    off = draw(st.integers(-isa.STACK_SIZE, -size))
    kind = draw(st.sampled_from(["ldx", "ldsx", "st", "stx", "atomic", "via_pointer"]))
    if kind == "ldx":
        return [Insn(isa.LDX | isa.MEM | size_code, draw(REG), isa.R10, off)]
    if kind == "ldsx" and size_code != isa.DW:
        return [Insn(isa.LDX | isa.MEMSX | size_code, draw(REG), isa.R10, off)]
    if kind == "st":
        return [Insn(isa.ST | isa.MEM | size_code, isa.R10, 0, off, draw(IMMS))]
    if kind == "atomic":
        width = draw(st.sampled_from([isa.W, isa.DW]))
        off = draw(st.integers(-isa.STACK_SIZE, -isa.SIZE_BYTES[width]))
        imm = draw(st.sampled_from([0x00, 0x01, 0x40, 0x41, 0x50, 0x51, 0xA0, 0xA1, 0xE1, 0xF1]))
        return [Insn(isa.STX | isa.ATOMIC | width, isa.R10, draw(REG), off, imm)]
    if kind == "via_pointer":       # a pointer in another register: the generic memory path
        reg = draw(REG)
        return [Insn(isa.ALU64 | isa.MOV | isa.X, reg, isa.R10),
                Insn(isa.ALU64 | isa.ADD, reg, 0, 0, off),
                Insn(isa.LDX | isa.MEM | size_code, draw(REG), reg, 0)]
    return [Insn(isa.STX | isa.MEM | size_code, isa.R10, draw(REG), off)]


@st.composite
def body(draw, max_len: int, calls_to: int | None):
    """A straight list of pieces; forward jumps are fixed up after the length is known."""
    pieces = draw(st.lists(st.one_of(
        alu().map(lambda i: [i]), stack_access(),
        st.tuples(st.sampled_from(JMP_OPS), st.sampled_from([isa.JMP, isa.JMP32]), REG,
                  st.one_of(REG, IMMS.map(lambda v: ("imm", v))), st.integers(0, 6)).map(lambda t: [t]),
        st.just([("ja",)]),
        st.tuples(REG, st.integers(-2**63, 2**64 - 1)).map(lambda t: list(isa.ld_imm64(*t))),
        st.just([("call",)]) if calls_to is not None else alu().map(lambda i: [i]),
    ), min_size=1, max_size=max_len))
    return [slot for piece in pieces for slot in piece]


def _link(slots, call_target_slot):
    """Resolve jump/call placeholders: jumps go forward to an instruction start in range."""
    starts = []
    pc = 0
    while pc < len(slots):
        starts.append(pc)
        pc += 2 if isinstance(slots[pc], Insn) and slots[pc].opcode == isa.LD_IMM64 else 1
    starts.append(len(slots))                       # the exit that follows the body
    out = []
    for pc, slot in enumerate(slots):
        if isinstance(slot, Insn):
            out.append(slot)
            continue
        later = [s for s in starts if s > pc]
        if slot[0] == "ja":
            out.append(Insn(isa.OP_JA, off=later[len(later) // 2] - pc - 1))
        elif slot[0] == "call":
            out.append(Insn(isa.OP_CALL, 0, isa.PSEUDO_CALL, 0, 0))   # fixed by the caller
        else:
            op, cls, dst, src, skip = slot
            target = later[min(skip, len(later) - 1)]
            if isinstance(src, tuple):
                out.append(Insn(cls | op, dst, 0, target - pc - 1, src[1]))
            else:
                out.append(Insn(cls | op | isa.X, dst, src, target - pc - 1))
    return out


@st.composite
def programs(draw):
    with_call = draw(st.booleans())
    main = _link(draw(body(25, 0 if with_call else None)), None) + [Insn(isa.OP_EXIT)]
    if with_call:
        sub = _link(draw(body(10, None)), None) + [Insn(isa.OP_EXIT)]
        sub_start = len(main)
        main = [i._replace(imm=sub_start - pc - 1) if i.opcode == isa.OP_CALL else i
                for pc, i in enumerate(main)]
        main += sub
    return main


def _run(engine, args):
    result = engine.run(b"", args=args)
    return result


@settings(max_examples=1500 if FUZZ_LONG else 150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(programs(), st.lists(st.integers(0, 2**64 - 1), min_size=4, max_size=4))
def test_interpreter_and_jit_agree(insns, args):
    program = load_program(insns, ctx_size=0)
    interp = Interpreter(program)
    jit = JitProgram(program, capture_regs=True)
    a = interp.run(b"", args=args)
    b = jit.run(b"", args=args)
    assert a == b, (a, b, jit.source)
    if a.ok:
        assert interp.regs == jit.regs, jit.source
    assert interp.stack == jit.stack


@pytest.mark.fuzz
@pytest.mark.skipif(not FUZZ_LONG, reason="long fuzz run: TRACESIM_FUZZ=long")
@settings(max_examples=20000, deadline=None, suppress_health_check=list(HealthCheck))
@given(programs(), st.lists(st.integers(0, 2**64 - 1), min_size=4, max_size=4))
def test_interpreter_and_jit_agree_long(insns, args):
    test_interpreter_and_jit_agree.hypothesis.inner_test(insns, args)
