"""The default layout's batch formatter prints what the general per-event path prints.

``output.format_lines`` (and ``trace_pipe``'s ``format_runs``) formats the default layout
(context and irq-info on, no record-tgid, a ns clock) a batch at a time: context columns found
by a record's first 8 bytes, generated whole-line printers with memoised pointer texts
(``printfmt.context_printer``). ``output.format_lines_general`` is the plain path: each line's
context columns, then the event's line printer. Both must give the same bytes for every event
type the model has (tracepoints, ftrace entries, kprobe/kretprobe, fprobe, eprobe and
synthetic events), for random records as for a busy kernel's stream, through ``trace`` and
``trace_pipe``, with ``LOST`` lines, and across a ``hash-ptr`` switch.
"""
from __future__ import annotations

import random
import struct

import pytest
from tracesim.kernel_model import control
from tracesim.kernel_model.trace import output
from tracesim.kernel_model.trace.printfmt import context_printer
from tracesim.tracefs.system import System

DYNAMIC = [
    ("/kprobe_events", "p:kp __netif_receive_skb skb=%di len=+112(%di):u32 "
                       "dev=+0(+16(%di)):string"),
    ("/kprobe_events", "r:kr __netif_receive_skb ret=$retval"),
    ("/dynamic_events", "f:fp __netif_receive_skb skb"),
    ("/dynamic_events", "e:eg/ev net/netif_receive_skb len=$len name=$name:string"),
    ("/synthetic_events", "lat_ev u64 lat; unsigned int len; pid_t pid"),
    ("/synthetic_events", "name_ev char comm[16]; unsigned int n"),
    ("/synthetic_events", "str_ev char name[]; int n"),
]


def boot() -> System:
    system = System.boot(cpus=2, seed=3, clock="virtual")
    for path, text in DYNAMIC:
        system.tree.echo(path, text, append=True)
    return system


def general(array, events) -> str:
    return output.format_lines_general(array, events)


def each_event_alike(array, events) -> list:
    """Compare event by event (a random record may make a printer fail: then both fail
    alike); the events both print."""
    ok = []
    for ev in events:
        try:
            want = general(array, [ev])
        except Exception as err:           # noqa: BLE001 - the same failure is expected
            with pytest.raises(type(err)):
                output.format_lines(array, [ev])
            continue
        assert output.format_lines(array, [ev]) == want, ev
        ok.append(ev)
    return ok


def test_random_records_of_every_event_type_print_alike():
    system = boot()
    try:
        tracing = system.kernel.tracing
        array = tracing.top
        rng = random.Random(20)
        types = sorted(tracing.by_id)
        assert len(types) > 90
        pids = [0, 1, 2, 999_999] + sorted(tracing.tgids)[:5]
        pool = [0, 1, 0xffffffffffffffff, 0xffffffffffffff00, 0xffff888000001000] + \
            [rng.getrandbits(64) for _ in range(6)]
        events = []
        for etype in types + [0xfffe]:             # and a type nothing has
            ev = tracing.by_id.get(etype)
            size = (ev.struct_size if ev is not None else 8) + 48
            for _ in range(6):
                body = bytearray(rng.getrandbits(8) for _ in range(size))
                for off in range(8, size - 8, 8):      # pointers that repeat across records
                    if rng.random() < 0.5:
                        struct.pack_into("<Q", body, off, rng.choice(pool))
                struct.pack_into("<HBBi", body, 0, etype, rng.getrandbits(8),
                                 rng.getrandbits(8), rng.choice(pids))
                # times of 5 digits of seconds and of more (the column grows)
                events.append((rng.randrange(2), rng.getrandbits(rng.choice((40, 52))), bytes(body),
                               rng.choice((0, 0, 0, 5))))
        printed = each_event_alike(array, events)
        assert len(printed) > 400
        # the memos' second look, at other times
        twice = printed + [(c, ts ^ 0xfff_ffff, data, lost) for c, ts, data, lost in printed]
        assert output.format_lines(array, twice) == general(array, twice)
        views = [(c, ts, (bytearray, memoryview)[i % 2](data), lost)
                 for i, (c, ts, data, lost) in enumerate(printed)]
        assert output.format_lines(array, views) == general(array, printed)
        system.tree.echo("/options/hash-ptr", "0")     # %p prints raw addresses now
        assert output.format_lines(array, twice) == general(array, twice)
        system.tree.echo("/options/hash-ptr", "1")
        assert output.format_lines(array, twice) == general(array, twice)
    finally:
        system.shutdown()


