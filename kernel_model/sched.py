"""The scheduler: task states, a run queue per CPU, wakeups, context switches, fork/exec/exit/wait.

One ``Scheduler`` per kernel (``kernel.sched``). Everything runs on the machine's current CPU in
the current task's context, as the kernel code it models does, and fires the sched events of
include/trace/events/sched.h where the kernel does:

* ``wake_up(p)`` — ``try_to_wake_up``: ``sched_waking`` (waker's context), ``sched_migrate_task``
  when the task lands on another CPU, ``sched_wakeup``; the task joins that CPU's run queue and
  an idle CPU gets need-resched;
* ``schedule(state)`` — ``__schedule``: the current task leaves the CPU in ``state`` (a running
  task is preempted and goes back to the run queue), ``sched_stat_runtime`` for the time it ran,
  ``sched_switch`` to the head of the run queue or the idle task; both comms go to
  ``saved_cmdlines`` while any event is on (tracing_record_taskinfo_sched_switch);
* ``running(task)`` — the task is woken on this CPU, runs the ``with`` body, then sleeps;
* ``fork`` (``kernel_clone``: ``sched_process_fork``, ``sched_wakeup_new``), ``exec``
  (``sched_process_exec``), ``exit`` (``do_exit``: ``sched_process_exit``, SIGCHLD to the
  parent, the last switch in state Z), ``wait`` (``sched_process_wait``, ``release_task``;
  ``sched_process_free`` comes later from an RCU callback, as ``delayed_put_task_struct`` does).

The context columns follow the kernel: the switch and wakeup run with interrupts off and
preemption disabled (``d..2.``). Calls go through the kprobe sites of their 6.18 functions
(``schedule``, ``try_to_wake_up``, ``kernel_clone``, ``do_exit`` ...), so kprobes on them fire.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from tracesim.kernel_model.machine import FIRST_USER_PID, Task
from tracesim.kernel_model.mm.user import UserSpace
from tracesim.kernel_model.trace.events.sched import EXIT_ZOMBIE, TASK_INTERRUPTIBLE, TASK_RUNNING
from tracesim.kernel_model.trace.events.signal import TRACE_SIGNAL_DELIVERED

if TYPE_CHECKING:
    from tracesim.kernel_model.kernel import Kernel

SIGKILL, SIGTERM, SIGCHLD = 9, 15, 17
CLD_EXITED = 1
TASK_NORMAL = 3           # TASK_INTERRUPTIBLE | TASK_UNINTERRUPTIBLE: try_to_wake_up's state
SIGCHLD_CLONE = SIGCHLD   # clone(2) flags of a fork(): the exit signal only
CLONE_ARGS = 0xffffc90000a0fe78   # the struct kernel_clone_args on the caller's kernel stack
WAIT_OPTS = 0xffffc90000a0fe00    # the struct wait_opts of kernel_wait4, on the same stack

_SCHED_EVENTS = ("sched_switch", "sched_waking", "sched_wakeup", "sched_wakeup_new",
                 "sched_process_fork", "sched_process_exec", "sched_process_exit",
                 "sched_process_free", "sched_process_wait", "sched_migrate_task",
                 "sched_stat_runtime")


def call(site: Any, func: Callable[..., Any], *args: Any) -> Any:
    """Run ``func(*args)`` as the kernel function of kprobe ``site`` (probes fire if any)."""
    return site.call(func, *args) if site.active else func(*args)


class Scheduler:
    """Run queues and the scheduler's operations over one kernel's machine."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.machine = kernel.machine
        self.clock = kernel.clock
        tracing = kernel.tracing
        self.tp = {name: tracing.event("sched", name) for name in _SCHED_EVENTS}
        self.tp_signal_generate = tracing.event("signal", "signal_generate")
        self.tp_signal_deliver = tracing.event("signal", "signal_deliver")
        self.tp_newtask = tracing.event("task", "task_newtask")
        self.tp_rename = tracing.event("task", "task_rename")
        site = kernel.kprobes.site
        self.kp = {name: site(name) for name in (
            "schedule", "try_to_wake_up", "update_curr", "kernel_clone", "copy_process",
            "wake_up_new_task", "bprm_execve", "do_exit", "kernel_wait4", "release_task",
            "delayed_put_task_struct", "__send_signal_locked", "begin_new_exec", "do_wait",
            "sched_fork")}
        self.rq: list[list[Task]] = [[] for _ in self.machine.cpus]
        self.nr_switches = 0
        self.pending_signals: dict[int, list[int]] = {}
        # RCU callbacks queued per CPU (call_rcu), run by the RCU softirq (idle.py)
        self.rcu_callbacks: list[list[Callable[[], None]]] = [[] for _ in self.machine.cpus]

    # ------------------------------------------------------------------ wakeups and switches
    def wake_up(self, p: Task, cpu: int | None = None) -> bool:
        """``try_to_wake_up(p, TASK_NORMAL, 0)``: False if ``p`` was already runnable."""
        return call(self.kp["try_to_wake_up"], self._try_to_wake_up, p, TASK_NORMAL, 0, cpu)

    def _try_to_wake_up(self, p: Task, state: int, wake_flags: int, cpu: int | None) -> bool:
        m = self.machine
        if p.state == TASK_RUNNING and (p in self.rq[p.cpu] or m.cpus[p.cpu].task is p):
            return False
        target = p.cpu if cpu is None else cpu
        with m.irqs_disabled(), m.preempt_disabled(), m.preempt_disabled():
            tp = self.tp
            if tp["sched_waking"].enabled:
                tp["sched_waking"].fire(p)
            if target != p.cpu:
                if tp["sched_migrate_task"].enabled:
                    tp["sched_migrate_task"].fire(p, target)
                self._set_task_cpu(p, target)
            p.state = TASK_RUNNING
            self.rq[target].append(p)
            if tp["sched_wakeup"].enabled:
                tp["sched_wakeup"].fire(p)
        target_cpu = m.cpus[target]
        if target_cpu.task is target_cpu.idle:
            target_cpu.need_resched = True
        return True

    def _set_task_cpu(self, p: Task, cpu: int) -> None:
        p.cpu = cpu
        if p.addr:
            self.machine._mirror(p)

    def schedule(self, state: int = TASK_INTERRUPTIBLE, preempt: bool = False) -> Task:
        """``schedule()`` on this CPU: the current task leaves in ``state``; returns the next."""
        return call(self.kp["schedule"], self._schedule, state, preempt)

    def _schedule(self, state: int, preempt: bool) -> Task:
        m = self.machine
        cpu = m.current
        prev = cpu.task
        rq = self.rq[cpu.id]
        nxt = rq.pop(0) if rq else cpu.idle
        if nxt is prev:
            return prev
        if prev is cpu.idle:
            state, preempt = TASK_RUNNING, False
        # __schedule runs with interrupts off and preempt depth 2 (preempt_disable + rq lock;
        # the idle task already runs with preemption disabled)
        depth = max(2 - (cpu.preempt_count & 0xff), 0)
        cpu.preempt_count += depth
        try:
            with m.irqs_disabled():
                self._switch(cpu, prev, nxt, rq, state, preempt)
        finally:
            cpu.preempt_count -= depth
        return nxt

    def _switch(self, cpu: Any, prev: Task, nxt: Task, rq: list[Task], state: int,
                preempt: bool) -> None:
        m = self.machine
        now = self.clock.peek_ns()
        if prev is not cpu.idle:
            prev.state = TASK_RUNNING if preempt else state
            if preempt:
                rq.append(prev)
            runtime = max(now - prev.exec_start, 0)
            call(self.kp["update_curr"], self._stat_runtime, prev, runtime)
        cpu.need_resched = False
        tp = self.tp["sched_switch"]
        if tp.enabled:
            tp.fire(preempt, prev, nxt, state)
        tracing = self.kernel.tracing
        if tracing.recording_events:
            self._record_taskinfo(tracing, prev, nxt)
        self.nr_switches += 1
        nxt.exec_start = now
        m.switch_to(nxt, cpu)

    @staticmethod
    def _record_taskinfo(tracing: Any, prev: Task, nxt: Task) -> None:
        """tracing_record_taskinfo_sched_switch: while events are on, both tasks' comms (with
        record-cmd) and tgids (with record-tgid) are saved at every switch."""
        arrays = tracing.arrays()
        tasks = [t for t in (prev, nxt) if t.pid]         # the idle task is never saved
        if any(ta.record_cmd for ta in arrays):
            for t in tasks:
                tracing.cmdlines.record(t.pid, t.comm)
        if any(ta.record_tgid for ta in arrays):
            for t in tasks:
                tracing.tgids[t.pid] = t.tgid

    def _stat_runtime(self, p: Task, runtime: int) -> None:
        tp = self.tp["sched_stat_runtime"]
        if tp.enabled:
            tp.fire(p, runtime)

    @contextlib.contextmanager
    def running(self, task: Task, sleep: int = TASK_INTERRUPTIBLE) -> Iterator[Task]:
        """``task`` is woken on this CPU and switched in for the body, then sleeps in ``sleep``
        and the CPU goes back to what it ran before (preempted for the body: ``R+``)."""
        cpu = self.machine.current
        if cpu.task is task:
            yield task
            return
        prev = cpu.task
        queued = next((rq for rq in self.rq if task in rq), None)
        if queued is not None:                         # runnable elsewhere: pulled here
            queued.remove(task)
            if task.cpu != cpu.id:
                if self.tp["sched_migrate_task"].enabled:
                    self.tp["sched_migrate_task"].fire(task, cpu.id)
                self._set_task_cpu(task, cpu.id)
            self.rq[cpu.id].insert(0, task)
        else:
            self.wake_up(task, cpu.id)
            self.rq[cpu.id].remove(task)
            self.rq[cpu.id].insert(0, task)            # to the head: it runs now
        self.schedule(preempt=prev is not cpu.idle)
        try:
            yield task
        finally:
            if cpu.task is task:
                with self.machine.on_cpu(cpu.id):
                    self.schedule(sleep)

    # ------------------------------------------------------------------ process life cycle
    def fork(self, comm: str | None = None, cpu: int | None = None,
             pid: int | None = None) -> Task:
        """``kernel_clone`` from the current task: a child process, woken (sched_wakeup_new)
        on ``cpu`` (default: the CPU after the parent's, as a balanced fork lands)."""
        return call(self.kp["kernel_clone"], self._kernel_clone, CLONE_ARGS, comm, cpu, pid)

    def _kernel_clone(self, args: int, comm: str | None, cpu: int | None,
                      pid: int | None) -> Task:
        m = self.machine
        parent = m.current.task
        child = call(self.kp["copy_process"], self._copy_process, 0, 0, -1, args, parent, comm,
                     pid)
        tp = self.tp["sched_process_fork"]
        if tp.enabled:
            tp.fire(parent, child)
        target = (parent.cpu + 1) % m.nr_cpus if cpu is None else cpu
        call(self.kp["wake_up_new_task"], self._wake_up_new_task, child, target)
        return child

    def _copy_process(self, pid_struct: int, trace: int, node: int, args: int, parent: Task,
                      comm: str | None, pid: int | None) -> Task:
        m = self.machine
        user = parent.pid >= FIRST_USER_PID or parent.pid == 1
        if pid is None and user:
            pid = max(m._next_pid, FIRST_USER_PID)
        child = m.spawn(comm or parent.comm, pid=pid,
                        kthread=bool(parent.flags & 0x00200000) and parent.pid != 0)
        child.parent = parent
        if child.mm is not None and parent.mm is not None:
            child.mm = parent.mm.copy()             # copy_mm: dup_mmap of the parent's
        call(self.kp["sched_fork"], self._sched_fork, SIGCHLD_CLONE, child)
        if self.tp_newtask.enabled:
            self.tp_newtask.fire(child, SIGCHLD_CLONE)
        return child

    @staticmethod
    def _sched_fork(clone_flags: int, p: Task) -> int:
        p.prio = p.parent.prio if p.parent is not None else p.prio
        p.state = TASK_RUNNING
        return 0

    def _wake_up_new_task(self, p: Task, target: int) -> None:
        m = self.machine
        with m.irqs_disabled(), m.preempt_disabled(), m.preempt_disabled():
            self._set_task_cpu(p, target)
            self.rq[target].append(p)
            tp = self.tp["sched_wakeup_new"]
            if tp.enabled:
                tp.fire(p)
        if m.cpus[target].task is m.cpus[target].idle:
            m.cpus[target].need_resched = True

    def exec(self, filename: str) -> None:
        """The current task execs ``filename`` (``bprm_execve`` → ``begin_new_exec``)."""
        call(self.kp["bprm_execve"], self._exec, 0, filename)

    def _exec(self, bprm: int, filename: str) -> None:
        p = self.machine.current.task
        call(self.kp["begin_new_exec"], self._begin_new_exec, bprm, p, filename)
        tp = self.tp["sched_process_exec"]
        if tp.enabled:
            tp.fire(p, p.pid, filename)

    def _begin_new_exec(self, bprm: int, p: Task, filename: str) -> None:
        comm = filename.rsplit("/", 1)[-1][:15]
        if self.tp_rename.enabled:                 # __set_task_comm
            self.tp_rename.fire(p, comm)
        p.comm = comm
        if p.addr:
            self.machine._mirror(p)
        if p.mm is not None:
            p.mm = UserSpace()                      # exec_mmap: the new program's own mm

    def exit(self, code: int = 0) -> None:
        """``do_exit``: the current task dies; its parent gets SIGCHLD; it leaves the CPU as a
        zombie (prev_state=Z) until the parent reaps it with ``wait``."""
        call(self.kp["do_exit"], self._do_exit, code)

    def _do_exit(self, code: int) -> None:
        p = self.machine.current.task
        tp = self.tp["sched_process_exit"]
        if tp.enabled:
            tp.fire(p, True)
        parent = p.parent
        if parent is not None and parent.pid in self.machine.tasks:
            self.send_signal(SIGCHLD, parent, CLD_EXITED)
        p.mm = None                                 # exit_mm
        self.schedule(EXIT_ZOMBIE)
        p.state = EXIT_ZOMBIE

    def wait(self, child: Task | None) -> int:
        """``kernel_wait4`` in the current task: reap ``child`` (a zombie); returns its pid."""
        return call(self.kp["kernel_wait4"], self._wait4, -1 if child is None else child.pid,
                    0, 0, 0, child)

    def _wait4(self, upid: int, stat_addr: int, options: int, ru: int,
               child: Task | None) -> int:
        tp = self.tp["sched_process_wait"]
        if tp.enabled:
            tp.fire(max(upid, 0), self.machine.current.task)
        return call(self.kp["do_wait"], self._do_wait, WAIT_OPTS, child)

    def _do_wait(self, wo: int, child: Task | None) -> int:
        if child is None or child.state != EXIT_ZOMBIE:
            return 0
        call(self.kp["release_task"], self._release_task, child)
        return child.pid

    def _release_task(self, p: Task) -> None:
        # put_task_struct_rcu_user: the task_struct is freed after a grace period
        self.rcu_callbacks[self.machine.current.id].append(lambda: self._free(p))

    def _free(self, p: Task) -> None:
        call(self.kp["delayed_put_task_struct"], self._put_task_struct, p)

    def _put_task_struct(self, p: Task) -> None:
        tp = self.tp["sched_process_free"]
        if tp.enabled:
            tp.fire(p)
        if p.pid in self.machine.tasks:
            self.machine.exit_task(p)

    # ------------------------------------------------------------------ signals
    def send_signal(self, sig: int, task: Task, code: int = 0) -> None:
        """``__send_signal_locked``: signal_generate, then wake the task to take it."""
        call(self.kp["__send_signal_locked"], self._send_signal, sig, code, task, 1)

    def _send_signal(self, sig: int, code: int, task: Task, group: int) -> None:
        tp = self.tp_signal_generate
        if tp.enabled:
            tp.fire(sig, code, task, group, TRACE_SIGNAL_DELIVERED)
        if sig != SIGCHLD:
            self.pending_signals.setdefault(task.pid, []).append(sig)
        if task.state != TASK_RUNNING and task.state != EXIT_ZOMBIE:
            self.wake_up(task)

    def deliver_signals(self) -> list[int]:
        """``get_signal`` in the current task on its way back to user space: signal_deliver for
        each pending signal (default actions: sa_handler 0). Returns the signals taken."""
        p = self.machine.current.task
        taken = self.pending_signals.pop(p.pid, [])
        tp = self.tp_signal_deliver
        for sig in taken:
            if tp.enabled:
                tp.fire(sig, 0, 0, 0)
        return taken
