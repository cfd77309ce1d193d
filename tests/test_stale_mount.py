"""After ``kill -9`` of the mount process, tracesim's own commands clear the dead mount.

A real mount through the CLI, its process killed with SIGKILL: the directory then answers every
stat with ENOTCONN. ``tracesim umount DIR`` clears it; ``tracesim mount DIR`` clears it by itself
when the pid file says the dead mount was its own, and otherwise names the command to run.
"""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.fuse_helpers import ROOT, TRACESIM, need_fuse


def cli_env(runtime: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_RUNTIME_DIR"] = str(runtime)
    return env


def tracesim(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(TRACESIM + list(args), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def stat_errno(path: Path) -> int:
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno
    return 0


@pytest.fixture(params=["mnt", "dir with space"])
def setup(tmp_path: Path, request):
    """A state folder and an empty mountpoint; the second name is written ``\\040`` in
    /proc/self/mountinfo, which the dead-mount check must decode."""
    need_fuse(tmp_path)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    mnt = tmp_path / request.param
    mnt.mkdir()
    env = cli_env(runtime)
    yield env, mnt
    for _ in range(3):       # whatever the test left: a live or a dead mount
        if stat_errno(mnt) != errno.ENOTCONN and not os.path.ismount(mnt):
            break
        subprocess.run(["fusermount", "-uz", str(mnt)], capture_output=True, timeout=30)


def pid_file(env: dict[str, str]) -> Path:
    (path,) = (Path(env["XDG_RUNTIME_DIR"]) / "tracesim").glob("*.pid")
    return path


def mount_then_kill(env: dict[str, str], mnt: Path) -> None:
    done = tracesim(env, "mount", str(mnt), "--clock", "virtual")
    assert done.returncode == 0, done.stderr
    assert (mnt / "trace").exists()
    os.kill(int(pid_file(env).read_text()), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while stat_errno(mnt) != errno.ENOTCONN:
        assert time.monotonic() < deadline, "the mount stayed alive after SIGKILL"
        time.sleep(0.05)


def assert_works(env: dict[str, str], mnt: Path) -> None:
    done = tracesim(env, "mount", str(mnt), "--clock", "virtual")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert (mnt / "trace").exists()
    assert tracesim(env, "ctl", str(mnt), "dmesg").returncode == 0
    assert tracesim(env, "umount", str(mnt)).returncode == 0
    assert not os.path.ismount(mnt)


def test_umount_clears_a_dead_mount(setup):
    env, mnt = setup
    mount_then_kill(env, mnt)
    done = tracesim(env, "umount", str(mnt))
    assert done.returncode == 0, done.stderr
    assert stat_errno(mnt) == 0 and not os.path.ismount(mnt)
    assert_works(env, mnt)


def test_mount_clears_its_own_dead_mount(setup):
    env, mnt = setup
    mount_then_kill(env, mnt)
    assert_works(env, mnt)


def test_mount_says_what_to_run_when_the_dead_mount_is_not_provably_its_own(setup):
    env, mnt = setup
    mount_then_kill(env, mnt)
    pid_file(env).unlink()          # nothing says which process served it
    done = tracesim(env, "mount", str(mnt), "--clock", "virtual")
    assert done.returncode == 1
    assert done.stderr == (f"tracesim mount: {mnt}: a dead FUSE mount is left there (its "
                           f"process ended); clear it with: tracesim umount {mnt}\n")
    assert stat_errno(mnt) == errno.ENOTCONN          # left alone
    assert tracesim(env, "umount", str(mnt)).returncode == 0
    assert_works(env, mnt)


def test_umount_of_a_plain_directory_still_says_not_a_mount_point(setup):
    env, mnt = setup
    done = tracesim(env, "umount", str(mnt))
    assert done.returncode == 1
    assert done.stderr == f"tracesim umount: {mnt} is not a mount point\n"
