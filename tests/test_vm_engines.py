"""Behaviour of both engines seen from outside: RFC 9669 edge cases, memory faults, budget, call
depth, helpers, legacy packet loads, map pseudo loads, load-time errors."""
from __future__ import annotations

import re

import pytest
from tracesim.filters.bpf.runtime.helper_table import TABLE
from tracesim.filters.bpf.runtime.helpers import StopProgram, register, unregister
from tracesim.filters.bpf.runtime.program import (
    ProgramError,
    check_reserved,
    load_program,
    map_from_handle,
)
from tracesim.filters.bpf.toolchain.asm import assemble
from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.interp import Interpreter
from tracesim.filters.bpf.vm.isa import Insn
from tracesim.filters.bpf.vm.jit import compile_program
from tracesim.filters.bpf.vm.memory import CTX_BASE, Memory, MemoryFault

ENGINES = {"interp": Interpreter, "jit": lambda p: compile_program(p)}


def run(engine: str, text: str, ctx=b"", **kw):
    program = load_program(assemble(text), ctx_size=len(ctx), **kw.pop("load", {}))
    return ENGINES[engine](program).run(ctx, **kw)


@pytest.fixture(params=sorted(ENGINES))
def engine(request):
    return request.param


@pytest.mark.parametrize("text,expected", [
    ("r0 = -1\nr0 += 1", 0),                                    # 64-bit wraparound
    ("r0 = -1\nw0 += 1", 0),
    ("r0 = -1\nw0 = w0", 0xFFFFFFFF),                           # 32-bit ops zero the upper half
    ("r0 = 1\nr0 <<= 65", 2),                                   # shift counts are masked
    ("r0 = 1\nr1 = 33\nw0 <<= w1", 2),
    ("r0 = 7\nr1 = 0\nr0 /= r1", 0),                            # division by zero gives 0
    ("r0 = 7\nr1 = 0\nr0 %= r1", 7),                            # modulo by zero keeps the dividend
    ("r0 = -1\nr1 = 0\nw0 %= w1", 0xFFFFFFFF),                  # ... and ALU zeroes the top
    ("r0 = 1 ll\nr0 <<= 63\nr1 = -1\nr0 s/= r1", 1 << 63),      # INT_MIN / -1
    ("r0 = 1 ll\nr0 <<= 63\nr1 = -1\nr0 s%= r1", 0),
    ("r0 = -7\nr0 s/= 2", (-3) & (2**64 - 1)),                  # truncates toward zero
    ("r0 = -7\nr0 s%= 2", (-1) & (2**64 - 1)),
    ("r0 = -8\nr0 s>>= 1", (-4) & (2**64 - 1)),
    ("w0 = -8\nw0 s>>= 1", 0xFFFFFFFC),
    ("r0 = -1\nr0 /= -1", 1),                                   # imm sign-extended then unsigned
    ("r0 = 0x1122334455667788 ll\nr0 = be16 r0", 0x8877),
    ("r0 = 0x1122334455667788 ll\nr0 = le32 r0", 0x55667788),
    ("r0 = 0x1122334455667788 ll\nr0 = bswap64 r0", 0x8877665544332211),
    ("r1 = 0x80 ll\nr0 = (s8)r1", 2**64 - 0x80),
    ("r1 = 0x8000 ll\nw0 = (s16)w1", 0xFFFF8000),
    ("r0 = 5\nif w0 s> -1 goto +1\nr0 = 0", 5),
    ("r0 = 5\ngotol +1\nr0 = 0", 5),
])
def test_rfc9669_semantics(engine, text, expected):
    result = run(engine, text + "\nexit")
    assert result.ok and result.value == expected


def test_kernel_address_faults_cleanly(engine):
    result = run(engine, "r1 = 0xffff888000001000 ll\nr0 = *(u64 *)(r1 + 0)\nexit")
    assert not result.ok and "invalid read of 8 bytes at 0xffff888000001000" in result.error


def test_context_is_read_only_unless_declared(engine):
    text = "*(u32 *)(r1 + 0) = 7\nr0 = *(u32 *)(r1 + 0)\nexit"
    assert "read-only context" in run(engine, text, b"\0" * 8).error
    ctx = bytearray(8)
    assert run(engine, text, ctx, load={"ctx_writable": True}).value == 7
    assert ctx[0] == 7


def test_context_fields_and_out_of_bounds(engine):
    ctx = bytes(range(16))
    assert run(engine, "r0 = *(u16 *)(r1 + 14)\nexit", ctx).value == 0x0F0E
    assert not run(engine, "r0 = *(u16 *)(r1 + 15)\nexit", ctx).ok


