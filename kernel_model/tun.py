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

import errno
import hashlib
from dataclasses import dataclass, field
from typing import Callable, Protocol

from filters.bpf import helpers_skb
from kernel_model import packets

TUNSETSTEERINGEBPF = 0x800454E0          # _IOR('T', 224, int)
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
    ctx = helpers_skb.sk_buff_context(skb, protocol=skb.protocol, queue_mapping=skb.queue_mapping,
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
    on_queued: Callable[[TunSkb], None] | None = None  # tracing hook (net_dev_queue & co.)

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

    def ioctl(self, request: int, arg: SteeringProgram | None) -> int:
        if request == TUNSETSTEERINGEBPF:
            return self.set_steering_ebpf(arg)
        return -errno.ENOTTY

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
        """The host sends ``frame`` through the device: pick a queue and deliver to it."""
        skb = make_skb(frame)
        queue = self.select_queue(skb)
        skb.queue_mapping = queue
        self.queue_packets[queue] += 1
        self.queue_bytes[queue] += len(frame)
        if self.on_queued is not None:
            self.on_queued(skb)
        return skb

    def write(self, queue: int, frame: bytes) -> None:
        """User space writes ``frame`` on ``queue`` (guest → host): learn its flow's queue."""
        if not 0 <= queue < self.numqueues:
            raise ValueError(f"{self.name} has queues 0..{self.numqueues - 1}, not {queue}")
        if self.steering_prog is None and self.numqueues > 1:
            self.flows[flow_hash_symmetric(frame)] = (queue, self.clock())

    def distribution(self) -> list[int]:
        return list(self.queue_packets)
