"""Hostile writes to every writable file of the tree: the daemon keeps answering, no traceback
reaches anyone, and a write that fails changes nothing.

Each writable file (found by walking the tree and reading the mode bits, including an
instance's files and every event's ``enable``/``filter``/``trigger``) gets a set of hostile
payloads: empty, 1 MiB, random binary, invalid UTF-8, NUL bytes, negative and overflowing
numbers, very long lines, only blanks, a valid prefix glued to garbage. Every write goes
through ``>>`` (O_APPEND: the open itself changes nothing, unlike ``>``) as one ``write()``
followed by ``close()`` (one test also writes through ``>``, judged against a bare
``: > FILE``). Then:

* the operation returns in bounded time (a watchdog fails the test instead of hanging it);
* it succeeds, or fails with an errno: in process only ``OSError`` with a positive errno comes
  out (fusepy turns anything else into a logged traceback, or aborts the mount for a bad
  errno), through the mount the daemon's log holds no traceback;
* when it fails, a snapshot of every readable file is the same after as before, except for
  what moves on its own or by design (``STREAMS``, ``MOVING_LINES``, ``may_change``: the
  error log and a bad filter's own text). A write that succeeds may change state: the next
  write is judged against the state it left.

In process the short run (``make test``) covers every file with a few payloads; through a real
FUSE mount a sample of files, written by the test's own syscalls and by ``cat`` processes.
``TRACESIM_FUZZ=long`` (``make fuzz``) runs every payload on every file both ways, plus random
ones.
"""
from __future__ import annotations

import errno
import os
import random
import re
import stat
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from tracesim.tools.ctl_socket import request, state_path
from tracesim.tracefs.system import System

from tests.conftest import FUZZ_LONG
from tests.fuse_helpers import mounted, need_fuse

WATCHDOG_SECONDS = 60          # one write or one snapshot; generous for a loaded 2-core machine
_rng = random.Random(13)

PAYLOADS: dict[str, bytes] = {
    "empty": b"",
    "huge": b"1" * (1 << 20),
    "huge-words": b"ab " * 350_000,
    "binary": bytes(_rng.randrange(256) for _ in range(512)),
    "bad-utf8": b"\xff\xfe\xc3\x28 \xa0\xa1\xed\xa0\x80\n",
    "nul": b"1\x00\x00garbage\x00",
    "negative": b"-1",
    "negative-nl": b"-1\n",
    "u64-overflow": b"18446744073709551616",
    "long-overflow": b"99999999999999999999999\n",
    "long-line": b"x" * 8192 + b"\n",
    "many-lines": b"zz\n" * 4000,
    "blanks": b" \t \n\n \t",
    "prefix-garbage": b"1garbage\n",
    "prefix-space-garbage": b"0 \xffgarbage\n",
    "elf-magic": b"\x7fELF" + bytes(60),
    "bpf-magic": b"bpf\0" + bytes(28),
}
SHORT = ("empty", "huge", "binary", "bad-utf8", "negative", "u64-overflow", "prefix-garbage")

# What the snapshots leave out or blank: consuming streams (a read changes them, and blocks),
# and the stats lines that follow the clock.
STREAMS = ("trace_pipe", "trace_pipe_raw", "snapshot_raw")   # consuming (raw) readers
# Text generated from tables no write can change, left out of the short run's snapshots (half
# their bytes); the long run reads them too.
GENERATED = ("README", "format", "id", "header_page", "header_event", "available_tracers",
             "available_filter_functions", "available_filter_functions_addrs", "timestamp_mode")
# Files whose successful writes add or remove files (event directories): the walk is redone.
DEFINE_EVENTS = ("kprobe_events", "dynamic_events")
MOVING_LINES = re.compile(rb"^(now ts|oldest event ts): .*$", re.M)

# -- the tree walk -----------------------------------------------------------------------------
def walk(tree) -> list[tuple[str, int]]:
    """(path, mode) of every file below the root."""
    out: list[tuple[str, int]] = []

    def visit(path: str) -> None:
        for name in tree.readdir(path or "/"):
            child = f"{path}/{name}"
            mode = tree.getattr(child).mode
            if stat.S_ISDIR(mode):
                visit(child)
            else:
                out.append((child, mode))
    visit("")
    return out


_EVENT_FILE = re.compile(r"^(.*/events/)([^/]+)/([^/]+)/[^/]+$")