def test_stack_frames_and_local_calls(engine):
    text = """
        r6 = 6
        *(u64 *)(r10 - 8) = 41
        r1 = 1
        call sub
        r0 += r6
        r1 = *(u64 *)(r10 - 8)
        r0 += r1
        exit
    sub:
        r6 = 100
        *(u64 *)(r10 - 8) = 1000      # the callee's own frame
        r0 = r1
        exit
    """
    assert run(engine, text).value == 1 + 6 + 41


def test_call_depth_limit(engine):
    text = "call f\nexit\nf:\ncall f\nexit"
    result = run(engine, text)
    assert not result.ok and "call depth" in result.error


def test_budget(engine):
    program = load_program(assemble("r0 = 0\nloop:\nr0 += 1\ngoto loop"))
    eng = Interpreter(program, budget=1000) if engine == "interp" else compile_program(program, budget=1000)
    result = eng.run()
    assert not result.ok and "budget of 1000" in result.error


def test_helpers_by_id_and_stop(engine):
    table = {}
    seen = []

    @register("get_smp_processor_id", table=table)
    def cpu(vm, *args):
        seen.append(vm.env)
        return 3

    def stop(vm, r1, *args):
        raise StopProgram(r1 + 1)
    register(7, stop, table=table)
    text = "call 8\nr1 = r0\ncall 7\nr0 = 99\nexit"
    result = run(engine, text, env="event", load={"helpers": table})
    assert result.value == 4 and seen == ["event"]


def test_own_helper_table_and_unknown_helper(helper_table):
    # A test changes its own copy of the implementations and passes it as helpers=; without
    # helpers= a program gets a fresh copy of the one table (helper 5 is bpf_ktime_get_ns).
    assert load_program(assemble("call 5\nexit")).helpers[5] is TABLE[5].impl
    unregister(5, table=helper_table)
    with pytest.raises(ProgramError, match=r"insn 0 \(call 5\): unknown helper 5"):
        load_program(assemble("call 5\nexit"), helpers=helper_table)
    register(5, lambda vm, *a: 11, table=helper_table)
    assert load_program(assemble("call 5\nexit"), helpers=helper_table).helpers[5] is helper_table[5]
    for engine in sorted(ENGINES):
        assert run(engine, "call 5\nexit", load={"helpers": helper_table}).value == 11
    assert TABLE[5].impl is not helper_table[5]


def test_legacy_packet_loads(engine):
    packet = bytes.fromhex("0800450000") + bytes(10)
    text = "r0 = *(u16 *)skb[0]\nr6 = r0\nr0 = *(u8 *)skb[r7 + 2]\nr0 += r6\nexit"
    assert run(engine, text, packet=packet).value == 0x0800 + 0x45
    assert run(engine, "r0 = *(u32 *)skb[100]\nr0 = 5\nexit", packet=packet).value == 0


def test_map_pseudo_loads(engine):
    class ArrayMap:
        def __init__(self):
            self.value = bytearray(16)

        def direct_value(self):
            return self.value

    m = ArrayMap()
    insns = [*isa.ld_imm64(1, 0, isa.PSEUDO_MAP_VALUE)]
    insns[1] = insns[1]._replace(imm=8)                     # offset 8 in the value
    insns += assemble("*(u64 *)(r1 + 0) = 77\nr0 = 0 ll\nexit")
    insns[3] = insns[3]._replace(src=isa.PSEUDO_MAP_FD)
    program = load_program(insns, maps=[m])
    eng = ENGINES[engine](program)
    handle = eng.run().value
    assert map_from_handle(program, handle) is m
    assert int.from_bytes(m.value[8:16], "little") == 77


@pytest.mark.parametrize("insns,message", [
    ([Insn(0x07, 0, 1, 0, 1), Insn(0x95)], "insn 0 (r0 += 1): reserved field 'src' must be 0"),
    ([Insn(0x8F), Insn(0x95)], "unknown opcode 0x8f"),
    ([Insn(0x18, 1), Insn(0x95)], "second slot of LD_IMM64"),
    ([Insn(0x05, off=1), Insn(0x18, 1), Insn(0), Insn(0x95)], "middle of LD_IMM64"),
    ([Insn(0xB7, 10), Insn(0x95)], "r10 is read only"),
    ([Insn(0xB7, 0)], "fall off the end"),
    ([Insn(0x05, off=5), Insn(0x95)], "jump out of range"),
    ([Insn(0xD4, 1, imm=8), Insn(0x95)], "invalid 'imm' value 8"),
])
def test_load_time_errors(insns, message):
    with pytest.raises(ProgramError, match=re.escape(message)):
        load_program(insns)


