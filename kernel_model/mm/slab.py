"""The slab allocator: kmalloc size classes and named ``kmem_cache``s over ``Memory``.

Modelled on SLUB as tracing sees it: each cache carves slabs (regions of ``PAGE_SIZE << order``)
into equal slots; a free slot faults when touched (see ``memory.Region``); frees push onto a LIFO
freelist, so an alloc right after a free gets the same address back, as on a real kernel.
``kmalloc`` above ``KMALLOC_MAX_CACHE_SIZE`` goes to the page allocator (``kmalloc_large``).

Every entry point fires the 6.18 kmem tracepoints with their TP_PROTO arguments:
``kmem:kmalloc(call_site, ptr, bytes_req, bytes_alloc, gfp_flags, node)``,
``kmem:kmem_cache_alloc(call_site, ptr, s, gfp_flags, node)`` (``s`` is a ``KmemCache`` with the
kernel's ``name``, ``object_size``, ``size``, ``flags``), ``kmem:kfree(call_site, ptr)`` and
``kmem:kmem_cache_free(call_site, ptr, s)``. ``call_site`` is the caller's return address
(``_RET_IP_``), taken from kallsyms by the caller; 0 when unknown.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tracesim.kernel_model.c_types import kernel_types
from tracesim.kernel_model.mm.memory import PAGE_SHIFT, PAGE_SIZE, Memory

if TYPE_CHECKING:
    from tracesim.kernel_model.kprobes import Kprobes

# gfp_t bits (include/linux/gfp_types.h, 6.18; the kernel spells the single bits __GFP_*)
GFP_DMA = 0x01
GFP_HIGH = 0x20
GFP_IO = 0x40
GFP_FS = 0x80
GFP_ZERO = 0x100
GFP_DIRECT_RECLAIM = 0x400
GFP_KSWAPD_RECLAIM = 0x800
GFP_NOWARN = 0x2000
GFP_NOMEMALLOC = 0x80000
GFP_ACCOUNT = 0x400000
GFP_ATOMIC = GFP_HIGH | GFP_KSWAPD_RECLAIM                                   # 0x820
GFP_KERNEL = GFP_DIRECT_RECLAIM | GFP_KSWAPD_RECLAIM | GFP_IO | GFP_FS   # 0xcc0

# slab_flags_t bits (include/linux/slab.h)
SLAB_HWCACHE_ALIGN = 0x00002000
SLAB_PANIC = 0x00040000
SLAB_ACCOUNT = 0x04000000

NUMA_NO_NODE = -1
ZERO_SIZE_PTR = 16
L1_CACHE_BYTES = 64
ARCH_KMALLOC_MINALIGN = 8
KMALLOC_MAX_CACHE_SIZE = 2 * PAGE_SIZE   # KMALLOC_SHIFT_HIGH = PAGE_SHIFT + 1
KMALLOC_SIZES = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)
MIN_OBJECTS_PER_SLAB = 8
MAX_SLAB_ORDER = 3


class SlabError(Exception):
    """An invalid free: a double free, a pointer not from this allocator, a wrong cache."""


def kmalloc_cache_name(size: int) -> str:
    """``kmalloc-96``, ``kmalloc-1k`` ... as /proc/slabinfo names them."""
    return f"kmalloc-{size // 1024}k" if size >= 1024 else f"kmalloc-{size}"


def get_order(size: int) -> int:
    """The page order that holds ``size`` bytes."""
    order = 0
    while (PAGE_SIZE << order) < size:
        order += 1
    return order


class KmemCache:
    """One ``struct kmem_cache``: objects of ``object_size`` in slots of ``size`` bytes."""

    __slots__ = ("name", "object_size", "size", "align", "flags", "order", "objs_per_slab",
                 "freelist", "slabs", "active_objs", "addr")

    def __init__(self, name: str, object_size: int, align: int = ARCH_KMALLOC_MINALIGN,
                 flags: int = 0) -> None:
        if flags & SLAB_HWCACHE_ALIGN:
            align = max(align, L1_CACHE_BYTES)
        self.name = name
        self.object_size = object_size
        self.size = (object_size + align - 1) // align * align
        self.align = align
        self.flags = flags
        order = 0
        while order < MAX_SLAB_ORDER and (PAGE_SIZE << order) // self.size < MIN_OBJECTS_PER_SLAB:
            order += 1
        self.order = order
        self.objs_per_slab = (PAGE_SIZE << order) // self.size
        self.freelist: list[int] = []
        self.slabs: list = []
        self.active_objs = 0
        self.addr = 0          # its struct kmem_cache in memory, once the allocator placed it


class LargeKmalloc:
    """Owner marker of a kmalloc served by the page allocator (too big for the caches)."""

    __slots__ = ("order",)

    def __init__(self, order: int) -> None:
        self.order = order


class _Unprobed:
    """The kprobe site of a function when the allocator runs without kprobes (never active)."""

    active = False


class Slab:
    """The allocator: ``kmalloc``/``kfree``/``kmem_cache_*`` with their tracepoints.

    ``event(system, name)`` returns a tracepoint object with ``.enabled`` and ``.fire(*args)``
    (the kernel's ``Tracing.event``). With ``kprobes``, the entry points are probe-able as
    ``kmem_cache_alloc_noprof``, ``kmem_cache_free``, ``__kmalloc_noprof``,
    ``__kmalloc_large_node_noprof`` and ``kfree``. Each cache has a ``struct kmem_cache`` in
    memory (``object_size``, ``size``, ``align``, ``flags``, ``name``): the first one, of the
    ``kmem_cache`` cache itself, is static (boot_kmem_cache), the others come from it; names
    live in a read-only string area, as the kernel's string literals do.
    """

    def __init__(self, mem: Memory, event: Callable[[str, str], Any],
                 kprobes: Kprobes | None = None) -> None:
        self.mem = mem
        self._pages = mem.pages
        self.caches: dict[str, KmemCache] = {}
        self._tp_kmalloc = event("kmem", "kmalloc")
        self._tp_cache_alloc = event("kmem", "kmem_cache_alloc")
        self._tp_kfree = event("kmem", "kfree")
        self._tp_cache_free = event("kmem", "kmem_cache_free")
        site: Callable[[str], Any] = kprobes.site if kprobes is not None else (lambda name: _Unprobed)
        self._kp_cache_alloc = site("kmem_cache_alloc_noprof")
        self._kp_cache_free = site("kmem_cache_free")
        self._kp_kmalloc = site("__kmalloc_noprof")
        self._kp_kmalloc_large = site("__kmalloc_large_node_noprof")
        self._kp_kfree = site("kfree")
        st = kernel_types().struct("kmem_cache")
        self._cache_fields = {n: st.field(n).offset for n in ("object_size", "size", "align",
                                                                "flags", "name")}
        self._rodata = mem.map(PAGE_SIZE, "rodata strings")
        self._rodata_used = 0
        boot = mem.map(st.size, "boot_kmem_cache")
        self.kmem_cache_cache = self.kmem_cache_create("kmem_cache", st.size, 64,
                                                       SLAB_HWCACHE_ALIGN, _at=boot.base)
        self.kmalloc_caches = [self.kmem_cache_create(kmalloc_cache_name(s), s)
                               for s in KMALLOC_SIZES]
        # size -> cache, in 8-byte steps (the kernel's size_index / kmalloc_index)
        self._by_size = [next(c for c in self.kmalloc_caches if c.object_size >= n * 8)
                         for n in range(1, KMALLOC_MAX_CACHE_SIZE // 8 + 1)]

    # ------------------------------------------------------------------ caches
    def _string(self, text: str) -> int:
        """A NUL-terminated copy of ``text`` in the read-only string area."""
        data = text.encode() + b"\0"
        if self._rodata_used + len(data) > self._rodata.size:
            self._rodata = self.mem.map(max(PAGE_SIZE, len(data)), "rodata strings")
            self._rodata_used = 0
        addr = self._rodata.base + self._rodata_used
        self.mem.write(addr, data)
        self._rodata_used += len(data)
        return addr

    def kmem_cache_create(self, name: str, size: int, align: int = ARCH_KMALLOC_MINALIGN,
                          flags: int = 0, _at: int = 0) -> KmemCache:
        if name in self.caches:
            raise ValueError(f"kmem_cache {name!r} exists")
        cache = KmemCache(name, size, align, flags)
        cache.addr = _at or self.kmem_cache_alloc(self.kmem_cache_cache, GFP_KERNEL | GFP_ZERO)
        off = self._cache_fields
        for field in ("object_size", "size", "align", "flags"):
            self.mem.write_int(cache.addr + off[field], 4, getattr(cache, field))
        self.mem.write_int(cache.addr + off["name"], 8, self._string(name))
        self.caches[name] = cache
        return cache

    def _grow(self, cache: KmemCache) -> None:
        """Add one slab; its slots join the freelist so the lowest address comes out first."""
        region = self.mem.map(PAGE_SIZE << cache.order, cache.name, cache.size, cache)
        cache.slabs.append(region)
        base, size = region.base, cache.size
        cache.freelist.extend(base + i * size for i in range(cache.objs_per_slab - 1, -1, -1))

    def _take(self, cache: KmemCache, gfp: int) -> int:
        if not cache.freelist:
            self._grow(cache)
        addr = cache.freelist.pop()
        region = self._pages[addr >> PAGE_SHIFT]
        off = addr - region.base
        region.live[off // cache.size] = 1
        cache.active_objs += 1
        if gfp & GFP_ZERO:
            region.buf[off:off + cache.size] = bytes(cache.size)
        return addr

    def _give_back(self, cache: KmemCache, addr: int) -> None:
        region = self._pages.get(addr >> PAGE_SHIFT)
        if region is None or region.owner is not cache:
            raise SlabError(f"0x{addr:x} is not an object of cache {cache.name}")
        off = addr - region.base
        idx, rem = divmod(off, cache.size)
        if rem or not region.live[idx]:
            raise SlabError(f"double free or bad pointer 0x{addr:x} in {cache.name}")
        region.live[idx] = 0
        cache.active_objs -= 1
        cache.freelist.append(addr)

    def kmem_cache_alloc(self, cache: KmemCache, gfp: int = GFP_KERNEL, call_site: int = 0,
                         node: int = NUMA_NO_NODE) -> int:
        kp = self._kp_cache_alloc
        if kp.active:
            return kp.call(self._cache_alloc, cache, gfp, call_site, node)
        return self._cache_alloc(cache, gfp, call_site, node)

    def _cache_alloc(self, cache: KmemCache, gfp: int, call_site: int, node: int) -> int:
        addr = self._take(cache, gfp)
        tp = self._tp_cache_alloc
        if tp.enabled:
            tp.fire(call_site, addr, cache, gfp, node)
        return addr

    def kmem_cache_free(self, cache: KmemCache, addr: int, call_site: int = 0) -> None:
        kp = self._kp_cache_free
        if kp.active:
            kp.call(self._cache_free, cache, addr, call_site)
        else:
            self._cache_free(cache, addr, call_site)

    def _cache_free(self, cache: KmemCache, addr: int, call_site: int) -> None:
        tp = self._tp_cache_free
        if tp.enabled:
            tp.fire(call_site, addr, cache)
        self._give_back(cache, addr)

    # ------------------------------------------------------------------ kmalloc
    def kmalloc_cache(self, size: int) -> KmemCache | None:
        """The cache kmalloc(size) uses; None for 0 or a large allocation."""
        if size == 0 or size > KMALLOC_MAX_CACHE_SIZE:
            return None
        return self._by_size[(size - 1) >> 3]

    def kmalloc(self, size: int, gfp: int = GFP_KERNEL, call_site: int = 0,
                node: int = NUMA_NO_NODE) -> int:
        """Allocate ``size`` bytes; returns the address (ZERO_SIZE_PTR for size 0)."""
        kp = self._kp_kmalloc
        if kp.active:
            return kp.call(self._kmalloc, size, gfp, call_site, node)
        return self._kmalloc(size, gfp, call_site, node)

    def _kmalloc(self, size: int, gfp: int, call_site: int, node: int) -> int:
        if size == 0:
            return ZERO_SIZE_PTR
        cache = self.kmalloc_cache(size)
        if cache is None:
            kp = self._kp_kmalloc_large
            if kp.active:
                return kp.call(self._kmalloc_large, size, gfp, node, call_site)
            return self._kmalloc_large(size, gfp, node, call_site)
        addr = self._take(cache, gfp)
        tp = self._tp_kmalloc
        if tp.enabled:
            tp.fire(call_site, addr, size, cache.size, gfp, node)
        return addr

    def _kmalloc_large(self, size: int, gfp: int, node: int, call_site: int) -> int:
        order = get_order(size)
        region = self.mem.map(PAGE_SIZE << order, "kmalloc_large", owner=LargeKmalloc(order))
        tp = self._tp_kmalloc
        if tp.enabled:
            tp.fire(call_site, region.base, size, PAGE_SIZE << order, gfp, node)
        return region.base

    def kzalloc(self, size: int, gfp: int = GFP_KERNEL, call_site: int = 0) -> int:
        return self.kmalloc(size, gfp | GFP_ZERO, call_site)

    def kfree(self, addr: int, call_site: int = 0) -> None:
        """Free a kmalloc'd (or any slab) object; NULL and ZERO_SIZE_PTR are ignored."""
        kp = self._kp_kfree
        if kp.active:
            kp.call(self._kfree, addr, call_site)
        else:
            self._kfree(addr, call_site)

    def _kfree(self, addr: int, call_site: int) -> None:
        tp = self._tp_kfree
        if tp.enabled:
            tp.fire(call_site, addr)
        if addr <= ZERO_SIZE_PTR:
            return
        region = self.mem.region_of(addr)
        owner = region.owner if region is not None else None
        if isinstance(owner, KmemCache):
            self._give_back(owner, addr)
        elif isinstance(owner, LargeKmalloc) and addr == region.base:
            self.mem.unmap(region)
        else:
            raise SlabError(f"kfree of 0x{addr:x}, which kmalloc did not return")

    def ksize(self, addr: int) -> int:
        """The usable size of an allocated object."""
        region = self.mem.region_of(addr)
        owner = region.owner if region is not None else None
        if isinstance(owner, KmemCache):
            return owner.size
        if isinstance(owner, LargeKmalloc):
            return PAGE_SIZE << owner.order
        raise SlabError(f"ksize of 0x{addr:x}, which is not allocated")
