"""Per-open-file state: what one open file description does on read, write, flush and release.

Kinds, after the kernel's file_operations:

* :class:`SeqHandle` - a ``seq_file``/``simple_read_from_buffer`` file: the text is generated at the
  read at offset 0 and served by offset; each ``write()`` call is applied on its own (the kernel
  applies most control writes per call), and opening for write with O_TRUNC can run an action
  (``echo > set_event`` clears the events first, ``>>`` does not).
* :class:`LazyTextHandle` - a large read-only text produced piece by piece (``trace``): the
  iterator is per open, so each reader has its own snapshot position.
* :class:`StreamHandle` - a consuming, blocking reader (``trace_pipe``, ``trace_pipe_raw``).

Text is UTF-8 with surrogate escapes both ways, so any byte written reads back unchanged (the
predicate compiler measures caret positions the same way).
"""
from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from tracesim.tracefs.blocking import wait_until
from tracesim.tracefs.errors import FsError, kernel_call

Show = Callable[[], "str | bytes"]
Store = Callable[[str], "int | None"]


def to_bytes(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")


def to_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def access_mode(flags: int) -> tuple[bool, bool]:
    """(readable, writable) from open flags."""
    acc = flags & os.O_ACCMODE
    return acc in (os.O_RDONLY, os.O_RDWR), acc in (os.O_WRONLY, os.O_RDWR)


def truncating(flags: int) -> bool:
    """Open for write with O_TRUNC: the shell's ``>`` (``>>`` opens with O_APPEND instead)."""
    return access_mode(flags)[1] and bool(flags & os.O_TRUNC)


class Handle:
    """One open file. Operations a kernel file lacks fail with EINVAL, as vfs_read/vfs_write do."""

    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.nonblock = bool(flags & os.O_NONBLOCK)
        self._cancelled = False
        self._on_release: list[Callable[[], None]] = []

    def read(self, size: int, offset: int) -> bytes:
        raise FsError(errno.EINVAL)

    def write(self, data: bytes, offset: int) -> int:
        raise FsError(errno.EINVAL)

    def flush(self) -> None:
        """close() of one descriptor; errors raised here are close()'s errors."""

    def release(self) -> None:
        """The last close of the open file description: runs the release callbacks once."""
        callbacks, self._on_release = self._on_release, []
        for callback in callbacks:
            callback()

    def on_release(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` at release (e.g. drop the trace array reference the open took)."""
        self._on_release.append(callback)

    def cancel(self) -> None:
        """Interrupt a blocked read of this handle (it fails with EINTR)."""
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled


class SeqHandle(Handle):
    """A generated text file with an optional per-write store and O_TRUNC action."""

    def __init__(self, flags: int, show: Show | None = None, store: Store | None = None,
                 on_trunc: Callable[[], None] | None = None) -> None:
        super().__init__(flags)
        self._show = show
        self._store = store
        self._text = b""
        if on_trunc is not None and truncating(flags):
            on_trunc()

    def read(self, size: int, offset: int) -> bytes:
        if self._show is None:
            raise FsError(errno.EINVAL)
        if offset == 0:
            self._text = to_bytes(self._show())
        return self._text[offset:offset + size]

    def write(self, data: bytes, offset: int) -> int:
        if self._store is None:
            raise FsError(errno.EINVAL)
        taken = self._store(to_text(data))
        return len(data) if taken is None else taken


def seq_opener(show: Show | None = None, store: Store | None = None,
               on_trunc: Callable[[], None] | None = None,
               lock: AbstractContextManager[Any] | None = None) -> Callable[[int], SeqHandle]:
    """An opener for a control file: ``store`` and ``on_trunc`` run under ``lock`` (the kernel
    model's lock) with the model's OSErrors turned into FsError."""
    guard = lock if lock is not None else contextlib.nullcontext()

    def locked(func: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            with guard:
                return kernel_call(func)(*args)
        return call
    return lambda flags: SeqHandle(flags, show, locked(store) if store else None,
                                   locked(on_trunc) if on_trunc else None)


class LazyTextHandle(Handle):
    """A read-only text generated in pieces from a per-open iterator (the ``trace`` snapshot)."""

    def __init__(self, flags: int, pieces: Callable[[], Iterator[str | bytes]],
                 store: Store | None = None) -> None:
        super().__init__(flags)
        self._pieces_factory = pieces
        self._pieces: Iterator[str | bytes] | None = None
        self._store = store
        self._buf = bytearray()
        self._buf_start = 0          # file offset of _buf[0]
        self._lock = threading.Lock()

    def _restart(self) -> None:
        self._pieces = self._pieces_factory()
        self._buf = bytearray()
        self._buf_start = 0

    def read(self, size: int, offset: int) -> bytes:
        with self._lock:
            if self._pieces is None or offset < self._buf_start:
                self._restart()
            # Drop what lies before the requested offset, then fill up to offset + size.
            end = offset + size
            while self._buf_start + len(self._buf) < end:
                piece = next(self._pieces, None)  # type: ignore[arg-type]
                if piece is None:
                    break
                self._buf += to_bytes(piece)
            skip = min(max(offset - self._buf_start, 0), len(self._buf))
            del self._buf[:skip]
            self._buf_start += skip
            out = bytes(self._buf[:size])
            return out

    def write(self, data: bytes, offset: int) -> int:
        if self._store is None:
            raise FsError(errno.EINVAL)
        taken = self._store(to_text(data))
        return len(data) if taken is None else taken


class StreamHandle(Handle):
    """A consuming reader that blocks until data is there.

    ``take(size)`` returns up to ``size`` bytes consumed from the source, ``b""`` when there is
    nothing now, or None at end of stream (trace_pipe after tracing was switched off and something
    was read). ``wait(timeout)`` sleeps until the source may have data.
    """

    def __init__(self, flags: int, take: Callable[[int], bytes | None],
                 wait: Callable[[float], object]) -> None:
        super().__init__(flags)
        self._take = take
        self._wait = wait
        self._lock = threading.Lock()   # one reader of this open file at a time, like iter->mutex

    def read(self, size: int, offset: int) -> bytes:
        with self._lock:
            data = self._take(size)         # the usual read: something is there already
            if data is None:
                return b""
            if data:
                return data
            got: list[bytes | None] = []

            def ready() -> bool:
                data = self._take(size)
                if data is None or data:
                    got.append(data)
                    return True
                return False

            wait_until(ready, self._wait, nonblock=self.nonblock, cancelled=self.cancelled)
            return got[0] or b""
