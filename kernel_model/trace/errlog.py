"""A trace array's ``error_log`` (tracing_log_err) and the OSError tracing raises."""
from __future__ import annotations

import errno
from collections.abc import Callable

ERROR_LOG_MAX = 8                 # TRACING_LOG_ERRS_MAX


def os_error(code: int, text: str = "") -> OSError:
    """The error a tracing operation fails with: ``code`` and a text (the errno name by default)."""
    return OSError(code, text or errno.errorcode.get(code, str(code)))


def _stamp(ns: int) -> str:
    return f"{ns // 1_000_000_000:5d}.{ns % 1_000_000_000 // 1000:06d}"


class ErrorLog:
    """The last ``ERROR_LOG_MAX`` entries, stamped with the local clock (``now_ns``)."""

    def __init__(self, now_ns: Callable[[], int]) -> None:
        self.now_ns = now_ns
        self.entries: list[str] = []

    def log(self, location: str, command: str, message: str, pos: int) -> None:
        """``[ts] location: error: message`` / ``  Command: ...`` / a caret under ``pos``."""
        self.add(f"[{self.timestamp()}] {location}: error: {message}\n  Command: {command}\n"
                 f"{' ' * (11 + pos)}^\n")

    def add(self, entry: str) -> None:
        """Append a ready-made entry (e.g. ``FilterError.error_log_entry``); the oldest go."""
        self.entries.append(entry)
        del self.entries[:-ERROR_LOG_MAX]

    def timestamp(self) -> str:
        return _stamp(self.now_ns())

    def text(self) -> str:
        return "".join(self.entries)

    def clear(self) -> None:
        self.entries.clear()
