"""kprobe events' generated hit (kernel_model/trace/probe_codegen.py) against the general path.

Two kernels booted alike get the same kprobe events and the same hits (crafted pt_regs over
memory laid out to be awkward: strings ending a region, crossing regions, in freed slab objects,
unmapped, longer than the kernel keeps; negative and truncated integers; arrays, bitfields,
$comm, immediates, symbols; return probes; predicates; time gaps needing a time extend; page
switches). One records through the generated hit, the other through the general path (the event's
``_hit``: fetch closures, ``build``, ``write_unlocked``). Their ring buffers must hold the same
bytes and print the same trace.
"""
from __future__ import annotations

import struct
from typing import Any

import pytest
from tracesim.kernel_model.kernel import Kernel
from tracesim.kernel_model.kprobes import PT_REGS_NAMES
from tracesim.kernel_model.trace import output as trace_output
from tracesim.kernel_model.trace.ring_buffer import TS_MASK

SYM = "__netif_receive_skb"
DEFS = [
    f"p:strs {SYM} a=+0(%di):string b=+8(%si):string c=-8(%dx):string d=+0(%cx):string",
    f"p:ints {SYM} a=+0(%di):s8 b=+0(%di):s16 c=+0(%di):s32 d=+0(%di):u8 e=+0(%si):u64 "
    "f=%dx:s32 g=%cx:x16 h=$arg5:u32 i=$stack j=+0x10(%di):x32 k=-4(%r8):s64",
    f"p:other {SYM} arr=+0(%di):u16[3] bf=+0(%di):b3@2/8 comm=$comm imm=\\0x1234 "
    "sym=%si:symbol nested=+0(+8(%di)):u32 str2=+0(+16(%di)):string",
    f"r:ret {SYM} rv=$retval:s32 s=+0(%di):string",
]
EVENTS = ("strs", "ints", "other", "ret")


def regs(**values: int) -> bytearray:
    raw = bytearray(8 * len(PT_REGS_NAMES))
    for name, v in values.items():
        struct.pack_into("<Q", raw, 8 * PT_REGS_NAMES.index(name), v & (1 << 64) - 1)
    return raw


def boot(filters: dict[str, str]) -> Kernel:
    kernel = Kernel(cpus=2, seed=1, clock="virtual")
    tr = kernel.tracing
    for d in DEFS:
        tr.kprobes.write(d + "\n")
    for name in EVENTS:
        f = tr.top.file("kprobes", name)
        if name in filters:
            from tracesim.filters.predicate import compile_filter
            ev = tr.event("kprobes", name)
            f.set_filter(compile_filter(filters[name], ev.all_fields), filters[name])
        f.set_enabled(True)
    return kernel


def layout(kernel: Kernel) -> dict[str, int]:
    """Memory the hits point at (the same addresses in both kernels: same boot, same maps)."""
    mem = kernel.mem
    slab = mem.map(4096, "codegen-slab", obj_size=64)
    slab.live[0] = 1                                # object 0 live, object 1 freed
    plain = mem.map(3 * 4096, "codegen-test")
    edge = mem.map(4096, "codegen-edge")            # two regions back to back
    edge2 = mem.map(4096, "codegen-edge2")
    assert edge2.base == edge.end
    base, sb = plain.base, slab.base
    mem.write(base, b"hello\0")
    mem.write(edge.end - 3, b"end")                 # no NUL before the region ends...
    mem.write(edge2.base, b"next\0")                # ...continues in the next region
    mem.write(edge2.end - 4, b"tail")               # runs off mapped memory: a fault
    mem.write(base + 100, b"x" * 5000 + b"\0")      # longer than MAX_STRING_SIZE - 1
    slab.buf[40:44] = b"abc\0"                      # live object, NUL inside it
    slab.buf[62:70] = b"zzfreed\0"                  # the NUL is in the freed object
    mem.write(base + 8192, struct.pack("<QQQ", 0xfffffffffffffff0, base, sb + 40))
    mem.write(base + 8192 + 0x10, struct.pack("<I", 0x80000001))
    return {"plain": base, "slab": sb, "unmapped": 0xffff888000000000,
            "nums": base + 8192, "edge": edge.end - 3, "tail": edge2.end - 4}


