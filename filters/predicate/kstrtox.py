"""Integer parsing as lib/kstrtox.c does it with base 0 (``0x`` hex, leading ``0`` octal, decimal).

Each function returns the value, or None where the kernel returns an error (-EINVAL or -ERANGE);
the filter parser only cares that it failed. Signed results are returned as Python ints (negative
allowed); callers reduce them to the field width.
"""
from __future__ import annotations

U64_MAX = (1 << 64) - 1
S64_MAX = (1 << 63) - 1
_XDIGITS = frozenset("0123456789abcdefABCDEF")


def _fixup_radix(s: str) -> tuple[str, int]:
    if s[:1] == "0":
        if s[1:2] in ("x", "X") and s[2:3] in _XDIGITS:
            return s[2:], 16
        return s, 8
    return s, 10


def _parse_integer(s: str, base: int) -> tuple[int, int, bool]:
    """(value, digits consumed, overflowed) — stops at the first non-digit of ``base``."""
    value = 0
    count = 0
    overflow = False
    for ch in s:
        code = ord(ch)
        lower = code | 0x20
        if 48 <= code <= 57:
            digit = code - 48
        elif 97 <= lower <= 102:
            digit = lower - 97 + 10
        else:
            break
        if digit >= base:
            break
        value = value * base + digit
        if value > U64_MAX:
            overflow = True
            value &= U64_MAX
        count += 1
    return value, count, overflow


def _kstrtoull(s: str) -> int | None:
    s, base = _fixup_radix(s)
    value, count, overflow = _parse_integer(s, base)
    if overflow or count == 0:
        return None
    rest = s[count:]
    if rest[:1] == "\n":
        rest = rest[1:]
    return None if rest else value


def kstrtoull(s: str) -> int | None:
    """Unsigned 64-bit value of ``s`` (an optional leading ``+`` is allowed)."""
    return _kstrtoull(s[1:] if s[:1] == "+" else s)


def kstrtoll(s: str) -> int | None:
    """Signed 64-bit value of ``s`` (leading ``-`` or ``+``)."""
    if s[:1] == "-":
        magnitude = _kstrtoull(s[1:])
        if magnitude is None or magnitude > S64_MAX + 1:
            return None
        return -magnitude
    value = kstrtoull(s)
    if value is None or value > S64_MAX:
        return None
    return value


kstrtoul = kstrtoull  # unsigned long is 64 bits on the modelled x86-64
