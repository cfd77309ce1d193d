"""The control channel's operations: plain functions on a ``Kernel``, and ``run_command``.

``run_command(kernel, argv) -> (status, text)`` is what the Unix-socket server (tracefs side)
and ``tracesim ctl MOUNTPOINT COMMAND ...`` call; status 0 is success, 1 a failed operation, 2 a
usage error; text is what the command prints (newline-terminated, or empty). Commands run with
``kernel.lock`` held, except ``workload`` (which joins threads that take it) and ``send`` (which
takes it per batch).

    send DEV --len N [--proto udp|tcp|icmp] [--count K] [--ipv6] [--port P]
        K packets whose skb ``len`` at netif_receive_skb is exactly N (the IP packet; the frame
        is N + 14 bytes). On a NIC they arrive from the wire (hardirq → softirq on this CPU);
        on ``lo`` the ``tracesim-ctl`` task sends them to itself through loopback. UDP and TCP
        go to port P (default 9, the listening discard service: consumed; a closed port drops
        them with NO_SOCKET, and TCP answers with a reset); ICMP is an echo request (answered).
        K is at most MAX_SEND_COUNT (10^9); frames are generated and delivered in batches, so
        memory does not grow with K.
    ping DEV [-c K] [-s SIZE]
        The ``ping`` task sends K echo requests (SIZE data bytes, default 56) from a ping socket
        to the device's peer (to 127.0.0.1 on lo) and reads the replies from it; prints what
        iputils' ping prints. Virtual time advances one second between requests, as ping's default interval.
    skb-bench [N] [--dev DEV] [--clock wall|cpu]
        Loads the 2013 RFC's benchmark module (``skb_bench``): N alloc/free pairs (default
        1,000,000) on DEV (default lo), timed by the wall clock (default) or the CPU time of
        the thread running them; prints the line it logs to dmesg.
    dmesg [-c|-C]
        The kernel log; ``-c`` prints then clears, ``-C`` clears.
    workload start|stop NAME | workload list
    sysctl kernel.stack_tracer_enabled[=0|1]
        The stack tracer's switch (/proc/sys/kernel/stack_tracer_enabled on Linux).
    sysctl debug.kprobes-optimization[=0|1]
        Whether kprobes are optimized (/proc/sys/debug/kprobes-optimization).
    cat PATH
        One of the model's files outside tracefs (``procfs.FILES``): /proc/version,
        /proc/kallsyms, /proc/sys/debug/kprobes-optimization, /sys/kernel/debug/kprobes/list,
        .../blacklist, .../enabled.
    btf
        The model's raw BTF (what ``/sys/kernel/btf/vmlinux`` holds) in base64, one line: what
        ``tracesim btf dump --mount DIR`` reads.
"""
from __future__ import annotations

import argparse
import base64
import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from tracesim.kernel_model import procfs
from tracesim.kernel_model.net import core as netmod
from tracesim.kernel_model.net import skb_bench, tun
from tracesim.kernel_model.syscalls import USER_SOCKADDR

AF_INET, SOCK_DGRAM, IPPROTO_ICMP = 2, 2, 1
PING_FD = 3
PING_PATH = "/usr/bin/ping"
SEND_FD = 3

if TYPE_CHECKING:
    from tracesim.kernel_model.kernel import Kernel

CTL_COMM = "tracesim-ctl"
# ``send --count`` at most this: about a day of sending at the model's ~10^4 packets/s, so a
# larger number is a typo rather than a plan.
MAX_SEND_COUNT = 10**9
# Packets delivered per hold of the kernel lock by ``send``.
SEND_BATCH = 256
PING_DATA = 56
PING_IDENT = 0x7ace
MAX_PING_SIZE = 65507      # 65535 - 20 (IP) - 8 (ICMP), as ping -s allows
MAX_PORT = 0xffff


