"""Concurrency: nothing is lost silently while writers, readers and a workload run together.

Writers toggle ``enable``, predicate filters, a BPF filter object (``eth5_filter.c``, as
``tracesim cc`` builds it) of several events and the buffer size, define and delete a kprobe
event and enable it, add and remove triggers and flip output options, while readers consume
``trace_pipe`` (and, in process, one CPU's ``trace_pipe_raw``) and the ``net`` workload sends
packets. Then the workload stops, tracing is switched off, the readers drain to end of file,
and the books must balance, per the model's own counters (``per_cpu/cpuN/stats``):

* the events readers got are the ``read events`` of the stats;
* the ``[LOST N EVENTS]`` lines (and the missed counts of raw pages) add up to ``overrun``;
* so every event committed (``entries`` left + ``overrun`` + ``read events``) was read or
  counted lost, and nothing is left in the buffer.

A small buffer makes readers fall behind so that overruns happen. Short runs (a few seconds)
are part of ``make test``; ``TRACESIM_FUZZ=long`` runs 60 s through the mount.
"""
from __future__ import annotations

import errno
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tracesim.kernel_model.trace.ring_buffer import decode_page
from tracesim.tools.ctl_socket import request, state_path
from tracesim.tracefs.system import System

from tests.conftest import FUZZ_LONG
from tests.fuse_helpers import mounted, need_fuse

# The events enabled, each with predicates on its own fields (every write must succeed).
PREDICATES: dict[str, tuple[str, ...]] = {
    "net/netif_receive_skb": ("len > 100", 'name == "eth0"', "len < 600 && len > 64"),
    "skb/consume_skb": ("common_pid != 0", "skbaddr != 0"),
    "skb/kfree_skb": ("protocol == 0x0800", "reason != 2 || protocol != 0x86dd"),
    "napi/napi_poll": ("work > 1", 'dev_name ~ "eth*"'),
    "kmem/kfree": ("ptr != 0",),
}
EVENTS = tuple(PREDICATES)
LOST = re.compile(rb"^CPU:(\d+) \[LOST (\d+) EVENTS\]$")
LINE_CPU = re.compile(rb"^ *\S.*?-\d+ +(?:\( *[-\d]+\) )?\[(\d{3})\] ")   # (tgid) optional
STAT = re.compile(r"^(entries|overrun|read events): (\d+)$", re.M)
READ_SIZES = (65536, 65536, 4096, 333, 17)   # small reads cut lines: the rest must follow
SHORT_SECONDS = 3.0
_pace = random.Random(13)      # readers' pauses and read sizes (not the process-wide generator)
LONG_SECONDS = 60.0


@dataclass
class Tally:
    """What one reader got, per CPU: events, events reported lost; and its errors."""

    events: Counter = field(default_factory=Counter)
    lost: Counter = field(default_factory=Counter)
    unknown_loss: set = field(default_factory=set)   # CPUs whose raw page said "missed"
    carry: bytes = b""                                # without room to store the count
    errors: list[str] = field(default_factory=list)

    def feed_text(self, data: bytes) -> None:
        *lines, self.carry = (self.carry + data).split(b"\n")
        for line in lines:
            hit = LOST.match(line)
            if hit:
                self.lost[int(hit[1])] += int(hit[2])
                continue
            cpu = LINE_CPU.search(line)
            if cpu is None:
                self.errors.append(f"not a trace line: {line[:200]!r}")
            else:
                self.events[int(cpu[1])] += 1

    def feed_page(self, cpu: int, page: bytes) -> None:
        _, _, missed, events = decode_page(page)
        self.events[cpu] += len(events)
        if missed < 0:
            self.unknown_loss.add(cpu)
        else:
            self.lost[cpu] += missed


def slow_reader_pause() -> None:
    """Readers dawdle now and then, so the small buffer overruns and LOST lines appear."""
    if _pace.random() < 0.3:
        time.sleep(0.1)


def stats(read: Callable[[str], bytes], ncpus: int) -> list[dict[str, int]]:
    """``entries``, ``overrun`` and ``read events`` of each CPU's stats."""
    return [{key: int(value) for key, value in
             STAT.findall(read(f"per_cpu/cpu{cpu}/stats").decode())} for cpu in range(ncpus)]