def representative(paths: list[str]) -> list[str]:
    """The short run's share of the event directories: every file of the first event of each
    system (and of every kprobe event), per trace array; the long run (make fuzz) takes all.
    The model has hundreds of events whose files behave alike, and each failed write snapshots
    every readable file."""
    if FUZZ_LONG:
        return paths
    first: dict[tuple[str, str], str] = {}
    for path in sorted(paths):
        m = _EVENT_FILE.match(path)
        if m:
            first.setdefault((m[1], m[2]), m[3])
    return [path for path in paths
            if not (m := _EVENT_FILE.match(path)) or m[2] == "kprobes" or first[(m[1], m[2])] == m[3]]


def writable(files: list[tuple[str, int]]) -> list[str]:
    return representative([path for path, mode in files if mode & 0o222])


def readable(files: list[tuple[str, int]]) -> list[str]:
    skip = STREAMS if FUZZ_LONG else STREAMS + GENERATED
    return representative([path for path, mode in files
                           if mode & 0o444 and path.rsplit("/", 1)[-1] not in skip])


def may_change(path: str) -> Callable[[str], bool]:
    """Which files a failed write to ``path`` may still change, as the kernel does: a bad
    filter reads back with the error (append_filter_err) and every failed command goes to the
    array's ``error_log`` (tracing_log_err); a subsystem filter does that for all its events."""
    head, _, name = path.rpartition("/")
    parts = path.split("/")
    prefix = "/".join(parts[:3]) if parts[1] == "instances" else ""     # the trace array

    def allowed(other: str) -> bool:
        if other == f"{prefix}/error_log":
            return True
        if name == "filter" and other.endswith("/filter"):
            return other == path or other.startswith(head + "/")
        return False
    return allowed


def snapshot(read: Callable[[str], bytes], paths: list[str]) -> dict[str, bytes]:
    return {path: MOVING_LINES.sub(rb"\1: -", read(path)) for path in paths}


def changed(before: dict[str, bytes], after: dict[str, bytes], path: str) -> dict[str, tuple]:
    allowed = may_change(path)
    return {p: (before.get(p), after.get(p)) for p in sorted(set(before) | set(after))
            if before.get(p) != after.get(p) and not allowed(p)}


