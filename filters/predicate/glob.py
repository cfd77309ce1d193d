"""String matching of the filter's ``==``, ``!=`` and ``~`` (trace_events_filter.c, lib/glob.c).

A ``~`` pattern is classified by filter_parse_regex(): a leading ``!`` inverts the match, a
leading digit means a plain full match, ``abc*`` is a front match, ``*abc`` an end match,
``*abc*`` a middle match, and any other ``*`` or a ``?``, ``[`` or ``\\`` makes it a full glob.
``==``/``!=`` always compare the whole string.

Every matcher takes ``(data, length)`` like the kernel's regex_match_*(str, r, len): ``data`` holds
the bytes from the string's start (at least ``length`` of them when the record has them) and
``length`` is the field length including the NUL, or 0 for "NUL-terminated, length unknown".
The quirks are the kernel's: the front/full matches stop at a NUL, the middle match scans all
``length`` bytes (strnstr does not stop at a NUL), and the end match compares the last bytes
before ``length - 1`` — for a fixed ``char[N]`` array that is the end of the array, not of the text.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Matcher = Callable[[bytes, int], bool]

MATCH_FULL = "full"
MATCH_FRONT = "front"
MATCH_MIDDLE = "middle"
MATCH_END = "end"
MATCH_GLOB = "glob"


def glob_match(pat: bytes, text: bytes) -> bool:
    """lib/glob.c glob_match(): ``*``, ``?``, ``[a-z]``, ``[!a]``, ``\\x``; must match all of ``text``."""
    p = s = 0
    back_p = -1
    back_s = 0
    plen = len(pat)
    slen = len(text)
    while True:
        c = text[s] if s < slen else 0
        d = pat[p] if p < plen else 0
        s += 1
        p += 1
        if d == 0x3F:  # '?': anything but the end
            if c == 0:
                return False
            continue
        if d == 0x2A:  # '*'
            if p >= plen:
                return True
            back_p = p
            s -= 1
            back_s = s
            continue
        literal = d
        if d == 0x5B:  # '['
            inverted = p < plen and pat[p] == 0x21
            k = p + inverted
            a = pat[k] if k < plen else 0
            k += 1
            matched = False
            malformed = False
            while True:
                b = a
                if a == 0:
                    malformed = True
                    break
                nxt = pat[k] if k < plen else 0
                after = pat[k + 1] if k + 1 < plen else 0
                if nxt == 0x2D and after != 0x5D:  # "a-b" span
                    b = after
                    if b == 0:
                        malformed = True
                        break
                    k += 2
                matched |= a <= c <= b
                a = pat[k] if k < plen else 0
                k += 1
                if a == 0x5D:
                    break
            if not malformed:
                if matched != inverted:
                    p = k
                    continue
                if c == 0 or back_p < 0:
                    return False
                p = back_p
                back_s += 1
                s = back_s
                continue
        elif d == 0x5C:  # '\\' escapes the next pattern byte
            literal = pat[p] if p < plen else 0
            p += 1
        if c == literal:
            if literal == 0:
                return True
            continue
        if c == 0 or back_p < 0:
            return False
        p = back_p
        back_s += 1
        s = back_s


@dataclass(frozen=True)
class Pattern:
    """A string operand after filter_build_regex(): how to match, what, and whether inverted."""

    kind: str
    text: bytes
    inverted: bool


def parse_pattern(value: bytes, is_glob_op: bool, negated_op: bool) -> Pattern:
    """filter_build_regex(): ``~`` patterns are classified; ``==``/``!=`` match in full."""
    if not is_glob_op:
        return Pattern(MATCH_FULL, value, negated_op)
    inverted = False
    buff = value
    if buff[:1] == b"!":
        inverted = True
        buff = buff[1:]
    if buff[:1].isdigit():
        return Pattern(MATCH_FULL, buff, inverted)
    kind = MATCH_FULL
    n = len(buff)
    for i in range(n):
        ch = buff[i : i + 1]
        if ch == b"*":
            if i == 0:
                kind = MATCH_END
            elif i == n - 1:
                kind = MATCH_MIDDLE if kind == MATCH_END else MATCH_FRONT
                buff = buff[:i]
                break
            else:
                return Pattern(MATCH_GLOB, buff, inverted)
        elif ch in (b"[", b"?", b"\\"):
            return Pattern(MATCH_GLOB, buff, inverted)
    if buff[:1] == b"*":
        buff = buff[1:]
    return Pattern(kind, buff, inverted)


def _cstr(data: bytes) -> bytes:
    nul = data.find(b"\0")
    return data if nul < 0 else data[:nul]


def make_matcher(pattern: Pattern) -> Matcher:
    """The regex_match_* function for ``pattern`` (without the inversion)."""
    pat = pattern.text
    plen = len(pat)
    if pattern.kind == MATCH_FULL:

        def full(data: bytes, length: int) -> bool:
            if not length:
                return _cstr(data) == pat
            return _cstr(data[:length]) == pat[:length]

        return full
    if pattern.kind == MATCH_FRONT:

        def front(data: bytes, length: int) -> bool:
            if length and length < plen:
                return False
            return _cstr(data[:plen]) == pat

        return front
    if pattern.kind == MATCH_MIDDLE:

        def middle(data: bytes, length: int) -> bool:
            if not length:
                return pat in _cstr(data)
            return pat in data[:length]

        return middle
    if pattern.kind == MATCH_END:

        def end(data: bytes, length: int) -> bool:
            strlen = length - 1
            return strlen >= plen and data[strlen - plen : strlen] == pat

        return end

    def glob(data: bytes, length: int) -> bool:
        return glob_match(pat, _cstr(data))

    return glob
