"""The ring buffer's writer API (reserve / commit / discard / write) and its accounting, seen
through the API itself and through ``per_cpu/cpuN/stats`` for every producer of a trace array:
trace events, trace_marker, kprobe events and bpf_trace_printk."""
from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from tracesim.filters.predicate import compile_filter
from tracesim.kernel_model.kernel import Kernel
from tracesim.kernel_model.net import core as netmod
from tracesim.kernel_model.trace import output as trace_output
from tracesim.kernel_model.trace.ring_buffer import RingBuffer, event_length

STAT_KEYS = ("entries", "overrun", "commit overrun", "bytes", "dropped events", "read events")


def rec(i: int) -> bytes:
    return struct.pack("<I", i) + bytes(12)


# -- the API on one CPU buffer

def test_reserve_commit_counts_an_entry_on_commit() -> None:
    buf = RingBuffer(1)
    cb = buf.cpus[0]
    res = cb.reserve(10, rec(1))
    assert res is not None
    assert buf.stats(0, 0)["entries"] == 0          # counted on commit, not on reserve
    cb.commit(res)
    st = buf.stats(0, 99)
    assert st["entries"] == 1 and st["bytes"] == event_length(16)
    assert st["oldest event ts"] == 10 and st["now ts"] == 99
    assert [e.ts for e in buf.iter_entries()] == [10]


def test_discard_is_never_an_entry_and_frees_its_bytes() -> None:
    buf = RingBuffer(1)
    cb = buf.cpus[0]
    assert cb.write(1, rec(1))
    res = cb.reserve(2, rec(2))
    assert res is not None
    cb.discard(res)
    st = buf.stats(0, 0)
    assert (st["entries"], st["bytes"], st["overrun"]) == (1, event_length(16), 0)
    assert buf.entries() == (1, 1)
    assert cb.write(3, rec(3))
    assert [(e.ts, e.data[:4]) for e in buf.iter_entries()] == [(1, rec(1)[:4]), (3, rec(3)[:4])]


def test_overwrite_mode_counts_overrun_and_keeps_the_sum() -> None:
    buf = RingBuffer(1, size_kb=4)              # two pages
    n = 1000
    assert all(buf.cpus[0].write(i, rec(i)) for i in range(n))
    st = buf.stats(0, 0)
    assert st["overrun"] > 0 and st["dropped events"] == 0
    assert st["entries"] + st["overrun"] == n
    assert buf.entries() == (st["entries"], n)


def test_producer_drop_mode_counts_dropped_events() -> None:
    buf = RingBuffer(1, size_kb=4, overwrite=False)
    cb = buf.cpus[0]
    n = 1000
    accepted = sum(cb.write(i, rec(i)) for i in range(n))
    assert cb.reserve(n, rec(n)) is None          # a refused reservation counts too
    st = buf.stats(0, 0)
    assert st["overrun"] == 0 and st["entries"] == accepted
    assert st["dropped events"] == n + 1 - accepted > 0


def test_read_events_count_what_was_consumed() -> None:
    buf = RingBuffer(2)
    for i in range(5):
        assert buf.cpus[i % 2].write(i, rec(i))
    assert len(buf.consume_batch(limit=3)) == 3
    st0, st1 = buf.stats(0, 0), buf.stats(1, 0)
    assert st0["read events"] + st1["read events"] == 3
    assert st0["entries"] + st1["entries"] == 2
    assert buf.consume() is not None and buf.consume() is not None and buf.consume() is None
    assert sum(buf.stats(c, 0)["read events"] for c in (0, 1)) == 5
    assert sum(buf.stats(c, 0)["bytes"] for c in (0, 1)) == 0


# -- every producer of a trace array, through per_cpu/cpuN/stats

@pytest.fixture
def kernel() -> Kernel:
    return Kernel(cpus=2, seed=11)


def stats(kernel: Kernel) -> dict[str, int]:
    """The numeric lines of every CPU's ``per_cpu/cpuN/stats`` of the top array, summed; each
    file checked against the buffer's own numbers."""
    top = kernel.tracing.top
    total = dict.fromkeys(STAT_KEYS, 0)
    for cpu in range(kernel.tracing.ncpus):
        text = trace_output.stats_text(top, cpu)
        fields = dict(line.split(": ", 1) for line in text.splitlines())
        assert list(fields) == ["entries", "overrun", "commit overrun", "bytes",
                                "oldest event ts", "now ts", "dropped events", "read events"]
        raw = top.buffer.stats(cpu, 0)
        for key in STAT_KEYS:
            assert int(fields[key]) == raw[key]
            total[key] += int(fields[key])
    return total


def send_lo(kernel: Kernel, count: int) -> None:
    lo = kernel.net.device("lo")
    with kernel.machine.running(kernel.user_task("sender")):
        for i in range(count):
            kernel.net.xmit_frame(lo, netmod.packet_frame(lo, "udp", 64, seq=i))


