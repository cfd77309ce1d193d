"""Helpers tracing tools use, each through a program on every engine: the current task's ids,
clocks, the traced function, stacks into a STACK_TRACE map and a buffer, perf_event_output into a
PERF_EVENT_ARRAY, per-CPU lookups, queue and bloom filter operations, bpf_snprintf and
bpf_trace_vprintk, fentry/fexit argument helpers, and the callback helpers bpf_loop and
bpf_for_each_map_elem with the verifier's callback checks."""
from __future__ import annotations

import errno
from types import SimpleNamespace

import pytest
from tracesim.filters.bpf import loader
from tracesim.filters.bpf.compiler.driver import compile_source
from tracesim.filters.bpf.runtime.maps import (
    BPF_F_NO_PREALLOC,
    MAP_TYPE_ARRAY,
    MAP_TYPE_BLOOM_FILTER,
    MAP_TYPE_HASH,
    MAP_TYPE_QUEUE,
    create_map,
)
from tracesim.filters.bpf.toolchain.asm import assemble
from tracesim.filters.bpf.verifier import verify

from tests.test_bpf_filter import EXAMPLES

M64 = (1 << 64) - 1
STACK = [0xFFFFFFFF81000A10, 0xFFFFFFFF81000B20, 0xFFFFFFFF81000C30]
TASK = SimpleNamespace(pid=42, tgid=40, comm="worker", addr=0xFFFF888000100000, uid=1000, gid=100)


class Env:
    """What the tracing helpers ask of the running kernel (``event_filter.TraceEnv``'s
    interface, plus the attach-time facts the attach layer gives)."""

    def __init__(self, cpu: int = 0, nargs: int = 0, returned: bool = False) -> None:
        self.cpu, self.nargs, self.returned = cpu, nargs, returned
        self.printed: list[str] = []

    def cpu_id(self) -> int:
        return self.cpu

    def task(self):
        return TASK

    def ktime_ns(self) -> int:
        return 5000

    def boot_ns(self) -> int:
        return 9000

    def kernel_stack(self) -> list[int]:
        return STACK

    def func_ip(self) -> int:
        return 0xFFFFFFFF81000100

    def attach_cookie(self) -> int:
        return 77

    def func_nargs(self) -> int:
        return self.nargs

    @property
    def func_returned(self) -> bool:
        return self.returned

    def trace_printk(self, msg: str) -> None:
        self.printed.append(msg)


def _compile(src: str, name: str) -> bytes:
    return compile_source(src, name, [EXAMPLES]).elf


