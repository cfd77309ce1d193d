"""The per-CPU ring buffer: page format round trip, overwrite/drop accounting, merge order,
blocking reads and wake-ups, resizing."""
from __future__ import annotations

import os
import struct
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tracesim.kernel_model.trace import ring_buffer as rb
from tracesim.kernel_model.trace.ring_buffer import RingBuffer, decode_page, event_length

EXAMPLES = 300 if os.environ.get("TRACESIM_FUZZ") == "long" else 40


def rec(i: int, size: int = 24) -> bytes:
    """A record of ``size`` bytes whose first 4 bytes say which one it is."""
    return struct.pack("<I", i) + bytes((i + k) & 0xff for k in range(size - 4))


@pytest.mark.parametrize("payload, total", [
    (0, 8), (1, 8), (4, 8), (5, 12 + 4), (8, 16), (9, 16), (24, 28), (112, 116), (113, 124),
    (200, 208),
])
def test_event_length_follows_rb_calculate_event_length(payload: int, total: int) -> None:
    assert event_length(payload) == total


def test_default_size_is_1410_kb_per_cpu() -> None:
    buf = RingBuffer(2)
    assert buf.size_kb(0) == buf.size_kb(1) == 1410
    assert rb.pages_for_kb(1410) == 354


def test_header_texts_match_the_kernel(reference) -> None:
    assert rb.HEADER_PAGE_TEXT == (reference / "header_page").read_text()
    assert rb.HEADER_EVENT_TEXT == (reference / "header_event").read_text()


def test_page_round_trip_with_small_large_events_and_time_extends() -> None:
    buf = RingBuffer(1)
    written = []
    ts = 1000
    for i in range(60):
        ts += 5 if i % 7 else (1 << 28) + 3        # every 7th needs a time extend
        data = rec(i, 8 + (i * 13) % 200)
        assert buf.cpus[0].write(ts, data)
        written.append((ts, data))
    got = []
    while (page := buf.read_page(0)) is not None:
        assert len(page) == rb.PAGE_SIZE
        page_ts, commit, missed, events = decode_page(page)
        assert missed == 0 and commit <= rb.BUF_PAGE_SIZE
        got += events
    assert [t for t, _ in got] == [t for t, _ in written]
    for (_, payload), (_, data) in zip(got, written, strict=False):
        # the stored payload is the record padded to the event's 4-byte length
        assert payload[:len(data)] == data and len(payload) - len(data) < 8


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(1, 300)), min_size=1,
                max_size=80))
def test_consume_returns_everything_written_in_order(items: list[tuple[int, int]]) -> None:
    buf = RingBuffer(1, size_kb=64)
    ts = 0
    expect = []
    for i, (gap, size) in enumerate(items):
        ts += gap
        buf.cpus[0].write(ts, rec(i, max(size, 4)))
        expect.append((ts, i))
    got = []
    while (e := buf.consume()) is not None:
        got.append((e.ts, struct.unpack_from("<I", e.data)[0]))
    assert got == expect


def test_overwrite_drops_oldest_pages_and_counts_them() -> None:
    buf = RingBuffer(1, size_kb=8)                  # 3 pages
    cb = buf.cpus[0]
    n = 2000
    for i in range(n):
        cb.write(i * 10, rec(i))
    inbuf, written = buf.entries()
    assert written == n
    assert cb.overrun > 0 and inbuf + cb.overrun == n
    first = buf.consume()
    assert first is not None and first.lost == cb.overrun
    assert struct.unpack_from("<I", first.data)[0] == cb.overrun      # the oldest survivor
    rest = 1
    while (e := buf.consume()) is not None:
        assert e.lost == 0
        rest += 1
    assert rest == inbuf
    st_ = buf.stats(0, 0)
    assert st_["read events"] == inbuf and st_["entries"] == 0 and st_["bytes"] == 0


def test_producer_drop_mode_refuses_new_events_and_counts_them() -> None:
    buf = RingBuffer(1, size_kb=8, overwrite=False)
    cb = buf.cpus[0]
    accepted = sum(cb.write(i, rec(i)) for i in range(2000))
    assert cb.dropped_events == 2000 - accepted and cb.overrun == 0
    first = buf.consume()
    assert first is not None and struct.unpack_from("<I", first.data)[0] == 0
    assert buf.stats(0, 0)["dropped events"] == 2000 - accepted


