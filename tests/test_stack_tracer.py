"""The stack tracer, the function profiler and enabled_functions, through the tree, the
control channel (``sysctl``) and the mount."""
from __future__ import annotations

import re

import pytest
from tracesim.tools.ctl_socket import request

from tests.fuse_helpers import sh
from tests.test_function_tracer import send_lo

HEADER = "        Depth    Size   Location    ({} entries)\n        -----    ----   --------\n"
ROW = re.compile(r"^ *(\d+)\) +(\d+) +(\d+)   (\w+)\+0x[0-9a-f]+/0x[0-9a-f]+$")


def test_disabled_stack_tracer_says_how_to_enable_it(tree):
    text = tree.read_text("/stack_trace")
    assert text.startswith(HEADER.format(0) + "#\n#  Stack tracer disabled\n#\n")
    assert "# or 'echo 1 > /proc/sys/kernel/stack_tracer_enabled'\n" in text
    assert tree.read_text("/stack_max_size") == "0\n"


def test_stack_tracer_records_the_deepest_stack(system, tree):
    assert system.control(["sysctl", "kernel.stack_tracer_enabled=1"]) == (
        0, "kernel.stack_tracer_enabled = 1\n")
    send_lo(system)
    text = tree.read_text("/stack_trace").splitlines()
    rows = [ROW.match(ln) for ln in text[2:]]
    assert all(rows) and text[0] == HEADER.format(len(rows)).splitlines()[0]
    depths = [int(m.group(2)) for m in rows]
    sizes = [int(m.group(3)) for m in rows]
    assert [int(m.group(1)) for m in rows] == list(range(len(rows)))
    assert depths[0] == sum(sizes) == int(tree.read_text("/stack_max_size"))
    assert all(depths[i] - depths[i + 1] == sizes[i] for i in range(len(rows) - 1))
    names = [m.group(4) for m in rows]
    assert names[-1] == "net_rx_action" and "ip_rcv" in names
    # writing the max starts over; the filter limits the functions checked
    tree.echo("/stack_max_size", "0")
    tree.echo("/stack_trace_filter", "__netif_rx")          # what loopback_xmit calls
    send_lo(system)
    rows = [ROW.match(ln) for ln in tree.read_text("/stack_trace").splitlines()[2:]]
    assert [m.group(4) for m in rows][:3] == ["__netif_rx", "loopback_xmit",
                                               "dev_hard_start_xmit"]
    assert system.control(["sysctl", "kernel.stack_tracer_enabled"]) == (
        0, "kernel.stack_tracer_enabled = 1\n")
    system.control(["sysctl", "kernel.stack_tracer_enabled=0"])
    assert system.kernel.kprobes.ftrace is None


def test_sysctl_usage_errors(system):
    assert system.control(["sysctl", "kernel.nosuch=1"])[0] == 2
    status, text = system.control(["sysctl", "kernel.stack_tracer_enabled=x"])
    assert status == 1 and "Invalid argument" in text


def test_function_profile_tables(system, tree):
    assert tree.read_text("/function_profile_enabled") == "0\n"
    assert sorted(tree.readdir("/trace_stat")) == ["function0", "function1"]
    tree.echo("/function_profile_enabled", "1")
    send_lo(system, count=3)
    lines = tree.read_text("/trace_stat/function0").splitlines()
    assert lines[:2] == [
        "  Function                               Hit    Time            Avg             s^2",
        "  --------                               ---    ----            ---             ---"]
    rows = {ln[2:32].rstrip(): ln for ln in lines[2:]}
    assert re.fullmatch(r"  ip_rcv {35}3    \d+\.\d{3} us +\d+\.\d{3} us +\d+\.\d{3} us *",
                        rows["ip_rcv"])
    times = [float(ln[48:].split(" us")[0]) for ln in lines[2:]]
    assert times == sorted(times, reverse=True) and rows["net_rx_action"] == lines[2]
    tree.echo("/function_profile_enabled", "0")
    tree.echo("/function_profile_enabled", "1")        # enabling again starts from zero
    assert tree.read_text("/trace_stat/function0").splitlines()[2:] == []
    tree.echo("/function_profile_enabled", "0")


def test_enabled_functions(tree):
    assert tree.read_text("/enabled_functions") == ""
    tree.echo("/set_ftrace_filter", "ip_rcv")
    tree.echo("/current_tracer", "function")
    assert tree.read_text("/enabled_functions") == "ip_rcv (1)           \n"
    tree.echo("/set_ftrace_filter", "ip_rcv:traceon", append=True)
    assert tree.read_text("/enabled_functions") == "ip_rcv (2)           \n"
    tree.echo("/set_ftrace_filter", "!ip_rcv:traceon", append=True)
    tree.echo("/current_tracer", "nop")
    assert tree.read_text("/enabled_functions") == ""


@pytest.mark.fuse
def test_stack_tracer_on_the_mount(mnt):
    status, text = request(str(mnt), ["sysctl", "kernel.stack_tracer_enabled=1"])
    assert status == 0, text
    request(str(mnt), ["send", "lo", "--len", "64"])
    out = sh("cat stack_trace; cat stack_max_size", mnt).stdout.splitlines()
    assert out[0].startswith("        Depth    Size   Location    (")
    assert ROW.match(out[2]) and int(out[-1]) == int(ROW.match(out[2]).group(2))
    request(str(mnt), ["sysctl", "kernel.stack_tracer_enabled=0"])


def test_profile_without_graph_time_counts_own_time(system, tree):
    def times() -> dict[str, float]:
        lines = tree.read_text("/trace_stat/function0").splitlines()[2:]
        return {ln[2:32].rstrip(): float(ln[48:].split(" us")[0]) for ln in lines}
    tree.echo("/function_profile_enabled", "1")
    send_lo(system)
    nested = times()
    tree.echo("/function_profile_enabled", "0")
    tree.echo("/options/graph-time", "0")
    tree.echo("/function_profile_enabled", "1")
    send_lo(system)
    own = times()
    tree.echo("/function_profile_enabled", "0")
    # net_rx_action calls everything on the receive path: its own time is a small part
    assert own["net_rx_action"] < nested["net_rx_action"] / 2
    assert own["kmem_cache_free"] == pytest.approx(nested["kmem_cache_free"], rel=0.5)
