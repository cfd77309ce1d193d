"""The snapshot buffer (issue #18 item 3): the ``snapshot`` file's 0/1/2 commands and help
text (tracing_snapshot_write, print_snapshot_help), per-CPU and per-instance snapshots, the
``snapshot`` trigger and ``tracing_max_latency``."""
from __future__ import annotations

import errno
import re

import pytest
from tracesim.tracefs.errors import FsError

from tests.fuse_helpers import sh

HELP = ("# echo 0 > snapshot : Clears and frees snapshot buffer\n"
        "# echo 1 > snapshot : Allocates snapshot buffer, if not already allocated.\n"
        "#                      Takes a snapshot of the main buffer.\n"
        "# echo 2 > snapshot : Clears snapshot buffer (but does not allocate or free)\n"
        "#                      (Doesn't have to be '2' works with any number that\n"
        "#                       is not a '0' or '1')\n")


def errno_of(call, *args, **kwargs) -> int:
    with pytest.raises(FsError) as err:
        call(*args, **kwargs)
    return err.value.errno


def mark(tree, text: str, root: str = "") -> None:
    tree.echo(root + "/trace_marker", text)


def test_freed_then_allocated_help(tree):
    assert tree.read_text("/snapshot") == \
        "# tracer: nop\n#\n#\n# * Snapshot is freed *\n#\n# Snapshot commands:\n" + HELP
    tree.echo("/snapshot", "1")                      # allocate and swap an empty buffer
    assert tree.read_text("/snapshot") == \
        "# tracer: nop\n#\n#\n# * Snapshot is allocated *\n#\n# Snapshot commands:\n" + HELP
    tree.echo("/snapshot", "0")
    assert "* Snapshot is freed *" in tree.read_text("/snapshot")


def test_take_clear_and_swap_back(tree):
    mark(tree, "before")
    tree.echo("/snapshot", "1")
    snap = tree.read_text("/snapshot")
    assert snap.startswith("# tracer: nop\n#\n# entries-in-buffer/entries-written: 1/1   #P:2\n")
    assert "tracing_mark_write: before\n" in snap
    assert "before" not in tree.read_text("/trace")        # the buffers changed places
    mark(tree, "after")
    tree.echo("/snapshot", "1")                            # and change back
    assert "tracing_mark_write: after\n" in tree.read_text("/snapshot")
    assert "tracing_mark_write: before\n" in tree.read_text("/trace")
    tree.echo("/snapshot", "2")                            # clear, stay allocated
    assert "* Snapshot is allocated *" in tree.read_text("/snapshot")
    tree.echo("/snapshot", "5")                            # any number but 0 and 1 clears
    assert errno_of(tree.echo, "/snapshot", "x") == errno.EINVAL


def test_per_cpu_snapshot(tree, system):
    assert tree.read_text("/per_cpu/cpu1/snapshot").endswith(
        "# echo 0 > snapshot : Invalid for per_cpu snapshot file.\n"
        "# echo 1 > snapshot : Allocates snapshot buffer, if not already allocated.\n"
        "#                      Takes a snapshot of the main buffer for this cpu.\n"
        "# echo 2 > snapshot : Clears this cpu's snapshot buffer (but does not allocate)\n"
        "#                      (Doesn't have to be '2' works with any number that\n"
        "#                       is not a '0' or '1')\n")
    assert errno_of(tree.echo, "/per_cpu/cpu0/snapshot", "0") == errno.EINVAL
    mark(tree, "on cpu0")                                  # the writer runs on CPU 0
    tree.echo("/per_cpu/cpu1/snapshot", "1")               # swaps CPU 1 only
    assert "on cpu0" in tree.read_text("/trace")
    tree.echo("/per_cpu/cpu0/snapshot", "1")
    assert "on cpu0" in tree.read_text("/per_cpu/cpu0/snapshot")
    assert "on cpu0" not in tree.read_text("/trace")


def test_snapshot_raw_reads_the_snapshot_pages(tree):
    from tracesim.kernel_model.trace.ring_buffer import decode_page
    mark(tree, "raw line")
    tree.echo("/per_cpu/cpu0/snapshot", "1")
    page = tree.cat("/per_cpu/cpu0/snapshot_raw", nonblock=True)
    assert len(page) == 4096
    _, _, _, events = decode_page(page)
    assert len(events) == 1 and b"raw line" in events[0][1]
    assert errno_of(tree.cat, "/per_cpu/cpu0/snapshot_raw", nonblock=True) == errno.EAGAIN


def test_instances_have_their_own(tree):
    tree.mkdir("/instances/foo")
    mark(tree, "top line")
    mark(tree, "foo line", "/instances/foo")
    tree.echo("/instances/foo/snapshot", "1")
    assert "foo line" in tree.read_text("/instances/foo/snapshot")
    assert "* Snapshot is freed *" in tree.read_text("/snapshot")
    assert "top line" in tree.read_text("/trace")
    tree.rmdir("/instances/foo")