def test_check_reserved_names_second_slot_field():
    with pytest.raises(ProgramError, match="insn 1 .*reserved field 'dst'"):
        check_reserved([Insn(0x18, 1), Insn(0, 3), Insn(0x95)])


def test_memory_regions():
    mem = Memory()
    buf = bytearray(8)
    addr = mem.address_of(buf, name="value")
    assert mem.address_of(buf) == addr
    mem.store(addr + 4, 4, 0x11223344)
    assert buf[4:] == bytes.fromhex("44332211") and mem.load(addr, 8) == 0x1122334400000000
    with pytest.raises(MemoryFault):
        mem.load(addr + 6, 4)
    with pytest.raises(MemoryFault):
        mem.read(CTX_BASE, 1)


def test_jit_is_cached_and_reads_context_directly():
    program = load_program(assemble("r0 = *(u32 *)(r1 + 4)\nexit"), ctx_size=8)
    jit = compile_program(program)
    assert compile_program(program) is jit
    assert "_u32(ctx, 4)" in jit.source and "_load" not in jit.source
    assert jit.entry(bytes(4) + b"\x01\x02\x03\x04") == 0x04030201


# -- loops: each shape of control flow the JIT gives its own structure -------------------------------
LOOPS = {
    # sum of i*j over a 5x4 grid, nested counted loops
    "nested": ("""
        r0 = 0
        r6 = 0
    outer:
        r7 = 0
    inner:
        r1 = r6
        r1 *= r7
        r0 += r1
        r7 += 1
        if r7 < 4 goto inner
        r6 += 1
        if r6 < 5 goto outer
        exit""", sum(i * j for i in range(5) for j in range(4))),
    # the inner loop leaves both loops at once when the product reaches 6
    "break_two_levels": ("""
        r0 = 0
        r6 = 0
    outer:
        r7 = 0
    inner:
        r1 = r6
        r1 *= r7
        if r1 == 6 goto out
        r0 += 1
        r7 += 1
        if r7 < 4 goto inner
        r6 += 1
        if r6 < 5 goto outer
    out:
        r0 <<= 8
        r0 |= r6
        exit""", (11 << 8) | 2),
    # from inside the inner loop straight back to the outer loop's head (a "continue outer")
    "continue_outer": ("""
        r0 = 0
        r6 = 0
    outer:
        r6 += 1
        if r6 > 6 goto done
        r7 = 0
    inner:
        r7 += 1
        r0 += 1
        if r7 == r6 goto outer
        if r7 < 3 goto inner
        r0 += 100
        goto outer
    done:
        exit""", 1 + 2 + 3 + 3 + 3 + 3 + 3 * 100),
    # a jump from before a loop into the middle of its body (not through its head)
    "enter_mid_loop": ("""
        r0 = 0
        r6 = 3
        if r1 != 0 goto middle
    head:
        r0 += 10
    middle:
        r0 += 1
        r6 += -1
        if r6 s> 0 goto head
        exit""", 1 + 11 + 11),
    # two backward jumps whose spans cross: 2->[head_a..] and [head_b..]->head_b
    "crossing": ("""
        r0 = 0
        r6 = 3
        r7 = 3
    head_a:
        r0 += 1
    head_b:
        r0 += 10
        r6 += -1
        if r6 s> 0 goto head_a
        r0 += 100
        r7 += -1
        if r7 s> 0 goto head_b
        exit""", 3 * 1 + 3 * 10 + 100 + 2 * (10 + 100)),
    # a loop with its test at the top and an unconditional jump back
    "while_loop": ("""
        r0 = 1
        r6 = 0
    test:
        if r6 >= 10 goto done
        r0 *= 3
        r6 += 1
        goto test
    done:
        exit""", 3 ** 10),
    # a loop in a called function, called from a loop
    "loop_in_callee": ("""
        r0 = 0
        r6 = 4
    again:
        r1 = r6
        call twice
        r6 += -1
        if r6 s> 0 goto again
        r0 = r8
        exit
    twice:
        r2 = 2
    add:
        r8 += r1
        r2 += -1
        if r2 != 0 goto add
        r0 = r8
        exit""", None),
}


@pytest.mark.parametrize("name", sorted(LOOPS))
def test_loop_shapes(engine, name):
    text, expected = LOOPS[name]
    program = load_program(assemble(text), ctx_size=0)
    result = ENGINES[engine](program).run(b"")
    reference = Interpreter(program).run(b"")
    assert result == reference and result.ok, (result, reference)
    if expected is not None:
        assert result.value == expected


