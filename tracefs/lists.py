"""Files that hold a user-written list: pid lists and ftrace function filters.

Both follow the kernel's list files: ``>`` (O_TRUNC) empties the list first, ``>>`` adds, each
write adds its whitespace-separated words, ``!word`` removes (function filters), and a word that
is not valid fails the write with EINVAL.
"""
from __future__ import annotations

import errno
import fnmatch
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

from tracefs.errors import FsError
from tracefs.handles import Handle, SeqHandle
from tracefs.parse import kstrtoul

MAX_PID = 1 << 30     # kernel/trace/pid_list.h: what a pid list can hold


class PidList:
    """``set_event_pid`` and friends: reads one pid a line (``empty_text`` when empty)."""

    def __init__(self, empty_text: str = "") -> None:
        self.pids: set[int] = set()
        self.empty_text = empty_text

    def text(self) -> str:
        if not self.pids:
            return self.empty_text
        return "".join(f"{pid}\n" for pid in sorted(self.pids))

    def write(self, text: str) -> None:
        self.pids |= parse_pids(text)

    def open(self, flags: int) -> Handle:
        return SeqHandle(flags, self.text, self.write, self.pids.clear)


def parse_pids(text: str) -> set[int]:
    """The pids of one write (trace_pid_write), all or nothing: a word kstrtoul (base 0) refuses
    fails with EINVAL; the value is cast to pid_t and handed to trace_pid_list_set as an
    unsigned int, which refuses 1 << 30 and above - and trace_pid_write then returns -1, so
    the write fails with EPERM."""
    new = set()
    for word in text.split():
        try:
            value = kstrtoul(word, 0)
        except FsError:
            raise FsError(errno.EINVAL) from None
        pid = value & 0xFFFFFFFF
        if pid >= MAX_PID:
            raise FsError(errno.EPERM)
        new.add(pid)
    return new


class EventPidList:
    """``set_event_pid`` / ``set_event_notrace_pid``: the trace array's pid list in the model,
    which the array's events filter on (``kernel_model.trace.TraceArray.add_event_pids``)."""

    def __init__(self, array: Any, notrace: bool, lock: AbstractContextManager[Any]) -> None:
        self.array = array
        self.notrace = notrace
        self.lock = lock

    def text(self) -> str:
        return self.array.event_pids_text(self.notrace)

    def write(self, text: str) -> None:
        pids = parse_pids(text)
        with self.lock:
            self.array.add_event_pids(pids, self.notrace)

    def clear(self) -> None:
        with self.lock:
            self.array.clear_event_pids(self.notrace)

    def open(self, flags: int) -> Handle:
        return SeqHandle(flags, self.text, self.write, self.clear)


class FunctionFilter:
    """``set_ftrace_filter`` / ``set_ftrace_notrace``: function names or globs from kallsyms."""

    def __init__(self, functions: Callable[[], Iterable[str]], empty_text: str = "") -> None:
        self.functions = functions
        self.selected: list[str] = []
        self.empty_text = empty_text

    def text(self) -> str:
        if not self.selected:
            return self.empty_text
        return "".join(f"{name}\n" for name in self.selected)

    def write(self, text: str) -> None:
        names = list(self.functions())
        for word in text.split():
            remove = word.startswith("!")
            pattern = word[1:] if remove else word
            hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                raise FsError(errno.EINVAL)
            if remove:
                self.selected = [n for n in self.selected if n not in hits]
            else:
                self.selected += [n for n in hits if n not in self.selected]

    def open(self, flags: int) -> Handle:
        return SeqHandle(flags, self.text, self.write, self.selected.clear)