def hit_list(m: dict[str, int]) -> list[tuple[str, bytearray]]:
    text = 0xffffffff81000000
    out: list[tuple[str, bytearray]] = []
    strings = [m["plain"], m["edge"], m["tail"], m["plain"] + 100,
               m["slab"] + 40, m["slab"] + 62, m["slab"] + 64, m["unmapped"], 0]
    for i, s in enumerate(strings):
        t = strings[(i + 3) % len(strings)]
        out.append(("strs", regs(di=s, si=t - 8, dx=s + 8, cx=t, ip=text + 0x40)))
        out.append(("ret", regs(di=s, ax=-5 - i, ip=text + 0x99)))
    for v in (m["nums"], m["nums"] + 0x10, m["unmapped"], m["slab"] + 64):
        out.append(("ints", regs(di=v, si=v, dx=-7, cx=0x12345, r8=v + 12, sp=0xffffc900001234,
                                 ip=text)))
        out.append(("other", regs(di=v, si=text + 0x10, ip=text)))
    return out


def run(kernel: Kernel, general: bool, gaps: list[int]) -> list[bytes]:
    """Fire every hit (through each event's generated hit, or its general ``_hit``)."""
    m = layout(kernel)
    tr = kernel.tracing
    handlers = {}
    for name in EVENTS:
        ev = tr.event("kprobes", name)
        h = ev._probe.handler
        assert general or hasattr(h, "source"), f"{name}: no generated hit"
        handlers[name] = ev._hit if general else h
    slow_calls = [0]
    if not general:                 # count the hits the generated code hands on
        for h in handlers.values():
            inner = h.__globals__["fallback"]

            def counted(*a: Any, inner: Any = inner) -> None:
                slow_calls[0] += 1
                inner(*a)
            h.__globals__["fallback"] = counted
    hits = hit_list(m)
    short = [(n, r) for n, r in hits if n != "strs" and n != "ret"]
    with kernel.machine.running(kernel.user_task("codegen")):
        for round_, gap in enumerate(gaps):
            kernel.clock.advance(gap)
            for name, raw in (hits if round_ % 8 == 0 else short[round_ % 3::2]):
                handlers[name](raw)
    if not general:                 # most hits took the generated path
        assert slow_calls[0] < len(gaps) * 3
    buf = tr.top.buffer
    pages = []
    for cb in buf.cpus:
        pages += [bytes(p.buf[:16 + p.write]) + struct.pack("<qqq", p.ts, p.last_ts, p.entries)
                  for p in cb.pages]
        pages.append(struct.pack("<qqq", cb.entries, cb.bytes, cb.dropped_events))
    return pages


@pytest.mark.parametrize("filters", [
    {},
    {"strs": 'a == "hello"', "ints": "f < 0 && a != 1", "other": 'comm ~ "code*"',
     "ret": "rv < -7"},
    {"strs": 'b == "nope"', "ints": "e == 3", "other": "imm == 1", "ret": 's == "abc"'},
], ids=["no-filter", "filters", "all-discarded"])
def test_generated_hit_writes_the_general_paths_bytes(filters: dict[str, str]) -> None:
    gaps = [1000, 5, TS_MASK + 17, 3, 2 * TS_MASK, 0, 1 << 40, 7] * 6
    fast = boot(filters)
    slow = boot(filters)
    assert run(fast, False, gaps) == run(slow, True, gaps)
    text = [trace_output.trace_text(k.tracing.top) for k in (fast, slow)]
    assert text[0] == text[1]
    assert text[0].count("\n") > 20 or filters


