"""BPF programs as event filters, end to end through the in-process tracefs tree: ``cat prog.o >
filter`` (object written in several chunks), the program deciding what is recorded, helpers,
maps read with the control commands, errors, instances, subsystems and engines."""
from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest
from tracesim.filters.bpf.compiler.driver import compile_file, compile_source
from tracesim.tracefs.system import System

from tests.tree_helpers import cat_into

EXAMPLES = Path(__file__).resolve().parent.parent / "tools" / "examples"
NETIF = "/events/net/netif_receive_skb"
PRINTK_LINE = re.compile(r"^ +(?P<task>\S+)-(?P<pid>\d+) +\[(?P<cpu>\d{3})\] (?P<flags>[.a-zA-Z0-9]{5}) "
                         r"+(?P<ts>\d+\.\d{6}): bpf_trace_printk: (?P<msg>.*)$")


def example(name: str, *defines: str) -> bytes:
    return compile_file(EXAMPLES / f"{name}.c", defines=defines).elf


def source(text: str) -> bytes:
    return compile_source(text, "test.c", [EXAMPLES]).elf


def errno_of(fn, *args) -> int:
    with pytest.raises(OSError) as info:
        fn(*args)
    return info.value.errno


def send(system, dev: str, count: int = 1, length: int = 84) -> None:
    status, text = system.control(["send", dev, "--len", str(length), "--count", str(count)])
    assert status == 0, text


def drop(system, dev: str, count: int = 1, length: int = 84) -> None:
    """UDP packets to a closed port: received, then freed with kfree_skb (NO_SOCKET)."""
    from tracesim.kernel_model.net import core as net
    kernel = system.kernel
    device = kernel.net.device(dev)
    with kernel.lock:
        for i in range(count):
            kernel.net.receive(device, net.packet_frame(device, "udp", length, seq=i,
                                                          dport=9999))


def trace_lines(tree, path: str = "/trace") -> list[str]:
    return [line for line in tree.read_text(path).splitlines() if not line.startswith("#")]


# ---------------------------------------------------------------------------------------------

def test_filter_ex1_keeps_only_lo_and_prints(system):
    tree = system.tree
    cat_into(tree, NETIF + "/filter", example("filter_ex1"), chunk=500)
    assert tree.read_text(NETIF + "/filter") == \
        "bpf elf filter_ex1 (tracepoint/net/netif_receive_skb) 38 insns jited\n"
    tree.echo(NETIF + "/enable", "1")
    send(system, "lo", 2)
    send(system, "eth0", 3)
    lines = trace_lines(tree)
    events = [line for line in lines if "netif_receive_skb:" in line]
    printks = [line for line in lines if "bpf_trace_printk:" in line]
    assert len(events) == 2 and all("dev=lo " in line for line in events)
    assert len(printks) == 2
    for line in printks:
        m = PRINTK_LINE.match(line)
        assert m, line
        assert m["task"] == "tracesim-ctl" and m["cpu"] == "000"
        assert re.fullmatch(r"skb [0-9a-f]{16} dev [0-9a-f]{16}", m["msg"])
    # the printk line comes first: the program runs before the event is written; the message
    # ends with "\n" and TP_printk adds one, so an empty line follows it (as on 6.18)
    assert "bpf_trace_printk" in lines[0] and lines[1] == "" and "netif_receive_skb" in lines[2]
    # the hashed skb pointer is the one the event itself prints
    skb = re.search(r"skb ([0-9a-f]{16})", printks[0]).group(1)
    assert f"skbaddr={skb}" in events[0]


def test_disabled_event_runs_nothing(system):
    tree = system.tree
    cat_into(tree, NETIF + "/filter", example("filter_ex1"))
    attached = system.bpf.filter_of(system.kernel.tracing.top.file("net", "netif_receive_skb"))
    send(system, "lo", 2)
    assert attached.stats.runs == 0
    tree.echo(NETIF + "/enable", "1")
    send(system, "lo", 2)
    assert attached.stats.runs == 2 and attached.stats.errors == 0


def test_echo_0_removes_the_program(system):
    tree = system.tree
    cat_into(tree, NETIF + "/filter", example("filter_ex1"))
    tree.echo(NETIF + "/enable", "1")
    tree.echo(NETIF + "/filter", "0")
    assert tree.read_text(NETIF + "/filter") == "none\n"
    send(system, "eth0")
    lines = trace_lines(tree)
    assert len(lines) == 1 and "dev=eth0" in lines[0]


