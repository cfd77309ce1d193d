"""How the kernel reads numbers and words written to control files.

``kstrtoul`` follows lib/kstrtox.c: optional base prefix (base 0 or 16), digits, one optional
trailing newline, nothing else (no leading blanks, no sign); an empty or malformed text is
EINVAL, a value past 64 bits ERANGE. ``kstrtoul_from_user`` only looks at the first 23 bytes.
``strstrip`` is the kernel's strim(): blanks off both ends.
"""
from __future__ import annotations

import errno
import string

from tracefs.errors import FsError

ULONG_MAX = (1 << 64) - 1
KSTRTOX_USER_MAX = 23           # kstrtoul_from_user copies into char buf[24]
_DIGITS = {c: int(c, 36) for c in string.digits + string.ascii_lowercase}


def kstrtoul(text: str, base: int = 10) -> int:
    s = text.lower()
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