def bounded(func: Callable[[], object], what: str, seconds: float = WATCHDOG_SECONDS):
    """Run ``func`` on a thread; fail (instead of hanging the suite) when it does not return."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = func()
        except BaseException as exc:  # handed back to the test thread below
            box["error"] = exc
    thread = threading.Thread(target=run, daemon=True, name=f"bounded {what}")
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{what}: no answer within {seconds} s"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")


# -- in process --------------------------------------------------------------------------------
@pytest.fixture
def system():
    s = System.boot(cpus=2, seed=1, clock="virtual")
    s.tree.mkdir("/instances/hostile")
    s.tree.echo("/kprobe_events", "p:hostile_probe __netif_receive_skb")   # a dynamic event's files too
    yield s
    s.shutdown()


def tree_write(tree, path: str, data: bytes) -> int | None:
    """``write(fd, data)`` then ``close`` on a ``>>`` open; the errno, or None on success.
    Anything but an OSError with a positive errno propagates (and fails the test)."""
    try:
        handle = tree.open(path, os.O_WRONLY | os.O_APPEND)
    except OSError as exc:
        return _errno_of(exc)
    failed = None
    try:
        try:
            handle.write(data, 0)
        except OSError as exc:
            failed = _errno_of(exc)
        try:
            handle.flush()
        except OSError as exc:
            failed = failed or _errno_of(exc)
    finally:
        handle.release()
    return failed


def _errno_of(exc: OSError) -> int:
    assert isinstance(exc.errno, int) and exc.errno > 0, f"OSError without a usable errno: {exc!r}"
    return exc.errno


def attack(view, write: Callable[[str, bytes], int | None], plan: list[tuple[str, str]], *,
           local: bool = False, payloads: dict[str, bytes] = PAYLOADS) -> list[str]:
    """Run ``plan`` ((file, payload name) pairs) with ``write``; returns the failed writes that
    changed state. ``view`` walks and reads the tree (in process, or a mount's files).

    By default the snapshot covers every readable file, and the state after one write is the
    state before the next (only these writes change it). ``local`` snapshots only the written
    file's directory and the top-level files, before and after each write: through a mount a
    whole snapshot costs about half a second on a loaded machine, too much per write."""
    problems: list[str] = []
    paths = readable(walk(view))
    state = None if local else bounded(lambda: snapshot(view.cat, paths), "first snapshot")
    for path, name in plan:
        scope = [p for p in paths if near(p, path)] if local else paths
        before = bounded(lambda s=scope: snapshot(view.cat, s), f"snapshot before {path}") \
            if local else state
        err = bounded(lambda p=path, d=payloads[name]: write(p, d), f"write {name} to {path}")
        if err is None and path.rsplit("/", 1)[-1] in DEFINE_EVENTS:
            paths = readable(walk(view))
        if local and err is None:
            continue
        after = bounded(lambda s=scope: snapshot(view.cat, s), f"snapshot after {name} > {path}")
        if err is not None:
            diff = changed(before, after, path)
            if diff:
                problems.append(f"{name} >> {path} failed ({errno.errorcode.get(err, err)}) but "
                                f"changed {list(diff)[:5]}")
        state = after
    return problems


def near(other: str, path: str) -> bool:
    """A file in ``path``'s directory, or at the top of the tree."""
    return other.rpartition("/")[0] in (path.rpartition("/")[0], "")


def full_plan(files: list[str], payloads: list[str]) -> list[tuple[str, str]]:
    return [(path, name) for path in files for name in payloads]


def sample_plan(files: list[str], payloads: list[str], count: int,
                seed: int) -> list[tuple[str, str]]:
    plan = full_plan(files, payloads)
    return plan if count >= len(plan) else random.Random(seed).sample(plan, count)


def test_every_writable_file_in_process(system):
    tree = system.tree
    targets = writable(walk(tree))
    assert any("/instances/hostile/" in p for p in targets)
    assert "/events/kprobes/hostile_probe/filter" in targets
    assert len(targets) > 150
    problems = attack(tree, lambda p, d: tree_write(tree, p, d), full_plan(targets, list(SHORT)))
    assert not problems, "\n".join(problems)


@pytest.mark.fuzz
@pytest.mark.skipif(not FUZZ_LONG, reason="long fuzz: TRACESIM_FUZZ=long (make fuzz)")
def test_every_writable_file_in_process_long(system):
    rng = random.Random(1313)
    payloads = dict(PAYLOADS)
    for k in range(8):
        payloads[f"random-{k}"] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 5000)))
    tree = system.tree
    problems = attack(tree, lambda p, d: tree_write(tree, p, d),
                      full_plan(writable(walk(tree)), list(payloads)), payloads=payloads)
    assert not problems, "\n".join(problems)


def test_truncating_writes_in_process(system):
    """``printf BAD > FILE``: the open's own truncation (``>`` clears set_event, the buffer,
    kprobe_events ...) may change state, the failed write must not add to it: the state after
    equals the state after a bare ``: > FILE``."""
    tree = system.tree
    files = walk(tree)
    present, paths = {p for p, _ in files}, readable(files)

    def truncate_write(path: str, data: bytes | None) -> int | None:
        handle = tree.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            if data is not None:
                handle.write(data, 0)
            handle.flush()
        except OSError as exc:
            return _errno_of(exc)
        finally:
            handle.release()
        return None

    problems = []
    for path in writable(files):
        for name in ("negative", "bad-utf8") if FUZZ_LONG else ("bad-utf8",):
            if path not in present:
                continue                       # gone with a kprobe_events truncation
            bounded(lambda p=path: truncate_write(p, None), f": > {path}")
            if path.rsplit("/", 1)[-1] in DEFINE_EVENTS:
                files = walk(tree)
                present, paths = {p for p, _ in files}, readable(files)
            before = snapshot(tree.cat, paths)
            err = bounded(lambda p=path, d=PAYLOADS[name]: truncate_write(p, d),
                          f"{name} > {path}")
            if err is not None:
                diff = changed(before, snapshot(tree.cat, paths), path)
                if diff:
                    problems.append(f"{name} > {path} failed but changed {list(diff)[:5]}")
    assert not problems, "\n".join(problems)


def test_read_only_files_refuse_writes_in_process(system):
    """Root may open a read-only file for writing; its write fails with EINVAL as vfs_write
    does for a file without a write operation, and changes nothing."""
    tree = system.tree
    files = walk(tree)
    targets = [path for path, mode in files if not mode & 0o222]
    assert "/trace_pipe" in targets and "/per_cpu/cpu1/stats" in targets
    paths = readable(files)
    before = snapshot(tree.cat, paths)
    for path in targets:
        for name in ("negative", "binary", "empty"):
            err = bounded(lambda p=path, d=PAYLOADS[name]: tree_write(tree, p, d),
                          f"write {name} to {path}")
            assert err == errno.EINVAL, (path, name, err)
    assert not changed(before, snapshot(tree.cat, paths), "/")


