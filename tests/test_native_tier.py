"""The native (LLVM) tier seen from outside: faults and errors give the interpreter's result,
the helpers it runs in machine code (array map lookup, skb_load_bytes*) agree with the Python
ones on every path, ``auto`` picks an engine by the documented rule, and without llvmlite ``auto``
falls back to the Python JIT with a one-line notice."""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
from tracesim.filters.bpf import loader
from tracesim.filters.bpf.runtime.helper_table import implementations
from tracesim.filters.bpf.runtime.helpers import StopProgram, register
from tracesim.filters.bpf.runtime.maps import MAP_TYPE_ARRAY, MAP_TYPE_HASH, create_map
from tracesim.filters.bpf.runtime.program import load_program
from tracesim.filters.bpf.toolchain.asm import assemble
from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.interp import Interpreter
from tracesim.filters.bpf.vm.isa import Insn
from tracesim.filters.bpf.vm.memory import VMError
from tracesim.filters.bpf.vm.native import NativeProgram, available, compile_native

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(not available(), reason="llvmlite is not installed")


def _both(program, ctx=b"", **kw):
    """(interpreter result, native result) of one run each."""
    return Interpreter(program).run(ctx, **kw), compile_native(program).run(ctx, **kw)


@pytest.mark.parametrize("text", [
    "r0 = *(u64 *)(r1 + 4)\nexit",                        # past the end of the context
    "r0 = *(u32 *)(r1 - 4)\nexit",                        # before it
    "*(u32 *)(r1 + 0) = 1\nr0 = 0\nexit",                 # read-only context
    "r2 = 0xffff888000001000 ll\nr0 = *(u8 *)(r2 + 0)\nexit",   # kernel memory is no region
    "r0 = *(u64 *)(r10 + 8)\nexit",                       # above the stack
    "r2 = r10\nr2 += -4097\nr0 = *(u8 *)(r2 + 0)\nexit",  # below the deepest frame
    "r0 = 0\nr2 = 0x100000000 ll\nr3 = 1\nlock *(u64 *)(r2 + 0) += r3\nexit",  # atomic, no region
])
def test_faults_give_the_interpreters_result(text):
    program = load_program(assemble(text), ctx_size=8)
    interp, native = _both(program, bytes(8))
    assert not interp.ok and native == interp


def test_writable_context_is_written_in_place():
    program = load_program(assemble("*(u32 *)(r1 + 2) = 0x11223344\nr0 = *(u64 *)(r1 + 0)\nexit"),
                           ctx_size=8, ctx_writable=True)
    a, b = bytearray(8), bytearray(8)
    assert Interpreter(program).run(a) == compile_native(program).run(b)
    assert a == b == bytearray.fromhex("0000443322110000")
    b.extend(b"xx")                          # the run holds no export: the caller may resize


def test_budget_and_call_depth_errors_match():
    loop = load_program(assemble("r0 = 0\nloop:\nr0 += 1\ngoto loop\n"))
    a = Interpreter(loop, budget=5000).run()
    assert not a.ok and NativeProgram(loop, budget=5000).run() == a
    # a function calling itself until the frame limit
    recurse = [Insn(isa.OP_CALL, 0, isa.PSEUDO_CALL, 0, 1), Insn(isa.OP_EXIT),
               Insn(isa.OP_CALL, 0, isa.PSEUDO_CALL, 0, -1), Insn(isa.OP_EXIT)]
    program = load_program(recurse)
    interp, native = _both(program)
    assert not interp.ok and "call depth" in interp.error and native == interp


def test_helper_errors_and_early_stops_match():
    table = implementations()

    def stop(vm, *a):
        raise StopProgram(42)

    def fail(vm, *a):
        raise VMError("helper failed on purpose")

    register("get_prandom_u32", stop, table=table)
    register("ktime_get_ns", fail, table=table)
    for hid in (7, 5):
        program = load_program(assemble(f"call {hid}\nr0 = 1\nexit"), helpers=table)
        interp, native = _both(program)
        assert native == interp


