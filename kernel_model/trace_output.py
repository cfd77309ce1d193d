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
from typing import Any, Iterator

from kernel_model.ring_buffer import Entry
from kernel_model.trace_event import (TRACE_FLAG_BH_OFF, TRACE_FLAG_HARDIRQ,
                                      TRACE_FLAG_IRQS_OFF, TRACE_FLAG_NEED_RESCHED,
                                      TRACE_FLAG_NEED_RESCHED_LAZY, TRACE_FLAG_NMI,
                                      TRACE_FLAG_PREEMPT_RESCHED, TRACE_FLAG_SOFTIRQ)

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


def header_text(array: Any) -> str:
    """The comment block at the top of ``trace``."""
    inbuf, written = array.buffer.entries()
    tgid = array.options.get("record-tgid", False)
    out = ["# tracer: nop\n", "#\n",
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


def format_entry(array: Any, entry: Entry) -> str:
    """One event as ``trace``/``trace_pipe`` print it (with a ``LOST`` line before if any)."""
    tracing = array.tracing
    data = entry.data
    lost = f"CPU:{entry.cpu} [LOST {entry.lost} EVENTS]\n" if entry.lost else ""
    etype = data[0] | data[1] << 8
    flags, pc = data[2], data[3]
    pid = int.from_bytes(data[4:8], "little", signed=True)
    ev = tracing.event_by_id(etype)
    opts = array.options
    parts = []
    if opts.get("context-info", True):
        comm = tracing.cmdlines.find(pid)
        parts.append(f"{comm:>16}-{pid:<7d} ")
        if opts.get("record-tgid", False):
            tgid = tracing.tgids.get(pid)
            parts.append(f"({tgid:7d}) " if tgid else "(-------) ")
        parts.append(f"[{entry.cpu:03d}] ")
        if opts.get("irq-info", True):
            parts.append(lat_flags(flags, pc))
        if array.clock_in_ns:
            parts.append(" " + ns2usecs_text(entry.ts))
        else:
            parts.append(f" {entry.ts:12d}")
        parts.append(": ")
    if ev is None:
        return lost + "".join(parts) + f"Unknown type {etype}\n"
    return lost + "".join(parts) + ev.line_text(data, tracing.symbols)


def trace_text(array: Any, cpu: int | None = None) -> str:
    """The whole ``trace`` (or ``per_cpu/cpuN/trace``) file: header + lines, non-consuming."""
    return header_text(array) + "".join(iter_trace_lines(array, cpu))


def iter_trace_lines(array: Any, cpu: int | None = None) -> Iterator[str]:
    for entry in array.buffer.iter_entries(cpu):
        yield format_entry(array, entry)


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
    """

    def __init__(self, array: Any, cpu: int | None = None) -> None:
        self.array = array
        self.cpu = cpu
        self.pending = ""
        self.interrupted = False

    def interrupt(self) -> None:
        self.interrupted = True
        self.array.buffer.wake_all()

    def _fill(self, max_bytes: int) -> None:
        buf = self.array.buffer
        while len(self.pending) < max_bytes:
            entry = buf.consume(self.cpu)
            if entry is None:
                return
            self.pending += format_entry(self.array, entry)

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
            with buf.lock:
                buf.waiters += 1
                try:
                    buf.cond.wait_for(lambda: self.interrupted or buf._has_data(self.cpu),
                                      timeout=0.5)
                finally:
                    buf.waiters -= 1
