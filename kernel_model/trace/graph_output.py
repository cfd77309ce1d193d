"""The ``function_graph`` tracer's text (trace_functions_graph.c: print_graph_function and
print_graph_headers_flags).

Each line is a prologue (abstime, `` N) `` CPU column, centred ``comm-pid``), the duration
column (an overhead mark, the duration in µs, ``|``), the indentation of the call depth and
the body: ``func() {`` for an entry whose return is not the next entry of its CPU, ``func();``
with the duration for a leaf (its return is next: the two print as one line), ``}`` (or
``} /* func */`` with funcgraph-tail or when its entry was not seen) for a return. Other
entries print as comments ``/* event text */``. A new pid on a CPU prints a context-switch
banner.
"""
from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Any

from tracesim.kernel_model.trace.events.ftrace import fn_line
from tracesim.kernel_model.trace.functions import TRACE_FN, TRACE_GRAPH_ENT, TRACE_GRAPH_RET

TRACE_GRAPH_INDENT = 2
PROCINFO_LENGTH = 14
FILL_FULL = "              |  "
_ENT = struct.Struct("<QI")
_RET = struct.Struct("<QIIQQ")
_PID = struct.Struct("<i")
_BANNER_RULE = " ------------------------------------------\n"


def graph_header(array: Any) -> str:
    """The column header (``__print_graph_headers_flags``), nothing without context-info."""
    opts = array.options
    if not opts.get("context-info", True):
        return ""
    pieces = [("funcgraph-abstime", "     TIME       ", "      |         "),
              ("funcgraph-cpu", " CPU", " |  "),
              ("funcgraph-proc", "  TASK/PID       ", "   |    |        "),
              ("funcgraph-duration", "  DURATION   ", "   |   |      ")]
    one, two = ["#"], ["#"]
    for name, first, second in pieces:
        if opts.get(name):
            one.append(first)
            two.append(second)
    return ("".join(one) + "               FUNCTION CALLS\n"
            + "".join(two) + "               |   |   |   |\n")


def mark(duration_ns: int) -> str:
    """trace_find_mark: the overhead mark of a duration."""
    for limit, char in ((1_000_000_000, "$"), (100_000_000, "@"), (10_000_000, "*"),
                        (1_000_000, "#"), (100_000, "!"), (10_000, "+")):
        if duration_ns > limit:
            return char
    return " "


def duration_text(duration_ns: int) -> str:
    """trace_print_graph_duration: µs with up to 7 digits in all, `` us ``, padded to 8."""
    usecs, nsecs = divmod(duration_ns, 1000)
    text = str(usecs)
    length = len(text)
    if length < 7:
        frac = f"{nsecs:03d}"[:min(5, 8 - length) - 1]
        text += "." + frac
        length += len(frac) + 1
    return text + " us " + " " * max(0, 8 - length)


