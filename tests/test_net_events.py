"""The network data path's events against Linux 6.18: formats byte for byte with the reference
files, the event sequence of ping (skb data from kmalloc_reserve, consume_skb at icmp_rcv and
skb_free_datagram), drops with their real reasons (NO_SOCKET at the transport, QDISC_DROP,
SOCKET_RCVBUFF), the TCP state machine of the tcp_rr workload, the call structure seen by
kprobes, and bad workload parameters on the command line."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
from tracesim.kernel_model.control import run_command
from tracesim.kernel_model.kernel import Kernel
from tracesim.kernel_model.trace import output as trace_output
from tracesim.kernel_model.workload import parse_workload

from tests.conftest import ROOT
from tests.fuse_helpers import mounted, need_fuse, sh

SYSTEMS = ("net", "skb", "napi", "kmem", "sock", "tcp", "udp")


def enable_all(kernel: Kernel, systems=SYSTEMS) -> None:
    for system in systems:
        for name in kernel.tracing.events_of(system):
            kernel.tracing.top.file(system, name).set_enabled(True)


def lines(kernel: Kernel) -> list[str]:
    return [ln for ln in trace_output.trace_text(kernel.tracing.top).splitlines()
            if not ln.startswith("#")]


def names(trace: list[str]) -> list[str]:
    return [ln.split(": ", 1)[1].split(":", 1)[0] for ln in trace]


def body(line: str) -> str:
    """The event's text after ``name: ``."""
    return line.split(": ", 2)[2]


# -- formats -----------------------------------------------------------------------------------

def test_every_listed_event_matches_its_reference_format(kernel, reference):
    listed = [e for e in kernel.tracing.available_events() if e.split(":")[0] in SYSTEMS]
    assert len(listed) >= 26
    for full in listed:
        system, name = full.split(":")
        ref = reference / "events" / system / name / "format"
        assert ref.is_file(), f"{full} is listed but the 6.18 kernel has no such event"
        want = re.sub(r"^ID: \d+$", "ID: N", ref.read_text(), flags=re.M)
        got = re.sub(r"^ID: \d+$", "ID: N", kernel.tracing.event(system, name).format_text(),
                     flags=re.M)
        assert got == want, full


def test_the_listed_network_events_are_the_ones_the_path_passes(kernel):
    listed = set(kernel.tracing.available_events())
    for want in ("net:net_dev_start_xmit", "net:netif_receive_skb_entry",
                 "net:netif_receive_skb_exit", "skb:skb_copy_datagram_iovec",
                 "sock:inet_sock_set_state", "tcp:tcp_probe", "tcp:tcp_retransmit_skb",
                 "tcp:tcp_rcv_space_adjust", "udp:udp_fail_queue_rcv_skb"):
        assert want in listed
    for never in ("net:napi_gro_receive_entry", "net:netif_rx_entry", "kmem:mm_page_alloc",
                  "tcp:tcp_ao_handshake_failure", "napi:dql_stall_detected"):
        assert never not in listed                 # the model has no path that fires them


# -- ping --------------------------------------------------------------------------------------

