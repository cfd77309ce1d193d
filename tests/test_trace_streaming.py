"""The streaming path's fast parts: batch consumption, generated printers, trace_pipe reads.

``RingBuffer.consume_batch`` must hand out exactly what repeated ``consume`` calls would (order,
CPU ties, lost counts, statistics); generated printers keep C's integer semantics; a
``trace_pipe`` read takes about as many events as fit in it, so a small read leaves the rest in
the buffer.
"""
from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tracesim.kernel_model.kernel import Kernel
from tracesim.kernel_model.trace import output as trace_output
from tracesim.kernel_model.trace.event import TraceEvent
from tracesim.kernel_model.trace.ring_buffer import RingBuffer

from tests.conftest import FUZZ_LONG

EXAMPLES = 400 if FUZZ_LONG else 40


def rec(i: int, size: int = 16) -> bytes:
    return struct.pack("<I", i) + bytes(size - 4)


def fill(seed: int, ncpus: int, n: int, size_kb: int) -> RingBuffer:
    """A buffer with ``n`` events spread over CPUs with per-CPU increasing, often equal times."""
    rng = random.Random(seed)
    buf = RingBuffer(ncpus, size_kb=size_kb)
    clocks = [0] * ncpus
    for i in range(n):
        cpu = rng.randrange(ncpus)
        clocks[cpu] += rng.choice((0, 1, 2, 1 << 28))
        buf.cpus[cpu].write(clocks[cpu], rec(i, rng.choice((8, 16, 40, 120, 200))))
    return buf


def drain_one_by_one(buf: RingBuffer, cpu: int | None) -> list[tuple]:
    out = []
    while (e := buf.consume(cpu)) is not None:
        out.append((e.cpu, e.ts, e.data, e.lost))
    return out


def drain_in_batches(buf: RingBuffer, cpu: int | None, limits: list[int]) -> list[tuple]:
    out = []
    i = 0
    while batch := buf.consume_batch(cpu, limits[i % len(limits)]):
        assert len(batch) <= limits[i % len(limits)]
        out += batch
        i += 1
    return out


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 3), st.integers(0, 3000),
       st.sampled_from([8, 64]), st.lists(st.integers(1, 700), min_size=1, max_size=4),
       st.booleans())
def test_batches_give_what_single_consumes_give(seed, ncpus, n, size_kb, limits, one_cpu):
    cpu = 0 if one_cpu else None
    a, b = fill(seed, ncpus, n, size_kb), fill(seed, ncpus, n, size_kb)
    snapshot = list(a.iter_events(cpu))                    # non-consuming, the same order
    one_by_one = drain_one_by_one(b, cpu)
    assert snapshot == [(c, ts, data, 0) for c, ts, data, _ in one_by_one]
    assert drain_in_batches(a, cpu, limits) == one_by_one
    for c in range(ncpus):
        assert a.stats(c, 0) == b.stats(c, 0)
    assert a.entries() == b.entries()


def test_a_batch_interleaves_cpus_by_time_lower_cpu_first_on_ties():
    buf = RingBuffer(2)
    for ts, cpu in [(1, 1), (1, 0), (2, 0), (3, 1), (3, 0), (4, 1)]:
        buf.cpus[cpu].write(ts, rec(ts * 10 + cpu))
    got = [(cpu, ts) for cpu, ts, _, _ in buf.consume_batch(None, 100)]
    assert got == [(0, 1), (1, 1), (0, 2), (0, 3), (1, 3), (1, 4)]


class FakeSymbols:
    def hash_ptr(self, addr: int) -> int:
        return addr & 0xFFFF

    def lookup(self, addr: int):
        return ("func", addr - 0x1000, 0x40) if 0x1000 <= addr < 0x1040 else None


def event(print_fmt: str, fields=(("int", "i"), ("unsigned int", "u"), ("long", "l"),
                                  ("unsigned char", "c"), ("__string", "s"))) -> TraceEvent:
    ev = TraceEvent("test", "ev", list(fields), print_fmt, lambda *v: v)
    ev.id = 300
    return ev


def show(ev: TraceEvent, *values) -> str:
    return ev.print_text(ev.build(values, 0, 0, 1), FakeSymbols())


