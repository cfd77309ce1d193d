"""Map helpers every program type shares (kernel/bpf/helpers.c, kernel/bpf/ringbuf.c):
lookup/update/delete (ids 1-3), push/pop/peek (87-89), the per-CPU lookup (195), the ring buffer
ones (130-134) and perf_event_output (25), and the map handles programs hold (the value of
``r1 = map ll``).

A handle looks like a kernel pointer to the map, so helpers tell it from a VM address; index i
of ``Program.maps`` is ``MAP_HANDLE_BASE + i * MAP_HANDLE_STRIDE``.  The CPU a per-CPU map
helper uses is the env's ``cpu_id()`` when the caller's env has one (tracing programs), else 0
(a socket filter's env is the skb).

A ring buffer sample from ``bpf_ringbuf_reserve`` is its record's own buffer, mapped into the
engine's memory until ``bpf_ringbuf_submit``/``bpf_ringbuf_discard`` unmaps it; the record is
found again from the region holding the pointer, so no table of reservations is kept.
"""
from __future__ import annotations

import errno
from typing import Any

from tracesim.filters.bpf.runtime.helpers import VMContext
from tracesim.filters.bpf.runtime.maps import (
    BPF_RB_FORCE_WAKEUP,
    BPF_RB_NO_WAKEUP,
    MAP_TYPE_ARRAY_OF_MAPS,
    MAP_TYPE_BLOOM_FILTER,
    MAP_TYPE_HASH_OF_MAPS,
    MAP_TYPE_RINGBUF,
    MapError,
)
from tracesim.filters.bpf.vm.memory import VMError

M64 = 0xFFFF_FFFF_FFFF_FFFF
MAP_HANDLE_BASE = 0xFFFF_8880_7000_0000
MAP_HANDLE_STRIDE = 0x1000
RINGBUF_SAMPLE = "ringbuf sample"        # name of the memory region of a reserved sample


def map_from_handle(program: Any, handle: int) -> Any:
    """The map object a ``ld_pseudo`` map handle stands for (or an inner map a lookup in a
    map of maps returned), or None."""
    index, rest = divmod(handle - MAP_HANDLE_BASE, MAP_HANDLE_STRIDE)
    n = len(program.maps)
    if rest or not 0 <= index < n + len(program.inner_maps):
        return None
    return program.maps[index] if index < n else program.inner_maps[index - n]


def inner_map_handle(program: Any, m: Any) -> int:
    """The handle a program gets for inner map ``m`` (numbered after the program's maps)."""
    k = next((k for k, known in enumerate(program.inner_maps) if known is m), None)
    if k is None:
        k = len(program.inner_maps)
        program.inner_maps.append(m)
    return MAP_HANDLE_BASE + (len(program.maps) + k) * MAP_HANDLE_STRIDE


def _neg(err: int) -> int:
    return -err & M64


def _map(vm: VMContext, handle: int) -> Any:
    m = map_from_handle(vm.program, handle)
    if m is None:
        raise VMError(f"{handle:#x} is not a map of this program")
    return m


def current_cpu(vm: VMContext) -> int:
    cpu_id = getattr(vm.env, "cpu_id", None)
    return cpu_id() if cpu_id is not None else 0


def map_lookup_elem(vm: VMContext, r1: int, r2: int, *_: int) -> int:
    m = _map(vm, r1)
    if m.map_type in (MAP_TYPE_ARRAY_OF_MAPS, MAP_TYPE_HASH_OF_MAPS):
        inner = m.inner_map(vm.mem.read(r2, m.key_size))
        return 0 if inner is None else inner_map_handle(vm.program, inner)
    off = m.lookup_offset(vm.mem.read(r2, m.key_size), current_cpu(vm))
    if off is None:
        return 0
    return vm.mem.address_of(m.values, name=m.name) + off


def map_update_elem(vm: VMContext, r1: int, r2: int, r3: int, r4: int, *_: int) -> int:
    m = _map(vm, r1)
    key = vm.mem.read(r2, m.key_size)
    value = vm.mem.read(r3, m.value_size)
    try:
        if m.percpu:   # a program updates only its own CPU's copy
            off = m.lookup_offset(key, 0)
            if off is None:
                m.update(key, bytes(m.value_size * m.ncpus), r4)
            elif r4 == 1:
                return _neg(errno.EEXIST)
            off = m.lookup_offset(key, current_cpu(vm))
            m.values[off:off + m.value_size] = value
        else:
            m.update(key, value, r4)
    except MapError as e:
        return _neg(e.errno)
    return 0


def map_delete_elem(vm: VMContext, r1: int, r2: int, *_: int) -> int:
    m = _map(vm, r1)
    try:
        m.delete(vm.mem.read(r2, m.key_size))
    except MapError as e:
        return _neg(e.errno)
    return 0