HELPERS_C = r"""
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} out SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 64);
	__uint(key_size, 4);
	__uint(value_size, 8 * 8);
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, 4);
	__uint(value_size, 4);
	__uint(max_entries, 2);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pcpu SEC(".maps");

static __always_inline void put(__u32 k, __u64 v)
{
	bpf_map_update_elem(&out, &k, &v, 0);
}

const char fmt[] = "pid %d comm %s n %d";

SEC("kprobe/x")
int helpers(struct pt_regs *ctx)
{
	__u64 ips[4] = {};
	__u64 rec[2];
	__u64 args[3];
	char buf[32];
	__u32 zero = 0;
	__u64 *v;

	put(0, bpf_get_current_uid_gid());
	put(1, bpf_ktime_get_boot_ns());
	put(2, bpf_get_smp_processor_id());
	put(3, bpf_get_func_ip(ctx));
	put(4, bpf_get_attach_cookie(ctx));
	put(5, bpf_get_stackid(ctx, &stacks, 0));
	put(6, bpf_get_stackid(ctx, &stacks, 1));
	put(7, bpf_get_stack(ctx, ips, sizeof(ips), 0));
	put(8, ips[1]);
	rec[0] = ctx->di;
	rec[1] = 7;
	put(9, bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, rec, sizeof(rec)));
	put(10, bpf_perf_event_output(ctx, &events, 1, rec, sizeof(rec)));
	v = bpf_map_lookup_percpu_elem(&pcpu, &zero, 1);
	put(11, v ? *v : 12345);
	args[0] = 42;
	args[1] = (__u64)"worker";
	args[2] = 3;
	put(12, bpf_snprintf(buf, sizeof(buf), fmt, args, sizeof(args)));
	bpf_trace_vprintk(fmt, sizeof(fmt), args, sizeof(args));
	put(13, bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK));
	put(14, bpf_get_stack(ctx, ips, 12, 0));
	put(15, bpf_perf_event_output(ctx, &events, 1ULL << 32, rec, sizeof(rec)));
	return 0;
}

char _license[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def helpers_object() -> bytes:
    return _compile(HELPERS_C, "helpers.c")


def _out(m) -> list[int]:
    return [int.from_bytes(m.lookup(i.to_bytes(4, "little")), "little") for i in range(16)]


@pytest.mark.parametrize("engine", loader.ENGINES)
def test_tracing_helpers_through_a_program(helpers_object, engine):
    obj = loader.open_object(helpers_object)
    loaded = loader.load_object_program(obj, obj.program("helpers"), engine=engine, ncpus=2)
    out, stacks, events, pcpu = loaded.maps[:4]
    bufs = events.open_buffers(ncpus=2)
    pcpu.update(bytes(4), (5).to_bytes(8, "little") + (6).to_bytes(8, "little"))
    regs = bytearray(168)
    regs[112] = 9                                        # pt_regs.di
    env = Env()
    assert loaded.runner.run(bytes(regs), env=env).value == 0
    got = _out(out)
    assert got[0] == 100 << 32 | 1000                    # gid << 32 | uid
    assert got[1:5] == [9000, 0, 0xFFFFFFFF81000100, 77]
    full, skipped = got[5], got[6]
    assert stacks.lookup(full.to_bytes(4, "little"))[:24] == \
        b"".join(ip.to_bytes(8, "little") for ip in STACK)
    assert stacks.lookup(skipped.to_bytes(4, "little"))[:16] == \
        b"".join(ip.to_bytes(8, "little") for ip in STACK[1:])
    assert got[7:9] == [24, STACK[1]]                     # 3 ips copied, the rest zeroed
    assert got[9] == 0 and bufs[0].samples == [(9).to_bytes(8, "little") + (7).to_bytes(8, "little")]
    assert got[10] == -errno.EOPNOTSUPP & M64 and bufs[1].samples == []
    assert got[11] == 6                                  # CPU 1's value
    assert got[12] == len("pid 42 comm worker n 3") + 1
    assert env.printed == ["pid 42 comm worker n 3"]
    assert got[13] == -errno.EFAULT & M64                # no user stacks in the model
    assert got[14] == -errno.EINVAL & M64                # size not a multiple of 8
    assert got[15] == -errno.EINVAL & M64                # flags beyond the index mask


def test_stackid_collision_without_reuse_is_eexist():
    st = create_map("st", 7, 4, 64, 1)                   # one bucket: every stack collides
    assert st.store(tuple(STACK), 0) == 0
    assert st.store(tuple(STACK[1:]), 0) == -errno.EEXIST
    assert st.store(tuple(STACK[1:]), 1 << 10) == 0       # BPF_F_REUSE_STACKID replaces it
    assert st.lookup(bytes(4))[:16] == b"".join(ip.to_bytes(8, "little") for ip in STACK[1:])


QUEUE_C = r"""
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 2);
	__uint(value_size, 8);
} q SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__uint(max_entries, 16);
	__uint(value_size, 8);
} seen SEC(".maps");

SEC("kprobe/x")
int queue(struct pt_regs *ctx)
{
	__u64 v = ctx->di;
	__u64 got = 0;
	long err;

	if (bpf_map_peek_elem(&seen, &v) == 0)
		return 1000;                     /* seen before */
	bpf_map_push_elem(&seen, &v, 0);
	err = bpf_map_push_elem(&q, &v, 0);
	if (err)
		return 2000 - err;
	if (ctx->si) {
		if (bpf_map_pop_elem(&q, &got))
			return 3000;
		return got;
	}
	return 0;
}