_progress = threading.local()


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting."""

    def error(self, message: str) -> None:
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage()}")


# ---------------------------------------------------------------------- operations

def set_progress_hook(hook: Callable[[], bool] | None) -> None:
    """What long commands of the calling thread call between batches (None: nothing). The
    control server installs one per request: it keeps the connection alive and answers True
    once the requester has gone away, which stops the command."""
    _progress.hook = hook


def _requester_gone() -> bool:
    hook = getattr(_progress, "hook", None)
    return hook is not None and hook()


def send(kernel: Kernel, dev: str, length: int, proto: str = "udp", count: int = 1,
         ipv6: bool = False, port: int = netmod.DISCARD_PORT) -> int:
    """Deliver ``count`` packets of skb len ``length`` through ``dev``'s receive path.

    Frames are built one at a time and delivered in batches of SEND_BATCH, each under the
    kernel lock: memory stays flat whatever ``count`` is, and between batches the workload,
    tracefs readers and other commands go on. Returns how many were sent: ``count``, or fewer
    when the requester went away (see :func:`set_progress_hook`)."""
    with kernel.lock:
        device = kernel.net.device(dev)
        netmod.packet_frame(device, proto, length, v6=ipv6)   # a bad --len fails before any is sent
    sent = 0
    while sent < count:
        if sent and _requester_gone():
            break
        batch = range(sent, min(count, sent + SEND_BATCH))
        with kernel.lock:
            if device.loopback:     # the sender's sendto() per datagram, on its socket
                with kernel.sched.running(kernel.user_task(CTL_COMM)):
                    for seq in batch:
                        frame = netmod.packet_frame(device, proto, length, seq=seq, v6=ipv6,
                                                    dport=port)
                        kernel.syscalls.sendto(SEND_FD, len(frame), _xmitter(kernel, device,
                                                                            frame))
            else:
                for seq in batch:
                    kernel.net.receive(device, netmod.packet_frame(device, proto, length,
                                                                   seq=seq, v6=ipv6, dport=port))
        sent = batch.stop
    return sent


def _xmitter(kernel: Kernel, device: netmod.NetDevice, frame: bytes) -> Callable[[], int]:
    def xmit() -> int:
        kernel.net.xmit_frame(device, frame, via_ip=True)
        return len(frame)
    return xmit


def _ping_receive(sockets: Any, sk: Any, echo: list[tuple[int, int]]) -> int:
    """recvfrom's body for ping: the next echo reply (length, sequence) on ``sk``."""
    echo.append(sockets.ping_recv(sk))
    return echo[-1][0]


def ping(kernel: Kernel, dev: str, count: int = 4, size: int = PING_DATA) -> str:
    """Echo requests to the device's peer from a ping socket, as the ping program: the shell
    forks, the child execs ``/usr/bin/ping``, makes ping's own syscalls (an ICMP datagram
    socket, sendto, recvfrom, close) and exits, and the shell reaps it; returns ping's output."""
    device = kernel.net.device(dev)
    if not 0 <= size <= MAX_PING_SIZE:
        raise UsageError(f"ping: -s {size} is out of range (0 to {MAX_PING_SIZE})")
    dst = device.peer_ipv4
    clock = kernel.clock
    lines = [f"PING {dst} ({dst}) {size}({size + 28}) bytes of data."]
    first = clock.peek_ns()
    answered: list[int] = []
    sys, sched = kernel.syscalls, kernel.sched
    shell = kernel.user_task("bash")
    with sched.running(shell):
        child = sys.clone()
    with kernel.machine.on_cpu(child.cpu), sched.running(child):
        sys.execve(PING_PATH)
        _ping_body(kernel, device, count, size, lines, answered)
        sys.exit_group(0)
    with sched.running(shell):
        sys.wait4(child)
    got = len(answered)
    loss = 0 if count == 0 else round(100 * (count - got) / count)
    elapsed_ms = (clock.peek_ns() - first) // 1_000_000
    lines += ["", f"--- {dst} ping statistics ---",
              f"{count} packets transmitted, {got} received, {loss}% packet loss, "
              f"time {elapsed_ms}ms"]
    return "\n".join(lines) + "\n"