def test_generated_hit_lines(kernel: Kernel) -> None:
    """What the generated path prints for awkward strings, as the kernel prints them."""
    tr = kernel.tracing
    tr.kprobes.write(DEFS[0] + "\n")
    tr.top.file("kprobes", "strs").set_enabled(True)
    m = layout(kernel)
    h = tr.event("kprobes", "strs")._probe.handler
    with kernel.machine.running(kernel.user_task("codegen")):
        h(regs(di=m["plain"], si=m["edge"] - 8, dx=m["slab"] + 62 + 8, cx=m["unmapped"]))
        h(regs(di=m["plain"] + 100, si=m["slab"] + 40 - 8, dx=m["slab"] + 40 + 8,
               cx=m["tail"]))
    lines = [ln.split(": ", 2)[-1] for ln in trace_output.trace_text(tr.top).splitlines()
             if not ln.startswith("#")]
    assert lines[0].endswith('a="hello" b="endnext" c=(fault) d=(fault)')
    # the second record (a 4095-byte string and more) is longer than a page's max_data_size:
    # ring_buffer_lock_reserve refuses it, so the kernel traces nothing for that hit
    assert len(lines) == 1 and sum(cb.entries for cb in tr.top.buffer.cpus) == 1


def test_empty_string_and_fault_print_apart(kernel: Kernel) -> None:
    """print_type_string: "" is a string (length 1, its NUL), a fault has length 0."""
    tr = kernel.tracing
    tr.kprobes.write(DEFS[0] + "\n")
    tr.top.file("kprobes", "strs").set_enabled(True)
    m = layout(kernel)
    h = tr.event("kprobes", "strs")._probe.handler
    with kernel.machine.running(kernel.user_task("codegen")):
        # a: "hello"; b: the NUL right after it (""); c: unmapped (fault); d: "" again
        h(regs(di=m["plain"], si=m["plain"] + 5 - 8, dx=m["unmapped"] + 8, cx=m["plain"] + 5))
    lines = [ln for ln in trace_output.trace_text(tr.top).splitlines() if not ln.startswith("#")]
    assert lines[0].endswith('a="hello" b="" c=(fault) d=""')


def test_reader_in_the_buffer_takes_the_locked_path(kernel: Any) -> None:
    """A hit while someone holds the buffer (a reader, a control write) is written under the
    lock by the general path, after the holder leaves; nothing is lost or doubled."""
    tr = kernel.tracing
    tr.kprobes.write(DEFS[0] + "\n")
    tr.top.file("kprobes", "strs").set_enabled(True)
    m = layout(kernel)
    h = tr.event("kprobes", "strs")._probe.handler
    buf = tr.top.buffer
    with kernel.machine.running(kernel.user_task("codegen")):
        h(regs(di=m["plain"]))
        buf.others += 1                 # as ``exclusive`` counts a holder
        try:
            import threading
            t = threading.Thread(target=h, args=(regs(di=m["edge"]),))
            buf.lock.acquire()
            t.start()
            t.join(0.05)
            assert t.is_alive()         # waiting for the lock
        finally:
            buf.others -= 1
            buf.lock.release()
        t.join()
    assert sum(cb.entries for cb in buf.cpus) == 2
    out = trace_output.trace_text(tr.top)
    assert 'a="hello"' in out and 'a="endnext"' in out


READER = r"""
#include <linux/skbuff.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("kprobe/__netif_receive_skb")
int rd(struct pt_regs *ctx)
{
	char buf[8];
	long err = bpf_probe_read_kernel(buf, sizeof(buf), (void *)PT_REGS_PARM1(ctx));

	return err == 0 && buf[0] == 'k' && buf[7] == 'y';
}

char _license[] SEC("license") = "GPL";
"""