char _license[] SEC("license") = "GPL";
"""


@pytest.mark.parametrize("engine", loader.ENGINES)
def test_queue_and_bloom_filter_through_a_program(engine):
    obj = loader.open_object(_compile(QUEUE_C, "queue.c"))
    loaded = loader.load_object_program(obj, obj.program("queue"), engine=engine)
    q, seen = loaded.maps

    def run(di: int, si: int = 0) -> int:
        regs = bytearray(168)
        regs[112:120] = di.to_bytes(8, "little")
        regs[104:112] = si.to_bytes(8, "little")
        return loaded.runner.run(bytes(regs), env=Env()).value

    assert run(5) == 0 and run(6) == 0
    assert run(5) == 1000                               # the bloom filter has it
    assert run(7) == 2000 + errno.E2BIG                 # the queue is full
    assert run(8, si=1) == 2000 + errno.E2BIG
    assert q.pop() == (5).to_bytes(8, "little")
    assert run(9, si=1) == 6                            # FIFO: 6 comes out first
    assert seen.peek((9).to_bytes(8, "little"))


def test_verifier_checks_the_map_types_of_queue_helpers():
    h = create_map("h", MAP_TYPE_HASH, 8, 8, 1)
    bloom = create_map("b", MAP_TYPE_BLOOM_FILTER, 0, 8, 4)
    pop = assemble("ld_pseudo r1, 1, 0, 0\nr2 = r10\nr2 += -8\ncall 88\nr0 = 0\nexit\n")
    assert verify(pop, maps=[h]).error == "cannot pass map_type 1 into func bpf_map_pop_elem#88"
    assert verify(pop, maps=[bloom]).error == \
        "cannot pass map_type 30 into func bpf_map_pop_elem#88"
    q = create_map("q", MAP_TYPE_QUEUE, 0, 8, 4)
    assert verify(pop, maps=[q]).ok                     # pop writes the (uninitialised) value
    lookup = assemble("ld_pseudo r1, 1, 0, 0\nr2 = r10\nr2 += -8\ncall 1\nr0 = 0\nexit\n")
    assert verify(lookup, maps=[q]).error == \
        "cannot pass map_type 22 into func bpf_map_lookup_elem#1"


def test_snprintf_wants_a_read_only_format():
    data = create_map("d", MAP_TYPE_ARRAY, 4, 16, 1)
    text = ("r1 = r10\nr1 += -16\nr2 = 16\nld_pseudo r3, 2, 0, 0\nr4 = 0\nr5 = 0\n"
            "call 165\nr0 = 0\nexit\n")
    assert verify(assemble(text), maps=[data]).error == "R3 does not point to a readonly map'"
    ro = create_map("r", MAP_TYPE_ARRAY, 4, 4, 1, 1 << 7, initial=b"abcd")
    assert verify(assemble(text), maps=[ro]).error == "string is not zero-terminated"
    ro = create_map("r", MAP_TYPE_ARRAY, 4, 4, 1, 1 << 7, initial=b"ab\0\0")
    assert verify(assemble(text), maps=[ro]).ok
    for engine in loader.ENGINES:
        prog = loader.load(assemble(text.replace("r0 = 0\n", "")), prog_type="kprobe",
                           maps=[ro], engine=engine)
        assert prog.runner.run(bytes(168), env=Env()).value == 3      # "ab" + NUL


# ---------------------------------------------------------------- fentry / fexit

FUNC_ARGS = """
*(u64 *)(r10 - 8) = 0
*(u64 *)(r10 - 16) = 0
r6 = r1
r2 = 1
r3 = r10
r3 += -8
call 183
r7 = r0
r1 = r6
r2 = r10
r2 += -16
call 184
r8 = r0
r1 = r6
call 185
r0 <<= 16
r1 = *(u64 *)(r10 - 8)
r0 += r1
r1 = *(u64 *)(r10 - 16)
r1 <<= 8
r0 += r1
r7 &= 0xff
r0 += r7
r8 <<= 32
r0 += r8
exit
"""


@pytest.mark.parametrize("engine", loader.ENGINES)
def test_func_arg_ret_and_count(engine):
    ctx = b"".join(v.to_bytes(8, "little") for v in (11, 22, 33, 0))
    prog = loader.load(assemble(FUNC_ARGS), prog_type="tracing", engine=engine,
                       ctx_size=len(ctx))
    fexit = prog.runner.run(ctx, env=Env(nargs=2, returned=True)).value
    assert fexit == (2 << 16) + 22 + (33 << 8)           # cnt, arg 1, ret; both returned 0
    fentry = prog.runner.run(ctx, env=Env(nargs=1)).value
    # arg 1 of a one-argument function: -EINVAL; no return value at entry: -EOPNOTSUPP;
    # a failed call leaves *value alone
    assert fentry & 0xFFFF_FFFF == (1 << 16) + (-errno.EINVAL & 0xFF)
    assert fentry >> 32 == -errno.EOPNOTSUPP & 0xFFFF_FFFF


def test_func_arg_helpers_are_for_tracing_programs_only():
    res = verify(assemble("call 185\nr0 = 0\nexit\n"), prog_type="kprobe")
    assert res.error == "program of this type cannot use helper bpf_get_func_arg_cnt#185"
    res = verify(assemble("call 173\nr0 = 0\nexit\n"), prog_type="tracepoint")
    assert res.error == "program of this type cannot use helper bpf_get_func_ip#173"


# ---------------------------------------------------------------- callbacks

# bpf_loop(10, cb, &sum, 0): cb(i, ctx) adds i to *ctx and stops after i == 6
LOOP = """
*(u64 *)(r10 - 8) = 0
r1 = 10
ld_pseudo r2, 4, 9, 0
r3 = r10
r3 += -8
r4 = 0
call 181
r1 = *(u64 *)(r10 - 8)
r1 <<= 8
r0 += r1
exit
cb:
r3 = *(u64 *)(r2 + 0)
r3 += r1
*(u64 *)(r2 + 0) = r3
r0 = 0
if r1 != 6 goto out
r0 = 1
out:
exit
"""


@pytest.mark.parametrize("engine", loader.ENGINES)
def test_bpf_loop_calls_back_with_the_callers_stack(engine):
    prog = loader.load(assemble(LOOP), prog_type="kprobe", engine=engine)
    value = prog.runner.run(bytes(168), env=Env()).value
    assert value == (sum(range(7)) << 8) + 7             # 7 calls (0..6), sum 21


def test_bpf_loop_errors():
    bad_flags = assemble(LOOP.replace("r4 = 0", "r4 = 1"))
    prog = loader.load(bad_flags, prog_type="kprobe", engine="interp")
    assert prog.runner.run(bytes(168)).value == -errno.EINVAL & M64
    too_many = assemble(LOOP.replace("r1 = 10", "r1 = 0x800001"))
    prog = loader.load(too_many, prog_type="kprobe", engine="jit")
    assert prog.runner.run(bytes(168)).value == -errno.E2BIG & M64


def test_verifier_checks_the_callback():
    bad_ret = LOOP.replace("r0 = 1\nout:", "r0 = 2\nout:")
    res = verify(assemble(bad_ret))
    assert res.error == "At callback return the register R0 has smin=2 smax=2 " \
                        "should have been in [0, 1]"
    not_func = assemble("r1 = 1\nr2 = 0\nr3 = 0\nr4 = 0\ncall 181\nexit\n")
    assert verify(not_func).error == "R2 type=scalar expected=func"
    oob = LOOP.replace("r3 = *(u64 *)(r2 + 0)", "r3 = *(u64 *)(r2 + 8)")
    assert verify(assemble(oob)).error == "invalid read from stack R2 off=0 size=8"   # past ctx


# for_each_map_elem(map, cb, &acc, 0): cb(map, key, value, ctx) sums key * value, stops at key 3
FOR_EACH = """
*(u64 *)(r10 - 8) = 0
ld_pseudo r1, 1, 0, 0
ld_pseudo r2, 4, 9, 0
r3 = r10
r3 += -8
r4 = 0
call 164
r1 = *(u64 *)(r10 - 8)
r1 <<= 8
r0 += r1
exit
cb:
r5 = *(u32 *)(r2 + 0)
r6 = *(u64 *)(r3 + 0)
r6 *= r5
r7 = *(u64 *)(r4 + 0)
r7 += r6
*(u64 *)(r4 + 0) = r7
r0 = 0
if r5 != 3 goto out
r0 = 1
out:
exit
"""


@pytest.mark.parametrize("engine", loader.ENGINES)
def test_for_each_map_elem_visits_array_elements(engine):
    arr = create_map("a", MAP_TYPE_ARRAY, 4, 8, 6)
    for i in range(6):
        arr.update(i.to_bytes(4, "little"), (i + 1).to_bytes(8, "little"))
    prog = loader.load(assemble(FOR_EACH), prog_type="kprobe", maps=[arr], engine=engine)
    value = prog.runner.run(bytes(168), env=Env()).value
    assert value == ((0 * 1 + 1 * 2 + 2 * 3 + 3 * 4) << 8) + 4


def test_for_each_map_elem_over_a_hash_and_its_verifier_rules():
    h = create_map("h", MAP_TYPE_HASH, 4, 8, 8)
    for key, val in ((5, 2), (3, 10)):
        h.update(key.to_bytes(4, "little"), val.to_bytes(8, "little"))
    prog = loader.load(assemble(FOR_EACH), prog_type="kprobe", maps=[h], engine="native")
    assert prog.runner.run(bytes(168), env=Env()).value == ((5 * 2 + 3 * 10) << 8) + 2
    lpm = create_map("l", 11, 8, 8, 4, BPF_F_NO_PREALLOC)
    assert verify(assemble(FOR_EACH), maps=[lpm]).error == \
        "cannot pass map_type 11 into func bpf_for_each_map_elem#164"
    write_key = FOR_EACH.replace("r5 = *(u32 *)(r2 + 0)", "*(u32 *)(r2 + 0) = 1\nr5 = 0")
    assert verify(assemble(write_key), maps=[h]).error == "R2 cannot write into rdonly_mem"


CALLBACKS_C = r"""
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct loop_ctx { __u64 sum; __u32 stop; };
struct walk_ctx { __u64 total; __u32 elems; };

