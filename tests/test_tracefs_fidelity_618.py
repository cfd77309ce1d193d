"""Differences a scripted session found between tracesim and a real Linux 6.18 tracefs (issue #18
items 4 and 5), each checked against what the reference kernel showed."""
from __future__ import annotations

import errno
import re
import subprocess

import pytest

from tests.conftest import REFERENCE, need_shared
from tracefs.errors import FsError


def ref(name: str) -> str:
    need_shared()
    return (REFERENCE / name).read_text()


def errno_of(call, *args, **kwargs) -> int:
    with pytest.raises(FsError) as err:
        call(*args, **kwargs)
    return err.value.errno


def sh(mnt, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=mnt, capture_output=True, text=True, timeout=60)


# -- saved_cmdlines_size -----------------------------------------------------------------------
def test_saved_cmdlines_size_is_the_allocation(system, tree):
    assert tree.read_text("/saved_cmdlines_size") == ref("saved_cmdlines_size")
    cmdlines = system.kernel.tracing.cmdlines
    for pid in range(1000, 1000 + 6552):
        cmdlines.record(pid, f"t{pid}")
    text = tree.read_text("/saved_cmdlines")
    assert len(text.splitlines()) == 6552 and "1000 t1000\n" in text       # nothing pushed out yet
    cmdlines.record(9000, "late")
    assert "1000 t1000\n" not in tree.read_text("/saved_cmdlines")


def test_saved_cmdlines_size_rounds_up_and_limits(tree):
    tree.echo("/saved_cmdlines_size", "10000")
    assert tree.read_text("/saved_cmdlines_size") == "19659\n"
    for bad in ("0", "32769", "x"):
        assert errno_of(tree.echo, "/saved_cmdlines_size", bad) == errno.EINVAL
    assert tree.read_text("/saved_cmdlines_size") == "19659\n"
