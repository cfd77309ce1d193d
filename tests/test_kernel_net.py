"""The network model: skbs mirrored in memory, alloc/free through the slab, rx/tx paths and their
tracepoints, contexts (flags column), drop reasons, kprobes with pt_regs, determinism."""
from __future__ import annotations

import struct

import pytest
from tracesim.kernel_model.c_types import kernel_types
from tracesim.kernel_model.control import run_command
from tracesim.kernel_model.kernel import Kernel
from tracesim.kernel_model.kprobes import PT_REGS_OFFSETS, KprobeError
from tracesim.kernel_model.mm.memory import EFAULT, KernelFault
from tracesim.kernel_model.net import skb_bench
from tracesim.kernel_model.net.core import SKB_DROP_REASON_NO_SOCKET, htons
from tracesim.kernel_model.trace import output as trace_output

NET_EVENTS = [("net", "netif_receive_skb"), ("skb", "kfree_skb"), ("skb", "consume_skb"),
              ("napi", "napi_poll"), ("net", "net_dev_queue"), ("net", "net_dev_xmit"),
              ("net", "netif_rx"), ("kmem", "kmem_cache_alloc"), ("kmem", "kmem_cache_free"),
              ("kmem", "kmalloc"), ("kmem", "kfree")]


def enable(kernel: Kernel, events=NET_EVENTS) -> None:
    for system, name in events:
        kernel.tracing.top.file(system, name).set_enabled(True)


def trace_lines(kernel: Kernel) -> list[str]:
    return [ln for ln in trace_output.trace_text(kernel.tracing.top).splitlines()
            if not ln.startswith("#")]


def test_skb_fields_are_mirrored_at_header_offsets(kernel):
    sk = kernel_types().struct("sk_buff")
    nd = kernel_types().struct("net_device")
    mem, net = kernel.mem, kernel.net
    eth5 = net.device("eth5")
    skb = net.netdev_alloc_skb(eth5, 128)
    def at(f, size):
        return mem.read_int(skb.addr + sk.field(f).offset, size)
    assert at("dev", 8) == eth5.addr and at("head", 8) == skb.head
    assert at("data", 8) == skb.head + 64 and at("len", 4) == 0
    assert at("users", 4) == 1 and at("end", 4) == skb.end == 320
    dev_ptr = at("dev", 8)
    assert mem.read_cstr(dev_ptr + nd.field("name").offset) == b"eth5"
    assert mem.read_int(dev_ptr + nd.field("ifindex").offset, 4) == eth5.ifindex
    assert mem.read_int(dev_ptr + nd.field("mtu").offset, 4) == 1500
    # a BPF-style read of skb->dev->name
    err, raw = mem.probe_read(skb.addr + sk.field("dev").offset, 8)
    name_at = struct.unpack("<Q", raw)[0] + nd.field("name").offset    # 0x118 on 6.18
    assert err == 0 and mem.probe_read_str(name_at, 16) == (5, b"eth5\0")
    net.kfree_skb(skb)
    with pytest.raises(KernelFault):
        mem.read(skb.addr, 8)
    assert mem.probe_read(skb.head, 8) == (-EFAULT, bytes(8))
    assert kernel.slab.caches["skbuff_head_cache"].active_objs == 0


def test_receive_sets_len_protocol_and_headers(kernel):
    seen = []
    kernel.kprobes.register_kprobe("netif_receive_skb", lambda regs: seen.append(regs.di))
    run_command(kernel, ["send", "eth0", "--len", "300", "--proto", "tcp"])
    sk = kernel_types().struct("sk_buff")
    (addr,) = seen
    # the skb is freed by now; what the probe saw was the live skb's address
    assert kernel.mem.probe_read(addr + sk.field("len").offset, 4)[0] == -EFAULT
    lines = trace_lines(kernel)
    assert lines == []                        # nothing enabled, nothing recorded
    enable(kernel, [("net", "netif_receive_skb")])
    for proto in ("udp", "tcp", "icmp"):
        assert run_command(kernel, ["send", "eth5", "--len", "777", "--proto", proto])[0] == 0
    lines = trace_lines(kernel)
    assert len(lines) == 3 and all("dev=eth5" in ln and ln.endswith("len=777") for ln in lines)
    assert all(" ..s1. " in ln and ln.lstrip().startswith("<idle>-0") for ln in lines)


def test_loopback_path_matches_reference_shape(kernel):
    kernel.user_task("tracesim-ctl")          # its fork is not part of the path
    enable(kernel)
    run_command(kernel, ["send", "lo", "--len", "128"])
    lines = trace_lines(kernel)
    events = [ln.split(": ", 1)[1].split(":", 1)[0] for ln in lines]
    assert events == ["kmem_cache_alloc", "kmem_cache_alloc", "net_dev_queue", "netif_rx",
                      "net_dev_xmit", "netif_receive_skb", "consume_skb", "kmem_cache_free",
                      "kmem_cache_free", "napi_poll"]
    rx = next(ln for ln in lines if "netif_receive_skb:" in ln)
    assert rx.startswith("    tracesim-ctl-1000    [000] ..s1. ")
    assert "dev=lo" in rx and rx.endswith("len=128")
    queue = next(ln for ln in lines if "net_dev_queue:" in ln)
    assert " b.... " in queue and queue.endswith("len=142")       # bottom halves disabled