class GraphPrinter:
    """The print state of one reader (fgraph_data): each CPU's last pid, depth, entered
    functions."""

    def __init__(self, array: Any) -> None:
        self.array = array
        tracing = array.tracing
        self.ncpus = tracing.ncpus
        self.cpu_width = len(str(self.ncpus - 1))
        self.last_pid = [-1] * self.ncpus
        self.depth = [0] * self.ncpus
        self.enter_funcs: list[dict[int, int]] = [{} for _ in range(self.ncpus)]

    def lines(self, events: Iterable[tuple[int, int, bytes, int]]) -> Iterator[str]:
        """The text of ``events`` (cpu, ts, record, lost), a leaf entry merged with the
        return that follows it on its CPU."""
        pending = list(events)
        taken: set[int] = set()
        opts = self.array.options
        for i, (cpu, ts, data, lost) in enumerate(pending):
            if i in taken:
                continue
            if lost:
                yield f"CPU:{cpu} [LOST {lost} EVENTS]\n"
            etype = data[0] | data[1] << 8
            if etype == TRACE_GRAPH_ENT:
                j = _next_on_cpu(pending, i, cpu)
                ret = pending[j][2] if j is not None else None
                if (ret is not None and ret[0] | ret[1] << 8 == TRACE_GRAPH_RET
                        and ret[4:8] == data[4:8] and ret[8:16] == data[8:16]):
                    taken.add(j)
                    yield self._leaf(cpu, ts, data, ret, opts)
                else:
                    yield self._nested(cpu, ts, data, opts)
            elif etype == TRACE_GRAPH_RET:
                yield self._return(cpu, ts, data, opts)
            else:
                yield self._comment(cpu, ts, data, opts)

    # -- pieces -------------------------------------------------------------------------------
    def _proc(self, pid: int) -> str:
        comm = self.array.tracing.cmdlines.find(pid)[:7]
        text = f"{comm}-{pid}"
        spaces = max(0, PROCINFO_LENGTH - len(text))
        return " " * (spaces // 2) + text + " " * (spaces - spaces // 2)

    def _cpu(self, cpu: int) -> str:
        return f" {cpu:>{self.cpu_width}d}) "

    def _prologue(self, cpu: int, ts: int, data: bytes, opts: Any) -> str:
        pid = _PID.unpack_from(data, 4)[0]
        out = []
        last = self.last_pid[cpu]
        if last != pid:
            self.last_pid[cpu] = pid
            if last != -1:
                out.append(_BANNER_RULE + self._cpu(cpu) + self._proc(last) + " => "
                           + self._proc(pid) + "\n" + _BANNER_RULE + "\n")
        if not opts.get("context-info", True):
            return "".join(out)
        if opts.get("funcgraph-abstime"):
            out.append(f"{ts // 1_000_000_000:5d}.{ts % 1_000_000_000 // 1000:06d} |  ")
        if opts.get("funcgraph-cpu"):
            out.append(self._cpu(cpu))
        if opts.get("funcgraph-proc"):
            out.append(self._proc(pid) + " | ")
        return "".join(out)

    def _duration(self, duration: int | None, opts: Any) -> str:
        if not opts.get("funcgraph-duration") or not opts.get("context-info", True):
            return ""
        if duration is None:
            return FILL_FULL
        head = mark(duration) + " " if opts.get("funcgraph-overhead") else "  "
        return head + duration_text(duration) + "|  "

    def _name(self, addr: int) -> str:
        hit = self.array.tracing.symbols.lookup(addr)
        return hit[0] if hit else f"0x{addr:x}"

    def _leaf(self, cpu: int, ts: int, ent: bytes, ret: bytes, opts: Any) -> str:
        func, depth = _ENT.unpack_from(ent, 8)
        _f, _d, _o, calltime, rettime = _RET.unpack_from(ret, 8)
        self.depth[cpu] = depth - 1
        return (self._prologue(cpu, ts, ent, opts) + self._duration(rettime - calltime, opts)
                + " " * (depth * TRACE_GRAPH_INDENT) + self._name(func) + "();\n")

    def _nested(self, cpu: int, ts: int, ent: bytes, opts: Any) -> str:
        func, depth = _ENT.unpack_from(ent, 8)
        self.depth[cpu] = depth
        self.enter_funcs[cpu][depth] = func
        return (self._prologue(cpu, ts, ent, opts) + self._duration(None, opts)
                + " " * (depth * TRACE_GRAPH_INDENT) + self._name(func) + "() {\n")

    def _return(self, cpu: int, ts: int, ret: bytes, opts: Any) -> str:
        func, depth, overrun, calltime, rettime = _RET.unpack_from(ret, 8)
        self.depth[cpu] = depth - 1
        matched = self.enter_funcs[cpu].pop(depth, None) == func
        close = "}\n" if matched and not opts.get("funcgraph-tail") else \
            f"}} /* {self._name(func)} */\n"
        text = (self._prologue(cpu, ts, ret, opts) + self._duration(rettime - calltime, opts)
                + " " * (depth * TRACE_GRAPH_INDENT) + close)
        if opts.get("funcgraph-overrun"):
            text += f" (Overruns: {overrun})\n"
        return text

    def _comment(self, cpu: int, ts: int, data: bytes, opts: Any) -> str:
        """print_graph_comment: any other entry as ``/* text */`` at the current depth."""
        tracing = self.array.tracing
        etype = data[0] | data[1] << 8
        if etype == TRACE_FN:
            body = fn_line(data, tracing.symbols, opts)
        else:
            ev = tracing.by_id.get(etype)
            if ev is None:
                return ""
            body = ev.line_printer(data, tracing.symbols)
        depth = self.depth[cpu]
        indent = " " * ((depth + 1) * TRACE_GRAPH_INDENT) if depth > 0 else ""
        return (self._prologue(cpu, ts, data, opts) + self._duration(None, opts) + indent
                + "/* " + body.rstrip("\n") + " */\n")


def _next_on_cpu(events: list[tuple[int, int, bytes, int]], i: int, cpu: int) -> int | None:
    for j in range(i + 1, len(events)):
        if events[j][0] == cpu:
            return j
    return None