def _ping_body(kernel: Kernel, device: Any, count: int, size: int, lines: list[str],
               answered: list[int]) -> None:
    """What ping does between its exec and its exit: one echo request a second, each reply
    read back; ``answered`` collects the sequence numbers that came back."""
    net, clock = kernel.net, kernel.clock
    src, dst = device.ipv4, device.peer_ipv4
    sockets = net.sockets
    payload = bytes(i & 0xff for i in range(size))
    sys = kernel.syscalls
    fd = sys.socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP, PING_FD)
    sk = sockets.ping_socket(PING_IDENT)
    try:
        for seq in range(1, count + 1):
            if seq > 1:
                sys.nanosleep(1_000_000_000)
            sent_at = clock.peek_ns()

            def transmit(seq: int = seq) -> int:
                sockets.ping_send(sk, device, dst, seq, payload)
                return size + 8
            sys.sendto(fd, size + 8, transmit, USER_SOCKADDR)
            if not device.loopback:      # the peer answers over the wire
                reply = netmod.build_frame(device, "icmp-reply", dst, src, PING_IDENT, seq,
                                           payload)
                net.receive(device, reply)
            echo: list[tuple[int, int]] = []
            sys.recvfrom(fd, 192, partial(_ping_receive, sockets, sk, echo))
            length, echo_seq = echo[-1]
            if length > 0 and echo_seq == seq:
                answered.append(seq)
                rtt = (clock.peek_ns() - sent_at) / 1e6
                lines.append(f"{length} bytes from {dst}: icmp_seq={seq} ttl=64 "
                             f"time={rtt:.3f} ms")
    finally:
        sockets.ping_close(sk)
        sys.close(fd, lambda: 0)


def skb_bench_cmd(kernel: Kernel, iterations: int = skb_bench.DEFAULT_ITERATIONS,
                  dev: str = skb_bench.DEFAULT_DEVICE, clock: str = "wall") -> str:
    usecs = skb_bench.run(kernel, iterations, dev, clock)
    return skb_bench.log_line(iterations, usecs) + "\n"


def dmesg(kernel: Kernel, read: bool = True, clear: bool = False) -> str:
    text = kernel.printk.dmesg() if read else ""
    if clear:
        kernel.printk.clear()
    return text


def workload(kernel: Kernel, action: str, name: str | None = None) -> str:
    ws = kernel.workloads
    if action == "list":
        running = set(ws.running())
        return "".join(f"{n}{' (running)' if n in running else ''}\n" for n in ws.names())
    if name is None:
        raise UsageError(f"workload {action}: a workload name is needed ({', '.join(ws.names())})")
    if action == "start":
        ws.start(name)
    else:
        ws.stop(name)
    return ""


# ---------------------------------------------------------------------- the command line

