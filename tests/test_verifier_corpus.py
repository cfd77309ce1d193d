"""The verifier corpus: every unsafe program rejected with its message, every safe one accepted."""
from __future__ import annotations

import pytest

from tests.verifier_corpus_reader import read_corpus, verify_program

UNSAFE = read_corpus("unsafe.s")
SAFE = read_corpus("safe.s")


def test_corpus_sizes():
    assert len(UNSAFE) >= 80
    assert len({p.name for p in UNSAFE}) == len(UNSAFE)
    assert all(p.error for p in UNSAFE)


@pytest.mark.parametrize("prog", UNSAFE, ids=[p.name for p in UNSAFE])
def test_unsafe_rejected(prog):
    res = verify_program(prog)
    assert not res.ok
    assert res.error == prog.error
    lines = res.log.splitlines()
    assert prog.error in lines
    assert lines[-1].startswith("processed ")


@pytest.mark.parametrize("prog", SAFE, ids=[p.name for p in SAFE])
def test_safe_accepted(prog):
    res = verify_program(prog)
    assert res.ok, res.log
    assert res.error is None
