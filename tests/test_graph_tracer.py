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


# net_rx_action's calls down to the skb freed by the UDP receive (the discard port), 6.18's
# receive path: netif_receive_skb core, IP input through its netfilter okfns, the UDP handler
RECEIVE_PATH = ["net_rx_action", "napi_poll", "process_backlog", "__netif_receive_skb",
                "__netif_receive_skb_core", "ip_rcv", "ip_rcv_finish", "ip_local_deliver",
                "ip_local_deliver_finish", "ip_protocol_deliver_rcu", "udp_rcv",
                "__udp4_lib_rcv", "consume_skb", "__kfree_skb", "skb_release_data"]


def subtree(graph_calls: list[tuple[int, str, str]], start: int) -> list[tuple[int, str, str]]:
    """The calls from the entry at ``start`` to its closing brace, checking that entries and
    exits nest (other tasks' functions, e.g. the idle machine's schedule, stay outside)."""
    base = depth = graph_calls[start][0]
    for i, (d, kind, _name) in enumerate(graph_calls[start:], start):
        assert d == (depth if kind != "exit" else depth - 1), graph_calls[start:i + 1]
        depth += {"entry": 1, "exit": -1, "leaf": 0}[kind]
        if depth == base:
            return graph_calls[start:i + 1]
    raise AssertionError(f"{graph_calls[start]} never returns")


def receive_path(graph_calls: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    """net_rx_action's subtree, after checking that it calls down RECEIVE_PATH."""
    rx = next(i for i, (_, kind, name) in enumerate(graph_calls)
              if (kind, name) == ("entry", "net_rx_action"))
    base = graph_calls[rx][0]
    got = subtree(graph_calls, rx)
    assert got[:len(RECEIVE_PATH)] == [(base + i, "entry", name)
                                       for i, name in enumerate(RECEIVE_PATH)]
    assert got[len(RECEIVE_PATH)] == (base + len(RECEIVE_PATH), "leaf", "kmem_cache_free")
    return got


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
    # loopback's driver hands the skb to the backlog with __netif_rx (not netif_rx)
    xmit = graph_calls.index((0, "entry", "__dev_queue_xmit"))
    assert subtree(graph_calls, xmit) == [
        (0, "entry", "__dev_queue_xmit"), (1, "entry", "dev_hard_start_xmit"),
        (2, "entry", "loopback_xmit"), (3, "leaf", "eth_type_trans"),
        (3, "entry", "__netif_rx"), (4, "leaf", "enqueue_to_backlog"), (3, "exit", ""),
        (2, "exit", ""), (1, "exit", ""), (0, "exit", "")]
    rx = receive_path(graph_calls)
    assert rx[0][0] == 0 and rx[-1] == (0, "exit", "")
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
    assert subtree(got, 0) == got                  # only ip_rcv and what it calls
    assert got[:10] == [(i, "entry", name) for i, name in enumerate(RECEIVE_PATH[5:])]
    assert {name for _, _, name in got} == {*RECEIVE_PATH[5:], "kmem_cache_free",
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
    receive_path(calls(lines))              # at whatever depth the sending syscall runs it
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
