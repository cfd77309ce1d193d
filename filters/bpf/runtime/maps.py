"""BPF maps: hash, array, per-CPU hash/array, LRU hash and ring buffer.

Values live in one preallocated bytearray per map (the kernel preallocates hash elements too), so a
map is a single memory region for the VM and a value pointer handed to a program stays valid while
the element exists.  Per-CPU maps keep ``ncpus`` consecutive values per slot; a program sees the
value of the CPU it runs on.  Map-type numbers, flags and errno values are the kernel's (uapi
``enum bpf_map_type``, ``BPF_ANY``/``BPF_NOEXIST``/``BPF_EXIST``).
"""
from __future__ import annotations

import errno
from collections import OrderedDict
from collections.abc import Iterator

# uapi enum bpf_map_type
MAP_TYPE_HASH = 1
MAP_TYPE_ARRAY = 2
MAP_TYPE_PERCPU_HASH = 5
MAP_TYPE_PERCPU_ARRAY = 6
MAP_TYPE_LRU_HASH = 9
MAP_TYPE_RINGBUF = 27
MAP_TYPE_NAMES = {MAP_TYPE_HASH: "hash", MAP_TYPE_ARRAY: "array",
                  MAP_TYPE_PERCPU_HASH: "percpu_hash", MAP_TYPE_PERCPU_ARRAY: "percpu_array",
                  MAP_TYPE_LRU_HASH: "lru_hash", MAP_TYPE_RINGBUF: "ringbuf"}

# map update flags
BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2


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
        if max_entries <= 0 or max_entries & (max_entries - 1) or max_entries % 4096:
            raise MapError(errno.EINVAL, f"ringbuf size {max_entries} is not a power-of-2 "
                                         f"multiple of the page size")
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


MAP_CLASSES = {MAP_TYPE_HASH: HashMap, MAP_TYPE_ARRAY: ArrayMap,
               MAP_TYPE_PERCPU_HASH: PerCpuHashMap, MAP_TYPE_PERCPU_ARRAY: PerCpuArrayMap,
               MAP_TYPE_LRU_HASH: LruHashMap, MAP_TYPE_RINGBUF: RingBufMap}


def create_map(name: str, map_type: int, key_size: int, value_size: int, max_entries: int,
               flags: int = 0, ncpus: int = 1, initial: bytes = b"") -> BpfMap:
    """A map as ``bpf(BPF_MAP_CREATE)`` would make it; ``initial`` fills global-data arrays."""
    cls = MAP_CLASSES.get(map_type)
    if cls is None:
        raise MapError(errno.EINVAL, f"map {name}: unsupported map type {map_type}")
    if map_type != MAP_TYPE_RINGBUF and (key_size <= 0 and map_type not in (
            MAP_TYPE_ARRAY, MAP_TYPE_PERCPU_ARRAY) or value_size <= 0 or max_entries <= 0):
        raise MapError(errno.EINVAL, f"map {name}: invalid key/value size or max_entries")
    if map_type in (MAP_TYPE_ARRAY, MAP_TYPE_PERCPU_ARRAY) and key_size != 4:
        raise MapError(errno.EINVAL, f"map {name}: array maps need key_size 4")
    m = cls(name, map_type, key_size, value_size, max_entries, flags, ncpus)
    if initial:
        m.values[:len(initial)] = initial
    return m