static int add_index(__u32 i, void *data)
{
	struct loop_ctx *c = data;

	c->sum += i;
	return i >= c->stop;
}

static long add_value(void *map, __u32 *key, __u64 *value, void *data)
{
	struct walk_ctx *w = data;

	w->total += *key * *value;
	w->elems++;
	return 0;
}

__u64 out[4];

SEC("kprobe/consume_skb")
int callbacks(void *ctx)
{
	struct loop_ctx c = { .sum = 0, .stop = 6 };
	struct walk_ctx w = { .total = 0, .elems = 0 };

	out[0] = bpf_loop(100, add_index, &c, 0);
	out[1] = c.sum;
	out[2] = bpf_for_each_map_elem(&counts, add_value, &w, 0);
	out[3] = w.total << 8 | w.elems;
	return 0;
}

char _license[] SEC("license") = "GPL";
"""


@pytest.mark.parametrize("engine", loader.ENGINES)
def test_clang_callbacks(tmp_path, engine):
    from tests.test_externs import _clang
    obj = loader.open_object(_clang(tmp_path, CALLBACKS_C, "callbacks").read_bytes())
    loaded = loader.load_object_program(obj, obj.program("callbacks"), engine=engine)
    counts = loaded.maps[0]
    for key, val in ((1, 10), (2, 20), (5, 1)):
        counts.update(key.to_bytes(4, "little"), val.to_bytes(8, "little"))
    assert loaded.runner.run(bytes(168), env=Env()).value == 0
    bss = next(m for m in loaded.maps if m.name == ".bss")
    out = [int.from_bytes(bss.values[i:i + 8], "little") for i in range(0, 32, 8)]
    assert out == [7, 21, 3, (10 + 40 + 5) << 8 | 3]


MOUNTED_C = r"""
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

