"""sched:* events of Linux 6.18 the model emits (include/trace/events/sched.h).

Each takes the tracepoint's TP_PROTO arguments as model objects: tasks (``machine.Task``, with
``comm``, ``pid``, ``prio``) and plain ints. ``prio`` is the kernel's ``p->prio`` (120 for a
SCHED_NORMAL task at nice 0, as the reference machine's tasks print).

``sched_switch`` records the state the kernel's ``__trace_sched_switch_state`` computes: the index
of the task's ``__state | exit_state`` in TASK_REPORT as a single bit (``S`` 0x1, ``D`` 0x2, ...,
``I`` 0x80 for TASK_IDLE), 0 for a running task, and TASK_REPORT_MAX (0x100, printed ``R+``)
for a preempted one. ``switch_state`` below does that mapping.
"""
from __future__ import annotations

from typing import Any

from tracesim.kernel_model.trace.event import TraceEvent

# task states (include/linux/sched.h)
TASK_RUNNING = 0x0000
TASK_INTERRUPTIBLE = 0x0001
TASK_UNINTERRUPTIBLE = 0x0002
EXIT_DEAD = 0x0010
EXIT_ZOMBIE = 0x0020
TASK_NOLOAD = 0x0400
TASK_IDLE = TASK_UNINTERRUPTIBLE | TASK_NOLOAD
TASK_REPORT = 0x7f
TASK_REPORT_IDLE = TASK_REPORT + 1
TASK_REPORT_MAX = TASK_REPORT_IDLE << 1

# TASK_REPORT as the preprocessor expands it in sched_switch's TP_printk
_REPORT = ("(0x00000000 | 0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 | 0x00000010 | "
           "0x00000020 | 0x00000040)")
_STATE_MASK = f"((({_REPORT} + 1) << 1) - 1)"
_STATE_NAMES = ('{ 0x00000001, "S" }, { 0x00000002, "D" }, { 0x00000004, "T" }, '
                '{ 0x00000008, "t" }, { 0x00000010, "X" }, { 0x00000020, "Z" }, '
                '{ 0x00000040, "P" }, { 0x00000080, "I" }')
SWITCH_FMT = (
    '"prev_comm=%s prev_pid=%d prev_prio=%d prev_state=%s%s ==> next_comm=%s next_pid=%d '
    'next_prio=%d", REC->prev_comm, REC->prev_pid, REC->prev_prio, '
    f"(REC->prev_state & {_STATE_MASK}) ? __print_flags(REC->prev_state & {_STATE_MASK}, "
    f'"|", {_STATE_NAMES}) : "R", REC->prev_state & (({_REPORT} + 1) << 1) ? "+" : "", '
    "REC->next_comm, REC->next_pid, REC->next_prio")


def switch_state(state: int, preempt: bool) -> int:
    """``__trace_sched_switch_state``: what sched_switch records as prev_state."""
    if preempt:
        return TASK_REPORT_MAX
    if state == TASK_IDLE:
        index = TASK_REPORT_IDLE.bit_length()
    else:
        index = (state & TASK_REPORT).bit_length()
    return 1 << (index - 1) if index else 0


def _switch(preempt: bool, prev: Any, nxt: Any, prev_state: int) -> tuple:
    return (prev.comm, prev.pid, prev.prio, switch_state(prev_state, preempt),
            nxt.comm, nxt.pid, nxt.prio)


def _wakeup(p: Any) -> tuple:
    return (p.comm, p.pid, p.prio, p.cpu)


def _fork(parent: Any, child: Any) -> tuple:
    return (parent.comm, parent.pid, child.comm, child.pid)


def _exec(p: Any, old_pid: int, filename: str) -> tuple:
    return (filename, p.pid, old_pid)


def _exit(p: Any, group_dead: bool) -> tuple:
    return (p.comm, p.pid, p.prio, group_dead)


def _comm_pid_prio(p: Any) -> tuple:
    return (p.comm, p.pid, p.prio)


def _wait(pid: int, current: Any) -> tuple:
    # trace_sched_process_wait(wo->wo_pid): the waiter's comm and prio, the pid waited for
    return (current.comm, pid, current.prio)


