"""Per-CPU ring buffers storing records in the kernel's binary page format.

Pages are what ``events/header_page`` and ``events/header_event`` describe, so a page can be
handed to a ``trace_pipe_raw`` reader (trace-cmd's kbuffer) unchanged::

    page:  u64 timestamp @0 | local_t commit @8 (data bytes used; bit 31 RB_MISSED_EVENTS,
           bit 30 RB_MISSED_STORED: the lost count is stored as a u64 after the data) | data[4080]
    event: u32 type_len:5 | time_delta:27, then
           type_len 1..28: payload of type_len*4 bytes
           type_len 0:     u32 array[0] = payload length + 4, then the payload
           29 padding (time_delta 0: rest of page empty; else array[0] = bytes to skip)
           30 time extend: delta = time_delta + array[0] << 27
           31 absolute time stamp (not written here)

Event lengths follow ``rb_calculate_event_length`` (4-byte aligned, zero-length rounded to 1, a
12-byte event padded to 16 so it is never mistaken for a time extend). The first event on a page
has delta 0 and the page timestamp is its time.

The writer's API is the kernel's (kernel/trace/ring_buffer.c), per CPU buffer:
``reserve`` (ring_buffer_lock_reserve, the record copied in) → ``commit``
(ring_buffer_unlock_commit) or ``discard`` (ring_buffer_discard_commit), and ``write``
(ring_buffer_write: reserve + commit). Every producer of a trace array (trace events, kprobe
events, bpf_trace_printk, trace_marker, stack entries) writes through them
(kernel_model/trace/emit.py), holding ``RingBuffer.exclusive`` from reserve to commit or
discard; a plain write when nobody else is in the buffer takes no lock (``write_unlocked``).

Accounting (kernel names): ``entries`` committed, ``overrun`` (lost to overwrite, including pages
dropped by a shrink), ``read`` (consumed), ``dropped_events`` (refused in producer-drop mode),
``commit_overrun`` (always 0: the model never nests writers). Entries in the buffer are
``entries - overrun - read``; ``entries-written`` in the trace header is in-buffer + overrun.
Nothing leaves the buffer without being counted in one of them.

Thread model: one writer (the simulated kernel) and readers on other threads (FUSE). All state
is guarded by ``RingBuffer.exclusive`` (the lock, plus the lock-free writer's handshake);
``cond`` (on that lock) wakes blocked readers.
"""
from __future__ import annotations

import bisect
import heapq
import operator
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

PAGE_SIZE = 4096
PAGE_HEADER = 16
BUF_PAGE_SIZE = PAGE_SIZE - PAGE_HEADER            # 4080 data bytes per page
TYPE_DATA_MAX = 28
TYPE_PADDING = 29
TYPE_TIME_EXTEND = 30
TYPE_TIME_STAMP = 31
TS_SHIFT = 27
TS_MASK = (1 << TS_SHIFT) - 1
RB_MAX_SMALL_DATA = 4 * TYPE_DATA_MAX              # 112
RB_LEN_TIME_EXTEND = 8
RB_MISSED_EVENTS = 1 << 31
RB_MISSED_STORED = 1 << 30
DEFAULT_BUFFER_BYTES = 1_441_792                    # trace_buf_size default → 1410 KiB

_U32 = struct.Struct("<I")
_U32X2 = struct.Struct("<II")
_PAGE_HDR = struct.Struct("<Qq")
_U64 = struct.Struct("<Q")
_ZEROS: dict[int, bytes] = {}


def _zeros(n: int) -> bytes:
    """``n`` zero bytes (remembered: the tail of a read page)."""
    z = _ZEROS.get(n)
    if z is None:
        z = bytes(n)
        if len(_ZEROS) < 4096:
            _ZEROS[n] = z
    return z

def page_header_text(data_size: int = BUF_PAGE_SIZE) -> str:
    """``events/header_page`` (ring_buffer_print_page_header): the data size is the buffer's
    sub-buffer size less the page header."""
    return ("\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
            "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
            "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
            f"\tfield: char data;\toffset:16;\tsize:{data_size};\tsigned:0;\n")


HEADER_PAGE_TEXT = page_header_text()
HEADER_EVENT_TEXT = (
    "# compressed entry header\n"
    "\ttype_len    :    5 bits\n"
    "\ttime_delta  :   27 bits\n"
    "\tarray       :   32 bits\n"
    "\n"
    f"\tpadding     : type == {TYPE_PADDING}\n"
    f"\ttime_extend : type == {TYPE_TIME_EXTEND}\n"
    f"\ttime_stamp : type == {TYPE_TIME_STAMP}\n"
    f"\tdata max type_len  == {TYPE_DATA_MAX}\n"
)


