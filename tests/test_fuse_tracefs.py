"""The tree through a real FUSE mount, driven with the shell (cat, echo, ls) as a user would."""
from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import threading
import time

import pytest
from tracesim.tools.ctl_socket import request

from tests.conftest import REFERENCE, need_shared
from tests.fuse_helpers import sh, tracesim
from tests.tracefs_reference import (
    EMPTY_TRIGGERS,
    EXTRA_EVENT_FILES,
    filter_cases,
    ls_blocks,
    ls_entries,
    strip_id,
    strip_timestamps,
    with_extra_root_files,
)

pytestmark = pytest.mark.fuse
NETIF = "events/net/netif_receive_skb"


def ctl(mnt, *argv: str) -> str:
    status, text = request(str(mnt), list(argv))
    assert status == 0, text
    return text


def ref(name: str) -> str:
    need_shared()
    return (REFERENCE / name).read_text()


def test_ls_la_root_and_subdirectories(mnt):
    out = sh("ls -la", mnt).stdout
    got, want = ls_entries(out), with_extra_root_files(ls_entries(ref("ls_root")))
    for listing in (got, want):
        listing.pop("..")
    assert got == want
    for directory, listing in ls_blocks(ref("ls_sub")).items():
        got = ls_entries(sh(f"ls -la {directory}", mnt).stdout)
        want = ls_entries(listing)
        assert got.pop(".") == want.pop(".")
        got.pop("..")
        want.pop("..")
        if directory.count("/") == 2:            # an event: the model's hist file as well
            want.update({name: (mode, 1) for name, mode in EXTRA_EVENT_FILES.items()})
        if directory.startswith("per_cpu/"):     # and the per-CPU snapshot file
            want.update(snapshot=("-rw-r-----", 1), snapshot_raw=("-r--r-----", 1))
        assert {k: v for k, v in want.items() if k in got} == got, directory


@pytest.mark.parametrize("path, name", [
    ("events/header_page", "header_page"), ("events/header_event", "header_event"),
    ("trace", "trace_empty"), ("events/skb/kfree_skb/enable", "event_enable"),
    ("events/enable", "events_enable"), (NETIF + "/filter", "event_filter_none"),
    ("buffer_size_kb", "buffer_size_kb"),
    ("trace_clock", "trace_clock"), ("tracing_on", "tracing_on"),
])
def test_cat_reference_files(mnt, path, name):
    assert sh(f"cat {path}", mnt).stdout == ref(name)


def test_cat_format_files(mnt):
    for path, name in (("events/skb/kfree_skb/format", "events_skb_kfree_skb_format"),
                       (NETIF + "/format", "events_net_netif_receive_skb_format")):
        assert strip_id(sh(f"cat {path}", mnt).stdout) == strip_id(ref(name))


def test_filter_behaviour_through_the_shell(mnt):
    need_shared()
    cases, log = filter_cases(REFERENCE)
    for case in cases:
        expr = case.expr.replace("'", "'\\''")
        done = sh(f"echo '{expr}' > {NETIF}/filter", mnt)
        assert done.returncode == (1 if case.errno else 0), case.expr
        if case.errno:
            assert done.stderr.rstrip().endswith(f"write error: {os.strerror(case.errno)}")
        assert sh(f"cat {NETIF}/filter", mnt).stdout == case.filter_text, case.expr
    assert strip_timestamps(sh("cat error_log", mnt).stdout) == strip_timestamps(log)


def test_echo_truncate_versus_append(mnt):
    sh("echo net:netif_receive_skb > set_event", mnt)
    sh("echo skb:kfree_skb >> set_event", mnt)
    assert sorted(sh("cat set_event", mnt).stdout.split()) == \
        ["net:netif_receive_skb", "skb:kfree_skb"]
    assert sh("cat events/net/enable events/enable", mnt).stdout == "X\nX\n"
    sh("echo skb:consume_skb > set_event", mnt)
    assert sh("cat set_event", mnt).stdout == "skb:consume_skb\n"
    assert sh(f"cat {NETIF}/enable", mnt).stdout == "0\n"
    sh("echo > set_event", mnt)
    assert sh("cat set_event events/enable", mnt).stdout == "0\n"
    done = sh("echo nosuch:event > set_event", mnt)
    assert done.returncode == 1 and "Invalid argument" in done.stderr


