"""CPUs, tasks and execution contexts of the modelled kernel.

The model runs as one simulated thread of execution: at any moment it is "on" one CPU
(``this_cpu()``), running that CPU's current task, in a context described by the CPU's
``preempt_count`` in the kernel's encoding (``include/linux/preempt.h``):

    PREEMPT_MASK 0x000000ff   preempt_disable() depth
    SOFTIRQ_MASK 0x0000ff00   SOFTIRQ_OFFSET 0x100 while serving a softirq,
                              SOFTIRQ_DISABLE_OFFSET 0x200 per local_bh_disable()
    HARDIRQ_MASK 0x000f0000   HARDIRQ_OFFSET per nested hardirq
    NMI_MASK     0x00f00000   NMI_OFFSET; nmi_enter() also adds HARDIRQ_OFFSET

plus ``irqs_off``, ``need_resched`` (TIF_NEED_RESCHED with the per-CPU PREEMPT_NEED_RESCHED,
set together as x86 does), ``need_resched_lazy`` and ``migrate_disable`` (the current task's
migrate-disable depth). These are what the trace's flags column prints.

Sections are context managers that change the state on entry and undo exactly that on exit, on
the CPU where they were entered: ``softirq()``, ``hardirq()``, ``nmi()``, ``preempt_disabled()``,
``irqs_disabled()``, ``bh_disabled()``, ``migrate_disabled()``, ``rcu_read_lock()``.
The model is a !CONFIG_PREEMPT_RCU kernel, so ``rcu_read_lock()`` disables preemption — which is
why a packet received from softirq shows ``..s1.`` in the trace, as on the reference machine.
Switching CPU is explicit (``on_cpu(n)``); nothing here depends on wall time or thread scheduling.

Tasks: each CPU has an idle task (pid 0, ``swapper/N``) as its current task at boot; ``spawn``
makes new tasks with increasing pids; ``running(task)`` makes a task current on this CPU for a
while (a context switch in and back out). When memory is attached, every task has a
``task_struct`` in simulated memory with ``pid``, ``tgid``, ``comm`` (and ``cpu``) at the
header's offsets: idle tasks in static kernel data (as ``init_task`` is), others from the
``task_struct`` kmem_cache.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from tracesim.kernel_model.c_types import kernel_types
from tracesim.kernel_model.mm.user import UserSpace

if TYPE_CHECKING:
    from tracesim.kernel_model.mm.memory import Memory
    from tracesim.kernel_model.mm.slab import KmemCache, Slab

PREEMPT_MASK = 0x000000ff
SOFTIRQ_MASK = 0x0000ff00
HARDIRQ_MASK = 0x000f0000
NMI_MASK = 0x00f00000
PREEMPT_OFFSET = 0x1
SOFTIRQ_OFFSET = 0x100
SOFTIRQ_DISABLE_OFFSET = 0x200
HARDIRQ_OFFSET = 0x10000
NMI_OFFSET = 0x100000

TASK_COMM_LEN = 16
PF_KTHREAD = 0x00200000
PF_IDLE = 0x00000002
FIRST_USER_PID = 1000   # user tasks start here; pids below are boot tasks and kthreads


class Task:
    """A task: ``pid``, ``tgid``, ``comm`` (at most 15 characters), ``addr`` of its task_struct,
    ``mm``: its user address space (None for kernel threads and a task that has exited).

    The scheduler (sched.py) keeps ``prio`` (``p->prio``, 120 at nice 0), ``state``
    (``__state | exit_state``), ``parent`` and ``exec_start`` (ns it last went on a CPU)."""

    __slots__ = ("pid", "tgid", "comm", "addr", "flags", "cpu", "prio", "state", "parent",
                 "exec_start", "mm")

    def __init__(self, pid: int, tgid: int, comm: str, flags: int = 0, cpu: int = 0) -> None:
        self.pid = pid
        self.tgid = tgid
        self.comm = comm[:TASK_COMM_LEN - 1]
        self.addr = 0
        self.flags = flags
        self.cpu = cpu
        self.prio = 120
        self.state = 0
        self.parent: Task | None = None
        self.exec_start = 0
        self.mm: UserSpace | None = None if flags & PF_KTHREAD else UserSpace()

    def __repr__(self) -> str:
        return f"<Task {self.comm}-{self.pid}>"


class Cpu:
    """One CPU's execution state (what ``this_cpu()`` returns)."""

    __slots__ = ("id", "task", "idle", "preempt_count", "irqs_off", "need_resched",
                 "need_resched_lazy", "migrate_disable")

    def __init__(self, cpu_id: int, idle: Task) -> None:
        self.id = cpu_id
        self.idle = idle
        self.task = idle
        self.preempt_count = 0
        self.irqs_off = False
        self.need_resched = False
        self.need_resched_lazy = False
        self.migrate_disable = 0

    def in_nmi(self) -> bool:
        return bool(self.preempt_count & NMI_MASK)

    def in_hardirq(self) -> bool:
        return bool(self.preempt_count & HARDIRQ_MASK)

    def in_serving_softirq(self) -> bool:
        return bool(self.preempt_count & SOFTIRQ_OFFSET)

    def in_task(self) -> bool:
        return not self.preempt_count & (NMI_MASK | HARDIRQ_MASK | SOFTIRQ_OFFSET)

    def __repr__(self) -> str:
        return (f"<Cpu {self.id} {self.task!r} pc=0x{self.preempt_count:x}"
                f"{' irqs-off' if self.irqs_off else ''}>")


