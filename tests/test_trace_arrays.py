"""Trace arrays: instances, enable/set_event semantics, filters, the BPF seam, triggers,
trace_marker, saved_cmdlines, error_log."""
from __future__ import annotations

import errno

import pytest
from tracesim.filters.predicate import compile_filter
from tracesim.kernel_model.kernel import Kernel
from tracesim.kernel_model.net import core as netmod
from tracesim.kernel_model.trace import output as trace_output
from tracesim.kernel_model.trace.triggers import set_trigger, trigger_text


def send_lo(kernel: Kernel, lengths: list[int]) -> None:
    lo = kernel.net.device("lo")
    with kernel.machine.running(kernel.user_task("sender")):
        for i, n in enumerate(lengths):
            kernel.net.xmit_frame(lo, netmod.packet_frame(lo, "udp", n, seq=i))


def lines(array, name: str = "") -> list[str]:
    return [ln for ln in trace_output.trace_text(array).splitlines()
            if not ln.startswith("#") and name in ln]


def set_filter(file, text: str) -> None:
    file.set_filter(compile_filter(text, file.event.all_fields), text)


def test_static_key_follows_every_instance(kernel: Kernel) -> None:
    tr = kernel.tracing
    ev = tr.event("net", "netif_receive_skb")
    assert not ev.enabled
    inst = tr.create_instance("foo")
    inst.file("net", "netif_receive_skb").set_enabled(True)
    assert ev.enabled
    send_lo(kernel, [100])
    assert len(lines(inst, "netif_receive_skb:")) == 1
    assert lines(tr.top) == []
    inst.file("net", "netif_receive_skb").set_enabled(False)
    assert not ev.enabled


def test_instances_create_remove_busy(kernel: Kernel) -> None:
    tr = kernel.tracing
    inst = tr.create_instance("foo")
    with pytest.raises(OSError) as e:
        tr.create_instance("foo")
    assert e.value.errno == errno.EEXIST
    inst.get()
    with pytest.raises(OSError) as e:
        tr.remove_instance("foo")
    assert e.value.errno == errno.EBUSY
    inst.put()
    inst.file("net", "netif_rx").set_enabled(True)
    tr.remove_instance("foo")
    assert tr.instance_names() == [] and not tr.event("net", "netif_rx").enabled
    with pytest.raises(OSError) as e:
        tr.remove_instance("foo")
    assert e.value.errno == errno.ENOENT


def test_enable_files_and_set_event(kernel: Kernel) -> None:
    top = kernel.tracing.top
    assert top.system_enable_text("net") == "0\n"
    top.set_event_write("net:netif_rx skb:*", truncate=False)
    assert top.system_enable_text("net") == "X\n" and top.system_enable_text("skb") == "1\n"
    assert top.set_event_text() == ("net:netif_rx\nskb:kfree_skb\nskb:consume_skb\n"
                                    "skb:skb_copy_datagram_iovec\n")
    top.set_event_write("!skb:kfree_skb", truncate=False)
    assert top.set_event_text() == "net:netif_rx\nskb:consume_skb\nskb:skb_copy_datagram_iovec\n"
    top.set_event_write("napi:napi_poll", truncate=True)
    assert top.set_event_text() == "napi:napi_poll\n"
    with pytest.raises(OSError) as e:
        top.set_event_write("nosuch:event", truncate=False)
    assert e.value.errno == errno.EINVAL
    top.set_system_enabled(None, True)
    assert top.system_enable_text() == "1\n"


def test_filter_discards_after_the_write(kernel: Kernel) -> None:
    top = kernel.tracing.top
    f = top.file("net", "netif_receive_skb")
    set_filter(f, "len > 150")
    f.set_enabled(True)
    send_lo(kernel, [100, 200, 120, 300])
    got = lines(top, "netif_receive_skb:")
    assert [ln.rsplit("len=", 1)[1] for ln in got] == ["200", "300"]
    assert top.buffer.entries() == (2, 2)


def test_bpf_seam_runs_before_anything_is_reserved(kernel: Kernel) -> None:
    top = kernel.tracing.top
    f = top.file("net", "netif_receive_skb")
    seen: list[bytes] = []

    def prog(ctx: bytes) -> int:
        seen.append(bytes(ctx))
        return int.from_bytes(ctx[16:20], "little") == 200     # REC->len
    f.set_prog(prog)
    f.set_enabled(True)
    send_lo(kernel, [100, 200])
    assert len(seen) == 2 and f.event.decode(seen[0])["name"] == "lo"
    assert [ln.rsplit("len=", 1)[1] for ln in lines(top, "netif_receive_skb:")] == ["200"]
    assert top.buffer.entries() == (1, 1)


def test_kprobe_event_programs_get_pt_regs(kernel: Kernel) -> None:
    tr = kernel.tracing
    tr.kprobes.write("p:kp __netif_receive_skb")
    f = tr.top.file("kprobes", "kp")
    ctxs: list[bytes] = []
    f.set_prog(lambda ctx: ctxs.append(bytes(ctx)) or 0)
    f.set_enabled(True)
    send_lo(kernel, [100])
    assert len(ctxs) == 1 and len(ctxs[0]) == 168
    ip = int.from_bytes(ctxs[0][16 * 8:17 * 8], "little")
    assert ip == kernel.kallsyms.address_of("__netif_receive_skb")
    assert tr.top.buffer.entries() == (0, 0)


