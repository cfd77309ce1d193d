"""Differential property test for loops that count up (``for (i = a; i < K; i += c)`` as clang
and tracesim cc lay them out): the interpreter and the Python JIT agree on the result, the
registers and the stack, for any start value, bound, step, comparison (unsigned or signed,
64- or 32-bit, against a constant or a register) and instruction budget — including budgets
that run out inside the loop.  The JIT reads register widths off such loops (masks dropped,
signed compares made plain, no budget test on the jump back), so this is where it must not be
wrong."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tracesim.filters.bpf.runtime.program import load_program
from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.interp import Interpreter
from tracesim.filters.bpf.vm.isa import Insn
from tracesim.filters.bpf.vm.jit import JitProgram

from tests.conftest import FUZZ_LONG

BODY_OPS = [isa.ADD, isa.SUB, isa.OR, isa.AND, isa.LSH, isa.RSH, isa.XOR, isa.MOV, isa.ARSH]
BACK_OPS = [isa.JLT, isa.JLE, isa.JSLT, isa.JSLE, isa.JNE, isa.JGT, isa.JSGT]
SMALL = st.one_of(st.integers(-3, 40), st.sampled_from([2**31 - 1, -2**31, -1, 2**30]))


@st.composite
def body_insn(draw):
    cls = draw(st.sampled_from([isa.ALU, isa.ALU64]))
    op = draw(st.sampled_from(BODY_OPS))
    dst = draw(st.integers(0, 4))
    if draw(st.booleans()):
        return Insn(cls | op | isa.X, dst, draw(st.integers(0, 6)))
    imm = draw(st.integers(0, 31) if op in (isa.LSH, isa.RSH, isa.ARSH) else SMALL)
    return Insn(cls | op, dst, imm=imm)


@st.composite
def counted_loop(draw):
    """r6 = start; [r7 = bound]; head: body (maybe with a forward jump inside); r6 += step;
    if r6 <op> bound goto head; r0 += r6; exit."""
    wide = draw(st.booleans())
    start = draw(SMALL)
    bound = draw(SMALL)
    step_cls = draw(st.sampled_from([isa.ALU, isa.ALU64]))
    step = draw(st.one_of(st.integers(1, 5), st.sampled_from([-1, 2**31 - 1])))
    op = draw(st.sampled_from(BACK_OPS))
    by_reg = draw(st.booleans())
    body = draw(st.lists(body_insn(), min_size=0, max_size=5))
    if body and draw(st.booleans()):      # an if-then inside the body
        at = draw(st.integers(0, len(body) - 1))
        skip = len(body) - at
        body.insert(at, Insn((isa.JMP if draw(st.booleans()) else isa.JMP32)
                             | draw(st.sampled_from(list(isa.CONDITIONAL_JUMPS))),
                             draw(st.integers(0, 6)), imm=draw(SMALL), off=skip))
    if draw(st.booleans()):               # the counter rewritten in the body: no longer counted
        body.append(Insn(isa.ALU64 | isa.MOV | isa.X, 6, draw(st.integers(0, 4))))
    insns = [Insn(isa.ALU64 | isa.MOV, 0, imm=0), Insn(isa.ALU64 | isa.MOV, 6, imm=start),
             Insn(isa.ALU64 | isa.MOV, 7, imm=bound)]
    if draw(st.booleans()):               # a start of unknown width (the first argument)
        insns.append(Insn(isa.ALU64 | isa.MOV | isa.X, 6, 1))
    insns += body
    insns.append(Insn(step_cls | isa.ADD, 6, imm=step))
    jmp = isa.JMP if wide else isa.JMP32
    back = -(len(body) + 2)
    if by_reg:
        insns.append(Insn(jmp | op | isa.X, 6, 7, off=back))
    else:
        insns.append(Insn(jmp | op, 6, imm=bound, off=back))
    insns += [Insn(isa.ALU64 | isa.ADD | isa.X, 0, 6), Insn(isa.OP_EXIT)]
    return insns


def _agree(insns, args, budget):
    program = load_program(insns, ctx_size=0)
    interp = Interpreter(program, budget=budget)
    jit = JitProgram(program, budget=budget, capture_regs=True)
    a = interp.run(b"", args=args)
    b = jit.run(b"", args=args)
    assert a == b, (a, b, jit.source)
    if a.ok:
        assert interp.regs == jit.regs, jit.source
        assert interp.stack == jit.stack
    plain = JitProgram(program, budget=budget)
    assert plain.run(b"", args=args) == a, plain.source


@settings(max_examples=3000 if FUZZ_LONG else 300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(counted_loop(), st.lists(st.integers(0, 2**64 - 1), min_size=4, max_size=4),
       st.one_of(st.integers(1, 60), st.just(2000)))
def test_counted_loops_agree(insns, args, budget):
    _agree(insns, args, budget)


def test_counted_loop_runs_out_of_budget_inside():
    # r6 counts 0..99 by one: 3 + 100 * 3 + 2 instructions; the budget ends mid-loop
    insns = [Insn(isa.ALU64 | isa.MOV, 0, imm=0), Insn(isa.ALU64 | isa.MOV, 6, imm=0),
             Insn(isa.ALU64 | isa.MOV, 7, imm=0),
             Insn(isa.ALU64 | isa.XOR | isa.X, 0, 6), Insn(isa.ALU | isa.ADD, 6, imm=1),
             Insn(isa.JMP32 | isa.JSLT, 6, imm=100, off=-3),
             Insn(isa.ALU64 | isa.ADD | isa.X, 0, 6), Insn(isa.OP_EXIT)]
    for budget in (100, 304, 305, 306):
        _agree(insns, [0, 0, 0, 0], budget)
    program = load_program(insns, ctx_size=0)
    assert not JitProgram(program, budget=304).run(b"").ok
    assert JitProgram(program, budget=305).run(b"").ok


def test_long_counted_loop_still_runs_out_of_budget():
    # w6 counts to 2**31 - 1: bounded, but far past any budget; the JIT must stop it in time
    insns = [Insn(isa.ALU64 | isa.MOV, 0, imm=0), Insn(isa.ALU64 | isa.MOV, 6, imm=0),
             Insn(isa.ALU | isa.ADD, 6, imm=1), Insn(isa.JMP32 | isa.JLT, 6, imm=2**31 - 1, off=-2),
             Insn(isa.OP_EXIT)]
    program = load_program(insns, ctx_size=0)
    result = JitProgram(program, budget=2000).run(b"")
    assert not result.ok and "budget of 2000" in result.error
    assert result == Interpreter(program, budget=2000).run(b"")