def test_ping_on_lo_is_the_kernels_sequence(kernel):
    kernel.user_task("ping")
    enable_all(kernel, ("net", "skb", "napi", "kmem", "sock"))
    status, out = run_command(kernel, ["ping", "lo", "-c", "1"])
    assert status == 0 and "64 bytes from 127.0.0.1: icmp_seq=1" in out
    # ping is a process of its own: the shell's fork (a task_struct) comes before it
    trace = [ln for ln in lines(kernel) if ln.lstrip().startswith("ping-")]
    assert names(trace) == [
        "kmem_cache_alloc",                                   # the ping socket (PING)
        "kmem_cache_alloc", "kmem_cache_alloc",               # request: head, data
        "net_dev_queue", "net_dev_start_xmit", "netif_rx", "net_dev_xmit",
        "netif_receive_skb",                                  # the request, in softirq
        "kmem_cache_alloc", "kmem_cache_alloc",               # icmp_reply: head, data
        "net_dev_queue", "net_dev_start_xmit", "netif_rx", "net_dev_xmit",
        "consume_skb", "kmem_cache_free", "kmem_cache_free",  # the request, by icmp_rcv
        "netif_receive_skb",                                  # the reply
        "kmem_cache_alloc",                                   # ping_rcv's clone
        "sk_data_ready",
        "consume_skb", "kmem_cache_free",                     # the reply's head, by icmp_rcv
        "napi_poll",
        "sock_send_length",
        "skb_copy_datagram_iovec", "consume_skb",             # ping_recvmsg
        "kmem_cache_free", "kmem_cache_free",                 # the clone: data, head
        "sock_recv_length",
        "kmem_cache_free"]                                    # the socket, at close
    assert "name=PING" in trace[0] and "call_site=sk_prot_alloc+" in trace[0]
    assert "call_site=__alloc_skb+" in trace[1] and "name=skbuff_head_cache" in trace[1]
    assert "call_site=kmalloc_reserve+" in trace[2] and "name=skbuff_small_head" in trace[2]
    assert "call_site=skb_clone+" in trace[18]
    consumed = [body(ln) for ln in trace if "consume_skb:" in ln]
    assert [c.split("location=")[1].split("+")[0] for c in consumed] == [
        "icmp_rcv", "icmp_rcv", "skb_free_datagram"]
    assert " ..s1. " in trace[7] and trace[7].lstrip().startswith("ping-")
    assert body(trace[-6]) == "skbaddr=" + body(trace[-5]).split("skbaddr=")[1].split()[0] \
        + " len=64"


def test_a_large_ping_takes_its_skb_data_from_kmalloc(kernel):
    kernel.user_task("ping")
    enable_all(kernel, ("kmem",))
    status, out = run_command(kernel, ["ping", "lo", "-c", "1", "-s", "1000"])
    assert status == 0 and "1008 bytes from 127.0.0.1" in out
    trace = lines(kernel)
    allocs = [body(ln) for ln in trace if " kmalloc: " in ln]
    frees = [body(ln) for ln in trace if " kfree: " in ln]
    assert len(allocs) == 2 and len(frees) == 2             # request and reply
    assert all(a.startswith("call_site=kmalloc_reserve+") and "bytes_req=1472 bytes_alloc=2048"
               in a for a in allocs)
    assert {f.split("ptr=")[1] for f in frees} == {a.split("ptr=")[1].split()[0] for a in allocs}
    assert all(f.startswith("call_site=skb_release_data+") for f in frees)


def test_ping_over_a_nic(kernel):
    kernel.user_task("ping")
    enable_all(kernel, ("net", "skb", "napi"))
    status, out = run_command(kernel, ["ping", "eth0", "-c", "2"])
    assert status == 0 and "2 packets transmitted, 2 received" in out
    got = names(lines(kernel))
    assert got.count("netif_receive_skb_entry") == 2 and got.count("netif_receive_skb_exit") == 2
    assert got.count("consume_skb") == 6          # tx completion, icmp_rcv, skb_free_datagram


def test_received_packets_run_in_the_net_rx_softirq(kernel):
    """napi_schedule raises NET_RX (under rcu_read_lock_bh: 'b'), and handle_softirqs runs
    net_rx_action between softirq_entry and softirq_exit, where netif_receive_skb fires."""
    kernel.user_task("ping")
    enable_all(kernel, ("irq", "net"))
    assert run_command(kernel, ["ping", "lo", "-c", "1"])[0] == 0
    trace = lines(kernel)
    got = [n for n in names(trace) if n.startswith("softirq") or n == "netif_receive_skb"]
    assert got[:3] == ["softirq_raise", "softirq_entry", "netif_receive_skb"]
    assert got[-1] == "softirq_exit"
    assert all(body(ln) == "vec=3 [action=NET_RX]" for ln in trace if ": softirq_" in ln)
    raise_line = next(ln for ln in trace if ": softirq_raise:" in ln)
    assert " b...." in raise_line