def _lookup_program(value_off: int = 0) -> list[Insn]:
    """r0 = *(u32 *)(lookup(map0, &key)) or 0xdead when absent; the key is run(args=[key])."""
    return [Insn(isa.STX | isa.MEM | isa.W, isa.R10, 2, -4),
            *isa.ld_imm64(1, 0, src=isa.PSEUDO_MAP_IDX),
            Insn(isa.ALU64 | isa.MOV | isa.X, 2, isa.R10), Insn(isa.ALU64 | isa.ADD, 2, imm=-4),
            Insn(isa.OP_CALL, imm=1),
            Insn(isa.JMP | isa.JNE, 0, off=2), Insn(isa.ALU64 | isa.MOV, 0, imm=0xDEAD),
            Insn(isa.OP_EXIT),
            Insn(isa.LDX | isa.MEM | isa.W, 0, 0, value_off), Insn(isa.OP_EXIT)]


@pytest.mark.parametrize("key", [0, 3, 7, 8, 2**32 - 1])
def test_array_map_lookup_in_machine_code(key):
    values = b"".join((0x1000 + i).to_bytes(4, "little") + bytes(4) for i in range(8))
    m = create_map("arr", MAP_TYPE_ARRAY, 4, 8, 8, initial=values)
    program = load_program(_lookup_program(), maps=[m])
    interp, native = _both(program, args=[key])
    assert interp.ok and native == interp
    runner = compile_native(program)
    assert "call i1 @h1(" in runner.source                 # served in machine code
    assert [runner.run(args=[k]).value for k in (1, 9, 2)] == [0x1001, 0xDEAD, 0x1002]


def test_lookup_value_past_its_end_faults_alike():
    m = create_map("arr", MAP_TYPE_ARRAY, 4, 8, 2)
    program = load_program(_lookup_program(value_off=62), maps=[m])   # beyond the last value
    interp, native = _both(program, args=[1])
    assert not interp.ok and native == interp


def test_hash_map_lookup_calls_back():
    m = create_map("h", MAP_TYPE_HASH, 4, 4, 4)
    m.update((5).to_bytes(4, "little"), (77).to_bytes(4, "little"))
    program = load_program(_lookup_program(), maps=[m])
    for key in (5, 6):
        interp, native = _both(program, args=[key])
        assert native == interp and interp.value in (77, 0xDEAD)


def _skb_program(helper: str, offset: int, length: int, start: int = 1) -> list[Insn]:
    """Load ``length`` bytes at ``offset`` into the stack with a skb helper; r0 = its result
    in the low 32 bits and the first loaded u32 in the high ones."""
    text = (f"r6 = r1\nr2 = {offset}\nr3 = r10\nr3 += -16\nr4 = {length}\nr5 = {start}\n"
            "*(u64 *)(r10 - 16) = r4\n*(u64 *)(r10 - 8) = r4\n"
            f"call {helper}\nr0 <<= 32\nr0 >>= 32\nr7 = *(u32 *)(r10 - 16)\nr7 <<= 32\n"
            "r0 |= r7\nexit")
    return assemble(text)


SKB = SimpleNamespace(data=bytes(range(60)), network_header=14, mac_header=0)
NO_MAC = SimpleNamespace(data=bytes(range(60)), network_header=14, mac_header=None)


