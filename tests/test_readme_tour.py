"""README's "A tour of the mount" runs as written, top to bottom, and prints what it shows.

The tour is the first fenced block under the ``## A tour of the mount`` heading: lines starting
with ``$ `` are commands, the lines after one are what it prints. The commands run in one
``bash -e`` (a fresh shell: HOME is a temporary directory, ``tracesim`` on the PATH) against a
real FUSE mount; the one change is the mountpoint, ``/tmp/tracing`` made unique to this run so
that parallel runs on one machine cannot meet. Each shown output line must appear, in order,
in that command's output, with numbers and hashed addresses (timestamps, ``%p`` values) free;
a shown line with ``...`` stands for a selection: its other words must all be printed.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fuse_helpers import need_fuse

ROOT = Path(__file__).resolve().parent.parent
HEADING = "## A tour of the mount"
MOUNTPOINT = "/tmp/tracing"
MARK = "@@tracesim-tour-command@@"


def tour() -> list[tuple[str, list[str]]]:
    """(command, the lines shown after it) for each ``$`` line of the tour's fenced block."""
    text = (ROOT / "README.md").read_text()
    assert HEADING in text, f"README.md has no '{HEADING}' section"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    block = re.search(r"^```[a-z]*\n(.*?)^```$", section, re.S | re.M)
    assert block, f"no fenced block under '{HEADING}'"
    steps: list[tuple[str, list[str]]] = []
    for line in block.group(1).splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"output before the first command: {line!r}"
            steps[-1][1].append(line)
    return steps


def normal(line: str) -> str:
    """A line with the parts that differ run to run made alike."""
    line = re.sub(r"\bline \d+: ", "", line)        # bash -c names the script line; a prompt doesn't
    line = re.sub(r"\b[0-9a-f]{8,}\b", "H", line)   # hashed pointers
    line = re.sub(r"\d+", "0", line)                 # timestamps, ids
    return " ".join(line.split())


def shown_in(expected: list[str], printed: list[str]) -> str | None:
    """Why ``printed`` does not show ``expected`` in order, or None."""
    got = [normal(p) for p in printed]
    words = {w for p in printed for w in p.split()}
    at = 0
    for want in expected:
        if "..." in want:                            # a selection: its words are there
            missing = [w for w in want.split() if w != "..." and w not in words]
            if missing:
                return f"missing {missing} (from {want!r})"
            continue
        n = normal(want)
        if not n:
            continue
        while at < len(got) and got[at] != n:
            at += 1
        if at == len(got):
            return f"line not printed (in order): {want!r}"
        at += 1
    return None


def tracesim_bin(tmp_path: Path) -> Path:
    """The directory to put first on PATH: the installed ``tracesim`` of this interpreter."""
    here = Path(sys.executable).parent
    if (here / "tracesim").exists():
        return here
    shim = tmp_path / "bin"                          # running from a tree without the script
    shim.mkdir()
    (shim / "tracesim").write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" '
                                   f'-m tracesim.tools.cli "$@"\n')
    (shim / "tracesim").chmod(0o755)
    return shim


def test_the_tour_is_found():
    steps = tour()
    commands = [c for c, _ in steps]
    assert commands[0].startswith("mkdir -p " + MOUNTPOINT)        # made before it is mounted
    assert commands[1].startswith("tracesim mount " + MOUNTPOINT)
    assert commands[-1].endswith("tracesim umount " + MOUNTPOINT)   # and left unmounted


def test_the_tour_runs_as_written(tmp_path):
    need_fuse(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    mnt = str(tmp_path / "tracing")
    steps = tour()
    script = ["set -e", "exec 2>&1", f"cd {home}"]
    for i, (command, _) in enumerate(steps):
        script += [f"echo '{MARK} {i}'", command.replace(MOUNTPOINT, mnt)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), PATH=f"{tracesim_bin(tmp_path)}:{env.get('PATH', '/usr/bin:/bin')}")
    try:
        done = subprocess.run(["bash", "-e", "-c", "\n".join(script)], cwd=home, env=env,
                              capture_output=True, text=True, timeout=180,
                              stdin=subprocess.DEVNULL)
    finally:
        if os.path.ismount(mnt):                     # a failed step must not leave it mounted
            subprocess.run([sys.executable, "-m", "tracesim.tools.cli", "umount", mnt], cwd=ROOT,
                           capture_output=True, timeout=60)
    parts = re.split(rf"^{MARK} (\d+)\n", done.stdout, flags=re.M)
    outputs = {int(parts[i]): parts[i + 1].splitlines() for i in range(1, len(parts), 2)}
    last = max(outputs, default=-1)
    assert done.returncode == 0 and last == len(steps) - 1, (
        f"the tour stopped at step {last}: $ {steps[last][0] if last >= 0 else ''}\n"
        f"{done.stdout[-2000:]}")
    for i, (command, expected) in enumerate(steps):
        why = shown_in(expected, outputs[i])
        assert why is None, f"$ {command}\n{why}\nprinted:\n" + "\n".join(outputs[i])
    assert not os.path.ismount(mnt)
