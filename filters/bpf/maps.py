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
        self.slots = OrderedDict()

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


class RingBufMap(BpfMap):
    """BPF_MAP_TYPE_RINGBUF: ``max_entries`` is the data size in bytes (a power of 2, multiple
    of the page size).  Records are kept whole; a record that does not fit is dropped and
    counted, as ``bpf_ringbuf_output`` returns -EAGAIN then."""
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
        self.records: list[bytes] = []
        self.used = 0
        self.dropped = 0

    def output(self, data: bytes) -> int:
        need = (len(data) + self.HDR + 7) & ~7
        if self.used + need > self.max_entries:
            self.dropped += 1
            return -errno.EAGAIN
        self.records.append(bytes(data))
        self.used += need
        return 0

    def consume(self) -> list[bytes]:
        out, self.records, self.used = self.records, [], 0
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
