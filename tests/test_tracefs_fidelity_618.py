"""Differences a scripted session found between tracesim and a real Linux 6.18 tracefs (issue #18
items 4 and 5), each checked against what the reference kernel showed."""
from __future__ import annotations

import errno
import os
import re
import subprocess
import sys

import pytest
from tracesim.tracefs.errors import FsError

from tests.conftest import REFERENCE, need_shared
from tests.tracefs_reference import EMPTY_TRIGGERS

FULL_CONFIG_TRIGGERS = EMPTY_TRIGGERS


def ref(name: str) -> str:
    need_shared()
    return (REFERENCE / name).read_text()


def errno_of(call, *args, **kwargs) -> int:
    with pytest.raises(FsError) as err:
        call(*args, **kwargs)
    return err.value.errno


def sh(mnt, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=mnt, capture_output=True, text=True, timeout=60)


# -- saved_cmdlines_size -----------------------------------------------------------------------
def test_saved_cmdlines_size_is_the_allocation(system, tree):
    assert tree.read_text("/saved_cmdlines_size") == ref("saved_cmdlines_size")
    cmdlines = system.kernel.tracing.cmdlines
    for pid in range(1000, 1000 + 6552):
        cmdlines.record(pid, f"t{pid}")
    text = tree.read_text("/saved_cmdlines")
    assert len(text.splitlines()) == 6552 and "1000 t1000\n" in text       # nothing pushed out yet
    cmdlines.record(9000, "late")
    assert "1000 t1000\n" not in tree.read_text("/saved_cmdlines")


def test_saved_cmdlines_size_rounds_up_and_limits(tree):
    tree.echo("/saved_cmdlines_size", "10000")
    assert tree.read_text("/saved_cmdlines_size") == "19659\n"
    for bad in ("0", "32769", "x"):
        assert errno_of(tree.echo, "/saved_cmdlines_size", bad) == errno.EINVAL
    assert tree.read_text("/saved_cmdlines_size") == "19659\n"


# -- trigger files (captures 05c, 05d) ----------------------------------------------------------
EV = "/events/net/netif_rx"


def test_trigger_listing_rules_as_05c(tree):
    trig = EV + "/trigger"
    tree.echo(trig, "traceon")
    assert tree.read_text(trig) == "traceon:unlimited\n"
    assert errno_of(tree.echo, trig, "traceoff:5") == errno.EEXIST           # one on/off per event
    for cmd in ("stacktrace:3 if len > 100", "enable_event:kmem:kmalloc:3", "disable_event:kmem:kfree",
                "enable_event:skb:kfree_skb:2 if len == 1"):
        tree.echo(trig, cmd)
    assert tree.read_text(trig) == ("enable_event:skb:kfree_skb:count=2 if len == 1\n"
                                    "disable_event:kmem:kfree:unlimited\n"
                                    "enable_event:kmem:kmalloc:count=3\n"
                                    "stacktrace:count=3 if len > 100\n"
                                    "traceon:unlimited\n")
    for path in (EV, "/events/kmem/kmalloc", "/events/kmem/kfree", "/events/skb/kfree_skb"):
        assert tree.read_text(path + "/enable") == "0*\n"
    for dup in ("traceon", "traceoff", "stacktrace", "enable_event:kmem:kmalloc",
                "disable_event:kmem:kmalloc"):
        assert errno_of(tree.echo, trig, dup) == errno.EEXIST
    for bad in ("enable_event:nosys:noev", "bogus", "!nosuchtrigger", "traceon:x"):
        assert errno_of(tree.echo, trig, bad) == errno.EINVAL
    tree.echo(trig, "!traceoff")                                    # removes the traceon trigger
    tree.echo(trig, "!enable_event:kmem:kmalloc")
    assert tree.read_text(trig) == ("enable_event:skb:kfree_skb:count=2 if len == 1\n"
                                    "disable_event:kmem:kfree:unlimited\n"
                                    "stacktrace:count=3 if len > 100\n")
    for cmd in ("!traceon", "!stacktrace", "!disable_event:kmem:kfree", "!enable_event:skb:kfree_skb",
                "!stacktrace", "!enable_event:kmem:kmalloc"):             # not set: still accepted
        tree.echo(trig, cmd)
    # the reference kernel lists its five commands; the model has snapshot and hist too, so the
    # line is that of a 6.18 kernel with CONFIG_TRACER_SNAPSHOT and CONFIG_HIST_TRIGGERS
    assert tree.read_text(trig) == FULL_CONFIG_TRIGGERS
    for path in (EV, "/events/kmem/kmalloc", "/events/kmem/kfree", "/events/skb/kfree_skb"):
        assert tree.read_text(path + "/enable") == "0\n"


