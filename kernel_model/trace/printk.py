"""The kernel log (printk ring) and its dmesg rendering.

Each record keeps the local-clock timestamp taken when it was logged, its level and its text;
``dmesg()`` prints records as ``dmesg`` does by default: ``[%5lu.%06lu] message`` (seconds
right-aligned in five columns, microseconds truncated as the kernel's ``print_time`` does).
A multi-line message is one record per line, all with the first line's timestamp.
The ring keeps the newest ``capacity`` records (a 128 KiB log_buf holds about that many short lines).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import NamedTuple

KERN_EMERG, KERN_ALERT, KERN_CRIT, KERN_ERR, KERN_WARNING, KERN_NOTICE, KERN_INFO, KERN_DEBUG = range(8)
DEFAULT_LEVEL = KERN_WARNING       # CONFIG_MESSAGE_LOGLEVEL_DEFAULT: printk() without a level
DEFAULT_CAPACITY = 4096


class LogRecord(NamedTuple):
    ts_ns: int
    level: int
    text: str


def format_line(record: LogRecord) -> str:
    """One dmesg line (no newline)."""
    secs, rem = divmod(record.ts_ns, 1_000_000_000)
    return f"[{secs:5d}.{rem // 1000:06d}] {record.text}"


class Printk:
    """The log: ``printk`` appends, ``dmesg`` renders, ``clear`` empties (``dmesg -C``)."""

    def __init__(self, now_ns: Callable[[], int], capacity: int = DEFAULT_CAPACITY) -> None:
        self._now_ns = now_ns
        self.records: deque[LogRecord] = deque(maxlen=capacity)
        self.seq = 0   # records ever logged, for readers following the log

    def printk(self, text: str, level: int = DEFAULT_LEVEL) -> None:
        ts = self._now_ns()
        for line in text.rstrip("\n").split("\n"):
            self.records.append(LogRecord(ts, level, line))
            self.seq += 1

    def lines(self) -> list[str]:
        return [format_line(r) for r in self.records]

    def dmesg(self) -> str:
        """The whole log as ``dmesg`` prints it (each line newline-terminated)."""
        return "".join(format_line(r) + "\n" for r in self.records)

    def clear(self) -> None:
        self.records.clear()