# -- drops -------------------------------------------------------------------------------------

def test_udp_to_a_closed_port_is_dropped_with_no_socket(kernel):
    enable_all(kernel, ("skb",))
    assert run_command(kernel, ["send", "eth0", "--len", "100", "--port", "7777"])[0] == 0
    (line,) = lines(kernel)
    assert "rx_sk=0000000000000000 protocol=2048 location=__udp4_lib_rcv+" in line
    assert line.endswith("reason: NO_SOCKET")


def test_tcp_to_a_closed_port_gets_a_reset(kernel):
    enable_all(kernel, ("skb", "tcp", "net"))
    assert run_command(kernel, ["send", "eth5", "--len", "100", "--proto", "tcp",
                                "--port", "7777"])[0] == 0
    trace = lines(kernel)
    reset = next(body(ln) for ln in trace if "tcp_send_reset:" in ln)
    assert reset.endswith("skaddr=0000000000000000 src=10.0.5.1:7777 dest=10.0.5.2:40000 "
                          "state=UNKNOWN reason=NO_SOCKET")
    got = names(trace)
    assert got.index("tcp_send_reset") < got.index("net_dev_xmit") < got.index("kfree_skb")
    drop = next(ln for ln in trace if "kfree_skb:" in ln)
    assert "location=tcp_v4_rcv+" in drop and drop.endswith("reason: NO_SOCKET")
    assert "dev=eth5" in next(ln for ln in trace if "net_dev_xmit:" in ln)   # the RST


def test_closed_ports_over_ipv6(kernel):
    enable_all(kernel, ("skb", "tcp"))
    for proto in ("tcp", "udp"):
        assert run_command(kernel, ["send", "eth0", "--len", "100", "--proto", proto, "--ipv6",
                                    "--port", "7777"])[0] == 0
    trace = lines(kernel)
    reset = body(next(ln for ln in trace if "tcp_send_reset:" in ln))
    assert "src=[fd00::1]:7777 dest=[fd00::2]:40000 state=UNKNOWN reason=NO_SOCKET" in reset
    drops = [ln for ln in trace if "kfree_skb:" in ln]
    assert ["location=tcp_v6_rcv+" in drops[0], "location=__udp6_lib_rcv+" in drops[1]] == \
        [True, True]
    assert all("protocol=34525" in d and d.endswith("reason: NO_SOCKET") for d in drops)


@pytest.mark.parametrize("proto, reason", [("tcp", "TCP_CSUM"), ("udp", "UDP_CSUM")])
def test_a_bad_checksum_from_a_nic_is_dropped(kernel, proto, reason):
    from tracesim.kernel_model.net.core import packet_frame
    enable_all(kernel, ("skb", "tcp"))
    eth0 = kernel.net.device("eth0")
    frame = bytearray(packet_frame(eth0, proto, 100, dport=7777))
    frame[-1] ^= 0xff                                    # the payload's last byte, flipped
    kernel.net.receive(eth0, bytes(frame))
    trace = lines(kernel)
    assert trace[-1].endswith(f"reason: {reason}")
    if proto == "tcp":
        assert body(trace[0]).endswith("src=10.0.0.2:40000 dest=10.0.0.1:7777")
        assert names(trace) == ["tcp_bad_csum", "kfree_skb"]    # no reset for a bad segment
    else:
        assert names(trace) == ["kfree_skb"]


def test_a_netfilter_rule_drops_with_netfilter_drop(kernel):
    enable_all(kernel, ("skb",))
    kernel.workloads.get("net:filtered=0.5,closed=0").step(40)
    drops = [body(ln) for ln in lines(kernel) if "kfree_skb:" in ln]
    assert drops and all(d.endswith("reason: NETFILTER_DROP") and "location=nf_hook_slow+" in d
                         for d in drops)


