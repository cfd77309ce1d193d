"""kmem:kmalloc, kfree, kmem_cache_alloc, kmem_cache_free as in Linux 6.18.

Sources: include/trace/events/kmem.h (6.18: ``kmem_cache_alloc`` records the cache ``name``,
added by "kmem/tracing: add kmem name to kmem_cache_alloc tracepoint", mm-stable-2025-10-01),
include/trace/events/mmflags.h (``show_gfp_flags``, ``__def_gfpflag_names``, the
``TRACE_DEFINE_ENUM(___GFP_*_BIT)`` list) and include/linux/gfp_types.h.

The ``print fmt`` is the TP_printk arguments as the preprocessor stringifies them, then with the
``___GFP_*_BIT`` enum names replaced by their values (trace_event_eval_update). The helpers below
spell each gfp macro the way its expansion comes out (gcc puts a space where the empty
``__force`` was: ``(( gfp_t)...``), so the flag table reads like gfp_types.h.
"""
from __future__ import annotations

from typing import Any

from tracesim.kernel_model.mm.slab import SLAB_ACCOUNT
from tracesim.kernel_model.trace.event import TraceEvent

# enum { ___GFP_DMA_BIT, ... } of gfp_types.h for x86-64 with CONFIG_MEMCG (which selects
# CONFIG_SLAB_OBJ_EXT) and without CONFIG_KASAN_HW_TAGS / CONFIG_LOCKDEP: bit 9 is unused,
# ___GFP_SKIP_ZERO / ___GFP_SKIP_KASAN / ___GFP_NOLOCKDEP are 0.
GFP_BITS: tuple[str, ...] = (
    "DMA", "HIGHMEM", "DMA32", "MOVABLE", "RECLAIMABLE", "HIGH", "IO", "FS", "ZERO", "UNUSED",
    "DIRECT_RECLAIM", "KSWAPD_RECLAIM", "WRITE", "NOWARN", "RETRY_MAYFAIL", "NOFAIL", "NORETRY",
    "MEMALLOC", "COMP", "NOMEMALLOC", "HARDWALL", "THISNODE", "ACCOUNT", "ZEROTAGS", "NO_OBJ_EXT",
)
GFP_BIT = {name: bit for bit, name in enumerate(GFP_BITS)}
# TRACE_GFP_FLAGS: the single bits __def_gfpflag_names lists after the composites
_TRACE_GFP_FLAGS = tuple(n for n in GFP_BITS if n != "UNUSED")

GFP_ACCOUNT = 1 << GFP_BIT["ACCOUNT"]


def _bits(name: str) -> str:
    """``___GFP_<name>`` = ``BIT(___GFP_<name>_BIT)``, the enum already replaced."""
    return f"((((1UL))) << ({GFP_BIT[name]}))"


def _gfp(name: str) -> str:
    """``__GFP_<name>`` = ``((__force gfp_t)___GFP_<name>)``."""
    return f"(( gfp_t){_bits(name)})"


_SKIP_KASAN = "(( gfp_t)0)"
_RECLAIM = f"(( gfp_t)({_bits('DIRECT_RECLAIM')}|{_bits('KSWAPD_RECLAIM')}))"
_KERNEL = f"({_RECLAIM} | {_gfp('IO')} | {_gfp('FS')})"
_USER = f"({_RECLAIM} | {_gfp('IO')} | {_gfp('FS')} | {_gfp('HARDWALL')})"
_HIGHUSER = f"({_USER} | {_gfp('HIGHMEM')})"
_HIGHUSER_MOVABLE = f"({_HIGHUSER} | {_gfp('MOVABLE')} | {_SKIP_KASAN})"
_TRANSHUGE_LIGHT = (f"(({_HIGHUSER_MOVABLE} | {_gfp('COMP')} | {_gfp('NOMEMALLOC')} | "
                    f"{_gfp('NOWARN')}) & ~{_RECLAIM})")

