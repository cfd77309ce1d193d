"""The in-process tree over the modelled kernel: Linux 6.18's files, bytes and errno values."""
from __future__ import annotations

import errno
import os
import re

import pytest
from tracesim.tracefs.errors import FsError

from tests.conftest import REFERENCE, need_shared
from tests.tracefs_reference import (
    EMPTY_TRIGGERS,
    EXTRA_EVENT_FILES,
    filter_cases,
    ls_blocks,
    ls_entries,
    mode_string,
    strip_id,
    strip_timestamps,
    with_extra_root_files,
)

NETIF = "/events/net/netif_receive_skb"


def ref(name: str) -> str:
    need_shared()
    return (REFERENCE / name).read_text()


def send(system, dev: str = "lo", length: int = 128, count: int = 1) -> None:
    status, text = system.control(["send", dev, "--len", str(length), "--count", str(count)])
    assert status == 0, text


def errno_of(call, *args, **kwargs) -> int:
    with pytest.raises(FsError) as err:
        call(*args, **kwargs)
    return err.value.errno


# -- reference files ---------------------------------------------------------------------------
@pytest.mark.parametrize("path, name", [
    ("/events/net/netif_receive_skb/format", "events_net_netif_receive_skb_format"),
    ("/events/skb/kfree_skb/format", "events_skb_kfree_skb_format"),
])
def test_format_files(tree, path, name):
    assert strip_id(tree.read_text(path)) == strip_id(ref(name))
    event_id = int(re.search(r"^ID: (\d+)$", tree.read_text(path), re.M).group(1))
    assert tree.read_text(os.path.dirname(path) + "/id") == f"{event_id}\n"


@pytest.mark.parametrize("path, name", [
    ("/events/header_page", "header_page"), ("/events/header_event", "header_event"),
    ("/trace", "trace_empty"), ("/events/skb/kfree_skb/enable", "event_enable"),
    ("/events/enable", "events_enable"), (NETIF + "/filter", "event_filter_none"),
    ("/buffer_size_kb", "buffer_size_kb"),
    ("/trace_clock", "trace_clock"), ("/tracing_on", "tracing_on"),
])
def test_boot_state_files(tree, path, name):
    assert tree.read_text(path) == ref(name)


def test_empty_trigger_file_lists_the_models_commands(tree):
    """The reference kernel (no snapshot, no hist triggers) lists five commands; the model
    lists them in the same registration order with snapshot and the hist commands added."""
    reference = ref("event_trigger").split("\n")[1].split()[1:]
    text = tree.read_text("/events/skb/kfree_skb/trigger").split("\n")[1].split()[1:]
    assert [c for c in text if c in reference] == reference
    assert text == ["traceon", "traceoff", "snapshot", "stacktrace", "enable_event",
                    "disable_event", "enable_hist", "disable_hist", "hist"]


def test_per_cpu_stats(tree):
    want = ref("per_cpu_stats").splitlines()
    got = tree.read_text("/per_cpu/cpu0/stats").splitlines()
    assert [line.split(":")[0] for line in got] == [line.split(":")[0] for line in want]
    assert [g for g, w in zip(got, want, strict=False) if not w.startswith("now ts")] == \
        [w for w in want if not w.startswith("now ts")]
    assert re.fullmatch(r"now ts: +\d+\.\d{6}", got[5])


def test_root_modes_match_ls_root(tree):
    want = with_extra_root_files(ls_entries(ref("ls_root")))
    want.pop("..")
    root = want.pop(".")
    assert (mode_string(tree.getattr("/").mode), tree.getattr("/").nlink) == root
    assert sorted(tree.readdir("/")) == sorted(want)
    for name, (mode, nlink) in want.items():
        attr = tree.getattr("/" + name)
        assert (mode_string(attr.mode), attr.nlink) == (mode, nlink), name


