"""Errno parity with a 6.18 tracefs for operations users try on it (issue #13, item 7).

* unlink, rename, link, symlink, mknod: tracefs directories have none of these inode
  operations, so the VFS says EPERM (vfs_unlink & co.); creating a file is EACCES
  (lookup_open without ->create); unlink of a directory is EISDIR (may_delete).
* a name longer than NAME_MAX (255 bytes) is ENAMETOOLONG in tracefs directories
  (simple_lookup), also for ``mkdir instances/<name>``; eventfs's lookup just finds nothing.
* ``truncate -s 0 trace`` is accepted and changes nothing: tracefs_setattr is simple_setattr on
  a size-0 inode, and only an open with O_TRUNC (``: > trace``) clears the buffer
  (tracing_open).
* ``uprobe_events`` is absent (the model runs no user programs): reading it is ENOENT,
  creating it EACCES, as for any name the tracefs root lacks.
* ``set_event_pid``: trace_pid_write's words (kstrtoul base 0: ``0x10`` is 16, ``010`` is 8,
  ``+5`` is 5), a NUL byte ends a word.
"""
from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest
from tracesim.tracefs.errors import FsError

from tests.fuse_helpers import mounted, need_fuse

LONG = "a" * 256
PID_INPUTS = [                       # (bytes written with printf, list read back or errno)
    ("0x10", "16\n"), ("010", "8\n"), ("+5", "5\n"), ("1\\0002", "1\n2\n"), ("\\0", ""),
    (" 7 \\0 9", "7\n9\n"), ("0x", errno.EINVAL), ("-1", errno.EINVAL), ("1x", errno.EINVAL),
    ("0" * 130, errno.EINVAL),
]


# -- through a real mount, with the shell ----------------------------------------------------------
@pytest.fixture(scope="module")
def mnt(tmp_path_factory) -> Iterator[Path]:
    need_fuse(tmp_path_factory.getbasetemp())
    with mounted(tmp_path_factory.mktemp("errno")) as path:
        yield path


def sh(script: str, mnt: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=mnt, capture_output=True, text=True,
                          timeout=30)


def oserror(call, *args) -> int:
    try:
        call(*args)
    except OSError as err:
        return err.errno
    return 0


@pytest.mark.fuse
def test_changing_the_namespace_is_eperm(mnt):
    os.makedirs(mnt / "instances" / "keep", exist_ok=True)
    for path in ("trace", "instances/keep/trace", "events/skb/kfree_skb/enable"):
        assert oserror(os.unlink, mnt / path) == errno.EPERM, path
        assert oserror(os.rename, mnt / path, mnt / "renamed") == errno.EPERM, path
        assert oserror(os.link, mnt / path, mnt / "hardlink") == errno.EPERM, path
    assert oserror(os.rename, mnt / "instances/keep", mnt / "instances/moved") == errno.EPERM
    assert oserror(os.symlink, "trace", mnt / "symlink") == errno.EPERM
    assert oserror(os.mkfifo, mnt / "fifo") == errno.EPERM
    assert oserror(os.unlink, mnt / "per_cpu") == errno.EISDIR
    assert oserror(os.unlink, mnt / "nosuch") == errno.ENOENT
    assert oserror(os.symlink, "x", mnt / "trace") == errno.EEXIST
    done = sh("rm -f trace; mv trace_marker x; ln -s trace y; touch newfile", mnt)
    assert done.stderr.count("Operation not permitted") == 3, done.stderr
    assert "touch: cannot touch 'newfile': Permission denied" in done.stderr
    assert "trace" in os.listdir(mnt) and "keep" in os.listdir(mnt / "instances")
    os.rmdir(mnt / "instances" / "keep")


@pytest.mark.fuse
def test_ioctl_is_enotty(mnt):
    fd = os.open(mnt / "trace", os.O_RDONLY)
    try:
        assert oserror(fcntl.ioctl, fd, termios.TCGETS, bytes(64)) == errno.ENOTTY
    finally:
        os.close(fd)


@pytest.mark.fuse
def test_names_longer_than_name_max(mnt):
    assert oserror(os.mkdir, mnt / "instances" / LONG) == errno.ENAMETOOLONG
    assert LONG not in os.listdir(mnt / "instances")
    assert oserror(os.stat, mnt / "instances" / LONG) == errno.ENAMETOOLONG
    assert oserror(os.stat, mnt / LONG) == errno.ENAMETOOLONG
    assert oserror(os.stat, mnt / "events" / LONG) == errno.ENOENT   # eventfs
    os.mkdir(mnt / "instances" / LONG[:255])                         # NAME_MAX itself is fine
    assert (mnt / "instances" / LONG[:255] / "tracing_on").read_text() == "1\n"
    os.rmdir(mnt / "instances" / LONG[:255])


