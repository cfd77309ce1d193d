"""Compile errors as a C compiler prints them: ``file:line:col: error: message``, the source line
and a caret under the column."""
from __future__ import annotations

from pathlib import Path
from typing import Any


class CompileError(Exception):
    """An error in the user's program (never a bug report): carries its source location."""

    def __init__(self, message: str, file: str | None = None, line: int = 0, col: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.col = col

    def render(self, sources: dict[str, str] | None = None) -> str:
        """The diagnostic with the offending line and a caret (when the line can be read)."""
        if not self.file:
            return f"error: {self.message}"
        head = f"{self.file}:{self.line}:{self.col}: error: {self.message}" if self.col else \
            f"{self.file}:{self.line}: error: {self.message}"
        text = source_line(self.file, self.line, sources)
        if text is None:
            return head
        caret = "".join(c if c == "\t" else " " for c in text[:max(self.col - 1, 0)]) + "^"
        return f"{head}\n{text}\n{caret}"

    def __str__(self) -> str:
        return self.render()


def source_line(file: str, line: int, sources: dict[str, str] | None = None) -> str | None:
    text = (sources or {}).get(file)
    if text is None:
        try:
            text = Path(file).read_text(errors="replace")
        except OSError:
            return None
    lines = text.splitlines()
    return lines[line - 1] if 0 < line <= len(lines) else None


def error_at(node: object, message: str) -> CompileError:
    """A CompileError located at a pycparser node (or a bare ``Coord``)."""
    coord: Any = getattr(node, "coord", node)
    if coord is None or not hasattr(coord, "line"):
        return CompileError(message)
    return CompileError(message, coord.file, coord.line or 0, coord.column or 0)
