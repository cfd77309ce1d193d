"""The background life of an idle kernel: ticks, timers, kworkers, RCU, ksoftirqd, device irqs.

A kernel is never silent. ``IdleTrickle`` keeps a seeded timeline of what an idle 2-CPU machine
(NO_HZ_IDLE, HZ=250) does and plays it on the model's clock; the rates (per CPU unless said) are
those of a quiet VM:

activity (rate): events
- tick, the ``tick_nohz_handler`` hrtimer (~25/s per CPU): hrtimer_expire_entry/exit,
  hrtimer_start, sched_stat_runtime of a running task; when a CPU goes idle after a kthread,
  tick_stop, hrtimer_cancel and hrtimer_start (tick_nohz_idle_stop_tick);
- timer-wheel softirq (every 4th tick): softirq_raise/entry/exit TIMER;
- ``vmstat_update`` delayed work on ``kworker/N:1`` (1/s per CPU): timer_expire_entry/exit,
  workqueue_queue_work/activate_work/execute_start/execute_end, timer_start, sched_waking,
  sched_wakeup, sched_switch (prev_state=I);
- ``psi_avgs_work`` on CPU 0 (0.5/s): as vmstat_update;
- RCU grace period, ``rcu_sched`` woken by its process_timeout timer (~4/s): sched events (I);
- RCU callbacks, ``rcu_core`` (~2/s per CPU; 1 in 8 run by ``ksoftirqd/N``, prev_state=S):
  softirq RCU, sched_process_free of reaped tasks (delayed_put_task_struct);
- block device irq ``virtio1-requests``, irq 25 (~0.5/s): irq_handler_entry/exit, softirq BLOCK.

Each timeline entry runs on its CPU: interrupts in hardirq context, softirqs in softirq context
on irq exit, kthreads switched in from the idle task and back. ``run_until(ns)`` plays every
entry due by then (virtual clocks jump to each entry's time); ``start()`` plays it on a
background thread, entry by entry as wall time reaches them, holding ``kernel.lock`` for each
(``tracesim mount`` does this). Nothing here runs per packet, so it costs the packet path
nothing. The same seed gives the same timeline.
"""
from __future__ import annotations

import contextlib
import heapq
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from tracesim.kernel_model.background import Background
from tracesim.kernel_model.sched import call
from tracesim.kernel_model.trace.events.irq import BLOCK_SOFTIRQ, IRQ_HANDLED, RCU_SOFTIRQ, TIMER_SOFTIRQ
from tracesim.kernel_model.trace.events.sched import TASK_IDLE, TASK_INTERRUPTIBLE
from tracesim.kernel_model.trace.events.timer import HRTIMER_MODE_ABS_PINNED_HARD, TIMER_DEFERRABLE

if TYPE_CHECKING:
    from tracesim.kernel_model.kernel import Kernel
    from tracesim.kernel_model.machine import Task

NSEC = 1_000_000_000
TICK_NS = NSEC // 25             # idle ticks: ~25/s per CPU
JIFFY_NS = NSEC // 250           # HZ=250
INITIAL_JIFFIES = 0xfffb6c20     # -300 s of jiffies at HZ=250, as a kernel boots (wraps soon)
BLOCK_IRQ = 25
BLOCK_VECTOR = 0x22              # its x86 vector
IRQ_REGS = 0xffffc90000003f58    # the pt_regs an interrupt entry passes, on the irq stack
TIMER_OBJ_BASE = 0xffff88813bc20000
WORK_OBJ_BASE = 0xffff88813bd20000
RQ_BASE = 0xffff88813bc2d340     # CPU 0's struct rq (runqueues, per CPU); its lock is first
RQ_SIZE = 0x40000               # the per-CPU area stride

