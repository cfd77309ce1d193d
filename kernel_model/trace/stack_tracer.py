"""The stack tracer (kernel/trace/trace_stack.c): the deepest kernel stack seen at a function
entry, over the model's call stacks and frame sizes.

Enabled by ``sysctl kernel.stack_tracer_enabled=1`` (the control command; on Linux
``/proc/sys/kernel/stack_tracer_enabled``). At each entry of a modelled function (those
``stack_trace_filter`` selects, all when empty) the stack depth is the sum of the frames on
this CPU's stack (``Kprobes.frame_size``); a new maximum records the stack. Files:

* ``stack_trace``: ``        Depth    Size   Location    (N entries)`` then one
  ``%3ld) %8d   %5d   %pS`` row per frame, innermost first (Size: its frame, Depth: it and
  every frame below it); disabled with no maximum, a ``#  Stack tracer disabled`` note;
* ``stack_max_size``: the maximum in bytes; writing a number sets it (0 starts over);
* ``stack_trace_filter``: the functions checked (set_ftrace_filter syntax).
"""
from __future__ import annotations

from typing import Any

from tracesim.kernel_model.trace.functions import set_hooked

DISABLED_NOTE = ("#\n"
                 "#  Stack tracer disabled\n"
                 "#\n"
                 "# To enable the stack tracer, either add 'stacktrace' to the\n"
                 "# kernel command line\n"
                 "# or 'echo 1 > /proc/sys/kernel/stack_tracer_enabled'\n"
                 "#\n")


def stack_tracer(tracing: Any) -> StackTracer:
    tracer = getattr(tracing, "stack_tracer", None)
    if tracer is None:
        tracer = tracing.stack_tracer = StackTracer(tracing)
    return tracer


class StackTracer:
    def __init__(self, tracing: Any) -> None:
        self.tracing = tracing
        self.kprobes = tracing.kernel.kprobes
        self.enabled = False
        self.max_size = 0
        self.entries: list[int] = []      # addresses, innermost first
        self.depths: list[int] = []       # stack_trace_index
        self.filter: frozenset[str] | None = None

    def set_enabled(self, on: bool) -> None:
        if on != self.enabled:
            self.enabled = on
            set_hooked(self.tracing, self, on)

    def set_filter(self, names: list[str]) -> None:
        self.filter = frozenset(names) if names else None

    def set_max_size(self, size: int) -> None:
        self.max_size = size

    def entry(self, site: Any, stack: list[Any], cpu_id: int) -> None:
        """check_stack at ``site``'s entry."""
        if self.filter is not None and site.name not in self.filter:
            return None
        kps = self.kprobes
        frames = [site, *reversed(stack)]                     # innermost first
        sizes = [kps.frame_size(f) for f in frames]
        total = sum(sizes)
        if total <= self.max_size:
            return None
        self.max_size = total
        self.entries = [site.addr, *kps.call_stack(cpu_id, site.name)]
        depths = []
        below = total
        for size in sizes:
            depths.append(below)
            below -= size
        self.depths = depths
        return None

    def exit(self, site: Any, stack: list[Any], cpu_id: int, token: Any) -> None:
        return None

    def text(self) -> str:
        """``stack_trace`` (t_show)."""
        out = [f"        Depth    Size   Location    ({len(self.entries)} entries)\n"
               "        -----    ----   --------\n"]
        if not self.enabled and not self.max_size:
            out.append(DISABLED_NOTE)
        lookup = self.tracing.symbols.lookup
        n = len(self.entries)
        for i, addr in enumerate(self.entries):
            size = self.depths[i] - (self.depths[i + 1] if i + 1 < n else 0)
            hit = lookup(addr)
            where = f"{hit[0]}+0x{hit[1]:x}/0x{hit[2]:x}" if hit else f"0x{addr:x}"
            out.append(f"{i:3d}) {self.depths[i]:8d}   {size:5d}   {where}\n")
        return "".join(out)


def sysctl_command(kernel: Any, args: list[str]) -> tuple[int, str]:
    """``sysctl kernel.stack_tracer_enabled[=N]``: the one sysctl of the tracing model."""
    if len(args) != 1 or not args[0].startswith("kernel.stack_tracer_enabled"):
        return 2, "usage: sysctl kernel.stack_tracer_enabled[=0|1]\n"
    name, eq, value = args[0].partition("=")
    if name != "kernel.stack_tracer_enabled":
        return 2, "usage: sysctl kernel.stack_tracer_enabled[=0|1]\n"
    tracer = stack_tracer(kernel.tracing)
    if eq:
        try:
            on = int(value.strip(), 0)
        except ValueError:
            return 1, f"sysctl: setting key \"{name}\": Invalid argument\n"
        with kernel.lock:
            tracer.set_enabled(on != 0)
        return 0, f"{name} = {value.strip()}\n"
    return 0, f"{name} = {int(tracer.enabled)}\n"
