"""Differential property test: random programs give identical results, registers and memory on
the interpreter, the Python JIT and the native (LLVM) tier (ALU, jumps, stack loads/stores,
atomics, bpf-to-bpf calls), and the same with loops: counted loops nested up to three deep,
forward jumps that leave them (one or several levels) or enter a later loop's body, and
arbitrary backward jumps that cross loops."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tracesim.filters.bpf.runtime.program import load_program
from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.interp import Interpreter
from tracesim.filters.bpf.vm.isa import Insn
from tracesim.filters.bpf.vm.jit import JitProgram
from tracesim.filters.bpf.vm.native import NativeProgram

from tests.conftest import FUZZ_LONG

ALU_OPS = [isa.ADD, isa.SUB, isa.MUL, isa.DIV, isa.OR, isa.AND, isa.LSH, isa.RSH, isa.NEG,
           isa.MOD, isa.XOR, isa.MOV, isa.ARSH]
JMP_OPS = list(isa.CONDITIONAL_JUMPS)
IMMS = st.one_of(st.integers(-2**31, 2**31 - 1), st.sampled_from([0, 1, -1, 31, 32, 63, 64, 7,
                                                                   -2**31, 2**31 - 1, 0x80]))
REG = st.integers(0, 9)


@st.composite
def alu(draw, reg=REG):
    cls = draw(st.sampled_from([isa.ALU, isa.ALU64]))
    op = draw(st.sampled_from(ALU_OPS + [isa.END]))
    dst = draw(reg)
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
def stack_access(draw, reg=REG):
    size_code = draw(SIZES)
    size = isa.SIZE_BYTES[size_code]
    off = draw(st.integers(-isa.STACK_SIZE, -size))
    kind = draw(st.sampled_from(["ldx", "ldsx", "st", "stx", "atomic", "via_pointer"]))
    if kind == "ldx":
        return [Insn(isa.LDX | isa.MEM | size_code, draw(reg), isa.R10, off)]
    if kind == "ldsx" and size_code != isa.DW:
        return [Insn(isa.LDX | isa.MEMSX | size_code, draw(reg), isa.R10, off)]
    if kind == "st":
        return [Insn(isa.ST | isa.MEM | size_code, isa.R10, 0, off, draw(IMMS))]
    if kind == "atomic":
        width = draw(st.sampled_from([isa.W, isa.DW]))
        off = draw(st.integers(-isa.STACK_SIZE, -isa.SIZE_BYTES[width]))
        imm = draw(st.sampled_from([0x00, 0x01, 0x40, 0x41, 0x50, 0x51, 0xA0, 0xA1, 0xE1, 0xF1]))
        return [Insn(isa.STX | isa.ATOMIC | width, isa.R10, draw(reg), off, imm)]
    if kind == "via_pointer":       # a pointer in another register: the generic memory path
        ptr = draw(reg)
        return [Insn(isa.ALU64 | isa.MOV | isa.X, ptr, isa.R10),
                Insn(isa.ALU64 | isa.ADD, ptr, 0, 0, off),
                Insn(isa.LDX | isa.MEM | size_code, draw(reg), ptr, 0)]
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
        out += [slot] if isinstance(slot, Insn) else _link_one(starts, pc, slot)
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


# -- programs with loops --------------------------------------------------------------------------
# Random code writes only r0-r5; r6 counts the crossing backward jumps and r7-r9 count the loops
# nested 1-3 deep, so every program ends (or runs out of a small budget, on both engines alike).
DATA_REG = st.integers(0, 5)
CROSS_REG, LOOP_REGS = 6, (7, 8, 9)
LOOP_BUDGET = 20000


def _forward_jump(reg):
    return st.tuples(st.sampled_from(JMP_OPS), st.sampled_from([isa.JMP, isa.JMP32]), reg,
                     st.one_of(REG, IMMS.map(lambda v: ("imm", v))),
                     st.one_of(st.integers(0, 2), st.integers(0, 8)))


@st.composite
def looped_body(draw, depth: int, max_len: int, with_calls: bool):
    """Pieces as in ``body`` plus counted loops (``rC = k; head: ...; rC -= 1; if rC s> 0 goto
    head``) and ``r6 -= 1; if r6 s> 0 goto <any earlier instruction>``."""
    kinds = [alu(DATA_REG).map(lambda i: [i])] * 3 + [stack_access(DATA_REG)] * 2 + [
        _forward_jump(REG).map(lambda t: [t]), st.integers(0, 4).map(lambda k: [("ja", k)]),
        st.just([("cross", 0)]),
        st.tuples(DATA_REG, st.integers(-2**63, 2**64 - 1)).map(lambda t: list(isa.ld_imm64(*t)))]
    if with_calls:
        kinds.append(st.just([("call",)]))
    if depth < len(LOOP_REGS):
        kinds += [st.just([("loop",)])] * 3
    pieces = draw(st.lists(st.one_of(kinds), min_size=2, max_size=max_len))
    out = []
    for piece in pieces:
        if piece == [("loop",)]:
            counter = LOOP_REGS[depth]
            head = object()                      # identifies this loop's head for the linker
            out += [Insn(isa.ALU64 | isa.MOV, counter, imm=draw(st.integers(1, 3))), ("mark", head)]
            out += draw(looped_body(depth + 1, max(2, max_len // 2), with_calls))
            out += [Insn(isa.ALU64 | isa.ADD, counter, imm=-1), ("back", head, counter)]
        elif piece == [("cross", 0)]:
            out += [Insn(isa.ALU64 | isa.ADD, CROSS_REG, imm=-1),
                    ("cross", draw(st.integers(0, 1000)))]
        else:
            out += piece
    return out


def _link_looped(slots):
    """Resolve marks (zero width), loop back edges, crossing backward jumps and forward jumps."""
    heads, real = {}, []
    for slot in slots:
        if isinstance(slot, tuple) and slot[0] == "mark":
            heads[slot[1]] = len(real)
        else:
            real.append(slot)
    starts, pc = [], 0
    while pc < len(real):
        if not isinstance(real[pc], tuple) or real[pc][0] not in ("back", "cross"):
            starts.append(pc)            # no jump lands between a counter's decrement and its test
        pc += 2 if isinstance(real[pc], Insn) and real[pc].opcode == isa.LD_IMM64 else 1
    starts.append(len(real))
    out = []
    for pc, slot in enumerate(real):
        if isinstance(slot, Insn):
            out.append(slot)
        elif slot[0] == "back":
            out.append(Insn(isa.JMP | isa.JSGT, slot[2], off=heads[slot[1]] - pc - 1))
        elif slot[0] == "cross":
            earlier = [s for s in starts if 0 < s < pc] or [pc - 1]   # not the prelude or the jump
            target = earlier[slot[1] % len(earlier)]
            out.append(Insn(isa.JMP | isa.JSGT, CROSS_REG, off=target - pc - 1))
        else:
            out += _link_one(starts, pc, slot)
    return out


def _link_one(starts, pc, slot):
    """A forward jump or call placeholder at ``pc``: jumps go forward to an instruction start."""
    later = [s for s in starts if s > pc]
    if slot[0] == "ja":                    # ("ja",): half way to the end; ("ja", k): k starts on
        target = later[len(later) // 2] if len(slot) == 1 else later[min(slot[1], len(later) - 1)]
        return [Insn(isa.OP_JA, off=target - pc - 1)]
    if slot[0] == "call":
        return [Insn(isa.OP_CALL, 0, isa.PSEUDO_CALL, 0, 0)]
    op, cls, dst, src, skip = slot
    target = later[min(skip, len(later) - 1)]
    if isinstance(src, tuple):
        return [Insn(cls | op, dst, 0, target - pc - 1, src[1])]
    return [Insn(cls | op | isa.X, dst, src, target - pc - 1)]


@st.composite
def looped_programs(draw):
    with_call = draw(st.booleans())
    prelude = [Insn(isa.ALU64 | isa.MOV, CROSS_REG, imm=draw(st.integers(0, 3)))]
    main = _link_looped(prelude + draw(looped_body(0, 12, with_call))) + [Insn(isa.OP_EXIT)]
    if with_call:
        sub = _link_looped(draw(looped_body(1, 6, False))) + [Insn(isa.OP_EXIT)]
        sub_start = len(main)
        main = [i._replace(imm=sub_start - pc - 1) if i.opcode == isa.OP_CALL else i
                for pc, i in enumerate(main)]
        main += sub
    return main


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
    plain = JitProgram(program)        # only r0 read at the exit: more values forwarded
    assert plain.run(b"", args=args) == a, plain.source
    native = NativeProgram(program)
    assert native.run(b"", args=args) == a, native.source
    if a.ok:
        assert interp.regs == native.regs, native.source
    assert interp.stack == native.stack


@pytest.mark.fuzz
@pytest.mark.skipif(not FUZZ_LONG, reason="long fuzz run: TRACESIM_FUZZ=long")
@settings(max_examples=20000, deadline=None, suppress_health_check=list(HealthCheck))
@given(programs(), st.lists(st.integers(0, 2**64 - 1), min_size=4, max_size=4))
def test_interpreter_and_jit_agree_long(insns, args):
    test_interpreter_and_jit_agree.hypothesis.inner_test(insns, args)


def _agree_with_loops(insns, args):
    program = load_program(insns, ctx_size=0)
    interp = Interpreter(program, budget=LOOP_BUDGET)
    jit = JitProgram(program, budget=LOOP_BUDGET, capture_regs=True)
    a = interp.run(b"", args=args)
    b = jit.run(b"", args=args)
    assert a == b, (a, b, jit.source)
    if a.ok:                     # out of budget, the interpreter stops mid-block: memory differs
        assert interp.regs == jit.regs, jit.source
        assert interp.stack == jit.stack
    plain = JitProgram(program, budget=LOOP_BUDGET)   # only r0 read at the exit
    assert plain.run(b"", args=args) == a, plain.source
    native = NativeProgram(program, budget=LOOP_BUDGET)
    assert native.run(b"", args=args) == a, native.source
    if a.ok:
        assert interp.regs == native.regs, native.source
        assert interp.stack == native.stack


@settings(max_examples=2000 if FUZZ_LONG else 200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(looped_programs(), st.lists(st.integers(0, 2**64 - 1), min_size=4, max_size=4))
def test_interpreter_and_jit_agree_with_loops(insns, args):
    _agree_with_loops(insns, args)


@pytest.mark.fuzz
@pytest.mark.skipif(not FUZZ_LONG, reason="long fuzz run: TRACESIM_FUZZ=long")
@settings(max_examples=20000, deadline=None, suppress_health_check=list(HealthCheck))
@given(looped_programs(), st.lists(st.integers(0, 2**64 - 1), min_size=4, max_size=4))
def test_interpreter_and_jit_agree_with_loops_long(insns, args):
    _agree_with_loops(insns, args)
