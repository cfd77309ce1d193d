"""Synthetic events (issue #18 item 2): ``synthetic_events``, ``s:`` lines of
``dynamic_events``, ``events/synthetic/*``, and the wakeup-latency example of
Documentation/trace/histogram.rst."""
from __future__ import annotations

import errno
import re

import pytest
from tracesim.kernel_model import control
from tracesim.tracefs.errors import FsError

from tests.fuse_helpers import sh


def errno_of(call, *args, **kwargs) -> int:
    with pytest.raises(FsError) as err:
        call(*args, **kwargs)
    return err.value.errno


def test_define_list_and_format(tree):
    tree.echo("/synthetic_events", "wakeup_latency u64 lat; pid_t pid; int prio", append=True)
    tree.echo("/synthetic_events", "name_ev char comm[16]; unsigned int n", append=True)
    assert tree.read_text("/synthetic_events") == (
        "wakeup_latency\tu64 lat; pid_t pid; int prio\n"
        "name_ev\tchar[16] comm; unsigned int n\n")
    assert tree.read_text("/dynamic_events") == (
        "s:synthetic/wakeup_latency\tu64 lat; pid_t pid; int prio\n"
        "s:synthetic/name_ev\tchar[16] comm; unsigned int n\n")
    assert sorted(tree.readdir("/events/synthetic")) == ["enable", "filter", "name_ev",
                                                         "wakeup_latency"]
    assert sorted(tree.readdir("/events/synthetic/wakeup_latency")) == \
        ["enable", "filter", "format", "hist", "id", "trigger"]
    fmt = tree.read_text("/events/synthetic/wakeup_latency/format")
    assert re.sub(r"ID: \d+", "ID: N", fmt) == (
        "name: wakeup_latency\nID: N\nformat:\n"
        "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
        "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
        "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
        "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
        "\tfield:u64 lat;\toffset:8;\tsize:8;\tsigned:0;\n"
        "\tfield:pid_t pid;\toffset:16;\tsize:4;\tsigned:1;\n"
        "\tfield:int prio;\toffset:24;\tsize:4;\tsigned:1;\n\n"
        'print fmt: "lat=%llu, pid=%d, prio=%d", REC->lat, REC->pid, REC->prio\n')
    assert "\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:1;\n" \
           "\tfield:unsigned int n;\toffset:264;\tsize:4;\tsigned:0;\n" in \
           tree.read_text("/events/synthetic/name_ev/format")
    # a filter on a synthetic field works as on any event
    tree.echo("/events/synthetic/wakeup_latency/filter", "lat > 10")
    assert tree.read_text("/events/synthetic/wakeup_latency/filter") == "lat > 10\n"


def test_dynamic_events_s_lines_and_removal(tree):
    tree.echo("/dynamic_events", "s:synthetic/ev1 u32 a", append=True)
    tree.echo("/dynamic_events", "s:ev2 u64 b; s16 c", append=True)
    assert tree.read_text("/synthetic_events") == "ev1\tu32 a\nev2\tu64 b; s16 c\n"
    assert errno_of(tree.echo, "/dynamic_events", "s:other/ev3 u32 a", append=True) == \
        errno.EINVAL
    assert "synthetic_events: error: Command must be of the form: s or -:[synthetic/]<name>" \
           " field[;field] ...\n  Command: s:other/ev3 u32 a\n" in tree.read_text("/error_log")
    tree.echo("/dynamic_events", "-:synthetic/ev1", append=True)
    tree.echo("/synthetic_events", "!ev2", append=True)
    assert tree.read_text("/synthetic_events") == ""
    assert errno_of(tree.echo, "/synthetic_events", "!ev2", append=True) == errno.ENOENT
    assert "synthetic" not in tree.readdir("/events")