def check_books(tallies: list[Tally], counted: list[dict[str, int]]) -> None:
    errors = [e for t in tallies for e in t.errors]
    assert not errors, errors[:5]
    assert all(not t.carry for t in tallies), "a reader ended in the middle of a line"
    events = sum((t.events for t in tallies), Counter())
    lost = sum((t.lost for t in tallies), Counter())
    unknown = set().union(*(t.unknown_loss for t in tallies))
    if os.environ.get("H6_DEBUG"):
        print("BOOKS", dict(events), dict(lost), unknown, counted)
    for cpu, books in enumerate(counted):
        assert books["entries"] == 0, f"CPU {cpu}: {books['entries']} events never drained"
        assert events[cpu] == books["read events"], (cpu, events[cpu], books)
        if cpu in unknown:
            assert lost[cpu] <= books["overrun"], (cpu, lost[cpu], books)
        else:
            assert lost[cpu] == books["overrun"], (cpu, lost[cpu], books)
    assert sum(events.values()) > 0


KPROBE = "reliability_kp"
KPROBE_DIR = f"events/kprobes/{KPROBE}"


def writer_plan(rng: random.Random, bpf: bytes | None) -> tuple[str, bytes, bool, tuple[int, ...]]:
    """One control write a writer makes: (file relative to the root, what ``echo`` writes,
    whether it appends (``>>``), the errnos the kernel may answer at that moment)."""
    event = rng.choice(EVENTS)
    roll = rng.random()
    if roll < 0.3:
        return f"events/{event}/enable", rng.choice((b"0\n", b"1\n", b"1\n")), False, ()
    if roll < 0.55:
        text = rng.choice(PREDICATES[event] + ("0",))
        return f"events/{event}/filter", text.encode() + b"\n", False, ()
    if roll < 0.62 and bpf is not None:
        return "events/net/netif_receive_skb/filter", bpf, False, ()
    if roll < 0.67:
        return "events/skb/enable", rng.choice((b"0\n", b"1\n")), False, ()
    if roll < 0.72:
        return "buffer_size_kb", rng.choice((b"8\n", b"16\n", b"32\n")), False, ()
    if roll < 0.80:       # a kprobe event comes and goes (EBUSY while enabled)
        if rng.random() < 0.5:
            text = f"p:{KPROBE} __netif_receive_skb skb=%di\n"
            return "kprobe_events", text.encode(), True, (errno.EEXIST,)
        return "kprobe_events", f"-:{KPROBE}\n".encode(), True, (errno.ENOENT, errno.EBUSY)
    if roll < 0.86:       # ... and its enable file with it (ENODEV: removed under the open)
        return f"{KPROBE_DIR}/enable", rng.choice((b"0\n", b"1\n")), False, \
            (errno.ENOENT, errno.ENODEV)
    if roll < 0.93:
        text = rng.choice(("traceon", "!traceon", f"enable_event:kprobes:{KPROBE}",
                           f"!enable_event:kprobes:{KPROBE}"))
        return "events/net/netif_receive_skb/trigger", text.encode() + b"\n", True, \
            (errno.EEXIST, errno.EINVAL)          # EINVAL: the kprobe event is not there
    option = rng.choice(("record-tgid", "irq-info", "hash-ptr", "record-cmd"))
    return f"options/{option}", rng.choice((b"0\n", b"1\n")), False, ()


def bpf_object() -> bytes | None:
    """eth5_filter.o built by the compiler ``tracesim cc`` runs; None when it cannot be built."""
    try:
        from tests.test_bpf_filter import example
        return example("eth5_filter")
    except Exception:            # no compiler toolchain here: the writers use predicates only
        return None


# -- in process --------------------------------------------------------------------------------
def tree_echo(tree, path: str, data: bytes, append: bool = False) -> None:
    handle = tree.open("/" + path, os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC))
    try:
        handle.write(data, 0)
        handle.flush()
    finally:
        handle.release()