static int add(__u32 i, void *data)
{
	*(__u64 *)data += i;
	return 0;
}

const char fmt[] = "sum %llu loops %ld";

SEC("tracepoint/net/netif_receive_skb")
int loop_and_print(void *ctx)
{
	__u64 sum = 0;
	__u64 args[2];

	args[1] = bpf_loop(5, add, &sum, 0);
	args[0] = sum;
	bpf_trace_vprintk(fmt, sizeof(fmt), args, sizeof(args));
	return 1;
}

char _license[] SEC("license") = "GPL";
"""


def test_callbacks_and_vprintk_through_a_mounted_tree(system, tmp_path):
    from tests.test_bpf_filter import NETIF
    from tests.test_externs import _clang
    from tests.tree_helpers import cat_into
    tree = system.tree
    cat_into(tree, NETIF + "/filter", _clang(tmp_path, MOUNTED_C, "mounted").read_bytes())
    tree.echo(NETIF + "/enable", "1")
    assert system.control(["send", "eth5", "--len", "100"])[0] == 0
    printed = [line.split("bpf_trace_printk: ")[1] for line in tree.read_text("/trace").splitlines()
               if "bpf_trace_printk: " in line]
    assert printed == ["sum 10 loops 5"]


def test_callbacks_share_the_instruction_budget():
    from tracesim.filters.bpf.vm.interp import Interpreter
    many = assemble(LOOP.replace("r1 = 10", "r1 = 0x800000").replace("if r1 != 6", "if r1 != -1"))
    prog = loader.load(many, prog_type="kprobe", engine=None)
    small = Interpreter(prog.program, budget=5000)       # its callbacks share its budget
    assert small.run(bytes(168)).error == "instruction budget of 5000 exceeded"
    assert small.run(bytes(168)).error == "instruction budget of 5000 exceeded"   # each run