def test_trigger_truncating_write_keeps_triggers(mnt):
    trig = "events/net/netif_rx/trigger"
    out = sh(mnt, f"echo 'stacktrace:5 if len > 10' > {trig} && echo 'traceoff:3' > {trig} && "
                  f"cat {trig}; echo traceon > {trig}; echo rc=$?")
    assert out.stdout == "traceoff:count=3\nstacktrace:count=5 if len > 10\nrc=1\n"
    assert "File exists" in out.stderr
    out = sh(mnt, f"echo '!stacktrace' > {trig}; echo '!traceoff' > {trig}; echo '!traceon' > {trig}; "
                  f"echo rc=$?; cat {trig}")
    assert out.stdout == "rc=0\n" + FULL_CONFIG_TRIGGERS


def send(system, length: int, count: int = 1) -> None:
    status, text = system.control(["send", "lo", "--len", str(length), "--count", str(count)])
    assert status == 0, text


def test_trigger_counts_go_down_as_05d(system, tree):
    trig = "/events/net/netif_receive_skb/trigger"
    tree.echo(trig, "stacktrace:5 if len > 100")
    tree.echo(trig, "traceoff:3 if len < 100")
    tree.echo("/trace", "")
    send(system, 200, 2)
    send(system, 64)
    assert tree.read_text(trig) == "traceoff:count=2 if len < 100\nstacktrace:count=3 if len > 100\n"
    assert tree.read_text("/tracing_on") == "0\n"
    trace = tree.read_text("/trace")
    assert trace.count("<stack trace>") == 2 and "netif_receive_skb:" not in trace   # soft mode
    tree.echo("/tracing_on", "1")
    send(system, 64)                                   # fires again once tracing is back on
    assert tree.read_text(trig).startswith("traceoff:count=1 ")


def test_traceon_count(system, tree):
    trig = "/events/net/netif_receive_skb/trigger"
    tree.echo(trig, "traceon:1")
    tree.echo("/tracing_on", "0")
    send(system, 64)
    assert tree.read_text("/tracing_on") == "1\n" and tree.read_text(trig) == "traceon:count=0\n"
    tree.echo("/tracing_on", "0")
    send(system, 64)
    assert tree.read_text("/tracing_on") == "0\n"


# -- trace_marker (captures 06a-06c) -----------------------------------------------------------
LETTERS = "".join(chr(ord("A") + i % 26) * 100 for i in range(50))[:4999]


def marker_messages(trace: str) -> list[str]:
    return re.findall(r"\] (\S{5}) +\d+\.\d+: tracing_mark_write: (.*)$", trace, re.M)


def test_marker_flags_column(tree):
    tree.echo("/trace_marker", "hello marker")
    assert marker_messages(tree.read_text("/trace")) == [("...1.", "hello marker")]
    assert marker_messages(ref("captures/06a_trace_marker_normal.txt"))[0] == ("...1.", "hello marker")


def test_marker_long_write_is_short(tree):
    handle = tree.open("/trace_marker", os.O_WRONLY | os.O_TRUNC)
    try:
        assert handle.write((LETTERS + "\n").encode(), 0) == 4054
    finally:
        handle.release()
    got = marker_messages(tree.read_text("/trace"))
    assert got == marker_messages(ref("captures/06b_trace_marker_5000.txt"))
    assert [len(m) for _, m in got] == [4054]