def test_hostile_instance_names_in_process(system):
    """mkdir/rmdir in ``instances/`` with hostile names: an errno or a working instance that
    rmdir removes again; the listing ends as it began."""
    tree = system.tree
    start = tree.readdir("/instances")
    for name in instance_names():
        path = "/instances/" + name.decode("utf-8", "surrogateescape")
        try:
            bounded(lambda p=path: tree.mkdir(p), f"mkdir {name[:40]!r}")
        except OSError as exc:
            _errno_of(exc)
            continue
        assert len(name) <= 255, "expected ENAMETOOLONG"
        assert tree.cat(path + "/tracing_on") == b"1\n"
        bounded(lambda p=path: tree.rmdir(p), f"rmdir {name[:40]!r}")
    assert tree.readdir("/instances") == start


def instance_names() -> list[bytes]:
    return [b"x" * 255, b"\xff\xfe", "caf\u00e9".encode(), b"new\nline", b" ", b"-1",
            b"a" * 300]


# -- through a FUSE mount ----------------------------------------------------------------------
@pytest.fixture
def mnt(tmp_path):
    need_fuse(tmp_path)
    with mounted(tmp_path / "mnt") as path:
        (path / "instances" / "hostile").mkdir()
        (path / "kprobe_events").write_text("p:hostile_probe __netif_receive_skb\n")
        yield path
        log = state_path(str(path), "log")
        text = log.read_text(errors="replace") if log.exists() else ""
        assert "Traceback" not in text and "Uncaught" not in text, text[-4000:]


