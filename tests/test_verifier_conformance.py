"""The conformance suite under its own execution model: r1 = the test memory, r2 = its length."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import CONFORMANCE, need_shared

# Programs the suite runs but no verifier following Linux can accept: an indirect call through a
# register ("callx", not in RFC 9669's verified subset; the kernel: "unknown opcode 8d").
NOT_VERIFIABLE = {"callx"}


def _files(sub: str) -> list[Path]:
    d = CONFORMANCE / sub
    return sorted(d.glob("*.data")) if d.is_dir() else []


@pytest.fixture(scope="module")
def reader():
    need_shared()
    from tracesim.filters.bpf.vm import conformance
    return conformance


@pytest.mark.parametrize("path", _files("tests"), ids=lambda p: p.stem)
def test_suite_programs_verify(reader, path):
    from tracesim.filters.bpf.verifier import ContextSpec, verify
    case = reader.parse_file(path)
    res = verify(case.insns, prog_type="conformance", ctx=ContextSpec.memory(len(case.mem)))
    if path.stem in NOT_VERIFIABLE:
        assert not res.ok
    else:
        assert res.ok, res.log


@pytest.mark.parametrize("path", _files("negative"), ids=lambda p: p.stem)
def test_negative_programs_rejected(reader, path):
    from tracesim.filters.bpf.verifier import ContextSpec, verify
    case = reader.parse_file(path)
    res = verify(case.insns, prog_type="conformance", ctx=ContextSpec.memory(len(case.mem)))
    assert not res.ok
    assert res.error


def test_suite_is_present():
    need_shared()
    assert len(_files("tests")) > 300 and len(_files("negative")) > 40