@pytest.mark.parametrize("cmd, message, word", [
    ("9bad u32 a", "Illegal name", "9bad"),
    ("ev u32", "Command must be of the form: <name> field[;field] ...", None),
    ("ev u32 a; u64", "Invalid field", "u64"),
    ("ev u32 a; unsigned b", "Incomplete type", "unsigned"),
    ("ev badtype a", "Invalid type", "badtype"),
    ("ev u32 a[2]", "Invalid type", "u32"),
    ("ev u32 a-b", "Illegal name", "a-b"),
    ("ev char a[x]", "Invalid array specification", "a[x]"),
    ("ev char a[300]", "Invalid array specification", "a[300]"),
    ("ev", "Command must be of the form: <name> field[;field] ...", None),
])
def test_errors(tree, cmd, message, word):
    """__create_synth_event's checks: EINVAL, the caret under the word errpos() finds (the
    first occurrence of the offending word), or at the start."""
    assert errno_of(tree.echo, "/synthetic_events", cmd, append=True) == errno.EINVAL
    caret = cmd.find(word) if word else 0
    assert f"synthetic_events: error: {message}\n  Command: {cmd}\n" + " " * (11 + caret) \
           + "^\n" in tree.read_text("/error_log")
    assert tree.read_text("/synthetic_events") == ""


def test_exists_and_busy(tree):
    tree.echo("/synthetic_events", "ev u32 a", append=True)
    assert errno_of(tree.echo, "/synthetic_events", "ev u64 b", append=True) == errno.EEXIST
    tree.echo("/events/synthetic/ev/enable", "1")
    assert errno_of(tree.echo, "/synthetic_events", "!ev", append=True) == errno.EBUSY
    assert errno_of(tree.echo, "/synthetic_events", "") == errno.EBUSY    # O_TRUNC: in use
    tree.echo("/events/synthetic/ev/enable", "0")
    tree.echo("/synthetic_events", "")
    assert tree.read_text("/synthetic_events") == ""


def test_type_and_count_mismatch(tree):
    tree.echo("/synthetic_events", "two u64 a; u64 b", append=True)
    trig = "/events/net/netif_receive_skb/trigger"
    assert errno_of(tree.echo, trig, "hist:keys=skbaddr:onmatch(net.net_dev_queue)"
                                     ".trace(two,skbaddr)", append=True) == errno.EINVAL
    assert "Param count doesn't match synthetic event field count" in \
           tree.read_text("/error_log")
    tree.echo("/synthetic_events", "str char s[16]", append=True)
    assert errno_of(tree.echo, trig, "hist:keys=skbaddr:onmatch(net.net_dev_queue)"
                                     ".trace(str,len)", append=True) == errno.EINVAL
    assert "Param type doesn't match synthetic event field type" in \
           tree.read_text("/error_log")


def test_dynamic_string_field(tree, system):
    """``char name[]``: a ``__data_loc`` word in an 8-byte slot, the text after the slots."""
    tree.echo("/synthetic_events", "dev_ev char dev[]; unsigned int len", append=True)
    assert tree.read_text("/synthetic_events") == "dev_ev\tchar[] dev; unsigned int len\n"
    fmt = tree.read_text("/events/synthetic/dev_ev/format")
    assert "\tfield:__data_loc char[] dev;\toffset:8;\tsize:8;\tsigned:1;\n" \
           "\tfield:unsigned int len;\toffset:16;\tsize:4;\tsigned:0;\n" in fmt
    assert 'print fmt: "dev=%.*s, len=%u", __get_str(dev), REC->len\n' in fmt
    tree.echo("/events/net/netif_receive_skb/trigger",
              "hist:keys=skbaddr:onmatch(net.net_dev_queue).dev_ev(name,len)", append=True)
    tree.echo("/events/net/net_dev_queue/trigger", "hist:keys=skbaddr:t=common_cpu",
              append=True)
    tree.echo("/events/synthetic/dev_ev/enable", "1")
    control.send(system.kernel, "lo", 90, count=1)
    assert re.search(r" dev_ev: dev=lo len=90\n", tree.read_text("/trace"))


