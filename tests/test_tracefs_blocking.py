"""A reader blocked on a consuming file never stalls anything else (issue #13, item 2).

On the kernel, ``cat instances/foo/trace_pipe`` waiting for data holds no lock that ``ls``,
``rmdir`` (EBUSY at once for the reader's own instance: the open file holds a reference),
``umount`` (EBUSY at once: a file is open) or writes to other files need. Through FUSE the
mount once held libfuse's path lock for the whole blocked read, so ``rmdir`` hung in D state
and every later ``ls instances/`` queued behind it.

Every blocking file is checked, at the top level and in an instance, with real processes
through a real mount, and in process on the tree API. The bounds (5 s) are liveness checks:
a stalled operation never answers at all.
"""
from __future__ import annotations

import errno
import itertools
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tracesim.tracefs.errors import FsError

from tests.fuse_helpers import mounted, need_fuse

ANSWER_S = 5.0
# The consuming files of one trace array (the top level has no trace_pipe_raw of its own).
PIPES = ("trace_pipe", "per_cpu/cpu0/trace_pipe", "per_cpu/cpu1/trace_pipe",
         "per_cpu/cpu0/trace_pipe_raw", "per_cpu/cpu1/trace_pipe_raw")
CASES = [(False, p) for p in PIPES] + [(True, p) for p in PIPES]
IDS = [("inst-" if inst else "top-") + p.replace("/", "-") for inst, p in CASES]
_names = itertools.count()


def _instance_names() -> tuple[str, str]:
    n = next(_names)
    return f"busy{os.getpid()}x{n}", f"idle{os.getpid()}x{n}"


# -- through a real mount --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnt(tmp_path_factory) -> Iterator[Path]:
    need_fuse(tmp_path_factory.getbasetemp())
    with mounted(tmp_path_factory.mktemp("blocking")) as path:
        yield path


def _blocked_in_fuse(pid: int) -> bool:
    """The process sleeps in the kernel waiting for the FUSE daemon's answer (its read)."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return "request_wait_answer" in f.read()
    except OSError:
        return False


@pytest.fixture
def reader() -> Iterator:
    """start(path) runs ``cat path`` and returns once it is blocked in its read."""
    started: list[subprocess.Popen] = []

    def start(path: Path) -> subprocess.Popen:
        proc = subprocess.Popen(["cat", str(path)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        started.append(proc)
        deadline = time.monotonic() + ANSWER_S
        while not _blocked_in_fuse(proc.pid):
            assert proc.poll() is None, f"cat {path} ended: {proc.stderr.read()!r}"
            assert time.monotonic() < deadline, f"cat {path} never blocked"
            time.sleep(0.02)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()


def _answers(argv: list[str], readers: list[subprocess.Popen], what: str,
             cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run argv; it must finish within ANSWER_S while the readers stay blocked. A stalled
    operation sleeps uninterruptibly on the daemon, so the readers are killed to free it
    before failing."""
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        out, err = proc.communicate(timeout=ANSWER_S)
    except subprocess.TimeoutExpired:
        for r in readers:
            r.kill()
        proc.kill()
        proc.communicate(timeout=60)
        pytest.fail(f"{what} did not answer within {ANSWER_S} s while a reader was blocked")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _sh(script: str, readers: list[subprocess.Popen], what: str,
        cwd: Path) -> subprocess.CompletedProcess:
    return _answers(["bash", "-c", script], readers, what, cwd)


@pytest.mark.fuse
@pytest.mark.parametrize(("in_instance", "pipe"), CASES, ids=IDS)
def test_blocked_reader_leaves_the_mount_answering(mnt, reader, in_instance, pipe):
    busy, idle = _instance_names()
    os.mkdir(mnt / "instances" / busy)
    os.mkdir(mnt / "instances" / idle)
    prefix = f"instances/{busy}/" if in_instance else ""
    cat = reader(mnt / (prefix + pipe))
    readers = [cat]

    listing = _answers(["ls", str(mnt / "instances")], readers, "ls instances/")
    assert listing.returncode == 0 and busy in listing.stdout.split()
    assert _answers(["ls", str(mnt / prefix.rstrip("/") if prefix else mnt)], readers,
                    "ls of the reader's own directory").returncode == 0

    # Writes to other files of the same trace array and of the top level answer.
    for script in (f"echo 0 > {prefix}tracing_on", f"echo 1 > {prefix}tracing_on",
                   f"echo 64 > {prefix}buffer_size_kb", f"echo skb:kfree_skb > {prefix}set_event",
                   f"echo > {prefix}set_event", "echo 1 > tracing_on"):
        done = _sh(script, readers, script, mnt)
        assert done.returncode == 0, (script, done.stderr)

    # rmdir: another instance goes; the reader's own instance is busy, at once.
    gone = _answers(["rmdir", str(mnt / "instances" / idle)], readers, "rmdir of an idle instance")
    assert gone.returncode == 0, gone.stderr
    refused = _answers(["rmdir", str(mnt / "instances" / busy)], readers,
                       "rmdir of the reader's instance")
    if in_instance:
        assert refused.returncode != 0 and "Device or resource busy" in refused.stderr
    else:
        assert refused.returncode == 0, refused.stderr

    # umount with a file open: refused at once (EBUSY), and the mount keeps serving.
    umount = shutil.which("fusermount") or shutil.which("fusermount3")
    if umount:
        done = _answers([umount, "-u", str(mnt)], readers, "fusermount -u")
        assert done.returncode != 0 and "busy" in done.stderr.lower()
    assert _answers(["cat", str(mnt / "tracing_on")], readers, "cat tracing_on").stdout == "1\n"

    assert cat.poll() is None, "the reader should still be waiting for data"
    cat.send_signal(signal.SIGINT)                # Ctrl-C ends the read
    cat.wait(timeout=ANSWER_S)
    if in_instance:
        os.rmdir(mnt / "instances" / busy)       # no reference left once it is closed
        assert busy not in os.listdir(mnt / "instances")