def set_filter(kernel: Kernel, system: str, name: str, text: str | None) -> None:
    f = kernel.tracing.top.file(system, name)
    f.set_filter(compile_filter(text, f.event.all_fields) if text else None, text or "none")


def produce_event(kernel: Kernel, n: int) -> None:
    kernel.tracing.top.file("net", "netif_receive_skb").set_enabled(True)
    send_lo(kernel, n)


def produce_marker(kernel: Kernel, n: int) -> None:
    for i in range(n):
        kernel.tracing.top.trace_marker_write(f"mark {i}")


def produce_kprobe(kernel: Kernel, n: int) -> None:
    tr = kernel.tracing
    if ("kprobes", "rx") not in tr.events:
        tr.kprobes.write("p:rx __netif_receive_skb skb=%di\n")
    tr.top.file("kprobes", "rx").set_enabled(True)
    send_lo(kernel, n)


def produce_printk(kernel: Kernel, n: int) -> None:
    for i in range(n):
        kernel.tracing.trace_printk(f"keep {i}" if i % 2 == 0 else f"drop {i}")


PRODUCERS: dict[str, Callable[[Kernel, int], None]] = {
    "event": produce_event, "marker": produce_marker, "kprobe": produce_kprobe,
    "trace_printk": produce_printk,
}
# (system, event, predicate rejecting every record) of the producers that can be filtered
REJECT_ALL = {"event": ("net", "netif_receive_skb", "len > 100000"),
              "kprobe": ("kprobes", "rx", "skb == 0"),
              "trace_printk": ("bpf_trace", "bpf_trace_printk", 'bpf_string ~ "none*"')}


@pytest.mark.parametrize("producer", sorted(PRODUCERS))
def test_entries_of_each_producer(kernel: Kernel, producer: str) -> None:
    PRODUCERS[producer](kernel, 7)
    st = stats(kernel)
    assert st["entries"] == 7 and st["bytes"] > 0
    assert st["overrun"] == st["dropped events"] == st["read events"] == st["commit overrun"] == 0


@pytest.mark.parametrize("producer", sorted(PRODUCERS))
def test_overrun_when_the_buffer_wraps(kernel: Kernel, producer: str) -> None:
    kernel.tracing.top.set_buffer_size_kb(4)          # two pages per CPU
    n = 400
    PRODUCERS[producer](kernel, n)
    st = stats(kernel)
    assert st["overrun"] > 0 and st["dropped events"] == 0
    assert st["entries"] + st["overrun"] == n
    assert kernel.tracing.top.buffer.entries() == (st["entries"], n)


@pytest.mark.parametrize("producer", sorted(PRODUCERS))
def test_dropped_events_with_overwrite_off(kernel: Kernel, producer: str) -> None:
    top = kernel.tracing.top
    top.set_buffer_size_kb(4)
    top.set_option("overwrite", False)
    n = 400
    PRODUCERS[producer](kernel, n)
    st = stats(kernel)
    assert st["dropped events"] > 0 and st["overrun"] == 0
    assert st["entries"] + st["dropped events"] == n


@pytest.mark.parametrize("producer", sorted(REJECT_ALL))
def test_a_filtered_event_is_discarded_not_counted(kernel: Kernel, producer: str) -> None:
    PRODUCERS[producer](kernel, 1)                    # defines and enables the event
    before = stats(kernel)
    assert before["entries"] == 1
    system, name, reject = REJECT_ALL[producer]
    set_filter(kernel, system, name, reject)
    PRODUCERS[producer](kernel, 6)
    assert stats(kernel) == before                    # nothing entered, no byte left behind
    set_filter(kernel, system, name, None)
    PRODUCERS[producer](kernel, 2)
    st = stats(kernel)
    assert st["entries"] == 3 and st["bytes"] > before["bytes"]
    assert st["dropped events"] == st["overrun"] == 0


def test_trace_printk_filter_keeps_the_matching_half(kernel: Kernel) -> None:
    produce_printk(kernel, 1)
    set_filter(kernel, "bpf_trace", "bpf_trace_printk", 'bpf_string ~ "keep*"')
    produce_printk(kernel, 10)
    assert stats(kernel)["entries"] == 1 + 5


@pytest.mark.parametrize("producer", sorted(PRODUCERS))
def test_read_events_after_consuming(kernel: Kernel, producer: str) -> None:
    PRODUCERS[producer](kernel, 5)
    reader = trace_output.PipeReader(kernel.tracing.top)
    text = ""
    while text.count("\n") < 5:
        text += reader.read(65536, nonblock=True)
    st = stats(kernel)
    assert st["read events"] == 5 and st["entries"] == 0 and st["bytes"] == 0
