"""Replays every write of the 6.18 capture ``filter_behaviour`` through the predicate compiler.

For each ``### write: EXPR`` block: the errno the shell reported (or success), the ``filter`` file
text afterwards, and at the end the ``error_log`` (timestamps taken from the capture).
"""
from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from tracesim.filters.predicate import FilterError, compile_filter

from tests.conftest import REFERENCE, need_shared

_STRERROR_TO_ERRNO = {os.strerror(code): code for code in (errno.EINVAL, errno.ENOENT, errno.EPERM)}
_FIELD_LINE = re.compile(r"\tfield:(.*) (\w+);\toffset:(\d+);\tsize:(\d+);\tsigned:(\d+);")


@dataclass(frozen=True)
class FormatField:
    name: str
    type: str
    offset: int
    size: int
    is_signed: bool


def parse_format(path: Path) -> list[FormatField]:
    """Fields of an ``events/<sys>/<event>/format`` file; array sizes move onto the type."""
    fields = []
    for line in path.read_text().splitlines():
        m = _FIELD_LINE.match(line)
        if m:
            type_text, name, offset, size, signed = m.groups()
            fields.append(FormatField(name, type_text, int(offset), int(size), signed == "1"))
    return fields


@dataclass
class Write:
    expression: str
    errno: int  # 0 = accepted
    filter_file: str


def parse_behaviour(path: Path) -> tuple[list[Write], list[str]]:
    """(the writes, the error_log entries as 3-line strings)."""
    writes: list[Write] = []
    log: list[str] = []
    lines = path.read_text().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("### write: "):
            expression = line[len("### write: ") :]
            i += 1
            code = 0
            if ": write error: " in lines[i]:  # the shell's message; its prefix varies by shell
                code = _STRERROR_TO_ERRNO[lines[i].rsplit(": write error: ", 1)[1]]
                i += 1
            assert lines[i].startswith("rc=")
            assert lines[i + 1] == "--- filter file:"
            i += 2
            body = []
            while not lines[i].startswith("### "):
                body.append(lines[i])
                i += 1
            writes.append(Write(expression, code, "\n".join(body) + "\n"))
        elif line == "### error_log":
            rest = [entry for entry in lines[i + 1 :] if entry]
            log = ["\n".join(rest[k : k + 3]) + "\n" for k in range(0, len(rest), 3)]
            break
        else:
            i += 1
    return writes, log


@pytest.fixture(scope="module")
def capture() -> tuple[list[FormatField], list[Write], list[str]]:
    need_shared()
    fields = parse_format(REFERENCE / "events_net_netif_receive_skb_format")
    writes, log = parse_behaviour(REFERENCE / "filter_behaviour")
    return fields, writes, log


def _outcome(expression: str, fields: list[FormatField]) -> tuple[int, str, FilterError | None]:
    try:
        flt = compile_filter(expression, fields)
    except FilterError as err:
        return err.errno, err.filter_file_text(), err
    return 0, flt.text + "\n", None


def test_capture_is_complete(capture) -> None:
    _, writes, log = capture
    assert len(writes) == 15
    assert len(log) == sum(1 for w in writes if w.errno)


@pytest.mark.parametrize("index", range(15))
def test_each_write_matches_capture(capture, index: int) -> None:
    fields, writes, _ = capture
    write = writes[index]
    code, filter_file, _ = _outcome(write.expression, fields)
    assert code == write.errno, write.expression
    assert filter_file == write.filter_file


def test_error_log_matches_capture(capture) -> None:
    fields, writes, log = capture
    produced = []
    failures = [w for w in writes if w.errno]
    for write, expected in zip(failures, log, strict=False):
        timestamp = expected[1 : expected.index("]")]
        _, _, err = _outcome(write.expression, fields)
        assert err is not None
        produced.append(err.error_log_entry(timestamp))
    assert produced == log
