"""A multi-queue TAP device (drivers/net/tun.c) with an eBPF steering hook (TUNSETSTEERINGEBPF).

What is modelled, for packets the host stack transmits to the device (towards the guest):

- ``xmit(frame)`` makes the skb the driver sees: ``skb->data`` at the Ethernet header, the MAC
  header set there, the network header past the VLAN tags (as the stack leaves it), ``protocol``
  the inner EtherType.  ``select_queue`` (``tun_select_queue``) picks the queue, the skb's
  ``queue_mapping`` records it (tracepoints show it), and the queue's counters grow.
- With a steering program attached (``set_steering_ebpf``; only socket filters are accepted, as
  the kernel checks): ``tun_ebpf_select_queue`` runs it with a ``struct __sk_buff`` context (cb
  cleared) and delivers to ``(u16)ret % numqueues``; no queues → 0.
- Without one: ``tun_automq_select_queue``.  The symmetric flow hash of the packet (addresses,
  ports and protocol, each pair ordered so both directions agree) selects a queue learned from the
  flow table, else ``reciprocal_scale(hash, numqueues)`` = ``(hash * numqueues) >> 32``.  Flows
  are learned when user space writes a packet on a queue (``write()``, as ``tun_get_user`` does
  while no steering program is attached and there is more than one queue) and expire after
  ``TUN_FLOW_EXPIRE`` (3 s) of the caller's clock.  The kernel hashes the flow keys with siphash
  and a random boot-time key; the model uses keyed BLAKE2s with a fixed key, so values are
  deterministic but not those of any real machine (a hash of 0 becomes 1, as in the kernel).
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tracesim.kernel_model.net import packets
from tracesim.kernel_model.net.sk_buff_ctx import sk_buff_context

if TYPE_CHECKING:
    from tracesim.kernel_model.kernel import Kernel

TUN_FLOW_EXPIRE_NS = 3_000_000_000
DEFAULT_NUMQUEUES = 4
_FLOW_KEY = b"tracesim-flow-hash"


@dataclass
class TunSkb:
    """The sk_buff fields the steering path reads; offsets are from ``data`` (= skb->data)."""
    data: bytes
    network_header: int
    mac_header: int | None = 0
    protocol: int = 0                  # EtherType, host order
    queue_mapping: int = 0
    hash: int = 0
    vlan_tci: int | None = None


class SteeringProgram(Protocol):
    """What ``set_steering_ebpf`` accepts: a loaded program of a type and a way to run it."""
    prog_type: str

    def run(self, ctx: bytearray, env: object) -> int: ...


def make_skb(frame: bytes) -> TunSkb:
    """The skb of a frame handed to the device: MAC header at data, network header past tags."""
    parsed = packets.parse(frame)
    return TunSkb(bytes(frame), network_header=parsed.net_offset, mac_header=0,
                  protocol=parsed.ethertype)


def flow_hash_symmetric(frame: bytes) -> int:
    """The model's ``__skb_get_hash_symmetric``: a 32-bit hash of the flow keys with each
    address pair and port pair ordered, so both directions of a flow hash alike; never 0."""
    p = packets.parse(frame)
    addrs = sorted((p.src, p.dst))
    ports = sorted((p.sport, p.dport)) if not p.fragmented else (0, 0)
    key = f"{p.ethertype}|{addrs[0]}|{addrs[1]}|{p.proto}|{ports[0]}|{ports[1]}".encode()
    value = int.from_bytes(hashlib.blake2s(key, digest_size=4, key=_FLOW_KEY).digest(), "little")
    return value or 1


def run_steering(prog: SteeringProgram, skb: TunSkb, ifindex: int = 0) -> int:
    """``(u16) bpf_prog_run_clear_cb(prog, skb)``: the program's return value as TUN uses it."""
    ctx = sk_buff_context(skb, protocol=skb.protocol, queue_mapping=skb.queue_mapping,
                          ifindex=ifindex, skb_hash=skb.hash, vlan_tci=skb.vlan_tci)
    return prog.run(ctx, skb) & 0xFFFF


def reciprocal_scale(value: int, n: int) -> int:
    return (value * n) >> 32