def busy(system: System) -> None:
    """A stream with most event kinds: packets on two devices and both CPUs, ping, a marker
    line, the synthetic events fired by hist triggers, the function tracer's entries."""
    tree = system.tree
    tree.echo("/buffer_size_kb", "4096")
    tree.echo("/events/net/net_dev_queue/trigger",
              "hist:keys=skbaddr:ts0=common_timestamp.usecs", append=True)
    tree.echo("/events/net/netif_receive_skb/trigger",
              "hist:keys=skbaddr:lat=common_timestamp.usecs-$ts0:"
              "onmatch(net.net_dev_queue).lat_ev($lat,len,common_pid)", append=True)
    tree.echo("/set_ftrace_filter", "__netif_receive_skb*")
    tree.echo("/current_tracer", "function")       # first: switching tracers clears the buffer
    tree.echo("/set_event", "*:*")
    kernel = system.kernel
    control.send(kernel, "eth0", 64, count=40)
    control.send(kernel, "lo", 300, count=10)
    control.send(kernel, "eth0", 900, proto="tcp", count=5, ipv6=True)
    control.ping(kernel, "lo", count=2)
    tree.echo("/trace_marker", "marker text with \\x and % signs")
    kernel.workloads.get("net").step(50)
    tree.echo("/tracing_on", "0")


def test_a_busy_kernels_trace_and_trace_pipe_print_alike():
    system = boot()
    try:
        busy(system)
        array = system.kernel.tracing.top
        events = list(array.buffer.iter_events())
        kinds = {struct.unpack_from("<H", data)[0] for _, _, data, _ in events}
        assert len(kinds) > 25 and {c for c, _, _, _ in events} == {0, 1}
        want = general(array, events)
        for name in ("kp", "kr", "fp", "ev", "lat_ev", "tracing_mark_write", "consume_skb"):
            assert f" {name}: " in want, name
        text = system.tree.read_text("/trace")
        assert text == output.header_text(array) + want
        # trace_pipe in reads of several sizes gives the same lines, consumed
        pipe = system.tree.cat("/trace_pipe", nonblock=True, chunk=5000).decode()
        assert pipe == want
        assert array.buffer.entries()[0] == 0
    finally:
        system.shutdown()


@pytest.mark.parametrize("chunk", [4096, 131072])
def test_lost_events_through_trace_pipe_print_alike(chunk):
    """A buffer overwritten before it is read: the ``LOST`` lines where the general path
    puts them (two identical kernels: one read by trace_pipe, one by consume_batch)."""
    systems = [System.boot(cpus=2, seed=4, clock="virtual") for _ in range(2)]
    try:
        for system in systems:
            system.tree.echo("/buffer_size_kb", "8")
            system.tree.echo("/set_event", "*:*")
            control.send(system.kernel, "eth0", 64, count=30)
            system.kernel.workloads.get("net").step(40)
            system.tree.echo("/tracing_on", "0")
        got = systems[0].tree.cat("/trace_pipe", nonblock=True, chunk=chunk).decode()
        array = systems[1].kernel.tracing.top
        events = []
        while batch := array.buffer.consume_batch(None, 97):
            events += batch
        assert any(lost for _, _, _, lost in events)
        assert got == general(array, events)
        assert "[LOST " in got
    finally:
        for system in systems:
            system.shutdown()


def test_other_layouts_take_the_general_path():
    system = boot()
    try:
        busy(system)
        array = system.kernel.tracing.top
        events = list(array.buffer.iter_events())
        for option in ("record-tgid", "irq-info", "context-info"):
            value = "0" if option != "record-tgid" else "1"
            system.tree.echo(f"/options/{option}", value)
            assert output.format_lines(array, events) == general(array, events)
            system.tree.echo(f"/options/{option}", "1" if value == "0" else "0")
        system.tree.echo("/trace_clock", "counter")
        assert output.format_lines(array, events) == general(array, events)
    finally:
        system.shutdown()


def test_a_context_printer_is_the_line_printer_after_the_columns():
    system = System.boot(cpus=1, seed=1, clock="virtual")
    try:
        system.tree.echo("/events/net/netif_receive_skb/enable", "1")
        control.send(system.kernel, "lo", 100)
        [(_, _, rec, _)] = list(system.kernel.tracing.top.buffer.iter_events())
        ev = system.kernel.tracing.event("net", "netif_receive_skb")
        line = context_printer(ev.line_printer)
        assert line is context_printer(ev.line_printer)      # generated once
        symbols = system.kernel.tracing.symbols
        head = "%16s-%-7d [%03d] %s " % ("x", 1, 0, "....")
        for ts in (0, 499, 500, 1_999_999_500, 123_456_789_012_345):
            us = (ts + 500) // 1000
            assert line(rec, symbols, head, ts) == (
                head + "%5d.%06d: " % (us // 1_000_000, us % 1_000_000)
                + ev.line_printer(rec, symbols))
        # printers written by hand have none
        assert context_printer(system.kernel.tracing.event("ftrace", "print").line_printer) \
            is None
    finally:
        system.shutdown()