class MountTree:
    """The walk's view of a mount: paths relative to its root, read with os calls."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def readdir(self, path: str) -> list[str]:
        return sorted(os.listdir(self.root / path.lstrip("/")))

    def getattr(self, path: str) -> _Mode:
        return _Mode(os.lstat(self.root / path.lstrip("/")).st_mode)

    def cat(self, path: str) -> bytes:
        fd = os.open(self.root / path.lstrip("/"), os.O_RDONLY | os.O_NONBLOCK)
        try:
            chunks = []
            while True:
                data = os.read(fd, 131072)
                if not data:
                    return b"".join(chunks)
                chunks.append(data)
        finally:
            os.close(fd)


class _Mode:
    def __init__(self, mode: int) -> None:
        self.mode = mode


def fuse_write(root: Path, path: str, data: bytes) -> int | None:
    """One ``write()`` then ``close()`` through the mount; the errno, or None on success."""
    try:
        fd = os.open(root / path.lstrip("/"), os.O_WRONLY | os.O_APPEND)
    except OSError as exc:
        return exc.errno
    failed = None
    try:
        os.write(fd, data)
    except OSError as exc:
        failed = exc.errno
    try:
        os.close(fd)
    except OSError as exc:
        failed = failed or exc.errno
    return failed


def cat_write(root: Path, path: str, data: bytes) -> int | None:
    """``cat >> FILE`` fed the payload on stdin: a real process, its writes as cat does them."""
    done = subprocess.run(["sh", "-c", 'exec cat >> "$1"', "sh", path.lstrip("/")], cwd=root,
                          input=data, capture_output=True, timeout=WATCHDOG_SECONDS)
    return None if done.returncode == 0 else -1


def attack_mount(root: Path, plan: list[tuple[str, str]], *, use_cat: bool) -> list[str]:
    """``attack`` through the mount: the test's own write()/close(), or ``cat >>`` processes;
    the control channel must still answer afterwards."""
    write = cat_write if use_cat else fuse_write
    problems = attack(MountTree(root), lambda p, d: write(root, p, d), plan, local=True)
    status, _ = request(str(root), ["dmesg"])
    assert status == 0
    return problems


@pytest.mark.fuse
def test_sample_through_the_mount(mnt):
    files = writable(walk(MountTree(mnt)))
    assert "/instances/hostile/set_event" in files
    problems = attack_mount(mnt, sample_plan(files, list(SHORT), 40, 7), use_cat=False)
    problems += attack_mount(mnt, sample_plan(files, list(SHORT), 8, 8), use_cat=True)
    assert not problems, "\n".join(problems)


@pytest.mark.fuse
def test_hostile_instance_names_through_the_mount(mnt):
    start = sorted(os.listdir(mnt / "instances"))
    for name in instance_names():
        path = os.path.join(os.fsencode(mnt), b"instances", name)
        try:
            bounded(lambda p=path: os.mkdir(p), f"mkdir {name[:40]!r}")
        except OSError:
            continue
        assert len(name) <= 255, "expected ENAMETOOLONG"
        assert (Path(os.fsdecode(path)) / "tracing_on").read_text() == "1\n"
        bounded(lambda p=path: os.rmdir(p), f"rmdir {name[:40]!r}")
    assert sorted(os.listdir(mnt / "instances")) == start


# Operations tracefs does not have, with the errno the kernel's VFS answers for them.
NAMESPACE_OPS: dict[str, tuple[Callable[[str], object], int]] = {
    "unlink": (os.unlink, errno.EPERM),
    "rename": (lambda p: os.rename(p, p + ".moved"), errno.EPERM),
    "link": (lambda p: os.link(p, p + ".hard"), errno.EPERM),
    "symlink": (lambda p: os.symlink("/etc/passwd", p + ".sym"), errno.EPERM),
    "mknod": (lambda p: os.mknod(p + ".fifo", 0o600 | stat.S_IFIFO), errno.EPERM),
    "create": (lambda p: os.close(os.open(p + ".new", os.O_CREAT | os.O_EXCL | os.O_WRONLY)),
               errno.EACCES),
    "setxattr": (lambda p: os.setxattr(p, "user.hostile", b"x"), errno.EOPNOTSUPP),
}
DIR_OPS: dict[str, tuple[Callable[[str], object], int]] = {
    "rmdir": (os.rmdir, errno.EPERM),
    "mkdir-inside": (lambda p: os.mkdir(os.path.join(p, "hostile-dir")), errno.EPERM),
}


def namespace_attack(root: Path, files: list[str], dirs: list[str]) -> list[str]:
    """Every operation tracefs lacks on ``files`` and ``dirs``: each must fail with the kernel's
    errno and change nothing (the directory listings included)."""
    view = MountTree(root)
    paths = readable(walk(view))
    before = snapshot(view.cat, paths), sorted(p for p, _ in walk(view))
    problems = []
    plan = [(f, op) for f in files for op in NAMESPACE_OPS.items()]
    plan += [(d, op) for d in dirs for op in DIR_OPS.items()]
    for path, (name, (func, want)) in plan:
        try:
            bounded(lambda f=func, p=str(root) + path: f(p), f"{name} {path}")
            got = None
        except OSError as exc:
            got = exc.errno
        if got != want:
            problems.append(f"{name} {path}: {errno.errorcode.get(got, got)}, "
                            f"want {errno.errorcode[want]}")
    after = snapshot(view.cat, paths), sorted(p for p, _ in walk(view))
    assert not changed(before[0], after[0], "/")
    assert before[1] == after[1]
    return problems


@pytest.mark.fuse
def test_namespace_operations_through_the_mount(mnt):
    files = ["/trace", "/set_event", "/instances/hostile/tracing_on", "/per_cpu/cpu0/stats",
             "/events/net/netif_receive_skb/filter", "/events/kprobes/hostile_probe/enable"]
    dirs = ["/events", "/events/net", "/options", "/per_cpu/cpu1", "/instances/hostile/events"]
    problems = namespace_attack(mnt, files, dirs)
    assert not problems, "\n".join(problems)


@pytest.mark.fuse
@pytest.mark.fuzz
@pytest.mark.skipif(not FUZZ_LONG, reason="long fuzz: TRACESIM_FUZZ=long (make fuzz)")
def test_everything_through_the_mount_long(mnt):
    everything = walk(MountTree(mnt))
    files = writable(everything)
    problems = namespace_attack(mnt, [p for p, _ in everything],
                                sorted({p.rsplit("/", 1)[0] for p, _ in everything}
                                       - {"", "/instances/hostile"}))
    problems += attack_mount(mnt, sample_plan(files, list(PAYLOADS), 1 << 30, 0), use_cat=False)
    problems += attack_mount(mnt, sample_plan(files, list(PAYLOADS), 200, 9), use_cat=True)
    assert not problems, "\n".join(problems)