def test_tracing_off_records_nothing_and_marker_fails(kernel: Kernel) -> None:
    top = kernel.tracing.top
    top.file("net", "netif_rx").set_enabled(True)
    top.set_tracing_on(False)
    send_lo(kernel, [100])
    with pytest.raises(OSError) as e:
        top.trace_marker_write("x")
    assert e.value.errno == errno.EBADF
    assert top.buffer.entries() == (0, 0)


def test_triggers_read_back_and_traceoff_count(kernel: Kernel) -> None:
    top = kernel.tracing.top
    f = top.file("net", "netif_receive_skb")
    set_trigger(f, "traceoff:1 if len > 150")
    set_trigger(f, "stacktrace")
    assert trigger_text(f) == "stacktrace:unlimited\ntraceoff:count=1 if len > 150\n"
    with pytest.raises(OSError) as e:
        set_trigger(f, "traceoff")
    assert e.value.errno == errno.EEXIST
    with pytest.raises(OSError) as e:
        set_trigger(f, "bogus")
    assert e.value.errno == errno.EINVAL
    top.file("net", "netif_rx").set_enabled(True)
    send_lo(kernel, [100, 200, 300])
    assert not top.tracing_on
    assert trigger_text(f) == "stacktrace:unlimited\ntraceoff:count=0 if len > 150\n"
    assert len(lines(top, "netif_rx:")) == 2          # the third came after traceoff
    assert len(lines(top, "<stack trace>")) == 2
    set_trigger(f, "!stacktrace")
    set_trigger(f, "!traceoff")
    assert trigger_text(f).startswith("# Available triggers:")
    set_trigger(f, "!traceoff")        # event_trigger_parse: removing nothing still succeeds
    set_trigger(f, "!enable_event:net:netif_rx")
    with pytest.raises(OSError) as e:    # ... but the target event must exist
        set_trigger(f, "!enable_event:net:nosuch")
    assert e.value.errno == errno.EINVAL


def test_enable_event_trigger_soft_mode(kernel: Kernel) -> None:
    top = kernel.tracing.top
    src = top.file("net", "netif_rx")
    dst = top.file("net", "netif_receive_skb")
    set_trigger(src, "enable_event:net:netif_receive_skb:1 if len > 150")
    assert trigger_text(src) == "enable_event:net:netif_receive_skb:count=1 if len > 150\n"
    assert dst.enable_text() == "0*\n"
    send_lo(kernel, [100])
    assert lines(top) == [] and dst.enable_text() == "0*\n"
    send_lo(kernel, [200, 120])
    assert dst.enable_text() == "1*\n"
    assert [ln.rsplit("len=", 1)[1] for ln in lines(top, "netif_receive_skb:")] == ["200", "120"]
    set_trigger(src, "!enable_event:net:netif_receive_skb")
    assert dst.enable_text() == "1\n" and src.enable_text() == "0\n"


def test_saved_cmdlines_and_marker(kernel: Kernel) -> None:
    tr = kernel.tracing
    with kernel.machine.running(kernel.user_task("echo")):
        tr.top.trace_marker_write("hi\n")
    pid = kernel.user_task("echo").pid
    assert f"{pid} echo\n" in tr.saved_cmdlines_text()
    assert lines(tr.top)[-1].endswith(": tracing_mark_write: hi")
    assert lines(tr.top)[-1].lstrip().startswith(f"echo-{pid} ")


def test_error_log_keeps_the_last_eight(kernel: Kernel) -> None:
    top = kernel.tracing.top
    for i in range(10):
        top.log_error("event filter parse error", f"cmd{i}", "Field not found", i)
    text = top.error_log_text()
    assert text.count("Command:") == 8 and "cmd1\n" not in text and "cmd9\n" in text
    top.clear_error_log()
    assert top.error_log_text() == ""


def test_buffer_size_and_clock_controls(kernel: Kernel) -> None:
    top = kernel.tracing.top
    top.set_buffer_size_kb(100, cpu=1)
    assert top.buffer_size_text() == "X\n" and top.buffer_size_text(1) == "103\n"
    top.set_buffer_size_kb(7)
    assert top.buffer_size_text() == "7\n" and top.buffer_total_size_text() == "14\n"
    with pytest.raises(OSError):
        top.set_clock("nosuch")
    top.trace_marker_write("x")
    top.set_clock("global")
    assert top.buffer.entries() == (0, 0)           # a clock change resets the buffer
    assert top.clock_text() == "local [global] counter uptime perf mono mono_raw boot tai x86-tsc\n"
    top.set_option("overwrite", False)
    assert "nooverwrite\n" in top.options_text() and not top.buffer.overwrite


def test_bpf_trace_printk_line(kernel: Kernel) -> None:
    tr = kernel.tracing
    tr.trace_printk("hello from bpf")
    assert lines(tr.top)[-1].endswith(": bpf_trace_printk: hello from bpf")