def test_marker_long_echo_through_mount(mnt):
    out = sh(mnt, f"echo > trace; echo '{LETTERS}' > trace_marker; cat trace")
    got = [m for _, m in marker_messages(out.stdout)]
    want = [m for _, m in marker_messages(ref("captures/06c_trace_marker_5000_bash_echo.txt"))]
    assert [len(m) for m in want] == [4054, 42, 903]
    assert got == want


# -- set_event order ---------------------------------------------------------------------------
def test_set_event_walks_tr_events(tree):
    tree.echo("/events/enable", "1")
    boot = tree.read_text("/available_events")
    assert tree.read_text("/set_event") == boot               # ftrace's own entries are not enabled
    tree.echo("/kprobe_events", "p:kp_one kfree", append=True)
    tree.echo("/kprobe_events", "p:kp_two kfree", append=True)
    tree.echo("/events/kprobes/enable", "1")
    assert tree.read_text("/set_event") == "kprobes:kp_two\nkprobes:kp_one\n" + boot
    assert tree.read_text("/available_events") == "kprobes:kp_two\nkprobes:kp_one\n" + boot
    tree.mkdir("/instances/late")
    tree.echo("/instances/late/events/enable", "1")          # a new tr walks ftrace_events
    assert tree.read_text("/instances/late/set_event") == boot + "kprobes:kp_one\nkprobes:kp_two\n"
    assert errno_of(tree.echo, "/set_event", "ftrace:print") == errno.EINVAL


# -- options/ ----------------------------------------------------------------------------------
# The reference kernel's options that come with a tracer the model does not have (blk).
NOT_MODELLED_OPTIONS = {"blk_cgname", "blk_cgroup", "blk_classic"}


def reference_defaults() -> dict[str, str]:
    pairs = (line.split() for line in ref("options_defaults").splitlines())
    return {name: value for name, value in pairs if name not in NOT_MODELLED_OPTIONS}


def test_options_defaults_as_618(tree):
    for name, value in reference_defaults().items():
        assert tree.read_text(f"/options/{name}") == value + "\n", name
    assert "display-graph" in tree.readdir("/options")           # comes with function_graph
    words = tree.read_text("/trace_options").split()
    assert words[words.index("noevent-fork") + 1:words.index("noevent-fork") + 3] == [
        "trace_printk_dest", "copy_trace_marker"]                  # TRACE_FLAGS order
    assert words[-2:] == ["notest_nop_accept", "notest_nop_refuse"]   # the tracer's own, last


def test_instance_zeroed_options(tree):
    tree.mkdir("/instances/foo")
    for name in ("trace_printk_dest", "copy_trace_marker", "event-fork", "function-fork"):
        assert tree.read_text(f"/instances/foo/options/{name}") == "0\n", name


def test_nop_tracer_options(system, tree):
    tree.echo("/options/test_nop_accept", "1")
    assert tree.read_text("/options/test_nop_accept") == "1\n"
    assert errno_of(tree.echo, "/options/test_nop_refuse", "1") == errno.EINVAL
    assert tree.read_text("/options/test_nop_refuse") == "0\n"
    log = system.kernel.printk.dmesg()
    assert "nop_test_accept flag set to 1: we accept. Now cat trace_options to see the result\n" in log
    assert "nop_test_refuse flag set to 1: we refuse. Now cat trace_options to see the result\n" in log
    assert "test_nop_accept\nnotest_nop_refuse\n" in tree.read_text("/trace_options")


def test_trace_printk_dest_is_one_array(tree):
    assert errno_of(tree.echo, "/options/trace_printk_dest", "0") == errno.EINVAL   # top keeps it
    tree.mkdir("/instances/foo")
    tree.echo("/instances/foo/options/trace_printk_dest", "1")
    assert tree.read_text("/options/trace_printk_dest") == "0\n"
    tree.echo("/instances/foo/options/trace_printk_dest", "0")
    assert tree.read_text("/options/trace_printk_dest") == "1\n"


