"""`tracesim ctl` from the shell: usage and the error for a directory nothing is mounted on."""
from __future__ import annotations

import subprocess
import sys


def tracesim(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracesim.tools.cli", *argv], capture_output=True,
                          text=True, timeout=60)


def test_usage_without_a_command():
    done = tracesim("ctl")
    assert done.returncode == 2
    assert done.stderr.startswith("usage: tracesim ctl MOUNTPOINT COMMAND")


def test_no_mount_answers(tmp_path):
    done = tracesim("ctl", str(tmp_path), "dmesg")
    assert done.returncode == 1
    assert done.stderr.startswith(f"tracesim ctl: no tracesim mount answers for {tmp_path}")