@pytest.mark.fuse
def test_sigterm_ends_the_daemon_while_a_reader_is_blocked(tmp_path_factory, reader):
    """SIGTERM to the mount process ends it (the blocked read sees the session end)."""
    need_fuse(tmp_path_factory.getbasetemp())
    with mounted(tmp_path_factory.mktemp("blocking-term")) as path:
        os.mkdir(path / "instances" / "held")
        cats = [reader(path / "instances/held/trace_pipe"),
                reader(path / "per_cpu/cpu0/trace_pipe_raw")]
        daemon = _mount_process(path)
        os.kill(daemon, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(daemon):
            if time.monotonic() > deadline:
                for cat in cats:
                    cat.kill()
                pytest.fail("the mount process ignored SIGTERM while readers were blocked")
            time.sleep(0.05)
        for cat in cats:
            assert cat.wait(timeout=ANSWER_S) != 0     # the read failed: the session is gone


def _mount_process(path: Path) -> int:
    """The pid of the ``tracesim mount`` process serving ``path``."""
    want = str(path)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if "mount" in args and any(os.path.realpath(a) == os.path.realpath(want)
                                   for a in args if a.startswith("/")):
            return int(entry)
    pytest.fail(f"no mount process found for {path}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# -- in process, on the tree API ---------------------------------------------------------------
@pytest.fixture
def tree():
    from tracesim.tracefs.system import System
    system = System.boot(cpus=2, seed=1, clock="virtual")
    yield system.tree
    system.shutdown()


def _in_time(func, what: str, cancel) -> object:
    """Run func on a thread; it must finish within ANSWER_S (else the reader is cancelled)."""
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["value"] = func()
        except BaseException as exc:      # noqa: BLE001 - handed to the test thread
            result["error"] = exc
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(ANSWER_S)
    if worker.is_alive():
        cancel()
        pytest.fail(f"{what} did not answer within {ANSWER_S} s while a reader was blocked")
    if "error" in result:
        raise result["error"]           # type: ignore[misc]
    return result.get("value")


@pytest.mark.parametrize(("in_instance", "pipe"), CASES, ids=IDS)
def test_tree_blocked_reader_leaves_the_tree_answering(tree, in_instance, pipe):
    tree.mkdir("/instances/busy")
    tree.mkdir("/instances/idle")
    prefix = "/instances/busy/" if in_instance else "/"
    handle = tree.open(prefix + pipe, os.O_RDONLY)
    outcome: dict[str, object] = {}

    def read() -> None:
        try:
            outcome["data"] = handle.read(4096, 0)
        except FsError as err:
            outcome["errno"] = err.errno
    blocked = threading.Thread(target=read, daemon=True)
    blocked.start()
    cancel = handle.cancel

    assert "busy" in _in_time(lambda: tree.readdir("/instances"), "readdir", cancel)
    _in_time(lambda: tree.echo(prefix + "tracing_on", "0"), "echo 0 > tracing_on", cancel)
    _in_time(lambda: tree.echo(prefix + "tracing_on", "1"), "echo 1 > tracing_on", cancel)
    _in_time(lambda: tree.echo(prefix + "set_event", "skb:kfree_skb"), "set_event", cancel)
    _in_time(lambda: tree.echo("/buffer_size_kb", "64"), "buffer_size_kb", cancel)
    _in_time(lambda: tree.rmdir("/instances/idle"), "rmdir idle", cancel)

    def rmdir_busy() -> int:
        try:
            tree.rmdir("/instances/busy")
            return 0
        except FsError as err:
            return err.errno
    got = _in_time(rmdir_busy, "rmdir busy", cancel)
    assert got == (errno.EBUSY if in_instance else 0)

    assert blocked.is_alive(), f"the reader returned without data: {outcome}"
    handle.cancel()
    blocked.join(ANSWER_S)
    assert not blocked.is_alive() and outcome == {"errno": errno.EINTR}
    handle.release()
    if in_instance:
        tree.rmdir("/instances/busy")
        assert "busy" not in tree.readdir("/instances")