def test_a_full_udp_socket_drops_with_socket_rcvbuff(kernel):
    enable_all(kernel, ("udp", "skb", "sock"))
    sink = kernel.workloads.get("udp_sink:rcvbuf=4096,read=0")
    sink.step(12)
    trace = lines(kernel)
    fails = [body(ln) for ln in trace if "udp_fail_queue_rcv_skb:" in ln]
    drops = [body(ln) for ln in trace if "kfree_skb:" in ln]
    assert fails and len(fails) == len(drops)
    assert all(f.startswith("rc=-12 family=AF_INET src=10.0.0.2:") and f.endswith(
        "dest=10.0.0.1:5002") for f in fails)
    assert all(d.endswith("reason: SOCKET_RCVBUFF") and "location=udp_queue_rcv_one_skb+" in d
               and "rx_sk=0000000000000000" not in d for d in drops)
    assert names(trace).count("sk_data_ready") == 12 - len(fails)


def test_a_ping_socket_nobody_reads_fills_up(kernel):
    from tracesim.kernel_model.net.core import build_frame
    enable_all(kernel, ("sock", "skb"))
    eth0 = kernel.net.device("eth0")
    sk = kernel.net.sockets.ping_socket(0x1234)
    sk.rcvbuf = 2048                                       # SO_RCVBUF: two replies' worth
    for seq in range(4):
        kernel.net.receive(eth0, build_frame(eth0, "icmp-reply", eth0.peer_ipv4, eth0.ipv4,
                                             0x1234, seq, bytes(56)))
    trace = lines(kernel)
    full = [body(ln) for ln in trace if "sock_rcvqueue_full:" in ln]
    assert full and all(f.endswith("sk_rcvbuf=2048") for f in full)
    drops = [ln for ln in trace if "kfree_skb:" in ln]
    assert len(drops) == len(full) and all("location=ping_queue_rcv_skb+" in d and
                                           d.endswith("reason: SOCKET_RCVBUFF") for d in drops)
    assert names(trace).count("sk_data_ready") == 4 - len(full)
    kernel.net.sockets.ping_close(sk)


# -- TCP ---------------------------------------------------------------------------------------

def test_tcp_rr_walks_the_state_machine(kernel):
    enable_all(kernel, ("sock", "tcp", "skb"))
    rr = kernel.workloads.get("tcp_rr:conn=2")
    rr.step(2)
    trace = lines(kernel)
    states = [re.search(r"sport=(\d+) dport=(\d+) .*oldstate=(\w+) newstate=(\w+)", ln).groups()
              for ln in trace if "inet_sock_set_state:" in ln]
    listen, client = "12866", "32768"
    assert [(s[0], s[1], s[2][4:], s[3][4:]) for s in states] == [
        (listen, "0", "CLOSE", "LISTEN"),
        ("0", listen, "CLOSE", "SYN_SENT"),                 # the port is picked afterwards
        (client, listen, "SYN_SENT", "ESTABLISHED"),
        (listen, "0", "LISTEN", "SYN_RECV"),                # the child, as cloned
        (listen, client, "SYN_RECV", "ESTABLISHED"),
        (client, listen, "ESTABLISHED", "FIN_WAIT1"),
        (listen, client, "ESTABLISHED", "CLOSE_WAIT"),
        (client, listen, "FIN_WAIT1", "FIN_WAIT2"),
        (listen, client, "CLOSE_WAIT", "LAST_ACK"),
        (client, listen, "FIN_WAIT2", "CLOSE"),
        (listen, client, "LAST_ACK", "CLOSE")]
    got = names(trace)
    assert got.count("tcp_probe") == 4 + 1         # 2 requests, 2 responses, the first FIN
    assert got.count("tcp_rcv_space_adjust") == 4 and got.count("skb_copy_datagram_iovec") == 4
    assert got.count("tcp_destroy_sock") == 2
    probe = body(next(ln for ln in trace if "tcp_probe:" in ln))
    assert probe.startswith(f"family=AF_INET src=127.0.0.1:{listen} dest=127.0.0.1:{client} "
                            "mark=0x0 data_len=1 ")
    assert "ssthresh=2147483647" in probe and "snd_cwnd=10" in probe
    assert "tcp_retransmit_skb" not in got and "kfree_skb" not in got
    netperf = next(ln for ln in trace if "SYN_SENT" in ln and "newstate=TCP_SYN_SENT" in ln)
    assert netperf.lstrip().startswith("netperf-") and " [000] " in netperf


