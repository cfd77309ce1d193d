"""The function profiler (kernel/trace/ftrace.c, CONFIG_FUNCTION_PROFILER with the graph
tracer): ``function_profile_enabled`` and ``trace_stat/function<cpu>``.

Enabling it clears the counts; each modelled function's hits and time (entry to return,
nested calls included with the default ``graph-time`` option, its own time only without it)
add up per CPU. A table lists the
functions of one CPU, the longest total time first::

      Function                               Hit    Time            Avg             s^2
      --------                               ---    ----            ---             ---
      net_rx_action                            1    357.117 us      357.117 us      0.000 us

Columns (function_stat_show): ``  %-30.30s  %10lu``, four spaces, then the total, average and
sample variance (Welford, ns² / 1000) each as trace_print_graph_duration prints a duration,
separated by four spaces.
"""
from __future__ import annotations

from typing import Any

from tracesim.kernel_model.trace.functions import set_hooked
from tracesim.kernel_model.trace.graph_output import duration_text

HEADER = ("  Function                               Hit    Time            Avg             s^2\n"
          "  --------                               ---    ----            ---             ---\n")


def function_profile(tracing: Any) -> FunctionProfile:
    """The kernel's profiler (one, global; made on first use)."""
    profile = getattr(tracing, "function_profile", None)
    if profile is None:
        profile = tracing.function_profile = FunctionProfile(tracing)
    return profile


class FunctionProfile:
    def __init__(self, tracing: Any) -> None:
        self.tracing = tracing
        self.enabled = False
        self.clock = tracing.clock_reader("local")
        # per CPU: function address -> [hits, total ns, sum of squared ns]
        self.stats: list[dict[int, list[int]]] = [{} for _ in range(tracing.ncpus)]
        # per CPU: the time the running calls' children took (for graph-time off)
        self.children: list[list[int]] = [[] for _ in range(tracing.ncpus)]

    def set_enabled(self, on: bool) -> None:
        """``function_profile_enabled``: enabling clears the counts (ftrace_profile_reset)."""
        if on == self.enabled:
            return
        if on:
            self.stats = [{} for _ in range(self.tracing.ncpus)]
            self.children = [[] for _ in range(self.tracing.ncpus)]
        self.enabled = on
        set_hooked(self.tracing, self, on)

    def entry(self, site: Any, stack: list[Any], cpu_id: int) -> Any:
        rec = self.stats[cpu_id].get(site.addr)
        if rec is None:
            rec = self.stats[cpu_id][site.addr] = [0, 0, 0]
        rec[0] += 1
        self.children[cpu_id].append(0)
        return (rec, self.clock())

    def exit(self, site: Any, stack: list[Any], cpu_id: int, token: Any) -> None:
        rec, calltime = token
        spent = self.clock() - calltime
        children = self.children[cpu_id]
        nested = children.pop() if children else 0
        if children:
            children[-1] += spent
        if not self.tracing.top.options.get("graph-time", True):
            spent -= nested                   # profile_graph_return without graph-time
        rec[1] += spent
        rec[2] += spent * spent

    def text(self, cpu: int) -> str:
        """``trace_stat/function<cpu>``."""
        lookup = self.tracing.symbols.lookup
        rows = sorted(self.stats[cpu].items(), key=lambda item: -item[1][1])
        out = [HEADER]
        for addr, (hits, total, squares) in rows:
            if not hits:
                continue
            hit = lookup(addr)
            name = hit[0] if hit else f"0x{addr:x}"
            avg = total // hits
            variance = 0 if hits <= 1 else (hits * squares - total * total) // (
                hits * (hits - 1) * 1000)
            out.append(f"  {name[:30]:<30}  {hits:10d}    {duration_text(total)}    "
                       f"{duration_text(avg)}    {duration_text(variance)}\n")
        return "".join(out)
