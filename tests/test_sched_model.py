"""The task model: sched/irq/timer/workqueue/signal/syscall formats against the 6.18 reference,
the printed lines, the idle trickle, fork/exec/exit/wait, determinism under a seed."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from tracesim.kernel_model.kernel import Kernel
from tracesim.kernel_model.trace import output as trace_output
from tracesim.kernel_model.trace.cmdlines import SAVED_CMDLINES_DEFAULT

REF = Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "linux-6.18"
SYSTEMS = ("sched", "irq", "timer", "workqueue", "signal", "raw_syscalls", "syscalls", "task")
SECOND = 1_000_000_000


def no_id(text: str) -> str:
    return re.sub(r"^ID: \d+$", "ID: N", text, flags=re.M)


def lines(kernel: Kernel) -> list[str]:
    text = trace_output.trace_text(kernel.tracing.top)
    return [ln for ln in text.splitlines() if not ln.startswith("#")]


def enabled_kernel(seed: int = 1) -> Kernel:
    kernel = Kernel(cpus=2, seed=seed)
    for system in SYSTEMS:
        kernel.tracing.top.set_system_enabled(system, True)
    return kernel


def test_every_listed_format_with_a_reference_matches_byte_for_byte() -> None:
    if not REF.is_dir():
        pytest.skip("../shared/reference is absent")
    kernel = Kernel(cpus=2, seed=0)
    compared = 0
    for entry in kernel.tracing.available_events():
        system, name = entry.split(":")
        ref = REF / "events" / system / name / "format"
        if not ref.exists():
            continue
        assert no_id(kernel.tracing.event(system, name).format_text()) == no_id(ref.read_text())
        compared += 1
    assert compared >= 60


def test_available_events_list_the_task_model_events() -> None:
    events = set(Kernel(cpus=2, seed=0).tracing.available_events())
    for name in ("sched:sched_switch", "sched:sched_process_fork", "irq:softirq_entry",
                 "timer:hrtimer_expire_entry", "workqueue:workqueue_execute_start",
                 "signal:signal_generate", "raw_syscalls:sys_enter",
                 "syscalls:sys_enter_openat", "syscalls:sys_exit_nanosleep"):
        assert name in events
    assert "sched:sched_kthread_stop" not in events      # the model never emits it


def test_syscall_formats_not_in_the_reference_follow_the_generated_layout() -> None:
    text = Kernel(cpus=2, seed=0).tracing.event("syscalls", "sys_enter_socket").format_text()
    assert "\tfield:int family;\toffset:16;\tsize:8;\tsigned:0;\n" in text
    assert text.endswith('print fmt: "family: 0x%08lx, type: 0x%08lx, protocol: 0x%08lx", '
                         "((unsigned long)(REC->family)), ((unsigned long)(REC->type)), "
                         "((unsigned long)(REC->protocol))\n")


def test_idle_kernel_is_not_silent_and_prints_like_the_kernel() -> None:
    kernel = enabled_kernel()
    kernel.idle.run_for(2 * SECOND)
    body = lines(kernel)
    names = {ln.split(": ")[0].split()[-1] for ln in body}
    seen = {ln.split(": ")[1] for ln in body}
    assert {"hrtimer_expire_entry", "hrtimer_start", "softirq_entry", "sched_switch",
            "sched_wakeup", "workqueue_execute_start", "timer_expire_entry"} <= seen
    assert names        # timestamps are there
    # ~25 ticks/s on each of 2 CPUs over 2 s
    ticks = sum(1 for ln in body if "hrtimer_expire_entry:" in ln)
    assert 60 <= ticks <= 140
    switch = next(ln for ln in body if "sched_switch: prev_comm=kworker" in ln)
    assert re.search(r"\[00\d\] d\.\.2\. .* sched_switch: prev_comm=kworker/\d:1 prev_pid=\d+ "
                     r"prev_prio=120 prev_state=I ==> next_comm=swapper/\d next_pid=0 "
                     r"next_prio=120$", switch)
    assert any(re.search(r"<idle>-0 +\[00\d\] d\.h1\. .* hrtimer_expire_entry: hrtimer=[0-9a-f]{16}"
                         r" function=tick_nohz_handler now=\d+$", ln) for ln in body)


def test_same_seed_same_trickle_other_seed_other() -> None:
    def run(seed: int) -> list[str]:
        kernel = enabled_kernel(seed)
        kernel.idle.run_for(SECOND)
        return lines(kernel)
    assert run(3) == run(3)
    assert run(3) != run(4)


def test_fork_exec_exit_wait_and_the_free_after_a_grace_period() -> None:
    kernel = enabled_kernel()
    kernel.workloads.get("forkexec").step(2)
    kernel.idle.run_for(2 * SECOND)
    text = "\n".join(lines(kernel))
    assert re.search(r"sched_process_fork: comm=bash pid=1000 child_comm=bash child_pid=1001", text)
    assert re.search(r"sched_wakeup_new: comm=bash pid=1001 prio=120 target_cpu=001", text)
    assert re.search(r"sched_process_exec: filename=/usr/bin/\w+ pid=1001 old_pid=1001", text)
    assert re.search(r"sched_process_exit: comm=\w+ pid=1001 prio=120 group_dead=true", text)
    assert re.search(r"signal_generate: sig=17 errno=0 code=1 comm=bash pid=1000 grp=1 res=0",
                     text)
    assert re.search(r"prev_pid=1001 prev_prio=120 prev_state=Z ==>", text)
    assert re.search(r"sched_process_wait: comm=bash pid=1001 prio=120", text)
    assert re.search(r"sched_process_free: comm=\w+ pid=1001 prio=120", text)
    assert re.search(r"sys_enter_clone: clone_flags: 0x00000011, newsp: 0x00000000", text)
    assert re.search(r"sys_exit: NR 56 = 1001", text)
    assert "task_newtask: pid=1001 comm=bash clone_flags=11 oom_score_adj=0" in text
    assert re.search(r"task_rename: pid=1001 oldcomm=bash newcomm=\w+ oom_score_adj=0", text)
    assert "sys_exit_exit_group" not in text           # exit_group never returns
    assert 1001 not in kernel.machine.tasks             # reaped and freed


def test_kill_generates_and_delivers_a_signal() -> None:
    kernel = enabled_kernel()
    shell, victim = kernel.user_task("bash"), kernel.user_task("sleep")
    with kernel.sched.running(victim):
        pass
    with kernel.sched.running(shell):
        kernel.syscalls.kill(victim, 15)
    with kernel.sched.running(victim):
        assert kernel.sched.deliver_signals() == [15]
    text = "\n".join(lines(kernel))
    assert "signal_generate: sig=15 errno=0 code=0 comm=sleep pid=1001 grp=1 res=0" in text
    assert "signal_deliver: sig=15 errno=0 code=0 sa_handler=0 sa_flags=0" in text
    assert "sys_enter_kill: pid: 0x000003e9, sig: 0x0000000f" in text


def test_kprobe_on_vfs_read_fires_for_a_modelled_read() -> None:
    kernel = Kernel(cpus=2, seed=0)
    kernel.tracing.kprobes.write("p:myread vfs_read count=%dx:u64\n", truncate=False)
    kernel.tracing.top.set_system_enabled("kprobes", True)
    with kernel.sched.running(kernel.user_task("cat")):
        kernel.syscalls.read(3, 4096, lambda: 10)
    assert any(ln.endswith("myread: (vfs_read+0x0/0x2f0) count=4096") for ln in lines(kernel))


def test_saved_cmdlines_reflect_switched_tasks() -> None:
    kernel = enabled_kernel()
    assert kernel.tracing.saved_cmdlines_size == SAVED_CMDLINES_DEFAULT == 6552
    kernel.idle.run_for(2 * SECOND)
    saved = kernel.tracing.saved_cmdlines_text()
    assert re.search(r"^\d+ kworker/0:1$", saved, re.M)
    assert re.search(r"^\d+ rcu_sched$", saved, re.M)


def test_saved_tgids_with_record_tgid_and_never_the_idle_task() -> None:
    kernel = enabled_kernel()
    kernel.tracing.top.set_option("record-tgid", True)
    kernel.workloads.get("forkexec").step(1)
    assert "1001 1001\n" in kernel.tracing.saved_tgids_text()
    assert not re.search(r"^0 ", kernel.tracing.saved_tgids_text(), re.M)
    assert not re.search(r"^0 ", kernel.tracing.saved_cmdlines_text(), re.M)


def test_every_task_model_function_with_a_probe_site_is_run() -> None:
    from tracesim.kernel_model import control
    from tracesim.kernel_model.kallsyms import TASK_FUNCTIONS
    from tracesim.kernel_model.kprobes import KPROBE_BLACKLIST
    kernel = Kernel(cpus=2, seed=5)
    hits: dict[str, int] = {}
    # the entry code (sysvec_*) is on the kprobe blacklist, as in the kernel: not probeable
    probed = [row for row in TASK_FUNCTIONS if row[0] not in KPROBE_BLACKLIST]
    for name, _, _, _, nargs in probed:
        if nargs is not None:
            kernel.kprobes.register_kprobe(
                name, lambda regs, n=name: hits.__setitem__(n, hits.get(n, 0) + 1))
    kernel.workloads.get("forkexec").step(40)
    control.ping(kernel, "eth0", 2)
    shell, victim = kernel.user_task("bash"), kernel.user_task("sleep")
    with kernel.sched.running(shell):
        kernel.syscalls.kill(victim, 15)
        kernel.syscalls.accept4(3, lambda: -11)
    kernel.idle.run_for(10 * SECOND)
    never = [name for name, _, _, _, nargs in probed
             if nargs is not None and name not in hits]
    assert never == []
