"""The ``function_graph`` tracer: header, call graph lines with durations and overhead marks,
its options, max_graph_depth, set_graph_function / set_graph_notrace, events as comments, and
the call graph of the net path on the FUSE mount with real echo/cat."""
from __future__ import annotations

import re

import pytest
from tracesim.kernel_model.trace.graph_output import duration_text, mark
from tracesim.tools.ctl_socket import request

from tests.fuse_helpers import sh
from tests.test_function_tracer import send_lo

HEADER = ("# tracer: function_graph\n#\n"
          "# CPU  DURATION                  FUNCTION CALLS\n"
          "# |     |   |                     |   |   |   |\n")
LEAF = re.compile(r"^ (\d)\) ([ +!#*@$]) +(\d+\.\d{3}) us +\|  ( *)(\w+)\(\);$")
ENTRY = re.compile(r"^ (\d)\)               \|  ( *)(\w+)\(\) \{$")
EXIT = re.compile(r"^ (\d)\) ([ +!#*@$]) +(\d+\.\d{3}) us +\|  ( *)\}( /\* (\w+) \*/)?$")


def graph(system, tree, *setup: tuple[str, str]) -> list[str]:
    tree.echo("/current_tracer", "function_graph")
    for path, value in setup:
        tree.echo(path, value)
    send_lo(system)
    return [ln for ln in tree.read_text("/trace").splitlines() if not ln.startswith("#")]


