"""The skb benchmark's hot path keeps the general path's behaviour: pt_regs written in place per
CPU (handlers see per-call values, snapshots stay put), probe_read_kernel's direct region read
agrees with ``Memory.probe_read`` everywhere, and an event file's lean emission (program gating
the write) gives way to the full one when triggers or soft mode appear."""
from __future__ import annotations

import struct

from tracesim.filters.bpf.event_filter import TraceEnv
from tracesim.filters.bpf.runtime import helpers_tracing
from tracesim.filters.bpf.runtime.program import load_program
from tracesim.filters.bpf.toolchain.asm import assemble
from tracesim.filters.bpf.vm.jit import compile_program
from tracesim.kernel_model.kprobes import PT_REGS_OFFSETS, PtRegs
from tracesim.kernel_model.mm.memory import EFAULT

M64 = (1 << 64) - 1


def reg(raw: bytes, name: str) -> int:
    return struct.unpack_from("<Q", raw, PT_REGS_OFFSETS[name])[0]


# ---------------------------------------------------------------------------------------------
# kprobes: one pt_regs per CPU, written per call

def test_snapshots_keep_their_values_and_raw_handlers_see_each_call(kernel):
    site = kernel.kprobes.site("__netdev_alloc_skb")
    snapshots: list[PtRegs] = []
    live: list[bytes] = []
    kernel.kprobes.register_kprobe("__netdev_alloc_skb", snapshots.append)
    kernel.kprobes.register_kprobe("__netdev_alloc_skb", lambda regs: live.append(bytes(regs)),
                                   raw=True)
    site.call(lambda *a: None, 1, 2, 3)
    site.call(lambda *a: None, 7, 8)                # fewer arguments: dx is not left over
    first, second = snapshots
    assert (first.di, first.si, first.dx) == (1, 2, 3)
    assert (second.di, second.si, second.dx) == (7, 8, 0)
    assert [first.raw, second.raw] == live
    assert isinstance(first.raw, bytes) and len(first.raw) == 168
    assert first.ip == site.addr and first.cs == 0x10 and first.ss == 0x18
    assert first.flags == 0x200 and first.sp != 0 and first.arg(2) == 2


def test_offset_probes_and_return_probes_share_the_cpu_buffer(kernel):
    site = kernel.kprobes.site("kfree")
    seen: list[tuple[str, int, int]] = []
    kernel.kprobes.register_kprobe("kfree", lambda r: seen.append(("+4", reg(r, "ip"), reg(r, "ax"))),
                                   offset=4, raw=True)
    kernel.kprobes.register_kprobe("kfree", lambda r: seen.append(("+0", r.ip, r.ax)))
    kernel.kprobes.register_kprobe("kfree", lambda r: seen.append(("ret", r.ip, r.ax)),
                                   retprobe=True)
    kernel.kprobes.return_address = 0xffffffff81001234
    assert site.call(lambda p: 99, 5) == 99
    site.call(lambda p: 0, 6)
    assert seen == [("+4", site.addr + 4, 0), ("+0", site.addr, 0), ("ret", 0xffffffff81001234, 99),
                    ("+4", site.addr + 4, 0), ("+0", site.addr, 0), ("ret", 0xffffffff81001234, 0)]


def test_each_cpu_has_its_own_pt_regs(kernel):
    bufs = []
    kernel.kprobes.register_kprobe("kfree", lambda r: bufs.append(r), raw=True)
    site = kernel.kprobes.site("kfree")
    for cpu in kernel.machine.cpus[:2]:
        with kernel.machine.on_cpu(cpu.id):
            site.call(lambda p: None, cpu.id + 1)
    assert bufs[0] is not bufs[1]
    assert reg(bufs[0], "di") == 1 and reg(bufs[1], "di") == 2
    assert reg(bufs[0], "sp") != reg(bufs[1], "sp")      # each CPU's kernel stack


# ---------------------------------------------------------------------------------------------
# probe_read_kernel: the direct read of a region agrees with Memory.probe_read

def _vm(kernel):
    program = load_program(assemble("r0 = 0\nexit"), name="t", ctx_size=168)
    jp = compile_program(program)
    jp.vm.env = TraceEnv(kernel, kernel.tracing.top)
    return jp.vm


