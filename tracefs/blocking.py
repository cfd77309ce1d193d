"""Blocking reads: wait for data, O_NONBLOCK -> EAGAIN, interruption -> EINTR.

A reader waits in short slices on the data source's own wake-up (``wait(timeout)``), and between
slices asks whether it was interrupted: its handle was cancelled (in-process callers), or the
interrupt check installed by the FUSE adapter says the request was interrupted (the user pressed
Ctrl-C on ``cat trace_pipe``: the kernel sends FUSE_INTERRUPT and waits for our answer).
"""
from __future__ import annotations

import errno
from collections.abc import Callable

from tracesim.tracefs.errors import FsError

# Longest time between two interruption checks; the data source's wake-up ends a wait sooner.
SLICE_SECONDS = 0.05

def _interrupt_check() -> bool:
    return False


def set_interrupt_check(check: Callable[[], bool]) -> None:
    """Install the test "was the current request interrupted?" (called from the waiting thread)."""
    global _interrupt_check
    _interrupt_check = check


def wait_until(ready: Callable[[], bool], wait: Callable[[float], object], *, nonblock: bool,
               cancelled: Callable[[], bool] = lambda: False) -> None:
    """Return once ``ready()`` holds; raise EAGAIN (non-blocking) or EINTR (interrupted)."""
    while not ready():
        if nonblock:
            raise FsError(errno.EAGAIN)
        if cancelled() or _interrupt_check():
            raise FsError(errno.EINTR)
        wait(SLICE_SECONDS)