def test_snapshot_trigger_with_count(tree, system):
    from tracesim.kernel_model import control
    trig = "/events/net/netif_receive_skb/trigger"
    tree.echo(trig, "snapshot:1")
    assert tree.read_text(trig) == "snapshot:count=1\n"
    # registering arms (allocates) the snapshot buffer
    assert "* Snapshot is allocated *" in tree.read_text("/snapshot")
    tree.echo("/events/net/netif_receive_skb/enable", "1")
    mark(tree, "earlier")
    control.send(system.kernel, "lo", 64, count=3)
    assert tree.read_text(trig) == "snapshot:count=0\n"
    # an unconditional trigger runs before the event is written (trace_trigger_soft_disabled):
    # the snapshot holds what came before the first hit, the live buffer the three events
    snap = tree.read_text("/snapshot")
    assert "tracing_mark_write: earlier" in snap and " netif_receive_skb: " not in snap
    assert len(re.findall(r" netif_receive_skb: ", tree.read_text("/trace"))) == 3
    assert errno_of(tree.echo, trig, "snapshot", append=True) == errno.EEXIST
    tree.echo(trig, "!snapshot", append=True)


def test_snapshot_trigger_after_the_buffer_was_freed(tree, system):
    from tracesim.kernel_model import control
    tree.echo("/events/net/netif_receive_skb/trigger", "snapshot")
    tree.echo("/snapshot", "0")
    control.send(system.kernel, "lo", 64, count=1)
    trace = tree.read_text("/trace")
    assert "*** SNAPSHOT NOT ALLOCATED ***" in trace and "*** stopping trace here!   ***" in trace
    assert tree.read_text("/tracing_on") == "0\n"


def test_tracing_max_latency(tree):
    assert tree.read_text("/tracing_max_latency") == "0\n"
    tree.echo("/tracing_max_latency", "150")
    assert tree.read_text("/tracing_max_latency") == "150\n"
    assert errno_of(tree.echo, "/tracing_max_latency", "-1") == errno.EINVAL
    tree.mkdir("/instances/lat")
    assert tree.read_text("/instances/lat/tracing_max_latency") == "0\n"
    tree.rmdir("/instances/lat")


def test_snapshot_through_the_mount(mnt):
    out = sh("echo hello > trace_marker && echo 1 > snapshot && grep -c hello snapshot && "
             "grep -c hello trace; echo 2 > snapshot && grep -c 'Snapshot is allocated' snapshot"
             " && echo 0 > snapshot && grep -c 'Snapshot is freed' snapshot && "
             "grep -qF 'snapshot\t\t- Like' README && echo ok", mnt)
    assert out.stdout == "1\n0\n1\n1\nok\n", out.stderr


def test_tracing_cpumask_stops_recording_on_left_out_cpus(tree):
    assert tree.read_text("/tracing_cpumask") == "3\n"
    tree.echo("/tracing_cpumask", "0")                 # every CPU left out: nothing recorded
    assert tree.read_text("/tracing_cpumask") == "0\n"
    mark(tree, "dropped")
    assert "dropped" not in tree.read_text("/trace")
    # a snapshot swaps the buffers: the snapshot buffer follows the mask too, so restoring
    # the mask after a swap records again (selftest 00basic/snapshot1.tc)
    tree.echo("/snapshot", "1")
    tree.echo("/tracing_cpumask", "3")
    mark(tree, "kept")
    assert "tracing_mark_write: kept\n" in tree.read_text("/trace")
    assert errno_of(tree.echo, "/tracing_cpumask", "xyz") == errno.EINVAL


def test_snapshot_trigger_on_trace_marker(tree):
    """ftrace:print takes triggers: a trace_marker write runs them after its entry is
    committed, so a snapshot trigger leaves every other line in each buffer."""
    tree.echo("/events/ftrace/print/trigger", "snapshot")
    assert tree.read_text("/events/ftrace/print/trigger") == "snapshot:unlimited\n"
    for i in range(1, 5):
        mark(tree, f"hello {i}")
    trace, snap = tree.read_text("/trace"), tree.read_text("/snapshot")
    assert re.findall(r"hello (\d)", trace) == ["1", "3"]
    assert re.findall(r"hello (\d)", snap) == ["2", "4"]
    tree.echo("/events/ftrace/print/trigger", "!snapshot", append=True)
    # the other ftrace events take no triggers (event_callback)
    with pytest.raises(FsError) as err:
        tree.read_text("/events/ftrace/function/trigger")
    assert err.value.errno == errno.ENOENT