def test_probe_read_kernel_agrees_with_probe_read(kernel):
    vm = _vm(kernel)
    mem, slab = kernel.mem, kernel.slab
    stack = vm.mem.regions[0]
    a = slab.kmalloc(64)
    b = slab.kmalloc(64)
    gone = slab.kmalloc(64)
    slab.kfree(gone)
    for addr, data in ((a, b"A" * 64), (b, b"B" * 64)):
        mem.write(addr, data)
    region = mem.region_of(a)
    tail = region.base + (region.size // region.obj_size) * region.obj_size
    unmapped = max(p for p in mem.pages) + 16 << 12
    cases = [(a, 8), (a + 60, 4), (a + 60, 8), (b - 4, 8), (gone, 8), (gone - 4, 8),
             (gone + 60, 8), (region.end - 8, 8), (tail, 4) if tail < region.end else (a, 1),
             (unmapped, 8), (mem.region_of(kernel.kallsyms.addr("kfree")).base, 16),
             (kernel.net.device("lo").addr, 16)]
    for src, size in cases:
        dst = stack.end - 64
        stack.buf[-64:] = b"\xee" * 64
        ret = helpers_tracing.probe_read_kernel(vm, dst, size, src, 0, 0)
        err, want = mem.probe_read(src, size)
        assert ret == err & M64, (hex(src), size)
        assert bytes(stack.buf[-64:-64 + size]) == want, (hex(src), size)
        assert err in (0, -EFAULT)
    lo = bytes(stack.buf[-64:-64 + 16])
    assert lo.rstrip(b"\0").startswith(b"lo") or lo == bytes(16)


# ---------------------------------------------------------------------------------------------
# emission: the program gates the write; triggers and soft mode take the full path again

def _probe_event(kernel):
    kernel.tracing.kprobes.write("p:hot kfree ptr=%di:x64")
    f = kernel.tracing.top.file("kprobes", "hot")
    return f, kernel.kprobes.site("kfree")


def test_the_program_gates_the_write_and_triggers_still_run_first(kernel):
    from tracesim.kernel_model.trace.output import trace_text
    from tracesim.kernel_model.trace.triggers import set_trigger
    f, site = _probe_event(kernel)
    verdict = [0]
    ctxs: list[bytes] = []

    def prog(ctx) -> int:
        ctxs.append(bytes(ctx))
        return verdict[0]
    f.set_prog(prog)
    f.set_enabled(True)
    site.call(lambda p: None, 0x1111)
    verdict[0] = 1
    site.call(lambda p: None, 0x2222)
    assert [reg(c, "di") for c in ctxs] == [0x1111, 0x2222]
    text = trace_text(kernel.tracing.top)
    assert "ptr=0x2222" in text and "ptr=0x1111" not in text
    # a traceoff trigger runs before the program, even when the program drops the event
    verdict[0] = 0
    set_trigger(f, "traceoff")
    site.call(lambda p: None, 0x3333)
    assert kernel.tracing.top.tracing_on is False
    set_trigger(f, "!traceoff")
    kernel.tracing.top.set_tracing_on(True)
    verdict[0] = 1
    site.call(lambda p: None, 0x4444)
    assert "ptr=0x4444" in trace_text(kernel.tracing.top)
    # tracing_on off: the program runs, nothing is written
    kernel.tracing.top.set_tracing_on(False)
    site.call(lambda p: None, 0x5555)
    assert reg(ctxs[-1], "di") == 0x5555
    assert "ptr=0x5555" not in trace_text(kernel.tracing.top)
    # disabled: nothing runs
    f.set_enabled(False)
    site.call(lambda p: None, 0x6666)
    assert reg(ctxs[-1], "di") == 0x5555


def test_a_predicate_still_filters_behind_the_program(kernel):
    from tracesim.filters.predicate import compile_filter
    from tracesim.kernel_model.trace.output import trace_text
    f, site = _probe_event(kernel)
    f.set_prog(lambda ctx: 1)
    f.set_filter(compile_filter("ptr == 0x2222", f.event.all_fields), "ptr == 0x2222")
    f.set_enabled(True)
    site.call(lambda p: None, 0x1111)
    site.call(lambda p: None, 0x2222)
    text = trace_text(kernel.tracing.top)
    assert "ptr=0x2222" in text and "ptr=0x1111" not in text


def test_two_instances_each_apply_their_own_program(kernel):
    from tracesim.kernel_model.trace.output import trace_text
    f, site = _probe_event(kernel)
    inst = kernel.tracing.create_instance("other")
    g = inst.file("kprobes", "hot")
    f.set_prog(lambda ctx: reg(ctx, "di") == 0x1111)
    f.set_enabled(True)
    site.call(lambda p: None, 0x1111)
    g.set_enabled(True)                 # the second sink: the probe's handler changes
    site.call(lambda p: None, 0x2222)
    f.set_enabled(False)
    site.call(lambda p: None, 0x3333)
    top, other = trace_text(kernel.tracing.top), trace_text(inst)
    assert "ptr=0x1111" in top and "ptr=0x2222" not in top and "ptr=0x3333" not in top
    assert "ptr=0x1111" not in other and "ptr=0x2222" in other and "ptr=0x3333" in other
    assert f.event.nhit == 3