@pytest.mark.fuse
def test_truncate_changes_nothing_but_o_trunc_clears(mnt):
    sh("echo > trace; echo kept > trace_marker", mnt)
    done = sh("truncate -s 0 trace && truncate -s 0 set_event && cat trace", mnt)
    assert done.returncode == 0, done.stderr
    assert "tracing_mark_write: kept" in done.stdout
    assert "tracing_mark_write" not in sh(": > trace; cat trace", mnt).stdout


@pytest.mark.fuse
def test_uprobe_events_is_absent(mnt):
    assert not (mnt / "uprobe_events").exists() and not (mnt / "uprobe_profile").exists()
    done = sh("echo 'p /bin/true:0x10' >> uprobe_events", mnt)
    assert done.returncode == 1 and "Permission denied" in done.stderr
    assert not (mnt / "uprobe_events").exists()


@pytest.mark.fuse
@pytest.mark.parametrize("name", ["set_event_pid", "set_event_notrace_pid"])
@pytest.mark.parametrize(("data", "want"), PID_INPUTS, ids=[d for d, _ in PID_INPUTS])
def test_pid_list_input(mnt, name, data, want):
    sh(f"echo > {name}", mnt)
    done = sh(f"printf -- '{data}' > {name}", mnt)
    if isinstance(want, int):
        assert done.returncode == 1 and os.strerror(want) in done.stderr
        assert (mnt / name).read_text() == ""
    else:
        assert done.returncode == 0, done.stderr
        assert (mnt / name).read_text() == want
    sh(f"echo > {name}", mnt)


# -- in process --------------------------------------------------------------------------------------
@pytest.fixture
def tree():
    from tracesim.tracefs.system import System
    system = System.boot(cpus=2, seed=1, clock="virtual")
    yield system.tree
    system.shutdown()


def fserrno(call, *args, **kwargs) -> int:
    try:
        call(*args, **kwargs)
    except FsError as err:
        return err.errno
    return 0


def test_tree_namespace_errnos(tree):
    assert fserrno(tree.unlink, "/trace") == errno.EPERM
    assert fserrno(tree.unlink, "/per_cpu") == errno.EISDIR
    assert fserrno(tree.unlink, "/nosuch") == errno.ENOENT
    assert fserrno(tree.rename, "/trace", "/x") == errno.EPERM
    assert fserrno(tree.rename, "/nosuch", "/x") == errno.ENOENT
    assert fserrno(tree.link, "/x") == errno.EPERM
    assert fserrno(tree.link, "/trace") == errno.EEXIST
    assert fserrno(tree.create, "/newfile") == errno.EACCES
    assert fserrno(tree.mkdir, "/instances/" + LONG) == errno.ENAMETOOLONG
    assert fserrno(tree.getattr, "/instances/" + LONG) == errno.ENAMETOOLONG
    assert fserrno(tree.getattr, "/events/" + LONG) == errno.ENOENT
    assert fserrno(tree.create, "/" + LONG) == errno.ENAMETOOLONG


def test_tree_truncate_keeps_the_buffer(tree):
    tree.echo("/trace_marker", "kept")
    tree.truncate("/trace")
    assert "tracing_mark_write: kept" in tree.read_text("/trace")
    assert fserrno(tree.truncate, "/per_cpu") == errno.EISDIR
    tree.echo("/trace", "")
    assert "tracing_mark_write" not in tree.read_text("/trace")


@pytest.mark.parametrize("line", ["p /a:1", "p:up/ev /opt/uptest/uptest:0x1126"])
def test_uprobe_definitions_in_dynamic_events_are_einval(tree, line):
    """No kind takes ``PATH:OFFSET`` (the kprobe parser cancels it): EINVAL, nothing logged."""
    assert fserrno(tree.echo, "/dynamic_events", line, append=True) == errno.EINVAL
    assert tree.read_text("/error_log") == ""
    assert fserrno(tree.read_text, "/uprobe_events") == errno.ENOENT


@pytest.mark.parametrize(("data", "want"), PID_INPUTS, ids=[d for d, _ in PID_INPUTS])
def test_tree_pid_list_input(tree, data, want):
    raw = data.replace("\\0", "\0")
    got = fserrno(tree.echo, "/set_event_pid", raw, newline=False)
    if isinstance(want, int):
        assert got == want
        assert tree.read_text("/set_event_pid") == ""
    else:
        assert got == 0
        assert tree.read_text("/set_event_pid") == want
