"""Refused filters: errno, parse error text and position, as a table worked out from the 6.x source.

Positions are the kernel's (one past the predicate start plus the offset inside it — the same
rule that puts ``name == 5`` at 9 in the 6.18 capture).
"""
from __future__ import annotations

import errno as E

import pytest
from tracesim.filters.predicate import FilterError, compile_filter

from tests.test_predicate_match import FIELDS, Symbols

NO_POS = None
CASES = [
    # (expression, errno, message, pos)
    ("u8 = 5", E.EINVAL, "Invalid operator", 4),
    ("len = 5", E.EINVAL, "Field not found", 4),
    ("u32 = 5", E.EINVAL, "Invalid operator", 5),
    ("u8 === 1", E.EINVAL, "Invalid value (did you forget quotes)?", 6),
    ("u32 == 1 u32 == 2", E.EPERM, "Too many terms in predicate expression", 9),
    ("u8 == 1 & u16 == 2", E.EPERM, "Too many terms in predicate expression", 8),
    ("u32 == 1)", E.EPERM, "Too few '('", 8),
    ("(u8 == 1))", E.EPERM, "Too few '('", 9),
    ("u8 == 1 && (u16 == 2", E.ENOENT, "Too many '('", 11),
    ('dname == "lo', E.ESRCH, "Missing matching quote", 9),
    ('dname == "a" "', E.ESRCH, "Missing matching quote", 13),
    ("u32 ~ 5", E.EINVAL, "Illegal operation for field type", 7),
    ('u32 == "x"', E.EINVAL, "Expecting numeric field", 8),
    ('dname < "x"', E.EINVAL, "Illegal operation for field type", 9),
    ("dname == 5", E.EINVAL, "Expecting string field", 10),
    ("u32 == 0x", E.EINVAL, "Illegal integer value", 8),
    ("u32 == 08", E.EINVAL, "Illegal integer value", 8),
    ("u32 == 12ab", E.EINVAL, "Illegal integer value", 8),
    ("u32 == -1", E.EINVAL, "Illegal integer value", 8),
    ("u32 == 18446744073709551616", E.EINVAL, "Illegal integer value", 8),
    ("s32 == -9223372036854775809", E.EINVAL, "Illegal integer value", 8),
    ("u32 == 1234567890123456789012345", E.EINVAL, "Operand too long", 33),
    ("dname == \"" + "a" * 256 + "\"", E.EINVAL, "Operand too long", 267),
    ("nosuch == 1", E.EINVAL, "Field not found", 7),
    ("CPU & CPUS{1", E.EINVAL, "Missing '}'", 13),
    ("CPU & CPUS 1", E.EINVAL, "Missing '{'", 12),
    ("CPU & CPUS{}", E.EINVAL, "Invalid cpulist", 12),
    ("CPU & CPUS{9}", E.EINVAL, "Invalid cpulist", 13),
    ("CPU & CPUS{x}", E.EINVAL, "Invalid cpulist", 13),
    ("u32 & CPUS{0-3:2/1}", E.EINVAL, "Invalid cpulist", 19),
    ("CPU < CPUS{1}", E.EINVAL, "Illegal operation for field type", 7),
    ("dname == CPUS{1}", E.EINVAL, "Illegal operation for field type", 10),
    ('CPU ~ "x"', E.EINVAL, "Expecting numeric field", 7),
    ("COMM == 1", E.EINVAL, "Expecting string field", 9),
    ('stacktrace == "x"', E.EINVAL, "Expecting numeric field", 15),
    ("ip.function == nosuch", E.EINVAL, "Function not found", 22),
    ("ip.function == 0x10", E.EINVAL, "Function not found", 20),
    ("u32.function == kfree_skb", E.EINVAL, "Illegal operation for field type", 17),
    ("ip.function < 5", E.EINVAL, "Invalid operator", 15),
    ("!", E.EINVAL, "No filter found", 1),
    # the kernel returns without recording a parse error: "Error: (0)"
    ("", E.EINVAL, "Error", NO_POS),
    ("   ", E.EINVAL, "Error", NO_POS),
    ("()", E.EINVAL, "Error", NO_POS),
    ('"lo" == dname', E.EPERM, "Error", NO_POS),
    ("u8 == 1 ||| u8 == 2", E.EPERM, "Error", NO_POS),
    ("u8 == 1 || && u8 == 2", E.EPERM, "Error", NO_POS),
    ("u8 != 1 && !=", E.EPERM, "Error", NO_POS),
    ("(u8 == 1 && )", E.EPERM, "Error", NO_POS),
    # a dangling "&&" after "||" leaves the kernel's program inconsistent; its sanity check
    # (WARN_ON target <= i) turns that into -EINVAL
    ("u8 == 1 || u8 == 2 &&", E.EINVAL, "Error", NO_POS),
]


@pytest.mark.parametrize("expression, errno, message, pos", CASES)
def test_refused(expression: str, errno: int, message: str, pos: int | None) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(expression, FIELDS, symbols=Symbols(), nr_cpu_ids=4)
    err = info.value
    assert (err.errno, err.message, err.pos) == (errno, message, pos)


def test_caret_is_clamped_to_the_text_in_the_filter_file_only() -> None:
    with pytest.raises(FilterError) as info:
        compile_filter("ip.function == nosuch", FIELDS, symbols=Symbols())
    err = info.value
    assert err.filter_file_text() == (
        "ip.function == nosuch\n" + " " * 21 + "^\nparse_error: Function not found\n\n"
    )
    assert err.error_log_entry("  280.846481") == (
        "[  280.846481] event filter parse error: error: Function not found\n"
        "  Command: ip.function == nosuch\n" + " " * (11 + 22) + "^\n"
    )


def test_trailing_whitespace_is_dropped_leading_kept() -> None:
    with pytest.raises(FilterError) as info:
        compile_filter("  nosuch == 1 \t\n", FIELDS)
    assert info.value.text == "  nosuch == 1"
    assert info.value.pos == 9


def test_positions_count_bytes_not_characters() -> None:
    with pytest.raises(FilterError) as info:
        compile_filter('dname == "é" && nosuch == 1', FIELDS)
    err = info.value
    assert err.pos == 24  # 18 + len("nosuch"), counting "é" as two bytes
    assert err.filter_file_text().splitlines()[1] == " " * 24 + "^"
