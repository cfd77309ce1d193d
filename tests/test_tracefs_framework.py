"""The file-semantics framework of the tree, on a small hand-built tree (no kernel model)."""
from __future__ import annotations

import errno
import os
import stat
import threading
import time

import pytest
from tracesim.tracefs.errors import FsError
from tracesim.tracefs.handles import SeqHandle, StreamHandle
from tracesim.tracefs.nodes import MODE_DIR, MODE_MARKER, MODE_RO, MODE_ROOT, MODE_RW, Dir, DirOps, File
from tracesim.tracefs.tree import Tree


class Pipe:
    """A line source with a condition variable, standing in for a ring buffer."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.cond = threading.Condition()

    def put(self, line: bytes) -> None:
        with self.cond:
            self.lines.append(line)
            self.cond.notify_all()

    def take(self, size: int) -> bytes:
        with self.cond:
            return self.lines.pop(0) if self.lines else b""

    def wait(self, timeout: float) -> None:
        with self.cond:
            self.cond.wait(timeout)


@pytest.fixture
def world():
    state = {"value": "1", "events": [], "dirs": {}}
    pipe = Pipe()

    def store_value(text: str) -> None:
        if text.strip() not in ("0", "1"):
            raise FsError(errno.EINVAL)
        state["value"] = text.strip()

    def mkdir(name: str) -> None:
        state["dirs"][name] = Dir(MODE_DIR, {})

    def rmdir(name: str) -> None:
        del state["dirs"][name]

    root = Dir(MODE_ROOT, {
        "value": File(MODE_RW, lambda f: SeqHandle(f, lambda: state["value"] + "\n",
                                                   store_value)),
        "set_event": File(MODE_RW, lambda f: SeqHandle(
            f, lambda: "".join(e + "\n" for e in state["events"]),
            lambda t: state["events"].extend(t.split()), state["events"].clear)),
        "format": File(MODE_RO, lambda f: SeqHandle(f, lambda: "fixed\n")),
        "marker": File(MODE_MARKER, lambda f: SeqHandle(f, store=lambda t: None)),
        "pipe": File(MODE_RO, lambda f: StreamHandle(f, pipe.take, pipe.wait)),
        "per_cpu": Dir(MODE_DIR, {"cpu0": Dir(MODE_DIR, {}), "cpu1": Dir(MODE_DIR, {})}),
        "instances": Dir(MODE_DIR, lambda: state["dirs"], ops=DirOps(mkdir, rmdir)),
        "events": Dir(0o755, {"enable": File(MODE_RW, lambda f: SeqHandle(f, lambda: "0\n"))},
                      eventfs=True),
    })
    return Tree(root), state, pipe


def test_modes_and_link_counts(world):
    tree, _, _ = world
    assert tree.getattr("/").mode == stat.S_IFDIR | 0o700
    assert tree.getattr("/").nlink == 2 + 3          # per_cpu, instances, events
    assert tree.getattr("/per_cpu").nlink == 4
    assert tree.getattr("/events").nlink == 1        # eventfs
    assert tree.getattr("/marker").mode == stat.S_IFREG | 0o220
    assert tree.readdir("/") == ["events", "format", "instances", "marker", "per_cpu", "pipe",
                                 "set_event", "value"]


def test_read_and_per_write_store(world):
    tree, state, _ = world
    assert tree.cat("/value") == b"1\n"
    tree.echo("/value", "0")
    assert tree.cat("/value") == b"0\n"
    with pytest.raises(FsError) as err:
        tree.echo("/value", "7")
    assert err.value.errno == errno.EINVAL
    assert state["value"] == "0"


def test_trunc_versus_append(world):
    tree, _, _ = world
    tree.echo("/set_event", "a")
    tree.echo("/set_event", "b", append=True)
    assert tree.cat("/set_event") == b"a\nb\n"
    tree.echo("/set_event", "c")
    assert tree.cat("/set_event") == b"c\n"


def test_trunc_open_stamps_mtime(world):
    tree, _, _ = world
    before = tree.getattr("/set_event").mtime
    time.sleep(0.01)
    tree.echo("/set_event", "x", append=True)
    assert tree.getattr("/set_event").mtime == before
    tree.echo("/set_event", "x")
    assert tree.getattr("/set_event").mtime > before


def test_missing_operations_are_einval(world):
    tree, _, _ = world
    with pytest.raises(FsError) as err:
        tree.echo("/format", "x")
    assert err.value.errno == errno.EINVAL
    with pytest.raises(FsError) as err:
        tree.cat("/marker")
    assert err.value.errno == errno.EINVAL


def test_namespace_errors(world):
    tree, _, _ = world
    for call, path, code in [(tree.cat, "/nothing", errno.ENOENT),
                             (tree.cat, "/per_cpu", errno.EISDIR),
                             (tree.create, "/newfile", errno.EACCES),
                             (tree.mkdir, "/per_cpu/x", errno.EPERM),
                             (tree.rmdir, "/per_cpu/cpu0", errno.EPERM),
                             (tree.mkdir, "/per_cpu/cpu0", errno.EEXIST),
                             (tree.cat, "/value/x", errno.ENOTDIR)]:
        with pytest.raises(FsError) as err:
            call(path)
        assert err.value.errno == code, (call.__name__, path)


def test_mkdir_rmdir_dynamic_listing(world):
    tree, _, _ = world
    tree.mkdir("/instances/foo")
    assert tree.readdir("/instances") == ["foo"]
    assert tree.getattr("/instances").nlink == 3
    tree.rmdir("/instances/foo")
    assert tree.readdir("/instances") == []


def test_stream_nonblock_is_eagain(world):
    tree, _, _ = world
    with pytest.raises(FsError) as err:
        tree.cat("/pipe", nonblock=True)
    assert err.value.errno == errno.EAGAIN


def test_stream_blocks_until_woken(world):
    tree, _, pipe = world
    handle = tree.open("/pipe", os.O_RDONLY)
    got = []
    reader = threading.Thread(target=lambda: got.append(handle.read(4096, 0)))
    reader.start()
    reader.join(0.2)
    assert reader.is_alive() and not got      # nothing yet: blocked
    pipe.put(b"line\n")
    reader.join(5)
    assert got == [b"line\n"]
    handle.release()


def test_stream_cancel_is_eintr(world):
    tree, _, _ = world
    handle = tree.open("/pipe", os.O_RDONLY)
    errors = []

    def read() -> None:
        try:
            handle.read(4096, 0)
        except FsError as exc:
            errors.append(exc.errno)

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(0.1)
    handle.cancel()
    reader.join(5)
    assert errors == [errno.EINTR]