# __def_gfpflag_names, in order: (expansion, name)
GFP_FLAG_NAMES: tuple[tuple[str, str], ...] = (
    (f"({_TRANSHUGE_LIGHT} | {_gfp('DIRECT_RECLAIM')})", "GFP_TRANSHUGE"),
    (_TRANSHUGE_LIGHT, "GFP_TRANSHUGE_LIGHT"),
    (_HIGHUSER_MOVABLE, "GFP_HIGHUSER_MOVABLE"),
    (_HIGHUSER, "GFP_HIGHUSER"),
    (_USER, "GFP_USER"),
    (f"({_KERNEL} | {_gfp('ACCOUNT')})", "GFP_KERNEL_ACCOUNT"),
    (_KERNEL, "GFP_KERNEL"),
    (f"({_RECLAIM} | {_gfp('IO')})", "GFP_NOFS"),
    (f"({_gfp('HIGH')}|{_gfp('KSWAPD_RECLAIM')})", "GFP_ATOMIC"),
    (f"({_RECLAIM})", "GFP_NOIO"),
    (f"({_gfp('KSWAPD_RECLAIM')} | {_gfp('NOWARN')})", "GFP_NOWAIT"),
    (_gfp("DMA"), "GFP_DMA"),
    (_gfp("DMA32"), "GFP_DMA32"),
    (_RECLAIM, "__GFP_RECLAIM"),
) + tuple((_gfp(n), "__GFP_" + n) for n in _TRACE_GFP_FLAGS)

# show_gfp_flags(__entry->gfp_flags); gfpflag_string(flag) is {(__force unsigned long)flag, #flag}
SHOW_GFP_FLAGS = ('(REC->gfp_flags) ? __print_flags(REC->gfp_flags, "|", '
                  + ", ".join(f'{{( unsigned long){text}, "{name}"}}'
                              for text, name in GFP_FLAG_NAMES)
                  + ', { 0, ((void *)0) } ) : "none"')

_HEAD = ("unsigned long", "call_site"), ("const void *", "ptr")
_SIZES = ("size_t", "bytes_req"), ("size_t", "bytes_alloc"), ("unsigned long", "gfp_flags"), \
    ("int", "node")


def _kmalloc(call_site: int, ptr: int, bytes_req: int, bytes_alloc: int, gfp_flags: int,
             node: int) -> tuple:
    return (call_site, ptr, bytes_req, bytes_alloc, gfp_flags, node)


def _kmem_cache_alloc(call_site: int, ptr: int, s: Any, gfp_flags: int, node: int) -> tuple:
    # accounted: IS_ENABLED(CONFIG_MEMCG) ? (gfp & __GFP_ACCOUNT) || (s->flags & SLAB_ACCOUNT)
    accounted = bool(gfp_flags & GFP_ACCOUNT or getattr(s, "flags", 0) & SLAB_ACCOUNT)
    return (call_site, ptr, s.name, s.object_size, s.size, gfp_flags, node, int(accounted))


def _kfree(call_site: int, ptr: int) -> tuple:
    return (call_site, ptr)


def _kmem_cache_free(call_site: int, ptr: int, s: Any) -> tuple:
    return (call_site, ptr, s.name)


def events() -> list[TraceEvent]:
    return [
        TraceEvent(
            "kmem", "kmem_cache_alloc", [*_HEAD, ("__string", "name"), *_SIZES,
                                         ("bool", "accounted")],
            '"call_site=%pS ptr=%p name=%s bytes_req=%zu bytes_alloc=%zu gfp_flags=%s node=%d '
            'accounted=%s", (void *)REC->call_site, REC->ptr, __get_str(name), REC->bytes_req, '
            f'REC->bytes_alloc, {SHOW_GFP_FLAGS}, REC->node, REC->accounted ? "true" : "false"',
            _kmem_cache_alloc, proto="unsigned long call_site, const void *ptr, "
                                     "struct kmem_cache *s, gfp_t gfp_flags, int node"),
        TraceEvent(
            "kmem", "kmalloc", [*_HEAD, *_SIZES],
            '"call_site=%pS ptr=%p bytes_req=%zu bytes_alloc=%zu gfp_flags=%s node=%d '
            'accounted=%s", (void *)REC->call_site, REC->ptr, REC->bytes_req, REC->bytes_alloc, '
            f'{SHOW_GFP_FLAGS}, REC->node, (1 && (REC->gfp_flags & ( unsigned long)'
            f'{_gfp("ACCOUNT")})) ? "true" : "false"',
            _kmalloc, proto="unsigned long call_site, const void *ptr, size_t bytes_req, "
                            "size_t bytes_alloc, gfp_t gfp_flags, int node"),
        TraceEvent(
            "kmem", "kfree", list(_HEAD),
            '"call_site=%pS ptr=%p", (void *)REC->call_site, REC->ptr',
            _kfree, proto="unsigned long call_site, const void *ptr"),
        TraceEvent(
            "kmem", "kmem_cache_free", [*_HEAD, ("__string", "name")],
            '"call_site=%pS ptr=%p name=%s", (void *)REC->call_site, REC->ptr, __get_str(name)',
            _kmem_cache_free,
            proto="unsigned long call_site, const void *ptr, const struct kmem_cache *s"),
    ]
