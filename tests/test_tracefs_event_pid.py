"""set_event_pid / set_event_notrace_pid: events record only for the listed tasks (Linux 6.18).

The lists are trace_pid_write's: ``>`` empties first, ``>>`` adds, a bad word fails the whole
write with EINVAL; events of a task outside ``set_event_pid`` (when it lists any pid) or inside
``set_event_notrace_pid`` are not recorded, per trace instance; with ``options/event-fork`` the
children of listed tasks join the lists and exiting tasks leave them.
"""
from __future__ import annotations

import errno
import re

import pytest
from tracesim.tools.ctl_socket import request
from tracesim.tracefs.errors import FsError

from tests.fuse_helpers import mounted, need_fuse, sh

NETIF = "/events/net/netif_receive_skb"
LINE_TASK = re.compile(r"^\s*(\S+)-(\d+)\s+\[", re.M)


@pytest.fixture(autouse=True)
def _netif_enabled(tree):
    tree.echo(NETIF + "/enable", "1")


def send(system, dev: str) -> None:
    """``send lo`` runs as the tracesim-ctl task; ``send eth0`` arrives in the idle task."""
    status, text = system.control(["send", dev, "--len", "100"])
    assert status == 0, text


def tasks_in(tree, path: str = "/trace") -> list[str]:
    """comm-pid of every event line, in order."""
    return [f"{comm}-{pid}" for comm, pid in LINE_TASK.findall(tree.read_text(path))]


def ctl_pid(system) -> int:
    return system.kernel.user_task("tracesim-ctl").pid


def errno_of(call, *args, **kwargs) -> int:
    with pytest.raises(FsError) as err:
        call(*args, **kwargs)
    return err.value.errno


def test_lists_read_back_as_the_kernel_writes_them(tree):
    for name in ("/set_event_pid", "/set_event_notrace_pid"):
        assert tree.read_text(name) == ""
        tree.echo(name, "1002 1000\n")
        tree.echo(name, "0x3e9", append=True)             # kstrtoul base 0
        assert tree.read_text(name) == "1000\n1001\n1002\n"
        assert errno_of(tree.echo, name, "1003 x", append=True) == errno.EINVAL
        assert errno_of(tree.echo, name, "1003 99999999999999999999", append=True) == \
            errno.EINVAL                                   # kstrtoul's ERANGE becomes EINVAL
        # trace_pid_list_set refuses pids of 30 bits and more; trace_pid_write returns -1
        assert errno_of(tree.echo, name, "1003 0x40000000", append=True) == errno.EPERM
        assert errno_of(tree.echo, name, "-1", append=True) == errno.EINVAL
        assert tree.read_text(name) == "1000\n1001\n1002\n"   # all or nothing
        tree.echo(name, "4194304 0x100000005", append=True)  # past pid_max; cast to pid_t
        assert tree.read_text(name) == "5\n1000\n1001\n1002\n4194304\n"
        tree.echo(name, "7")                               # > empties first
        assert tree.read_text(name) == "7\n"
        tree.echo(name, "")
        assert tree.read_text(name) == ""


def test_without_lists_every_task_is_traced(system, tree):
    send(system, "lo")
    send(system, "eth0")
    assert tasks_in(tree) == [f"tracesim-ctl-{ctl_pid(system)}", "<idle>-0"]


def test_set_event_pid_keeps_only_the_listed_tasks(system, tree):
    tree.echo("/set_event_pid", str(ctl_pid(system)))
    send(system, "lo")
    send(system, "eth0")
    assert tasks_in(tree) == [f"tracesim-ctl-{ctl_pid(system)}"]
    tree.echo("/set_event_pid", "0")
    send(system, "lo")
    send(system, "eth0")
    assert tasks_in(tree)[1:] == ["<idle>-0"]
    tree.echo("/set_event_pid", "")                        # cleared: everyone again
    send(system, "lo")
    assert tasks_in(tree)[2:] == [f"tracesim-ctl-{ctl_pid(system)}"]


def test_notrace_pids_are_left_out(system, tree):
    tree.echo("/set_event_notrace_pid", str(ctl_pid(system)))
    send(system, "lo")
    send(system, "eth0")
    assert tasks_in(tree) == ["<idle>-0"]
    # a pid in both lists is left out
    tree.echo("/set_event_pid", f"0 {ctl_pid(system)}")
    send(system, "lo")
    send(system, "eth0")
    assert tasks_in(tree) == ["<idle>-0", "<idle>-0"]


def test_a_pid_list_nobody_is_in_records_nothing(system, tree):
    tree.echo("/set_event_pid", "4000000")
    send(system, "lo")
    send(system, "eth0")
    assert tasks_in(tree) == []
    assert "entries-in-buffer/entries-written: 0/0" in tree.read_text("/trace")


def test_lists_are_per_instance(system, tree):
    tree.mkdir("/instances/foo")
    tree.echo("/instances/foo" + NETIF + "/enable", "1")
    tree.echo("/instances/foo/set_event_pid", "0")
    assert tree.read_text("/set_event_pid") == ""
    send(system, "lo")
    send(system, "eth0")
    assert tasks_in(tree, "/instances/foo/trace") == ["<idle>-0"]
    assert len(tasks_in(tree)) == 2


def test_unconditional_triggers_fire_before_the_pid_check(system, tree):
    # trace_trigger_soft_disabled: triggers, then soft disable, then the pid filter
    tree.echo("/set_event_pid", "4000000")
    tree.echo(NETIF + "/trigger", "traceoff")
    send(system, "eth0")
    assert tree.read_text("/tracing_on") == "0\n"
    assert tasks_in(tree) == []


