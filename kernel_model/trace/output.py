"""Text output of a trace array: the ``trace`` header, trace lines, per-CPU ``stats``.

Formats follow Linux 6.18 (trace.c / trace_output.c):

* header: ``print_event_info`` + ``print_func_help_header_irq`` (irq-info on, the default) or
  ``print_func_help_header``; with ``record-tgid`` the TGID columns;
* a line: ``%16s-%-7d `` comm-pid, ``(%7d) `` tgid with record-tgid, ``[%03d] `` CPU, five flag
  characters (``trace_print_lat_fmt``) with irq-info, `` %5lu.%06lu`` (ns clocks, rounded to the
  nearest µs) or `` %12llu`` (counter, uptime, x86-tsc), ``: ``, then the event text;
* lost events: ``CPU:%d [LOST %lu EVENTS]``;
* ``per_cpu/cpuN/stats`` with the kernel's keys.
"""
from __future__ import annotations

import errno
import itertools
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from tracesim.kernel_model.trace.event import (
    TRACE_FLAG_BH_OFF,
    TRACE_FLAG_HARDIRQ,
    TRACE_FLAG_IRQS_OFF,
    TRACE_FLAG_NEED_RESCHED,
    TRACE_FLAG_NEED_RESCHED_LAZY,
    TRACE_FLAG_NMI,
    TRACE_FLAG_PREEMPT_RESCHED,
    TRACE_FLAG_SOFTIRQ,
)
from tracesim.kernel_model.trace.events.ftrace import fn_line, repeats_line
from tracesim.kernel_model.trace.functions import TRACE_FN, TRACE_FUNC_REPEATS
from tracesim.kernel_model.trace.graph_output import GraphPrinter, graph_header
from tracesim.kernel_model.trace.printfmt import context_printer

if TYPE_CHECKING:
    from tracesim.kernel_model.trace.printfmt import Buffer

TRACE_BATCH = 256          # events formatted together for ``trace``
PIPE_BATCH_MAX = 512       # most events one trace_pipe batch takes under the buffer lock

_NR, _LZ, _PR = TRACE_FLAG_NEED_RESCHED, TRACE_FLAG_NEED_RESCHED_LAZY, TRACE_FLAG_PREEMPT_RESCHED
_RESCHED_CHAR = {
    _NR | _LZ | _PR: "B", _NR | _PR: "N", _LZ | _PR: "L", _NR | _LZ: "b",
    _NR: "n", _PR: "p", _LZ: "l",
}


def lat_flags(flags: int, preempt_count: int) -> str:
    """The five characters of trace_print_lat_fmt."""
    nmi = flags & TRACE_FLAG_NMI
    hardirq = flags & TRACE_FLAG_HARDIRQ
    softirq = flags & TRACE_FLAG_SOFTIRQ
    bh_off = flags & TRACE_FLAG_BH_OFF
    irqs_off = flags & TRACE_FLAG_IRQS_OFF
    c1 = "D" if irqs_off and bh_off else "d" if irqs_off else "b" if bh_off else "."
    c2 = _RESCHED_CHAR.get(flags & (_NR | _LZ | _PR), ".")
    c3 = ("Z" if nmi and hardirq else "z" if nmi else "H" if hardirq and softirq
          else "h" if hardirq else "s" if softirq else ".")
    c4 = f"{preempt_count & 0xf:x}" if preempt_count & 0xf else "."
    c5 = f"{preempt_count >> 4:x}" if preempt_count & 0xf0 else "."
    return c1 + c2 + c3 + c4 + c5


def ns2usecs_text(ts: int) -> str:
    """``%5lu.%06lu`` of a ns timestamp, rounded to the nearest microsecond (ns2usecs)."""
    us = (ts + 500) // 1000
    return f"{us // 1_000_000:5d}.{us % 1_000_000:06d}"


def _tracer(array: Any) -> str:
    state = getattr(array, "function_tracing", None)
    return "nop" if state is None else state.tracer


