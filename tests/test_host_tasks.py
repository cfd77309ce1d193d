"""The mount's callers as tasks of the model (--host-tasks): a kprobe on vfs_read fires for
``cat`` on the mount, set_event_pid and event-fork follow a real shell; CLI refusals."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from tracesim.kernel_model.kernel import Kernel
from tracesim.kernel_model.trace import output as trace_output
from tracesim.tracefs.host_tasks import HostTasks, ProcForks

from tests.fuse_helpers import sh, tracesim


def test_kprobe_on_vfs_read_shows_the_reader_of_trace(mnt: Path) -> None:
    done = sh("echo 'p:myprobe vfs_read' > kprobe_events && echo 1 > events/kprobes/enable && "
              "cat trace > /dev/null && cat trace", mnt)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^ +cat-\d+ +\[000\] \.\.\.\.\. +[\d.]+: myprobe: \(vfs_read\+0x0/0x2f0\)$",
                     done.stdout, re.M)
    sh("echo 0 > events/kprobes/enable; echo > kprobe_events", mnt)


def test_set_event_pid_with_a_real_shell_and_event_fork(mnt: Path) -> None:
    script = ("echo $$ > set_event_pid && echo 1 > options/event-fork && "
              "echo 1 > events/syscalls/sys_enter_openat/enable && "
              "echo 1 > events/sched/sched_process_fork/enable && "
              "cat set_event_pid > /dev/null && echo $$ && cat trace")
    done = sh(script, mnt)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    shell = out[0]
    trace = "\n".join(out[1:])
    assert re.search(rf"sched_process_fork: comm=\w+ pid={shell} child_comm=\w+ child_pid=\d+",
                     trace)
    assert re.search(r"^ +cat-\d+ .* sys_enter_openat: dfd: 0xffffff9c", trace, re.M)
    sh("echo 0 > events/enable; echo 0 > options/event-fork; echo > set_event_pid", mnt)


def test_host_tasks_fork_exec_and_exit_with_their_processes() -> None:
    kernel = Kernel(cpus=2, seed=0)
    for system in ("sched", "syscalls"):
        kernel.tracing.top.set_system_enabled(system, True)
    procs = {5001: (0, "bash"), 5002: (5001, "cat")}
    host = HostTasks(kernel, comm_of=lambda pid: procs[pid][1],
                     ppid_of=lambda pid: procs[pid][0], exe_of=lambda pid: "/usr/bin/cat",
                     alive=procs.__contains__)
    host.openat(5001, "/trace", 0, lambda: 11)
    host.openat(5002, "/trace", 0, lambda: 12)
    child = kernel.machine.tasks[5002]
    assert (child.comm, child.parent.pid) == ("cat", 5001)
    del procs[5002]
    procs[5003] = (5001, "bash")
    host.openat(5003, "/trace", 0, lambda: 13)
    kernel.idle.run_for(2 * 1_000_000_000)
    text = trace_output.trace_text(kernel.tracing.top)
    for expected in ("sched_process_fork: comm=bash pid=5001 child_comm=bash child_pid=5002",
                     "sched_process_exec: filename=/usr/bin/cat pid=5002 old_pid=5002",
                     "sched_process_exit: comm=cat pid=5002 prio=120 group_dead=true",
                     "sched_process_wait: comm=bash pid=5002 prio=120",
                     "sched_process_free: comm=cat pid=5002 prio=120",
                     "sched_process_fork: comm=bash pid=5001 child_comm=bash child_pid=5003"):
        assert expected in text
    assert 5002 not in kernel.machine.tasks


def test_unknown_workload_and_bad_seed_are_clear_errors(tmp_path: Path) -> None:
    done = tracesim("mount", str(tmp_path), "--workload", "bogus", check=False)
    assert done.returncode == 2
    assert "unknown workload 'bogus' (have: " in done.stderr and "forkexec" in done.stderr
    assert "Traceback" not in done.stderr
    done = tracesim("mount", str(tmp_path), "--seed", "x1", check=False)
    assert done.returncode == 2
    assert "argument --seed: 'x1' is not a number" in done.stderr
    assert "Traceback" not in done.stderr


def test_idle_mount_trickles_sched_timer_irq_events_into_trace_pipe(mnt: Path) -> None:
    done = sh("echo 1 > events/sched/enable && echo 1 > events/timer/enable && "
              "echo 1 > events/irq/enable && "
              "for ev in hrtimer_expire_entry softirq_entry 'sched_switch: prev_comm=kworker'; do "
              "timeout 10 grep -m 1 -e \"$ev\" trace_pipe || exit 1; done", mnt, timeout=40)
    sh("echo 0 > events/enable", mnt)
    assert done.returncode == 0, done.stderr + done.stdout
    first, second, third = done.stdout.splitlines()
    assert re.search(r"<idle>-0 +\[00[01]\] d\.h1\. +[\d.]+: hrtimer_expire_entry: "
                     r"hrtimer=[0-9a-f]{16} function=tick_nohz_handler now=\d+$", first)
    assert re.search(r"softirq_entry: vec=\d \[action=[A-Z_]+\]$", second)
    assert re.search(r"kworker/[01]:1-\d+ .* prev_state=I ==> next_comm=swapper/[01] ", third)


def test_a_shell_redirect_is_openat_write_close_of_the_shell(mnt: Path) -> None:
    script = ("echo 1 > events/raw_syscalls/enable; "
              "echo 1 > events/syscalls/sys_exit_close/enable; echo 0 > tracing_on; echo $$; "
              "cat trace")
    done = sh(script, mnt)
    sh("echo 0 > events/enable; echo 1 > tracing_on; echo > trace", mnt)
    assert done.returncode == 0, done.stderr
    shell, trace = done.stdout.split("\n", 1)
    calls = [ln.split(": ", 1)[1] for ln in trace.splitlines()
             if re.match(rf" *[\w-]+-{shell} ", ln)]     # bash execs its last command, cat
    # the redirect of "echo 1 > events/syscalls/sys_exit_close/enable": write, then close
    assert "sys_exit: NR 1 = 2" in calls                      # write(fd, "1\n", 2) = 2
    assert any(c.startswith("sys_enter: NR 3 (") for c in calls)   # close
    assert "sys_exit_close: 0x0" in calls


def test_a_forked_child_sleeps_between_its_syscalls(mnt: Path) -> None:
    """A child whose fork switched to it goes back to sleep after its syscall like any caller:
    event-fork then shows its own switches (the kernel's event-pid selftest counts them)."""
    script = ("echo > trace; read me rest < /proc/self/stat; echo $me > set_event_pid; "
              "echo 1 > options/event-fork; echo 1 > events/sched/sched_switch/enable; "
              "cat trace > /dev/null; echo 0 > events/sched/sched_switch/enable; echo $me; "
              "cat trace")
    done = sh(script, mnt)
    assert done.returncode == 0, done.stderr
    me, trace = done.stdout.split("\n", 1)
    child = re.findall(r"sched_switch: prev_comm=cat prev_pid=(\d+) prev_prio=120 prev_state=S "
                       r"==> next_comm=swapper/0 next_pid=0 ", trace)
    assert child and me not in child, trace
    sh("echo 0 > options/event-fork; echo > set_event_pid", mnt)


def test_a_shell_that_reaped_its_child_sleeps_until_its_next_operation() -> None:
    """The child's exit wakes the shell (SIGCHLD); after reaping it the shell sleeps again, so
    its next operation on the mount starts with a wakeup (what hist triggers on sched_waking
    keyed on the writer's pid rely on)."""
    kernel = Kernel(cpus=2, seed=0)
    procs = {5001: (0, "bash"), 5002: (5001, "cat")}
    host = HostTasks(kernel, comm_of=lambda pid: procs[pid][1],
                     ppid_of=lambda pid: procs[pid][0], exe_of=lambda pid: "/usr/bin/cat",
                     alive=procs.__contains__)
    host.openat(5001, "/trace", 0, lambda: 11)
    host.openat(5002, "/trace", 0, lambda: 12)
    del procs[5002]
    procs[5003] = (5001, "cat")
    host.openat(5003, "/trace", 0, lambda: 13)              # 5002 is reaped by the shell
    assert all(cpu.task.pid != 5001 for cpu in kernel.machine.cpus)
    kernel.tracing.top.file("sched", "sched_waking").set_enabled(True)
    host.write(5001, 11, 1, lambda: 1)
    text = trace_output.trace_text(kernel.tracing.top)
    assert "sched_waking: comm=bash pid=5001 " in text


def test_a_process_under_an_unseen_subshell_is_forked_through_it() -> None:
    """``cat`` in a shell's command substitution: its parent (the subshell) never touched the
    mount, its grandparent did; the subshell is forked from the shell and forks cat, and
    nothing is left running between their syscalls."""
    kernel = Kernel(cpus=2, seed=0)
    kernel.tracing.top.set_system_enabled("sched", True)
    procs = {5001: (0, "bash"), 5002: (5001, "bash"), 5003: (5002, "cat")}
    host = HostTasks(kernel, comm_of=lambda pid: procs[pid][1],
                     ppid_of=lambda pid: procs[pid][0],
                     exe_of=lambda pid: "/usr/bin/" + procs[pid][1], alive=procs.__contains__)
    host.openat(5001, "/trace", 0, lambda: 11)
    host.openat(5003, "/trace", 0, lambda: 12)
    tasks = kernel.machine.tasks
    assert (tasks[5002].parent.pid, tasks[5003].parent.pid, tasks[5003].comm) == (
        5001, 5002, "cat")
    del procs[5003], procs[5002]
    procs[5004] = (5001, "bash")                # a new process: the gone ones are reaped
    host.openat(5004, "/trace", 0, lambda: 13)
    text = trace_output.trace_text(kernel.tracing.top)
    for expected in ("sched_process_fork: comm=bash pid=5001 child_comm=bash child_pid=5002",
                     "sched_process_fork: comm=bash pid=5002 child_comm=bash child_pid=5003",
                     "sched_process_exec: filename=/usr/bin/cat pid=5003 old_pid=5003",
                     "sched_process_wait: comm=bash pid=5002"):
        assert expected in text
    assert [cpu.task.pid for cpu in kernel.machine.cpus] == [0, 0]
    assert kernel.sched.rq == [[], []]


def test_forks_that_never_touch_the_mount_are_clones_of_their_parent() -> None:
    """A fork the host reports (the process events connector) by a process that is a task
    here is its clone(2): kernel_clone runs, the child exits and is reaped when it is gone."""
    kernel = Kernel(cpus=2, seed=0)
    kernel.tracing.top.set_system_enabled("sched", True)
    procs = {6001: (0, "bash")}
    pending: list[tuple[int, int]] = []

    def forks() -> list[tuple[int, int]]:
        out = list(pending)
        pending.clear()
        return out
    host = HostTasks(kernel, comm_of=lambda pid: procs[pid][1],
                     ppid_of=lambda pid: procs[pid][0], exe_of=lambda pid: None,
                     alive=procs.__contains__, forks=forks)
    host.openat(6001, "/trace", 0, lambda: 21)
    pending.extend([(6001, 6002), (4242, 6003)])       # a subshell, and a stranger's child
    host.openat(6001, "/trace", 0, lambda: 22)
    text = trace_output.trace_text(kernel.tracing.top)
    assert "sched_process_fork: comm=bash pid=6001 child_comm=bash child_pid=6002" in text
    assert "sched_process_exit: comm=bash pid=6002" in text        # gone already: reaped
    assert "child_pid=6003" not in text and 6003 not in kernel.machine.tasks


def test_a_subshell_fork_hits_kernel_clone(mnt) -> None:
    if ProcForks.open() is None:
        pytest.skip("no process events connector here (needs root in the initial netns)")
    out = sh("echo 'p:cl kernel_clone' > kprobe_events && echo 1 > events/kprobes/cl/enable "
             "&& ( echo forked > /dev/null ) && echo 0 > events/kprobes/cl/enable && "
             "grep -c ' cl: ' trace; echo > kprobe_events", mnt)
    assert out.stdout.split()[0] == "1", out.stdout + out.stderr