def test_kprobe_events_follow_the_pid_lists(system, tree):
    tree.echo("/kprobe_events", "p:myprobe __netdev_alloc_skb len=%si:u32")
    tree.echo("/events/kprobes/myprobe/enable", "1")
    tree.echo(NETIF + "/enable", "0")
    tree.echo("/set_event_notrace_pid", "0")
    send(system, "eth0")
    assert tasks_in(tree) == []
    tree.echo("/set_event_notrace_pid", "")
    send(system, "eth0")
    assert tasks_in(tree) == ["<idle>-0"]


@pytest.mark.parametrize("follow", [False, True])
def test_event_fork_adds_children_of_listed_tasks(system, tree, follow):
    tree.echo("/set_event_pid", "0")
    tree.echo("/options/event-fork", "1" if follow else "0")
    # the shell forks from idle and forks ping: followed, both are listed (ping until its
    # task is freed, a grace period after its exit)
    assert system.control(["ping", "eth0", "-c", "1"])[0] == 0
    shell = system.kernel.user_task("bash").pid
    assert tree.read_text("/set_event_pid") == \
        ("0\n" + (f"{shell}\n{shell + 1}\n" if follow else ""))
    assert any(t.startswith("ping-") for t in tasks_in(tree)) == follow


def test_event_fork_removes_exiting_tasks(system, tree):
    machine = system.kernel.machine
    tree.echo("/options/event-fork", "1")
    task = machine.spawn("worker")
    tree.echo("/set_event_pid", f"0 {task.pid}")
    tree.echo("/set_event_notrace_pid", str(task.pid))
    machine.exit_task(task)
    assert tree.read_text("/set_event_pid") == "0\n"
    assert tree.read_text("/set_event_notrace_pid") == ""
    tree.echo("/options/event-fork", "0")
    other = machine.spawn("other")
    machine.exit_task(other)                   # no longer followed: nothing changes
    assert tree.read_text("/set_event_pid") == "0\n"


def test_emptied_by_exits_the_list_still_filters(system, tree):
    # the list stays allocated once its last pid exits (trace_filter_add_remove_task)
    machine = system.kernel.machine
    tree.echo("/options/event-fork", "1")
    task = machine.spawn("worker")
    tree.echo("/set_event_pid", str(task.pid))
    machine.exit_task(task)
    send(system, "lo")
    send(system, "eth0")
    assert tree.read_text("/set_event_pid") == "" and tasks_in(tree) == []


@pytest.mark.fuse
def test_through_a_mount_with_the_shell(tmp_path_factory):
    need_fuse(tmp_path_factory.getbasetemp())
    with mounted(tmp_path_factory.mktemp("tracefs")) as mnt:
        def ctl(*argv: str) -> None:
            status, text = request(str(mnt), list(argv))
            assert status == 0, text
        sh(f"echo 1 > {NETIF[1:]}/enable", mnt)
        ctl("send", "lo", "--len", "64")
        pid = int(LINE_TASK.search(sh("cat trace", mnt).stdout).group(2))
        sh(f"echo > trace; echo {pid} > set_event_notrace_pid", mnt)
        assert sh("cat set_event_notrace_pid", mnt).stdout == f"{pid}\n"
        ctl("send", "lo", "--len", "64")
        ctl("send", "eth0", "--len", "64")
        out = sh("cat trace", mnt).stdout
        assert [m.group(1) for m in LINE_TASK.finditer(out)] == ["<idle>"]
        bad = sh("echo nope >> set_event_pid", mnt)
        assert bad.returncode != 0 and "Invalid argument" in bad.stderr


SWITCH = "/events/sched/sched_switch"
SWITCH_LINE = re.compile(r"sched_switch: prev_comm=\S+ prev_pid=(\d+) .* next_pid=(\d+) ")


def switches(tree) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in SWITCH_LINE.findall(tree.read_text("/trace"))]


def test_sched_switch_is_kept_when_prev_or_next_is_listed(system, tree):
    """event_filter_pid_sched_switch_probe_pre: a switch into a listed task is recorded though
    the task running when it fires (prev) is not listed; one between two others is not."""
    machine, sched = system.kernel.machine, system.kernel.sched
    worker, other = machine.spawn("worker"), machine.spawn("other")
    tree.echo(NETIF + "/enable", "0")
    tree.echo(SWITCH + "/enable", "1")
    tree.echo("/set_event_pid", str(worker.pid))
    with system.kernel.lock, machine.on_cpu(0):
        with sched.running(other):
            pass
        with sched.running(worker):
            pass
    seen = switches(tree)
    assert seen and all(worker.pid in pair for pair in seen), seen
    assert (0, worker.pid) in seen and (worker.pid, 0) in seen
    # the notrace list drops a switch only when it names both tasks
    tree.echo("/set_event_pid", "")
    tree.echo("/trace", "")
    tree.echo("/set_event_notrace_pid", f"0 {worker.pid}")
    with system.kernel.lock, machine.on_cpu(0):
        with sched.running(worker):
            pass
        with sched.running(other):
            pass
    seen = switches(tree)
    assert (0, worker.pid) not in seen and (0, other.pid) in seen, seen


def test_wakeup_of_a_listed_task_is_kept(system, tree):
    """event_filter_pid_sched_wakeup_probe_pre: the woken task decides when the waker would be
    left out."""
    machine, sched = system.kernel.machine, system.kernel.sched
    worker = machine.spawn("worker")
    tree.echo(NETIF + "/enable", "0")
    tree.echo("/events/sched/sched_wakeup/enable", "1")
    tree.echo("/set_event_pid", str(worker.pid))
    with system.kernel.lock, machine.on_cpu(0):
        with sched.running(worker):          # idle (not listed) wakes the worker
            pass
    assert re.search(rf"sched_wakeup: comm=worker pid={worker.pid} ", tree.read_text("/trace"))
