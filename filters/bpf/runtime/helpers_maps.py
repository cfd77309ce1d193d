"""Map helpers every program type shares (kernel/bpf/helpers.c, kernel/bpf/ringbuf.c):
lookup/update/delete (ids 1-3) and the ring buffer ones (130-134), and the map handles programs
hold (the value of ``r1 = map ll``).

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
    MAP_TYPE_RINGBUF,
    MapError,
)
from tracesim.filters.bpf.vm.memory import VMError

M64 = 0xFFFF_FFFF_FFFF_FFFF
MAP_HANDLE_BASE = 0xFFFF_8880_7000_0000
MAP_HANDLE_STRIDE = 0x1000
RINGBUF_SAMPLE = "ringbuf sample"        # name of the memory region of a reserved sample


def map_from_handle(program: Any, handle: int) -> Any:
    """The map object a ``ld_pseudo`` map handle stands for, or None."""
    index, rest = divmod(handle - MAP_HANDLE_BASE, MAP_HANDLE_STRIDE)
    if rest or not 0 <= index < len(program.maps):
        return None
    return program.maps[index]


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
