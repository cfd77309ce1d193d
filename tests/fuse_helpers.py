"""Real FUSE mounts for tests: skip with the missing piece named, mount, run shell commands."""
from __future__ import annotations

import contextlib
import ctypes.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TRACESIM = [sys.executable, "-m", "tracesim.tools.cli"]
ROOT = Path(__file__).resolve().parent.parent
_probe: dict[str, str] = {}


def fuse_problem() -> str | None:
    """Why FUSE mounts cannot work here, or None."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (FUSE not available in this environment)"
    if ctypes.util.find_library("fuse") is None:
        return "libfuse2 is missing: install the Debian package 'libfuse2'"
    if shutil.which("fusermount") is None and os.geteuid() != 0:
        return "fusermount is missing: install the Debian package 'fuse'"
    return None


def tracesim(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(TRACESIM + list(args), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=check)


def need_fuse(tmp_root: Path) -> None:
    """Skip unless FUSE is there and one trial mount works (tried once per session)."""
    problem = fuse_problem()
    if problem:
        pytest.skip(problem)
    if "trial" not in _probe:
        mnt = tmp_root / "fuse-trial"
        mnt.mkdir(exist_ok=True)
        done = tracesim("mount", str(mnt), "--clock", "virtual", check=False)
        _probe["trial"] = "" if done.returncode == 0 else (done.stderr.strip() or "mount failed")
        if done.returncode == 0:
            tracesim("umount", str(mnt), check=False)
    if _probe["trial"]:
        pytest.skip(f"FUSE mount does not work here: {_probe['trial']}")


@contextlib.contextmanager
def mounted(mnt: Path, *options: str) -> Iterator[Path]:
    mnt.mkdir(parents=True, exist_ok=True)
    tracesim("mount", str(mnt), "--clock", "virtual", *options)
    try:
        yield mnt
    finally:
        tracesim("umount", str(mnt), check=False)


def sh(script: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a bash script in the mount (as a user would), capturing output."""
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
