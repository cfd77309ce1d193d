"""TRACE_EVENT declarations: layouts, records, the print fmt evaluator on every modelled event."""
from __future__ import annotations

from types import SimpleNamespace as NS

import pytest
from tracesim.kernel_model.kernel import Kernel
from tracesim.kernel_model.trace.event import TraceEvent, layout

SKB = 0xffff888100004000


def printed(kernel: Kernel, system: str, name: str, *args) -> tuple[dict, str]:
    ev = kernel.tracing.event(system, name)
    rec = ev.build(ev.assign(*args), 0x10, 0x01, 42)
    assert len(rec) >= ev.struct_size
    return ev.decode(rec), ev.print_text(rec, kernel.tracing.symbols)


def hashed(kernel: Kernel, addr: int) -> str:
    return f"{kernel.tracing.symbols.hash_ptr(addr):016x}"


def test_every_event_has_a_format_and_unique_id(kernel: Kernel) -> None:
    ids = set()
    for (_system, name), ev in kernel.tracing.events.items():
        text = ev.format_text()
        assert text.startswith(f"name: {name}\nID: {ev.id}\nformat:\n")
        assert "\nprint fmt: " in text
        ids.add(ev.id)
    assert len(ids) == len(kernel.tracing.events)
    for want in ("skb:kfree_skb", "skb:consume_skb", "net:netif_receive_skb", "net:netif_rx",
                 "net:net_dev_queue", "net:net_dev_xmit", "napi:napi_poll", "kmem:kmalloc",
                 "kmem:kfree", "kmem:kmem_cache_alloc", "kmem:kmem_cache_free",
                 "bpf_trace:bpf_trace_printk"):
        assert want in kernel.tracing.available_events()


def test_ids_are_deterministic() -> None:
    a = {k: ev.id for k, ev in Kernel(seed=1).tracing.events.items()}
    b = {k: ev.id for k, ev in Kernel(seed=2).tracing.events.items()}
    assert a == b and a[("ftrace", "print")] == 5


def test_layout_natural_alignment_and_data_loc() -> None:
    fields, end, size, _ = layout([("char", "c"), ("u64", "x"), ("__string", "s"),
                                   ("char[16]", "comm"), ("short", "h")])
    assert [(f.name, f.offset, f.size, f.is_signed) for f in fields] == [
        ("c", 8, 1, False), ("x", 16, 8, False), ("s", 24, 4, False), ("comm", 28, 16, False),
        ("h", 44, 2, True)]
    assert (end, size) == (46, 48)
    assert fields[3].format_line() == "\tfield:char comm[16];\toffset:28;\tsize:16;\tsigned:0;\n"


def test_netif_receive_skb_record_layout(kernel: Kernel) -> None:
    ev = kernel.tracing.event("net", "netif_receive_skb")
    rec = ev.build(ev.assign(NS(addr=SKB, len=128, dev=NS(name="lo"))), 0x10, 1, 5703)
    assert len(rec) == 24 + 3
    assert int.from_bytes(rec[20:24], "little") == 0x00030018      # len 3 << 16 | offset 24
    assert rec[24:] == b"lo\0"


def test_kfree_skb_prints_symbol_and_reason(kernel: Kernel) -> None:
    loc = kernel.kallsyms.address_of("ip_rcv") + 0x42
    size = kernel.kallsyms.lookup(loc)[2]
    vals, text = printed(kernel, "skb", "kfree_skb", NS(addr=SKB, protocol=0x0008), loc, 3, 0)
    assert vals["protocol"] == 0x0800
    assert text == (f"skbaddr={hashed(kernel, SKB)} rx_sk=0000000000000000 protocol=2048 "
                    f"location=ip_rcv+0x42/0x{size:x} reason: NO_SOCKET")
    _, text = printed(kernel, "skb", "kfree_skb", NS(addr=SKB, protocol=0), loc, 999, 0)
    assert text.endswith("reason: 0x3e7")


