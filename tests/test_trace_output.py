"""Trace text against the 6.18 captures: the header, sample lines, stats, format files."""
from __future__ import annotations

import re

import pytest
from tracesim.kernel_model.kernel import Kernel
from tracesim.kernel_model.net import core as netmod
from tracesim.kernel_model.trace import output as trace_output
from tracesim.kernel_model.trace.output import lat_flags, ns2usecs_text

from tests.tracefs_reference import EMPTY_TRIGGERS


def without_id(text: str) -> str:
    return re.sub(r"^ID: \d+$", "ID: N", text, flags=re.M)


@pytest.mark.parametrize("system, name, ref", [
    ("net", "netif_receive_skb", "events_net_netif_receive_skb_format"),
    ("skb", "kfree_skb", "events_skb_kfree_skb_format"),
])
def test_format_files_match_the_capture(kernel: Kernel, reference, system: str, name: str,
                                        ref: str) -> None:
    text = kernel.tracing.event(system, name).format_text()
    assert without_id(text) == without_id((reference / ref).read_text())


def test_empty_trace_is_the_captured_header(kernel: Kernel, reference) -> None:
    assert trace_output.trace_text(kernel.tracing.top) == (reference / "trace_empty").read_text()


def test_defaults_match_the_capture(kernel: Kernel, reference) -> None:
    top = kernel.tracing.top
    assert top.buffer_size_text() == (reference / "buffer_size_kb").read_text()
    assert top.clock_text() == (reference / "trace_clock").read_text()
    assert f"{int(top.tracing_on)}\n" == (reference / "tracing_on").read_text()
    f = top.file("skb", "kfree_skb")
    assert f.enable_text() == (reference / "event_enable").read_text()
    assert top.system_enable_text() == (reference / "events_enable").read_text()
    assert f.filter_text + "\n" == (reference / "event_filter_none").read_text()
    from tracesim.kernel_model.trace.triggers import trigger_text
    # the reference lists five commands; the model adds snapshot and the hist commands
    assert trigger_text(f) == EMPTY_TRIGGERS


def send_lo_from_python3(kernel: Kernel, length: int, count: int) -> None:
    lo = kernel.net.device("lo")
    with kernel.machine.on_cpu(1), kernel.machine.running(kernel.user_task("python3")):
        for i in range(count):
            kernel.net.xmit_frame(lo, netmod.packet_frame(lo, "udp", length, seq=i))


def mask(line: str) -> str:
    """Pid, timestamp and hashed pointers differ between runs and machines."""
    line = re.sub(r"-\d+(\s+)\[", lambda m: "-PID" + " " * (len(m.group(0)) - 5) + "[", line)
    line = re.sub(r" +\d+\.\d{6}: ", " TIMESTAMP: ", line)
    return re.sub(r"skbaddr=[0-9a-f]{16}", "skbaddr=HASH", line)


def test_lines_look_like_the_capture(kernel: Kernel, reference) -> None:
    from tracesim.filters.predicate import compile_filter
    top = kernel.tracing.top
    f = top.file("net", "netif_receive_skb")
    f.set_filter(compile_filter('name == "lo"', f.event.all_fields), 'name == "lo"')
    f.set_enabled(True)
    send_lo_from_python3(kernel, 128, 3)
    lines = [ln for ln in trace_output.trace_text(top).splitlines(keepends=True)
             if not ln.startswith("#")]
    want = (reference / "trace_sample").read_text().splitlines(keepends=True)
    assert [mask(ln) for ln in lines] == [mask(ln) for ln in want]
    assert all(len(ln) == len(w) for ln, w in zip(lines, want, strict=False))     # 4-digit pid


def test_same_seed_same_trace() -> None:
    texts = []
    for _ in range(2):
        k = Kernel(cpus=2, seed=7)
        k.tracing.top.set_system_enabled("net", True)
        k.tracing.top.set_system_enabled("skb", True)
        send_lo_from_python3(k, 200, 4)
        texts.append(trace_output.trace_text(k.tracing.top))
    assert texts[0] == texts[1] and texts[0].count("\n") > 12


def test_per_cpu_stats_have_the_kernel_keys(kernel: Kernel, reference) -> None:
    got = trace_output.stats_text(kernel.tracing.top, 0).splitlines()
    want = (reference / "per_cpu_stats").read_text().splitlines()
    assert [ln for ln in got if not ln.startswith("now ts")] == \
           [ln for ln in want if not ln.startswith("now ts")]
    assert re.fullmatch(r"now ts: +\d+\.\d{6}", got[5])