def test_loop_in_callee_keeps_callee_saved_registers(engine):
    # r8 is callee-saved: the callee's additions vanish on return, so r0 ends as r8 = 0
    result = run(engine, LOOPS["loop_in_callee"][0])
    assert result.ok and result.value == 0


COUNTED = "r0 = 0\nr6 = 10\nloop:\nr0 += 1\nr6 += -1\nif r6 s> 0 goto loop\nexit"   # 2 + 30 + 1


@pytest.mark.parametrize("budget,ok", [(33, True), (32, False), (5, False)])
def test_budget_is_exact_at_the_end_of_a_loop(engine, budget, ok):
    program = load_program(assemble(COUNTED))
    eng = Interpreter(program, budget=budget) if engine == "interp" \
        else compile_program(program, budget=budget)
    result = eng.run()
    assert result.ok == ok and (result.value == 10 if ok else f"budget of {budget}" in result.error)


def test_budget_spent_in_a_callee_loop(engine):
    text = "r6 = 100\nagain:\ncall f\nr6 += -1\nif r6 s> 0 goto again\nexit\n" \
           "f:\nr1 = 50\nspin:\nr1 += -1\nif r1 != 0 goto spin\nexit"
    program = load_program(assemble(text))
    eng = Interpreter(program, budget=3000) if engine == "interp" \
        else compile_program(program, budget=3000)
    result = eng.run()
    assert not result.ok and "budget of 3000" in result.error


def test_budget_on_a_long_program_without_loops(engine):
    program = load_program(assemble("r0 += 1\n" * 40 + "exit"))
    eng = Interpreter(program, budget=30) if engine == "interp" \
        else compile_program(program, budget=30)
    result = eng.run()
    assert not result.ok and "budget of 30" in result.error


@pytest.mark.parametrize("index,expected", [(0, 0x11), (7, 0x88), (8, None), (-1, None)])
def test_context_read_at_a_variable_offset(engine, index, expected):
    ctx = bytes([0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88])
    text = "r1 += r2\nr0 = *(u8 *)(r1 + 0)\nexit"
    program = load_program(assemble(text), ctx_size=len(ctx))
    result = ENGINES[engine](program).run(ctx, args=[index])
    assert result == Interpreter(program).run(ctx, args=[index])
    assert result.value == expected if expected is not None else "invalid read" in result.error


@pytest.mark.parametrize("index,ok", [(-8, True), (-4096, True), (0, False), (-4104, False)])
def test_stack_access_at_a_variable_offset(engine, index, ok):
    text = "r3 = r10\nr3 += r2\n*(u64 *)(r3 + 0) = r2\nr0 = *(u64 *)(r3 + 0)\nexit"
    program = load_program(assemble(text))
    result = ENGINES[engine](program).run(b"", args=[index])
    assert result == Interpreter(program).run(b"", args=[index])
    assert result.ok == ok and (result.value == index & (2**64 - 1) if ok else True)


def test_loops_nested_deeper_than_python_allows(engine):
    # 24 loops one inside the other (Python allows 20 nested blocks per function): the JIT
    # keeps the outer ones as loops of their own and runs the innermost as part of them
    depth = 24
    src = ["r0 = 0"]
    for d in range(depth):
        src += [f"*(u64 *)(r10 - {8 * (d + 1)}) = {2 if d >= depth - 3 else 1}", f"l{d}:"]
    src.append("r0 += 1")
    for d in reversed(range(depth)):
        src += [f"r1 = *(u64 *)(r10 - {8 * (d + 1)})", "r1 += -1",
                f"*(u64 *)(r10 - {8 * (d + 1)}) = r1", f"if r1 != 0 goto l{d}"]
    result = run(engine, "\n".join(src + ["exit"]))
    assert result.ok and result.value == 8


@pytest.mark.parametrize("swap", ["be64", "le64"])
def test_64_bit_byte_swap_keeps_the_upper_half_for_32_bit_compares(engine, swap):
    # found by the long differential run: a 32-bit compare after be64/le64 must look at the low
    # half only, though the register holds 64 bits
    value = 1 if swap == "be64" else 1 << 32          # low half zero after the swap
    text = f"r0 = 1\nr2 = {value} ll\nr2 = {swap} r2\nif w2 == 0 goto +1\nr0 = 2\nexit"
    result = run(engine, text)
    assert result.ok and result.value == 1


def test_modulo_by_a_zero_register_keeps_a_wide_dividend(engine):
    # the remainder is narrower than the divisor only when the divisor is not zero
    text = "r0 = 1\nr1 = 1 ll\nr1 <<= 32\nr2 = 0\nr1 %= r2\nif w1 == 0 goto +1\nr0 = 2\nexit"
    result = run(engine, text)
    assert result.ok and result.value == 1
