"""The TUN device inside the modelled kernel: the control channel's ``send tun0 ...``, the stack's
transmit path asking the device for the queue, and what a kprobe / the trace sees of it."""
from __future__ import annotations

from tracesim.kernel_model.c_types import kernel_types
from tracesim.kernel_model.net import tun as tunmod
from tracesim.tools.rss import ebpf_rss
from tracesim.tools.rss import rss_software as S
from tracesim.tools.rss.rss_software import RssConfig

from tests.conftest import need_tool


def send(kernel, *args) -> tuple[int, str]:
    return tunmod.send_command(kernel, ["tun0", *args])


def test_send_reports_the_queue_and_the_flow_stays_on_it(kernel):
    status, text = send(kernel, "--src", "10.0.0.1", "--dst", "10.0.0.2", "--proto", "tcp",
                        "--sport", "1000", "--dport", "80", "--count", "5")
    assert status == 0
    assert text.startswith("sent 5 tcp packets 10.0.0.1:1000 > 10.0.0.2:80 on tun0: queue ")
    assert text.rstrip().endswith(" x5")                   # one flow, one queue
    tun = tunmod.tun_device(kernel)
    assert sum(tun.queue_packets) == 5 and tun.numqueues == 4
    assert kernel.net.device("tun0").tx_packets == 5


def test_send_usage_errors(kernel):
    status, text = send(kernel, "--src", "10.0.0.1")
    assert status == 2 and "--dst" in text and "usage: send TUNDEV" in text
    status, text = send(kernel, "--src", "10.0.0.1", "--dst", "10.0.0.2", "--sport", "70000")
    assert status == 2 and "--sport 70000" in text
    status, text = send(kernel, "--src", "10.0.0.1", "--dst", "2001:db8::1")
    assert status == 2 and "same address family" in text


def test_ipv6_and_vlan_endpoints_are_printed(kernel):
    status, text = send(kernel, "--src", "2001:db8::1", "--dst", "2001:db8::2", "--proto", "udp",
                        "--sport", "5", "--dport", "6", "--vlan", "100")
    assert status == 0 and "[2001:db8::1]:5 > [2001:db8::2]:6 on tun0: queue " in text


def test_a_kprobe_sees_the_queue_the_device_chose(kernel):
    offset = kernel_types().struct("sk_buff").offsetof("queue_mapping")
    seen = []
    kernel.kprobes.register_kprobe(
        "dev_hard_start_xmit",
        lambda regs: seen.append(int.from_bytes(kernel.mem.read(regs.di + offset, 2), "little")))
    tun = tunmod.tun_device(kernel)
    chosen = []
    for port in range(20):
        send(kernel, "--src", "10.1.0.1", "--dst", "10.1.0.2", "--sport", str(port), "--dport", "53")
        chosen.append(tun.last_skb.queue_mapping)
    assert seen == chosen and len(set(chosen)) > 1


def test_the_steering_program_chooses_the_queue_inside_the_kernel(kernel):
    need_tool("clang", "clang")
    data, _ = ebpf_rss.build_object("clang")
    rss = ebpf_rss.EbpfRss()
    assert rss.load(data, engine="interp", verify=False)
    rss.set_all(RssConfig(), [i % 4 for i in range(128)], S.STANDARD_KEY)
    tun = tunmod.tun_device(kernel)
    rss.attach(tun)
    # vector v4-1: TCP hash 0x51ccc178 -> index 120 -> queue 0; UDP the same; ICMP 0x323e8fc2 -> 2
    for proto, queue in (("tcp", 0), ("udp", 0), ("icmp", 2)):
        status, text = send(kernel, "--src", "66.9.149.187", "--dst", "161.142.100.80",
                            "--proto", proto, "--sport", "2794", "--dport", "1766", "--count", "2")
        assert status == 0 and text.rstrip().endswith(f"queue {queue} x2"), text
    rss.unload()
    assert tun.steering_prog is None                      # back to the default selection


def test_the_control_channel_routes_send_tun_to_the_tun_device(kernel):
    from tracesim.kernel_model.control import run_command
    status, text = run_command(kernel, ["send", "tun0", "--src", "10.0.0.1", "--dst", "10.0.0.2",
                                        "--proto", "tcp", "--sport", "5", "--dport", "6"])
    assert status == 0 and text.startswith("sent 1 tcp packet 10.0.0.1:5 > 10.0.0.2:6 on tun0: queue ")
    status, text = run_command(kernel, ["send", "lo", "--len", "100"])   # other devices: unchanged
    assert status == 0 and "len 100 on lo" in text