def test_sub_modes_match_ls_sub(tree):
    for directory, listing in ls_blocks(ref("ls_sub")).items():
        want = ls_entries(listing)
        want.pop("..")
        dot = want.pop(".")
        attr = tree.getattr("/" + directory)
        assert (mode_string(attr.mode), attr.nlink) == dot, directory
        for name, (mode, nlink) in want.items():
            path = f"/{directory}/{name}"
            try:
                attr = tree.getattr(path)
            except FsError:
                continue   # an event the model does not have (e.g. skb_copy_datagram_iovec)
            assert (mode_string(attr.mode), attr.nlink) == (mode, nlink), path
        extra = (set(EXTRA_EVENT_FILES) if directory.count("/") == 2 else
                 {"snapshot", "snapshot_raw"} if directory.startswith("per_cpu/") else set())
        assert set(tree.readdir("/" + directory)) <= set(want) | extra, directory


# -- predicate filters -------------------------------------------------------------------------
def test_filter_behaviour_reference(tree):
    need_shared()
    cases, log = filter_cases(REFERENCE)
    for case in cases:
        if case.errno:
            assert errno_of(tree.echo, NETIF + "/filter", case.expr) == case.errno, case.expr
        else:
            tree.echo(NETIF + "/filter", case.expr)
        assert tree.read_text(NETIF + "/filter") == case.filter_text, case.expr
    assert strip_timestamps(tree.read_text("/error_log")) == strip_timestamps(log)


def test_filter_applies_to_records(system, tree):
    tree.echo(NETIF + "/filter", 'name == "lo"')
    tree.echo(NETIF + "/enable", "1")
    send(system, "lo", 128, 2)
    send(system, "eth0", 128, 2)
    lines = tree.read_text("/trace").splitlines()[12:]
    assert len(lines) == 2 and all("dev=lo " in line for line in lines)
    tree.echo(NETIF + "/filter", "0")
    assert tree.read_text(NETIF + "/filter") == "none\n"


def test_trace_lines_look_like_the_sample(system, tree):
    sample = ref("trace_sample").splitlines()
    tree.echo(NETIF + "/filter", 'name == "lo"')
    tree.echo(NETIF + "/enable", "1")
    send(system, "lo", 128, 3)
    lines = tree.read_text("/trace").splitlines()[12:]
    assert len(lines) == 3
    shape = re.compile(r"^ {0,16}\S+-\d+ +\[\d{3}\] \S{5} +\d+\.\d{6}: "
                       r"netif_receive_skb: dev=lo skbaddr=[0-9a-f]{16} len=128$")
    for line in sample + lines:
        assert shape.match(line), line
    for got, want in zip(lines, sample, strict=False):
        assert got.index("[") == want.index("[") and got.index(": ") == want.index(": ")


def test_subsystem_filter(system, tree):
    tree.echo("/events/net/filter", "len > 100")
    assert tree.read_text("/events/net/filter").startswith("### global filter ###\n")   # as 6.18
    assert tree.read_text(NETIF + "/filter") == "len > 100\n"
    tree.echo("/events/net/filter", "0")
    assert tree.read_text(NETIF + "/filter") == "none\n"


# -- enable and set_event ----------------------------------------------------------------------
def test_set_event_and_enable_interplay(tree):
    tree.echo("/set_event", "net:netif_receive_skb")
    assert tree.read_text("/set_event") == "net:netif_receive_skb\n"
    assert tree.read_text(NETIF + "/enable") == "1\n"
    assert tree.read_text("/events/net/enable") == "X\n"
    assert tree.read_text("/events/enable") == "X\n"
    tree.echo("/set_event", "skb:kfree_skb", append=True)
    assert tree.read_text("/set_event").splitlines() == ["net:netif_receive_skb", "skb:kfree_skb"] \
        or sorted(tree.read_text("/set_event").splitlines()) == \
        ["net:netif_receive_skb", "skb:kfree_skb"]
    tree.echo("/set_event", "!net:netif_receive_skb", append=True)
    assert tree.read_text(NETIF + "/enable") == "0\n"
    tree.echo("/set_event", "net:*")
    assert tree.read_text("/events/net/enable") == "1\n"
    assert tree.read_text("/events/skb/kfree_skb/enable") == "0\n"
    tree.echo("/events/enable", "1")
    assert tree.read_text("/events/enable") == "1\n"
    tree.echo("/set_event", "")          # '>' alone disables everything
    assert tree.read_text("/set_event") == ""
    assert tree.read_text("/events/enable") == "0\n"
    assert errno_of(tree.echo, "/set_event", "nosuch:event") == errno.EINVAL
    for bad in ("2", "x", ""):
        assert errno_of(tree.echo, NETIF + "/enable", bad) == errno.EINVAL


