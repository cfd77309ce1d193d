"""BPF maps: hash, array, per-CPU and LRU hashes, ring buffer, and the special maps tracing tools
use (program arrays, perf event arrays, stack traces, queues/stacks, bloom filters, LPM tries,
maps of maps).

Values live in one preallocated bytearray per map (the kernel preallocates hash elements too), so a
map is a single memory region for the VM and a value pointer handed to a program stays valid while
the element exists.  Per-CPU maps keep ``ncpus`` consecutive values per slot; a program sees the
value of the CPU it runs on.  Map-type numbers, flags and errno values are the kernel's (uapi
``enum bpf_map_type``, ``BPF_ANY``/``BPF_NOEXIST``/``BPF_EXIST``).  ``create_map`` applies the
kernel's ``map_alloc_check`` of each type (kernel/bpf/arraymap.c, hashtab.c, stackmap.c,
queue_stack_maps.c, bloom_filter.c, lpm_trie.c, ringbuf.c) with its errno.
"""
from __future__ import annotations

import errno
from collections import OrderedDict
from collections.abc import Iterator
from typing import cast

from tracesim.filters.bpf.parts import Part

# uapi enum bpf_map_type
MAP_TYPE_HASH = 1
MAP_TYPE_ARRAY = 2
MAP_TYPE_PROG_ARRAY = 3
MAP_TYPE_PERF_EVENT_ARRAY = 4
MAP_TYPE_PERCPU_HASH = 5
MAP_TYPE_PERCPU_ARRAY = 6
MAP_TYPE_STACK_TRACE = 7
MAP_TYPE_LRU_HASH = 9
MAP_TYPE_LRU_PERCPU_HASH = 10
MAP_TYPE_LPM_TRIE = 11
MAP_TYPE_ARRAY_OF_MAPS = 12
MAP_TYPE_HASH_OF_MAPS = 13
MAP_TYPE_QUEUE = 22
MAP_TYPE_STACK = 23
MAP_TYPE_RINGBUF = 27
MAP_TYPE_BLOOM_FILTER = 30
MAX_MAP_TYPE = 34          # __MAX_BPF_MAP_TYPE in 6.18 (after BPF_MAP_TYPE_ARENA)
MAP_TYPE_NAMES = {MAP_TYPE_HASH: "hash", MAP_TYPE_ARRAY: "array",
                  MAP_TYPE_PROG_ARRAY: "prog_array", MAP_TYPE_PERF_EVENT_ARRAY: "perf_event_array",
                  MAP_TYPE_PERCPU_HASH: "percpu_hash", MAP_TYPE_PERCPU_ARRAY: "percpu_array",
                  MAP_TYPE_STACK_TRACE: "stack_trace", MAP_TYPE_LRU_HASH: "lru_hash",
                  MAP_TYPE_LRU_PERCPU_HASH: "lru_percpu_hash", MAP_TYPE_LPM_TRIE: "lpm_trie",
                  MAP_TYPE_ARRAY_OF_MAPS: "array_of_maps", MAP_TYPE_HASH_OF_MAPS: "hash_of_maps",
                  MAP_TYPE_QUEUE: "queue", MAP_TYPE_STACK: "stack", MAP_TYPE_RINGBUF: "ringbuf",
                  MAP_TYPE_BLOOM_FILTER: "bloom_filter"}

# map update flags
BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2

# map_flags (uapi)
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_NO_COMMON_LRU = 1 << 1
BPF_F_NUMA_NODE = 1 << 2
BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4
BPF_F_STACK_BUILD_ID = 1 << 5
BPF_F_ZERO_SEED = 1 << 6
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_WRONLY_PROG = 1 << 8
BPF_F_MMAPABLE = 1 << 10
BPF_F_PRESERVE_ELEMS = 1 << 11
BPF_F_INNER_MAP = 1 << 12
ENOTSUPP = 524             # the kernel-internal errno some checks return (LRU without prealloc)


class MapError(Exception):
    """A map operation that fails; ``errno`` is what the kernel returns (negated in helpers)."""

    def __init__(self, err: int, message: str) -> None:
        super().__init__(message)
        self.errno = err


class BpfMap:
    """What every map has: the definition (as the verifier reads it) and a name."""
    percpu = False

    def __init__(self, name: str, map_type: int, key_size: int, value_size: int,
                 max_entries: int, flags: int = 0, ncpus: int = 1) -> None:
        self.name, self.map_type, self.flags = name, map_type, flags
        self.key_size, self.value_size, self.max_entries = key_size, value_size, max_entries
        self.ncpus = ncpus if self.percpu else 1
        self.key_type = self.value_type = 0        # BTF type ids, when the object has BTF
        self.values = bytearray(value_size * max_entries * self.ncpus)

    def _slot_offset(self, slot: int, cpu: int) -> int:
        return (slot * self.ncpus + (cpu if self.percpu else 0)) * self.value_size

    def _check_key(self, key: bytes) -> None:
        if len(key) != self.key_size:
            raise MapError(errno.EINVAL, f"key of {len(key)} bytes, map {self.name} has "
                                         f"key_size={self.key_size}")

    def _check_value(self, value: bytes) -> bytes:
        want = self.value_size * self.ncpus
        if len(value) == self.value_size and self.percpu:
            value = value * self.ncpus
        if len(value) != want:
            raise MapError(errno.EINVAL, f"value of {len(value)} bytes, map {self.name} needs "
                                         f"{want}")
        return value

    # -- the interface programs use (through helpers) ---------------------------------------------
    def lookup_offset(self, key: bytes, cpu: int = 0) -> int | None:
        """Offset into ``values`` of the element's value for ``cpu``, or None."""
        raise NotImplementedError

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        raise NotImplementedError

    def delete(self, key: bytes) -> None:
        raise NotImplementedError

    def keys(self) -> Iterator[bytes]:
        raise NotImplementedError

    # -- the interface user space uses ---------------------------------------------------------
    def direct_value(self) -> bytearray:
        """The buffer a PSEUDO_MAP_VALUE reference points into (array maps: global data)."""
        if self.map_type != MAP_TYPE_ARRAY:
            raise MapError(errno.EINVAL, f"map {self.name} has no direct value access")
        return self.values

    def lookup(self, key: bytes) -> bytes | list[bytes] | None:
        """The value (per-CPU maps: one value per CPU), or None."""
        self._check_key(key)
        off = self.lookup_offset(key, 0)
        if off is None:
            return None
        if self.percpu:
            vs = self.value_size
            return [bytes(self.values[off + c * vs:off + (c + 1) * vs]) for c in range(self.ncpus)]
        return bytes(self.values[off:off + self.value_size])

    def items(self) -> Iterator[tuple[bytes, bytes | list[bytes]]]:
        for k in list(self.keys()):
            v = self.lookup(k)
            if v is not None:
                yield k, v

    def describe(self) -> str:
        return (f"{self.name}: type {MAP_TYPE_NAMES.get(self.map_type, self.map_type)} "
                f"key {self.key_size}B value {self.value_size}B max_entries {self.max_entries}")