def test_lost_events_are_stored_in_the_raw_page() -> None:
    buf = RingBuffer(1, size_kb=8)
    for i in range(2000):
        buf.cpus[0].write(i, rec(i))
    page = buf.read_page(0)
    _, commit, missed, events = decode_page(page)
    assert missed == buf.cpus[0].overrun > 0
    assert struct.unpack_from("<q", page, 8)[0] & rb.RB_MISSED_EVENTS


def test_discard_takes_back_the_last_event() -> None:
    buf = RingBuffer(1)
    cb = buf.cpus[0]
    cb.write(1, rec(1))
    res = cb.reserve(2, rec(2))
    assert res is not None
    cb.discard(res)
    cb.write(3, rec(3))
    got = [(e.ts, struct.unpack_from("<I", e.data)[0]) for e in buf.iter_entries()]
    assert got == [(1, 1), (3, 3)]
    assert buf.entries() == (2, 2)


def test_merge_across_cpus_by_timestamp_first_cpu_wins_ties() -> None:
    buf = RingBuffer(3)
    for ts, cpu in [(2, 1), (1, 2), (3, 0), (5, 0), (5, 1), (5, 2), (9, 2)]:   # per-CPU monotonic
        buf.cpus[cpu].write(ts, rec(ts * 10 + cpu))
    order = [(e.ts, e.cpu) for e in buf.iter_entries()]
    assert order == [(1, 2), (2, 1), (3, 0), (5, 0), (5, 1), (5, 2), (9, 2)]
    consumed = []
    while (e := buf.consume()) is not None:
        consumed.append((e.ts, e.cpu))
    assert consumed == order
    assert [e.ts for e in buf.iter_entries()] == []


def test_non_consuming_iteration_leaves_the_buffer_alone() -> None:
    buf = RingBuffer(1)
    for i in range(10):
        buf.cpus[0].write(i, rec(i))
    assert len(list(buf.iter_entries())) == 10
    assert len(list(buf.iter_entries(0))) == 10
    assert buf.entries() == (10, 10)


def test_resize_keeps_the_newest_events_that_fit() -> None:
    buf = RingBuffer(1, size_kb=64)
    n = 1500
    for i in range(n):
        buf.cpus[0].write(i, rec(i))
    buf.resize(4)                                   # 2 pages
    assert buf.size_kb(0) == (2 * rb.BUF_PAGE_SIZE) >> 10
    kept = [struct.unpack_from("<I", e.data)[0] for e in buf.iter_entries()]
    assert kept == list(range(n - len(kept), n))
    inbuf, written = buf.entries()
    assert written == n and inbuf == len(kept)


def test_reset_clears_everything() -> None:
    buf = RingBuffer(2)
    buf.cpus[1].write(1, rec(1))
    buf.reset()
    assert buf.entries() == (0, 0) and buf.consume() is None
    assert buf.stats(1, 7) == {"entries": 0, "overrun": 0, "commit overrun": 0, "bytes": 0,
                               "oldest event ts": 0, "now ts": 7, "dropped events": 0,
                               "read events": 0}


def test_blocking_wait_wakes_when_the_writer_commits() -> None:
    buf = RingBuffer(2)
    woke = threading.Event()

    def reader() -> None:
        if buf.wait(cpu=1, timeout=10):
            woke.set()
    t = threading.Thread(target=reader)
    t.start()
    while not buf.waiters:                           # the reader is blocked
        threading.Event().wait(0.001)
    with buf.lock:
        buf.cpus[0].write(1, rec(1))                 # another CPU: stays asleep
        buf.notify()
    assert not woke.wait(0.05)
    with buf.lock:
        buf.cpus[1].write(2, rec(2))
        buf.notify()
    t.join(5)
    assert woke.is_set()


def test_wait_times_out_when_nothing_comes() -> None:
    assert RingBuffer(1).wait(timeout=0.01) is False
