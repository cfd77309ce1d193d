"""kmem:kmalloc, kfree, kmem_cache_alloc, kmem_cache_free (include/trace/events/kmem.h, 6.1+).

``show_gfp_flags`` expands to ``__print_flags`` over the gfpflag names of mmflags.h; the values
are the 6.18 ``___GFP_*`` bits (gfp_types.h).
"""
from __future__ import annotations

from typing import Any

from kernel_model.trace_event import TraceEvent

__GFP = {
    "DMA": 0x1, "HIGHMEM": 0x2, "DMA32": 0x4, "MOVABLE": 0x8, "RECLAIMABLE": 0x10,
    "HIGH": 0x20, "IO": 0x40, "FS": 0x80, "ZERO": 0x100, "DIRECT_RECLAIM": 0x400,
    "KSWAPD_RECLAIM": 0x800, "WRITE": 0x1000, "NOWARN": 0x2000, "RETRY_MAYFAIL": 0x4000,
    "NOFAIL": 0x8000, "NORETRY": 0x10000, "MEMALLOC": 0x20000, "COMP": 0x40000,
    "NOMEMALLOC": 0x80000, "HARDWALL": 0x100000, "THISNODE": 0x200000, "ACCOUNT": 0x400000,
    "ZEROTAGS": 0x800000,
}
__GFP_RECLAIM = __GFP["DIRECT_RECLAIM"] | __GFP["KSWAPD_RECLAIM"]
GFP_KERNEL = __GFP_RECLAIM | __GFP["IO"] | __GFP["FS"]
GFP_ATOMIC = __GFP["HIGH"] | __GFP["KSWAPD_RECLAIM"]
GFP_NOWAIT = __GFP["KSWAPD_RECLAIM"] | __GFP["NOWARN"]
GFP_ACCOUNT = __GFP["ACCOUNT"]
_GFP_USER = GFP_KERNEL | __GFP["HARDWALL"]
_GFP_HIGHUSER_MOVABLE = _GFP_USER | __GFP["HIGHMEM"] | __GFP["MOVABLE"]
_GFP_TRANSHUGE_LIGHT = ((_GFP_HIGHUSER_MOVABLE | __GFP["COMP"] | __GFP["NOMEMALLOC"]
                         | __GFP["NOWARN"]) & ~__GFP_RECLAIM)

# __def_gfpflag_names order: composite names first, then single bits
GFP_FLAG_NAMES: tuple[tuple[int, str], ...] = (
    (_GFP_TRANSHUGE_LIGHT | __GFP["DIRECT_RECLAIM"], "GFP_TRANSHUGE"),
    (_GFP_TRANSHUGE_LIGHT, "GFP_TRANSHUGE_LIGHT"),
    (_GFP_HIGHUSER_MOVABLE, "GFP_HIGHUSER_MOVABLE"),
    (_GFP_USER | __GFP["HIGHMEM"], "GFP_HIGHUSER"),
    (_GFP_USER, "GFP_USER"),
    (GFP_KERNEL | __GFP["ACCOUNT"], "GFP_KERNEL_ACCOUNT"),
    (GFP_KERNEL, "GFP_KERNEL"),
    (__GFP_RECLAIM | __GFP["IO"], "GFP_NOFS"),
    (GFP_ATOMIC, "GFP_ATOMIC"),
    (__GFP_RECLAIM, "GFP_NOIO"),
    (GFP_NOWAIT, "GFP_NOWAIT"),
    (__GFP["DMA"], "GFP_DMA"),
    (__GFP["HIGHMEM"], "__GFP_HIGHMEM"),
    (__GFP["DMA32"], "GFP_DMA32"),
) + tuple((__GFP[n], "__GFP_" + n) for n in (
    "HIGH", "IO", "FS", "NOWARN", "RETRY_MAYFAIL", "NOFAIL", "NORETRY", "COMP", "ZERO",
    "NOMEMALLOC", "MEMALLOC", "HARDWALL", "THISNODE", "RECLAIMABLE", "MOVABLE", "ACCOUNT",
    "WRITE")) + (
    (__GFP_RECLAIM, "__GFP_RECLAIM"),
    (__GFP["DIRECT_RECLAIM"], "__GFP_DIRECT_RECLAIM"),
    (__GFP["KSWAPD_RECLAIM"], "__GFP_KSWAPD_RECLAIM"),
    (__GFP["ZEROTAGS"], "__GFP_ZEROTAGS"),
)

_SHOW_GFP = ('(REC->gfp_flags) ? __print_flags(REC->gfp_flags, "|", '
             + ", ".join(f'{{(unsigned long)0x{v:x}, "{n}"}}' for v, n in GFP_FLAG_NAMES)
             + ') : "none"')
_ALLOC_FIELDS = [("unsigned long", "call_site"), ("const void *", "ptr"),
                 ("size_t", "bytes_req"), ("size_t", "bytes_alloc"),
                 ("unsigned long", "gfp_flags"), ("int", "node")]
_ALLOC_FMT = ('"call_site=%pS ptr=%p bytes_req=%zu bytes_alloc=%zu gfp_flags=%s node=%d '
              'accounted=%s", (void *)REC->call_site, REC->ptr, REC->bytes_req, '
              "REC->bytes_alloc, " + _SHOW_GFP + ", REC->node, ")


def _kmalloc(call_site: int, ptr: int, bytes_req: int, bytes_alloc: int, gfp_flags: int,
             node: int) -> tuple:
    return (call_site, ptr, bytes_req, bytes_alloc, gfp_flags, node)


def _kmem_cache_alloc(call_site: int, ptr: int, s: Any, gfp_flags: int, node: int) -> tuple:
    return (call_site, ptr, s.object_size, s.size, gfp_flags, node,
            1 if gfp_flags & GFP_ACCOUNT else 0)


def _kfree(call_site: int, ptr: int) -> tuple:
    return (call_site, ptr)


def _kmem_cache_free(call_site: int, ptr: int, s: Any) -> tuple:
    return (call_site, ptr, s.name)


def events() -> list[TraceEvent]:
    return [
        TraceEvent(
            "kmem", "kmalloc", _ALLOC_FIELDS,
            _ALLOC_FMT + "(1 && (REC->gfp_flags & (unsigned long)0x%x)) ? \"true\" : \"false\""
            % GFP_ACCOUNT,
            _kmalloc, proto="unsigned long call_site, const void *ptr, size_t bytes_req, "
                            "size_t bytes_alloc, gfp_t gfp_flags, int node"),
        TraceEvent(
            "kmem", "kmem_cache_alloc", _ALLOC_FIELDS + [("bool", "accounted")],
            _ALLOC_FMT + 'REC->accounted ? "true" : "false"',
            _kmem_cache_alloc, proto="unsigned long call_site, const void *ptr, "
                                     "struct kmem_cache *s, gfp_t gfp_flags, int node"),
        TraceEvent(
            "kmem", "kfree", [("unsigned long", "call_site"), ("const void *", "ptr")],
            '"call_site=%pS ptr=%p", (void *)REC->call_site, REC->ptr',
            _kfree, proto="unsigned long call_site, const void *ptr"),
        TraceEvent(
            "kmem", "kmem_cache_free",
            [("unsigned long", "call_site"), ("const void *", "ptr"), ("__string", "name")],
            '"call_site=%pS ptr=%p name=%s", (void *)REC->call_site, REC->ptr, __get_str(name)',
            _kmem_cache_free,
            proto="unsigned long call_site, const void *ptr, const struct kmem_cache *s"),
    ]
