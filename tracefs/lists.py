"""Files that hold a user-written list: pid lists and ftrace function filters.

Both follow the kernel's list files: ``>`` (O_TRUNC) empties the list first, ``>>`` adds,
``!word`` removes (function filters), and a word that is not valid fails with EINVAL. Words are
read by the kernel's trace_parser (:class:`tracesim.tracefs.parse.TraceParser`):

* pid lists (trace_pid_write): all the words of one write, all or nothing; a NUL byte where a
  word should start ends the write early (a short count: the writer sends the rest again);
* function filters (ftrace_regex_write): one word per write, kept across writes while it is
  cut by the end of a write, and a word still pending at close is applied then with its error
  ignored (ftrace_regex_release), so ``printf bogus >> set_ftrace_filter`` succeeds.
"""
from __future__ import annotations

import contextlib
import errno
import fnmatch
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

from tracesim.tracefs.errors import FsError, kernel_call
from tracesim.tracefs.handles import Handle, SeqHandle
from tracesim.tracefs.parse import WORDS, TraceParser, kstrtoul

MAX_PID = 1 << 30     # kernel/trace/pid_list.h: what a pid list can hold
PID_BUF_SIZE = 127    # trace.c: the longest pid word
FTRACE_BUFF_MAX = 670  # ftrace.c: KSYM_SYMBOL_LEN + 4 on x86_64, the longest filter word


class PidList:
    """``set_event_pid`` and friends: reads one pid a line (``empty_text`` when empty)."""

    def __init__(self, empty_text: str = "") -> None:
        self.pids: set[int] = set()
        self.empty_text = empty_text

    def text(self) -> str:
        if not self.pids:
            return self.empty_text
        return "".join(f"{pid}\n" for pid in sorted(self.pids))

    def write(self, text: str) -> int:
        pids, taken = parse_pids(text)
        self.pids |= pids
        return taken

    def open(self, flags: int) -> Handle:
        return SeqHandle(flags, self.text, self.write, self.pids.clear)


def parse_pids(text: str) -> tuple[set[int], int]:
    """The pids of one write and the bytes it takes (trace_pid_write), all or nothing: a word
    kstrtoul (base 0: ``0x10`` is 16, ``010`` is 8, ``+5`` is 5) refuses fails with EINVAL;
    the value is cast to pid_t and handed to trace_pid_list_set as an unsigned int, which
    refuses 1 << 30 and above - and trace_pid_write then returns -1, so the write fails with
    EPERM. Reading stops early where no word follows (trailing blanks, a NUL byte)."""
    data = text.encode("utf-8", "surrogateescape")
    if b"\0" in data:                    # word by word: a NUL may end the write early
        words, read, parser = [], 0, TraceParser(PID_BUF_SIZE + 1)
        while read < len(data):
            read += parser.get_user(data, read)
            if not parser.loaded:
                break
            words.append(parser.word())
            parser.clear()
    else:                                 # the same words, found in one pass
        found = WORDS.findall(data)
        if any(len(w) > PID_BUF_SIZE for w in found):
            raise FsError(errno.EINVAL)
        words, read = [w.decode("utf-8", "surrogateescape") for w in found], len(data)
    new: set[int] = set()
    for word in words:
        try:
            value = kstrtoul(word, 0)
        except FsError:
            raise FsError(errno.EINVAL) from None
        pid = value & 0xFFFFFFFF
        if pid >= MAX_PID:
            raise FsError(errno.EPERM)
        new.add(pid)
    return new, read


class EventPidList:
    """``set_event_pid`` / ``set_event_notrace_pid``: the trace array's pid list in the model,
    which the array's events filter on (``tracesim.kernel_model.trace.tracing.TraceArray.add_event_pids``)."""

    def __init__(self, array: Any, notrace: bool, lock: AbstractContextManager[Any]) -> None:
        self.array = array
        self.notrace = notrace
        self.lock = lock

    def text(self) -> str:
        return self.array.event_pids_text(self.notrace)

    def write(self, text: str) -> int:
        pids, taken = parse_pids(text)
        with self.lock:
            self.array.add_event_pids(pids, self.notrace)
        return taken

    def clear(self) -> None:
        with self.lock:
            self.array.clear_event_pids(self.notrace)

    def open(self, flags: int) -> Handle:
        return SeqHandle(flags, self.text, self.write, self.clear)


