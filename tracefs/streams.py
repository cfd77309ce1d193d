"""The consuming readers: ``trace_pipe`` (text lines) and ``trace_pipe_raw`` (binary pages).

Each open file has its own reader (the kernel's trace_iterator) and follows tracing_read_pipe():
block while the buffer is empty (O_NONBLOCK: EAGAIN; a signal: EINTR), and once tracing is off
and this reader has already returned something, report end of file (``cat`` exits).
"""
from __future__ import annotations

import errno
from typing import Any

from tracesim.tracefs.handles import StreamHandle


def _split(source: _PipeSource | _RawSource, size: int) -> bytes:
    """Up to ``size`` bytes of ``source.pending``, the rest kept (no copy when all fit)."""
    pending = source.pending
    if len(pending) <= size:
        source.pending = b""
        return pending
    source.pending = pending[size:]
    return pending[:size]


class _PipeSource:
    def __init__(self, array: Any, cpu: int | None) -> None:
        from tracesim.kernel_model.trace.output import PipeReader
        self.array = array
        self.cpu = cpu
        self.reader = PipeReader(array, cpu)
        self.pending = b""
        self.has_read = False

    def take(self, size: int) -> bytes | None:
        if not self.pending:
            try:
                self.pending = self.reader.read(size, nonblock=True).encode(
                    "utf-8", "surrogateescape")
            except OSError as exc:
                if exc.errno != errno.EAGAIN:
                    raise
                if self.has_read and not self.array.tracing_on:
                    return None
                return b""
        self.has_read = True
        return _split(self, size)

    def wait(self, timeout: float) -> None:
        self.array.buffer.wait(self.cpu, timeout)


class _RawSource:
    """trace_pipe_raw: one whole ring-buffer page per read (a short read gets part of it)."""

    def __init__(self, array: Any, cpu: int) -> None:
        self.array = array
        self.cpu = cpu
        self.pending = b""

    def take(self, size: int) -> bytes | None:
        if not self.pending:
            page = self.array.buffer.read_page(self.cpu)
            if page is None:
                return b""
            self.pending = page
        return _split(self, size)

    def wait(self, timeout: float) -> None:
        self.array.buffer.wait(self.cpu, timeout)


def open_trace_pipe(flags: int, array: Any, cpu: int | None = None) -> StreamHandle:
    source = _PipeSource(array, cpu)
    return StreamHandle(flags, source.take, source.wait)


def open_trace_pipe_raw(flags: int, array: Any, cpu: int) -> StreamHandle:
    source = _RawSource(array, cpu)
    return StreamHandle(flags, source.take, source.wait)
