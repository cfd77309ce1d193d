"""``Kernel``: one modelled kernel, everything bundled.

    kernel = Kernel(cpus=2, seed=0, devices=("lo", "eth0", "eth5"), clock="virtual")

Attributes: ``clock`` (trace clocks), ``mem`` (address space), ``machine`` (CPUs, tasks,
contexts), ``kallsyms``, ``kprobes``, ``printk`` (the log), ``tracing`` (events, ring buffers,
instances), ``slab`` (kmalloc / kmem_cache), ``net`` (devices, skbs, rx/tx), ``workloads``
(named traffic generators), ``ncpus``, ``seed`` and ``lock`` (held by any thread running
kernel code: control commands, workload batches).

Boot order matters and mirrors the kernel's: memory, CPUs and their idle tasks, kallsyms and
kprobes, then tracing (the tracepoints exist, all disabled), then the slab allocator (which fires
kmem events), then the boot tasks and the network stack. Boot leaves the thread of execution on
CPU 0 in its idle task, and tracing empty. ``clock="real"`` is for benchmarks and mounts;
``"virtual"`` (deterministic) for tests.
"""
from __future__ import annotations

import threading

from tracesim.kernel_model.clock import Clock
from tracesim.kernel_model.idle import IdleTrickle
from tracesim.kernel_model.kallsyms import Kallsyms
from tracesim.kernel_model.kprobes import Kprobes
from tracesim.kernel_model.machine import Machine, Task
from tracesim.kernel_model.mm.memory import Memory
from tracesim.kernel_model.mm.slab import Slab
from tracesim.kernel_model.net.core import Net
from tracesim.kernel_model.net.sockets import Sockets
from tracesim.kernel_model.sched import Scheduler
from tracesim.kernel_model.syscalls import Syscalls
from tracesim.kernel_model.trace.printk import Printk
from tracesim.kernel_model.trace.tracing import Tracing
from tracesim.kernel_model.version import LINUX_BANNER
from tracesim.kernel_model.workload import Workloads

DEFAULT_DEVICES = ("lo", "eth0", "eth5")


class Kernel:
    def __init__(self, cpus: int = 2, seed: int = 0,
                 devices: tuple[str, ...] | list[str] = DEFAULT_DEVICES,
                 clock: str = "virtual") -> None:
        if "lo" not in devices:
            devices = ("lo", *devices)      # loopback always exists, first, like on Linux
        self.ncpus = cpus
        self.seed = seed
        # whoever runs kernel code from a thread (control channel, workload) holds this
        self.lock = threading.RLock()
        self.clock = Clock(clock)
        self.mem = Memory()
        self.machine = Machine(cpus, self.mem)
        self.kallsyms = Kallsyms(self.mem)
        self.kprobes = Kprobes(self.kallsyms, self.mem, cpus, self.machine.smp_processor_id)
        self.printk = Printk(self.clock.reader("local"))
        self.printk.printk(LINUX_BANNER.rstrip("\n"))      # start_kernel's first line
        self.tracing = Tracing(self)
        self.slab = Slab(self.mem, self.tracing.event, self.kprobes)
        # task_structs come from dup_task_struct and go back in free_task (free_task_struct
        # is inline there): the kmem events' call sites
        self.machine.attach_slab(self.slab, self.kallsyms.addr("dup_task_struct") + 0x4a,
                                 self.kallsyms.symbol("free_task").addr + 0x33)
        self.init_task = self.machine.spawn("systemd")            # pid 1
        self.kthreadd = self.machine.spawn("kthreadd", kthread=True)
        self.ksoftirqd: list[Task] = []
        for cpu in range(cpus):
            with self.machine.on_cpu(cpu):
                self.ksoftirqd.append(self.machine.spawn(f"ksoftirqd/{cpu}", kthread=True))
        self.net = Net(self, tuple(devices))
        self.net.sockets = Sockets(self.net)       # UDP, TCP and ping sockets over net
        self.printk.printk(f"smp: Brought up 1 node, {cpus} CPU{'s' if cpus > 1 else ''}")
        self.workloads = Workloads(self)
        self._user_tasks: dict[str, Task] = {}
        # the task model: scheduler, syscalls, and the idle machine's background (kworkers,
        # rcu_sched, ticks) - which never runs by itself: idle.run_until / idle.start
        self.sched = Scheduler(self)
        self.syscalls = Syscalls(self)
        self.idle = IdleTrickle(self)

    def user_task(self, comm: str) -> Task:
        """The user process called ``comm`` (created on first use, kept for later calls)."""
        task = self._user_tasks.get(comm)
        if task is None:
            task = self._user_tasks[comm] = self.machine.spawn_user(comm)
        return task
