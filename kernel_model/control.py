"""The control channel's operations: plain functions on a ``Kernel``, and ``run_command``.

``run_command(kernel, argv) -> (status, text)`` is what the Unix-socket server (tracefs side)
and ``tracesim ctl MOUNTPOINT COMMAND ...`` call; status 0 is success, 1 a failed operation, 2 a
usage error; text is what the command prints (newline-terminated, or empty). Commands run with
``kernel.lock`` held, except ``workload`` (which joins threads that take it) and ``send`` (which
takes it per batch).

    send DEV --len N [--proto udp|tcp|icmp] [--count K] [--ipv6]
        K packets whose skb ``len`` at netif_receive_skb is exactly N (the IP packet; the frame
        is N + 14 bytes). On a NIC they arrive from the wire (hardirq → softirq on this CPU);
        on ``lo`` the ``tracesim-ctl`` task sends them to itself through loopback. UDP and TCP
        go to the listening discard port (consumed); ICMP is an echo request (answered).
        K is at most MAX_SEND_COUNT (10^9); frames are generated and delivered in batches, so
        memory does not grow with K.
    ping DEV [-c K]
        The ``ping`` task sends K echo requests (56 data bytes) to the device's peer (to
        127.0.0.1 on lo) and collects the replies; prints what iputils' ping prints. Virtual
        time advances one second between requests, as ping's default interval.
    skb-bench [N] [--dev DEV] [--clock wall|cpu]
        Loads the 2013 RFC's benchmark module (``skb_bench``): N alloc/free pairs (default
        1,000,000) on DEV (default lo), timed by the wall clock (default) or the CPU time of
        the thread running them; prints the line it logs to dmesg.
    dmesg [-c|-C]
        The kernel log; ``-c`` prints then clears, ``-C`` clears.
    workload start|stop NAME | workload list
    sysctl kernel.stack_tracer_enabled[=0|1]
        The stack tracer's switch (/proc/sys/kernel/stack_tracer_enabled on Linux).
    btf
        The model's raw BTF (what ``/sys/kernel/btf/vmlinux`` holds) in base64, one line: what
        ``tracesim btf dump --mount DIR`` reads.
"""
from __future__ import annotations

import argparse
import base64
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from kernel_model import net as netmod
from kernel_model import skb_bench, tun

if TYPE_CHECKING:
    from kernel_model.kernel import Kernel

CTL_COMM = "tracesim-ctl"
# ``send --count`` at most this: about a day of sending at the model's ~10^4 packets/s, so a
# larger number is a typo rather than a plan.
MAX_SEND_COUNT = 10**9
# Packets delivered per hold of the kernel lock by ``send``.
SEND_BATCH = 256
PING_DATA = 56
PING_IDENT = 0x7ace


_progress = threading.local()


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting."""

    def error(self, message: str) -> None:   # type: ignore[override]
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
         ipv6: bool = False) -> int:
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
            if device.loopback:
                with kernel.machine.running(kernel.user_task(CTL_COMM)):
                    for seq in batch:
                        kernel.net.xmit_frame(device, netmod.packet_frame(device, proto, length,
                                                                          seq=seq, v6=ipv6))
            else:
                for seq in batch:
                    kernel.net.receive(device, netmod.packet_frame(device, proto, length,
                                                                   seq=seq, v6=ipv6))
        sent = batch.stop
    return sent


def ping(kernel: Kernel, dev: str, count: int = 4) -> str:
    """Echo requests to the device's peer; returns ping's output."""
    net, clock = kernel.net, kernel.clock
    device = net.device(dev)
    src, dst = device.ipv4, device.peer_ipv4
    replies = net.ping_sockets.setdefault(PING_IDENT, [])
    replies.clear()
    lines = [f"PING {dst} ({dst}) {PING_DATA}({PING_DATA + 28}) bytes of data."]
    first = clock.peek_ns()
    with kernel.machine.running(kernel.user_task("ping")):
        for seq in range(1, count + 1):
            if seq > 1:
                clock.advance(1_000_000_000)
            sent_at = clock.peek_ns()
            payload = bytes(range(PING_DATA))
            request = netmod.build_frame(device, "icmp", src, dst, PING_IDENT, seq, payload,
                                         outgoing=True)
            net.xmit_frame(device, request)
            if not device.loopback:      # the peer answers over the wire
                reply = netmod.build_frame(device, "icmp-reply", dst, src, PING_IDENT, seq,
                                           payload)
                net.receive(device, reply)
            if seq in replies:
                rtt = (clock.peek_ns() - sent_at) / 1e6
                lines.append(f"{PING_DATA + 8} bytes from {dst}: icmp_seq={seq} ttl=64 "
                             f"time={rtt:.3f} ms")
    got = len(replies)
    net.ping_sockets.pop(PING_IDENT, None)
    loss = 0 if count == 0 else round(100 * (count - got) / count)
    elapsed_ms = (clock.peek_ns() - first) // 1_000_000
    lines += ["", f"--- {dst} ping statistics ---",
              f"{count} packets transmitted, {got} received, {loss}% packet loss, "
              f"time {elapsed_ms}ms"]
    return "\n".join(lines) + "\n"


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
    p_ping = _Parser(prog="ping", add_help=False)
    p_ping.add_argument("dev")
    p_ping.add_argument("-c", type=int, default=4, dest="count")
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
        n = send(k, a.dev, a.length, a.proto, a.count, a.ipv6)
        if n < a.count:
            raise ValueError(f"stopped after {n} of {a.count} packets: the requester went away")
        return f"sent {n} {a.proto} packet{'s' if n != 1 else ''} of len {a.length} on {a.dev}\n"

    return {
        "send": (p_send, do_send),
        "ping": (p_ping, lambda k, a: ping(k, a.dev, a.count)),
        "skb-bench": (p_bench, lambda k, a: skb_bench_cmd(k, a.iterations, a.dev, a.clock)),
        "dmesg": (p_dmesg, lambda k, a: dmesg(k, read=not a.clear, clear=a.clear or a.read_clear)),
        "workload": (p_work, lambda k, a: workload(k, a.action, a.name)),
    }


COMMANDS = ("send", "ping", "skb-bench", "dmesg", "workload")


def usage() -> str:
    return ("commands: send DEV --len N [--proto udp|tcp|icmp] [--count K] [--ipv6]; "
            "ping DEV [-c K]; skb-bench [N] [--dev DEV]; dmesg [-c|-C]; "
            "workload start|stop NAME | workload list; btf\n")


def run_command(kernel: Kernel, argv: list[str]) -> tuple[int, str]:
    """Run one control command; ``(0, output)``, ``(1, error line)`` or ``(2, usage)``."""
    if argv[:1] == ["send"] and argv[1:2] and argv[1].startswith("tun"):   # send tun0 --src ...
        return tun.send_command(kernel, argv[1:])
    if argv[:1] == ["sysctl"]:
        from kernel_model.trace_stack import sysctl_command
        return sysctl_command(kernel, argv[1:])
    if argv == ["btf"]:     # the raw BTF (/sys/kernel/btf/vmlinux), base64: tracesim btf --mount
        from kernel_model.model_btf import model_btf_bytes
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
