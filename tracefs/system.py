"""One running simulation: the modelled kernel, its tracefs tree and the control operations.

    system = System.boot(cpus=2, seed=1, clock="real")
    system.tree.cat("/trace")
    system.control(["send", "lo", "--len", "128"])       # what ``tracesim ctl`` sends
    system.shutdown()

The mount command serves ``tree`` over FUSE and ``control`` on the control socket; the demo uses
the same object in process when FUSE is not available. ``bpf`` (tracesim.filters.bpf.filter_registry)
loads BPF objects written to ``filter`` files and answers the ``maps``/``map dump`` commands;
``bpf-engine [jit|interp]`` shows or switches the engine for programs loaded afterwards (a
tracesim switch, so it lives on the control channel and not in the kernel's tracefs tree).
"""
from __future__ import annotations

from typing import Any

from tracesim.tracefs.root import TracefsTree, build_tree


class System:
    def __init__(self, kernel: Any, bpf_engine: str = "jit") -> None:
        self.kernel = kernel
        self.bpf_engine = bpf_engine
        self.tree: TracefsTree = build_tree(kernel)
        from tracesim.filters.bpf.filter_registry import BpfFilters
        self.bpf = BpfFilters(kernel, bpf_engine)
        self.bpf.install(self.tree.ctx)

    @classmethod
    def boot(cls, cpus: int = 2, seed: int = 1, clock: str = "real",
             bpf_engine: str = "jit") -> System:
        from tracesim.kernel_model.kernel import Kernel
        return cls(Kernel(cpus=cpus, seed=seed, clock=clock), bpf_engine)

    def control(self, argv: list[str]) -> tuple[int, str]:
        """Run one control command of the kernel model: ``(status, text to print)``."""
        from tracesim.filters.bpf.runtime import map_commands
        from tracesim.kernel_model import control
        if argv[:1] and argv[0] in map_commands.COMMANDS:
            return map_commands.run(self.bpf, argv, lock=self.kernel.lock)
        from tracesim.filters.bpf import run_commands
        if argv[:1] and argv[0] in run_commands.COMMANDS:
            return run_commands.run(self.bpf, argv, lock=self.kernel.lock)
        if argv[:1] == ["perf-stat"]:
            from tracesim.kernel_model.trace import perf_stat
            return perf_stat.run(self.kernel, argv)
        if argv == ["kallsyms"]:
            from tracesim.kernel_model.proc_kallsyms import kallsyms_text
            return 0, kallsyms_text(self.kernel.kallsyms)
        if argv[:1] == ["bpf-engine"]:
            return self._engine_command(argv[1:])
        return control.run_command(self.kernel, argv)

    def _engine_command(self, args: list[str]) -> tuple[int, str]:
        if not args:
            return 0, self.bpf.engine + "\n"
        from tracesim.filters.bpf.loader import ENGINE_CHOICES
        if len(args) != 1 or args[0] not in ENGINE_CHOICES:
            return 2, f"usage: bpf-engine [{'|'.join(ENGINE_CHOICES)}]\n"
        with self.kernel.lock:
            self.bpf.set_engine(args[0])
        return 0, ""

    def start_workload(self, name: str) -> None:
        """Start a named traffic workload on its background thread (KeyError if unknown)."""
        self.kernel.workloads.start(name)

    def shutdown(self) -> None:
        """Stop every workload thread (the mount is going away). Called without the kernel
        lock: a workload thread takes that lock for each batch, so stopping it under the lock
        would wait forever."""
        self.kernel.workloads.stop_all()
        idle = getattr(self.kernel, "idle", None)
        if idle is not None:
            idle.stop()
