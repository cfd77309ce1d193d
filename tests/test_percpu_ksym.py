"""Typed ``__ksym`` externs resolved against the model's BTF as libbpf does (its VARs are the
model's per-CPU variables), and ``bpf_per_cpu_ptr`` / ``bpf_this_cpu_ptr`` over them: the
verifier's PTR_TO_BTF_ID | MEM_PERCPU, a maybe-NULL read-only instance from per_cpu_ptr, a
non-NULL one from this_cpu_ptr; every engine reads the same values through ``tracesim run``."""
from __future__ import annotations

import pytest
from tracesim.filters.bpf import loader
from tracesim.filters.bpf.toolchain.asm import assemble
from tracesim.filters.bpf.verifier import verify
from tracesim.kernel_model import percpu
from tracesim.kernel_model.model_btf import percpu_btf_vars

from tests.test_attach_env import RUN, bss, build, tracesim_run

CPU_NUMBER = next(i for i, v in percpu_btf_vars().items() if v[0].name == "cpu_number")

PERCPU_C = r"""
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>

extern const int cpu_number __ksym;
extern const unsigned long this_cpu_off __ksym;
struct task_struct;
extern struct task_struct *current_task __ksym;
extern const int no_such_percpu __ksym __weak;

__u64 cpu0_num = 99, cpu1_num = 99, this_num = 99, missing = 7, weak_addr = 5;
__u64 this_off, task, hits;

SEC("kprobe/__netif_receive_skb")
int percpu(struct pt_regs *ctx)
{
	const int *p0 = bpf_per_cpu_ptr(&cpu_number, 0);
	const int *p1 = bpf_per_cpu_ptr(&cpu_number, 1);
	const int *p9 = bpf_per_cpu_ptr(&cpu_number, 9);
	const int *me = bpf_this_cpu_ptr(&cpu_number);
	const unsigned long *off = bpf_this_cpu_ptr(&this_cpu_off);
	const __u64 *cur = bpf_this_cpu_ptr(&current_task);

	if (p0)
		cpu0_num = *p0;
	if (p1)
		cpu1_num = *p1;
	missing = p9 ? 1 : 0;
	this_num = *me;
	this_off = *off;
	task = *cur == bpf_get_current_task();
	weak_addr = (__u64)&no_such_percpu;
	hits++;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def percpu_object(tmp_path_factory):
    return build(tmp_path_factory.mktemp("percpu"), "percpu", PERCPU_C)


@pytest.mark.parametrize("engine", loader.ENGINES)
def test_per_cpu_variables_through_tracesim_run(percpu_object, engine):
    done = tracesim_run(percpu_object, *RUN, "--engine", engine)
    assert done.returncode == 0, done.stderr
    v = bss(done.stdout)
    assert v["hits"] == 100
    assert (v["cpu0_num"], v["cpu1_num"]) == (0, 1)
    assert v["missing"] == 0                        # CPU 9 of 2: NULL
    assert v["this_num"] in (0, 1)                  # the CPU the packet ran on
    assert v["this_off"] == percpu.per_cpu_offset(v["this_num"])
    assert v["task"] == 1                           # current_task is the current task
    assert v["weak_addr"] == 0                      # an unresolved __weak typed ksym is 0


def test_typed_ksym_errors_are_libbpfs(tmp_path):
    strong = build(tmp_path, "strong", PERCPU_C.replace("no_such_percpu __ksym __weak",
                                                        "no_such_percpu __ksym"))
    done = tracesim_run(strong, *RUN)
    assert done.returncode == 1
    assert "extern (var ksym) 'no_such_percpu': not found in kernel BTF" in done.stderr
    wrong = build(tmp_path, "wrong", PERCPU_C.replace(
        "extern const unsigned long this_cpu_off __ksym;",
        "struct pair { int a, b; };\nextern const struct pair this_cpu_off __ksym;").replace(
        "const unsigned long *off", "const struct pair *off").replace("*off;", "off->a;"))
    done = tracesim_run(wrong, *RUN)
    assert done.returncode == 1
    assert "extern (var ksym) 'this_cpu_off': incompatible types, expected [" in done.stderr
    assert "] struct pair, but kernel has [" in done.stderr
    assert "] int long unsigned int" in done.stderr


def _verify(body: str):
    return verify(assemble(f"ld_pseudo r1, 3, {CPU_NUMBER}\n" + body), prog_type="kprobe")


def test_verifier_rules_for_per_cpu_pointers():
    # a per_cpu_ptr result may be NULL: it must be checked before use
    res = _verify("r2 = 0\ncall 153\nr0 = *(u32 *)(r0 + 0)\nr0 = 0\nexit\n")
    assert res.error == "R0 invalid mem access 'rdonly_mem_or_null'"
    assert _verify("r2 = 0\ncall 153\nif r0 == 0 goto out\nr0 = *(u32 *)(r0 + 0)\nout:\n"
                   "r0 = 0\nexit\n").ok
    # this_cpu_ptr's is not NULL, read-only, the variable's size
    assert _verify("call 154\nr0 = *(u32 *)(r0 + 0)\nr0 = 0\nexit\n").ok
    res = _verify("call 154\n*(u32 *)(r0 + 0) = 1\nr0 = 0\nexit\n")
    assert res.error == "R0 cannot write into rdonly_mem"
    res = _verify("call 154\nr0 = *(u64 *)(r0 + 0)\nr0 = 0\nexit\n")
    assert res.error == "invalid access to memory, mem_size=4 off=0 size=8"
    # the per-CPU pointer itself is no memory, and the helpers want one
    res = _verify("r0 = *(u32 *)(r1 + 0)\nr0 = 0\nexit\n")
    assert res.error == "R1 is ptr_int access percpu memory: off=0"
    res = verify(assemble("r1 = 0\ncall 154\nr0 = 0\nexit\n"), prog_type="kprobe")
    assert res.error == ("R1 type=scalar expected=percpu_ptr_, percpu_rcu_ptr_, "
                         "percpu_trusted_ptr_")
    res = verify(assemble("ld_pseudo r1, 3, 1\nr0 = 0\nexit\n"), prog_type="kprobe")
    assert res.error == "pseudo btf_id 1 in ldimm64 isn't KIND_VAR or KIND_FUNC"