WAKEUP_EXAMPLE = (
    ("synthetic_events", "wakeup_latency u64 lat; pid_t pid; int prio"),
    ("events/sched/sched_waking/trigger", "hist:keys=pid:ts0=common_timestamp.usecs"),
    ("events/sched/sched_switch/trigger",
     "hist:keys=next_pid:wakeup_lat=common_timestamp.usecs-$ts0:"
     "onmatch(sched.sched_waking).wakeup_latency($wakeup_lat,next_pid,next_prio)"),
    ("events/synthetic/wakeup_latency/trigger", "hist:keys=pid,prio,lat:sort=pid,lat"),
)


def test_wakeup_latency_example_verbatim(tree, system):
    """Documentation/trace/histogram.rst's wakeup_latency, as written there, on the model's
    scheduler events."""
    for path, cmd in WAKEUP_EXAMPLE:
        tree.echo("/" + path, cmd, append=True)
    control.send(system.kernel, "lo", 64, count=50)      # activity: softirqs, wakeups
    text = tree.read_text("/events/synthetic/wakeup_latency/hist")
    assert text.startswith("# event histogram\n#\n# trigger info: hist:keys=pid,prio,lat:"
                           "vals=hitcount:sort=pid,lat:size=2048 [active]\n#\n\n")
    assert re.search(r"\nTotals:\n    Hits: \d+\n    Entries: \d+\n    Dropped: 0\n$", text)


def test_latency_pair_through_the_mount(mnt):
    """The same machinery with the shell: net_dev_queue -> netif_receive_skb keyed on skbaddr."""
    from tests.test_fuse_tracefs import ctl
    script = (
        "echo 'lo_lat u64 lat; unsigned int len' >> synthetic_events && "
        "echo 'hist:keys=skbaddr:ts0=common_timestamp.usecs' >> "
        "events/net/net_dev_queue/trigger && "
        "echo 'hist:keys=skbaddr:lat=common_timestamp.usecs-$ts0:"
        "onmatch(net.net_dev_queue).trace(lo_lat,$lat,len)' >> "
        "events/net/netif_receive_skb/trigger && "
        "echo 'hist:keys=len:vals=hitcount,lat:sort=len' >> events/synthetic/lo_lat/trigger && "
        "echo 1 > events/synthetic/lo_lat/enable && echo ok")
    out = sh(script, mnt)
    assert out.stdout == "ok\n", out.stderr
    ctl(mnt, "send", "lo", "--len", "64", "--count", "4")
    hist = sh("cat events/synthetic/lo_lat/hist", mnt).stdout
    assert "# trigger info: hist:keys=len:vals=hitcount,lat:sort=len:size=2048 [active]\n" in hist
    assert re.search(r"\{ len:         64 \} hitcount:          4  lat: +\d+\n", hist), hist
    assert sh("grep -c ' lo_lat: lat=' trace", mnt).stdout == "4\n"
    assert sh("cat dynamic_events", mnt).stdout == "s:synthetic/lo_lat\tu64 lat; unsigned int len\n"


def test_send_does_not_need_a_trigger(system):
    """Sanity: the pair of events used above fires once each per packet."""
    tracing = system.kernel.tracing
    assert ("net", "net_dev_queue") in tracing.events
    assert control.send(system.kernel, "lo", 64, count=1) == 1


