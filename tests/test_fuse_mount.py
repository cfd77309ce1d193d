"""``tracesim mount`` / ``umount``: background and foreground mounts, signals, one-line errors."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import time

import pytest
from tracesim.tools import cmd_mount
from tracesim.tools.ctl_socket import socket_path, state_path

from tests.fuse_helpers import ROOT, TRACESIM, need_fuse, tracesim

pytestmark = pytest.mark.fuse


def wait_unmounted(path, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while os.path.ismount(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not os.path.ismount(path)


@pytest.fixture
def fuse_ok(tmp_path_factory):
    need_fuse(tmp_path_factory.getbasetemp())


def test_background_mount_is_ready_on_return_and_umount(fuse_ok, tmp_path):
    mnt = tmp_path / "t"
    mnt.mkdir()
    done = tracesim("mount", str(mnt), "--cpus", "4", "--clock", "virtual")
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""
    assert os.path.ismount(mnt)
    assert sorted(os.listdir(mnt / "per_cpu")) == ["cpu0", "cpu1", "cpu2", "cpu3"]
    assert socket_path(str(mnt)).exists()
    assert tracesim("umount", str(mnt)).returncode == 0
    assert wait_unmounted(mnt)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_unmount_cleanly(fuse_ok, tmp_path, sig):
    mnt = tmp_path / "t"
    mnt.mkdir()
    tracesim("mount", str(mnt), "--workload", "udp-small")
    pid = int(state_path(str(mnt), "pid").read_text())
    os.kill(pid, sig)
    assert wait_unmounted(mnt)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the mount process did not exit")
    assert not socket_path(str(mnt)).exists()


def test_foreground_mount_and_ctrl_c(fuse_ok, tmp_path):
    mnt = tmp_path / "t"
    mnt.mkdir()
    proc = subprocess.Popen(TRACESIM + ["mount", str(mnt), "--foreground", "--clock", "virtual"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "no 'mounted on' line from the foreground mount"
        assert proc.stdout.readline() == f"mounted on {mnt}\n"
        assert (mnt / "tracing_on").read_text() == "1\n"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                subprocess.run(["fusermount", "-u", "-z", str(mnt)], capture_output=True)
    assert wait_unmounted(mnt)


def test_busy_and_nonempty_and_not_mounted_say_one_line(fuse_ok, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("")
    done = tracesim("mount", str(full), check=False)
    assert done.returncode == 1
    assert done.stderr == f"tracesim mount: {full} is busy: the directory is not empty\n"
    done = tracesim("umount", str(full), check=False)
    assert done.returncode == 1
    assert done.stderr == f"tracesim umount: {full} is not a mount point\n"


def test_missing_dev_fuse_and_libfuse_say_one_line(tmp_path, monkeypatch, capsys):
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: False if p == "/dev/fuse" else real_exists(p))
    assert cmd_mount.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/dev/fuse is missing" in err
    monkeypatch.setattr(os.path, "exists", real_exists)
    if not real_exists("/dev/fuse"):
        pytest.skip("/dev/fuse is missing here: the libfuse check comes after it")
    monkeypatch.setattr(cmd_mount.ctypes.util, "find_library", lambda name: None)
    assert cmd_mount.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == "tracesim mount: libfuse is missing: install the Debian package 'libfuse2'\n"


def test_sigterm_with_a_blocked_reader_still_ends_the_mount(fuse_ok, tmp_path):
    mnt = tmp_path / "t"
    mnt.mkdir()
    tracesim("mount", str(mnt), "--clock", "virtual")
    reader = subprocess.Popen(["cat", str(mnt / "trace_pipe")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        assert reader.poll() is None                 # blocked in trace_pipe
        os.kill(int(state_path(str(mnt), "pid").read_text()), signal.SIGTERM)
        assert wait_unmounted(mnt)
        assert reader.wait(timeout=10) != 0
    finally:
        if reader.poll() is None:
            reader.kill()
