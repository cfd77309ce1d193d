"""Who is making the current file operation: the process behind a FUSE request.

A write to ``trace_marker`` is recorded in the context of the writing task, as the kernel does
(``bash-1234 ... tracing_mark_write: hi``). The FUSE adapter installs a lookup that answers the
calling process's name (from ``fuse_get_context`` and ``/proc/<pid>/comm``); the tree runs such
writes as the modelled user task of that name. In-process callers have no caller: the write runs
in whatever context the model is in.
"""
from __future__ import annotations

from collections.abc import Callable


def _lookup() -> str | None:
    return None


def set_caller_lookup(lookup: Callable[[], str | None],
                      process: Callable[[], str | None] | None = None) -> None:
    """``lookup``: the name a write runs as (None while host tasks already run each operation as
    the caller's own task); ``process``: the calling process's name whatever the mode."""
    global _lookup, _process
    _lookup = lookup
    _process = process or lookup


def _process() -> str | None:
    return None


def caller_process_comm() -> str | None:
    """The name of the process behind the current request (what refuses host ``perf``)."""
    return _process()


def caller_comm() -> str | None:
    """The calling process's name for the current request, or None."""
    return _lookup()


def proc_comm(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip() or None
    except OSError:
        return None