def event_length(payload: int) -> int:
    """Total bytes of a data event with ``payload`` bytes (rb_calculate_event_length)."""
    length = payload or 1
    if length > RB_MAX_SMALL_DATA:
        length += 4
    length = (length + 4 + 3) & ~3
    if length == RB_LEN_TIME_EXTEND + 4:
        length += 4
    return length


_LENGTHS = {n: event_length(n) for n in range(512)}


def pages_for_kb(kb: int) -> int:
    """Pages per CPU for a ``buffer_size_kb`` write (DIV_ROUND_UP by 4080, at least 2)."""
    return max(2, -(-(kb << 10) // BUF_PAGE_SIZE))


@dataclass(frozen=True)
class Entry:
    """One event read back: its CPU, timestamp (trace clock units), payload and losses before it."""

    cpu: int
    ts: int
    data: bytes
    lost: int = 0


class Page:
    """One sub-buffer (a 4096-byte page unless ``buffer_subbuf_size_kb`` made it larger)
    being filled or waiting to be read."""

    __slots__ = ("buf", "write", "ts", "last_ts", "entries", "bytes")

    def __init__(self, size: int = PAGE_SIZE) -> None:
        self.buf = bytearray(size)
        self.write = 0          # data bytes used
        self.ts = 0             # page timestamp (first event)
        self.last_ts = 0        # time of the last event written
        self.entries = 0        # data events on the page
        self.bytes = 0          # bytes of data events (with headers and extends)


def decode_events(data: bytes | bytearray | memoryview, page_ts: int,
                  start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, int, bytes]]:
    """Walk the events of a page's data area: yields (offset, next offset, ts, payload).

    Padding and time extends advance time/offset but are not yielded.
    """
    end = len(data) if end is None else end
    ts = page_ts
    off = start
    while off + 4 <= end:
        (hdr,) = _U32.unpack_from(data, off)
        type_len = hdr & 31
        delta = hdr >> 5
        if type_len == TYPE_PADDING:
            if delta == 0:
                return
            (skip,) = _U32.unpack_from(data, off + 4)
            off += 4 + skip
            continue
        if type_len == TYPE_TIME_EXTEND:
            (hi,) = _U32.unpack_from(data, off + 4)
            ts += delta + (hi << TS_SHIFT)
            off += 8
            continue
        if type_len == TYPE_TIME_STAMP:
            (hi,) = _U32.unpack_from(data, off + 4)
            ts = delta + (hi << TS_SHIFT)
            off += 8
            continue
        ts += delta
        if type_len == 0:
            (length,) = _U32.unpack_from(data, off + 4)
            payload = bytes(data[off + 8:off + 4 + length])
            nxt = off + 4 + length
        else:
            payload = bytes(data[off + 4:off + 4 + type_len * 4])
            nxt = off + 4 + type_len * 4
        yield off, nxt, ts, payload
        off = nxt


def page_events(buf: bytes | bytearray, stamp: int, start: int,
                end: int) -> list[tuple[int, int, bytes]]:
    """The data events of a page buffer (header included) between data offsets ``start`` and
    ``end``, as (next offset, ts, payload): :func:`decode_events` in one pass, for readers that
    take a page's events at a time."""
    out: list[tuple[int, int, bytes]] = []
    append = out.append
    if type(buf) is not bytes or len(buf) & 3:
        # one copy of the page, so each payload is one slice (a bytearray's slice is another
        # bytearray to copy again), whole 32-bit words
        buf = bytes(buf[:PAGE_HEADER + end]) + bytes(-(PAGE_HEADER + end) & 3)
    # the header words read as machine integers (the page is little-endian, as x86's)
    words: Any = memoryview(buf).cast("I") if _LITTLE else _WordsLE(buf)
    ts = stamp
    off = PAGE_HEADER + start
    stop = PAGE_HEADER + end
    while off + 4 <= stop:
        hdr = words[off >> 2]
        type_len = hdr & 31
        if 0 < type_len <= TYPE_DATA_MAX:
            ts += hdr >> 5
            nxt = off + 4 + (type_len << 2)
            append((nxt - PAGE_HEADER, ts, buf[off + 4:nxt]))
            off = nxt
        elif type_len == 0:
            ts += hdr >> 5
            nxt = off + 4 + words[(off >> 2) + 1]
            append((nxt - PAGE_HEADER, ts, buf[off + 8:nxt]))
            off = nxt
        elif type_len == TYPE_PADDING:
            if hdr >> 5 == 0:
                break
            off += 4 + words[(off >> 2) + 1]
        else:
            ts = ((ts if type_len == TYPE_TIME_EXTEND else 0) + (hdr >> 5)
                  + (words[(off >> 2) + 1] << TS_SHIFT))
            off += 8
    return out


_LITTLE = sys.byteorder == "little"


class _WordsLE:
    """``memoryview.cast("I")`` of a little-endian buffer on a big-endian machine."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf

    def __getitem__(self, i: int) -> int:
        return int(_U32.unpack_from(self.buf, i << 2)[0])


def decode_page(page: bytes | bytearray) -> tuple[int, int, int, list[tuple[int, bytes]]]:
    """Decode a raw page: (timestamp, commit bytes, missed events or -1 if unknown/0, events)."""
    ts, commit = _PAGE_HDR.unpack_from(page, 0)
    size = commit & ~(RB_MISSED_EVENTS | RB_MISSED_STORED) & 0xFFFFFFFF
    missed = 0
    if commit & RB_MISSED_EVENTS:
        missed = -1
        if commit & RB_MISSED_STORED:
            (missed,) = struct.unpack_from("<Q", page, PAGE_HEADER + size)
    data = memoryview(page)[PAGE_HEADER:]
    events = [(t, p) for _, _, t, p in decode_events(data, ts, 0, size)]
    return ts, size, missed, events


_event_ts = operator.itemgetter(1)

# What reserve hands back for commit or discard: (page, its write offset and last timestamp
# before the reservation, bytes reserved).
Reservation = tuple[Page, int, int, int]


class CpuBuffer:
    """The pages of one CPU: ``pages[0]`` is the oldest, ``pages[-1]`` the one being written."""

    def __init__(self, cpu: int, nr_pages: int, data_size: int = BUF_PAGE_SIZE) -> None:
        self.cpu = cpu
        self.nr_pages = nr_pages
        self.data_size = data_size   # data bytes per sub-buffer (subbuf_size)
        self.overwrite = True
        self.record_disabled = False   # tracing_cpumask left this CPU out: nothing is written
        self.reset()

    def reset(self) -> None:
        self.pages: list[Page] = [Page(PAGE_HEADER + self.data_size)]
        self.read_off = 0          # consumer position in pages[0]
        self.read_stamp = 0        # time of the last consumed event of pages[0]
        self.read_entries = 0      # consumed events of pages[0]
        self.head_read_bytes = 0   # consumed bytes of pages[0]
        self.entries = 0
        self.overrun = 0
        self.read = 0
        self.dropped_events = 0
        self.commit_overrun = 0
        self.bytes = 0
        self.last_overrun = 0      # overrun already reported to the consumer
        self.prev_ts = 0           # the tail page's time before the last event placed

    # -- writer
    def _next_page(self, ts: int) -> Page | None:
        tail = self.pages[-1]
        room = self.data_size - tail.write
        if room >= 8:      # rb_reset_tail: a discarded event covering the rest of the page
            _U32X2.pack_into(tail.buf, PAGE_HEADER + tail.write, TYPE_PADDING | 1 << 5, room - 4)
        elif room >= 4:
            _U32.pack_into(tail.buf, PAGE_HEADER + tail.write, TYPE_PADDING)
        if len(self.pages) >= self.nr_pages:
            if not self.overwrite:
                return None
            # the oldest page, overwritten, becomes the new tail: pages are allocated once
            # (a page of an older sub-buffer size is not reused)
            page = self._drop_oldest()
            if len(page.buf) == PAGE_HEADER + self.data_size:
                page.write = page.entries = page.bytes = 0
            else:
                page = Page(PAGE_HEADER + self.data_size)
        else:
            page = Page(PAGE_HEADER + self.data_size)
        page.ts = page.last_ts = ts
        self.pages.append(page)
        return page

    def _drop_oldest(self) -> Page:
        old = self.pages.pop(0)
        self.overrun += old.entries - self.read_entries
        self.bytes -= old.bytes - self.head_read_bytes
        self._head_done()
        return old

    def _head_done(self) -> None:
        self.read_off = 0
        self.read_entries = 0
        self.head_read_bytes = 0

    def _place(self, ts: int, record: bytes) -> int:
        """The writer's one path: room for ``record`` on the tail page (moving to the next
        page, overwriting the oldest in overwrite mode), its header and a time extend written,
        the record copied in; the bytes taken, 0 when the buffer is full in producer-drop mode
        (counted in ``dropped_events``). ``prev_ts`` keeps the tail's time before the event,
        what a discard restores."""
        if self.record_disabled:
            return 0
        n = len(record)
        if n > self.data_size - 8:
            # ring_buffer_lock_reserve: a record longer than a sub-buffer's max_data_size
            # (its data size less two u32 words) is refused, and counted nowhere
            return 0
        length = _LENGTHS[n] if n < 512 else event_length(n)
        page = self.pages[-1]
        w = start = page.write
        delta = ts - page.last_ts
        if not w or not 0 <= delta <= TS_MASK or w + length > self.data_size:
            page = self._tail_for(ts, length)      # not the usual event: small, no extend
            if page is None:
                self.dropped_events += 1
                return 0
            w = start = page.write
            delta = max(ts - page.last_ts, 0) if w else 0
            if delta > TS_MASK:
                _U32X2.pack_into(page.buf, PAGE_HEADER + w,
                                 TYPE_TIME_EXTEND | (delta & TS_MASK) << 5, delta >> TS_SHIFT)
                w += RB_LEN_TIME_EXTEND
                delta = 0
        off = PAGE_HEADER + w
        buf = page.buf
        if length > RB_MAX_SMALL_DATA + 4:
            _U32X2.pack_into(buf, off, delta << 5, length - 4)
            buf[off + 8:off + 8 + n] = record
        else:
            _U32.pack_into(buf, off, (length - 4) >> 2 | delta << 5)
            buf[off + 4:off + 4 + n] = record
        need = w + length - start
        self.prev_ts = page.last_ts
        page.write = w + length
        page.last_ts = ts
        page.entries += 1
        page.bytes += need
        self.bytes += need
        return need

    def _tail_for(self, ts: int, length: int) -> Page | None:
        """The page an event of ``length`` bytes at ``ts`` goes on (with its time extend):
        the tail, stamped when empty, or the next page; None when full in producer-drop mode."""
        page = self.pages[-1]
        if not page.write:
            page.ts = page.last_ts = ts
            return page
        delta = ts - page.last_ts
        need = length + RB_LEN_TIME_EXTEND if delta > TS_MASK else length
        if page.write + need <= self.data_size:
            return page
        return self._next_page(ts)

    def reserve(self, ts: int, record: bytes) -> Reservation | None:
        """ring_buffer_lock_reserve with the fields written (see ``_place``). The model builds
        a record before reserving it (a BPF program reads it first), so the copy is the "write
        fields" step. None when dropped. The page's entry and byte counts move now, as the
        kernel's do; ``entries`` moves on :meth:`commit`. The caller holds ``RingBuffer.exclusive``
        from reserve to commit or discard, so no reader sees the record before it is
        committed."""
        need = self._place(ts, record)
        if not need:
            return None
        page = self.pages[-1]
        return page, page.write - need, self.prev_ts, need

    def commit(self, res: Reservation) -> None:
        """ring_buffer_unlock_commit: the reserved record becomes an entry readers see."""
        self.entries += 1

    def discard(self, res: Reservation) -> None:
        """ring_buffer_discard_commit: take back the reserved record (rb_try_to_discard: it is
        the last one, so its bytes are freed, not left as a padding event); not an entry."""
        page, write, last_ts, need = res
        page.buf[PAGE_HEADER + write:PAGE_HEADER + page.write] = bytes(page.write - write)
        page.write = write
        page.last_ts = last_ts
        page.entries -= 1
        page.bytes -= need
        self.bytes -= need

    def write(self, ts: int, record: bytes) -> bool:
        """ring_buffer_write: reserve and commit in one step; False when dropped (counted)."""
        if self._place(ts, record):
            self.entries += 1
            return True
        return False

    # -- readers
    def unread(self) -> int:
        return self.entries - self.overrun - self.read

    def peek(self) -> tuple[int, int, bytes] | None:
        """The next unconsumed event: (next offset, ts, payload), dropping read-out pages."""
        events = self.head_events()
        return events[0] if events else None

    def head_events(self) -> list[tuple[int, int, bytes]]:
        """The unconsumed events of the oldest page that has any, as (next offset, ts,
        payload), dropping read-out pages; empty when the CPU has nothing unread."""
        while True:
            page = self.pages[0]
            stamp = self.read_stamp if self.read_off else page.ts
            events = page_events(page.buf, stamp, self.read_off, page.write)
            if events or len(self.pages) == 1:
                return events
            self.pages.pop(0)
            self._head_done()

    def advance(self, nxt: int, ts: int, count: int = 1) -> None:
        """Consume ``count`` events of the head page, the last ending at ``nxt`` with time ``ts``."""
        page = self.pages[0]
        self.head_read_bytes += nxt - self.read_off
        self.bytes -= nxt - self.read_off
        self.read_off = nxt
        self.read_stamp = ts
        self.read_entries += count
        self.read += count
        if nxt >= page.write and len(self.pages) > 1:
            self.pages.pop(0)
            self._head_done()

    def take_lost(self) -> int:
        lost = self.overrun - self.last_overrun
        self.last_overrun = self.overrun
        return lost

    def snapshot(self) -> list[tuple[int, int, int, bytes]]:
        """(page ts / read stamp, start offset, commit, copy of the page up to its commit) of
        every unread page (offsets into the data area, as :func:`page_events` takes them)."""
        out = []
        for i, page in enumerate(self.pages):
            start = self.read_off if i == 0 else 0
            stamp = self.read_stamp if (i == 0 and self.read_off) else page.ts
            if page.write > start:
                out.append((stamp, start, page.write, bytes(page.buf[:PAGE_HEADER + page.write])))
        return out

    def oldest_ts(self) -> int:
        for i, page in enumerate(self.pages):
            if page.write > (self.read_off if i == 0 else 0):
                return page.ts
        return 0


def fixed_write_source(length: int, pack: str, fields: str, record: str, cpus: str, cpu: str,
                       ts: str) -> str:
    """Source lines (not indented) of ``CpuBuffer.write`` of one event of ``length`` bytes at
    ``ts`` on ``{cpus}[{cpu}]``, for writers that inline it (``fixed_writer``, the function
    tracers' per-function calls): the usual event (the tail page has room, the time delta fits
    the header, no time extend) packed straight into the page with its header,
    ``{pack}(page.buf, offset, header, {fields})``, and the counters moved; any other event
    is ``{record}`` (an expression making the record's bytes) through ``CpuBuffer._place``.
    Leaves ``written`` True or False (dropped) and the bytes and counters ``write`` leaves
    (``prev_ts``, which only a reservation's discard reads, is not kept). The caller holds the
    buffer (``exclusive``, or ``write_unlocked``'s handshake)."""
    if event_length(length - 4) != length or length > RB_MAX_SMALL_DATA + 4:
        raise ValueError("fixed_write_source takes whole events of the small form")
    return f"""\
cb = {cpus}[{cpu}]
page = cb.pages[-1]
w = page.write
delta = {ts} - page.last_ts
if (w and not delta >> {TS_SHIFT} and w <= cb.data_size - {length}
        and not cb.record_disabled):
    {pack}(page.buf, {PAGE_HEADER} + w, {(length - 4) >> 2} | delta << 5, {fields})
    page.write = w + {length}
    page.last_ts = {ts}
    page.entries += 1
    page.bytes += {length}
    cb.bytes += {length}
    cb.entries += 1
    written = True
elif cb._place({ts}, {record}):
    cb.entries += 1
    written = True
else:
    written = False
"""


def fixed_writer(record: struct.Struct) -> Callable[..., bool | None]:
    """A writer of fixed-size records of layout ``record`` (``ring_buffer_write`` of one
    ``struct``), for hot paths:

        write(rb, cpu, ts, *fields) -> True written, False dropped, None someone is in the
        buffer (nothing written: the caller writes under ``rb.exclusive``)

    Lock-free as ``RingBuffer.write_unlocked``; the write is ``fixed_write_source``'s (one
    ``pack_into`` of the header and the fields for the usual event, no record object)."""
    n = record.size
    length = event_length(n)
    if length > RB_MAX_SMALL_DATA + 4:
        raise ValueError("fixed_writer takes records of the small event form")
    event = struct.Struct("<I" + record.format.lstrip("<=!@>"))
    args = ", ".join(f"a{i}" for i in range(len(record.unpack(bytes(n)))))
    body = fixed_write_source(length, "pack_event", args, f"pack({args})", "rb.cpus", "cpu", "ts")
    source = (f"def write(rb, cpu, ts, {args}):\n"
              "    rb.writing = True\n"
              "    try:\n"
              "        if rb.others:\n"
              "            return None\n"
              + "".join(" " * 8 + line + "\n" for line in body.splitlines())
              + "        return written\n"
              "    finally:\n"
              "        rb.writing = False\n")
    env: dict[str, Any] = {"pack_event": event.pack_into, "pack": record.pack}
    exec(compile(source, f"<ring buffer writer {record.format}>", "exec"), env)
    writer: Callable[..., bool | None] = env["write"]
    return writer


class _Exclusive:
    """``with buf.exclusive:`` the buffer's lock, once any lock-free write in progress on
    another thread has ended (``RingBuffer.write_unlocked``); every path but that writer's
    holds it to touch the buffer, and ``cond`` waits inside it."""

    __slots__ = ("buf",)

    def __init__(self, buf: RingBuffer) -> None:
        self.buf = buf

    def __enter__(self) -> None:
        buf = self.buf
        buf.lock.acquire()
        buf.others += 1
        while buf.writing:
            time.sleep(0)          # let the writer's thread finish its write

    def __exit__(self, *exc: object) -> None:
        self.buf.others -= 1
        self.buf.lock.release()


class RingBuffer:
    """The per-CPU buffers of one trace array, with the locks and wake-ups readers need."""

    def __init__(self, ncpus: int, size_kb: int | None = None, overwrite: bool = True) -> None:
        nr = pages_for_kb(size_kb) if size_kb is not None else \
            -(-DEFAULT_BUFFER_BYTES // BUF_PAGE_SIZE)
        self.cpus = [CpuBuffer(i, nr) for i in range(ncpus)]
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.waiters = 0
        # The lock-free writer (``write_unlocked``) and everyone else (``exclusive``): see there.
        self.others = 0            # threads inside ``exclusive``
        self.writing = False       # a lock-free write is in progress
        self.exclusive = _Exclusive(self)
        self.set_overwrite(overwrite)

    # -- configuration
    def set_overwrite(self, overwrite: bool) -> None:
        with self.exclusive:
            self.overwrite = overwrite
            for cb in self.cpus:
                cb.overwrite = overwrite

    def size_kb(self, cpu: int) -> int:
        cb = self.cpus[cpu]
        return cb.nr_pages * cb.data_size >> 10

    @property
    def subbuf_data_size(self) -> int:
        """Data bytes of one sub-buffer (the kernel's buffer->subbuf_size)."""
        return self.cpus[0].data_size

    @property
    def subbuf_order(self) -> int:
        """log2 of a sub-buffer's size in pages (ring_buffer_subbuf_order_get)."""
        return (PAGE_HEADER + self.cpus[0].data_size).bit_length() - PAGE_SIZE.bit_length()

    def set_subbuf_order(self, order: int) -> None:
        """ring_buffer_subbuf_order_set: sub-buffers of ``PAGE_SIZE << order`` bytes; each CPU
        keeps its size in bytes (at least two sub-buffers) and loses its contents."""
        data = (PAGE_SIZE << order) - PAGE_HEADER
        with self.exclusive:
            for cb in self.cpus:
                cb.nr_pages = max(2, -(-(cb.nr_pages * cb.data_size) // data))
                cb.data_size = data
                cb.reset()

    def resize(self, kb: int, cpu: int | None = None) -> None:
        """Set the size of one CPU's buffer or of all; a shrink drops the oldest pages (overrun)."""
        nr = max(2, -(-(kb << 10) // self.cpus[0].data_size))
        with self.exclusive:
            for cb in (self.cpus if cpu is None else [self.cpus[cpu]]):
                cb.nr_pages = nr
                while len(cb.pages) > nr:
                    cb._drop_oldest()

    def reset(self, cpu: int | None = None) -> None:
        with self.exclusive:
            for cb in (self.cpus if cpu is None else [self.cpus[cpu]]):
                cb.reset()

    def swap_with(self, other: RingBuffer, cpu: int | None = None) -> None:
        """ring_buffer_swap_cpu (for every CPU, or one): the two buffers exchange their pages
        and counters; each keeps its identity, lock, mode and readers (a snapshot swaps the
        live buffer with the snapshot buffer this way)."""
        with self.exclusive, other.exclusive:
            for i in (range(len(self.cpus)) if cpu is None else [cpu]):
                self.cpus[i], other.cpus[i] = other.cpus[i], self.cpus[i]
                # each buffer keeps its CPUs' recording switch (tracing_cpumask)
                self.cpus[i].record_disabled, other.cpus[i].record_disabled = (
                    other.cpus[i].record_disabled, self.cpus[i].record_disabled)
                self.cpus[i].overwrite = self.overwrite
                other.cpus[i].overwrite = other.overwrite
            if self.waiters:
                self.cond.notify_all()

    # -- writer
    def write_unlocked(self, cpu: int, ts: int, record: bytes) -> bool | None:
        """``ring_buffer_write`` without the lock when nobody else is in the buffer; None when
        someone is (a reader, a control write): the caller then writes under ``exclusive``.

        The kernel's writer takes no lock either. Here writes are serialized by the kernel's
        lock and readers run on other threads, so the writer announces itself (``writing``)
        and then checks ``others``, while ``exclusive`` counts itself in ``others`` and then
        waits for ``writing`` to clear: one of the two always sees the other (the GIL orders
        the stores), so a reader never sees half a write and the writer pays no lock."""
        self.writing = True
        try:
            if self.others:
                return None
            cb = self.cpus[cpu]
            if cb._place(ts, record):
                cb.entries += 1
                return True
            return False
        finally:
            self.writing = False

    def reserve_unlocked(self, cpu: int, ts: int,
                         record: bytes) -> Reservation | None | Literal[False]:
        """``reserve`` on ``cpu`` without the lock, as ``write_unlocked``: the reservation
        (end it with ``end_unlocked``), None when dropped, False when someone is in the buffer
        (nothing reserved: the caller reserves under ``exclusive``)."""
        self.writing = True
        if self.others:
            self.writing = False
            return False
        try:
            res = self.cpus[cpu].reserve(ts, record)
        except BaseException:
            self.writing = False
            raise
        if res is None:
            self.writing = False
        return res

    def end_unlocked(self, cpu: int, res: Reservation, keep: bool) -> None:
        """Commit (``keep``) or discard a ``reserve_unlocked`` reservation; the writer leaves."""
        try:
            if keep:
                self.cpus[cpu].entries += 1
            else:
                self.cpus[cpu].discard(res)
        finally:
            self.writing = False

    def wake_waiters(self) -> None:
        """After a lock-free write: wake the blocked readers (the caller saw ``waiters``)."""
        with self.lock:
            self.cond.notify_all()

    def notify(self) -> None:
        """Wake blocked readers (the writer calls this after a commit, under ``lock``)."""
        if self.waiters:
            self.cond.notify_all()

    # -- readers
    def wait(self, cpu: int | None = None, timeout: float | None = None) -> bool:
        """Block until ``cpu`` (or any CPU) has unread events; False on timeout.

        A blocked reader holds the plain lock only (it reads counters, changes nothing), so
        writers stay lock-free meanwhile: one counts itself in ``waiters`` before its last look
        at the counters, the lock-free writer looks at ``waiters`` after its write and then
        wakes it under the lock (``wake_waiters``), so no wake-up is lost."""
        with self.lock:
            self.waiters += 1
            try:
                return self.cond.wait_for(lambda: self._has_data(cpu), timeout)
            finally:
                self.waiters -= 1

    def wake_all(self) -> None:
        """Wake every blocked reader (e.g. a reader being interrupted)."""
        with self.exclusive:
            self.cond.notify_all()

    def _has_data(self, cpu: int | None) -> bool:
        cbs = self.cpus if cpu is None else [self.cpus[cpu]]
        return any(cb.unread() > 0 for cb in cbs)

    def consume(self, cpu: int | None = None) -> Entry | None:
        """Take the oldest unread event (of ``cpu``, or the earliest across CPUs); None if empty.

        ``Entry.lost`` is the number of events of that CPU overwritten since the last consume.
        """
        with self.exclusive:
            best = None
            for cb in (self.cpus if cpu is None else [self.cpus[cpu]]):
                nxt = cb.peek()
                if nxt is not None and (best is None or nxt[1] < best[1][1]):
                    best = (cb, nxt)
            if best is None:
                return None
            cb, (off, ts, payload) = best
            cb.advance(off, ts)
            return Entry(cb.cpu, ts, payload, cb.take_lost())

    def consume_batch(self, cpu: int | None = None,
                      limit: int = 256) -> list[tuple[int, int, bytes, int]]:
        """Take up to ``limit`` of the oldest unread events at once, in the order ``consume``
        gives them (earliest timestamp first, the lower CPU on ties), as (cpu, ts, payload,
        lost). One lock hold, and each page's events decoded in one pass."""
        out: list[tuple[int, int, bytes, int]] = []
        append = out.append
        for c, lost, events in self.consume_runs(cpu, limit):
            for _, ts, payload in events:
                append((c, ts, payload, lost))
                lost = 0
        return out

    def consume_runs(self, cpu: int | None = None,
                     limit: int = 256) -> list[tuple[int, int, list[tuple[int, int, bytes]]]]:
        """``consume_batch`` in runs of one CPU's consecutive events: (cpu, events lost before
        the run, [(next offset, ts, payload), ...]), what a reader formatting a run at a time
        takes without a tuple per event."""
        out: list[tuple[int, int, list[tuple[int, int, bytes]]]] = []
        taken_total = 0
        with self.exclusive:
            runs: list[list[Any]] = []  # [cpu buffer, head page events, next index, taken]
            for cb in (self.cpus if cpu is None else [self.cpus[cpu]]):
                events = cb.head_events()
                if events:
                    runs.append([cb, events, 0, 0])
            append = out.append
            while runs and taken_total < limit:
                best = runs[0]
                if len(runs) > 1:
                    best_ts = best[1][best[2]][1]
                    for run in runs[1:]:
                        if run[1][run[2]][1] < best_ts:
                            best, best_ts = run, run[1][run[2]][1]
                cb, events, i, taken = best
                # take the events of this CPU that come before every other CPU's next one
                stop = len(events)
                before = True                  # runs before ``best`` (lower CPUs) win ties
                for run in runs:
                    if run is best:
                        before = False
                        continue
                    other_ts = run[1][run[2]][1]
                    cut = (bisect.bisect_left if before else bisect.bisect_right)(
                        events, other_ts, i, stop, key=_event_ts)
                    stop = min(stop, cut)
                stop = min(stop, i + limit - taken_total)
                lost = cb.take_lost() if cb.overrun != cb.last_overrun else 0
                append((cb.cpu, lost, events[i:stop] if i or stop < len(events) else events))
                taken_total += stop - i
                best[2] = stop
                best[3] = taken + stop - i
                if stop == len(events):
                    nxt, ts, _ = events[-1]
                    cb.advance(nxt, ts, best[3])
                    if taken_total >= limit:    # done: the next page is decoded next time
                        runs.remove(best)
                        break
                    more = cb.head_events()
                    if more:
                        best[1], best[2], best[3] = more, 0, 0
                    else:
                        runs.remove(best)
            for cb, events, i, taken in runs:
                if taken:
                    nxt, ts, _ = events[i - 1]
                    cb.advance(nxt, ts, taken)
        return out

    def iter_entries(self, cpu: int | None = None) -> Iterator[Entry]:
        """Non-consuming: the unread events at call time, merged across CPUs by timestamp."""
        return (Entry(c, ts, payload) for c, ts, payload, _ in self.iter_events(cpu))

    def iter_events(self, cpu: int | None = None) -> Iterator[tuple[int, int, bytes, int]]:
        """``iter_entries`` as (cpu, ts, payload, 0) tuples, the form ``consume_batch`` gives:
        the pages are copied under the lock, then decoded a page at a time and merged by
        timestamp (the lower CPU first on ties)."""
        with self.exclusive:
            snaps = [(cb.cpu, cb.snapshot()) for cb in
                     (self.cpus if cpu is None else [self.cpus[cpu]])]

        def per_cpu(c: int, pages: list[tuple[int, int, int, bytes]]
                    ) -> Iterator[tuple[int, int, bytes, int]]:
            for stamp, start, end, buf in pages:
                for _, ts, payload in page_events(buf, stamp, start, end):
                    yield c, ts, payload, 0
        return heapq.merge(*(per_cpu(c, p) for c, p in snaps), key=_event_ts)

    def read_page(self, cpu: int) -> bytes | None:
        """Consume one page of ``cpu`` for ``trace_pipe_raw``: 4096 bytes, or None if empty."""
        with self.exclusive:
            cb = self.cpus[cpu]
            while cb.read_off >= cb.pages[0].write and len(cb.pages) > 1:
                cb.pages.pop(0)                 # read out: the next page is the head
                cb._head_done()
            page = cb.pages[0]
            if cb.read_off >= page.write:
                return None
            start, stamp = cb.read_off, (cb.read_stamp if cb.read_off else page.ts)
            data = page.buf[PAGE_HEADER + start:PAGE_HEADER + page.write]
            n = page.entries - cb.read_entries  # the page's events not consumed yet
            # everything up to the commit is consumed in one step
            cb.bytes -= page.write - start
            cb.read += n
            if len(cb.pages) > 1:
                cb.pages.pop(0)
                cb._head_done()
            else:
                cb.head_read_bytes += page.write - start
                cb.read_entries += n
                cb.read_off = page.write
                cb.read_stamp = page.last_ts
            lost = cb.take_lost()
            size = len(data)
            commit = size
            tail = b""
            if lost:
                commit |= RB_MISSED_EVENTS
                if size + 8 <= cb.data_size:
                    tail = _U64.pack(lost)
                    commit |= RB_MISSED_STORED
            # the page in one copy: header, the data, the lost count, zeros to its end
            out = b"".join((_PAGE_HDR.pack(stamp, commit), data, tail,
                            _zeros(cb.data_size - size - len(tail))))
            return out

    # -- statistics
    def stats(self, cpu: int, now: int) -> dict[str, int]:
        """The numbers of ``per_cpu/cpuN/stats`` (timestamps in trace clock units)."""
        with self.exclusive:
            cb = self.cpus[cpu]
            return {
                "entries": cb.unread(), "overrun": cb.overrun,
                "commit overrun": cb.commit_overrun, "bytes": cb.bytes,
                "oldest event ts": cb.oldest_ts(), "now ts": now,
                "dropped events": cb.dropped_events, "read events": cb.read,
            }

    def entries(self) -> tuple[int, int]:
        """(entries in buffer, entries written) over all CPUs, as the trace header counts them."""
        with self.exclusive:
            inbuf = sum(cb.unread() for cb in self.cpus)
            return inbuf, inbuf + sum(cb.overrun for cb in self.cpus)