class FunctionFilter:
    """``set_ftrace_filter`` / ``set_ftrace_notrace``: function names or globs from kallsyms."""

    def __init__(self, functions: Callable[[], Iterable[str]], empty_text: str = "",
                 on_change: Callable[[list[str]], None] | None = None,
                 command: Callable[[str, str, str | None], list[str] | None] | None = None,
                 extra_text: Callable[[], str] | None = None,
                 mods: tuple[Callable[[], str], Callable[[], None], bool] | None = None) -> None:
        self.functions = functions
        self.selected: list[str] = []
        self.empty_text = empty_text
        self.on_change = on_change          # told the new selection after every change
        # ``glob:cmd[:param]`` words (function commands, ``:mod:``): returns the functions to
        # select (``!name`` to drop), or None when the command was applied elsewhere
        self.command = command
        self.extra_text = extra_text        # listed after the functions (the commands)
        # the ``:mod:`` words kept for modules not loaded: (their listing, forget them on
        # O_TRUNC, whether they make the list not empty - FTRACE_HASH_FL_MOD, the filter
        # file only); the listing follows the functions, before the commands
        self.mods = mods

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.selected)

    def clear(self) -> None:
        self.selected.clear()
        if self.mods is not None:
            self.mods[1]()
        self._changed()

    def text(self) -> str:
        extra = self.extra_text() if self.extra_text is not None else ""
        mods = self.mods[0]() if self.mods is not None else ""
        if not self.selected and not (mods and self.mods is not None and self.mods[2]):
            return self.empty_text + mods + extra
        return "".join(f"{name}\n" for name in self.selected) + mods + extra

    def apply(self, word: str) -> None:
        """One word (ftrace_process_regex): a glob adds its matches, ``!glob`` removes them;
        a glob matching no function is EINVAL; ``glob:cmd[:param]`` is a command."""
        if ":" in word:
            self._command(word)
            return
        remove = word.startswith("!")
        pattern = word[1:] if remove else word
        hits = [n for n in self.functions() if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise FsError(errno.EINVAL)
        if remove:
            self.selected = [n for n in self.selected if n not in hits]
        else:
            self.selected += [n for n in hits if n not in self.selected]
        self._changed()

    def _command(self, word: str) -> None:
        glob, cmd, *rest = word.split(":", 2)
        if self.command is None:
            raise FsError(errno.EINVAL)
        names = kernel_call(self.command)(glob, cmd, rest[0] if rest else None)
        if names is None:
            return
        drop = {n[1:] for n in names if n.startswith("!")}
        self.selected = [n for n in self.selected if n not in drop]
        self.selected += [n for n in names if not n.startswith("!") and n not in self.selected]
        self._changed()

    def open(self, flags: int) -> Handle:
        parser = TraceParser(FTRACE_BUFF_MAX)

        def store(text: str) -> int:
            taken = parser.get_user(text.encode("utf-8", "surrogateescape"))
            if parser.loaded and not parser.cont:
                word = parser.word()
                parser.clear()
                self.apply(word)
            return taken

        def release() -> None:
            if parser.loaded:
                word = parser.word()
                parser.clear()
                with contextlib.suppress(FsError):    # ftrace_regex_release drops the result
                    self.apply(word)
        handle = SeqHandle(flags, self.text, store, self.clear)
        # The kernel's release runs before close(2) returns (__fput as task work); FUSE sends
        # RELEASE after close has returned, so a read right after close could miss the word.
        # The close's flush applies it (once: the parser is cleared), release catches the rest.
        handle.flush = release  # type: ignore[method-assign]
        handle.on_release(release)
        return handle