class _Section:
    """A context that adds ``offset`` to preempt_count and sets irqs_off for its duration."""

    __slots__ = ("machine", "offset", "irqs", "_cpu", "_saved_irqs")

    def __init__(self, machine: Machine, offset: int, irqs: bool | None) -> None:
        self.machine = machine
        self.offset = offset
        self.irqs = irqs          # True: irqs off inside, False: on inside, None: unchanged

    def __enter__(self) -> Cpu:
        cpu = self._cpu = self.machine.current
        cpu.preempt_count += self.offset
        self._saved_irqs = cpu.irqs_off
        if self.irqs is not None:
            cpu.irqs_off = self.irqs
        return cpu

    def __exit__(self, *exc: object) -> None:
        cpu = self._cpu
        cpu.preempt_count -= self.offset
        cpu.irqs_off = self._saved_irqs


class _MigrateDisabled:
    __slots__ = ("machine", "_cpu")

    def __init__(self, machine: Machine) -> None:
        self.machine = machine

    def __enter__(self) -> Cpu:
        cpu = self._cpu = self.machine.current
        cpu.migrate_disable += 1
        return cpu

    def __exit__(self, *exc: object) -> None:
        self._cpu.migrate_disable -= 1


class _OnCpu:
    __slots__ = ("machine", "target", "_saved")

    def __init__(self, machine: Machine, target: Cpu) -> None:
        self.machine = machine
        self.target = target

    def __enter__(self) -> Cpu:
        self._saved = self.machine.current
        self.machine.current = self.target
        return self.target

    def __exit__(self, *exc: object) -> None:
        self.machine.current = self._saved


class _Running:
    __slots__ = ("machine", "task", "_cpu", "_saved")

    def __init__(self, machine: Machine, task: Task) -> None:
        self.machine = machine
        self.task = task

    def __enter__(self) -> Task:
        cpu = self._cpu = self.machine.current
        self._saved = cpu.task
        self.machine.switch_to(self.task)
        return self.task

    def __exit__(self, *exc: object) -> None:
        self.machine.switch_to(self._saved, self._cpu)


