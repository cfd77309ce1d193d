"""The kernel's character classes (lib/ctype.c), which differ from Python's and C's "C" locale.

The filter parser works on the written bytes, held as a latin-1 ``str`` so that one character is
one byte and every position is a byte offset, as in the kernel. The kernel table is Latin-1 aware:
byte 160 (NBSP) is a space, and bytes 192..255 except 215 and 247 are letters.
"""
from __future__ import annotations

SPACE = frozenset(chr(c) for c in (9, 10, 11, 12, 13, 32, 160))
DIGIT = frozenset("0123456789")
ALNUM = frozenset(
    [chr(c) for c in range(48, 58)]
    + [chr(c) for c in range(65, 91)]
    + [chr(c) for c in range(97, 123)]
    + [chr(c) for c in range(192, 256) if c not in (215, 247)]
)


def isspace(ch: str) -> bool:
    return ch in SPACE


def isdigit(ch: str) -> bool:
    return ch in DIGIT


def isalnum(ch: str) -> bool:
    return ch in ALNUM


def strip_trailing(text: str) -> str:
    """The in-place effect of the kernel's strstrip(): trailing spaces go, leading ones stay."""
    end = len(text)
    while end and text[end - 1] in SPACE:
        end -= 1
    return text[:end]


def strstrip(text: str) -> str:
    """What strstrip() returns: both ends trimmed (used for the ``"0"`` clear check)."""
    start = 0
    stripped = strip_trailing(text)
    while start < len(stripped) and stripped[start] in SPACE:
        start += 1
    return stripped[start:]


def to_kernel_chars(text: str) -> str:
    """The written text as the kernel sees it: UTF-8 bytes, one char per byte, cut at a NUL."""
    raw = text.encode("utf-8", "surrogateescape").decode("latin-1")
    nul = raw.find("\0")
    return raw if nul < 0 else raw[:nul]


def from_kernel_chars(chars: str) -> str:
    """Back from one-char-per-byte to the text a reader of the file gets."""
    return chars.encode("latin-1").decode("utf-8", "surrogateescape")