def calls(lines: list[str]) -> list[tuple[int, str, str]]:
    """(depth, kind, name) of each graph line: kind is leaf, entry or exit."""
    out = []
    for ln in lines:
        if m := LEAF.match(ln):
            out.append((len(m.group(4)) // 2, "leaf", m.group(5)))
        elif m := ENTRY.match(ln):
            out.append((len(m.group(2)) // 2, "entry", m.group(3)))
        elif m := EXIT.match(ln):
            out.append((len(m.group(4)) // 2, "exit", m.group(6) or ""))
    return out


def test_duration_and_marks_as_the_kernel_prints_them():
    assert duration_text(544) == "0.544 us    "
    assert duration_text(317_132) == "317.132 us  "
    assert duration_text(12_345_678) == "12345.67 us "
    assert duration_text(1_234_567_890) == "1234567 us  "
    assert [mark(n) for n in (10_000, 10_001, 100_001, 1_000_001, 10_000_001,
                              100_000_001, 1_000_000_001)] == [" ", "+", "!", "#", "*", "@", "$"]


def test_header_and_the_receive_path_graph(system, tree):
    tree.echo("/current_tracer", "function_graph")
    assert tree.read_text("/trace") == HEADER
    lines = graph(system, tree)
    graph_calls = calls(lines)
    rx = graph_calls.index((0, "entry", "net_rx_action"))
    assert graph_calls[rx:rx + 8] == [
        (0, "entry", "net_rx_action"), (1, "entry", "napi_poll"),
        (2, "entry", "process_backlog"), (3, "entry", "__netif_receive_skb"),
        (4, "entry", "__netif_receive_skb_core"), (5, "entry", "ip_rcv"),
        (6, "entry", "consume_skb"), (7, "entry", "__kfree_skb")]
    assert (9, "leaf", "kmem_cache_free") in graph_calls
    assert graph_calls[-1] == (0, "exit", "")
    depth = 0
    for d, kind, _name in graph_calls[rx:]:       # entries and exits nest
        assert d == depth if kind != "exit" else d == depth - 1
        depth += {"entry": 1, "exit": -1, "leaf": 0}[kind]
    assert depth == 0
    # the task changed on CPU 0 (idle forked ping): the context-switch banner
    banner = lines.index(" ------------------------------------------")
    assert lines[banner + 1] == " 0)    <idle>-0    =>   ping-1000   "


def test_graph_options(system, tree):
    lines = graph(system, tree, ("/options/funcgraph-tail", "1"),
                  ("/options/funcgraph-proc", "1"), ("/options/funcgraph-abstime", "1"))
    header = tree.read_text("/trace").splitlines()[2:4]
    assert header == [
        "#     TIME        CPU  TASK/PID         DURATION                  FUNCTION CALLS",
        "#      |          |     |    |           |   |                     |   |   |   |"]
    closing = [ln for ln in lines if ln.endswith("} /* ip_rcv */")]
    assert len(closing) == 1
    assert re.match(r"^ +\d+\.\d{6} \|   0\)   ping-1000    \| ", closing[0])
    tree.echo("/options/funcgraph-duration", "0")
    tree.echo("/options/funcgraph-cpu", "0")
    tree.echo("/options/funcgraph-proc", "0")
    tree.echo("/options/funcgraph-abstime", "0")
    text = tree.read_text("/trace").splitlines()
    assert text[2:4] == ["#               FUNCTION CALLS", "#               |   |   |   |"]
    assert "          ip_rcv() {" in text


def test_max_graph_depth(system, tree):
    assert tree.read_text("/max_graph_depth") == "0\n"
    got = calls(graph(system, tree, ("/max_graph_depth", "2")))
    assert max(d for d, _, _ in got) == 1
    assert (0, "entry", "net_rx_action") in got and (1, "leaf", "napi_poll") in got


def test_set_graph_function_and_notrace(system, tree):
    assert tree.read_text("/set_graph_function") == "#### all functions enabled ####\n"
    assert tree.read_text("/set_graph_notrace") == "#### no functions disabled ####\n"
    got = calls(graph(system, tree, ("/set_graph_function", "ip_rcv")))
    assert got[0] == (0, "entry", "ip_rcv") and got[-1] == (0, "exit", "")
    assert {name for _, _, name in got} == {"ip_rcv", "consume_skb", "__kfree_skb",
                                            "skb_release_data", "kmem_cache_free",
                                            "kfree_skbmem", ""}
    tree.echo("/set_graph_function", "")
    tree.echo("/trace", "")
    tree.echo("/set_graph_notrace", "consume_skb")
    send_lo(system)
    names = {name for _, _, name in calls(tree.read_text("/trace").splitlines())}
    assert "ip_rcv" in names and "consume_skb" not in names and "__kfree_skb" not in names


def test_events_print_as_comments(system, tree):
    lines = graph(system, tree, ("/events/net/netif_receive_skb/enable", "1"))
    comment = [ln for ln in lines if "/* netif_receive_skb:" in ln]
    assert len(comment) == 1
    assert re.match(r"^ 0\)               \| {12}/\* netif_receive_skb: dev=lo skbaddr=", comment[0])
    assert comment[0].endswith(" */")


@pytest.mark.fuse
def test_function_graph_on_the_mount(mnt):
    out = sh("echo function_graph > current_tracer && cat current_tracer", mnt)
    assert out.stdout == "function_graph\n", out.stderr
    status, text = request(str(mnt), ["send", "lo", "--len", "100"])
    assert status == 0, text
    shown = sh("cat trace", mnt).stdout
    assert shown.startswith(HEADER)
    lines = shown.splitlines()[4:]
    graph_calls = calls(lines)
    assert (4, "entry", "__netif_receive_skb_core") in graph_calls
    assert any(LEAF.match(ln) and ln.endswith("kmem_cache_free();") for ln in lines)
    sh("echo nop > current_tracer", mnt)


def test_funcgraph_irqs_off_hides_hardirq_functions(system, tree):
    kernel = system.kernel
    tree.echo("/current_tracer", "function_graph")
    tree.echo("/set_ftrace_filter", "__kmalloc_noprof")
    with kernel.machine.hardirq():
        kernel.slab.kmalloc(64)
    assert [c[2] for c in calls(tree.read_text("/trace").splitlines())] == ["__kmalloc_noprof"]
    tree.echo("/trace", "")
    tree.echo("/options/funcgraph-irqs", "0")
    with kernel.machine.hardirq():
        kernel.slab.kmalloc(64)
    kernel.slab.kmalloc(64)
    got = calls(tree.read_text("/trace").splitlines())
    assert [c[2] for c in got] == ["__kmalloc_noprof"]       # the one outside the irq


def test_trace_pipe_keeps_the_graph_state_between_reads(system, tree):
    from tracesim.kernel_model.trace.output import PipeReader
    tree.echo("/current_tracer", "function_graph")
    tree.echo("/set_ftrace_filter", "net_rx_action napi_poll")
    send_lo(system)
    reader = PipeReader(system.kernel.tracing.top)
    first = reader.read(60)                  # the first entry line only
    send_lo(system)
    rest = reader.read(4096, nonblock=True)
    lines = (first + rest).splitlines()
    assert lines[0].endswith("|  net_rx_action() {")
    assert lines.count(" 0)               |  net_rx_action() {") == 2
    assert not any("/*" in ln for ln in lines)        # every return found its entry
    assert "tracing_mark_write" not in tree.read_text("/available_filter_functions")