def test_consume_skb_and_net_events(kernel: Kernel) -> None:
    h = hashed(kernel, SKB)
    _, text = printed(kernel, "skb", "consume_skb", NS(addr=SKB), 0)
    assert text == f"skbaddr={h} location=0x0"
    dev = NS(name="eth0")
    _, text = printed(kernel, "net", "net_dev_xmit", NS(addr=SKB), -16, dev, 60)
    assert text == f"dev=eth0 skbaddr={h} len=60 rc=-16"
    for name in ("net_dev_queue", "netif_rx"):
        _, text = printed(kernel, "net", name, NS(addr=SKB, len=1500, dev=dev))
        assert text == f"dev=eth0 skbaddr={h} len=1500"
    _, text = printed(kernel, "napi", "napi_poll", NS(addr=SKB, dev=dev), 3, 64)
    assert text == f"napi poll on napi struct {h} for device eth0 work 3 budget 64"


def test_kmem_events_print_gfp_flags(kernel: Kernel) -> None:
    site = kernel.kallsyms.address_of("__alloc_skb")
    size = kernel.kallsyms.lookup(site)[2]
    _, text = printed(kernel, "kmem", "kmalloc", site, SKB, 100, 128, 0xcc0 | 0x2000, -1)
    assert text == (f"call_site=__alloc_skb+0x0/0x{size:x} ptr={hashed(kernel, SKB)} "
                    "bytes_req=100 bytes_alloc=128 gfp_flags=GFP_KERNEL|__GFP_NOWARN node=-1 "
                    "accounted=false")
    _, text = printed(kernel, "kmem", "kmalloc", 0, SKB, 8, 8, 0x400cc0, 0)
    assert "gfp_flags=GFP_KERNEL_ACCOUNT node=0 accounted=true" in text
    _, text = printed(kernel, "kmem", "kmalloc", 0, SKB, 8, 8, 0, 0)
    assert "gfp_flags=none" in text
    cache = NS(name="skbuff_head_cache", object_size=232, size=256)
    _, text = printed(kernel, "kmem", "kmem_cache_alloc", 0, SKB, cache, 0x820, -1)
    assert "bytes_req=232 bytes_alloc=256 gfp_flags=GFP_ATOMIC node=-1 accounted=false" in text
    _, text = printed(kernel, "kmem", "kmem_cache_free", 0, SKB, cache)
    assert text == f"call_site=0x0 ptr={hashed(kernel, SKB)} name=skbuff_head_cache"
    _, text = printed(kernel, "kmem", "kfree", 0, 0)
    assert text == "call_site=0x0 ptr=0000000000000000"


def test_pointer_hash_is_keyed_by_seed() -> None:
    a, b = Kernel(seed=1).tracing.symbols, Kernel(seed=2).tracing.symbols
    assert a.hash_ptr(SKB) != b.hash_ptr(SKB) and a.hash_ptr(SKB) < 1 << 32
    assert Kernel(seed=1).tracing.symbols.hash_ptr(SKB) == a.hash_ptr(SKB)


@pytest.mark.parametrize("fmt, values, text", [
    ('"%d %u %x %lx %llu", REC->a, REC->a, REC->a, REC->b, REC->b', (-1, 2**64 - 1),
     "-1 4294967295 ffffffff ffffffffffffffff 18446744073709551615"),
    ('"[%5d|%-4x|%03u|%#x]", REC->a, REC->a, REC->a, REC->a', (10, 0), "[   10|a   |010|0xa]"),
    ('"%s", REC->a > 5 ? "big" : "small"', (7, 0), "big"),
    ('"%d", (REC->a & 0xf0) >> 4', (0x35, 0), "3"),
    ('"%s", __print_flags(REC->a, "|", { 1, "A" }, { 2, "B" })', (7, 0), "A|B|0x4"),
    ('"%s", __print_symbolic(REC->a, { 1, "ONE" }, { 2, "TWO" })', (2, 0), "TWO"),
    ('"%d%%", (int)REC->b', (0, 2**32 + 5), "5%"),
])
def test_print_fmt_evaluator(kernel: Kernel, fmt: str, values: tuple, text: str) -> None:
    ev = TraceEvent("test", "t", [("int", "a"), ("u64", "b")], fmt, lambda a, b: (a, b))
    rec = ev.build(ev.assign(*values), 0, 0, 1)
    assert ev.print_text(rec, kernel.tracing.symbols) == text


def test_bad_print_fmt_is_refused() -> None:
    with pytest.raises(ValueError):
        TraceEvent("test", "t", [("int", "a")], '"%d", REC->nosuch', lambda a: (a,))
    with pytest.raises(ValueError):
        TraceEvent("test", "t", [("int", "a")], '"%d %d", REC->a', lambda a: (a,))
