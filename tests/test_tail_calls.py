"""bpf_tail_call through a PROG_ARRAY on every engine: the target runs on the same context and its
return value is the run's, a chain makes at most MAX_TAIL_CALL_CNT (33) tail calls, a failed tail
call (index out of range, empty slot) continues with the next instruction, and the verifier takes
only a program array as the helper's map."""
from __future__ import annotations

import errno

import pytest
from tracesim.filters.bpf import loader
from tracesim.filters.bpf.runtime.helpers_calls import MAX_TAIL_CALL_CNT
from tracesim.filters.bpf.runtime.maps import (
    MAP_TYPE_ARRAY,
    MAP_TYPE_HASH,
    MAP_TYPE_PROG_ARRAY,
    MapError,
    create_map,
)
from tracesim.filters.bpf.toolchain.asm import assemble
from tracesim.filters.bpf.verifier import verify

CTX = bytes(168)

# r6 = ctx; counter[0] += 1; tail_call(ctx, prog_array, r7 = index); return 7
COUNT_AND_TAIL_CALL = """
r6 = r1
*(u32 *)(r10 - 4) = 0
ld_pseudo r1, 1, 1, 0
r2 = r10
r2 += -4
call 1
if r0 == 0 goto out
r1 = 1
lock *(u64 *)(r0 + 0) += r1
out:
r1 = r6
ld_pseudo r2, 1, 0, 0
r3 = {index}
call 12
r0 = 7
exit
"""


def _maps():
    return [create_map("jmp_table", MAP_TYPE_PROG_ARRAY, 4, 4, 4),
            create_map("counter", MAP_TYPE_ARRAY, 4, 8, 1)]


def _count(counter) -> int:
    return int.from_bytes(counter.lookup(bytes(4)), "little")


@pytest.mark.parametrize("engine", loader.ENGINES)
def test_a_self_tail_call_chain_stops_after_33(engine):
    jmp, counter = maps = _maps()
    prog = loader.load(assemble(COUNT_AND_TAIL_CALL.format(index=0)), prog_type="kprobe",
                       maps=maps, engine=engine)
    jmp.update((0).to_bytes(4, "little"), prog)
    assert prog.runner.run(CTX).value == 7          # the last one's tail call fails: r0 = 7
    assert _count(counter) == 1 + MAX_TAIL_CALL_CNT
    assert prog.runner.run(CTX).value == 7          # a new run starts a new chain
    assert _count(counter) == 2 * (1 + MAX_TAIL_CALL_CNT)


@pytest.mark.parametrize("engine", loader.ENGINES)
def test_dispatcher_runs_the_target_and_returns_its_value(engine):
    jmp, counter = maps = _maps()
    dispatcher = loader.load(assemble(COUNT_AND_TAIL_CALL.format(index=2)), prog_type="kprobe",
                             maps=maps, engine=engine)
    target = loader.load(assemble("r0 = *(u64 *)(r1 + 112)\nr0 += 40\nexit\n"),
                         prog_type="kprobe", maps=maps, engine=engine)
    regs = bytearray(168)
    regs[112] = 2                                   # pt_regs.di: the target sees the context
    assert dispatcher.runner.run(bytes(regs)).value == 7     # slot 2 empty: falls through
    jmp.update((2).to_bytes(4, "little"), target)
    assert dispatcher.runner.run(bytes(regs)).value == 42
    assert _count(counter) == 2
    jmp.delete((2).to_bytes(4, "little"))
    assert dispatcher.runner.run(bytes(regs)).value == 7


def test_index_out_of_range_falls_through_on_every_engine():
    for engine in loader.ENGINES:
        maps = _maps()
        prog = loader.load(assemble(COUNT_AND_TAIL_CALL.format(index=9)), prog_type="kprobe",
                           maps=maps, engine=engine)
        assert prog.runner.run(CTX).value == 7


def test_prog_array_takes_loaded_programs_of_one_type():
    jmp, _ = maps = _maps()
    kp = loader.load(assemble("r0 = 1\nexit\n"), prog_type="kprobe", maps=maps, engine="interp")
    tp = loader.load(assemble("r0 = 1\nexit\n"), prog_type="tracepoint", engine="interp")
    jmp.update((0).to_bytes(4, "little"), kp)
    with pytest.raises(MapError) as e:
        jmp.update((1).to_bytes(4, "little"), tp)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(MapError) as e:
        jmp.update((4).to_bytes(4, "little"), kp)
    assert e.value.errno == errno.E2BIG
    with pytest.raises(MapError) as e:
        jmp.update((1).to_bytes(4, "little"), kp, 1)      # BPF_NOEXIST
    assert e.value.errno == errno.EEXIST


def test_verifier_wants_a_prog_array_and_no_r0_after_the_call():
    hash_map = create_map("h", MAP_TYPE_HASH, 4, 4, 1)
    prog = assemble("ld_pseudo r2, 1, 0, 0\nr3 = 0\ncall 12\nr0 = 0\nexit\n")
    assert verify(prog, maps=[hash_map]).error == "cannot pass map_type 1 into func bpf_tail_call#12"
    assert verify(prog, maps=[_maps()[0]]).ok
    use_r0 = assemble("ld_pseudo r2, 1, 0, 0\nr3 = 0\ncall 12\nexit\n")
    assert verify(use_r0, maps=[_maps()[0]]).error == "R0 !read_ok"
    array = create_map("a", MAP_TYPE_ARRAY, 4, 4, 1)
    lookup = assemble("*(u32 *)(r10 - 4) = 0\nld_pseudo r1, 1, 0, 0\nr2 = r10\nr2 += -4\n"
                      "call 1\nr0 = 0\nexit\n")
    assert verify(lookup, maps=[array]).ok
    assert verify(lookup, maps=[_maps()[0]]).error == \
        "cannot pass map_type 3 into func bpf_map_lookup_elem#1"


DISPATCH_C = r"""
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

int handler_a(void *ctx);
int handler_b(void *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, 4);
	__array(values, int (void *));
} jmp_table SEC(".maps") = {
	.values = { [1] = (void *)&handler_a, [3] = (void *)&handler_b },
};

SEC("kprobe/a")
int handler_a(void *ctx)
{
	return 42;
}

SEC("kprobe/b")
int handler_b(void *ctx)
{
	return 43;
}

SEC("kprobe/consume_skb")
int dispatch(struct pt_regs *ctx)
{
	__u32 which = *(volatile __u64 *)((char *)ctx + 112);  /* pt_regs.di */
	bpf_tail_call(ctx, &jmp_table, which);
	return 7;
}

char _license[] SEC("license") = "GPL";
"""


@pytest.mark.parametrize("engine", loader.ENGINES)
def test_clang_dispatcher_with_initial_slots(tmp_path, engine):
    from tests.test_externs import _clang
    obj = loader.open_object(_clang(tmp_path, DISPATCH_C, "dispatch").read_bytes())
    maps = loader.create_maps(obj.maps)
    progs = {spec.name: loader.load_object_program(obj, spec, maps=maps, engine=engine)
             for spec in obj.programs}
    loader.fill_initial_slots(obj.maps, maps, progs)
    runs = []
    for di in (1, 2, 3, 9):
        regs = bytearray(168)
        regs[112] = di
        runs.append(progs["dispatch"].runner.run(bytes(regs)).value)
    assert runs == [42, 7, 43, 7]