@dataclass
class TunDevice:
    """A TAP device with ``numqueues`` queues and per-queue packet/byte counters."""
    name: str = "tun0"
    numqueues: int = DEFAULT_NUMQUEUES
    ifindex: int = 0
    steering_prog: SteeringProgram | None = None
    flows: dict = field(default_factory=dict)          # flow hash -> (queue, last use ns)
    queue_packets: list = field(default_factory=list)
    queue_bytes: list = field(default_factory=list)
    clock: Callable[[], int] = lambda: 0               # ns, for flow expiry
    net: Any = None                                    # the kernel's Net when registered there
    netdev: Any = None                                 # ... and its net_device
    last_skb: TunSkb | None = None

    def __post_init__(self) -> None:
        self.reset_counters()

    def reset_counters(self) -> None:
        self.queue_packets = [0] * self.numqueues
        self.queue_bytes = [0] * self.numqueues

    # -- ioctls ------------------------------------------------------------------------------
    def set_steering_ebpf(self, prog: SteeringProgram | None) -> int:
        """TUNSETSTEERINGEBPF: attach ``prog`` (None detaches).  0, or ``-EINVAL`` for a program
        that is not a socket filter."""
        if prog is not None and getattr(prog, "prog_type", None) != "socket_filter":
            return -errno.EINVAL
        self.steering_prog = prog
        return 0

    # -- queue selection -----------------------------------------------------------------------
    def ebpf_select_queue(self, skb: TunSkb) -> int:
        if not self.numqueues:
            return 0
        return run_steering(self.steering_prog, skb, self.ifindex) % self.numqueues

    def automq_select_queue(self, skb: TunSkb) -> int:
        txq = flow_hash_symmetric(skb.data)
        skb.hash = txq
        entry = self.flows.get(txq)
        if entry is not None and self.clock() - entry[1] <= TUN_FLOW_EXPIRE_NS:
            return entry[0]
        return reciprocal_scale(txq, self.numqueues)

    def select_queue(self, skb: TunSkb) -> int:
        if self.steering_prog is not None:
            return self.ebpf_select_queue(skb)
        return self.automq_select_queue(skb)

    # -- traffic -------------------------------------------------------------------------------
    def xmit(self, frame: bytes) -> TunSkb:
        """The host sends ``frame`` through the device: pick a queue and deliver to it.  In a
        kernel the frame takes the stack's transmit path (dev_queue_xmit, its tracepoints and
        kprobes), which asks the device for the queue (``ndo_select_queue``)."""
        if self.net is not None:
            self.net.xmit_frame(self.netdev, frame)
            return self.last_skb
        return self._queue(make_skb(frame))

    def ndo_select_queue(self, kskb: Any) -> int:
        """The kernel's transmit path asks for the queue of one of its ``SkBuff``s."""
        return self._queue(make_skb(self.net.frame_of(kskb))).queue_mapping

    def _queue(self, skb: TunSkb) -> TunSkb:
        queue = self.select_queue(skb)
        skb.queue_mapping = queue
        self.queue_packets[queue] += 1
        self.queue_bytes[queue] += len(skb.data)
        self.last_skb = skb
        return skb

    def write(self, queue: int, frame: bytes) -> None:
        """User space writes ``frame`` on ``queue`` (guest → host): learn its flow's queue."""
        if not 0 <= queue < self.numqueues:
            raise ValueError(f"{self.name} has queues 0..{self.numqueues - 1}, not {queue}")
        if self.steering_prog is None and self.numqueues > 1:
            self.flows[flow_hash_symmetric(frame)] = (queue, self.clock())


# ---------------------------------------------------------------- TUN devices in a kernel

_TUNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # Kernel -> {name: TunDevice}


def tun_device(kernel: Kernel, name: str = "tun0", numqueues: int = DEFAULT_NUMQUEUES) -> TunDevice:
    """The kernel's TUN device ``name``, created on first use (as ``ip tuntap add NAME mode tap
    multi_queue`` with ``numqueues`` queues opened would): a net_device whose transmit path asks
    the device for the queue."""
    devices = _TUNS.setdefault(kernel, {})
    tun = devices.get(name)
    if tun is None:
        netdev = kernel.net.add_device(name, rx_queues=numqueues)
        tun = TunDevice(name, numqueues, ifindex=netdev.ifindex, clock=kernel.clock.peek_ns,
                        net=kernel.net, netdev=netdev)
        kernel.net.select_queue[name] = tun.ndo_select_queue
        devices[name] = tun
    return tun


SEND_USAGE = ("send TUNDEV --src ADDR --dst ADDR [--proto tcp|udp|icmp] [--sport N] [--dport N] "
              "[--vlan VID]... [--df] [--len N] [--count K]")
SEND_COMM = "tracesim-ctl"


class _SendParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise ValueError(f"send: {message}\nusage: {SEND_USAGE}")


def _send_parser() -> argparse.ArgumentParser:
    p = _SendParser(prog="send", add_help=False)
    p.add_argument("dev")
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--proto", choices=("tcp", "udp", "icmp"), default="udp")
    p.add_argument("--sport", type=int, default=0)
    p.add_argument("--dport", type=int, default=0)
    p.add_argument("--vlan", type=int, action="append", default=[])
    p.add_argument("--df", action="store_true")
    p.add_argument("--len", type=int, default=0, dest="payload_len", help="payload bytes")
    p.add_argument("--count", type=int, default=1)
    return p


def send_command(kernel: Kernel, argv: list[str]) -> tuple[int, str]:
    """``send tun0 --src A --dst B ...`` of the control channel: the host transmits ``--count``
    packets of one flow through the TUN device; prints the queue(s) they went to.
    Returns ``(status, text)`` as ``control.run_command`` does (0 ok, 2 usage error)."""
    try:
        a = _send_parser().parse_args(argv)
        for value, what in ((a.sport, "--sport"), (a.dport, "--dport")):
            if not 0 <= value <= 0xFFFF:
                raise ValueError(f"send: {what} {value} is not a port (0..65535)")
        if a.count < 0 or a.payload_len < 0:
            raise ValueError("send: --count and --len must be >= 0")
        flow = packets.Flow(a.src, a.dst, a.proto, a.sport, a.dport, vlans=tuple(a.vlan),
                            payload=bytes(a.payload_len), df=a.df)
        frame = packets.flow_frame(flow)
    except ValueError as err:
        return 2, f"{err}\n"
    with kernel.lock:
        tun = tun_device(kernel, a.dev)
        queues: dict[int, int] = {}
        with kernel.machine.running(kernel.user_task(SEND_COMM)):
            for _ in range(a.count):
                q = tun.xmit(frame).queue_mapping
                queues[q] = queues.get(q, 0) + 1
    where = ", ".join(f"queue {q}" + (f" x{n}" if n > 1 else "") for q, n in sorted(queues.items()))
    plural = "s" if a.count != 1 else ""
    return 0, (f"sent {a.count} {a.proto} packet{plural} {_endpoint(a.src, a.sport, a.proto)} > "
               f"{_endpoint(a.dst, a.dport, a.proto)} on {a.dev}: {where or 'nothing sent'}\n")


def _endpoint(addr: str, port: int, proto: str) -> str:
    if proto == "icmp":
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
