"""bpf_tail_call from a bpf-to-bpf subprogram, as the x86-64 JIT runs it: the target replaces
the subprogram only, its r0 is what the subprogram returns, and the caller goes on with its
registers and stack; the chain's count (33) is shared across the frames.  Every engine agrees.
The verifier refuses a tail call in a subprogram whose callers' frames take 256 bytes or more
(``check_max_stack_depth``)."""
from __future__ import annotations

import pytest
from tracesim.filters.bpf import loader
from tracesim.filters.bpf.runtime.helpers_calls import MAX_TAIL_CALL_CNT
from tracesim.filters.bpf.runtime.maps import MAP_TYPE_ARRAY, MAP_TYPE_PROG_ARRAY, create_map
from tracesim.filters.bpf.toolchain.asm import assemble
from tracesim.filters.bpf.verifier import verify

CTX = bytes(168)

# main: n = counter++ (kept in r7 and at fp-16), r0 = sub(ctx) + n + fp[-16] + 1000
# sub:  tail_call(ctx, jmp_table, {index}); return 1 (the tail call failed)
MAIN_SUB = """
r6 = r1
*(u32 *)(r10 - 4) = 0
ld_pseudo r1, 1, 1, 0
r2 = r10
r2 += -4
call 1
if r0 == 0 goto none
r7 = *(u64 *)(r0 + 0)
r8 = r7
r8 += 1
*(u64 *)(r0 + 0) = r8
*(u64 *)(r10 - 16) = r7
r1 = r6
call sub
r1 = *(u64 *)(r10 - 16)
r0 += r1
r0 += r7
r0 += 1000
exit
none:
r0 = 0
exit
sub:
*(u64 *)(r10 - 8) = 0
r2 = 0
ld_pseudo r2, 1, 0, 0
r3 = {index}
call 12
r0 = 1
exit
"""


def _maps():
    return [create_map("jmp_table", MAP_TYPE_PROG_ARRAY, 4, 4, 4),
            create_map("counter", MAP_TYPE_ARRAY, 4, 8, 1)]


@pytest.mark.parametrize("engine", loader.ENGINES)
def test_the_target_returns_to_the_subprograms_caller(engine):
    jmp, counter = maps = _maps()
    prog = loader.load(assemble(MAIN_SUB.format(index=2)), prog_type="kprobe", maps=maps,
                       engine=engine)
    target = loader.load(assemble("r0 = *(u64 *)(r1 + 112)\nr0 += 40\nexit\n"),
                         prog_type="kprobe", maps=maps, engine=engine)
    regs = bytearray(168)
    regs[112] = 2                                       # pt_regs.di
    assert prog.runner.run(bytes(regs)).value == 1 + 0 + 0 + 1000     # slot 2 empty
    jmp.update((2).to_bytes(4, "little"), target)
    # the target's 42 comes back from the subprogram; main adds n (1) twice and 1000
    assert prog.runner.run(bytes(regs)).value == 42 + 1 + 1 + 1000


@pytest.mark.parametrize("engine", loader.ENGINES)
def test_a_self_tail_call_from_a_subprogram_keeps_every_frame(engine):
    jmp, counter = maps = _maps()
    prog = loader.load(assemble(MAIN_SUB.format(index=0)), prog_type="kprobe", maps=maps,
                       engine=engine)
    jmp.update((0).to_bytes(4, "little"), prog)
    # 1 + 33 runs of main, nested: the innermost's tail call fails (sub returns 1); each
    # run adds its own n twice (its r7 and its stack slot, not clobbered by the runs inside)
    levels = 1 + MAX_TAIL_CALL_CNT
    assert prog.runner.run(CTX).value == 1 + sum(2 * n + 1000 for n in range(levels))
    assert int.from_bytes(counter.lookup(bytes(4)), "little") == levels


def test_engines_agree_on_a_chain_through_subprograms():
    results = []
    for engine in loader.ENGINES:
        jmp, counter = maps = _maps()
        prog = loader.load(assemble(MAIN_SUB.format(index=0)), prog_type="kprobe", maps=maps,
                           engine=engine)
        jmp.update((0).to_bytes(4, "little"), prog)
        results.append((prog.runner.run(CTX).value, prog.runner.run(CTX).value))
    assert len(set(results)) == 1, results


BIG_CALLER = """
*(u64 *)(r10 - {size}) = 0
call sub
r0 = 0
exit
sub:
ld_pseudo r2, 1, 0, 0
r3 = 0
call 12
r0 = 0
exit
"""


def test_verifier_limits_the_callers_stack_of_a_tail_calling_subprogram():
    maps = [_maps()[0]]
    assert verify(assemble(BIG_CALLER.format(size=224)), maps=maps).ok
    res = verify(assemble(BIG_CALLER.format(size=256)), maps=maps)
    assert res.error == ("tail_calls are not allowed when call stack of previous frames is 256 "
                         "bytes. Too large")


SUBPROG_TAIL_C = r"""
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>

__u64 returned = 0, went_on = 0;

SEC("kprobe")
int target(struct pt_regs *ctx)
{
	return 42;
}

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__array(values, int (void *));
} jmp SEC(".maps") = {
	.values = { [0] = (void *)&target },
};

static __attribute__((noinline)) int dispatch(struct pt_regs *ctx)
{
	bpf_tail_call(ctx, &jmp, 0);
	return bpf_get_smp_processor_id() + 1;	/* not a constant: clang keeps it */
}

SEC("kprobe/__netif_receive_skb")
int entry(struct pt_regs *ctx)
{
	int r = dispatch(ctx);

	__sync_fetch_and_add(&returned, r);
	__sync_fetch_and_add(&went_on, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.mark.parametrize("engine", loader.ENGINES)
def test_tracesim_run_tail_call_from_a_subprogram(tmp_path, engine):
    from tests.test_attach_env import RUN, bss, build, tracesim_run
    obj = build(tmp_path, "subtail", SUBPROG_TAIL_C)
    done = tracesim_run(obj, *RUN, "--engine", engine)
    assert done.returncode == 0, done.stderr
    v = bss(done.stdout)
    assert v["went_on"] == 100 and v["returned"] == 42 * 100