@pytest.mark.parametrize("helper,offset,length,start,skb", [
    ("68", 0, 4, 1, SKB), ("68", 40, 6, 1, SKB), ("68", 43, 4, 1, SKB),    # last / past the end
    ("68", 2, 8, 0, SKB), ("68", 2, 8, 0, NO_MAC), ("68", 2, 8, 7, SKB),   # bad start header
    ("68", 0x10000, 4, 1, SKB), ("68", 0, 0, 1, SKB), ("68", 0, 17, 1, SKB),  # 17: past the stack
    ("26", 56, 4, 0, SKB), ("26", 57, 4, 0, SKB), ("26", -1, 4, 0, SKB),
])
def test_skb_load_bytes_in_machine_code(helper, offset, length, start, skb):
    program = load_program(_skb_program(helper, offset, length, start), ctx_size=192)
    interp, native = _both(program, bytes(192), env=skb)
    assert native == interp and f"call i1 @h{helper}(" in compile_native(program).source
    assert compile_native(program).run(bytes(192)) == Interpreter(program).run(bytes(192))  # no skb


# -- auto --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("r0 = *(u32 *)(r1 + 8)\nif r0 == 1 goto +1\nr0 = 0\nexit", "jit"),        # a small filter
    ("r0 = 0\nloop:\nr0 += 1\nif r0 < 10 goto loop\nexit", "native"),           # a loop
    ("r0 = 0\n" + "r0 += 1\n" * (loader.AUTO_NATIVE_MIN_INSNS + 1) + "exit", "native"),
])
def test_auto_chooses_by_the_rule(text, expected):
    insns = assemble(text)
    assert loader.choose_engine(insns) == expected
    loaded = loader.load(insns, prog_type="kprobe", engine="auto", ctx_size=168)
    assert loaded.engine == expected and loaded.runner.run(bytes(168)).ok


def test_auto_takes_native_for_subprogram_calls():
    insns = [Insn(isa.OP_CALL, 0, isa.PSEUDO_CALL, 0, 1), Insn(isa.OP_EXIT),
             Insn(isa.ALU64 | isa.MOV, 0, imm=3), Insn(isa.OP_EXIT)]
    assert loader.choose_engine(insns) == "native"


def test_compiled_code_is_shared_by_identical_programs():
    text = "r0 = 0\nloop:\nr0 += 3\nif r0 < 300 goto loop\nexit"
    a = NativeProgram(load_program(assemble(text)))
    b = NativeProgram(load_program(assemble(text)))
    assert a._engine is b._engine and a.run().value == b.run().value == 300


_WITHOUT_LLVMLITE = """
import sys
sys.modules["llvmlite"] = None            # import fails as on a platform without it
sys.modules["llvmlite.binding"] = None
from tracesim.filters.bpf import loader
from tracesim.filters.bpf.toolchain.asm import assemble
loop = assemble("r0 = 0\\nloop:\\nr0 += 1\\nif r0 < 10 goto loop\\nexit")
for _ in range(2):
    loaded = loader.load(loop, prog_type="kprobe", engine="auto", ctx_size=168)
    print(loaded.engine, loaded.runner.run(bytes(168)).value)
try:
    loader.load(loop, prog_type="kprobe", engine="native", ctx_size=168)
except loader.LoadError as e:
    print("native:", e.errno, e.summary.split(":")[0])
"""