def test_tcp_rr_with_loss_retransmits(kernel):
    enable_all(kernel, ("tcp", "skb"))
    kernel.workloads.get("tcp_rr:loss=0.2,conn=0").step(20)
    trace = lines(kernel)
    drops = [ln for ln in trace if "kfree_skb:" in ln and "QDISC_DROP" in ln]
    retrans = [body(ln) for ln in trace if "tcp_retransmit_skb:" in ln]
    assert drops and retrans
    assert all("location=__dev_queue_xmit+" in d for d in drops)
    assert all("state=TCP_ESTABLISHED err=0" in r or "state=TCP_SYN_SENT err=0" in r
               for r in retrans)
    timer = next(ln for ln in trace if "tcp_retransmit_skb:" in ln)
    assert timer.lstrip().startswith("<idle>-0") and " ..s.. " in timer   # timer softirq
    kernel.workloads.stop_all()
    assert not kernel.net.qdisc_drop                   # the qdisc goes with the workload


def test_tcp_rr_is_deterministic():
    def run() -> list[str]:
        k = Kernel(cpus=2, seed=7, clock="virtual")
        enable_all(k, ("sock", "tcp", "net", "skb"))
        k.workloads.get("tcp_rr:loss=0.1,conn=5").step(12)
        return lines(k)
    assert run() == run()


# -- call structure ----------------------------------------------------------------------------

def test_the_receive_path_calls_the_real_functions_in_order(kernel):
    seen: list[str] = []
    path = ("__netif_receive_skb", "ip_rcv", "ip_rcv_finish", "ip_local_deliver",
            "ip_local_deliver_finish", "ip_protocol_deliver_rcu", "udp_rcv", "__udp4_lib_rcv",
            "sk_skb_reason_drop", "__kfree_skb", "kmalloc_reserve", "__alloc_skb")
    for fn in path:
        kernel.kprobes.register_kprobe(fn, lambda regs, fn=fn: seen.append(fn))
    run_command(kernel, ["send", "eth0", "--len", "100", "--port", "7777"])
    assert seen == ["__alloc_skb", "kmalloc_reserve", *path[:10]]


def test_tcp_functions_are_probed_with_their_arguments(kernel):
    hits: list[tuple[str, int]] = []
    for fn in ("tcp_v4_rcv", "tcp_rcv_established", "tcp_set_state", "tcp_recvmsg"):
        kernel.kprobes.register_kprobe(fn, lambda regs, fn=fn: hits.append((fn, regs.si)))
    kernel.workloads.get("tcp_rr:conn=0").step(1)
    got = [fn for fn, _ in hits]
    assert got.count("tcp_rcv_established") == 2 and got.count("tcp_recvmsg") == 2
    assert [si for fn, si in hits if fn == "tcp_set_state"] == [10, 2, 1, 3, 1]


# -- workload parameters and the command line --------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("nope", "unknown workload 'nope'"),
    ("tcp_rr:rate=0", "rate=0 is out of range (1 to 100000)"),
    ("tcp_rr:loss=0.9", "loss=0.9 is out of range (0.0 to 0.2)"),
    ("tcp_rr:req=x", "req='x' is not an integer"),
    ("udp_sink:bogus=1", "unknown parameter 'bogus'"),
    ("net:min_len=900,max_len=100", "min_len=900 is above max_len=100"),
])
def test_bad_workload_parameters(text, message):
    with pytest.raises(ValueError) as err:
        parse_workload(text)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_workload_parameters_apply():
    spec = parse_workload("tcp_rr:rate=250,req=64,loss=0.05")
    assert (spec.rate, spec.req, spec.resp, spec.loss) == (250, 64, 1, 0.05)