class ArrayMap(BpfMap):
    def lookup_offset(self, key: bytes, cpu: int = 0) -> int | None:
        index = int.from_bytes(key[:4], "little")
        if index >= self.max_entries:
            return None
        return self._slot_offset(index, cpu)

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        self._check_key(key)
        if flags == BPF_NOEXIST:
            raise MapError(errno.EEXIST, "array elements always exist")
        if flags not in (BPF_ANY, BPF_EXIST):
            raise MapError(errno.EINVAL, f"invalid flags {flags}")
        index = int.from_bytes(key[:4], "little")
        if index >= self.max_entries:
            raise MapError(errno.E2BIG, f"index {index} >= max_entries {self.max_entries}")
        value = self._check_value(value)
        off = self._slot_offset(index, 0)
        self.values[off:off + len(value)] = value

    def delete(self, key: bytes) -> None:
        raise MapError(errno.EINVAL, "array elements cannot be deleted")

    def keys(self) -> Iterator[bytes]:
        return (i.to_bytes(4, "little") for i in range(self.max_entries))


class PerCpuArrayMap(ArrayMap):
    percpu = True


class HashMap(BpfMap):
    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.slots: dict[bytes, int] = {}
        self.free = list(range(self.max_entries - 1, -1, -1))

    def lookup_offset(self, key: bytes, cpu: int = 0) -> int | None:
        slot = self.slots.get(key)
        return None if slot is None else self._slot_offset(slot, cpu)

    def _new_slot(self, key: bytes) -> int:
        if not self.free:
            raise MapError(errno.E2BIG, f"map {self.name} is full ({self.max_entries} entries)")
        slot = self.free.pop()
        self.slots[key] = slot
        return slot

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        self._check_key(key)
        if flags not in (BPF_ANY, BPF_NOEXIST, BPF_EXIST):
            raise MapError(errno.EINVAL, f"invalid flags {flags}")
        value = self._check_value(value)
        slot = self.slots.get(key)
        if slot is not None and flags == BPF_NOEXIST:
            raise MapError(errno.EEXIST, "element exists")
        if slot is None:
            if flags == BPF_EXIST:
                raise MapError(errno.ENOENT, "no such element")
            slot = self._new_slot(key)
        off = self._slot_offset(slot, 0)
        self.values[off:off + len(value)] = value

    def delete(self, key: bytes) -> None:
        self._check_key(key)
        slot = self.slots.pop(key, None)
        if slot is None:
            raise MapError(errno.ENOENT, "no such element")
        self.free.append(slot)

    def keys(self) -> Iterator[bytes]:
        return iter(self.slots)


class PerCpuHashMap(HashMap):
    percpu = True


