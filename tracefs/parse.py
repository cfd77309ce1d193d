"""How the kernel reads numbers and words written to control files.

``kstrtoul`` follows lib/kstrtox.c: one optional ``+`` (kstrtoull skips it; ``-`` is refused),
optional base prefix (base 0 or 16), digits, one optional trailing newline, nothing else (no
leading blanks); an empty or malformed text is EINVAL, a value past 64 bits ERANGE.
``kstrtoul_from_user`` only looks at the first 23 bytes. ``strstrip`` is the kernel's strim():
blanks off both ends. :class:`TraceParser` is kernel/trace's trace_parser with
trace_get_user(): the word-at-a-time reader behind ``set_event``, the pid lists and the
function filters.
"""
from __future__ import annotations

import errno
import re
import string

from tracesim.tracefs.errors import FsError

ULONG_MAX = (1 << 64) - 1
KSTRTOX_USER_MAX = 23           # kstrtoul_from_user copies into char buf[24]
_DIGITS = {c: int(c, 36) for c in string.digits + string.ascii_lowercase}


def kstrtoul(text: str, base: int = 10) -> int:
    s = text.lower()
    if s.startswith("+"):
        s = s[1:]
    if s.isascii() and s.isdigit() and (base == 10 or (base == 0 and s[0] != "0")):
        value = int(s)                   # the common case, decimal digits only
        if value > ULONG_MAX:
            raise FsError(errno.ERANGE)
        return value
    if base in (0, 16) and s.startswith("0x") and len(s) > 2 and s[2] in string.hexdigits:
        s, base = s[2:], 16
    elif base == 0:
        base = 8 if s.startswith("0") and len(s) > 1 and s[1] != "\n" else 10
    value = 0
    i = 0
    while i < len(s) and s[i] in _DIGITS and _DIGITS[s[i]] < base:
        value = value * base + _DIGITS[s[i]]
        i += 1
    if i == 0:
        raise FsError(errno.EINVAL)
    if value > ULONG_MAX:
        raise FsError(errno.ERANGE)
    rest = s[i:]
    if rest not in ("", "\n"):
        raise FsError(errno.EINVAL)
    return value


def kstrtoul_from_user(text: str, base: int = 10) -> int:
    return kstrtoul(text[:KSTRTOX_USER_MAX], base)


def strstrip(text: str) -> str:
    return text.strip(" \t\n\r\v\f")


# The kernel's isspace() (lib/ctype.c): the C blanks plus 0xa0, which its Latin-1 table marks _S.
KERNEL_SPACES = b" \t\n\v\f\r\xa0"
_BLANKS = re.compile(b"[" + re.escape(KERNEL_SPACES) + b"]*")
_WORD = re.compile(b"[^\0" + re.escape(KERNEL_SPACES) + b"]*")
WORDS = re.compile(b"[^\0" + re.escape(KERNEL_SPACES) + b"]+")   # every word of a buffer


class TraceParser:
    """trace_parser + trace_get_user(): each ``get_user`` call reads one word from a write.

    Leading blanks are skipped; the word ends at a blank or a NUL byte, which is consumed
    with it. A word cut by the end of the buffer is kept with ``cont`` set, and the next call
    continues it without skipping blanks (only callers that keep the parser across writes
    see that: set_ftrace_filter; set_event and the pid lists make a new one per write). A
    word longer than ``size - 1`` bytes is EINVAL. Returns the bytes consumed (at least 1).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.buffer = bytearray()
        self.cont = False

    @property
    def loaded(self) -> bool:
        return bool(self.buffer)

    def word(self) -> str:
        return self.buffer.decode("utf-8", "surrogateescape")

    def clear(self) -> None:
        self.buffer.clear()
        self.cont = False

    def get_user(self, data: bytes, start: int = 0) -> int:
        """Read one word from ``data[start:]``; returns the bytes consumed."""
        end = len(data)
        if start >= end:
            return 0
        pos = start
        if not self.cont:
            pos = _BLANKS.match(data, pos).end()       # type: ignore[union-attr]
            self.buffer.clear()
            if pos == end:                             # only blanks were written
                return end - start
            if data[pos] == 0:                         # a NUL where a word starts ends it
                return pos + 1 - start
        stop = _WORD.match(data, pos).end()            # type: ignore[union-attr]
        if len(self.buffer) + (stop - pos) > self.size - 1:
            raise FsError(errno.EINVAL)
        self.buffer += data[pos:stop]
        if stop == end:                                # the buffer ended inside the word
            self.cont = True
            return end - start
        self.cont = False
        return stop + 1 - start                        # the blank or NUL after it is taken
