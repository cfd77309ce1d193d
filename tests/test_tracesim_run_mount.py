"""``tracesim run --mount``, ``tracesim map`` and ``tracesim prog`` against a real FUSE mount, and
the model's kallsyms for the tools that read ``/proc/kallsyms``."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tracesim.tools.ctl_socket import request

from tests.conftest import need_tool
from tests.test_fuse_tools import trace_cmd  # noqa: F401  (trace-cmd with the libtracefs shim)
from tests.test_tracesim_run import objects  # noqa: F401  (the clang-built objects fixture)

pytestmark = pytest.mark.fuse
ROOT = Path(__file__).resolve().parent.parent


def tracesim(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "tracesim.tools.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def start_run(obj: Path, mnt: Path, *args: str) -> subprocess.Popen:
    """``tracesim run OBJ --mount MNT ...`` in the background, returned once its programs are
    attached in the mount."""
    proc = subprocess.Popen([sys.executable, "-m", "tracesim.tools.cli", "run", str(obj), "--mount",
                             str(mnt), *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while "name" not in request(str(mnt), ["prog", "list"])[1]:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return proc


def test_run_on_a_mount_with_map_and_prog_commands(mnt, objects):  # noqa: F811
    proc = start_run(objects["pktlatency"], mnt)             # until Ctrl-C
    try:
        listed = tracesim("prog", "list", "--mount", str(mnt))
        assert listed.returncode == 0, listed.stderr
        assert re.search(r"^\d+: kprobe  name rx_start  tag [0-9a-f]{16}  gpl", listed.stdout, re.M)
        assert re.search(r"^\tattach kprobe/kfree_skbmem  engine \w+  run \d+$", listed.stdout, re.M)
        maps = tracesim("map", "list", "-m", str(mnt)).stdout
        assert re.search(r"^\d+ +pktlatency.bss +array +4 +16 +1 +1 +\(run \d+\) ", maps, re.M)

        def map_cmd(*words: str) -> subprocess.CompletedProcess:
            return tracesim("map", *words, "--mount", str(mnt))
        assert map_cmd("update", "start", "key", "5", "value", "7").returncode == 0
        assert map_cmd("lookup", "start", "key", "hex", "05 00 00 00 00 00 00 00").stdout == \
            "key: 5  value: 7\n"
        done = map_cmd("update", "start", "key", "5", "value", "8", "noexist")
        assert (done.returncode, done.stderr) == (1, "Error: update failed: File exists\n")
        assert map_cmd("delete", "start", "key", "5").returncode == 0
        done = map_cmd("delete", "start", "key", "5")
        assert (done.returncode, done.stderr) == (1, "Error: delete failed: No such file or "
                                                     "directory\n")
        done = map_cmd("update", "pktlaten.rodata", "key", "0", "value", "1")
        assert (done.returncode, done.stderr) == (1, "Error: update failed: Operation not "
                                                     "permitted\n")
        done = map_cmd("lookup", "start", "key", "1", "2")
        assert done.returncode == 2 and done.stderr.startswith("Error: 2 bytes given, the map "
                                                               "needs 8\n")
        assert map_cmd("dump", "nosuch").returncode == 1
        assert request(str(mnt), ["send", "eth0", "--len", "300", "--count", "4"])[0] == 0
        hist = map_cmd("dump", "hists").stdout
        assert re.fullmatch(r"key: 0  value: \{slots = \[[0-9, ]+\]\}\nFound 1 element\n", hist)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Attached prog 'rx_start' (kprobe) to kprobe/netif_receive_skb" in err
    assert "@.bss:\nsamples = 4\nskipped = 0\n" in out
    assert "@hists:\n     value               : count    distribution\n" in out
    assert tracesim("prog", "list", "-m", str(mnt)).stdout == "no BPF programs are loaded\n"


def test_run_on_a_mount_streams_ring_buffer_records(mnt, objects):  # noqa: F811
    proc = start_run(objects["pktsnoop"], mnt, "--json")
    try:
        assert request(str(mnt), ["send", "eth0", "--len", "333", "--count", "3"])[0] == 0
        time.sleep(0.3)                                 # a poll or two
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    records = [r for r in lines if "map" not in r]
    assert [r["len"] for r in records] == [333 + 14] * 3        # the frame: IP packet + Ethernet
    assert lines[-1] == {"map": "pktsnoop.bss", "variables": {"emitted": 3, "lost": 0,
                                                              "unused_event": 0}}


def test_run_on_a_mount_reports_a_refused_object(mnt, objects):  # noqa: F811
    done = tracesim("run", str(objects["badmap"]), "--mount", str(mnt), "--duration", "0.1")
    assert done.returncode == 1
    assert done.stderr.startswith("libbpf: map 'wide_keys': failed to create: -EINVAL")
    assert tracesim("prog", "list", "-m", str(mnt)).stdout == "no BPF programs are loaded\n"


def test_kallsyms_are_the_models(mnt):
    done = tracesim("kallsyms", "--mount", str(mnt))
    assert done.returncode == 0
    assert "ffffffff81000000 T _stext\n" in done.stdout
    assert re.search(r"^[0-9a-f]{16} t skb_bench_run\t\[skb_bench\]$", done.stdout, re.M)
    assert done.stdout == tracesim("kallsyms").stdout       # the same layout in every model


def test_trace_cmd_report_resolves_with_the_model_kallsyms(mnt, trace_cmd, tmp_path):  # noqa: F811
    """trace-cmd copies /proc/kallsyms into trace.dat; given the model's (the shim's
    TRACESIM_KALLSYMS), report prints a drop's %pS location as the mount's trace does."""
    (mnt / "events/skb/kfree_skb/enable").write_text("1\n")
    assert request(str(mnt), ["workload", "start", "net"])[0] == 0
    while "kfree_skb:" not in (mnt / "trace").read_text():
        time.sleep(0.05)
    assert request(str(mnt), ["workload", "stop", "net"])[0] == 0
    shown = re.search(r"location=(\w+\+0x[0-9a-f]+)/0x[0-9a-f]+ ", (mnt / "trace").read_text())
    out = tmp_path / "trace.dat"
    assert trace_cmd("extract", "-o", str(out)).returncode == 0
    report = trace_cmd("report", "-i", str(out))
    assert report.returncode == 0, report.stderr
    assert f"location={shown[1]} reason: " in report.stdout


def test_host_perf_cannot_count_model_events(mnt):
    perf = need_tool("perf", "linux-perf")
    env = {**os.environ, "TRACEFS_PATH": str(mnt)}
    for command in ("stat", "record"):
        done = subprocess.run([perf, command, "-e", "net:netif_receive_skb", "-o", os.devnull,
                               "true"] if command == "record" else
                              [perf, command, "-e", "net:netif_receive_skb", "true"],
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        assert "Operation not supported" in done.stderr, done.stderr
    listed = subprocess.run([perf, "list", "tracepoint"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert "net:netif_receive_skb" in listed.stdout
    assert (mnt / "events/net/netif_receive_skb/format").read_text().startswith("name: ")


def test_prog_detach_ends_a_run_whose_client_is_gone(mnt, objects):  # noqa: F811
    proc = start_run(objects["pktsnoop"], mnt)
    proc.kill()                                       # kill -9: nobody stops the run
    proc.communicate()
    run = re.search(r"  run (\d+)$", tracesim("prog", "list", "-m", str(mnt)).stdout, re.M)[1]
    assert tracesim("prog", "detach", run, "--mount", str(mnt)).returncode == 0
    assert tracesim("prog", "list", "-m", str(mnt)).stdout == "no BPF programs are loaded\n"
    done = tracesim("prog", "detach", run, "--mount", str(mnt))
    assert (done.returncode, done.stderr) == (1, f"bpf-run: no object loaded as {run}\n")


def test_map_and_prog_need_a_mount():
    done = tracesim("map", "list")
    assert done.returncode == 2 and "--mount" in done.stderr
    done = tracesim("prog", "list", "--mount", "/nonexistent")
    assert done.returncode == 1 and done.stderr.startswith("tracesim prog: no tracesim mount")


def test_tracesim_perf_stat_counts_through_the_model(mnt):
    assert request(str(mnt), ["workload", "start", "eth0"])[0] == 0
    try:
        done = tracesim("perf", "stat", "-e", "net:netif_receive_skb,skb:consume_skb", "-a",
                        "--mount", str(mnt), "--duration", "0.5")
    finally:
        assert request(str(mnt), ["workload", "stop", "eth0"])[0] == 0
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[:3] == ["", " Performance counter stats for 'system wide':", ""]
    rows = [re.fullmatch(r" {3,}(\d+)      (\S+) +", line) for line in lines[3:5]]
    assert [r[2] for r in rows] == ["net:netif_receive_skb", "skb:consume_skb"]
    assert int(rows[0][1]) > 0 and all(len(line) == 91 for line in lines[3:5])
    assert re.fullmatch(r" +\d+\.\d{9} seconds time elapsed", lines[6])
    bad = tracesim("perf", "stat", "-e", "net:nosuch", "-m", str(mnt), "--duration", "0.1")
    assert (bad.returncode, bad.stderr) == (1, "event syntax error: 'net:nosuch'\n"
                                               + " " * 21 + "\\___ unknown tracepoint\n")
    assert not request(str(mnt), ["perf-stat", "stop", "1"])[0] == 0      # stopped and gone