def _migrate(p: Any, dest_cpu: int) -> tuple:
    return (p.comm, p.pid, p.prio, p.cpu, dest_cpu)


def _stat_runtime(p: Any, runtime: int) -> tuple:
    return (p.comm, p.pid, runtime)


_WAKEUP_FIELDS = [("char[16]", "comm"), ("pid_t", "pid"), ("int", "prio"), ("int", "target_cpu")]
_WAKEUP_FMT = ('"comm=%s pid=%d prio=%d target_cpu=%03d", REC->comm, REC->pid, REC->prio, '
               "REC->target_cpu")
_CPP_FIELDS = [("__string", "comm"), ("pid_t", "pid"), ("int", "prio")]
_CPP_FMT = '"comm=%s pid=%d prio=%d", __get_str(comm), REC->pid, REC->prio'


def events() -> list[TraceEvent]:
    out = [TraceEvent(
        "sched", "sched_switch",
        [("char[16]", "prev_comm"), ("pid_t", "prev_pid"), ("int", "prev_prio"),
         ("long", "prev_state"), ("char[16]", "next_comm"), ("pid_t", "next_pid"),
         ("int", "next_prio")],
        SWITCH_FMT, _switch,
        proto="bool preempt, struct task_struct *prev, struct task_struct *next, "
              "unsigned int prev_state")]
    out += [TraceEvent("sched", name, _WAKEUP_FIELDS, _WAKEUP_FMT, _wakeup,
                       proto="struct task_struct *p")
            for name in ("sched_waking", "sched_wakeup", "sched_wakeup_new")]
    out.append(TraceEvent(
        "sched", "sched_process_fork",
        [("__string", "parent_comm"), ("pid_t", "parent_pid"), ("__string", "child_comm"),
         ("pid_t", "child_pid")],
        '"comm=%s pid=%d child_comm=%s child_pid=%d", __get_str(parent_comm), REC->parent_pid, '
        "__get_str(child_comm), REC->child_pid",
        _fork, proto="struct task_struct *parent, struct task_struct *child"))
    out.append(TraceEvent(
        "sched", "sched_process_exec",
        [("__string", "filename"), ("pid_t", "pid"), ("pid_t", "old_pid")],
        '"filename=%s pid=%d old_pid=%d", __get_str(filename), REC->pid, REC->old_pid',
        _exec, proto="struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm"))
    out.append(TraceEvent(
        "sched", "sched_process_exit",
        [("char[16]", "comm"), ("pid_t", "pid"), ("int", "prio"), ("bool", "group_dead")],
        '"comm=%s pid=%d prio=%d group_dead=%s", REC->comm, REC->pid, REC->prio, '
        'REC->group_dead ? "true" : "false"',
        _exit, proto="struct task_struct *p, bool group_dead"))
    out.append(TraceEvent("sched", "sched_process_free", _CPP_FIELDS, _CPP_FMT, _comm_pid_prio,
                          proto="struct task_struct *p"))
    out.append(TraceEvent("sched", "sched_process_wait", _CPP_FIELDS, _CPP_FMT, _wait,
                          proto="struct pid *pid"))
    out.append(TraceEvent(
        "sched", "sched_migrate_task",
        [("__string", "comm"), ("pid_t", "pid"), ("int", "prio"), ("int", "orig_cpu"),
         ("int", "dest_cpu")],
        '"comm=%s pid=%d prio=%d orig_cpu=%d dest_cpu=%d", __get_str(comm), REC->pid, REC->prio,'
        " REC->orig_cpu, REC->dest_cpu",
        _migrate, proto="struct task_struct *p, int dest_cpu"))
    out.append(TraceEvent(
        "sched", "sched_stat_runtime",
        [("__string", "comm"), ("pid_t", "pid"), ("u64", "runtime")],
        '"comm=%s pid=%d runtime=%Lu [ns]", __get_str(comm), REC->pid, '
        "(unsigned long long)REC->runtime",
        _stat_runtime, proto="struct task_struct *tsk, u64 runtime"))
    return out