def test_trace_lines_and_clearing(mnt):
    sh(f"echo 'name == \"lo\"' > {NETIF}/filter; echo 1 > {NETIF}/enable", mnt)
    ctl(mnt, "send", "lo", "--len", "128", "--count", "3")
    ctl(mnt, "send", "eth0", "--len", "128", "--count", "3")
    lines = sh("cat trace", mnt).stdout.splitlines()
    assert lines[:12][2].startswith("# entries-in-buffer/entries-written: 3/3   #P:2")
    shape = re.compile(r"^ {0,16}\S+-\d+ +\[\d{3}\] \S{5} +\d+\.\d{6}: "
                       r"netif_receive_skb: dev=lo skbaddr=[0-9a-f]{16} len=128$")
    assert len(lines) == 15 and all(shape.match(line) for line in lines[12:])
    sh("echo > trace", mnt)
    assert sh("cat trace", mnt).stdout == ref("trace_empty")


def test_trace_pipe_blocks_wakes_and_ctrl_c_ends_it(mnt):
    sh(f"echo 1 > {NETIF}/enable", mnt)
    reader = subprocess.Popen(["cat", str(mnt / "trace_pipe")], stdout=subprocess.PIPE)
    lines: list[bytes] = []
    collector = threading.Thread(target=lambda: lines.extend(reader.stdout))
    collector.start()
    time.sleep(0.3)
    assert reader.poll() is None and lines == []          # blocked on an empty buffer
    ctl(mnt, "send", "lo", "--len", "64", "--count", "2")
    deadline = time.monotonic() + 10
    while len(lines) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(lines) == 2 and all(b"netif_receive_skb: dev=lo" in x for x in lines)
    start = time.monotonic()
    reader.send_signal(signal.SIGINT)
    reader.wait(timeout=5)
    assert time.monotonic() - start < 1.0
    collector.join(5)
    assert "entries-in-buffer/entries-written: 0/0" in sh("cat trace", mnt).stdout