class LruHashMap(HashMap):
    """Full map: the least recently used element makes room (lookups refresh recency)."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.slots: OrderedDict[bytes, int] = OrderedDict()

    def lookup_offset(self, key: bytes, cpu: int = 0) -> int | None:
        slot = self.slots.get(key)
        if slot is None:
            return None
        self.slots.move_to_end(key)
        return self._slot_offset(slot, cpu)

    def _new_slot(self, key: bytes) -> int:
        if not self.free:
            _, slot = self.slots.popitem(last=False)
            self.free.append(slot)
        return super()._new_slot(key)


# bpf_ringbuf_query flags (uapi)
BPF_RB_AVAIL_DATA, BPF_RB_RING_SIZE, BPF_RB_CONS_POS, BPF_RB_PROD_POS = 0, 1, 2, 3
BPF_RB_NO_WAKEUP, BPF_RB_FORCE_WAKEUP = 1, 2
RINGBUF_MAX_RECORD_SZ = 0xFFFF_FFFF // 4

# Record states, as the header's BPF_RINGBUF_BUSY_BIT / BPF_RINGBUF_DISCARD_BIT say.
BUSY, COMMITTED, DISCARDED = "busy", "committed", "discarded"


class RingRecord:
    """One record between producer and consumer: its sample (the bytes a program fills in
    place after ``reserve``), its header position and state."""
    __slots__ = ("pos", "length", "data", "state")

    def __init__(self, pos: int, data: bytearray, state: str) -> None:
        self.pos, self.data, self.state = pos, data, state
        self.length = (len(data) + RingBufMap.HDR + 7) & ~7


class RingBufMap(BpfMap):
    """BPF_MAP_TYPE_RINGBUF (kernel/bpf/ringbuf.c): ``max_entries`` is the data size in bytes (a
    power of 2, multiple of the page size).  Producer and consumer positions only grow; a
    reservation takes ``round_up(size + 8, 8)`` bytes and fails when the producer would get
    ``size`` or more bytes ahead of the consumer.  Records are consumed in reservation order,
    up to the first one still reserved (busy); discarded ones are skipped."""
    HDR = 8  # BPF_RINGBUF_HDR_SZ

    def __init__(self, name: str, map_type: int, key_size: int, value_size: int,
                 max_entries: int, flags: int = 0, ncpus: int = 1) -> None:
        self.name, self.map_type, self.flags = name, map_type, flags
        self.key_size, self.value_size, self.max_entries = 0, 0, max_entries
        self.ncpus = 1
        self.values = bytearray()
        self.ring: list[RingRecord] = []      # records not consumed yet, oldest first
        self.producer_pos = 0
        self.consumer_pos = 0
        self.dropped = 0

    # -- producer side (the helpers) -----------------------------------------------------------
    def reserve(self, size: int) -> RingRecord | None:
        """__bpf_ringbuf_reserve: a busy record of ``size`` bytes, or None (no room)."""
        if size > RINGBUF_MAX_RECORD_SZ:
            return None
        rec = RingRecord(self.producer_pos, bytearray(size), BUSY)
        mask = self.max_entries - 1
        new_prod = self.producer_pos + rec.length
        pending = next((r.pos for r in self.ring if r.state == BUSY), self.producer_pos)
        if rec.length > self.max_entries or new_prod - self.consumer_pos > mask or \
                new_prod - pending > mask:
            return None
        self.ring.append(rec)
        self.producer_pos = new_prod
        return rec

    def commit(self, rec: RingRecord, discard: bool = False) -> None:
        """bpf_ringbuf_commit: the record is complete (submit) or skipped (discard)."""
        rec.state = DISCARDED if discard else COMMITTED

    def output(self, data: bytes) -> int:
        """bpf_ringbuf_output: 0, or -EAGAIN (counted in ``dropped``) when there is no room."""
        rec = self.reserve(len(data))
        if rec is None:
            self.dropped += 1
            return -errno.EAGAIN
        rec.data[:] = data
        self.commit(rec)
        return 0

    def query(self, flags: int) -> int:
        """bpf_ringbuf_query; unknown flags give 0, as in the kernel."""
        if flags == BPF_RB_AVAIL_DATA:
            return self.producer_pos - self.consumer_pos
        if flags == BPF_RB_RING_SIZE:
            return self.max_entries
        if flags == BPF_RB_CONS_POS:
            return self.consumer_pos
        if flags == BPF_RB_PROD_POS:
            return self.producer_pos
        return 0

    # -- consumer side -------------------------------------------------------------------------
    @property
    def records(self) -> list[bytes]:
        """Committed samples a consumer would read now."""
        out = []
        for rec in self.ring:
            if rec.state == BUSY:
                break
            if rec.state == COMMITTED:
                out.append(bytes(rec.data))
        return out

    def consume(self) -> list[bytes]:
        """Read every record up to the first busy one, advancing the consumer position."""
        out = self.records
        while self.ring and self.ring[0].state != BUSY:
            self.consumer_pos += self.ring.pop(0).length
        return out

    def lookup_offset(self, key: bytes, cpu: int = 0) -> int | None:
        return None

    def keys(self) -> Iterator[bytes]:
        return iter(())

    def describe(self) -> str:
        return (f"{self.name}: type ringbuf size {self.max_entries} pending "
                f"{len(self.records)} dropped {self.dropped}")


class LruPerCpuHashMap(LruHashMap):
    percpu = True


class LpmTrieMap(HashMap):
    """BPF_MAP_TYPE_LPM_TRIE: keys are ``struct bpf_lpm_trie_key_u8`` (u32 prefixlen, then the
    data); a lookup finds the longest stored prefix that covers the key's first ``prefixlen``
    bits, update and delete work on exact prefixes (bits past the prefix are ignored)."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.max_prefixlen = (self.key_size - 4) * 8

    def _prefix(self, key: bytes) -> tuple[int, int]:
        """(prefixlen, data as a big-endian number masked to the prefix); EINVAL past max."""
        plen = int.from_bytes(key[:4], "little")
        if plen > self.max_prefixlen:
            raise MapError(errno.EINVAL, f"prefixlen {plen} > {self.max_prefixlen}")
        data = int.from_bytes(key[4:], "big")
        return plen, data >> (self.max_prefixlen - plen) << (self.max_prefixlen - plen)

    def _norm(self, key: bytes) -> bytes:
        plen, data = self._prefix(key)
        return plen.to_bytes(4, "little") + data.to_bytes(self.key_size - 4, "big")

    def lookup_offset(self, key: bytes, cpu: int = 0) -> int | None:
        plen = min(int.from_bytes(key[:4], "little"), self.max_prefixlen)
        data = int.from_bytes(key[4:], "big")
        width = self.max_prefixlen
        for p in range(plen, -1, -1):          # longest prefix first
            masked = data >> (width - p) << (width - p)
            slot = self.slots.get(p.to_bytes(4, "little") + masked.to_bytes(self.key_size - 4, "big"))
            if slot is not None:
                return self._slot_offset(slot, cpu)
        return None

    def lookup(self, key: bytes) -> bytes | list[bytes] | None:
        self._check_key(key)
        off = self.lookup_offset(key)
        return None if off is None else bytes(self.values[off:off + self.value_size])

    def _new_slot(self, key: bytes) -> int:
        if not self.free:
            raise MapError(errno.ENOSPC, f"map {self.name} is full ({self.max_entries} entries)")
        return super()._new_slot(key)

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        self._check_key(key)
        super().update(self._norm(key), value, flags)

    def delete(self, key: bytes) -> None:
        self._check_key(key)
        super().delete(self._norm(key))