def header_text(array: Any) -> str:
    """The comment block at the top of ``trace``: ``# tracer:``, then the tracer's header
    (function_graph's own columns) or the default one."""
    tracer = _tracer(array)
    if tracer == "function_graph":
        return f"# tracer: {tracer}\n#\n" + graph_header(array)
    inbuf, written = array.buffer.entries()
    tgid = array.options.get("record-tgid", False)
    out = [f"# tracer: {tracer}\n", "#\n",
           f"# entries-in-buffer/entries-written: {inbuf}/{written}   "
           f"#P:{array.tracing.ncpus}\n", "#\n"]
    if array.options.get("irq-info", True):
        sp = " " * (12 if tgid else 2)
        col = "     TGID   "[:12 if tgid else 2]
        bar = "       |    "[:12 if tgid else 2]
        out += [f"#                            {sp}  _-----=> irqs-off/BH-disabled\n",
                f"#                            {sp} / _----=> need-resched\n",
                f"#                            {sp}| / _---=> hardirq/softirq\n",
                f"#                            {sp}|| / _--=> preempt-depth\n",
                f"#                            {sp}||| / _-=> migrate-disable\n",
                f"#                            {sp}|||| /     delay\n",
                f"#           TASK-PID  {col} CPU#  |||||  TIMESTAMP  FUNCTION\n",
                f"#              | |    {bar}   |   |||||     |         |\n"]
    else:
        out += [f"#           TASK-PID    {'   TGID     ' if tgid else ''} CPU#     "
                "TIMESTAMP  FUNCTION\n",
                f"#              | |      {'     |      ' if tgid else ''}   |         "
                "|         |\n"]
    return "".join(out)


_HEADER = struct.Struct("<HBBi")        # common_type, common_flags, common_preempt_count, pid
_LAT_TEXT: dict[int, str] = {}
_UNSEEN: Any = object()


def _lat_text(flags: int, pc: int) -> str:
    """lat_flags, memoised on the two header bytes (a few dozen combinations occur)."""
    key = flags << 8 | pc
    text = _LAT_TEXT.get(key)
    if text is None:
        text = _LAT_TEXT[key] = lat_flags(flags, pc)
    return text


# One CPU's consecutive events, as RingBuffer.consume_runs gives them: (cpu, events lost
# before the first, [(next offset, ts, record), ...]).
Run = tuple[int, int, list[tuple[int, int, bytes]]]


def format_lines(array: Any, events: Iterable[tuple[int, int, bytes, int]],
                 graph: GraphPrinter | None = None) -> str:
    """The text of several events given as (cpu, ts, record, lost), as ``trace``/``trace_pipe``
    print each (a ``LOST`` line first when events were lost before it): the context columns as
    the array's options say, then the event's generated printer.
    The options are read once for the whole batch. Under function_graph the graph tracer
    prints every entry (a leaf needs the return that follows it in the batch)."""
    if _tracer(array) == "function_graph":       # ``graph``: a reader's printer state
        return "".join((graph or GraphPrinter(array)).lines(events))
    if not _default_layout(array):
        return format_lines_general(array, events)
    runs: list[Run] = []
    last = -1
    for cpu, ts, data, lost in events:
        if cpu != last or lost:
            run: list[tuple[int, int, bytes]] = []
            runs.append((cpu, lost, run))
            last = cpu
        run.append((0, ts, data if type(data) is bytes else bytes(data)))
    return _format_runs_default(array, runs)


def format_runs(array: Any, runs: list[Run], graph: GraphPrinter | None = None) -> str:
    """:func:`format_lines` of events given in runs (``RingBuffer.consume_runs``)."""
    if _tracer(array) == "function_graph" or not _default_layout(array):
        return format_lines(array, ((cpu, ts, data, lost if i == 0 else 0)
                                    for cpu, lost, events in runs
                                    for i, (_, ts, data) in enumerate(events)), graph)
    return _format_runs_default(array, runs)


def _default_layout(array: Any) -> bool:
    """Lines in the default layout: context and irq-info on, record-tgid off, a ns clock."""
    opts = array.options
    return (opts.get("context-info", True) and opts.get("irq-info", True)
            and not opts.get("record-tgid", False) and array.clock_in_ns)


