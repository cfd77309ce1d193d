"""The function tracers' per-function fast path writes what the general hook writes.

Each modelled function takes its own ``call`` while ``function`` or ``function_graph`` is the
only ftrace user; a pid list sends every call through the general hook instead. Both must give
the same ``trace`` text, the same raw pages and the same buffer statistics."""
from __future__ import annotations

import errno
import re
import struct

import pytest
from tracesim.kernel_model.net import core as netmod
from tracesim.kernel_model.trace.ring_buffer import (
    PAGE_HEADER,
    TS_MASK,
    RingBuffer,
    fixed_writer,
)
from tracesim.tracefs.system import System


def _raw(tree, cpu: int) -> bytes:
    try:
        return tree.cat(f"/per_cpu/cpu{cpu}/trace_pipe_raw", nonblock=True)
    except OSError as err:              # nothing on that CPU
        assert err.errno == errno.EAGAIN
        return b""


def _traced_run(tracer: str, general: bool, scenario: str = "plain") -> dict[str, str | bytes]:
    system = System.boot(cpus=2, seed=1, clock="virtual")
    try:
        tree = system.tree
        if general:
            # pid 1 never runs in this workload: the pid list changes no entry, but every
            # call goes through the general hook
            tree.echo("/set_ftrace_notrace_pid", "1")
        if scenario == "full":           # producer-drop mode: the buffer fills, then drops
            tree.echo("/options/overwrite", "0")
            tree.echo("/buffer_size_kb", "4")
        tree.echo("/current_tracer", tracer)
        kernel = system.kernel
        lo = kernel.net.device("lo")
        buffer = kernel.tracing.top.buffer
        if scenario == "reader":         # someone is in the buffer: every write takes the lock
            buffer.others += 1
        try:
            with kernel.machine.running(kernel.user_task("ping")):
                for i in range(3):
                    if scenario == "extend":     # a gap longer than an event header's delta
                        kernel.clock.advance(3 << 27)
                    kernel.net.xmit_frame(lo, netmod.packet_frame(lo, "udp", 100, seq=i))
        finally:
            if scenario == "reader":
                buffer.others -= 1
        if scenario == "cpumask":        # CPU 0, where the workload runs, no longer recorded
            tree.echo("/tracing_cpumask", "2")
        status, text = system.control(["skb-bench", "40"])
        assert status == 0, text
        out: dict[str, str | bytes] = {"trace": tree.read_text("/trace")}
        for cpu in range(2):
            out[f"stats{cpu}"] = tree.read_text(f"/per_cpu/cpu{cpu}/stats")
            out[f"raw{cpu}"] = _raw(tree, cpu)
        return out
    finally:
        system.shutdown()


@pytest.mark.parametrize("tracer", ["function", "function_graph"])
def test_fast_path_writes_what_the_general_hook_writes(tracer):
    fast, general = _traced_run(tracer, False), _traced_run(tracer, True)
    assert fast["trace"].count("\n") > 300
    for key in fast:
        assert fast[key] == general[key], key


@pytest.mark.parametrize("scenario", ["full", "cpumask", "extend", "reader"])
@pytest.mark.parametrize("tracer", ["function", "function_graph"])
def test_fast_path_off_its_usual_event(tracer, scenario):
    """Where the fast path's inline write does not take its usual event (a full buffer in
    producer-drop mode, a CPU left out by tracing_cpumask, a time extend, someone in the
    buffer), it still writes what the general hook writes."""
    fast, general = _traced_run(tracer, False, scenario), _traced_run(tracer, True, scenario)
    for key in fast:
        assert fast[key] == general[key], key
    if scenario == "full":
        dropped = re.findall(r"^dropped events: (\d+)$", fast["stats0"] + fast["stats1"], re.M)
        assert sum(map(int, dropped)) > 0


def _events(rb: RingBuffer) -> list[tuple[int, int, bytes]]:
    return [(c, ts, data) for c, ts, data, _ in rb.iter_events()]


def test_fixed_writer_matches_ring_buffer_write():
    """Events, page boundaries, time extends and a full producer-drop buffer: the same pages
    and counters as ``CpuBuffer.write``."""
    rec = struct.Struct("<HBBiQQ")
    write = fixed_writer(rec)
    a, b = RingBuffer(2, size_kb=8), RingBuffer(2, size_kb=8)
    a.set_overwrite(False)
    b.set_overwrite(False)
    ts = 1000
    results = []
    for i in range(700):
        ts += 5 if i % 97 else TS_MASK + 3          # now and then a time extend
        cpu = i % 3 // 2
        fields = (1, i & 0xff, 0, 1000 + i, 0xffffffff81000000 + i, 0xffffffff81234567)
        got = write(a, cpu, ts, *fields)
        want = b.cpus[cpu].write(ts, rec.pack(*fields))
        results.append(got)
        assert got is want
    assert False in results                          # the buffer filled up
    assert _events(a) == _events(b)
    for ca, cb in zip(a.cpus, b.cpus, strict=True):
        assert [bytes(p.buf[:PAGE_HEADER + p.write]) for p in ca.pages] == \
            [bytes(p.buf[:PAGE_HEADER + p.write]) for p in cb.pages]
        assert (ca.entries, ca.bytes, ca.dropped_events, ca.overrun) == \
            (cb.entries, cb.bytes, cb.dropped_events, cb.overrun)


def test_fixed_writer_stands_back_while_someone_is_in_the_buffer():
    rec = struct.Struct("<HBBiQQ")
    write = fixed_writer(rec)
    rb = RingBuffer(1)
    rb.others += 1                   # what ``exclusive`` does on entry
    try:
        assert write(rb, 0, 10, 1, 0, 0, 1, 2, 3) is None
    finally:
        rb.others -= 1
    assert rb.cpus[0].entries == 0 and not rb.writing
    assert write(rb, 0, 10, 1, 0, 0, 1, 2, 3) is True
    assert rb.cpus[0].entries == 1 and not rb.writing
