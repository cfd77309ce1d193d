"""The one exception the tree raises: an OSError carrying the errno a kernel file operation returns.

Being an OSError subclass, it passes through fusepy unchanged (fusepy answers ``-e.errno``), and
in-process callers can catch it like any failed system call.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any


class FsError(OSError):
    """A failed file operation; ``errno`` is what the syscall would return (EINVAL, EBUSY, ...)."""

    def __init__(self, err: int, detail: str | None = None) -> None:
        super().__init__(err, detail or os.strerror(err))


def as_fs_error(exc: OSError) -> FsError:
    """The kernel model's OSError as the tree's FsError, errno kept (EINVAL if it has none)."""
    return exc if isinstance(exc, FsError) else FsError(exc.errno or errno.EINVAL, exc.strerror)


def kernel_call(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a call into the kernel model so its OSErrors come out as FsError."""
    def call(*args: Any) -> Any:
        try:
            return func(*args)
        except OSError as exc:
            raise as_fs_error(exc) from None
    return call