def test_drops_carry_reasons(kernel):
    enable(kernel, [("skb", "kfree_skb")])
    eth0 = kernel.net.device("eth0")
    from tracesim.kernel_model.net.core import packet_frame
    kernel.net.receive(eth0, packet_frame(eth0, "udp", 100, dport=7777))
    kernel.net.receive(eth0, eth0.mac + bytes(6) + b"\x88\xb5" + bytes(60))   # unknown type
    lines = trace_lines(kernel)
    assert "protocol=2048" in lines[0] and lines[0].endswith("reason: NO_SOCKET")
    assert lines[1].endswith("reason: UNHANDLED_PROTO")
    assert SKB_DROP_REASON_NO_SOCKET == 3 and htons(0x0800) == 0x0008


def test_kprobe_pt_regs_and_return_value(kernel):
    entries, returns = [], []
    kernel.kprobes.register_kprobe("__netdev_alloc_skb", entries.append)
    kernel.kprobes.register_kprobe("__netdev_alloc_skb", returns.append, retprobe=True)
    dev = kernel.net.device("eth5")
    skb = kernel.net.netdev_alloc_skb(dev, 128)
    (regs,) = entries
    assert regs.di == dev.addr and regs.si == 128 and regs.dx == 0x820
    assert regs.ip == kernel.kallsyms.addr("__netdev_alloc_skb")
    assert len(regs.raw) == 168
    assert struct.unpack_from("<Q", regs.raw, PT_REGS_OFFSETS["di"])[0] == dev.addr
    # the kprobe event's fetcharg +280(%di):string reads the device name from memory
    assert kernel.mem.read_cstr(regs.di + 280) == b"eth5"
    assert kernel.mem.read(regs.sp, 8) == bytes(8)        # $stack0 is mapped
    (ret,) = returns
    assert ret.ax == skb.addr and ret.func == regs.ip
    with pytest.raises(KprobeError) as info:
        kernel.kprobes.register_kprobe("no_such_function", print)
    assert info.value.errno == 2
    # a real function the model runs without a site: accepted, never fires
    dormant = kernel.kprobes.register_kprobe("skb_put", entries.append)
    kernel.net.netdev_alloc_skb(dev, 128)
    assert dormant.nhit == 0 and len(entries) == 2


def test_kprobe_costs_nothing_once_removed(kernel):
    hits = []
    probe = kernel.kprobes.register_kprobe("kfree", lambda regs: hits.append(regs.di))
    addr = kernel.slab.kmalloc(100)
    kernel.slab.kfree(addr)
    kernel.kprobes.unregister_kprobe(probe)
    kernel.slab.kfree(kernel.slab.kmalloc(100))
    assert hits == [addr] and probe.nhit == 1
    assert not kernel.kprobes.site("kfree").active


def test_skb_bench_logs_rfc_line(kernel):
    run_command(kernel, ["dmesg", "-C"])
    status, out = run_command(kernel, ["skb-bench", "2000", "--dev", "eth5"])
    assert status == 0 and out.startswith("2K skb alloc/free ") and out.endswith(" (usecs)\n")
    assert run_command(kernel, ["dmesg"])[1].split("] ", 1)[1] == out
    assert [skb_bench.count_text(n) for n in (1_000_000, 3_000_000, 10_000, 1_500_000, 1234)] \
        == ["1M", "3M", "10K", "1500K", "1234"]
    assert kernel.slab.caches["skbuff_head_cache"].active_objs == 0


def test_ping_on_lo_and_nic(kernel):
    status, out = run_command(kernel, ["ping", "lo", "-c", "3"])
    assert status == 0 and "3 packets transmitted, 3 received, 0% packet loss" in out
    assert out.startswith("PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data.\n")
    status, out = run_command(kernel, ["ping", "eth0", "-c", "1"])
    assert "64 bytes from 10.0.0.2: icmp_seq=1 ttl=64" in out


def test_control_errors(kernel):
    assert run_command(kernel, [])[0] == 2
    assert run_command(kernel, ["send", "eth0"])[0] == 2
    assert run_command(kernel, ["send", "eth9", "--len", "100"]) == (1, "send: no such device: eth9\n")
    assert run_command(kernel, ["send", "eth0", "--len", "20"])[0] == 1
    assert run_command(kernel, ["workload", "start", "nope"])[0] == 1
    assert run_command(kernel, ["workload", "list"])[1].startswith("net\n")


def test_workload_thread_starts_and_stops(kernel):
    w = kernel.workloads.start("udp-small")
    try:
        import time
        deadline = time.monotonic() + 5
        while w.sent == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        kernel.workloads.stop("udp-small")
    assert w.sent > 0 and not w.running


def run_traced(seed: int) -> list[str]:
    k = Kernel(seed=seed)
    enable(k)
    k.workloads.get("net").step(40)
    run_command(k, ["ping", "lo", "-c", "2"])
    run_command(k, ["send", "eth5", "--len", "200", "--count", "3"])
    return trace_lines(k)


def test_same_seed_same_trace():
    a, b = run_traced(7), run_traced(7)
    assert a == b and len(a) > 300
    assert run_traced(8) != a
    cpus = {ln[25:30] for ln in a}
    assert cpus == {"[000]", "[001]"}      # the workload runs on every CPU


def test_workload_start_stop_through_the_control_channel(kernel):
    """`tracesim ctl MNT workload stop NAME` runs this from a socket thread while the workload's
    own thread takes the kernel lock for every batch: stopping must not deadlock."""
    import threading
    import time
    assert run_command(kernel, ["workload", "start", "udp-small"]) == (0, "")
    w = kernel.workloads.get("udp-small")
    deadline = time.monotonic() + 5
    while w.sent == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    result = []
    t = threading.Thread(target=lambda: result.append(
        run_command(kernel, ["workload", "stop", "udp-small"])), daemon=True)
    t.start()
    t.join(10)
    assert result == [(0, "")] and not w.running