@pytest.mark.parametrize("flags, pc, text", [
    (0x10, 0x01, "..s1."), (0x00, 0x00, "....."), (0x01, 0x00, "d...."),
    (0x81, 0x00, "D...."), (0x80, 0x02, "b..2."), (0x24, 0x00, ".N..."), (0x04, 0, ".n..."),
    (0x20, 0, ".p..."), (0x26, 0, ".B..."), (0x22, 0, ".L..."), (0x06, 0, ".b..."),
    (0x02, 0, ".l..."), (0x08, 0, "..h.."), (0x18, 0, "..H.."), (0x40, 0, "..z.."),
    (0x48, 0, "..Z.."), (0x00, 0x2f, "...f2"),
])
def test_flag_characters(flags: int, pc: int, text: str) -> None:
    assert lat_flags(flags, pc) == text


@pytest.mark.parametrize("ns, text", [
    (0, "    0.000000"), (499, "    0.000000"), (500, "    0.000001"),
    (268_309_388_400, "  268.309388"), (999_999_999_600, " 1000.000000"),
])
def test_timestamps_round_to_the_nearest_microsecond(ns: int, text: str) -> None:
    assert ns2usecs_text(ns) == text


def test_raw_clocks_print_raw_counts(kernel: Kernel) -> None:
    top = kernel.tracing.top
    top.set_clock("counter")
    assert top.clock_text().startswith("local global [counter]")
    top.trace_marker_write("x")
    line = trace_output.trace_text(top).splitlines()[-1]
    assert re.search(r"\] \.\.\.1\. +\d{1,12}: tracing_mark_write: x$", line)
    assert re.search(r"\.\.\.1\. {12}1: ", line)


def test_trace_marker_line(kernel: Kernel) -> None:
    top = kernel.tracing.top
    top.trace_marker_write("hello world")
    lines = trace_output.trace_text(top).splitlines()
    assert lines[2].startswith("# entries-in-buffer/entries-written: 1/1   #P:2")
    assert lines[-1].endswith(": tracing_mark_write: hello world")
    assert lines[-1].startswith("       systemd-1      ") or "<idle>-0" in lines[-1]


def test_trace_pipe_consumes_and_reports_lost_events(kernel: Kernel) -> None:
    top = kernel.tracing.top
    top.set_buffer_size_kb(8)
    for i in range(600):
        top.trace_marker_write(f"message {i:04d} " + "x" * 40)
    reader = trace_output.PipeReader(top, cpu=0)
    text = reader.read(1 << 20, nonblock=True)
    lines = text.splitlines()
    st = top.buffer.stats(0, 0)
    assert lines[0] == f"CPU:0 [LOST {st['overrun']} EVENTS]"
    assert len(lines) - 1 == st["read events"] == 600 - st["overrun"]
    assert lines[-1].endswith("message 0599 " + "x" * 40)
    with pytest.raises(OSError) as e:
        reader.read(nonblock=True)
    assert e.value.errno == 11


def test_trace_pipe_blocks_until_an_event_arrives(kernel: Kernel) -> None:
    import threading
    top = kernel.tracing.top
    reader = trace_output.PipeReader(top)
    got: list[str] = []
    t = threading.Thread(target=lambda: got.append(reader.read()))
    t.start()
    while not top.buffer.waiters:
        threading.Event().wait(0.001)
    with kernel.lock:
        top.trace_marker_write("wake up")
    t.join(5)
    assert got and got[0].endswith("tracing_mark_write: wake up\n")


def test_interrupt_ends_a_blocked_read(kernel: Kernel) -> None:
    import errno
    import threading
    reader = trace_output.PipeReader(kernel.tracing.top)
    errors: list[int] = []

    def run() -> None:
        try:
            reader.read()
        except OSError as e:
            errors.append(e.errno)
    t = threading.Thread(target=run)
    t.start()
    while not kernel.tracing.top.buffer.waiters:
        threading.Event().wait(0.001)
    reader.interrupt()
    t.join(5)
    assert errors == [errno.EINTR]


def test_record_tgid_adds_the_tgid_column(kernel: Kernel) -> None:
    top = kernel.tracing.top
    top.set_option("record-tgid", True)
    task = kernel.user_task("echo")
    with kernel.machine.running(task):
        top.trace_marker_write("x")
    text = trace_output.trace_text(top)
    # print_func_help_header_irq with prec 12: "TASK-PID  " + "     TGID   " + " CPU#"
    assert "#           TASK-PID       TGID    CPU#  |||||  TIMESTAMP  FUNCTION\n" in text
    assert f"-{task.pid:<7d} ({task.tgid:7d}) [000] " in text.splitlines()[-1]
    assert kernel.tracing.saved_tgids_text() == f"{task.pid} {task.tgid}\n"