@pytest.mark.parametrize("argv, message", [
    (["mount", "DIR", "--workload", "nope"], "argument --workload: unknown workload 'nope'"),
    (["mount", "DIR", "--workload", "tcp_rr:rate=-1"], "rate=-1 is out of range"),
    (["mount", "DIR", "--seed", "abc"], "argument --seed: 'abc' is not a number"),
    (["mount", "DIR", "--cpus", "0"], "argument --cpus: 0 is out of range (1 to 64)"),
    (["demo", "--iterations", "-5"], "argument --iterations: -5 is out of range"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path):
    argv = [str(tmp_path) if a == "DIR" else a for a in argv]
    done = subprocess.run([sys.executable, "-m", "tracesim.tools.cli", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert done.stderr.startswith(f"tracesim {argv[0]}: error: ")
    assert not any(tmp_path.iterdir())             # nothing was mounted or created


def test_ctl_refuses_a_bad_port_and_ping_size(kernel):
    status, text = run_command(kernel, ["send", "eth0", "--len", "100", "--port", "70000"])
    assert status == 2 and text == "send: --port 70000 is out of range (0 to 65535)\n"
    status, text = run_command(kernel, ["ping", "lo", "-s", "70000"])
    assert status == 2 and text.startswith("ping: -s 70000 is out of range")


def test_ping_through_the_mount_with_cat(mnt):
    sh("echo 'skb:consume_skb kmem:kmem_cache_alloc' > set_event", mnt)
    done = subprocess.run([sys.executable, "-m", "tracesim.tools.cli", "ctl", str(mnt), "ping", "lo",
                           "-c", "1"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "icmp_seq=1" in done.stdout, done.stderr
    trace = sh("cat trace", mnt).stdout
    assert trace.count("consume_skb: ") == 3
    assert "location=skb_free_datagram+" in trace and "name=skbuff_small_head" in trace


def test_a_mount_runs_tcp_rr_and_cat_shows_its_states(tmp_path_factory):
    need_fuse(tmp_path_factory.getbasetemp())
    with mounted(tmp_path_factory.mktemp("rr"), "--workload", "tcp_rr:rate=400,conn=4") as mnt:
        sh("echo sock:inet_sock_set_state > set_event", mnt)
        seen = ""
        for _ in range(200):                     # until a few connections have come and gone
            seen = sh("cat trace", mnt).stdout
            if seen.count("newstate=TCP_CLOSE\n") >= 2:
                break
            sh("sleep 0.1", mnt)
        assert "oldstate=TCP_CLOSE newstate=TCP_SYN_SENT" in seen
        assert "oldstate=TCP_LAST_ACK newstate=TCP_CLOSE" in seen
        assert re.search(r"netperf-\d+ +\[000\]", seen)


def test_ping_is_forked_execd_and_reaped(kernel):
    """``ping`` runs as the program does: forked by a shell, exec'ing /usr/bin/ping, woken for
    each reply, exiting and reaped (what the ftrace selftests' ping-driven hist tests key on)."""
    for name in ("sched_process_fork", "sched_process_exec", "sched_process_exit",
                 "sched_waking", "sched_process_wait"):
        kernel.tracing.top.file("sched", name).set_enabled(True)
    status, _ = run_command(kernel, ["ping", "lo", "-c", "2"])
    assert status == 0
    trace = lines(kernel)
    fork = next(ln for ln in trace if "sched_process_fork:" in ln)
    child = int(re.search(r"child_pid=(\d+)", fork).group(1))
    assert "comm=bash" in fork
    exec_ = next(ln for ln in trace if "sched_process_exec:" in ln)
    assert f"filename=/usr/bin/ping pid={child} old_pid={child}" in exec_
    assert any(f"sched_waking: comm=ping pid={child} " in ln for ln in trace)
    assert any(f"sched_process_exit: comm=ping pid={child} " in ln for ln in trace)
    assert re.search(r"bash-\d+ .* sched_process_wait: ", "\n".join(trace))