def test_copy_trace_marker(tree):
    tree.mkdir("/instances/foo")
    tree.echo("/instances/foo/options/copy_trace_marker", "1")
    tree.echo("/trace_marker", "to both")
    tree.echo("/instances/foo/trace_marker", "only foo")
    assert [m for _, m in marker_messages(tree.read_text("/instances/foo/trace"))] == ["to both", "only foo"]
    assert [m for _, m in marker_messages(tree.read_text("/trace"))] == ["to both"]
    tree.echo("/options/copy_trace_marker", "0")
    tree.echo("/trace_marker", "foo alone")
    assert [m for _, m in marker_messages(tree.read_text("/trace"))] == ["to both"]
    tree.echo("/instances/foo/options/copy_trace_marker", "0")
    assert errno_of(tree.echo, "/trace_marker", "nowhere") == errno.ENODEV


def test_options_are_the_kernels_only(tree):
    want = set(reference_defaults()) | {"trace_printk_dest", "copy_trace_marker"}
    graph = {"display-graph", "funcgraph-overrun", "funcgraph-cpu", "funcgraph-overhead",
             "funcgraph-proc", "funcgraph-duration", "funcgraph-abstime", "funcgraph-irqs",
             "funcgraph-tail", "sleep-time", "graph-time"}   # function_graph (not in the reference)
    assert set(tree.readdir("/options")) == want | graph     # no tracesim switch (bpf_jit) here


def test_bpf_engine_is_a_control_command(mnt):
    out = sh(mnt, f"{sys.executable} -m tracesim.tools.cli ctl . bpf-engine interp && "
                  f"{sys.executable} -m tracesim.tools.cli ctl . bpf-engine; ls options | grep -c bpf")
    assert out.stdout == "interp\n0\n", out.stderr


# -- subsystem filter (process_system_preds) ---------------------------------------------------
SUBSYS_ERROR = "parse_error: Couldn't find or set field in one of a subsystem's events\n"


def test_subsystem_filter_where_some_events_lack_the_field(system, tree):
    tree.echo("/trace", "")
    tree.echo("/events/net/filter", "rc == 0")        # only net_dev_xmit has rc: still accepted
    assert tree.read_text("/events/net/net_dev_xmit/filter") == "rc == 0\n"
    lacking = ("netif_receive_skb", "netif_rx", "net_dev_queue", "net_dev_start_xmit",
               "netif_receive_skb_entry", "netif_receive_skb_exit")
    for name in lacking:
        assert tree.read_text(f"/events/net/{name}/filter") == "rc == 0\n^\n" + SUBSYS_ERROR + "\n"
    assert tree.read_text("/events/net/filter").startswith("### global filter ###\n")
    assert tree.read_text("/error_log").count("Couldn't find or set field") == len(lacking)
    tree.echo("/events/net/netif_receive_skb/enable", "1")
    send(system, 64)
    assert "netif_receive_skb:" in tree.read_text("/trace")     # its failed filter filters nothing


# -- dynamic_events errno ----------------------------------------------------------------------
@pytest.mark.parametrize("line, code", [
    ("-", errno.EINVAL),                 # no ':' at all
    ("-:", errno.EINVAL),                # neither group nor event
    ("-:nosuch", errno.ENOENT),
    ("-:/kp_a", errno.ENOENT),           # an empty group is a group no probe has
    ("-:nogrp/", errno.ENOENT),
    ("x:foo kfree", errno.EINVAL),       # no dynamic event type takes it (-ECANCELED)
    ("p:foo", errno.EINVAL),             # too few words: -ECANCELED too
    ("p:foo nosuchsym", errno.ENOENT),   # BAD_PROBE_ADDR from the symbol lookup
    ("p:/kp kfree", errno.EINVAL),        # NO_GROUP_NAME (``p:grp/ kfree`` names no event:
                                         # the default name is used)
    ("e:foo nosuch/nosuch", errno.EINVAL),   # BAD_ATTACH_EVENT ("Attached event does not exist")
])
def test_dynamic_events_errno(tree, line, code):
    tree.echo("/dynamic_events", "p:kp_a kfree", append=True)
    assert errno_of(tree.echo, "/dynamic_events", line, append=True) == code
    assert tree.read_text("/dynamic_events") == "p:kprobes/kp_a kfree\n"