def run_in_process(seconds: float, seed: int) -> None:
    system = System.boot(cpus=2, seed=seed, clock="virtual")
    tree = system.tree
    rng = random.Random(seed)
    bpf = bpf_object()
    tree.echo("/buffer_size_kb", "16")
    for event in EVENTS:
        tree.echo(f"/events/{event}/enable", "1")
    stop = threading.Event()
    failures: list[str] = []

    def writer(k: int) -> None:
        wrng = random.Random(seed * 100 + k)
        while not stop.is_set():
            path, data, append, allowed = writer_plan(wrng, bpf)
            try:
                tree_echo(tree, path, data, append)
            except OSError as exc:
                if exc.errno not in allowed:
                    failures.append(f"{path} {data[:60]!r}: {exc!r}")
            except Exception as exc:
                failures.append(f"{path} {data[:60]!r}: {exc!r}")
            time.sleep(wrng.uniform(0, 0.01))

    def pipe_reader(handle, tally: Tally) -> None:
        try:
            while True:
                data = handle.read(_pace.choice(READ_SIZES), 0)
                if not data:
                    return
                tally.feed_text(data)
                slow_reader_pause()
        except OSError as exc:
            if exc.errno != errno.EINTR:
                tally.errors.append(repr(exc))
        except Exception as exc:
            tally.errors.append(repr(exc))

    def raw_reader(cpu: int, tally: Tally) -> None:
        handle = tree.open(f"/per_cpu/cpu{cpu}/trace_pipe_raw", os.O_RDONLY | os.O_NONBLOCK)
        try:
            while True:
                try:
                    tally.feed_page(cpu, handle.read(4096, 0))
                except OSError as exc:
                    if exc.errno != errno.EAGAIN:
                        raise
                    if stop.is_set() and not tree.cat("/tracing_on").startswith(b"1"):
                        return
                    time.sleep(0.005)
                slow_reader_pause()
        except Exception as exc:
            tally.errors.append(repr(exc))
        finally:
            handle.release()

    handles = [tree.open("/trace_pipe", os.O_RDONLY) for _ in range(2)]
    tallies = [Tally() for _ in range(3)]
    readers = [threading.Thread(target=pipe_reader, args=(h, t), daemon=True)
               for h, t in zip(handles, tallies[:2], strict=True)]
    readers.append(threading.Thread(target=raw_reader, args=(1, tallies[2]), daemon=True))
    writers = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(3)]
    for thread in readers + writers:
        thread.start()
    system.start_workload("net")
    try:
        time.sleep(seconds + rng.random())
    finally:
        system.shutdown()
        stop.set()
        for thread in writers:
            thread.join(30)
    tree.echo("/tracing_on", "0")       # trace_pipe readers that read something get EOF
    end_readers(readers[:2], lambda: _marker_in_process(tree))
    for handle in handles:
        handle.cancel()                  # a reader that never got anything: EINTR
    for thread in readers:
        thread.join(30)
        assert not thread.is_alive(), "a reader did not end"
    for handle in handles:
        handle.release()
    assert not failures, failures
    check_books(tallies, stats(lambda p: tree.cat("/" + p), 2))


def _marker_in_process(tree) -> None:
    tree.echo("/tracing_on", "1")
    tree.echo("/trace_marker", "wake")
    tree.echo("/tracing_on", "0")


def end_readers(readers: list[threading.Thread], wake: Callable[[], None],
                seconds: float = 30) -> None:
    """Wait for the readers to reach end of file; a reader that never read anything has no end
    of file yet, so give it one event (a marker, counted like any other) and try again."""
    deadline = time.monotonic() + seconds
    while any(t.is_alive() for t in readers) and time.monotonic() < deadline:
        for thread in readers:
            thread.join(0.3)
        if any(t.is_alive() for t in readers):
            wake()


def test_books_balance_in_process():
    run_in_process(SHORT_SECONDS, seed=5)


@pytest.mark.fuzz
@pytest.mark.skipif(not FUZZ_LONG, reason="long fuzz: TRACESIM_FUZZ=long (make fuzz)")
def test_books_balance_in_process_long():
    run_in_process(LONG_SECONDS / 2, seed=6)


# -- through a FUSE mount ----------------------------------------------------------------------
@pytest.fixture
def mnt(tmp_path):
    need_fuse(tmp_path)
    with mounted(tmp_path / "mnt") as path:
        yield path
        log = state_path(str(path), "log")
        text = log.read_text(errors="replace") if log.exists() else ""
        assert "Traceback" not in text and "Uncaught" not in text, text[-4000:]