def _format_runs_default(array: Any, runs: list[Run]) -> str:
    """The lines of runs of events in the default layout. Per CPU, a record's first 8 bytes
    (type, flags, preempt count, pid) give its context columns (comm-pid [cpu] flags, the
    comm looked up once per batch) and its event's line printer; generated printers print
    the whole line with the timestamp in one operation (``printfmt.context_printer``).
    A generated printer's text is a function of the record's bytes alone, so a record seen
    before in the batch on that CPU (a stream repeats the same skb, slab object and call
    site over and over) takes the text printed then, after its own timestamp."""
    tracing = array.tracing
    by_id = tracing.by_id
    symbols = tracing.symbols
    find = tracing.cmdlines.find
    opts = array.options
    unpack = _HEADER.unpack_from
    lines: dict[int, tuple[Callable[[Buffer, Any, str, int], str], bool]] = {}  # by type
    per_cpu: dict[int, tuple[dict[bytes, tuple[str, Callable[[Buffer, Any, str, int], str],
                                                bool]],
                             dict[bytes, tuple[str, str]]]] = {}
    out: list[str] = []
    append = out.append
    for cpu, lost, events in runs:
        if lost:
            append(f"CPU:{cpu} [LOST {lost} EVENTS]\n")
        known = per_cpu.get(cpu)
        if known is None:
            known = per_cpu[cpu] = ({}, {})
        heads, texts = known
        for _, ts, data in events:
            seen = texts.get(data)
            if seen is not None:
                us = (ts + 500) // 1000
                append("%s%5d.%06d: %s" % (seen[0], us // 1000000, us % 1000000, seen[1]))
                continue
            key = data[:8]
            hit = heads.get(key)
            if hit is None:
                etype, flags, pc, pid = unpack(data, 0)
                kind = lines.get(etype)
                if kind is None:
                    kind = lines[etype] = _default_line(etype, by_id.get(etype), opts)
                hit = heads[key] = ("%16s-%-7d [%03d] %s " % (find(pid), pid, cpu,
                                                              _lat_text(flags, pc)), *kind)
            head, line, pure = hit
            text = line(data, symbols, head, ts)
            append(text)
            if pure:
                # what follows `` %5lu.%06lu: `` (seconds of 5 digits or more)
                sec = (ts + 500) // 1000 // 1000000
                cut = len(head) + (9 + 5 if sec < 100000 else 9 + len(str(sec)))
                texts[data] = (head, text[cut:])
    return "".join(out)


def _default_line(etype: int, ev: Any,
                  opts: Any) -> tuple[Callable[[Buffer, Any, str, int], str], bool]:
    """``line(record, symbols, head, ts)``: a trace line in the default layout after the
    context columns ``head``: the timestamp, then the event's text; and whether the text
    after the timestamp depends on the record's bytes alone (a generated printer's does)."""
    if etype == TRACE_FN:
        return (lambda rec, syms, head, ts: head + _ts_text(ts) + fn_line(rec, syms, opts),
                False)
    if etype == TRACE_FUNC_REPEATS:
        return (lambda rec, syms, head, ts: head + _ts_text(ts) + repeats_line(
            bytes(rec), syms, opts, lambda delta: " " + ns2usecs_text(ts - delta)), False)
    if ev is None:
        text = f"Unknown type {etype}\n"
        return (lambda rec, syms, head, ts: head + _ts_text(ts) + text), False
    printer = ev.line_printer
    line = context_printer(printer)
    if line is not None:
        return line, True
    return (lambda rec, syms, head, ts: head + _ts_text(ts) + printer(rec, syms)), False


def _ts_text(ts: int) -> str:
    """`` %5lu.%06lu: `` after the flags (no leading space: the head ends with one)."""
    us = (ts + 500) // 1000
    return "%5d.%06d: " % (us // 1_000_000, us % 1_000_000)


def format_lines_general(array: Any, events: Iterable[tuple[int, int, bytes, int]]) -> str:
    """:func:`format_lines` one event at a time for any options (not function_graph): the
    context columns as the options say, then the event's line printer. The reference the
    default layout's batch formatter is checked against."""
    tracing = array.tracing
    by_id = tracing.by_id
    symbols = tracing.symbols
    opts = array.options
    context = opts.get("context-info", True)
    tgid = context and opts.get("record-tgid", False)
    irq = context and opts.get("irq-info", True)
    in_ns = array.clock_in_ns
    unpack = _HEADER.unpack_from
    printers: dict[int, Callable[[Buffer, Any], str] | None] = {
        TRACE_FN: lambda record, syms: fn_line(record, syms, opts)}
    out: list[str] = []
    append = out.append
    for cpu, ts, data, lost in events:
        if lost:
            append(f"CPU:{cpu} [LOST {lost} EVENTS]\n")
        etype, flags, pc, pid = unpack(data, 0)
        if context:
            append(_context_columns(tracing, cpu, ts, pid, flags, pc, tgid, irq, in_ns))
        if etype == TRACE_FUNC_REPEATS:
            append(repeats_line(data, symbols, opts,
                                lambda delta, ts=ts: _time_text(ts - delta, in_ns)))
            continue
        printer = printers.get(etype, _UNSEEN)
        if printer is _UNSEEN:
            ev = by_id.get(etype)
            printer = printers[etype] = None if ev is None else ev.line_printer
        append(f"Unknown type {etype}\n" if printer is None else printer(data, symbols))
    return "".join(out)


def _time_text(ts: int, in_ns: bool) -> str:
    """trace_print_time: `` %5lu.%06lu`` (ns clocks) or `` %12llu``."""
    return " " + ns2usecs_text(ts) if in_ns else f" {ts:12d}"


def _context_columns(tracing: Any, cpu: int, ts: int, pid: int, flags: int, pc: int,
                     tgid: bool, irq: bool, in_ns: bool) -> str:
    """comm-pid, (tgid), [cpu], (flags) and the timestamp for options other than the defaults."""
    parts = [f"{tracing.cmdlines.find(pid):>16}-{pid:<7d} "]
    if tgid:
        task_tgid = tracing.tgids.get(pid)
        parts.append(f"({task_tgid:7d}) " if task_tgid else "(-------) ")
    parts.append(f"[{cpu:03d}] ")
    if irq:
        parts.append(_lat_text(flags, pc))
    parts.append(" " + ns2usecs_text(ts) if in_ns else f" {ts:12d}")
    parts.append(": ")
    return "".join(parts)


def trace_text(array: Any, cpu: int | None = None) -> str:
    """The whole ``trace`` (or ``per_cpu/cpuN/trace``) file: header + lines, non-consuming."""
    return header_text(array) + "".join(iter_trace_lines(array, cpu))


def iter_trace_lines(array: Any, cpu: int | None = None) -> Iterator[str]:
    """The lines of ``trace``, formatted a few hundred events at a time (function_graph: one
    printer over all of them, as its lines depend on the events before and after)."""
    if _tracer(array) == "function_graph":
        yield from GraphPrinter(array).lines(array.buffer.iter_events(cpu))
        return
    events = array.buffer.iter_events(cpu)
    while True:
        batch = list(itertools.islice(events, TRACE_BATCH))
        if not batch:
            return
        yield format_lines(array, batch)


def stats_text(array: Any, cpu: int) -> str:
    """``per_cpu/cpuN/stats`` (tracing_stats_read)."""
    st = array.buffer.stats(cpu, array.now())
    if array.clock_in_ns:
        oldest, now = ns2usecs_text(st["oldest event ts"]), ns2usecs_text(st["now ts"])
    else:
        oldest, now = str(st["oldest event ts"]), str(st["now ts"])
    return (f"entries: {st['entries']}\n"
            f"overrun: {st['overrun']}\n"
            f"commit overrun: {st['commit overrun']}\n"
            f"bytes: {st['bytes']}\n"
            f"oldest event ts: {oldest}\n"
            f"now ts: {now}\n"
            f"dropped events: {st['dropped events']}\n"
            f"read events: {st['read events']}\n")


class PipeReader:
    """A consuming reader of ``trace_pipe`` (all CPUs) or ``per_cpu/cpuN/trace_pipe``.

    ``read(max_bytes, nonblock)`` returns text of whole lines (at least one line unless
    interrupted); it blocks while the buffer is empty, raises ``OSError(EAGAIN)`` with
    ``nonblock``, and ``OSError(EINTR)`` once ``interrupt()`` was called.

    Events are taken from the ring buffer in batches sized to the room left in the read (by the
    running average line length), so a large read formats many lines per lock hold and the
    text consumed but not yet returned stays small.
    """

    def __init__(self, array: Any, cpu: int | None = None) -> None:
        self.array = array
        self.cpu = cpu
        self.pending = ""
        self.interrupted = False
        self.line_estimate = 128.0         # average characters per event line seen so far
        self.graph: GraphPrinter | None = None   # function_graph's state across batches

    def interrupt(self) -> None:
        self.interrupted = True
        self.array.buffer.wake_all()

    def _fill(self, max_bytes: int) -> None:
        size = len(self.pending)
        if size >= max_bytes:
            return
        consume = self.array.buffer.consume_runs
        parts = [self.pending]
        while size < max_bytes:
            limit = max(1, min(PIPE_BATCH_MAX, int((max_bytes - size) / self.line_estimate)))
            runs = consume(self.cpu, limit)
            if not runs:
                break
            if self.graph is None and _tracer(self.array) == "function_graph":
                self.graph = GraphPrinter(self.array)
            text = format_runs(self.array, runs, self.graph)
            parts.append(text)
            size += len(text)
            count = sum(len(events) for _, _, events in runs)
            self.line_estimate = 0.75 * self.line_estimate + 0.25 * (len(text) / count)
        self.pending = "".join(parts)

    def read(self, max_bytes: int = 65536, nonblock: bool = False) -> str:
        while True:
            self._fill(max_bytes)
            if self.pending:
                cut = len(self.pending) if len(self.pending) <= max_bytes else max_bytes
                out, self.pending = self.pending[:cut], self.pending[cut:]
                return out
            if nonblock:
                raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
            if self.interrupted:
                self.interrupted = False
                raise OSError(errno.EINTR, "Interrupted system call")
            buf = self.array.buffer
            with buf.lock:             # waiting reads only: see RingBuffer.wait
                buf.waiters += 1
                try:
                    buf.cond.wait_for(lambda: self.interrupted or buf._has_data(self.cpu),  # noqa: B023
                                      timeout=0.5)
                finally:
                    buf.waiters -= 1