class Machine:
    """N CPUs, the task list, the current CPU and the context sections."""

    def __init__(self, cpus: int = 2, mem: Memory | None = None) -> None:
        if cpus < 1:
            raise ValueError("a machine needs at least one CPU")
        self.tasks: dict[int, Task] = {}   # pid -> task, idle tasks (pid 0) aside
        self._next_pid = 1
        self.mem = mem
        self._task_cache: KmemCache | None = None
        self._slab: Slab | None = None
        self._alloc_site = 0
        self._free_site = 0
        ts = kernel_types().struct("task_struct")
        self._task_size = ts.size
        # 6.18 keeps a task's CPU in its thread_info (x86-64: THREAD_INFO_IN_TASK)
        self._off = {name: ts.offsetof(path) for name, path in (
            ("pid", "pid"), ("tgid", "tgid"), ("comm", "comm"), ("cpu", "thread_info.cpu"),
            ("flags", "flags"))}
        idle = [Task(0, 0, f"swapper/{n}", PF_KTHREAD | PF_IDLE, n) for n in range(cpus)]
        if mem is not None:
            # idle tasks live in static kernel data, like init_task
            region = mem.map(self._task_size * cpus, "init_task")
            for n, task in enumerate(idle):
                task.addr = region.base + n * self._task_size
                self._mirror(task)
        self.cpus = [Cpu(n, task) for n, task in enumerate(idle)]
        self.current = self.cpus[0]
        # called as hook(parent, child) when a task is created (sched_process_fork; the parent
        # is the task running on this CPU) and hook(task) when one exits (sched_process_free)
        self.fork_hooks: list[Callable[[Task, Task], None]] = []
        self.exit_hooks: list[Callable[[Task], None]] = []
        if mem is not None:         # the kernel's user accessors read the current task's pages
            mem.current_mm = self.current_mm

    def current_mm(self) -> UserSpace | None:
        """``current->mm``: the user address space of the task running on this CPU."""
        return self.current.task.mm

    # ------------------------------------------------------------------ CPUs
    @property
    def nr_cpus(self) -> int:
        return len(self.cpus)

    def this_cpu(self) -> Cpu:
        """The CPU the simulated thread of execution is on."""
        return self.current

    def smp_processor_id(self) -> int:
        return self.current.id

    def on_cpu(self, cpu_id: int) -> _OnCpu:
        """Run the ``with`` body on CPU ``cpu_id``, then come back."""
        return _OnCpu(self, self.cpus[cpu_id])

    def set_cpu(self, cpu_id: int) -> None:
        """Move the thread of execution to CPU ``cpu_id`` for good."""
        self.current = self.cpus[cpu_id]

    def for_each_cpu(self) -> Iterator[Cpu]:
        """Visit each CPU in turn, the thread of execution on it while the caller's body runs."""
        saved = self.current
        try:
            for cpu in self.cpus:
                self.current = cpu
                yield cpu
        finally:
            self.current = saved

    # ------------------------------------------------------------------ sections
    def softirq(self) -> _Section:
        """Serving a softirq (``__do_softirq``): SOFTIRQ_OFFSET, interrupts enabled."""
        return _Section(self, SOFTIRQ_OFFSET, False)

    def hardirq(self) -> _Section:
        """A hardirq handler (``irq_enter``..``irq_exit``): HARDIRQ_OFFSET, interrupts off."""
        return _Section(self, HARDIRQ_OFFSET, True)

    def nmi(self) -> _Section:
        """An NMI (``nmi_enter``): NMI_OFFSET + HARDIRQ_OFFSET, interrupts off."""
        return _Section(self, NMI_OFFSET + HARDIRQ_OFFSET, True)

    def preempt_disabled(self) -> _Section:
        return _Section(self, PREEMPT_OFFSET, None)

    def rcu_read_lock(self) -> _Section:
        """!CONFIG_PREEMPT_RCU: an RCU read-side section is a preempt-disabled section."""
        return _Section(self, PREEMPT_OFFSET, None)

    def irqs_disabled(self) -> _Section:
        """``local_irq_save``/``local_irq_restore``."""
        return _Section(self, 0, True)

    def bh_disabled(self) -> _Section:
        """``local_bh_disable``/``local_bh_enable``: SOFTIRQ_DISABLE_OFFSET."""
        return _Section(self, SOFTIRQ_DISABLE_OFFSET, None)

    def migrate_disabled(self) -> _MigrateDisabled:
        return _MigrateDisabled(self)

    def set_need_resched(self, lazy: bool = False) -> None:
        """``resched_curr``/``resched_curr_lazy`` on this CPU."""
        if lazy:
            self.current.need_resched_lazy = True
        else:
            self.current.need_resched = True

    def clear_need_resched(self) -> None:
        self.current.need_resched = self.current.need_resched_lazy = False

    # ------------------------------------------------------------------ tasks
    def attach_slab(self, slab: Slab, call_site: int = 0, free_site: int = 0) -> None:
        """From now on new tasks get their task_struct from the ``task_struct`` kmem_cache
        (``call_site``: the return address in dup_task_struct the kmem events show;
        ``free_site``: the one in free_task, where the task_struct goes back)."""
        from tracesim.kernel_model.mm.slab import SLAB_ACCOUNT, SLAB_HWCACHE_ALIGN, SLAB_PANIC
        self._slab = slab
        self._alloc_site = call_site
        self._free_site = free_site
        self._task_cache = slab.kmem_cache_create(
            "task_struct", self._task_size, 64, SLAB_HWCACHE_ALIGN | SLAB_PANIC | SLAB_ACCOUNT)

    def spawn(self, comm: str, tgid: int | None = None, kthread: bool = False,
              pid: int | None = None) -> Task:
        """A new task (not yet running anywhere). ``tgid`` defaults to its own pid."""
        if pid is None:
            pid = self._next_pid
        elif pid <= 0 or pid in self.tasks:
            raise ValueError(f"pid {pid} is taken or invalid")
        self._next_pid = max(self._next_pid, pid + 1)
        task = Task(pid, pid if tgid is None else tgid, comm, PF_KTHREAD if kthread else 0,
                    self.current.id)
        if self._slab is not None and self._task_cache is not None:
            task.addr = self._slab.kmem_cache_alloc(self._task_cache, call_site=self._alloc_site)
            self._mirror(task)
        self.tasks[pid] = task
        for hook in list(self.fork_hooks):
            hook(self.current.task, task)
        return task

    def spawn_user(self, comm: str) -> Task:
        """A user process: pids from FIRST_USER_PID on."""
        return self.spawn(comm, pid=max(self._next_pid, FIRST_USER_PID))

    def exit_task(self, task: Task) -> None:
        """The task is gone; its task_struct goes back to the cache."""
        if task.pid == 0:
            raise ValueError("idle tasks never exit")
        if any(cpu.task is task for cpu in self.cpus):
            raise ValueError(f"{task!r} is running")
        del self.tasks[task.pid]
        if task.addr and self._slab is not None and self._task_cache is not None:
            self._slab.kmem_cache_free(self._task_cache, task.addr, self._free_site)
            task.addr = 0
        for hook in list(self.exit_hooks):
            hook(task)

    def find_task(self, pid: int) -> Task | None:
        """The task with ``pid``; pid 0 is this CPU's idle task."""
        return self.current.idle if pid == 0 else self.tasks.get(pid)

    def switch_to(self, task: Task, cpu: Cpu | None = None) -> None:
        """Context switch: ``task`` becomes current on ``cpu`` (default: this CPU)."""
        cpu = cpu or self.current
        if task.pid == 0 and task is not cpu.idle:
            raise ValueError(f"{task!r} is the idle task of another CPU")
        cpu.task = task
        if task.cpu != cpu.id:
            task.cpu = cpu.id
            if task.addr:
                self._mirror(task)

    def running(self, task: Task) -> _Running:
        """Run ``task`` on this CPU for the ``with`` body, then switch back."""
        return _Running(self, task)

    def _mirror(self, task: Task) -> None:
        """Write the task's identity into its task_struct."""
        mem, off, base = self.mem, self._off, task.addr
        assert mem is not None
        mem.write_int(base + off["pid"], 4, task.pid)
        mem.write_int(base + off["tgid"], 4, task.tgid)
        mem.write_int(base + off["cpu"], 4, task.cpu)
        mem.write_int(base + off["flags"], 4, task.flags)
        mem.write(base + off["comm"], task.comm.encode()[:TASK_COMM_LEN - 1].ljust(TASK_COMM_LEN, b"\0"))