def test_without_llvmlite_auto_falls_back_with_one_notice():
    out = subprocess.run([sys.executable, "-c", _WITHOUT_LLVMLITE], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["jit 10", "jit 10", "native: 22 llvmlite is not available"]
    notice = out.stderr.splitlines()
    assert len(notice) == 1 and "native BPF engine unavailable" in notice[0]
    assert "using the Python JIT" in notice[0]


# -- through the mount ---------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["native", "auto"])
def test_event_filter_on_the_native_tier(engine):
    """filter_ex1 (device-name compare in a loop, bpf_trace_printk) attached with
    ``--bpf-engine native``/``auto``: the same events and printk lines as on the JIT."""
    import os

    from tracesim.filters.bpf.compiler.driver import compile_file
    from tracesim.tracefs.system import System

    obj = compile_file(ROOT / "tools" / "examples" / "filter_ex1.c").elf
    netif = "/events/net/netif_receive_skb"
    s = System.boot(cpus=1, seed=1, clock="virtual", bpf_engine=engine)
    try:
        tree = s.tree
        handle = tree.open(netif + "/filter", os.O_WRONLY | os.O_TRUNC)
        try:
            handle.write(obj, 0)
            handle.flush()
        finally:
            handle.release()
        assert tree.read_text(netif + "/filter").endswith(" insns jited\n")
        tree.echo(netif + "/enable", "1")
        for dev, count in (("lo", 2), ("eth0", 3)):
            status, text = s.control(["send", dev, "--len", "84", "--count", str(count)])
            assert status == 0, text
        lines = [ln for ln in tree.read_text("/trace").splitlines() if not ln.startswith("#")]
        events = [ln for ln in lines if "netif_receive_skb:" in ln]
        assert len(events) == 2 and all("dev=lo " in ln for ln in events)
        assert sum("bpf_trace_printk:" in ln for ln in lines) == 2
    finally:
        s.shutdown()


def _update_program(flags: int) -> list[Insn]:
    """update(map0, &key, &value, flags) with key = args[0], value = args[1]; r0 = its result
    in the low 32 bits and the element read back (0xdead when absent) in the high ones."""
    return [Insn(isa.STX | isa.MEM | isa.W, isa.R10, 2, -4),
            Insn(isa.STX | isa.MEM | isa.DW, isa.R10, 3, -16),
            *isa.ld_imm64(1, 0, src=isa.PSEUDO_MAP_IDX),
            Insn(isa.ALU64 | isa.MOV | isa.X, 2, isa.R10), Insn(isa.ALU64 | isa.ADD, 2, imm=-4),
            Insn(isa.ALU64 | isa.MOV | isa.X, 3, isa.R10), Insn(isa.ALU64 | isa.ADD, 3, imm=-16),
            Insn(isa.ALU64 | isa.MOV, 4, imm=flags),
            Insn(isa.OP_CALL, imm=2),
            Insn(isa.ALU64 | isa.MOV | isa.X, 6, 0), Insn(isa.ALU64 | isa.LSH, 6, imm=32),
            Insn(isa.ALU64 | isa.RSH, 6, imm=32),
            *isa.ld_imm64(1, 0, src=isa.PSEUDO_MAP_IDX),
            Insn(isa.ALU64 | isa.MOV | isa.X, 2, isa.R10), Insn(isa.ALU64 | isa.ADD, 2, imm=-4),
            Insn(isa.OP_CALL, imm=1),
            Insn(isa.JMP | isa.JNE, 0, off=2), Insn(isa.ALU64 | isa.MOV, 0, imm=0xDEAD),
            Insn(isa.OP_JA, off=1),
            Insn(isa.LDX | isa.MEM | isa.W, 0, 0, 0),
            Insn(isa.ALU64 | isa.LSH, 0, imm=32), Insn(isa.ALU64 | isa.OR | isa.X, 0, 6),
            Insn(isa.OP_EXIT)]


@pytest.mark.parametrize("flags", [0, 1, 2, 4])
@pytest.mark.parametrize("key", [1, 5, 6])
def test_array_map_update_in_machine_code(flags, key):
    results = []
    for make in (Interpreter, compile_native):
        m = create_map("arr", MAP_TYPE_ARRAY, 4, 8, 6)
        program = load_program(_update_program(flags), maps=[m])
        runner = make(program)
        # twice: the second update finds the values mapped by the first run's lookup
        results.append([runner.run(args=[key, 0x1234 + n]) for n in range(2)] + [bytes(m.values)])
    assert results[0] == results[1]
    assert "call i1 @h2(" in compile_native(load_program(_update_program(flags), maps=[
        create_map("arr", MAP_TYPE_ARRAY, 4, 8, 6)])).source


def test_evicted_modules_leave_later_compiles_working(monkeypatch):
    """Each compiled module owns its target machine: evicting and freeing some must not
    break the next compile (it once crashed the process)."""
    import gc

    from tracesim.filters.bpf.vm import native

    monkeypatch.setattr(native, "CACHE_SIZE", 2)
    for k in range(5):
        program = load_program(assemble(f"r0 = {1000 + k}\nexit"))
        assert NativeProgram(program).run().value == 1000 + k
        gc.collect()
    program = load_program(assemble("r0 = 0\nloop:\nr0 += 7\nif r0 < 700 goto loop\nexit"))
    assert NativeProgram(program).run().value == 700


# -- the entry trampoline (``NativeProgram.entry``, a builtin) -----------------------------------

def _outcome(fn, ctx):
    try:
        return fn(ctx)
    except VMError as err:
        return f"{type(err).__name__}: {err}"


def test_entry_agrees_with_the_interpreter_on_the_conformance_suite():
    """Every conformance program run through ``entry`` on a read-only bytes context gives what
    the interpreter gives on the same context: the value, or the same error."""
    from tracesim.filters.bpf.vm.conformance import load_case, parse_file

    from tests.conftest import CONFORMANCE, need_shared
    need_shared()
    compared = 0
    for path in sorted((CONFORMANCE / "tests").glob("*.data")):
        case = parse_file(path)
        if case.error is not None:
            continue
        program = load_case(case).program
        ctx = bytes(case.mem)
        native = compile_native(program)
        for _ in range(2):                    # the first run syncs the region table
            assert _outcome(native.entry, ctx) == _outcome(Interpreter(program), ctx), path.name
        compared += 1
    assert compared > 250


def test_entry_falls_back_for_other_contexts_and_after_arguments():
    program = load_program(assemble("r0 = *(u32 *)(r1 + 0)\nr0 += r2\nexit"), ctx_size=4)
    native = compile_native(program)
    ctx = (7).to_bytes(4, "little")
    assert native.entry(ctx) == 7
    assert native.entry(bytearray(ctx)) == 7              # not bytes: the Python entry
    assert native(ctx, args=(5,)) == 12                   # arguments through __call__
    assert native.entry(ctx) == 7                         # the arguments do not leak into entry
    assert native(ctx) == 7 and native.entry(ctx) == 7


def test_entry_context_seen_by_helpers_is_this_runs():
    """A helper reading the context (probe_read of r1) sees the context of the run under way,
    not an earlier one, and a fault past its end names the same bounds as the interpreter."""
    text = ("r6 = r1\nr1 = r10\nr1 += -8\nr2 = 8\nr3 = r6\ncall 113\n"
            "r0 = *(u64 *)(r10 - 8)\nexit")
    program = load_program(assemble(text), ctx_size=8)
    native = compile_native(program)
    for n in (1, 2, 0xDEADBEEF, 2**64 - 1):
        ctx = n.to_bytes(8, "little")
        assert native.entry(ctx) == Interpreter(program)(ctx) == n
    past = load_program(assemble("r0 = *(u64 *)(r1 + 4)\nexit"), ctx_size=8)
    assert _outcome(compile_native(past).entry, bytes(8)) == _outcome(Interpreter(past), bytes(8))


def test_entry_raises_the_interpreters_errors_and_leaks_no_references():
    loop = load_program(assemble("r0 = 0\nloop:\nr0 += 1\ngoto loop\n"))
    native = NativeProgram(loop, budget=5000)
    with pytest.raises(VMError) as err:
        native.entry(b"")
    with pytest.raises(VMError) as expected:
        Interpreter(loop, budget=5000)(b"")
    assert str(err.value) == str(expected.value)
    program = load_program(assemble("r0 = *(u64 *)(r1 + 0)\nexit"), ctx_size=8)
    entry = compile_native(program).entry
    ctx = (2**63 + 5).to_bytes(8, "little")
    assert entry(ctx) == 2**63 + 5          # the first run (Python path) keeps ctx in its region
    before = sys.getrefcount(ctx)
    for _ in range(1000):
        assert entry(ctx) == 2**63 + 5
    assert sys.getrefcount(ctx) == before