def test_predicate_and_program_on_the_same_event(system):
    tree = system.tree
    cat_into(tree, NETIF + "/filter", example("filter_ex1"))
    tree.echo(NETIF + "/filter", "len > 100")
    assert tree.read_text(NETIF + "/filter").splitlines() == [
        "bpf elf filter_ex1 (tracepoint/net/netif_receive_skb) 38 insns jited", "len > 100"]
    tree.echo(NETIF + "/enable", "1")
    send(system, "lo", length=200)
    send(system, "lo", length=50)       # kept by the program, discarded by the predicate
    send(system, "eth0", length=200)    # dropped by the program
    events = [line for line in trace_lines(tree) if "netif_receive_skb:" in line]
    assert len(events) == 1 and "dev=lo" in events[0] and "len=200" in events[0]
    # the program printed for both lo packets: it runs before the predicate
    assert sum("bpf_trace_printk" in line for line in trace_lines(tree)) == 2
    tree.echo(NETIF + "/filter", "0")
    assert tree.read_text(NETIF + "/filter") == "none\n"


def test_rejected_program_keeps_the_old_filter(system):
    tree = system.tree
    tree.echo(NETIF + "/filter", "len > 10")
    bad = source("""
        #include <bpf/bpf_helpers.h>
        SEC("tracepoint/net/netif_receive_skb")
        int peek(unsigned long long *ctx) { return ctx[0] != 0; }   /* common fields */
        char _license[] SEC("license") = "GPL";
    """)
    handle = tree.open(NETIF + "/filter", os.O_WRONLY | os.O_TRUNC)
    handle.write(bad, 0)
    assert errno_of(handle.flush) == errno.EACCES
    handle.release()
    assert tree.read_text(NETIF + "/filter") == "len > 10\n"
    log = tree.read_text("/error_log")
    assert re.search(r"^\[ *\d+\.\d{6}\] bpf: error: invalid bpf_context access off=0 size=8\n"
                     r"  Command: peek \(tracepoint/net/netif_receive_skb\)\n", log, re.M), log
    dmesg = system.control(["dmesg"])[1]
    assert "failed to load bpf -13" in dmesg
    assert "invalid bpf_context access off=0 size=8" in dmesg


def test_good_program_replaced_by_bad_stays(system):
    tree = system.tree
    cat_into(tree, NETIF + "/filter", example("filter_ex1"))
    assert errno_of(cat_into, tree, NETIF + "/filter", b"\x7fELF" + bytes(200)) == errno.EACCES
    assert tree.read_text(NETIF + "/filter").startswith("bpf elf filter_ex1 ")
    assert "bpf: error: invalid BPF object" in tree.read_text("/error_log")


def test_gpl_only_helper_needs_gpl_license(system):
    obj = source("""
        #include <bpf/bpf_helpers.h>
        SEC("tracepoint/net/netif_receive_skb")
        int hello(void *ctx) { bpf_printk("hi\\n"); return 1; }
        char _license[] SEC("license") = "Proprietary";
    """)
    assert errno_of(cat_into, system.tree, NETIF + "/filter", obj) == errno.EACCES
    assert "cannot call GPL-restricted function from non-GPL compatible program" in \
        system.tree.read_text("/error_log")


def test_kprobe_event_program(system):
    tree = system.tree
    # kfree_skb() is inline in 6.x: it ends in sk_skb_reason_drop(sk, skb, reason)
    tree.echo("/kprobe_events", "p:myfree sk_skb_reason_drop skb=%si")
    cat_into(tree, "/events/kprobes/myfree/filter", example("kprobe_kfree_skb_len", "MIN_LEN=100"))
    assert tree.read_text("/events/kprobes/myfree/filter").startswith(
        "bpf elf kfree_skb_len (kprobe/sk_skb_reason_drop) ")
    tree.echo("/events/kprobes/myfree/enable", "1")
    drop(system, "eth0", length=150)
    drop(system, "eth0", length=60)
    lines = trace_lines(tree)
    kept = [line for line in lines if "myfree:" in line]
    printed = [PRINTK_LINE.match(line)["msg"] for line in lines if "bpf_trace_printk" in line]
    # dropped at __udp4_lib_rcv: ip_local_deliver_finish has pulled the 20-byte IP header
    assert printed == ["kfree_skb len 130"]
    assert len(kept) == 1