def test_set_event_takes_one_word_per_write(tree):
    """ftrace_event_write parses each write() alone, one word at a time: the short count sends
    the writer back with the rest, and a word cut by the end of a write is applied as it is."""
    handle = tree.open("/set_event", os.O_WRONLY | os.O_TRUNC)
    assert handle.write(b"net:netif_receive_skb skb:kfree_skb", 0) == len("net:netif_receive_skb ")
    assert handle.write(b"skb:kfree_skb", 0) == len("skb:kfree_skb")
    assert errno_of(handle.write, b"net:netif_rec", 0) == errno.EINVAL
    handle.release()
    assert sorted(tree.read_text("/set_event").splitlines()) == \
        ["net:netif_receive_skb", "skb:kfree_skb"]


# -- control files -----------------------------------------------------------------------------
def test_tracing_on_and_buffer_size(system, tree):
    tree.echo(NETIF + "/enable", "1")
    tree.echo("/tracing_on", "0")
    assert tree.read_text("/tracing_on") == "0\n"
    send(system)
    assert "entries-in-buffer/entries-written: 0/0" in tree.read_text("/trace")
    tree.echo("/tracing_on", "1")
    send(system)
    assert "entries-in-buffer/entries-written: 1/1" in tree.read_text("/trace")
    assert errno_of(tree.echo, "/tracing_on", "on") == errno.EINVAL
    tree.echo("/buffer_size_kb", "100")
    assert tree.read_text("/buffer_size_kb") == tree.read_text("/per_cpu/cpu1/buffer_size_kb")
    tree.echo("/per_cpu/cpu1/buffer_size_kb", "400")
    assert tree.read_text("/buffer_size_kb") == "X\n"
    assert errno_of(tree.echo, "/buffer_size_kb", "0") == errno.EINVAL
    tree.echo("/trace", "")
    assert "entries-in-buffer/entries-written: 0/0" in tree.read_text("/trace")


def test_trace_clock_and_tracer(tree):
    tree.echo("/trace_clock", "global")
    assert tree.read_text("/trace_clock").startswith("local [global] counter")
    assert errno_of(tree.echo, "/trace_clock", "nosuch") == errno.EINVAL
    assert tree.read_text("/available_tracers") == "function_graph function nop\n"
    assert errno_of(tree.echo, "/current_tracer", "blk") == errno.EINVAL
    tree.echo("/current_tracer", "nop")


def test_trace_marker(tree):
    tree.echo("/trace_marker", "hello world")
    lines = tree.read_text("/trace").splitlines()
    assert lines[-1].endswith(": tracing_mark_write: hello world")
    assert errno_of(tree.cat, "/trace_marker") == errno.EINVAL


def test_error_log_clears(tree):
    errno_of(tree.echo, NETIF + "/filter", "nme == 1")
    assert tree.read_text("/error_log") != ""
    tree.echo("/error_log", "")
    assert tree.read_text("/error_log") == ""


def test_options(tree):
    assert "print-parent\n" in tree.read_text("/trace_options")
    tree.echo("/trace_options", "noprint-parent")
    assert tree.read_text("/options/print-parent") == "0\n"
    tree.echo("/options/print-parent", "1")
    assert "print-parent\n" in tree.read_text("/trace_options")
    assert errno_of(tree.echo, "/trace_options", "bogus") == errno.EINVAL


