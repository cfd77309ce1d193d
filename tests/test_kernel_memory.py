"""Simulated kernel memory and the slab allocator: mapping, faults, probe_read, kmalloc classes."""
from __future__ import annotations

import pytest
from tracesim.kernel_model.mm.memory import DIRECT_MAP_BASE, EFAULT, KernelFault, Memory
from tracesim.kernel_model.mm.slab import (
    GFP_ATOMIC,
    GFP_KERNEL,
    KMALLOC_MAX_CACHE_SIZE,
    SLAB_HWCACHE_ALIGN,
    ZERO_SIZE_PTR,
    Slab,
    SlabError,
)


class RecordingTracepoint:
    """Stands in for a tracing event: always enabled, remembers the TP_PROTO arguments."""

    def __init__(self, name: str, log: list) -> None:
        self.name, self.log, self.enabled = name, log, True

    def fire(self, *args) -> None:
        self.log.append((self.name, args))


def make_slab() -> tuple[Memory, Slab, list]:
    mem, log = Memory(), []
    return mem, Slab(mem, lambda system, name: RecordingTracepoint(name, log)), log


def test_direct_map_addresses_and_round_trip():
    mem = Memory()
    r = mem.map(100, "test")
    assert r.base == DIRECT_MAP_BASE and r.size == 4096
    mem.write(r.base + 10, b"hello")
    mem.write_int(r.base + 16, 4, -2)
    assert mem.read(r.base + 10, 5) == b"hello"
    assert mem.read_int(r.base + 16, 4) == 0xfffffffe
    assert mem.read_int(r.base + 16, 4, signed=True) == -2
    assert mem.read_cstr(r.base + 10) == b"hello"


def test_unmapped_read_faults_and_probe_read_zero_fills():
    mem = Memory()
    with pytest.raises(KernelFault) as info:
        mem.read(0xffff888000000000, 8)
    assert info.value.kind == "unmapped"
    assert mem.probe_read(0, 8) == (-EFAULT, bytes(8))
    assert mem.probe_read_str(0x1000, 16) == (-EFAULT, bytes(16))


def test_read_across_adjacent_regions_and_past_the_end():
    mem = Memory()
    a, b = mem.map(4096, "a"), mem.map(4096, "b")
    mem.write(a.end - 2, b"xy")
    mem.write(b.base, b"zw")
    assert mem.read(a.end - 2, 4) == b"xyzw"
    with pytest.raises(KernelFault):
        mem.read(b.end - 2, 4)
    mem.unmap(b)
    assert mem.probe_read(b.base, 1)[0] == -EFAULT


def test_probe_read_str_truncates_and_terminates():
    mem = Memory()
    r = mem.map(64, "s")
    mem.write(r.base, b"eth5\0junk")
    assert mem.probe_read_str(r.base, 16) == (5, b"eth5\0")
    assert mem.probe_read_str(r.base, 3) == (3, b"et\0")


def test_kmalloc_size_classes_and_tracepoints():
    _, slab, log = make_slab()
    for size, expect in [(1, 8), (8, 8), (9, 16), (65, 96), (100, 128), (129, 192), (200, 256),
                         (1000, 1024), (5000, 8192)]:
        addr = slab.kmalloc(size, GFP_KERNEL, call_site=0x1234)
        assert slab.ksize(addr) == expect
        assert log[-1] == ("kmalloc", (0x1234, addr, size, expect, GFP_KERNEL, -1))
    assert slab.kmalloc_cache(100).name == "kmalloc-128"
    assert slab.kmalloc_cache(2000).name == "kmalloc-2k"


def test_kmalloc_large_and_zero():
    mem, slab, log = make_slab()
    big = slab.kmalloc(KMALLOC_MAX_CACHE_SIZE + 1)
    assert log[-1][1][3] == 16384 and slab.ksize(big) == 16384
    slab.kfree(big)
    assert log[-1] == ("kfree", (0, big))
    assert mem.probe_read(big, 8)[0] == -EFAULT
    assert slab.kmalloc(0) == ZERO_SIZE_PTR
    slab.kfree(ZERO_SIZE_PTR)


def test_free_faults_reuse_and_double_free():
    mem, slab, log = make_slab()
    cache = slab.kmem_cache_create("skbuff_head_cache", 216, flags=SLAB_HWCACHE_ALIGN)
    assert cache.size == 256
    a = slab.kmem_cache_alloc(cache, GFP_ATOMIC, call_site=7)
    b = slab.kmem_cache_alloc(cache, GFP_ATOMIC)
    assert b == a + 256
    assert log[-2] == ("kmem_cache_alloc", (7, a, cache, GFP_ATOMIC, -1))
    mem.write(a, b"x" * 216)
    slab.kmem_cache_free(cache, a, call_site=9)
    assert log[-1] == ("kmem_cache_free", (9, a, cache))
    with pytest.raises(KernelFault) as info:
        mem.read(a, 8)
    assert info.value.kind == "freed"
    assert mem.probe_read(a, 8) == (-EFAULT, bytes(8))
    assert mem.read(b, 8) == bytes(8)             # the neighbour stays readable
    with pytest.raises(SlabError):
        slab.kmem_cache_free(cache, a)
    assert slab.kmem_cache_alloc(cache) == a      # LIFO: the freed slot comes back first
    assert cache.active_objs == 2


def test_kfree_of_foreign_pointer_is_refused():
    mem, slab, _ = make_slab()
    r = mem.map(4096, "static")
    with pytest.raises(SlabError):
        slab.kfree(r.base)
