"""The writer's lock-free path (RingBuffer.write_unlocked / reserve_unlocked): it writes what
the locked path writes, steps aside while anyone else is in the buffer, and wakes a blocked
reader."""
from __future__ import annotations

import threading

from tracesim.kernel_model.trace.ring_buffer import RingBuffer


def rec(n: int, size: int = 16) -> bytes:
    return n.to_bytes(4, "little") * (size // 4)


def test_unlocked_writes_read_back_like_locked_ones() -> None:
    a, b = RingBuffer(1, size_kb=8), RingBuffer(1, size_kb=8)
    for i in range(600):                      # several pages, overwriting the oldest
        assert a.write_unlocked(0, 1000 + i * 7, rec(i)) is True
        with b.exclusive:
            assert b.cpus[0].write(1000 + i * 7, rec(i))
    assert [e[1:] for e in a.iter_events()] == [e[1:] for e in b.iter_events()]
    assert a.stats(0, 0) == b.stats(0, 0)


def test_someone_in_the_buffer_sends_the_writer_to_the_lock() -> None:
    buf = RingBuffer(1)
    with buf.exclusive:
        assert buf.write_unlocked(0, 1, rec(1)) is None
        assert buf.reserve_unlocked(0, 1, rec(1)) is False
    assert buf.stats(0, 0)["entries"] == 0
    assert buf.write_unlocked(0, 2, rec(2)) is True and not buf.writing


def test_a_discarded_reservation_leaves_nothing() -> None:
    buf = RingBuffer(1)
    buf.write_unlocked(0, 5, rec(1))
    res = buf.reserve_unlocked(0, 9, rec(2))
    assert res and buf.writing
    buf.end_unlocked(0, res, keep=False)
    assert not buf.writing
    assert [(ts, data) for _, ts, data, _ in buf.iter_events()] == [(5, rec(1))]
    res = buf.reserve_unlocked(0, 11, rec(3))
    buf.end_unlocked(0, res, keep=True)
    assert [ts for _, ts, _, _ in buf.iter_events()] == [5, 11]


def test_a_blocked_reader_is_woken_by_an_unlocked_write() -> None:
    buf = RingBuffer(1)
    woke = threading.Event()

    def reader() -> None:
        if buf.wait(cpu=0, timeout=10):
            woke.set()
    t = threading.Thread(target=reader)
    t.start()
    while not buf.waiters:
        threading.Event().wait(0.001)
    assert buf.write_unlocked(0, 1, rec(1)) is True     # a waiting reader is not in the way
    buf.wake_waiters()
    t.join(5)
    assert woke.is_set()


def test_larger_sub_buffers_wrap_with_pages_of_their_size() -> None:
    a, b = RingBuffer(1, size_kb=32), RingBuffer(1, size_kb=32)
    for buf in (a, b):
        buf.set_subbuf_order(1)                # 8 KiB sub-buffers
    for i in range(3000):                      # wraps: overwritten sub-buffers are reused
        assert a.write_unlocked(0, 1000 + i * 7, rec(i, 40)) is True
        with b.exclusive:
            assert b.cpus[0].write(1000 + i * 7, rec(i, 40))
    assert a.stats(0, 0)["overrun"] > 0
    assert all(len(p.buf) == 8192 for p in a.cpus[0].pages)
    assert [e[1:] for e in a.iter_events()] == [e[1:] for e in b.iter_events()]
    page = a.read_page(0)
    assert page is not None and len(page) == 8192


def test_a_swapped_in_buffer_takes_the_next_unlocked_write() -> None:
    live, spare = RingBuffer(1), RingBuffer(1)
    live.write_unlocked(0, 1, rec(1))
    live.swap_with(spare)
    assert live.write_unlocked(0, 2, rec(2)) is True and not live.writing
    assert [ts for _, ts, _, _ in live.iter_events()] == [2]
    assert [ts for _, ts, _, _ in spare.iter_events()] == [1]
