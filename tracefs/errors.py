"""The one exception the tree raises: an OSError carrying the errno a kernel file operation returns.

Being an OSError subclass, it passes through fusepy unchanged (fusepy answers ``-e.errno``), and
in-process callers can catch it like any failed system call.
"""
from __future__ import annotations

import os


class FsError(OSError):
    """A failed file operation; ``errno`` is what the syscall would return (EINVAL, EBUSY, ...)."""

    def __init__(self, err: int, detail: str | None = None) -> None:
        super().__init__(err, detail or os.strerror(err))