# -- trace_pipe --------------------------------------------------------------------------------
def test_trace_pipe_consumes(system, tree):
    tree.echo(NETIF + "/enable", "1")
    send(system, "lo", 100, 3)
    handle = tree.open("/trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
    data = handle.read(65536, 0)
    assert data.count(b"netif_receive_skb: dev=lo") == 3 and not data.startswith(b"#")
    assert errno_of(handle.read, 65536, 0) == errno.EAGAIN
    handle.release()
    assert "entries-in-buffer/entries-written: 0/0" in tree.read_text("/trace")   # consumed


def test_per_cpu_trace_pipe_raw_gives_pages(system, tree):
    tree.echo(NETIF + "/enable", "1")
    send(system, "lo", 100, 2)
    pages = b"".join(tree.cat(f"/per_cpu/cpu{c}/trace_pipe_raw", nonblock=True, limit=4096)
                     for c in range(2) if tree.read_text(f"/per_cpu/cpu{c}/stats")
                     .startswith("entries: 2"))
    assert len(pages) == 4096


# -- instances ---------------------------------------------------------------------------------
def test_instances(system, tree):
    tree.mkdir("/instances/foo")
    assert tree.readdir("/instances") == ["foo"]
    assert errno_of(tree.mkdir, "/instances/foo") == errno.EEXIST
    tree.echo("/instances/foo" + NETIF + "/enable", "1")
    send(system)
    assert "entries-in-buffer/entries-written: 1/1" in tree.read_text("/instances/foo/trace")
    assert "entries-in-buffer/entries-written: 0/0" in tree.read_text("/trace")
    handle = tree.open("/instances/foo/trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
    assert errno_of(tree.rmdir, "/instances/foo") == errno.EBUSY
    handle.release()
    tree.rmdir("/instances/foo")
    assert tree.readdir("/instances") == []
    assert errno_of(tree.mkdir, "/per_cpu/x") == errno.EPERM


# -- triggers ----------------------------------------------------------------------------------
def test_triggers(system, tree):
    trig = "/events/skb/kfree_skb/trigger"
    tree.echo(trig, "traceoff:1")
    assert tree.read_text(trig).startswith("traceoff:count=1")
    tree.echo(trig, "!traceoff:1", append=True)
    assert tree.read_text(trig) == EMPTY_TRIGGERS
    tree.echo(NETIF + "/trigger", "enable_event:skb:kfree_skb")
    assert tree.read_text("/events/skb/kfree_skb/enable") == "0*\n"
    assert errno_of(tree.echo, trig, "bogus") == errno.EINVAL


# -- kprobe events -----------------------------------------------------------------------------
def test_kprobe_event_lifecycle(system, tree):
    tree.echo("/kprobe_events", "p:myprobe __netdev_alloc_skb len=%si:u32")
    assert tree.read_text("/kprobe_events") == "p:kprobes/myprobe __netdev_alloc_skb len=%si:u32\n"
    assert "myprobe" in tree.readdir("/events/kprobes")
    fmt = tree.read_text("/events/kprobes/myprobe/format")
    assert "field:unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0;" in fmt
    tree.echo("/events/kprobes/myprobe/enable", "1")
    assert system.control(["skb-bench", "3"])[0] == 0
    assert len(re.findall(r"myprobe: \(__netdev_alloc_skb\+0x0/0x[0-9a-f]+\) len=128\n",
                          tree.read_text("/trace"))) == 3
    assert re.fullmatch(r"  myprobe +3 +0\n", tree.read_text("/kprobe_profile"))
    assert errno_of(tree.echo, "/kprobe_events", "") == errno.EBUSY     # O_TRUNC while enabled
    tree.echo("/events/kprobes/myprobe/enable", "0")
    tree.echo("/kprobe_events", "-:myprobe", append=True)
    assert tree.read_text("/kprobe_events") == ""
    assert "kprobes" not in tree.readdir("/events")
    assert errno_of(tree.echo, "/kprobe_events", "-:nosuch", append=True) == errno.ENOENT
    assert errno_of(tree.echo, "/kprobe_events", "p:bad no_such_function") == errno.ENOENT
    assert "trace_kprobe: error:" in tree.read_text("/error_log")


# -- the BPF seam ------------------------------------------------------------------------------
def test_bpf_objects_reach_the_loader_whole(tree):
    got = []
    tree.ctx.bpf_loader = lambda target, obj: got.append((target.system, target.event, obj))
    obj = b"\x7fELF" + bytes(range(256)) * 40
    handle = tree.open(NETIF + "/filter", os.O_WRONLY | os.O_TRUNC)
    for i in range(0, len(obj), 4096):
        assert handle.write(obj[i:i + 4096], i) == len(obj[i:i + 4096])
    assert got == []
    handle.flush()
    handle.release()
    assert got == [("net", "netif_receive_skb", obj)]


def test_bpf_object_without_loader_is_einval(tree):
    tree.ctx.bpf_loader = None          # System installs the BPF layer's loader; take it out
    handle = tree.open(NETIF + "/filter", os.O_WRONLY | os.O_TRUNC)
    handle.write(b"bpf\0" + bytes(100), 0)
    assert errno_of(handle.flush) == errno.EINVAL
    handle.release()


def test_overwritten_events_show_as_lost_in_trace_pipe(system, tree):
    tree.echo("/buffer_size_kb", "8")                 # two pages per CPU
    tree.echo(NETIF + "/enable", "1")
    send(system, "eth0", 64, 400)
    text = tree.cat("/trace_pipe", nonblock=True, limit=1 << 20).decode()
    lost = re.findall(r"^CPU:(\d) \[LOST (\d+) EVENTS\]$", text, re.M)
    assert lost and all(int(n) > 0 for _, n in lost)
    delivered = text.count("netif_receive_skb: dev=eth0")
    assert delivered + sum(int(n) for _, n in lost) == 400


def test_trace_clock_changes_the_timestamps(system, tree):
    tree.echo("/trace_clock", "counter")
    tree.echo(NETIF + "/enable", "1")
    send(system, "lo", 64, 2)
    lines = tree.read_text("/trace").splitlines()[12:]
    # counter is not a nanosecond clock: the raw count prints as %12llu, no secs.usecs
    assert len(lines) == 2 and all(re.search(r"\] \S{5} +\d+: netif_receive_skb", x) for x in lines)
    assert not any(re.search(r"\d+\.\d{6}: ", x) for x in lines)


def test_trace_pipe_raw_pages_decode(system, tree):
    from tracesim.kernel_model.trace.ring_buffer import decode_page
    tree.echo(NETIF + "/enable", "1")
    send(system, "eth0", 64, 5)
    cpu = next(c for c in range(2)
               if tree.read_text(f"/per_cpu/cpu{c}/stats").startswith("entries: 5"))
    handle = tree.open(f"/per_cpu/cpu{cpu}/trace_pipe_raw", os.O_RDONLY | os.O_NONBLOCK)
    page = handle.read(4096, 0)
    assert errno_of(handle.read, 4096, 0) == errno.EAGAIN        # consumed
    handle.release()
    _, size, missed, events = decode_page(page)
    event_id = int(tree.read_text(NETIF + "/id"))
    assert len(page) == 4096 and missed == 0 and len(events) == 5
    assert all(int.from_bytes(payload[:2], "little") == event_id for _, payload in events)


def test_saved_cmdlines_and_size(system, tree):
    tree.echo(NETIF + "/enable", "1")
    send(system, "lo", 64)
    assert re.search(r"^\d+ tracesim-ctl$", tree.read_text("/saved_cmdlines"), re.M)
    assert tree.read_text("/saved_cmdlines_size") == "6552\n"
    tree.echo("/saved_cmdlines_size", "16")          # rounded up to the allocation, as 6.18 does
    assert tree.read_text("/saved_cmdlines_size") == "6552\n"
    assert errno_of(tree.echo, "/saved_cmdlines_size", "0") == errno.EINVAL


def test_free_buffer_shrinks_on_close(tree):
    tree.echo("/free_buffer", "")
    assert int(tree.read_text("/buffer_size_kb")) < 1410
