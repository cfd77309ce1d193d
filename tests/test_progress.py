"""Long benchmarks draw a progress bar on a terminal and nothing anywhere else.

The command runs as a user runs it (``tracesim bench ...``) with its stderr on a pseudo-terminal
or on a pipe; the iterations are tiny, so only the bar's presence is checked, not its timing.
"""
from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRACESIM = [sys.executable, "-m", "tracesim.tools.cli"]
# Small runs of the benches that show a bar.
RUNS = {
    "skb": ["bench", "skb", "--iterations", "200"],
    "kernel": ["bench", "kernel", "--iterations", "200", "--repeat", "1"],
}


def run_with_tty_stderr(argv: list[str]) -> tuple[str, str]:
    """Run tracesim with stdout on a pipe and stderr on a terminal: (stdout, terminal text)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:                 # a pty holds only a few KB: read while it runs
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:              # EIO once the last writer closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.run(TRACESIM + argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=slave,
                              stdin=subprocess.DEVNULL, timeout=300)
    finally:
        os.close(slave)
        reader.join(timeout=10)
        os.close(master)
    assert proc.returncode == 0
    return proc.stdout.decode(), b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("name", sorted(RUNS))
def test_bar_on_a_terminal(name):
    out, terminal = run_with_tty_stderr(RUNS[name])
    assert re.search(rf"{name} bench: +\d+%\|.*\| \d+/\d+ \[", terminal)
    assert terminal.rstrip(" ").endswith("\r")              # erased when done
    assert "bench:" not in out and "\r" not in out          # results stay clean


@pytest.mark.parametrize("name", sorted(RUNS))
def test_no_bar_with_json(name):
    out, terminal = run_with_tty_stderr(RUNS[name] + ["--json"])
    assert terminal == ""
    assert out.startswith("{")


def test_no_bar_when_stderr_is_not_a_terminal():
    proc = subprocess.run(TRACESIM + RUNS["skb"], cwd=ROOT, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)
    assert proc.returncode == 0 and proc.stderr == ""
    assert "off_again/off = " in proc.stdout