def test_dynamic_events_group_removal(tree):
    tree.echo("/dynamic_events", "p:g1/a kfree", append=True)
    tree.echo("/dynamic_events", "p:g1/b kfree", append=True)
    tree.echo("/dynamic_events", "p:g2/c kfree", append=True)
    tree.echo("/dynamic_events", "-:g1/", append=True)        # trace_kprobe_match: the whole group
    assert tree.read_text("/dynamic_events") == "p:g2/c kfree\n"


# -- README: the feature lines tools and the ftrace selftests grep -----------------------------
HAS = ["  error_log\t- error log for failed commands (that support it)",
       "  trace_marker\t\t- Writes into this file writes into the kernel buffer",
       "  kprobe_events\t\t- Create/append/remove/show the kernel dynamic events",
       "\t   Format: p[:[<group>/][<event>]] <place> [<args>]",
       "\t           r[maxactive][:[<group>/][<event>]] <place> [<args>]",
       "\t           -:[<group>/][<event>]",
       "\t           $stack<index>, $stack, $retval, $comm, $arg<N>,",
       "\t           f[:[<group>/][<event>]] <func-name>[%return] [<args>]",
       "\t           t[:[<group>/][<event>]] <tracepoint> [<args>]",
       "\t           <argname>[->field[->field|.field...]],",
       "\t           e[:[<group>/][<event>]] <attached-group>.<attached-event> [<args>] [if <filter>]",
       "\t           symstr, %pd/%pD, <type>\\[<array-size>\\]",
       "\t    Format: <trigger>[:count][if <filter>]",
       "\t            enable_event:<system>:<event>",
       "\t     echo '!<trigger>:0 > <system>/<event>/trigger",
       "\t     example: echo :mod:ext3 > set_ftrace_filter",
       "\t\t      cpudump"]
# the function_graph and stack tracer lines (the reference kernel has neither: trace.c readme_msg)
HAS_BEYOND_REFERENCE = [
    "  set_graph_function\t- Trace the nested calls of a function (function_graph)",
    "  max_graph_depth\t- Trace a limited depth of nested calls (0 is unlimited)",
    "  stack_trace_filter\t- Like set_ftrace_filter but limits what stack_trace"]
LACKS = ["funcgraph", "uprobe"]


def test_readme_has_the_kernels_lines_for_the_models_features(tree):
    text = tree.read_text("/README")
    reference = ref("README").splitlines()
    assert text.startswith("tracing mini-HOWTO:\n")
    for line in HAS + HAS_BEYOND_REFERENCE:
        assert line in text.splitlines(), line
    for line in HAS:
        if not any(w in line for w in ("kprobe_events", "f[", "t[", "<argname>")):
            # the reference kernel has no kprobes, fprobes, tracepoint probes or BTF args
            assert line in reference, line
    for word in LACKS:
        assert word not in text, word


def test_readme_grep_through_mount(mnt):
    out = sh(mnt, "grep -qF -- '-:[<group>/][<event>]' README && grep -qF 'error_log' README && "
                  "grep -qF 'hist:keys=' README && grep -qF 's:[synthetic/]' README && "
                  "grep -qE 'function_graph' README && ! grep -qE 'uprobe_events' README && echo ok")
    assert out.stdout == "ok\n", out.stderr


def test_trace_printk_dest_returns_when_its_instance_goes(tree):
    tree.mkdir("/instances/foo")
    tree.echo("/instances/foo/options/trace_printk_dest", "1")
    tree.rmdir("/instances/foo")
    assert tree.read_text("/options/trace_printk_dest") == "1\n"


def test_instances_have_no_top_level_option_files(tree):
    tree.mkdir("/instances/foo")
    names = set(tree.readdir("/instances/foo/options"))
    assert not names & {"trace_printk", "printk-msg-only", "record-cmd"}
    assert {"trace_printk", "printk-msg-only", "record-cmd"} <= set(tree.readdir("/options"))