def test_variables_of_a_hist_with_fewer_keys_match_the_leading_key(tree, system):
    """A compound key (pid, lat) finds the variables of hists keyed on pid alone: the kernel's
    tracing_map_lookup compares the other map's key bytes, this key's leading u64 slots."""
    ev = "/events/sched/"
    tree.echo("/synthetic_events", "waking_latency u64 lat; pid_t pid")
    tree.echo("/synthetic_events", "wakeup_latency u64 lat; pid_t pid", append=True)
    tree.echo("/synthetic_events", "ww u64 lat; pid_t pid", append=True)
    tree.echo(ev + "sched_waking/trigger",
              'hist:keys=pid:ts0=common_timestamp.usecs if comm=="ping"')
    tree.echo(ev + "sched_wakeup/trigger",
              "hist:keys=pid:waking_lat=common_timestamp.usecs-$ts0:"
              'onmatch(sched.sched_waking).waking_latency($waking_lat,pid) if comm=="ping"')
    tree.echo(ev + "sched_wakeup/trigger",
              'hist:keys=pid:ts1=common_timestamp.usecs if comm=="ping"', append=True)
    tree.echo(ev + "sched_switch/trigger",
              "hist:keys=next_pid:wakeup_lat=common_timestamp.usecs-$ts1:"
              'onmatch(sched.sched_wakeup).wakeup_latency($wakeup_lat,next_pid) '
              'if next_comm=="ping"')
    tree.echo("/events/synthetic/wakeup_latency/trigger",
              "hist:keys=pid,lat:sort=pid,lat:ww_lat=$waking_lat+$wakeup_lat:"
              "onmatch(synthetic.wakeup_latency).ww($ww_lat,pid)")
    tree.echo("/events/synthetic/ww/trigger", "hist:keys=pid,lat:sort=pid,lat")
    control.ping(system.kernel, "lo", 2)
    assert re.search(r"^\{ pid: +\d+, lat: +\d+ \} hitcount: +\d+$",
                     tree.read_text("/events/synthetic/ww/hist"), re.M)


def test_stack_field_carries_a_stacktrace_variable(tree, system):
    """``unsigned long[] stack`` (6.18): a dynamic array of return addresses, filled from a
    ``common_stacktrace`` variable and printed as ``stack=STACK:`` with ``=> %pS`` lines."""
    tree.echo("/dynamic_events", "s:wake_lat pid_t pid; u64 delta; unsigned long[] stack;")
    assert tree.read_text("/synthetic_events") == \
        "wake_lat\tpid_t pid; u64 delta; unsigned long[] stack\n"
    fmt = tree.read_text("/events/synthetic/wake_lat/format")
    assert "\tfield:__data_loc unsigned long[] stack;\toffset:24;\tsize:8;\tsigned:0;\n" in fmt
    sw = "/events/sched/sched_switch/trigger"
    tree.echo(sw, "hist:keys=next_pid:ts=common_timestamp.usecs,st=common_stacktrace "
              "if prev_state == 1||prev_state == 2", append=True)
    tree.echo(sw, "hist:keys=prev_pid:delta=common_timestamp.usecs-$ts,s=$st:"
              "onmax($delta).trace(wake_lat,prev_pid,$delta,$s)", append=True)
    tree.echo("/events/synthetic/wake_lat/enable", "1")
    control.ping(system.kernel, "lo", 2)
    trace = tree.read_text("/trace")
    m = re.search(r" wake_lat: pid=\d+ delta=\d+ stack=STACK:\n((?:=> .*\n)+)", trace)
    assert m, trace[-2000:]
    frames = [line[3:] for line in m.group(1).splitlines()]
    assert frames[0].startswith("trace_event_raw_event_sched_switch+")
    assert any(f.startswith("schedule+0x") for f in frames)   # the modelled call chain
    # only a stacktrace variable fits a stack field
    tree.echo("/synthetic_events", "bad_stack unsigned long[] stack", append=True)
    with pytest.raises(FsError):
        tree.echo(sw, "hist:keys=prev_pid:p=prev_pid:onmatch(sched.sched_switch)"
                  ".trace(bad_stack,$p)", append=True)


def test_readme_shows_the_stack_field_syntax(tree):
    # the kernel's README example (what the selftests grep to find stack fields)
    assert "\t     example: echo 'myevent u64 lat; char name[]; long[] stack' >> " \
           "synthetic_events\n" in tree.read_text("/README")