def test_eth5_filter_picks_the_program_for_each_event(system):
    tree = system.tree
    obj = example("eth5_filter")
    tree.echo("/kprobe_events", "p:skb_alloc __netdev_alloc_skb name=+280(%di):string")
    cat_into(tree, "/events/kprobes/skb_alloc/filter", obj)
    cat_into(tree, NETIF + "/filter", obj)
    assert "eth5_kprobe (kprobe/__netdev_alloc_skb)" in \
        tree.read_text("/events/kprobes/skb_alloc/filter")
    assert "eth5_tracepoint (tracepoint/net/netif_receive_skb)" in tree.read_text(NETIF + "/filter")
    tree.echo("/events/kprobes/skb_alloc/enable", "1")
    tree.echo(NETIF + "/enable", "1")
    for dev in ("lo", "eth0", "eth5"):
        send(system, dev)
    assert system.control(["skb-bench", "5", "--dev", "eth5"])[0] == 0
    assert system.control(["skb-bench", "5", "--dev", "lo"])[0] == 0
    lines = trace_lines(tree)
    allocs = [line for line in lines if "skb_alloc:" in line]
    received = [line for line in lines if "netif_receive_skb:" in line]
    assert allocs and all('name="eth5"' in line for line in allocs)
    assert len(received) == 1 and "dev=eth5" in received[0]


def test_object_without_a_program_for_the_event(system):
    obj = example("latency_map")
    assert errno_of(cat_into, system.tree, "/events/skb/consume_skb/filter", obj) == errno.EACCES
    assert "no program for skb:consume_skb" in system.tree.read_text("/error_log")


def test_maps_shared_by_the_programs_of_one_object(system):
    tree = system.tree
    obj = example("latency_map")
    cat_into(tree, NETIF + "/filter", obj)
    cat_into(tree, "/events/skb/kfree_skb/filter", obj)
    tree.echo(NETIF + "/enable", "1")
    tree.echo("/events/skb/kfree_skb/enable", "1")
    drop(system, "eth0", 3)
    status, text = system.control(["maps"])
    assert status == 0
    rows = text.splitlines()
    assert rows[0].split() == ["ID", "NAME", "TYPE", "KEY", "VALUE", "MAX_ENTRIES", "ENTRIES",
                               "INSTANCE", "EVENTS"]
    start = next(r for r in rows if " start " in r).split()
    assert start[2:5] == ["hash", "8", "8"]
    assert start[-1] == "net:netif_receive_skb,skb:kfree_skb"
    status, dump = system.control(["map", "dump", "latency_us"])
    assert status == 0
    counts = [int(m) for m in re.findall(r"value: (\d+)", dump)]
    assert len(counts) == 64 and sum(counts) == 3          # every packet was timed
    assert dump.endswith("Found 64 elements\n")
    # start entries were deleted at kfree_skb
    assert system.control(["map", "dump", "start"])[1] == "Found 0 elements\n"
    tree.echo(NETIF + "/filter", "0")
    tree.echo("/events/skb/kfree_skb/filter", "0")
    assert system.control(["maps"])[1].startswith("no maps")


def test_writing_an_object_again_keeps_its_maps_listed(system):
    tree = system.tree
    obj = example("latency_map")
    cat_into(tree, NETIF + "/filter", obj)
    listed = system.control(["maps"])[1]
    assert " start " in listed and " latency_us " in listed
    cat_into(tree, NETIF + "/filter", obj)              # the same object onto the same event
    assert system.control(["maps"])[1] == listed
    tree.echo(NETIF + "/filter", "0")
    assert system.control(["maps"])[1].startswith("no maps")


def test_map_dump_btf_and_errors(system):
    tree = system.tree
    cat_into(tree, NETIF + "/filter", example("filter_ex2", "PRINT_EVERY=2"))
    tree.echo(NETIF + "/enable", "1")
    send(system, "lo", 3)
    send(system, "eth0", 2)
    status, dump = system.control(["map", "dump", "pkt_count"])
    assert status == 0
    values = sorted(int(v) for v in re.findall(r"key: 0xffff[0-9a-f]+  value: (\d+)", dump))
    assert values == [2, 3]
    assert system.control(["map", "dump", "1"])[1] == dump          # by id
    assert system.control(["map", "dump", "nosuch"])[0] == 1
    assert system.control(["map"])[0] == 2
    printed = [line for line in trace_lines(tree) if "pkt_cnt" in line]
    assert len(printed) == 2 and all(re.search(r"dev [0-9a-f]{16}  pkt_cnt 2$", line)
                                     for line in printed)