@pytest.mark.parametrize("fmt, values, text", [
    ('"%d %u %x", REC->i, REC->i, REC->i', (-1, 0, 0, 0, ""), "-1 4294967295 ffffffff"),
    ('"%hhd %hu %lx", REC->l, REC->l, REC->i', (0, 0, 0x1ff, 0, ""), "-1 511 0"),
    ('"%lx %ld", REC->i, REC->u', (-2, 7, 0, 0, ""), "fffffffffffffffe 7"),
    ('"%d", (unsigned char)REC->i', (-1, 0, 0, 0, ""), "255"),
    ('"%d", (short)REC->u', (0, 0xfffe, 0, 0, ""), "-2"),
    ('"%u", (int)REC->u', (0, 0xffffffff, 0, 0, ""), "4294967295"),
    ('"%lld", (int)REC->u', (0, 0xffffffff, 0, 0, ""), "-1"),
    ('"%s|%5s|%-4s|", __get_str(s), __get_str(s), __get_str(s)', (0, 0, 0, 0, "ab"),
     "ab|   ab|ab  |"),
    ('"%c%c 100%%", REC->c, 0x41', (0, 0, 0, 0x7a, ""), "zA 100%"),
    ('"%s", REC->i > 2 ? "big" : REC->i == 2 ? "two" : "small"', (2, 0, 0, 0, ""), "two"),
    ('"%d %d %d", REC->i / 0, REC->i % 3, -7 / 2', (7, 0, 0, 0, ""), "0 1 -3"),
    ('"%d %d", !REC->i, (REC->i && 1) || 0', (0, 0, 0, 0, ""), "1 0"),
    ('"%lx", ~REC->u', (0, 0, 0, 0, ""), "ffffffffffffffff"),
    ('"%lu", 1UL << 63 >> 62', (0, 0, 0, 0, ""), "2"),
    ('"%s", __print_symbolic(REC->i, { 1, "ONE" }, { 1, "UNO" }, { 2, "TWO" })',
     (1, 0, 0, 0, ""), "ONE"),
    ('"%s", __print_symbolic(REC->i, { 1, "ONE" })', (-1, 0, 0, 0, ""), "0xffffffffffffffff"),
    ('"%s", __print_flags(REC->u, "|", { 1, "A" }, { 6, "BC" }, { 2, "B" }, { 0, ((void *)0) })',
     (0, 0x1f, 0, 0, ""), "A|BC|0x18"),
    ('"%s", __print_flags(REC->u, "|", { 1, "A" })', (0, 0, 0, 0, ""), ""),
    ('"%p %p %p %px", (void *)REC->l, (void *)0, (void *)-1, REC->l', (0, 0, 0x1234, 0, ""),
     "0000000000001234 0000000000000000 ffffffffffffffff 0000000000001234"),
    ('"%pS %ps %pS", (void *)REC->l, (void *)REC->l, 5', (0, 0, 0x1008, 0, ""),
     "func+0x8/0x40 func 0x5"),
    ('"no args"', (0, 0, 0, 0, ""), "no args"),
])
def test_generated_printers_keep_c_semantics(fmt, values, text):
    assert show(event(fmt), *values) == text


def test_line_text_is_name_text_newline():
    ev = event('"x=%d", REC->i')
    rec_ = ev.build((5, 0, 0, 0, ""), 0, 0, 1)
    assert ev.line_text(rec_, FakeSymbols()) == "ev: x=5\n"


def test_a_small_trace_pipe_read_leaves_the_rest_in_the_buffer():
    kernel = Kernel(cpus=2, seed=1)
    top = kernel.tracing.top
    top.file("net", "netif_receive_skb").set_enabled(True)
    kernel.workloads.get("eth0").step(200)
    reader = trace_output.PipeReader(top)
    first = reader.read(300, nonblock=True)
    assert len(first) == 300
    assert top.buffer.entries()[0] >= 195        # only the lines that (about) fit were taken
    rest = first
    while True:
        try:
            rest += reader.read(100_000, nonblock=True)
        except OSError:
            break
    lines = rest.splitlines()
    assert len(lines) == 200 and all("netif_receive_skb: dev=eth0" in ln for ln in lines)
    assert top.buffer.entries()[0] == 0


def test_a_tracepoint_line_is_one_unpack_and_one_format():
    kernel = Kernel(cpus=1, seed=1)
    source = kernel.tracing.event("net", "netif_receive_skb").line_printer.source
    assert source.count("_unpack(rec, 0)") == 1 and source.count(" % (") == 1
    assert "netif_receive_skb: dev=%s skbaddr=%s len=%d\\n" in source
