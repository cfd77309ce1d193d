"""Issue #18 items 4 and 5 left from the last round: ``stacktrace`` triggers record the
tracepoint's frames and the modelled call chain; ``buffer_subbuf_size_kb`` takes the sizes 6.18
takes (1 to 128 pages, rounded up to a power of two) and sub-buffers of that size hold larger
events."""
from __future__ import annotations

import errno
import re

import pytest
from tracesim.kernel_model.trace.call_stack import current_stack, event_stack
from tracesim.kernel_model.trace.ring_buffer import RingBuffer, decode_page
from tracesim.tracefs.errors import FsError


def errno_of(call, *args, **kwargs) -> int:
    with pytest.raises(FsError) as err:
        call(*args, **kwargs)
    return err.value.errno


@pytest.mark.parametrize("written, shown", [
    ("1", "4"), ("4", "4"), ("5", "8"), ("8", "8"), ("9", "16"), ("100", "128"),
    ("512", "512")])
def test_subbuf_sizes_accepted(tree, written, shown):
    tree.echo("/buffer_subbuf_size_kb", written)
    assert tree.read_text("/buffer_subbuf_size_kb") == shown + "\n"


@pytest.mark.parametrize("written", ["0", "513", "1024", "-4", "x"])
def test_subbuf_sizes_refused(tree, written):
    assert errno_of(tree.echo, "/buffer_subbuf_size_kb", written) == errno.EINVAL
    assert tree.read_text("/buffer_subbuf_size_kb") == "4\n"


def test_subbuf_size_keeps_the_buffer_size_and_drops_contents(tree):
    tree.echo("/buffer_size_kb", "1024")
    tree.echo("/trace_marker", "gone")
    before = tree.read_text("/buffer_size_kb")
    tree.echo("/buffer_subbuf_size_kb", "16")
    assert "gone" not in tree.read_text("/trace")
    assert abs(int(tree.read_text("/buffer_size_kb")) - int(before)) <= 16
    tree.echo("/trace_marker", "kept")
    assert "tracing_mark_write: kept" in tree.read_text("/trace")
    tree.mkdir("/instances/sb")                            # an instance has its own
    assert tree.read_text("/instances/sb/buffer_subbuf_size_kb") == "4\n"
    tree.rmdir("/instances/sb")


def test_header_page_shows_the_subbuf_size(tree):
    tree.echo("/buffer_subbuf_size_kb", "8")
    assert "\tfield: char data;\toffset:16;\tsize:8176;\tsigned:0;\n" in \
           tree.read_text("/events/header_page")
    tree.mkdir("/instances/hp")
    assert "size:4080;" in tree.read_text("/instances/hp/events/header_page")
    tree.rmdir("/instances/hp")


def test_large_subbuf_holds_large_events_and_reads_raw():
    rb = RingBuffer(1, size_kb=64)
    rb.set_subbuf_order(2)                                 # 16 KiB sub-buffers
    big = bytes(range(256)) * 40                           # 10240 bytes: no room in 4 KiB
    assert rb.cpus[0].write(1000, big)
    page = rb.read_page(0)
    assert len(page) == 16384
    ts, size, missed, events = decode_page(page)
    assert (ts, missed) == (1000, 0) and events == [(1000, big)]


def test_stacktrace_trigger_records_tracepoint_frames(tree, system):
    tracing = system.kernel.tracing
    ev = tracing.events[("net", "netif_receive_skb")]
    cpu = tracing.this_cpu()
    frames = event_stack(tracing, ev, cpu)
    names = [tracing.symbols.lookup(a)[0] for a in frames]
    want = [n for n in ("trace_event_raw_event_netif_receive_skb",
                        "__traceiter_netif_receive_skb")
            if tracing.symbols.address_of(n)]
    assert names[:len(want)] == want
    assert frames[len(want):] == current_stack(cpu)
    from tracesim.kernel_model import control
    tree.echo("/events/net/netif_receive_skb/trigger", "stacktrace:1")
    control.send(system.kernel, "lo", 64, count=2)
    text = tree.read_text("/trace")
    assert text.count("<stack trace>") == 1
    assert re.search(r"\] \.\.s1\.  +\d+\.\d{6}: <stack trace>\n", text), text