def test_instances_are_isolated(system):
    tree = system.tree
    tree.mkdir("/instances/foo")
    foo = "/instances/foo" + NETIF
    cat_into(tree, foo + "/filter", example("filter_ex1"))
    assert tree.read_text(NETIF + "/filter") == "none\n"
    tree.echo(foo + "/enable", "1")
    tree.echo(NETIF + "/enable", "1")
    send(system, "lo")
    send(system, "eth0")
    top = trace_lines(tree)
    inst = trace_lines(tree, "/instances/foo/trace")
    assert len(top) == 2 and not any("bpf_trace_printk" in line for line in top)
    # bpf_printk("...\n"): the printk line, then the empty line TP_printk's own "\n" makes
    assert len(inst) == 3 and "bpf_trace_printk" in inst[0] and inst[1] == "" and "dev=lo" in inst[2]
    tree.echo(foo + "/enable", "0")
    tree.echo(foo + "/filter", "0")
    tree.rmdir("/instances/foo")


def test_subsystem_filter_goes_to_the_named_event(system):
    tree = system.tree
    cat_into(tree, "/events/net/filter", example("filter_ex1"))
    assert tree.read_text(NETIF + "/filter").startswith("bpf elf filter_ex1")
    assert tree.read_text("/events/net/net_dev_xmit/filter") == "none\n"
    tree.echo("/events/net/filter", "0")
    assert tree.read_text(NETIF + "/filter") == "none\n"


def test_engine_switch_and_interpreter(system):
    tree = system.tree
    assert system.control(["bpf-engine"]) == (0, "jit\n")
    assert system.control(["bpf-engine", "interp"]) == (0, "")
    assert system.control(["bpf-engine"]) == (0, "interp\n")
    assert system.control(["bpf-engine", "2"])[0] == 2
    assert "bpf_jit" not in tree.readdir("/options")      # no kernel has such an option
    cat_into(tree, NETIF + "/filter", example("filter_ex1"))
    assert tree.read_text(NETIF + "/filter").endswith(" 38 insns interpreted\n")
    tree.echo(NETIF + "/enable", "1")
    send(system, "lo")
    send(system, "eth0")
    assert len(trace_lines(tree)) == 3           # printk line, its empty line, the event
    assert "bpf_jit" not in tree.read_text("/trace_options")


def test_mount_engine_default():
    s = System.boot(cpus=1, seed=1, clock="virtual", bpf_engine="interp")
    assert s.control(["bpf-engine"]) == (0, "interp\n")
    cat_into(s.tree, NETIF + "/filter", example("filter_ex1"))
    assert "interpreted" in s.tree.read_text(NETIF + "/filter")


def test_text_write_after_object_bytes_is_still_a_predicate(system):
    tree = system.tree
    tree.echo(NETIF + "/filter", 'name == "lo"')
    assert tree.read_text(NETIF + "/filter") == 'name == "lo"\n'
    assert errno_of(tree.echo, NETIF + "/filter", "bpf") == errno.EINVAL


def test_clang_object(system, tmp_path):
    from tests.conftest import need_tool
    clang = need_tool("clang", "clang")
    import subprocess
    root = EXAMPLES.parent.parent
    out = tmp_path / "filter_ex2.o"
    subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-DPRINT_EVERY=2",
                    f"-I{root}/kernel_model/include", f"-I{root}/filters/bpf/include",
                    f"-I{EXAMPLES}", "-c", str(EXAMPLES / "filter_ex2.c"), "-o", str(out)],
                   check=True, capture_output=True)
    tree = system.tree
    cat_into(tree, NETIF + "/filter", out.read_bytes())
    assert tree.read_text(NETIF + "/filter").startswith(
        "bpf elf filter_ex2 (tracepoint/net/netif_receive_skb) ")
    tree.echo(NETIF + "/enable", "1")
    send(system, "lo", 3)
    dump = system.control(["map", "dump", "pkt_count"])[1]
    assert re.fullmatch(r"key: 0xffff[0-9a-f]+  value: 3\nFound 1 element\n", dump)
    assert sum("pkt_cnt 2" in line for line in trace_lines(tree)) == 1