# (name, mean interval ns, per CPU, handler method)
ACTIVITIES: tuple[tuple[str, int, bool, str], ...] = (
    ("tick", TICK_NS, True, "_tick"),
    ("vmstat", NSEC, True, "_vmstat"),
    ("psi", 2 * NSEC, False, "_psi"),
    ("rcu_gp", NSEC // 4, False, "_rcu_gp"),
    ("block_irq", 2 * NSEC, False, "_block_irq"),
)


class Obj:
    """A kernel object the events print: a timer, an hrtimer or a work item."""

    __slots__ = ("addr", "function", "func", "expires", "flags")

    def __init__(self, addr: int, function: int, expires: int = 0, flags: int = 0) -> None:
        self.addr = addr
        self.function = self.func = function
        self.expires = expires
        self.flags = flags


class IrqAction:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class IdleTrickle(Background):
    """The idle machine's timeline over one kernel (``kernel.idle``)."""

    thread_name = "idle-trickle"

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        m = kernel.machine
        self.machine = m
        self.sched = kernel.sched
        self.clock = kernel.clock
        self.rng = random.Random(kernel.seed * 7_919 + zlib.crc32(b"idle"))
        ev = kernel.tracing.event
        self.tp: dict[str, Any] = {
            name: ev(system, name) for system, name in (
                ("timer", "hrtimer_start"), ("timer", "hrtimer_expire_entry"),
                ("timer", "hrtimer_expire_exit"), ("timer", "timer_start"),
                ("timer", "timer_expire_entry"), ("timer", "timer_expire_exit"),
                ("timer", "hrtimer_cancel"), ("timer", "tick_stop"),
                ("irq", "irq_handler_entry"), ("irq", "irq_handler_exit"),
                ("irq", "softirq_raise"), ("irq", "softirq_entry"), ("irq", "softirq_exit"),
                ("workqueue", "workqueue_queue_work"), ("workqueue", "workqueue_activate_work"),
                ("workqueue", "workqueue_execute_start"),
                ("workqueue", "workqueue_execute_end"))}
        self.sites = kernel.kprobes.sites
        addr = kernel.kallsyms.addr
        ncpus = m.nr_cpus
        with m.on_cpu(0):
            self.kworkers = []
            for cpu in range(ncpus):
                with m.on_cpu(cpu):
                    self.kworkers.append(m.spawn(f"kworker/{cpu}:1", kthread=True))
            self.rcu_sched = m.spawn("rcu_sched", kthread=True)
        self.ticks = [Obj(TIMER_OBJ_BASE + 0x1000 * c + 0x5c0, addr("tick_nohz_handler"))
                      for c in range(ncpus)]
        self.vmstat_timers = [Obj(WORK_OBJ_BASE + 0x1000 * c + 0x20,
                                  addr("delayed_work_timer_fn"), flags=c | TIMER_DEFERRABLE)
                              for c in range(ncpus)]
        self.vmstat_work = [Obj(WORK_OBJ_BASE + 0x1000 * c, addr("vmstat_update"))
                            for c in range(ncpus)]
        self.psi_work = Obj(WORK_OBJ_BASE + 0x3000, addr("psi_avgs_work"))
        self.psi_timer = Obj(WORK_OBJ_BASE + 0x3020, addr("delayed_work_timer_fn"))
        self.rcu_timer = Obj(TIMER_OBJ_BASE + 0x3000, addr("process_timeout"))
        self.block_action = IrqAction("virtio1-requests")
        self.timeline: list[tuple[int, int, str, int]] = []
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        now = self.clock.peek_ns()
        for name, interval, per_cpu, _ in ACTIVITIES:
            for cpu in range(ncpus if per_cpu else 1):
                self._plan(name, cpu, now + self.rng.randrange(interval))

    # ------------------------------------------------------------------ the timeline
    def _plan(self, name: str, cpu: int, due: int) -> None:
        self._seq += 1
        heapq.heappush(self.timeline, (due, self._seq, name, cpu))

    def next_due(self) -> int:
        return self.timeline[0][0]

    def run_until(self, until_ns: int) -> int:
        """Play every entry due at or before ``until_ns``; returns how many ran."""
        ran = 0
        handlers = {name: getattr(self, method) for name, _, _, method in ACTIVITIES}
        intervals = {name: interval for name, interval, _, _ in ACTIVITIES}
        virtual = self.clock.mode == "virtual"
        while self.timeline and self.timeline[0][0] <= until_ns:
            due, _, name, cpu = heapq.heappop(self.timeline)
            if virtual and self.clock.virtual_ns < due:
                self.clock.virtual_ns = due
            if name in ("psi", "rcu_gp", "block_irq"):
                cpu = 0 if name == "psi" else self.rng.randrange(self.machine.nr_cpus)
            with self.machine.on_cpu(cpu) as on:
                if on.task is on.idle:       # the idle loop runs with preemption disabled
                    with self.machine.preempt_disabled():
                        handlers[name](cpu)
                else:
                    handlers[name](cpu)
            interval = intervals[name]
            self._plan(name, cpu if name in ("tick", "vmstat") else 0,
                       due + interval // 2 + self.rng.randrange(interval))
            ran += 1
        if virtual and self.clock.virtual_ns < until_ns:
            self.clock.virtual_ns = until_ns
        return ran

    def run_for(self, ns: int) -> int:
        """Let ``ns`` of idle time pass (virtual clocks): play what falls due."""
        return self.run_until(self.clock.peek_ns() + ns)

    # ------------------------------------------------------------------ a background thread



    def _run(self) -> None:
        origin_wall = time.monotonic_ns()
        origin_model = self.clock.peek_ns()
        while not self._stop.is_set():
            with self.kernel.lock:
                if self.clock.mode == "virtual":
                    target = origin_model + time.monotonic_ns() - origin_wall
                else:
                    target = self.clock.peek_ns()
                self.run_until(target)
                wait_ns = self.next_due() - (target if self.clock.mode == "virtual"
                                             else self.clock.peek_ns())
            self._stop.wait(min(max(wait_ns, 1_000_000), 200_000_000) / NSEC)

    @contextlib.contextmanager
    def _kthread(self, task: Task, sleep: int) -> Iterator[None]:
        """A kthread runs on this CPU, sleeps in ``sleep``; the CPU goes idle again."""
        with self.sched.running(task, sleep):
            yield
        if self.machine.current.task is self.machine.current.idle:
            self._stop_tick(self.machine.current.id)

    def _stop_tick(self, cpu: int) -> None:
        """tick_nohz_idle_stop_tick: the idle CPU stops its periodic tick and programs the
        tick hrtimer for the next timer event (tick_stop, hrtimer_cancel, hrtimer_start)."""
        tp, tick = self.tp, self.ticks[cpu]
        with self.machine.irqs_disabled():
            if tp["tick_stop"].enabled:
                tp["tick_stop"].fire(1, 0)
            if tp["hrtimer_cancel"].enabled:
                tp["hrtimer_cancel"].fire(tick)
            tick.expires = self.clock.peek_ns() + TICK_NS
            if tp["hrtimer_start"].enabled:
                tp["hrtimer_start"].fire(tick, HRTIMER_MODE_ABS_PINNED_HARD, False)

    # ------------------------------------------------------------------ interrupts
    def _jiffies(self) -> int:
        return (INITIAL_JIFFIES + self.clock.peek_ns() // JIFFY_NS) & 0xffffffffffffffff

    def _softirq(self, vec: int, body: Callable[[], None]) -> None:
        """``handle_softirqs`` on irq exit for one raised vector."""
        tp = self.tp
        def run(ksirqd: int) -> None:
            with self.machine.softirq():
                if tp["softirq_entry"].enabled:
                    tp["softirq_entry"].fire(vec)
                body()
                if tp["softirq_exit"].enabled:
                    tp["softirq_exit"].fire(vec)
        call(self.sites["handle_softirqs"], run, self.machine.current.task.comm.startswith(
            "ksoftirqd/"))

    def _raise(self, vec: int) -> None:
        if self.tp["softirq_raise"].enabled:
            self.tp["softirq_raise"].fire(vec)

    def _tick(self, cpu: int) -> None:
        """The tick hrtimer on ``cpu`` (the local APIC timer interrupt): sched_tick, then the
        TIMER/RCU softirqs it raised on irq exit."""
        raised: list[int] = []
        call(self.sites["sysvec_apic_timer_interrupt"], lambda regs: self._tick_irq(cpu, raised),
             IRQ_REGS)
        for vec in raised:
            if vec == TIMER_SOFTIRQ:
                self._softirq(vec, lambda: call(self.sites["run_timer_softirq"], lambda: None))
            elif self.rng.randrange(8) == 0:          # deferred to ksoftirqd
                ksoftirqd = self.kernel.ksoftirqd[cpu]
                with self._kthread(ksoftirqd, TASK_INTERRUPTIBLE):
                    self._softirq(vec, lambda: self._rcu_core(cpu))
            else:
                self._softirq(vec, lambda: self._rcu_core(cpu))

    def _tick_irq(self, cpu: int, raised: list[int]) -> None:
        tp, m = self.tp, self.machine
        tick = self.ticks[cpu]
        with m.hardirq():
            now = self.clock.peek_ns()
            if tp["hrtimer_expire_entry"].enabled:
                tp["hrtimer_expire_entry"].fire(tick, now)
            call(self.sites["tick_nohz_handler"], lambda t: self._sched_tick(now), tick.addr)
            if self.rng.randrange(4) == 0:
                self._raise(TIMER_SOFTIRQ)
                raised.append(TIMER_SOFTIRQ)
            if self.sched.rcu_callbacks[cpu] or self.rng.randrange(12) == 0:
                self._raise(RCU_SOFTIRQ)
                raised.append(RCU_SOFTIRQ)
            if tp["hrtimer_expire_exit"].enabled:
                tp["hrtimer_expire_exit"].fire(tick)
            tick.expires = now + TICK_NS
            if tp["hrtimer_start"].enabled:
                tp["hrtimer_start"].fire(tick, HRTIMER_MODE_ABS_PINNED_HARD, False)

    def _sched_tick(self, now: int) -> None:
        """sched_tick: under the run queue's lock (rq_lock → raw_spin_rq_lock_nested →
        _raw_spin_lock, rq_unlock → raw_spin_rq_unlock → _raw_spin_unlock) the running task's
        runtime is accounted (update_curr)."""
        sites = self.sites
        m = self.machine
        rq = RQ_BASE + m.current.id * RQ_SIZE

        def account() -> None:
            call(sites["raw_spin_rq_lock_nested"],
                 lambda r, sub: call(sites["_raw_spin_lock"], lambda lock: None, r), rq, 0)
            task = m.current.task
            if task is not m.current.idle:
                self.sched._stat_runtime(task, max(now - task.exec_start, 0))
                task.exec_start = now
            call(sites["raw_spin_rq_unlock"],
                 lambda r: call(sites["_raw_spin_unlock"], lambda lock: None, r), rq)
        call(sites["sched_tick"], account)

    def _rcu_core(self, cpu: int) -> None:
        """RCU_SOFTIRQ: invoke the callbacks whose grace period ended (rcu_do_batch)."""
        callbacks = self.sched.rcu_callbacks[cpu]
        self.sched.rcu_callbacks[cpu] = []
        call(self.sites["rcu_core_si"], lambda: None)
        if callbacks:
            call(self.sites["rcu_do_batch"], lambda rdp: [cb() for cb in callbacks], 0)

    def _block_irq(self, cpu: int) -> None:
        """A disk completion: irq 25 handled, BLOCK softirq on exit."""
        tp = self.tp
        def handle(regs: int, vector: int) -> None:
            with self.machine.hardirq():
                if tp["irq_handler_entry"].enabled:
                    tp["irq_handler_entry"].fire(BLOCK_IRQ, self.block_action)
                call(self.sites["vp_interrupt"], lambda irq, dev: IRQ_HANDLED, BLOCK_IRQ, 0)
                self._raise(BLOCK_SOFTIRQ)
                if tp["irq_handler_exit"].enabled:
                    tp["irq_handler_exit"].fire(BLOCK_IRQ, self.block_action, IRQ_HANDLED)
        call(self.sites["common_interrupt"], handle, IRQ_REGS, BLOCK_VECTOR)
        self._softirq(BLOCK_SOFTIRQ, lambda: None)

    # ------------------------------------------------------------------ timers and workers
    def _expire_timer(self, timer: Obj, body: Callable[[], object]) -> None:
        """A timer-wheel timer fires in the TIMER softirq (raised from the tick)."""
        tp = self.tp
        with self.machine.hardirq():
            self._raise(TIMER_SOFTIRQ)

        def run() -> None:
            jiffies = self._jiffies()
            if tp["timer_expire_entry"].enabled:
                tp["timer_expire_entry"].fire(timer, jiffies, jiffies)
            call(self.sites[self.kernel.kallsyms.lookup(timer.function)[0]], lambda t: body(),
                 timer.addr)
            if tp["timer_expire_exit"].enabled:
                tp["timer_expire_exit"].fire(timer)
        self._softirq(TIMER_SOFTIRQ, run)

    def _arm_timer(self, timer: Obj, delay_ns: int) -> None:
        jiffies = self._jiffies()
        timer.expires = (jiffies + max(delay_ns // JIFFY_NS, 1)) & 0xffffffffffffffff
        if self.tp["timer_start"].enabled:
            self.tp["timer_start"].fire(timer, timer.expires, jiffies)

    def _work(self, cpu: int, timer: Obj, work: Obj, wq: str, period: int) -> None:
        """A delayed work item: its timer queues it, the CPU's kworker runs it, it re-arms."""
        tp = self.tp
        kworker = self.kworkers[cpu]

        def queue() -> None:
            if tp["workqueue_queue_work"].enabled:
                tp["workqueue_queue_work"].fire(cpu, wq, work, cpu)
            if tp["workqueue_activate_work"].enabled:
                tp["workqueue_activate_work"].fire(work)
            self.sched.wake_up(kworker, cpu)
        self._expire_timer(timer, queue)
        with self._kthread(kworker, TASK_IDLE):
            if tp["workqueue_execute_start"].enabled:
                tp["workqueue_execute_start"].fire(work)
            fn = self.kernel.kallsyms.lookup(work.func)[0]
            call(self.sites["process_one_work"],
                 lambda w, wk: call(self.sites[fn], lambda _: None, wk), kworker, work)
            self._arm_timer(timer, period)
            if tp["workqueue_execute_end"].enabled:
                tp["workqueue_execute_end"].fire(work, work.func)

    def _vmstat(self, cpu: int) -> None:
        self._work(cpu, self.vmstat_timers[cpu], self.vmstat_work[cpu], "mm_percpu_wq", NSEC)

    def _psi(self, cpu: int) -> None:
        self._work(cpu, self.psi_timer, self.psi_work, "events", 2 * NSEC)

    def _rcu_gp(self, cpu: int) -> None:
        """The grace-period kthread wakes from its timeout, advances the GP, sleeps (I)."""
        task: Task = self.rcu_sched
        self._expire_timer(self.rcu_timer, lambda: self.sched.wake_up(task, cpu))
        with self._kthread(task, TASK_IDLE):
            call(self.sites["rcu_gp_kthread"], lambda _: None, 0)
            self._arm_timer(self.rcu_timer, 3 * JIFFY_NS)
