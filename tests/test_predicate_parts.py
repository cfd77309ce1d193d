"""The kernel library pieces the filter uses: glob_match, filter_parse_regex, kstrtox, cpulist."""
from __future__ import annotations

import pytest
from tracesim.filters.predicate.cpulist import CpulistError, cpulist_parse
from tracesim.filters.predicate.glob import glob_match, parse_pattern
from tracesim.filters.predicate.kstrtox import kstrtoll, kstrtoull

# lib/glob.c's own self-test table: (expected, pattern, string)
GLOB_SELFTEST = [
    (1, "a", "a"), (0, "a", "b"), (0, "a", "aa"), (0, "a", ""), (1, "", ""), (0, "", "a"),
    (1, "[a]", "a"), (0, "[a]", "b"), (0, "[!a]", "a"), (1, "[!a]", "b"), (1, "[ab]", "a"),
    (1, "[ab]", "b"), (0, "[ab]", "c"), (1, "[!ab]", "c"), (1, "[a-c]", "b"), (0, "[a-c]", "d"),
    (1, "[a-c-e-g]", "-"), (0, "[a-c-e-g]", "d"), (1, "[a-c-e-g]", "f"),
    (1, "[]a-ceg-ik[]", "a"), (1, "[]a-ceg-ik[]", "]"), (1, "[]a-ceg-ik[]", "["),
    (1, "[]a-ceg-ik[]", "h"), (0, "[]a-ceg-ik[]", "f"), (0, "[!]a-ceg-ik[]", "h"),
    (0, "[!]a-ceg-ik[]", "]"), (1, "[!]a-ceg-ik[]", "f"),
    (1, "?", "a"), (0, "?", "aa"), (0, "??", "a"), (1, "?x?", "axb"), (0, "?x?", "abx"),
    (0, "?x?", "xab"),
    (0, "*??", "a"), (1, "*??", "ab"), (1, "*??", "abc"), (1, "*??", "abcd"), (0, "??*", "a"),
    (1, "??*", "ab"), (1, "??*", "abc"), (1, "??*", "abcd"), (0, "?*?", "a"), (1, "?*?", "ab"),
    (1, "?*?", "abc"), (1, "?*?", "abcd"), (1, "*b", "b"), (1, "*b", "ab"), (0, "*b", "ba"),
    (1, "*b", "bb"), (1, "*b", "abb"), (1, "*b", "bab"), (1, "*bc", "abbc"), (1, "*bc", "bc"),
    (1, "*bc", "bbc"), (1, "*bc", "bcbc"),
    (1, "*ac*", "abacadaeafag"), (1, "*ac*ae*ag*", "abacadaeafag"),
    (1, "*a*b*[bc]*[ef]*g*", "abacadaeafag"), (0, "*a*b*[ef]*[cd]*g*", "abacadaeafag"),
    (1, "*abcd*", "abcabcabcabcdefg"), (1, "*ab*cd*", "abcabcabcabcdefg"),
    (1, "*abcd*abcdef*", "abcabcdabcdeabcdefg"), (0, "*abcd*", "abcabcabcabcefg"),
    (0, "*ab*cd*", "abcabcabcabcefg"),
]


@pytest.mark.parametrize("expected, pat, text", GLOB_SELFTEST)
def test_glob_selftest(expected: int, pat: str, text: str) -> None:
    assert glob_match(pat.encode(), text.encode()) is bool(expected)


@pytest.mark.parametrize("pat, text, expected", [
    ("a\\*b", "a*b", True), ("a\\*b", "axb", False), ("[a", "[a", True), ("x[a-", "x[a-", True),
])
def test_glob_escapes_and_malformed_classes(pat: str, text: str, expected: bool) -> None:
    assert glob_match(pat.encode(), text.encode()) is expected


@pytest.mark.parametrize("value, kind, text, inverted", [
    ("eth0", "full", "eth0", False),
    ("eth*", "front", "eth", False),
    ("*th0", "end", "th0", False),
    ("*th*", "middle", "th", False),
    ("e*0", "glob", "e*0", False),
    ("*e*0", "glob", "*e*0", False),
    ("e?h0", "glob", "e?h0", False),
    ("[el]*", "glob", "[el]*", False),
    ("!eth*", "front", "eth", True),
    ("1*", "full", "1*", False),
    ("!1*", "full", "1*", True),
    ("*", "end", "", False),
    ("**", "middle", "", False),
])
def test_glob_operator_classification(value: str, kind: str, text: str, inverted: bool) -> None:
    pattern = parse_pattern(value.encode(), is_glob_op=True, negated_op=False)
    assert (pattern.kind, pattern.text, pattern.inverted) == (kind, text.encode(), inverted)


def test_equality_operators_never_glob() -> None:
    assert parse_pattern(b"e*", is_glob_op=False, negated_op=True).kind == "full"


@pytest.mark.parametrize("text, unsigned, signed", [
    ("0", 0, 0), ("10", 10, 10), ("0x1F", 31, 31), ("0X1f", 31, 31), ("017", 15, 15),
    ("08", None, None), ("0x", None, None), ("+5", 5, 5), ("-5", None, -5), ("", None, None),
    ("18446744073709551615", 2**64 - 1, None), ("18446744073709551616", None, None),
    ("9223372036854775807", 2**63 - 1, 2**63 - 1), ("-9223372036854775808", None, -(2**63)),
    ("-9223372036854775809", None, None), ("5\n", 5, 5), ("5x", None, None),
])
def test_kstrtox(text: str, unsigned: int | None, signed: int | None) -> None:
    assert kstrtoull(text) == unsigned
    assert kstrtoll(text) == signed


@pytest.mark.parametrize("text, mask", [
    ("0", 0b1), ("0-3", 0b1111), ("1,3", 0b1010), (" 1 , 3 ", 0b1010), ("all", 0xFF),
    ("ALL", 0xFF), ("N", 0x80), ("4-N", 0xF0), ("0-7:1/4", 0b00010001), ("0-7:2/4", 0b00110011),
    ("all:1/2", 0b01010101),
])
def test_cpulist(text: str, mask: int) -> None:
    assert cpulist_parse(text, 8) == mask


@pytest.mark.parametrize("text", ["8", "3-1", "x", "1-", "0-7:3/2", "0-7:1/0", "1;2", "4294967296"])
def test_cpulist_errors(text: str) -> None:
    with pytest.raises(CpulistError):
        cpulist_parse(text, 8)