# ---------------------------------------------------------------- ring buffer (130-134)

def _ringbuf(vm: VMContext, handle: int) -> Any:
    m = _map(vm, handle)
    if m.map_type != MAP_TYPE_RINGBUF:
        raise VMError(f"map {m.name} is not a ring buffer")
    return m


def ringbuf_output(vm: VMContext, r1: int, r2: int, r3: int, r4: int, *_: int) -> int:
    m = _ringbuf(vm, r1)
    if r4 & ~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP):
        return _neg(errno.EINVAL)
    return m.output(vm.mem.read(r2, r3)) & M64


def ringbuf_reserve(vm: VMContext, r1: int, r2: int, r3: int, *_: int) -> int:
    """A pointer to ``r2`` writable bytes of a new busy record, or NULL (flags set, no room)."""
    m = _ringbuf(vm, r1)
    if r3:
        return 0
    rec = m.reserve(r2)
    if rec is None:
        return 0
    return vm.mem.map(RINGBUF_SAMPLE, rec.data, writable=True).start


def _commit(vm: VMContext, sample: int, discard: bool) -> int:
    for region in vm.mem.regions:
        if region.name == RINGBUF_SAMPLE and region.start == sample:
            for m in vm.program.maps:
                if m.map_type != MAP_TYPE_RINGBUF:
                    continue
                rec = next((r for r in m.ring if r.data is region.buf), None)
                if rec is not None:
                    vm.mem.unmap(region)
                    m.commit(rec, discard)
                    return 0
    raise VMError(f"{sample:#x} is not a reserved ring buffer sample")


def ringbuf_submit(vm: VMContext, r1: int, *_: int) -> int:
    return _commit(vm, r1, False)


def ringbuf_discard(vm: VMContext, r1: int, *_: int) -> int:
    return _commit(vm, r1, True)


def ringbuf_query(vm: VMContext, r1: int, r2: int, *_: int) -> int:
    return _ringbuf(vm, r1).query(r2) & M64


# ---------------------------------------------------------------- queue, stack, bloom (87-89)

def map_push_elem(vm: VMContext, r1: int, r2: int, r3: int, *_: int) -> int:
    m = _map(vm, r1)
    try:
        m.push(vm.mem.read(r2, m.value_size), r3)
    except MapError as e:
        return _neg(e.errno)
    return 0


def _pop_or_peek(vm: VMContext, r1: int, r2: int, pop: bool) -> int:
    m = _map(vm, r1)
    if m.map_type == MAP_TYPE_BLOOM_FILTER:        # peek: is the value (maybe) in the set?
        return 0 if m.peek(vm.mem.read(r2, m.value_size)) else _neg(errno.ENOENT)
    try:
        value = m.pop() if pop else m.peek()
    except MapError as e:
        return _neg(e.errno)
    vm.mem.write(r2, value)
    return 0


def map_pop_elem(vm: VMContext, r1: int, r2: int, *_: int) -> int:
    return _pop_or_peek(vm, r1, r2, True)


def map_peek_elem(vm: VMContext, r1: int, r2: int, *_: int) -> int:
    return _pop_or_peek(vm, r1, r2, False)


# ---------------------------------------------------------------- per-CPU lookup (195)

def map_lookup_percpu_elem(vm: VMContext, r1: int, r2: int, r3: int, *_: int) -> int:
    """The value of ``key`` for CPU ``r3`` (NULL past the last possible CPU)."""
    m = _map(vm, r1)
    if r3 >= m.ncpus:
        return 0
    off = m.lookup_offset(vm.mem.read(r2, m.key_size), r3)
    if off is None:
        return 0
    return vm.mem.address_of(m.values, name=m.name) + off


# ---------------------------------------------------------------- perf buffer (25)

BPF_F_INDEX_MASK = 0xFFFF_FFFF
BPF_F_CURRENT_CPU = BPF_F_INDEX_MASK


def perf_event_output(vm: VMContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_perf_event_output(ctx, map, flags, data, size) as __bpf_perf_event_output: the
    index is the low 32 bits of flags (BPF_F_CURRENT_CPU: this CPU); the event there must be
    on this CPU."""
    m = _map(vm, r2)
    if r3 & ~BPF_F_INDEX_MASK:
        return _neg(errno.EINVAL)
    cpu = current_cpu(vm)
    index = cpu if r3 == BPF_F_CURRENT_CPU else r3
    if index >= m.max_entries:
        return _neg(errno.E2BIG)
    buf = m.get(index)
    if buf is None:
        return _neg(errno.ENOENT)
    if buf.cpu != cpu:
        return _neg(errno.EOPNOTSUPP)
    return buf.output(vm.mem.read(r4, r5)) & M64