def test_trace_pipe_nonblocking_is_eagain(mnt):
    fd = os.open(mnt / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(OSError) as err:
            os.read(fd, 4096)
        assert err.value.errno == errno.EAGAIN
    finally:
        os.close(fd)


def test_trace_pipe_ends_when_tracing_is_switched_off(mnt):
    sh(f"echo 1 > {NETIF}/enable", mnt)
    ctl(mnt, "send", "lo", "--len", "64")
    reader = subprocess.Popen(["cat", str(mnt / "trace_pipe")], stdout=subprocess.PIPE)
    first = reader.stdout.readline()
    assert b"netif_receive_skb" in first
    sh("echo 0 > tracing_on", mnt)
    assert reader.wait(timeout=5) == 0


def test_instances(mnt):
    assert sh("mkdir instances/foo && ls instances", mnt).stdout == "foo\n"
    sh(f"echo 1 > instances/foo/{NETIF}/enable", mnt)
    ctl(mnt, "send", "lo", "--len", "64")
    assert "written: 1/1" in sh("cat instances/foo/trace", mnt).stdout
    assert "written: 0/0" in sh("cat trace", mnt).stdout
    done = sh("exec 3< instances/foo/trace_pipe; rmdir instances/foo", mnt)
    assert done.returncode == 1 and "Device or resource busy" in done.stderr
    assert sh("rmdir instances/foo && ls instances", mnt).stdout == ""


def test_rmdir_right_after_the_last_close_succeeds(mnt):
    # The kernel drops a file's hold on its instance before close(2) returns; through FUSE
    # the release comes later, so rmdir must not answer EBUSY for a file already closed.
    for i in range(20):
        os.mkdir(mnt / "instances" / f"gone{i}")
        done = sh(f"cat instances/gone{i}/trace > /dev/null; exec 3< instances/gone{i}/trace_pipe;"
                  f" exec 3<&-; rmdir instances/gone{i}", mnt)
        assert done.returncode == 0, done.stderr
    assert sh("ls instances", mnt).stdout == ""


def test_kprobe_events_through_the_shell(mnt):
    sh("echo 'p:myprobe __netdev_alloc_skb len=%si:u32' > kprobe_events", mnt)
    assert sh("cat kprobe_events", mnt).stdout == \
        "p:kprobes/myprobe __netdev_alloc_skb len=%si:u32\n"
    assert sh("ls events/kprobes/myprobe", mnt).stdout.split() == \
        ["enable", "filter", "format", "hist", "id", "trigger"]
    sh("echo 1 > events/kprobes/myprobe/enable", mnt)
    ctl(mnt, "skb-bench", "2")
    assert len(re.findall(r"myprobe: \(__netdev_alloc_skb\+0x0/0x[0-9a-f]+\) len=128",
                          sh("cat trace", mnt).stdout)) == 2
    done = sh("echo > kprobe_events", mnt)
    assert done.returncode == 1 and "Device or resource busy" in done.stderr
    sh("echo 0 > events/kprobes/myprobe/enable; echo '-:myprobe' >> kprobe_events", mnt)
    assert sh("cat kprobe_events", mnt).stdout == ""
    done = sh("echo 'p:bad no_such_function' >> kprobe_events", mnt)
    assert done.returncode == 1 and "No such file or directory" in done.stderr
    assert "trace_kprobe: error:" in sh("cat error_log", mnt).stdout


def test_triggers_through_the_shell(mnt):
    sh(f"echo 'enable_event:skb:kfree_skb:2' > {NETIF}/trigger", mnt)
    assert sh(f"cat {NETIF}/trigger", mnt).stdout.startswith("enable_event:skb:kfree_skb:count=2")
    assert sh("cat events/skb/kfree_skb/enable", mnt).stdout == "0*\n"
    sh(f"echo '!enable_event:skb:kfree_skb:2' >> {NETIF}/trigger", mnt)
    assert sh(f"cat {NETIF}/trigger", mnt).stdout == EMPTY_TRIGGERS


def test_binary_object_is_collected_until_close(mnt, tmp_path):
    obj = tmp_path / "prog.o"
    obj.write_bytes(b"\x7fELF" + os.urandom(300_000))
    done = sh(f"cat {obj} > {NETIF}/filter", mnt)
    # The object arrives in many writes and goes to the BPF loader whole at close, which
    # refuses this one (not a BPF object) with EACCES; the filter stays as it was.
    assert done.returncode == 1 and "Permission denied" in done.stderr
    assert sh(f"cat {NETIF}/filter", mnt).stdout == "none\n"
    assert "bpf: error:" in sh("cat error_log", mnt).stdout


def test_concurrent_readers_and_writers(mnt):
    sh(f"echo 1 > {NETIF}/enable", mnt)
    errors: list[str] = []

    def writer() -> None:
        for i in range(20):
            done = sh(f"echo {i % 2} > events/skb/enable; echo hi > trace_marker", mnt)
            if done.returncode:
                errors.append(done.stderr)

    def reader() -> None:
        for _ in range(20):
            done = sh("cat trace set_event events/enable > /dev/null", mnt)
            if done.returncode:
                errors.append(done.stderr)
    threads = [threading.Thread(target=f) for f in (writer, reader, reader)]
    for t in threads:
        t.start()
    ctl(mnt, "send", "lo", "--len", "64", "--count", "50")
    for t in threads:
        t.join(60)
    assert errors == []


def test_second_mount_on_busy_dir_says_so(mnt):
    done = tracesim("mount", str(mnt), check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"tracesim mount: {mnt} is busy: something is already mounted there "
        f"(tracesim umount {mnt})"]


def test_trace_marker_is_recorded_as_the_writer(mnt):
    sh("echo hello > trace_marker", mnt)
    last = sh("cat trace", mnt).stdout.splitlines()[-1]
    assert re.match(r"^ +bash-\d+ +\[\d{3}\] \S{5} +\d+\.\d{6}: tracing_mark_write: hello$", last)
    done = sh("cat trace_marker", mnt)
    assert done.returncode == 1 and "Invalid argument" in done.stderr
