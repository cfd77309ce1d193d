"""cpulist_parse() — lib/bitmap-str.c bitmap_parselist(): ``0-3,5``, ``all``, ``N``, ``0-7:2/4``."""
from __future__ import annotations

from tracesim.filters.predicate.ctype import isspace

U32_MAX = (1 << 32) - 1


class CpulistError(ValueError):
    """The kernel's -EINVAL / -ERANGE / -EOVERFLOW from bitmap_parselist()."""


def _end_of_str(ch: str) -> bool:
    return ch in ("", "\n")


def _between_regions(ch: str) -> bool:
    return ch != "" and (isspace(ch) or ch == ",")


def _end_of_region(ch: str) -> bool:
    return _between_regions(ch) or _end_of_str(ch)


def _getnum(text: str, i: int, lastbit: int) -> tuple[int, int]:
    if text[i : i + 1] == "N":
        return lastbit, i + 1
    j = i
    while j < len(text) and text[j].isascii() and text[j].isdigit():
        j += 1
    if j == i:
        raise CpulistError("EINVAL")
    value = int(text[i:j])
    if value > U32_MAX:
        raise CpulistError("EOVERFLOW")
    return value, j


def cpulist_parse(text: str, nbits: int) -> int:
    """The CPU set ``text`` describes, as a bit mask; raises CpulistError where the kernel fails."""
    mask = 0
    lastbit = nbits - 1
    i = 0
    while True:
        while _between_regions(text[i : i + 1]):
            i += 1
        if _end_of_str(text[i : i + 1]):
            return mask
        if text[i : i + 3].lower() == "all":
            start, end = 0, lastbit
            i += 3
        else:
            start, i = _getnum(text, i, lastbit)
            if _end_of_region(text[i : i + 1]):
                end = start
            elif text[i : i + 1] != "-":
                raise CpulistError("EINVAL")
            else:
                end, i = _getnum(text, i + 1, lastbit)
        if _end_of_region(text[i : i + 1]):
            used = group = end + 1
        else:
            if text[i : i + 1] != ":":
                raise CpulistError("EINVAL")
            used, i = _getnum(text, i + 1, lastbit)
            if text[i : i + 1] != "/":
                raise CpulistError("EINVAL")
            group, i = _getnum(text, i + 1, lastbit)
        if start > end or group == 0 or used > group:
            raise CpulistError("EINVAL")
        if end >= nbits:
            raise CpulistError("ERANGE")
        base = start
        while base <= end:
            count = min(end - base + 1, used)
            mask |= ((1 << count) - 1) << base
            base += group