def test_bpf_probe_read_fast_path_agrees_with_the_interpreter(system: Any) -> None:
    """The JIT attachment's bound ``bpf_probe_read_kernel`` (event_filter.py) keeps what the
    helper keeps: live objects read, freed objects, reads across objects or off the region and
    unmapped addresses fault (the program sees -EFAULT and drops the event)."""
    from pathlib import Path

    from tracesim.filters.bpf.compiler.driver import compile_source

    from tests.tree_helpers import cat_into
    examples = Path(__file__).resolve().parent.parent / "tools" / "examples"
    obj = compile_source(READER, "rd.c", [examples]).elf
    kernel, tree = system.kernel, system.tree
    mem = kernel.mem
    slab = mem.map(4096, "codegen-bpf-slab", obj_size=64)
    slab.live[0] = slab.live[2] = 1
    plain = mem.map(4096, "codegen-bpf")
    for buf, off in ((slab.buf, 0), (slab.buf, 60), (slab.buf, 64), (slab.buf, 128),
                     (plain.buf, 0), (plain.buf, 4092)):
        buf[off:off + 8] = b"kkkkkkky"[:len(buf) - off]
    addrs = [slab.base, slab.base + 60, slab.base + 64, slab.base + 128, slab.base + 124,
             plain.base, plain.base + 4092, 0xffff888000000000, 0x1000]
    kept = {}
    tree.echo("/kprobe_events", "p:rdev __netif_receive_skb")
    for engine in ("jit", "interp"):
        assert system.control(["bpf-engine", engine])[0] == 0
        cat_into(tree, "/events/kprobes/rdev/filter", obj)
        tree.echo("/events/kprobes/rdev/enable", "1")
        handler = kernel.tracing.event("kprobes", "rdev")._probe.handler
        outcome = []
        with kernel.lock, kernel.machine.running(kernel.user_task("codegen")):
            for a in addrs:
                before = sum(cb.entries for cb in kernel.tracing.top.buffer.cpus)
                handler(regs(di=a))
                outcome.append(sum(cb.entries for cb in kernel.tracing.top.buffer.cpus) - before)
        kept[engine] = outcome
        tree.echo("/events/kprobes/rdev/enable", "0")
        tree.echo("/events/kprobes/rdev/filter", "0")
    assert system.control(["bpf-engine", "jit"])[0] == 0
    assert kept["jit"] == kept["interp"] == [1, 0, 0, 1, 0, 1, 0, 0, 0]


ALLOC = ("p:alloc __netdev_alloc_skb name=+280(%di):string len=%si:u32 gfp=$arg3:x32 "
         "dev=%di:x64 cx=%cx:u64 where=+0(%di):string")


def alloc_pages(args_form: bool, flt: str | None) -> tuple[list[bytes], str]:
    """Real alloc/free calls through the ``__netdev_alloc_skb`` site with a kprobe event on
    it, its hit run from the C arguments (``Kprobe.args_handler``) or from pt_regs."""
    kernel = Kernel(cpus=2, seed=1, clock="virtual")
    tr = kernel.tracing
    tr.kprobes.write(ALLOC + "\n")
    f = tr.top.file("kprobes", "alloc")
    if flt is not None:
        from tracesim.filters.predicate import compile_filter
        f.set_filter(compile_filter(flt, tr.event("kprobes", "alloc").all_fields), flt)
    f.set_enabled(True)
    probe = tr.event("kprobes", "alloc")._probe
    assert probe.args_handler is not None          # the usual case takes the arguments
    if not args_form:
        probe.set_handler(probe.handler)            # the site writes pt_regs again
    assert ("args call" in probe.site.call.__code__.co_filename) == args_form
    net = kernel.net
    devs = [net.device(n) for n in ("lo", "eth0", "eth5")]
    gaps = [1000, 5, TS_MASK + 17, 3, 0, 1 << 40]
    with kernel.machine.running(kernel.user_task("codegen")):
        for i in range(400):
            kernel.clock.advance(gaps[i % len(gaps)])
            net.kfree_skb(net.netdev_alloc_skb(devs[i % 3], 64 + i % 200), 2, 0)
    pages = []
    for cb in tr.top.buffer.cpus:
        pages += [bytes(p.buf[:16 + p.write]) + struct.pack("<qqq", p.ts, p.last_ts, p.entries)
                  for p in cb.pages]
        pages.append(struct.pack("<qqq", cb.entries, cb.bytes, cb.dropped_events))
    return pages, trace_output.trace_text(tr.top)


@pytest.mark.parametrize("flt", [None, 'name == "eth5"', 'name ~ "eth*" && len > 100'])
def test_hit_from_the_arguments_writes_what_the_pt_regs_hit_writes(flt: str | None) -> None:
    """The site hands a kprobe event's hit the C arguments instead of writing pt_regs: the
    pages (page switches, time extends, predicates) are those of the pt_regs form."""
    fast, fast_text = alloc_pages(True, flt)
    slow, slow_text = alloc_pages(False, flt)
    assert fast == slow and fast_text == slow_text
    assert 'name="eth5"' in fast_text and " cx=0 " in fast_text
    assert (fast_text.count('name="lo"') > 100) == (flt is None)