class QueueStackMap(BpfMap):
    """BPF_MAP_TYPE_QUEUE (FIFO) and BPF_MAP_TYPE_STACK (LIFO): no keys; push (update with
    BPF_EXIST overwrites the oldest element when full), pop and peek; -ENOENT when empty."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.values = bytearray(self.value_size)     # the buffer a peeked/popped value goes to
        self.elems: list[bytes] = []

    def push(self, value: bytes, flags: int = BPF_ANY) -> None:
        if flags & ~BPF_EXIST:
            raise MapError(errno.EINVAL, f"invalid flags {flags}")
        if len(value) != self.value_size:
            raise MapError(errno.EINVAL, f"value of {len(value)} bytes, map {self.name} has "
                                         f"value_size={self.value_size}")
        if len(self.elems) >= self.max_entries:
            if not flags & BPF_EXIST:
                raise MapError(errno.E2BIG, f"map {self.name} is full")
            self.elems.pop(0)                  # the oldest goes, for both kinds
        self.elems.append(bytes(value))

    def _top(self) -> int:
        if not self.elems:
            raise MapError(errno.ENOENT, f"map {self.name} is empty")
        return 0 if self.map_type == MAP_TYPE_QUEUE else len(self.elems) - 1

    def peek(self) -> bytes:
        return self.elems[self._top()]

    def pop(self) -> bytes:
        return self.elems.pop(self._top())

    # the syscall commands: update = push, lookup = peek, lookup_and_delete = pop
    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        self.push(value, flags)

    def lookup(self, key: bytes) -> bytes | None:
        try:
            return self.peek()
        except MapError:
            return None

    def lookup_offset(self, key: bytes, cpu: int = 0) -> int | None:
        return None

    def delete(self, key: bytes) -> None:
        raise MapError(errno.EINVAL, f"{MAP_TYPE_NAMES[self.map_type]} maps have no delete")

    def keys(self) -> Iterator[bytes]:
        return iter(())

    def describe(self) -> str:
        return super().describe() + f" elements {len(self.elems)}"


class BloomFilterMap(BpfMap):
    """BPF_MAP_TYPE_BLOOM_FILTER: push adds a value, peek says whether it may be present (0) or
    surely is not (-ENOENT).  ``map_extra``'s low 4 bits are the number of hash functions
    (0: 5); the bit array is sized as kernel/bpf/bloom_filter.c sizes it."""

    def __init__(self, *args, map_extra: int = 0, **kw) -> None:
        super().__init__(*args, **kw)
        self.values = bytearray()
        self.nr_hashes = (map_extra & 0xF) or 5
        nr_bits = self.max_entries * self.nr_hashes // 5 * 7
        nr_bits = 64 if nr_bits <= 64 else 1 << (nr_bits - 1).bit_length()
        self.nr_bits = min(nr_bits, 1 << 31)
        self.bits = bytearray(self.nr_bits // 8)

    def _positions(self, value: bytes) -> Iterator[int]:
        for i in range(self.nr_hashes):
            yield jhash(value, i) & (self.nr_bits - 1)

    def push(self, value: bytes, flags: int = BPF_ANY) -> None:
        if flags != BPF_ANY:
            raise MapError(errno.EINVAL, f"invalid flags {flags}")
        for b in self._positions(value):
            self.bits[b >> 3] |= 1 << (b & 7)

    def peek(self, value: bytes) -> bool:
        return all(self.bits[b >> 3] >> (b & 7) & 1 for b in self._positions(value))

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        if len(value) != self.value_size:
            raise MapError(errno.EINVAL, f"value of {len(value)} bytes, map {self.name} has "
                                         f"value_size={self.value_size}")
        self.push(value, flags)

    def lookup(self, key: bytes) -> bytes | None:
        raise MapError(errno.EOPNOTSUPP, "bloom filters are queried by value (peek)")

    def lookup_offset(self, key: bytes, cpu: int = 0) -> int | None:
        return None

    def delete(self, key: bytes) -> None:
        raise MapError(errno.EOPNOTSUPP, "bloom filters have no delete")

    def keys(self) -> Iterator[bytes]:
        return iter(())


class FdArrayMap(BpfMap):
    """What PROG_ARRAY, PERF_EVENT_ARRAY and ARRAY_OF_MAPS share (kernel/bpf/arraymap.c's fd
    arrays): u32 index -> an object (program, perf event, map).  Programs never see the slots
    as memory; ``update`` from user space takes the object itself (the kernel's fd)."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.values = bytearray()
        self.slots: dict[int, object] = {}

    def _index(self, key: bytes) -> int:
        self._check_key(key)
        index = int.from_bytes(key, "little")
        if index >= self.max_entries:
            raise MapError(errno.E2BIG, f"index {index} >= max_entries {self.max_entries}")
        return index

    def check_object(self, obj: object) -> None:
        """EINVAL (or EBADF) unless ``obj`` may go into this map."""

    def set(self, index: int, obj: object, flags: int = BPF_ANY) -> None:
        if flags > BPF_EXIST:
            raise MapError(errno.EINVAL, f"invalid flags {flags}")
        if flags == BPF_NOEXIST:
            raise MapError(errno.EEXIST, "array elements always exist")
        if index >= self.max_entries:
            raise MapError(errno.E2BIG, f"index {index} >= max_entries {self.max_entries}")
        self.check_object(obj)
        self.slots[index] = obj

    def get(self, index: int) -> object | None:
        return self.slots.get(index)

    def update(self, key: bytes, value: object, flags: int = BPF_ANY) -> None:
        self.set(self._index(key), value, flags)

    def delete(self, key: bytes) -> None:
        if self.slots.pop(self._index(key), None) is None:
            raise MapError(errno.ENOENT, "no such element")

    def lookup(self, key: bytes) -> bytes | None:
        obj = self.slots.get(self._index(key))
        return None if obj is None else getattr(obj, "id", 0).to_bytes(4, "little")

    def lookup_offset(self, key: bytes, cpu: int = 0) -> int | None:
        return None

    def keys(self) -> Iterator[bytes]:
        return (i.to_bytes(4, "little") for i in sorted(self.slots))


class ProgArrayMap(FdArrayMap):
    """BPF_MAP_TYPE_PROG_ARRAY: the targets of bpf_tail_call.  A slot holds a loaded program
    (anything with a ``runner`` and a ``prog_type``); all must have one program type
    (bpf_prog_map_compatible: EINVAL otherwise)."""

    def check_object(self, obj: object) -> None:
        if getattr(obj, "runner", None) is None:
            raise MapError(errno.EINVAL, "a program array holds loaded programs")
        types = {getattr(p, "prog_type", None) for p in self.slots.values()}
        if types and getattr(obj, "prog_type", None) not in types:
            raise MapError(errno.EINVAL, f"program type {getattr(obj, 'prog_type', None)} does not match the "
                                         f"programs of {self.name}")


PERF_RECORD_SAMPLE, PERF_RECORD_LOST = 9, 2


class PerfBuffer:
    """The per-CPU buffer of one BPF-output perf event (what libbpf's perf_buffer opens):
    ``samples`` are the raw records not read yet; ``lost`` counts those that did not fit.
    ``size``: bytes of its data pages (``page_cnt`` pages)."""

    def __init__(self, cpu: int, size: int) -> None:
        self.cpu, self.size = cpu, size
        self.samples: list[bytes] = []
        self.used = 0
        self.lost = 0

    @staticmethod
    def record_size(n: int) -> int:
        """perf_event_header (8) + u32 size + raw data, padded to 8 bytes."""
        return 8 + ((4 + n + 7) & ~7)

    def output(self, data: bytes) -> int:
        need = self.record_size(len(data))
        if self.used + need > self.size:
            self.lost += 1
            return -errno.ENOSPC
        self.samples.append(bytes(data))
        self.used += need
        return 0

    def consume(self) -> list[bytes]:
        out, self.samples, self.used = self.samples, [], 0
        return out


class PerfEventArrayMap(FdArrayMap):
    """BPF_MAP_TYPE_PERF_EVENT_ARRAY: index (usually the CPU) -> a perf event's buffer, which
    bpf_perf_event_output writes into.  ``open_buffers`` does what libbpf's perf_buffer__new
    does: one BPF-output event per CPU, stored at index = cpu."""

    def check_object(self, obj: object) -> None:
        if not isinstance(obj, PerfBuffer):
            raise MapError(errno.EINVAL, "a perf event array holds perf events")

    def open_buffers(self, ncpus: int, page_cnt: int = 8) -> list[PerfBuffer]:
        bufs = [PerfBuffer(cpu, page_cnt * 4096) for cpu in range(min(ncpus, self.max_entries))]
        for b in bufs:
            self.set(b.cpu, b)
        return bufs


class MapOfMapsMixin(Part):
    """ARRAY_OF_MAPS / HASH_OF_MAPS: values are maps shaped like ``inner`` (the template the
    kernel takes from ``inner_map_fd``): same type, key and value size, and max_entries unless
    the template has BPF_F_INNER_MAP (bpf_map_meta_equal: EINVAL)."""
    inner: BpfMap

    def check_object(self, obj: object) -> None:
        t = self.inner
        if not isinstance(obj, BpfMap) or (obj.map_type, obj.key_size, obj.value_size) != \
                (t.map_type, t.key_size, t.value_size) or \
                (not t.flags & BPF_F_INNER_MAP and obj.max_entries != t.max_entries):
            raise MapError(errno.EINVAL, f"map does not match the inner map of {self.name}")

    def inner_map(self, key: bytes) -> BpfMap | None:
        """The map stored under ``key`` (what a program's lookup returns), or None."""
        try:
            return self.slots.get(self._index(key))
        except MapError:
            return None


class ArrayOfMapsMap(MapOfMapsMixin, FdArrayMap):
    pass


class HashOfMapsMap(MapOfMapsMixin, FdArrayMap):
    """Keys of any size; the slots dict is keyed by the key bytes."""

    def _index(self, key: bytes) -> bytes:          # type: ignore[override]
        self._check_key(key)
        return key

    def set(self, index, obj: object, flags: int = BPF_ANY) -> None:
        if flags > BPF_EXIST:
            raise MapError(errno.EINVAL, f"invalid flags {flags}")
        exists = index in self.slots
        if exists and flags == BPF_NOEXIST:
            raise MapError(errno.EEXIST, "element exists")
        if not exists and flags == BPF_EXIST:
            raise MapError(errno.ENOENT, "no such element")
        if not exists and len(self.slots) >= self.max_entries:
            raise MapError(errno.E2BIG, f"map {self.name} is full ({self.max_entries} entries)")
        self.check_object(obj)
        self.slots[index] = obj

    def keys(self) -> Iterator[bytes]:
        return iter(list(cast("dict[bytes, object]", self.slots)))   # keyed by key bytes here


PERF_MAX_STACK = 127        # sysctl kernel.perf_event_max_stack
BPF_F_REUSE_STACKID = 1 << 10


class StackTraceMap(BpfMap):
    """BPF_MAP_TYPE_STACK_TRACE: stack id (a bucket: jhash2 of the ips & (buckets - 1)) -> the
    ips, zero-padded to value_size.  Programs fill it only through bpf_get_stackid."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.values = bytearray()
        self.n_buckets = 1 << (self.max_entries - 1).bit_length()
        self.buckets: dict[int, tuple[int, ...]] = {}

    def store(self, ips: tuple[int, ...], flags: int) -> int:
        """get_stackid's bucket logic: the id, or -EEXIST for a collision without
        BPF_F_REUSE_STACKID."""
        raw = b"".join(ip.to_bytes(8, "little") for ip in ips)
        stack_id = jhash2(raw, 0) & (self.n_buckets - 1)
        old = self.buckets.get(stack_id)
        if old == ips:
            return stack_id
        if old is not None and not flags & BPF_F_REUSE_STACKID:
            return -errno.EEXIST
        self.buckets[stack_id] = ips
        return stack_id

    def lookup(self, key: bytes) -> bytes | None:
        self._check_key(key)
        ips = self.buckets.get(int.from_bytes(key, "little"))
        if ips is None:
            return None
        raw = b"".join(ip.to_bytes(8, "little") for ip in ips)
        return raw + bytes(self.value_size - len(raw))

    def lookup_offset(self, key: bytes, cpu: int = 0) -> int | None:
        return None

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        raise MapError(errno.EINVAL, "stack trace maps are filled by bpf_get_stackid")

    def delete(self, key: bytes) -> None:
        self._check_key(key)
        if self.buckets.pop(int.from_bytes(key, "little"), None) is None:
            raise MapError(errno.ENOENT, "no such element")

    def keys(self) -> Iterator[bytes]:
        return (i.to_bytes(4, "little") for i in sorted(self.buckets))


# ---------------------------------------------------------------- jhash (include/linux/jhash.h)

def _rol(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    M = 0xFFFFFFFF
    a = (a - c) & M; a ^= _rol(c, 4); c = (c + b) & M          # noqa: E702
    b = (b - a) & M; b ^= _rol(a, 6); a = (a + c) & M          # noqa: E702
    c = (c - b) & M; c ^= _rol(b, 8); b = (b + a) & M          # noqa: E702
    a = (a - c) & M; a ^= _rol(c, 16); c = (c + b) & M         # noqa: E702
    b = (b - a) & M; b ^= _rol(a, 19); a = (a + c) & M         # noqa: E702
    c = (c - b) & M; c ^= _rol(b, 4); b = (b + a) & M          # noqa: E702
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    M = 0xFFFFFFFF
    c ^= b; c = (c - _rol(b, 14)) & M          # noqa: E702
    a ^= c; a = (a - _rol(c, 11)) & M          # noqa: E702
    b ^= a; b = (b - _rol(a, 25)) & M          # noqa: E702
    c ^= b; c = (c - _rol(b, 16)) & M          # noqa: E702
    a ^= c; a = (a - _rol(c, 4)) & M           # noqa: E702
    b ^= a; b = (b - _rol(a, 14)) & M          # noqa: E702
    c ^= b; c = (c - _rol(b, 24)) & M          # noqa: E702
    return c


def _jhash_words(words: list[int], initval: int, length: int) -> int:
    a = b = c = (0xDEADBEEF + length + initval) & 0xFFFFFFFF
    while len(words) > 3:
        a, b, c = (a + words[0]) & 0xFFFFFFFF, (b + words[1]) & 0xFFFFFFFF, \
            (c + words[2]) & 0xFFFFFFFF
        a, b, c = _mix(a, b, c)
        words = words[3:]
    if not words:
        return c
    words = words + [0] * (3 - len(words))
    return _final((a + words[0]) & 0xFFFFFFFF, (b + words[1]) & 0xFFFFFFFF,
                  (c + words[2]) & 0xFFFFFFFF)


def jhash2(data: bytes, initval: int) -> int:
    """jhash2() over ``data`` as u32 words (what stackmap.c hashes a stack with)."""
    n = len(data) // 4
    words = [int.from_bytes(data[4 * i:4 * i + 4], "little") for i in range(n)]
    return _jhash_words(words, initval, n * 4)


def jhash(data: bytes, initval: int) -> int:
    """A byte-wise jhash for the bloom filter (whose seed is random in the kernel, so only
    the distribution matters): the data as zero-padded little-endian words."""
    padded = data + bytes(-len(data) % 4)
    words = [int.from_bytes(padded[i:i + 4], "little") for i in range(0, len(padded), 4)]
    return _jhash_words(words, initval, len(data))


MAP_CLASSES: dict[int, type[BpfMap]] = {
    MAP_TYPE_HASH: HashMap, MAP_TYPE_ARRAY: ArrayMap, MAP_TYPE_PROG_ARRAY: ProgArrayMap,
    MAP_TYPE_PERF_EVENT_ARRAY: PerfEventArrayMap, MAP_TYPE_PERCPU_HASH: PerCpuHashMap,
    MAP_TYPE_PERCPU_ARRAY: PerCpuArrayMap, MAP_TYPE_STACK_TRACE: StackTraceMap,
    MAP_TYPE_LRU_HASH: LruHashMap, MAP_TYPE_LRU_PERCPU_HASH: LruPerCpuHashMap,
    MAP_TYPE_LPM_TRIE: LpmTrieMap, MAP_TYPE_ARRAY_OF_MAPS: ArrayOfMapsMap,
    MAP_TYPE_HASH_OF_MAPS: HashOfMapsMap, MAP_TYPE_QUEUE: QueueStackMap,
    MAP_TYPE_STACK: QueueStackMap, MAP_TYPE_RINGBUF: RingBufMap,
    MAP_TYPE_BLOOM_FILTER: BloomFilterMap}

# ---------------------------------------------------------------- map_alloc_check of each type

KMALLOC_MAX_SIZE = 1 << 22          # x86-64: 1 << (MAX_PAGE_ORDER + PAGE_SHIFT)
PCPU_MIN_UNIT_SIZE = 32 << 10
MAX_BPF_STACK = 512
HTAB_ELEM_SIZE = 48                 # sizeof(struct htab_elem) without key and value
ACCESS_FLAGS = BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG
ARRAY_FLAGS = BPF_F_NUMA_NODE | BPF_F_MMAPABLE | ACCESS_FLAGS | BPF_F_PRESERVE_ELEMS | \
    BPF_F_INNER_MAP
HTAB_FLAGS = BPF_F_NO_PREALLOC | BPF_F_NO_COMMON_LRU | BPF_F_NUMA_NODE | ACCESS_FLAGS | \
    BPF_F_ZERO_SEED
QUEUE_STACK_FLAGS = BPF_F_NUMA_NODE | ACCESS_FLAGS
BLOOM_FLAGS = BPF_F_NUMA_NODE | ACCESS_FLAGS
LPM_FLAGS = BPF_F_NO_PREALLOC | BPF_F_NUMA_NODE | ACCESS_FLAGS
STACK_FLAGS = BPF_F_NUMA_NODE | ACCESS_FLAGS | BPF_F_STACK_BUILD_ID
RINGBUF_FLAGS = BPF_F_NUMA_NODE
LPM_DATA_SIZE_MAX = 256
LPM_VAL_SIZE_MAX = KMALLOC_MAX_SIZE - MAX_BPF_STACK - 40 - LPM_DATA_SIZE_MAX
RINGBUF_MAX_DATA_SZ = (0xFFFF_FFFF // 4096 - 2) * 4096 - 4096    # ringbuf.c: fits a u32 page count
PERCPU_TYPES = (MAP_TYPE_PERCPU_HASH, MAP_TYPE_PERCPU_ARRAY, MAP_TYPE_LRU_PERCPU_HASH)
ARRAY_TYPES = (MAP_TYPE_ARRAY, MAP_TYPE_PERCPU_ARRAY, MAP_TYPE_PROG_ARRAY,
               MAP_TYPE_PERF_EVENT_ARRAY, MAP_TYPE_ARRAY_OF_MAPS)
HASH_TYPES = (MAP_TYPE_HASH, MAP_TYPE_PERCPU_HASH, MAP_TYPE_LRU_HASH, MAP_TYPE_LRU_PERCPU_HASH,
              MAP_TYPE_HASH_OF_MAPS)
FD_TYPES = (MAP_TYPE_PROG_ARRAY, MAP_TYPE_PERF_EVENT_ARRAY, MAP_TYPE_ARRAY_OF_MAPS,
            MAP_TYPE_HASH_OF_MAPS)


def _access_ok(flags: int) -> bool:
    """bpf_map_flags_access_ok: not both read-only and write-only for programs."""
    both = BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG
    return flags & both != both


def _bad(err: int, why: str) -> tuple[int, str]:
    return err, why


def _check_array(t: int, k: int, v: int, n: int, f: int) -> tuple[int, str] | None:
    percpu = t == MAP_TYPE_PERCPU_ARRAY
    if t in FD_TYPES and v != 4:
        return _bad(errno.EINVAL, "value_size must be 4 (a file descriptor)")
    if t in FD_TYPES and f & (BPF_F_MMAPABLE | BPF_F_INNER_MAP):
        return _bad(errno.EINVAL, "map_flags not allowed for fd arrays")
    if n == 0 or k != 4 or v == 0 or f & ~ARRAY_FLAGS or not _access_ok(f) or \
            percpu and f & BPF_F_NUMA_NODE:
        return _bad(errno.EINVAL, "array maps need key_size 4, value_size > 0, "
                                  "max_entries > 0 and valid map_flags")
    if t != MAP_TYPE_ARRAY and f & (BPF_F_MMAPABLE | BPF_F_INNER_MAP):
        return _bad(errno.EINVAL, "only plain arrays may be mmapable or inner maps")
    if t != MAP_TYPE_PERF_EVENT_ARRAY and f & BPF_F_PRESERVE_ELEMS:
        return _bad(errno.EINVAL, "BPF_F_PRESERVE_ELEMS is for perf event arrays")
    if percpu and (v + 7) // 8 * 8 > PCPU_MIN_UNIT_SIZE:
        return _bad(errno.E2BIG, f"per-CPU value_size {v} > {PCPU_MIN_UNIT_SIZE}")
    if v > 0x7FFF_FFFF:
        return _bad(errno.E2BIG, f"value_size {v} too large")
    return None


def _check_hash(t: int, k: int, v: int, n: int, f: int) -> tuple[int, str] | None:
    lru = t in (MAP_TYPE_LRU_HASH, MAP_TYPE_LRU_PERCPU_HASH)
    percpu = t in (MAP_TYPE_PERCPU_HASH, MAP_TYPE_LRU_PERCPU_HASH)
    if t == MAP_TYPE_HASH_OF_MAPS and v != 4:
        return _bad(errno.EINVAL, "value_size must be 4 (a file descriptor)")
    if f & ~HTAB_FLAGS or not _access_ok(f):
        return _bad(errno.EINVAL, f"invalid map_flags {f:#x}")
    if not lru and f & BPF_F_NO_COMMON_LRU:
        return _bad(errno.EINVAL, "BPF_F_NO_COMMON_LRU is for LRU maps")
    if lru and f & BPF_F_NO_PREALLOC:
        return _bad(ENOTSUPP, "LRU maps must be preallocated")
    if f & BPF_F_NUMA_NODE and (percpu or f & BPF_F_NO_COMMON_LRU):
        return _bad(errno.EINVAL, "per-CPU maps take no NUMA node")
    if n == 0 or k == 0 or v == 0:
        return _bad(errno.EINVAL, "hash maps need key_size, value_size and max_entries > 0")
    if k > MAX_BPF_STACK:
        return _bad(errno.E2BIG, f"key_size {k} > {MAX_BPF_STACK} (keys live on the stack)")
    if k + v >= KMALLOC_MAX_SIZE - HTAB_ELEM_SIZE:
        return _bad(errno.E2BIG, "key_size + value_size too large")
    if percpu and (v + 7) // 8 * 8 > PCPU_MIN_UNIT_SIZE:
        return _bad(errno.E2BIG, f"per-CPU value_size {v} > {PCPU_MIN_UNIT_SIZE}")
    return None


def _check_other(t: int, k: int, v: int, n: int, f: int, extra: int) -> tuple[int, str] | None:
    if t in (MAP_TYPE_QUEUE, MAP_TYPE_STACK):
        if n == 0 or k != 0 or v == 0 or f & ~QUEUE_STACK_FLAGS or not _access_ok(f):
            return _bad(errno.EINVAL, "queue/stack maps need key_size 0, value_size > 0, "
                                      "max_entries > 0")
        if v > KMALLOC_MAX_SIZE:
            return _bad(errno.E2BIG, f"value_size {v} too large")
    elif t == MAP_TYPE_BLOOM_FILTER:
        if k != 0 or v == 0 or n == 0 or f & ~BLOOM_FLAGS or not _access_ok(f) or extra & ~0xF:
            return _bad(errno.EINVAL, "bloom filters need key_size 0, value_size > 0, "
                                      "max_entries > 0, map_extra <= 15")
    elif t == MAP_TYPE_LPM_TRIE:
        if n == 0 or not f & BPF_F_NO_PREALLOC or f & ~LPM_FLAGS or not _access_ok(f) or \
                not 5 <= k <= 4 + LPM_DATA_SIZE_MAX or not 1 <= v <= LPM_VAL_SIZE_MAX:
            return _bad(errno.EINVAL, "LPM tries need BPF_F_NO_PREALLOC, key_size 5..260, "
                                      "value_size > 0, max_entries > 0")
    elif t == MAP_TYPE_STACK_TRACE:
        if f & ~STACK_FLAGS:
            return _bad(errno.EINVAL, f"invalid map_flags {f:#x}")
        if n == 0 or k != 4 or v < 8 or v % 8:
            return _bad(errno.EINVAL, "stack trace maps need key_size 4 and value_size a "
                                      "multiple of 8")
        per = 32 if f & BPF_F_STACK_BUILD_ID else 8      # sizeof(struct bpf_stack_build_id)
        if v % per or v // per > PERF_MAX_STACK:
            return _bad(errno.EINVAL, f"value_size {v} holds more than {PERF_MAX_STACK} frames")
        if n > 1 << 31:
            return _bad(errno.E2BIG, f"max_entries {n} too large")
    elif t == MAP_TYPE_RINGBUF:
        if f & ~RINGBUF_FLAGS:
            return _bad(errno.EINVAL, f"invalid map_flags {f:#x}")
        if k or v or n <= 0 or n & (n - 1) or n % 4096:
            return _bad(errno.EINVAL, f"ringbuf size {n} is not a power-of-2 multiple of the "
                                      f"page size (key_size and value_size must be 0)")
        if n > RINGBUF_MAX_DATA_SZ:
            return _bad(errno.E2BIG, f"ringbuf size {n} too large")
    return None


def check_create(map_type: int, key_size: int, value_size: int, max_entries: int,
                 flags: int = 0, map_extra: int = 0,
                 inner: BpfMap | None = None) -> tuple[int, str] | None:
    """``map_create``'s checks: None, or (errno, why) the kernel refuses the attributes with."""
    if not 0 < map_type < MAX_MAP_TYPE:
        return errno.EINVAL, f"unknown map type {map_type}"
    if map_type not in MAP_CLASSES:
        return errno.EINVAL, f"map type {map_type} is not supported by tracesim"
    if map_extra and map_type != MAP_TYPE_BLOOM_FILTER:
        return errno.EINVAL, "map_extra is only for bloom filters"
    if map_type in (MAP_TYPE_ARRAY_OF_MAPS, MAP_TYPE_HASH_OF_MAPS) and inner is None:
        return errno.EBADF, "maps of maps need an inner map (inner_map_fd)"
    if map_type in ARRAY_TYPES:
        return _check_array(map_type, key_size, value_size, max_entries, flags)
    if map_type in HASH_TYPES:
        return _check_hash(map_type, key_size, value_size, max_entries, flags)
    return _check_other(map_type, key_size, value_size, max_entries, flags, map_extra)


def create_map(name: str, map_type: int, key_size: int, value_size: int, max_entries: int,
               flags: int = 0, ncpus: int = 1, initial: bytes = b"", *, map_extra: int = 0,
               inner: BpfMap | None = None) -> BpfMap:
    """A map as ``bpf(BPF_MAP_CREATE)`` would make it (``MapError`` with the kernel's errno
    otherwise); ``initial`` fills global-data arrays, ``inner`` is a map-of-maps' template."""
    bad = check_create(map_type, key_size, value_size, max_entries, flags, map_extra, inner)
    if bad is not None:
        err, why = bad
        raise MapError(err, f"map {name}: {why}")
    cls = MAP_CLASSES[map_type]
    if cls is BloomFilterMap:
        m: BpfMap = BloomFilterMap(name, map_type, key_size, value_size, max_entries, flags,
                                   ncpus, map_extra=map_extra)
    else:
        m = cls(name, map_type, key_size, value_size, max_entries, flags, ncpus)
    if inner is not None and isinstance(m, MapOfMapsMixin):
        m.inner = inner
    if initial:
        m.values[:len(initial)] = initial
    return m