def command_parsers() -> dict[str, tuple[_Parser, Callable]]:
    """Each command's parser and action (``tracesim ctl`` builds its --help from the parsers)."""
    p_send = _Parser(prog="send", add_help=False)
    p_send.add_argument("dev")
    p_send.add_argument("--len", type=int, required=True, dest="length")
    p_send.add_argument("--proto", choices=("udp", "tcp", "icmp"), default="udp")
    p_send.add_argument("--count", type=int, default=1)
    p_send.add_argument("--ipv6", action="store_true")
    p_send.add_argument("--port", type=int, default=netmod.DISCARD_PORT,
                        help="destination port (default 9, the discard service)")
    p_ping = _Parser(prog="ping", add_help=False)
    p_ping.add_argument("dev")
    p_ping.add_argument("-c", type=int, default=4, dest="count")
    p_ping.add_argument("-s", type=int, default=PING_DATA, dest="size")
    p_bench = _Parser(prog="skb-bench", add_help=False)
    p_bench.add_argument("iterations", type=int, nargs="?", default=skb_bench.DEFAULT_ITERATIONS)
    p_bench.add_argument("--dev", default=skb_bench.DEFAULT_DEVICE)
    p_bench.add_argument("--clock", choices=tuple(skb_bench.CLOCKS), default="wall")
    p_dmesg = _Parser(prog="dmesg", add_help=False)
    p_dmesg.add_argument("-c", action="store_true", dest="read_clear")
    p_dmesg.add_argument("-C", action="store_true", dest="clear")
    p_work = _Parser(prog="workload", add_help=False)
    p_work.add_argument("action", choices=("start", "stop", "list"))
    p_work.add_argument("name", nargs="?")

    def do_send(k: Kernel, a: argparse.Namespace) -> str:
        if not 0 <= a.count <= MAX_SEND_COUNT:
            raise UsageError(f"send: --count {a.count} is out of range (0 to {MAX_SEND_COUNT})")
        if not 0 <= a.port <= MAX_PORT:
            raise UsageError(f"send: --port {a.port} is out of range (0 to {MAX_PORT})")
        n = send(k, a.dev, a.length, a.proto, a.count, a.ipv6, a.port)
        if n < a.count:
            raise ValueError(f"stopped after {n} of {a.count} packets: the requester went away")
        return f"sent {n} {a.proto} packet{'s' if n != 1 else ''} of len {a.length} on {a.dev}\n"

    return {
        "send": (p_send, do_send),
        "ping": (p_ping, lambda k, a: ping(k, a.dev, a.count, a.size)),
        "skb-bench": (p_bench, lambda k, a: skb_bench_cmd(k, a.iterations, a.dev, a.clock)),
        "dmesg": (p_dmesg, lambda k, a: dmesg(k, read=not a.clear, clear=a.clear or a.read_clear)),
        "workload": (p_work, lambda k, a: workload(k, a.action, a.name)),
    }


COMMANDS = ("send", "ping", "skb-bench", "dmesg", "workload")


def usage() -> str:
    return ("commands: send DEV --len N [--proto udp|tcp|icmp] [--count K] [--ipv6] [--port P]; "
            "ping DEV [-c K] [-s SIZE]; skb-bench [N] [--dev DEV]; dmesg [-c|-C]; "
            "workload start|stop NAME | workload list; btf; sysctl NAME[=VALUE]; cat PATH\n")


def run_command(kernel: Kernel, argv: list[str]) -> tuple[int, str]:
    """Run one control command; ``(0, output)``, ``(1, error line)`` or ``(2, usage)``."""
    if argv[:1] == ["send"] and argv[1:2] and argv[1].startswith("tun"):   # send tun0 --src ...
        return tun.send_command(kernel, argv[1:])
    if argv[:1] == ["sysctl"]:
        if argv[1:2] and argv[1].startswith(procfs.OPTIMIZATION_KEY):
            return procfs.sysctl_command(kernel, argv[1:])
        from tracesim.kernel_model.trace.stack_tracer import sysctl_command
        return sysctl_command(kernel, argv[1:])
    if argv[:1] == ["cat"]:
        return procfs.cat_command(kernel, argv[1:])
    if argv == ["btf"]:     # the raw BTF (/sys/kernel/btf/vmlinux), base64: tracesim btf --mount
        from tracesim.kernel_model.model_btf import model_btf_bytes
        return 0, base64.b64encode(model_btf_bytes()).decode() + "\n"
    if not argv or argv[0] not in COMMANDS:
        what = f"unknown command '{argv[0]}'\n" if argv else "no command\n"
        return 2, what + usage()
    parser, action = command_parsers()[argv[0]]
    try:
        args = parser.parse_args(argv[1:])
        if argv[0] in ("workload", "send"):
            # Starting/stopping a workload thread must not hold the kernel lock: stop() joins a
            # thread that takes that lock for every batch it delivers. send takes it per batch.
            return 0, action(kernel, args)
        with kernel.lock:
            return 0, action(kernel, args)
    except UsageError as e:
        return 2, str(e) if str(e).endswith("\n") else f"{e}\n"
    except (KeyError, ValueError) as e:
        text = e.args[0] if e.args else str(e)
        return 1, f"{argv[0]}: {text}\n"