def os_echo(root: Path, path: str, data: bytes, append: bool = False) -> None:
    fd = os.open(root / path, os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC))
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def os_cat(root: Path, path: str) -> bytes:
    with open(root / path, "rb") as f:
        return f.read()


def run_mounted(root: Path, seconds: float, seed: int) -> None:
    bpf = bpf_object()
    os_echo(root, "buffer_size_kb", b"16\n")
    for event in EVENTS:
        os_echo(root, f"events/{event}/enable", b"1\n")
    stop = threading.Event()
    failures: list[str] = []

    def writer(k: int) -> None:
        wrng = random.Random(seed * 100 + k)
        while not stop.is_set():
            path, data, append, allowed = writer_plan(wrng, bpf)
            try:
                os_echo(root, path, data, append)
            except OSError as exc:
                if exc.errno not in allowed:
                    failures.append(f"{path} {data[:60]!r}: {exc!r}")
            time.sleep(wrng.uniform(0, 0.02))

    def pipe_reader(tally: Tally) -> None:
        try:
            fd = os.open(root / "trace_pipe", os.O_RDONLY)
        except OSError as exc:
            tally.errors.append(repr(exc))
            return
        try:
            while data := os.read(fd, _pace.choice(READ_SIZES)):
                tally.feed_text(data)
                slow_reader_pause()
        except OSError as exc:
            tally.errors.append(repr(exc))
        finally:
            os.close(fd)

    tallies = [Tally() for _ in range(2)]
    readers = [threading.Thread(target=pipe_reader, args=(t,), daemon=True) for t in tallies]
    writers = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(3)]
    # one more reader and one more writer as real processes: cat, and a shell loop
    cat_out = root.parent / "cat.out"
    with open(cat_out, "wb") as out:
        cat = subprocess.Popen(["cat", "trace_pipe"], cwd=root, stdout=out)
    toggler = subprocess.Popen(
        ["sh", "-c", "while :; do echo 0 > $1; echo 1 > $1; sleep 0.02; done", "sh",
         "events/net/netif_receive_skb/enable"], cwd=root, stderr=subprocess.PIPE)
    for thread in readers + writers:
        thread.start()
    assert request(str(root), ["workload", "start", "net"])[0] == 0
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:       # cat dawdles too: stopped now and then
            time.sleep(0.2)
            cat.send_signal(signal.SIGSTOP)
            time.sleep(0.15)
            cat.send_signal(signal.SIGCONT)
    finally:
        assert request(str(root), ["workload", "stop", "net"])[0] == 0
        stop.set()
        toggler.send_signal(signal.SIGTERM)
        assert toggler.communicate(timeout=30)[1] == b"", "echo > enable failed in the shell"
        for thread in writers:
            thread.join(30)
    os_echo(root, "tracing_on", b"0\n")

    def wake() -> None:
        os_echo(root, "tracing_on", b"1\n")
        os_echo(root, "trace_marker", b"wake\n")
        os_echo(root, "tracing_on", b"0\n")
    end_readers(readers + [_ProcessThread(cat)], wake)
    assert cat.wait(30) == 0
    for thread in readers:
        assert not thread.is_alive(), "a reader did not end"
    cat_tally = Tally()
    cat_tally.feed_text(cat_out.read_bytes())
    assert not failures, failures
    assert request(str(root), ["dmesg"])[0] == 0          # the control channel still answers
    check_books(tallies + [cat_tally], stats(lambda p: os_cat(root, p), 2))


class _ProcessThread:
    """A process seen as a thread by ``end_readers``."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc

    def is_alive(self) -> bool:
        return self.proc.poll() is None

    def join(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass


@pytest.mark.fuse
def test_books_balance_through_the_mount(mnt):
    run_mounted(mnt, SHORT_SECONDS, seed=7)


@pytest.mark.fuse
@pytest.mark.fuzz
@pytest.mark.skipif(not FUZZ_LONG, reason="long fuzz: TRACESIM_FUZZ=long (make fuzz)")
def test_books_balance_through_the_mount_long(mnt):
    run_mounted(mnt, LONG_SECONDS, seed=8)
