"""BPF filters through a real FUSE mount, with ``cat``/``echo`` as a user types them."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from tracesim.filters.bpf.compiler.driver import compile_source

from tests.fuse_helpers import sh
from tests.test_bpf_filter import PRINTK_LINE, example
from tests.test_image2013 import filter_ex1 as filter_ex1_image

NETIF = "events/net/netif_receive_skb"


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> Path:
    """The example objects as files, as ``tracesim cc`` leaves them."""
    d = tmp_path_factory.mktemp("objs")
    (d / "filter_ex1.o").write_bytes(example("filter_ex1"))
    (d / "filter_ex2.o").write_bytes(example("filter_ex2", "PRINT_EVERY=2"))
    (d / "eth5_filter.o").write_bytes(example("eth5_filter"))
    (d / "filter_ex1.bpf").write_bytes(filter_ex1_image())
    (d / "bad.o").write_bytes(compile_source("""
        #include <bpf/bpf_helpers.h>
        SEC("tracepoint/net/netif_receive_skb")
        int peek(unsigned long long *ctx) { return ctx[0] != 0; }
        char _license[] SEC("license") = "GPL";
    """, "bad.c").elf)
    # ~600 KiB of read-only data: the object arrives in many writes
    (d / "big.o").write_bytes(compile_source("""
        #include <bpf/bpf_helpers.h>
        const volatile char table[600000] = {1};
        SEC("tracepoint/net/netif_receive_skb")
        int big(void *ctx) { return table[0]; }
        char _license[] SEC("license") = "GPL";
    """, "big.c").elf)
    return d


def ctl(mnt: Path, *argv: str) -> str:
    """``tracesim ctl MNT ...`` as a user runs it."""
    done = subprocess.run([sys.executable, "-m", "tracesim.tools.cli", "ctl", str(mnt), *argv],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def run(mnt: Path, script: str):
    done = sh(script, mnt)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_demo_flow_with_cat(mnt, objects):
    out = run(mnt, f"cat {objects}/filter_ex1.o > {NETIF}/filter; cat {NETIF}/filter; "
                   f"echo 1 > {NETIF}/enable")
    assert out == "bpf elf filter_ex1 (tracepoint/net/netif_receive_skb) 38 insns jited\n"
    ctl(mnt, "send", "lo", "--len", "84", "--count", "2")
    ctl(mnt, "send", "eth0", "--len", "84", "--count", "2")
    lines = run(mnt, "timeout 5 cat trace_pipe & sleep 1; kill %1 2>/dev/null; wait").splitlines()
    # bpf_printk("...\n") lines are followed by an empty line (TP_printk adds its own "\n")
    assert len(lines) == 6 and lines[1::3] == ["", ""]
    for printk, event in zip(lines[0::3], lines[2::3], strict=False):
        m = PRINTK_LINE.match(printk)
        assert m and re.fullmatch(r"skb [0-9a-f]{16} dev [0-9a-f]{16}", m["msg"]), printk
        assert "netif_receive_skb: dev=lo " in event
    run(mnt, f"echo 0 > {NETIF}/filter")
    assert (mnt / NETIF / "filter").read_text() == "none\n"


def test_rejected_program(mnt, objects):
    run(mnt, f"echo 'len > 10' > {NETIF}/filter")
    done = sh(f"cat {objects}/bad.o > {NETIF}/filter", mnt)
    assert done.returncode != 0 and "Permission denied" in done.stderr
    assert (mnt / NETIF / "filter").read_text() == "len > 10\n"
    log = (mnt / "error_log").read_text()
    assert "bpf: error: invalid bpf_context access off=0 size=8" in log
    assert "  Command: peek (tracepoint/net/netif_receive_skb)" in log
    assert "failed to load bpf -13" in ctl(mnt, "dmesg")


def test_large_object_in_many_writes(mnt, objects):
    assert (objects / "big.o").stat().st_size > 600000
    run(mnt, f"cat {objects}/big.o > {NETIF}/filter")
    assert "big (tracepoint/net/netif_receive_skb)" in (mnt / NETIF / "filter").read_text()


def test_predicate_and_program(mnt, objects):
    run(mnt, f"cat {objects}/filter_ex1.o > {NETIF}/filter; echo 'len > 100' > {NETIF}/filter;"
             f" echo 1 > {NETIF}/enable")
    assert (mnt / NETIF / "filter").read_text().splitlines()[1] == "len > 100"
    ctl(mnt, "send", "lo", "--len", "200")
    ctl(mnt, "send", "lo", "--len", "50")
    trace = (mnt / "trace").read_text()
    assert trace.count("netif_receive_skb: dev=lo") == 1 and "len=200" in trace
    assert trace.count("bpf_trace_printk") == 2


def test_maps_through_the_control_channel(mnt, objects):
    run(mnt, f"cat {objects}/filter_ex2.o > {NETIF}/filter; echo 1 > {NETIF}/enable")
    ctl(mnt, "send", "lo", "--len", "84", "--count", "3")
    listing = ctl(mnt, "maps")
    assert re.search(r"^1 +pkt_count +hash +8 +8 +4096 +1 +\(top\) +net:netif_receive_skb$",
                     listing, re.M), listing
    dump = ctl(mnt, "map", "dump", "pkt_count")
    assert re.fullmatch(r"key: 0xffff[0-9a-f]+  value: 3\nFound 1 element\n", dump)


def test_kprobe_and_tracepoint_programs_of_one_object(mnt, objects):
    run(mnt, "echo 'p:skb_alloc __netdev_alloc_skb name=+280(%di):string' >> kprobe_events; "
             f"cat {objects}/eth5_filter.o > events/kprobes/skb_alloc/filter; "
             "echo 1 > events/kprobes/skb_alloc/enable")
    assert "eth5_kprobe (kprobe/__netdev_alloc_skb)" in \
        (mnt / "events/kprobes/skb_alloc/filter").read_text()
    ctl(mnt, "skb-bench", "4", "--dev", "eth5")
    ctl(mnt, "skb-bench", "4", "--dev", "lo")
    trace = (mnt / "trace").read_text()
    assert trace.count('name="eth5"') == 4 and 'name="lo"' not in trace
    run(mnt, "echo 0 > events/kprobes/skb_alloc/enable; echo 0 > events/kprobes/skb_alloc/filter;"
             " echo '-:skb_alloc' >> kprobe_events")


def test_instances_and_the_engine_option(mnt, objects):
    ctl(mnt, "bpf-engine", "interp")
    run(mnt, "mkdir instances/foo; "
             f"cat {objects}/filter_ex1.bpf > instances/foo/{NETIF}/filter; "
             f"echo 1 > instances/foo/{NETIF}/enable; echo 1 > {NETIF}/enable")
    assert not (mnt / "options/bpf_jit").exists()
    assert (mnt / f"instances/foo/{NETIF}/filter").read_text().endswith("insns interpreted\n")
    assert (mnt / NETIF / "filter").read_text() == "none\n"
    ctl(mnt, "send", "lo", "--len", "84")
    ctl(mnt, "send", "eth0", "--len", "84")
    inst = (mnt / "instances/foo/trace").read_text()
    top = (mnt / "trace").read_text()
    assert inst.count("bpf_trace_printk: skb ") == 1 and "netif_receive_skb:" not in inst
    assert "bpf_trace_printk" not in top and top.count("netif_receive_skb:") == 2
    run(mnt, f"echo 0 > instances/foo/{NETIF}/enable; echo 0 > instances/foo/{NETIF}/filter; "
             "rmdir instances/foo")
