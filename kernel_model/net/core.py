"""Net devices, sk_buffs and the receive/transmit paths of the modelled kernel.

``SkBuff`` and ``NetDevice`` are Python objects whose attributes carry the C field names
(``skb.len``, ``skb.dev.name`` ...) and are mirrored into simulated memory at the offsets the
headers under ``kernel_model/include`` give (one ``struct.pack_into`` per ``sync()``), so a BPF
program reading ``skb->dev->name`` through ``bpf_probe_read`` sees what the tracepoints see.
Model functions change attributes and then call ``sync()``; the packet bytes live in the skb's
data buffer (``head``/``data``) in simulated memory.

The functions follow Linux 6.18, step by step (allocation, fields set, freed), with their
tracepoints and kprobe sites:

* ``__netdev_alloc_skb`` → ``__alloc_skb``: the head from ``skbuff_head_cache``, the data from
  ``skbuff_small_head`` (small) or kmalloc; ``NET_SKB_PAD`` headroom reserved.
* ``kfree_skb`` (``sk_skb_reason_drop``; skb:kfree_skb with a drop reason), ``consume_skb``
  (skb:consume_skb); both end in ``__kfree_skb``: data freed, then the head.
* receive: a NIC frame arrives in hardirq (``receive``), NET_RX softirq runs ``net_rx_action`` →
  ``napi_poll`` (napi:napi_poll) → the driver's poll allocates the skb, copies the frame,
  ``eth_type_trans`` → ``netif_receive_skb`` → ``__netif_receive_skb`` →
  ``__netif_receive_skb_core`` (net:netif_receive_skb; its first argument is ``struct sk_buff
  **pskb`` in 6.18, a pointer to a stack slot holding the skb) → ip_rcv/ipv6_rcv → the socket
  consumes it (consume_skb) or it is dropped (kfree_skb, NO_SOCKET / UNHANDLED_PROTO).
* transmit: ``dev_queue_xmit`` (net:net_dev_queue) → ``dev_hard_start_xmit`` → the driver
  (net:net_dev_xmit); loopback's driver is ``loopback_xmit`` → ``netif_rx`` (net:netif_rx) →
  the per-CPU backlog, processed by ``process_backlog`` when bottom halves are re-enabled; a NIC
  completes the transmit at once (consume_skb).
* ICMP echo requests to the host are answered on the device they came from.

Context: receive runs in softirq with the RCU read lock held (preempt depth 1, ``..s1.``), as
on the reference machine; transmit runs with bottom halves disabled.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from tracesim.kernel_model.c_types import kernel_types
from tracesim.kernel_model.mm.slab import (
    GFP_ATOMIC,
    GFP_KERNEL,
    GFP_NOMEMALLOC,
    GFP_NOWARN,
    SLAB_HWCACHE_ALIGN,
    KmemCache,
)
from tracesim.kernel_model.net import packets
from tracesim.kernel_model.trace.events.irq import NET_RX_SOFTIRQ
from tracesim.kernel_model.trace.events.skb import DROP_REASON_VALUES

if TYPE_CHECKING:
    from tracesim.kernel_model.kernel import Kernel

NET_SKB_PAD = 64
SMP_CACHE_BYTES = 64
SKB_SMALL_HEAD_CACHE_SIZE = 640          # SKB_HEAD_ALIGN(MAX_TCP_HEADER)
NAPI_POLL_WEIGHT = 64
NAPI_STATE_SCHED = 1
PARSE_MEMO_MAX = 1024                    # frames whose parse _ip_deliver remembers
ETH_HLEN = packets.ETH_HLEN
ETH_P_IP, ETH_P_IPV6, ETH_P_ARP = packets.ETH_P_IP, packets.ETH_P_IPV6, packets.ETH_P_ARP
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST = 0, 1, 2, 3
NET_RX_SUCCESS, NETDEV_TX_OK = 0, 0
ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 772
IFF_UP, IFF_BROADCAST, IFF_LOOPBACK, IFF_RUNNING, IFF_MULTICAST = 0x1, 0x2, 0x8, 0x40, 0x1000
LOOPBACK_MTU = 65536
ETH_DATA_LEN = 1500

# enum skb_drop_reason: one table, kernel_model/events/skb.py (the kfree_skb format prints it).
SKB_NOT_DROPPED_YET = 0
SKB_CONSUMED = 1
SKB_DROP_REASON_NOT_SPECIFIED = DROP_REASON_VALUES["NOT_SPECIFIED"]
SKB_DROP_REASON_NO_SOCKET = DROP_REASON_VALUES["NO_SOCKET"]
SKB_DROP_REASON_PKT_TOO_SMALL = DROP_REASON_VALUES["PKT_TOO_SMALL"]
SKB_DROP_REASON_TCP_CSUM = DROP_REASON_VALUES["TCP_CSUM"]
SKB_DROP_REASON_UDP_CSUM = DROP_REASON_VALUES["UDP_CSUM"]
SKB_DROP_REASON_OTHERHOST = DROP_REASON_VALUES["OTHERHOST"]
SKB_DROP_REASON_UNHANDLED_PROTO = DROP_REASON_VALUES["UNHANDLED_PROTO"]
SKB_DROP_REASON_QDISC_DROP = DROP_REASON_VALUES["QDISC_DROP"]
SKB_DROP_REASON_NETFILTER_DROP = DROP_REASON_VALUES["NETFILTER_DROP"]
DISCARD_PORT = 9      # the port the host listens on by default (TCP and UDP "discard")


def htons(v: int) -> int:
    return ((v & 0xff) << 8) | (v >> 8)


def skb_data_align(n: int) -> int:
    return (n + SMP_CACHE_BYTES - 1) & ~(SMP_CACHE_BYTES - 1)


# SKB_DATA_ALIGN(sizeof(struct skb_shared_info)): 320 on 6.18 x86-64
SKB_SHINFO_SIZE = skb_data_align(kernel_types().struct("skb_shared_info").size)


class _Mirror:
    """Packs chosen fields of a C struct from a Python object's attributes in one call.

    ``fields`` maps C member names to attribute names; members are packed in offset order with
    the bytes between them written as zeros (the model keeps unmodelled members at zero).
    """

    def __init__(self, tag: str, fields: dict[str, str]) -> None:
        st = kernel_types().struct(tag)
        self.size = st.size
        placed = []
        for member, attr in fields.items():
            m = st.field(member)
            size = m.type.size
            code = {1: "B", 2: "H", 4: "I", 8: "Q"}.get(size, f"{size}s")
            if m.bit_size is not None:
                code = "B"                    # a bitfield's whole storage byte
            placed.append((m.offset, size if m.bit_size is None else 1, code, attr))
        placed.sort()
        fmt, pos = "<", placed[0][0]
        self.start = pos
        for off, size, code, _ in placed:
            if off < pos:
                raise ValueError(f"struct {tag}: mirrored members overlap at {off}")
            fmt += "x" * (off - pos) + code
            pos = off + size
        self.struct = struct.Struct(fmt)
        self.get = attrgetter(*(attr for _, _, _, attr in placed))
        self.offsets = {attr: off for off, _, _, attr in placed}

    def write(self, buf: bytearray, off: int, obj: Any) -> None:
        self.struct.pack_into(buf, off + self.start, *self.get(obj))


SKB_MIRROR_FIELDS = {
    "dev": "dev_addr", "len": "len", "data_len": "data_len", "mac_len": "mac_len",
    "queue_mapping": "queue_mapping", "pkt_type": "pkt_type", "alloc_cpu": "alloc_cpu",
    "priority": "priority", "skb_iif": "skb_iif", "hash": "hash", "napi_id": "napi_id",
    "mark": "mark", "protocol": "protocol", "transport_header": "transport_header",
    "network_header": "network_header", "mac_header": "mac_header", "tail": "tail",
    "end": "end", "head": "head", "data": "data", "truesize": "truesize", "users": "users",
}


class SkBuff:
    """A ``struct sk_buff``: C-named attributes, ``addr`` of the struct in memory.

    ``protocol`` holds the __be16 as it sits in memory read in host order (IPv4: 0x0008), like
    ``skb->protocol``; ``dev`` is a ``NetDevice`` (or None); header offsets are from ``head``.
    """

    __slots__ = ("addr", "dev", "dev_addr", "len", "data_len", "mac_len", "queue_mapping",
                 "pkt_type", "alloc_cpu", "priority", "skb_iif", "hash", "napi_id", "mark",
                 "protocol", "transport_header", "network_header", "mac_header", "tail", "end",
                 "head", "data", "truesize", "users", "_buf", "_off", "head_cache")

    addr: int
    dev: NetDevice | None
    dev_addr: int
    len: int
    data_len: int
    mac_len: int
    queue_mapping: int
    pkt_type: int
    alloc_cpu: int
    priority: int
    skb_iif: int
    hash: int
    napi_id: int
    mark: int
    protocol: int
    transport_header: int
    network_header: int
    mac_header: int
    tail: int
    end: int
    head: int
    data: int
    truesize: int
    users: int
    _buf: bytearray      # the memory region's buffer the struct sits in, and its offset there
    _off: int
    head_cache: KmemCache | SharedData | None  # SharedData: a clone's buffer, shared

    def __repr__(self) -> str:
        name = self.dev.name if self.dev is not None else None
        return f"<sk_buff 0x{self.addr:x} dev={name} len={self.len}>"


class SharedData:
    """The data buffer of an skb and its clones (``skb_shinfo(skb)->dataref``): freed with the
    last of them. Cloned skbs hold one of these in ``head_cache`` instead of the cache."""

    __slots__ = ("cache", "dataref")

    def __init__(self, cache: Any) -> None:
        self.cache = cache
        self.dataref = 1


class NetDevice:
    """A ``struct net_device`` (name, ifindex, mtu, flags, type, addresses) plus its counters."""

    __slots__ = ("addr", "name", "name_bytes", "ifindex", "mtu", "flags", "type",
                 "hard_header_len", "addr_len", "num_rx_queues", "real_num_rx_queues",
                 "num_tx_queues", "real_num_tx_queues", "dev_addr_ptr", "perm_addr", "mac",
                 "ipv4", "ipv6", "peer_ipv4", "peer_ipv6", "napi", "rx_ring", "loopback",
                 "rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped")

    addr: int
    name: str
    name_bytes: bytes
    ifindex: int
    mtu: int
    flags: int
    type: int
    hard_header_len: int
    addr_len: int
    num_rx_queues: int
    real_num_rx_queues: int
    num_tx_queues: int
    real_num_tx_queues: int
    dev_addr_ptr: int
    perm_addr: bytes
    mac: bytes
    ipv4: str
    ipv6: str
    peer_ipv4: str
    peer_ipv6: str
    napi: list[Napi]
    rx_ring: list[list[Any]]
    loopback: bool
    rx_packets: int
    tx_packets: int
    rx_bytes: int
    tx_bytes: int
    rx_dropped: int

    def __repr__(self) -> str:
        return f"<net_device {self.name} ifindex={self.ifindex}>"


class Napi:
    """A ``struct napi_struct``: the backlog of a CPU (``dev`` None) or a NIC's queue."""

    __slots__ = ("addr", "dev", "dev_addr", "weight", "napi_id", "poll", "state", "queue",
                 "cpu")

    addr: int
    dev: NetDevice | None
    dev_addr: int
    weight: int
    napi_id: int
    poll: Callable[..., int]
    state: int
    queue: list[Any]
    cpu: int

    def __repr__(self) -> str:
        return f"<napi 0x{self.addr:x} dev={self.dev.name if self.dev else None}>"


NETDEV_MIRROR_FIELDS = {
    "name": "name_bytes", "ifindex": "ifindex", "flags": "flags", "mtu": "mtu", "type": "type",
    "hard_header_len": "hard_header_len", "num_tx_queues": "num_tx_queues",
    "real_num_tx_queues": "real_num_tx_queues", "num_rx_queues": "num_rx_queues",
    "real_num_rx_queues": "real_num_rx_queues", "addr_len": "addr_len",
    "perm_addr": "perm_addr", "dev_addr": "dev_addr_ptr",
}
NAPI_MIRROR_FIELDS = {"weight": "weight", "dev": "dev_addr", "napi_id": "napi_id"}


class _NoEvent:
    """An event the tracing core does not declare: never enabled (its call sites cost one check)."""

    enabled = False


def device_addresses(name: str, index: int) -> tuple[str, str, str, str]:
    """(host IPv4, peer IPv4, host IPv6, peer IPv6) of a device: ethN → 10.0.N.1 / 10.0.N.2."""
    if name == "lo":
        return "127.0.0.1", "127.0.0.1", "::1", "::1"
    digits = "".join(ch for ch in name if ch.isdigit())
    n = int(digits) % 256 if digits else 100 + index
    return f"10.0.{n}.1", f"10.0.{n}.2", f"fd00::{n:x}:1", f"fd00::{n:x}:2"


class Net:
    """The network stack: devices, skb alloc/free, receive and transmit."""

    def __init__(self, kernel: Kernel, devices: tuple[str, ...] = ("lo", "eth0", "eth5")) -> None:
        self.kernel = kernel
        self.mem = kernel.mem
        self.slab = kernel.slab
        self.machine = kernel.machine
        ks = kernel.kallsyms
        self.skb_mirror = _Mirror("sk_buff", SKB_MIRROR_FIELDS)
        self.dev_mirror = _Mirror("net_device", NETDEV_MIRROR_FIELDS)
        self.napi_mirror = _Mirror("napi_struct", NAPI_MIRROR_FIELDS)
        self.skb_zero_len = kernel_types().struct("sk_buff").field("tail").offset
        self._skb_zeros = bytes(self.skb_zero_len)  # memset(skb, 0, offsetof(struct sk_buff, tail))
        self.head_cache = self.slab.kmem_cache_create(
            "skbuff_head_cache", self.skb_mirror.size, SMP_CACHE_BYTES, SLAB_HWCACHE_ALIGN)
        self.small_head_cache = self.slab.kmem_cache_create(
            "skbuff_small_head", SKB_SMALL_HEAD_CACHE_SIZE, SMP_CACHE_BYTES, SLAB_HWCACHE_ALIGN)
        self.skb_truesize_overhead = skb_data_align(self.skb_mirror.size) + SKB_SHINFO_SIZE
        # tracepoints (the static keys live on the event objects)
        ev = self._event
        self.tp_kfree_skb = ev("skb", "kfree_skb")
        self.tp_consume_skb = ev("skb", "consume_skb")
        self.tp_netif_receive_skb = ev("net", "netif_receive_skb")
        self.tp_netif_receive_skb_entry = ev("net", "netif_receive_skb_entry")
        self.tp_netif_rx = ev("net", "netif_rx")
        self.tp_netif_rx_entry = ev("net", "netif_rx_entry")
        self.tp_net_dev_queue = ev("net", "net_dev_queue")
        self.tp_net_dev_start_xmit = ev("net", "net_dev_start_xmit")
        self.tp_net_dev_xmit = ev("net", "net_dev_xmit")
        self.tp_softirq_raise = ev("irq", "softirq_raise")
        self.tp_softirq_entry = ev("irq", "softirq_entry")
        self.tp_softirq_exit = ev("irq", "softirq_exit")
        self.tp_napi_poll = ev("napi", "napi_poll")
        # kprobe sites
        site = kernel.kprobes.site
        self.kp_alloc_skb = site("__alloc_skb")
        self.kp_netdev_alloc_skb = site("__netdev_alloc_skb")
        self.kp_reason_drop = site("sk_skb_reason_drop")
        self.kp_consume_skb = site("consume_skb")
        self.kp_kfree_skb_core = site("__kfree_skb")
        self.kp_release_data = site("skb_release_data")
        self.kp_kfree_skbmem = site("kfree_skbmem")
        self.kp_enqueue_backlog = site("enqueue_to_backlog")
        self.kp_net_rx_action = site("net_rx_action")
        self.kp_eth_type_trans = site("eth_type_trans")
        self.kp_dev_queue_xmit = site("__dev_queue_xmit")
        self.kp_hard_start_xmit = site("dev_hard_start_xmit")
        self.kp_loopback_xmit = site("loopback_xmit")
        self.kp_netif_rx = site("netif_rx")
        self.kp_netif_receive_skb = site("netif_receive_skb")
        self.kp_netif_receive_skb_int = site("__netif_receive_skb")
        self.kp_receive_core = site("__netif_receive_skb_core")
        self.kp_napi_poll = site("napi_poll")
        self.kp_process_backlog = site("process_backlog")
        self.kp_virtnet_poll = site("virtnet_poll")
        self.kp_ip_rcv = site("ip_rcv")
        self.kp_ipv6_rcv = site("ipv6_rcv")
        self.kp_icmp_rcv = site("icmp_rcv")
        self.kp_kmalloc_reserve = site("kmalloc_reserve")
        self.kp_netif_rx_core = site("__netif_rx")
        self.kp_ip_rcv_finish = site("ip_rcv_finish")
        self.kp_ip_local_deliver = site("ip_local_deliver")
        self.kp_ip_local_deliver_finish = site("ip_local_deliver_finish")
        self.kp_ip_protocol_deliver = site("ip_protocol_deliver_rcu")
        self.kp_ip6_input = site("ip6_input")
        self.kp_ip6_protocol_deliver = site("ip6_protocol_deliver_rcu")
        self.kp_skb_clone = site("skb_clone")
        self.kp_ip_local_out = site("ip_local_out")
        self.kp_ip_output = site("ip_output")
        self.kp_ip_finish_output2 = site("ip_finish_output2")
        self.tp_netif_receive_skb_exit = ev("net", "netif_receive_skb_exit")
        # return addresses the functions pass as call_site/location (_RET_IP_)
        self.ip_alloc_head = ks.addr("__alloc_skb") + 0x5c
        self.ip_alloc_data = ks.addr("kmalloc_reserve") + 0x5d
        self.ip_clone = ks.addr("skb_clone") + 0x7c
        self.ip_qdisc_drop = ks.addr("__dev_queue_xmit") + 0x8a6
        self.ip_nf_drop = ks.addr("nf_hook_slow") + 0x8c
        self.ip_release_data = ks.addr("skb_release_data") + 0x136
        self.ip_kfree_skbmem = ks.addr("kfree_skbmem") + 0x5e
        self.ip_deliver = {4: ks.addr("ip_rcv_core") + 0x9a, 6: ks.addr("ipv6_rcv") + 0xa3}
        self.ip_icmp = ks.addr("icmp_rcv") + 0x1a4
        self.ip_unhandled = ks.addr("__netif_receive_skb_core") + 0x3b2
        self.ip_tx_done = ks.addr("virtnet_poll") + 0x2c8
        # per-CPU: a stack slot for **pskb, the backlog napi, its queue
        self._pskb_slots = [self.slab.kmalloc(8, GFP_KERNEL) for _ in self.machine.cpus]
        self.backlogs = [self._make_napi(None, cpu.id) for cpu in self.machine.cpus]
        self.poll_list: list[list[Napi]] = [[] for _ in self.machine.cpus]
        self.listeners: set[tuple[int, int]] = {(packets.IPPROTO_UDP, DISCARD_PORT),
                                                (packets.IPPROTO_TCP, DISCARD_PORT)}
        # device name -> the root qdisc's verdict on an skb: True drops it (QDISC_DROP)
        self.qdisc_drop: dict[str, Any] = {}
        # the netfilter INPUT chain: (protocol, destination port) of its DROP rules
        self.nf_input_drop: set[tuple[int, int]] = set()
        self._parsed: dict[bytes, Any] = {}            # frame -> packets.Parsed (_parse_frame)
        self.devices: dict[str, NetDevice] = {}
        self.select_queue: dict[str, Any] = {}      # device name -> ndo_select_queue(skb) -> queue
        for name in devices:
            self.add_device(name)
        self.sockets: Any = None       # the transport layer (sockets.Sockets), set by Kernel

    def _event(self, system: str, name: str) -> Any:
        try:
            return self.kernel.tracing.event(system, name)
        except KeyError:
            return _NoEvent

    # ------------------------------------------------------------------ devices
    def add_device(self, name: str, mtu: int | None = None, rx_queues: int | None = None) -> NetDevice:
        """Register a device: ``lo`` is loopback, anything else an Ethernet NIC."""
        if name in self.devices:
            raise ValueError(f"device {name!r} exists")
        if not name or len(name.encode()) > 15 or "/" in name or " " in name:
            raise ValueError(f"invalid device name {name!r}")
        dev = NetDevice()
        dev.name = name
        dev.name_bytes = name.encode().ljust(16, b"\0")
        dev.ifindex = len(self.devices) + 1
        dev.loopback = name == "lo"
        nq = 1 if dev.loopback else (rx_queues or self.machine.nr_cpus)
        dev.num_rx_queues = dev.real_num_rx_queues = nq
        dev.num_tx_queues = dev.real_num_tx_queues = nq
        dev.mtu = mtu or (LOOPBACK_MTU if dev.loopback else ETH_DATA_LEN)
        dev.type = ARPHRD_LOOPBACK if dev.loopback else ARPHRD_ETHER
        dev.flags = IFF_UP | IFF_RUNNING | (IFF_LOOPBACK if dev.loopback else IFF_BROADCAST | IFF_MULTICAST)
        dev.hard_header_len = ETH_HLEN
        dev.addr_len = 6
        dev.mac = bytes(6) if dev.loopback else bytes([0x52, 0x54, 0, 0x12, 0x34, 0x56 + dev.ifindex])
        dev.perm_addr = dev.mac.ljust(32, b"\0")
        dev.ipv4, dev.peer_ipv4, dev.ipv6, dev.peer_ipv6 = device_addresses(name, dev.ifindex)
        dev.addr = self.slab.kzalloc(self.dev_mirror.size, GFP_KERNEL)
        dev.dev_addr_ptr = dev.addr + self.dev_mirror.offsets["perm_addr"]
        dev.rx_ring = [[] for _ in range(nq)]
        dev.rx_packets = dev.tx_packets = dev.rx_bytes = dev.tx_bytes = dev.rx_dropped = 0
        buf, off = self.mem.resolve(dev.addr, self.dev_mirror.size)
        self.dev_mirror.write(buf, off, dev)
        dev.napi = [] if dev.loopback else [self._make_napi(dev, q) for q in range(nq)]
        self.devices[name] = dev
        return dev

    def _make_napi(self, dev: NetDevice | None, queue: int) -> Napi:
        napi = Napi()
        napi.addr = self.slab.kzalloc(self.napi_mirror.size, GFP_KERNEL)
        napi.dev = dev
        napi.dev_addr = dev.addr if dev is not None else 0
        napi.weight = NAPI_POLL_WEIGHT
        napi.napi_id = 0 if dev is None else 0x2000 + dev.ifindex * 16 + queue
        napi.poll = self.process_backlog if dev is None else self.virtnet_poll
        napi.state = 0
        napi.queue = [] if dev is None else dev.rx_ring[queue]
        napi.cpu = queue
        buf, off = self.mem.resolve(napi.addr, self.napi_mirror.size)
        self.napi_mirror.write(buf, off, napi)
        return napi

    def device(self, name: str) -> NetDevice:
        try:
            return self.devices[name]
        except KeyError:
            raise KeyError(f"no such device: {name}") from None

    # ------------------------------------------------------------------ skb alloc/free
    def sync(self, skb: SkBuff) -> None:
        """Mirror the skb's attributes into its struct in memory."""
        self.skb_mirror.write(skb._buf, skb._off, skb)

    def _alloc_skb_core(self, size: int, gfp: int, flags: int = 0, node: int = -1) -> SkBuff:
        slab = self.slab
        addr = slab.kmem_cache_alloc(self.head_cache, gfp & ~1, self.ip_alloc_head, node)
        kp = self.kp_kmalloc_reserve
        if kp.active:
            data, cache, osize = kp.call(self._kmalloc_reserve, size, gfp, node, 0)
        else:                                    # kmalloc_reserve's small-head case, inline
            osize = skb_data_align(size) + SKB_SHINFO_SIZE
            if osize <= SKB_SMALL_HEAD_CACHE_SIZE:
                cache = self.small_head_cache
                data = slab.kmem_cache_alloc(cache, gfp | GFP_NOMEMALLOC | GFP_NOWARN,
                                             self.ip_alloc_data, node)
                osize = cache.size
            else:
                data, cache, osize = self._kmalloc_reserve(size, gfp, node, 0)
        size = osize - SKB_SHINFO_SIZE
        region = self.mem.pages[addr >> 12]
        off = addr - region.base
        region.buf[off:off + self.skb_zero_len] = self._skb_zeros
        skb = SkBuff()
        skb.addr, skb._buf, skb._off, skb.head_cache = addr, region.buf, off, cache
        skb.dev, skb.dev_addr = None, 0
        skb.len = skb.data_len = skb.mac_len = skb.queue_mapping = skb.pkt_type = 0
        skb.priority = skb.skb_iif = skb.hash = skb.napi_id = skb.mark = skb.protocol = 0
        skb.network_header = 0
        skb.mac_header = skb.transport_header = 0xffff
        skb.alloc_cpu = self.machine.current.id
        skb.head = skb.data = data
        skb.tail = 0
        skb.end = size
        skb.truesize = size + self.skb_truesize_overhead
        skb.users = 1
        return skb

    def _kmalloc_reserve(self, size: int, gfp: int, node: int, pfmemalloc: int) -> tuple:
        """``kmalloc_reserve``: the data buffer from ``skbuff_small_head`` when it fits, else
        kmalloc (which rounds to its size class). Returns (data, its cache or None, usable
        size); the kernel passes the size by pointer and updates it."""
        slab = self.slab
        osize = skb_data_align(size) + SKB_SHINFO_SIZE
        if osize <= SKB_SMALL_HEAD_CACHE_SIZE:
            cache = self.small_head_cache
            return (slab.kmem_cache_alloc(cache, gfp | GFP_NOMEMALLOC | GFP_NOWARN,
                                          self.ip_alloc_data, node), cache, cache.size)
        data = slab.kmalloc(osize, gfp | GFP_NOMEMALLOC | GFP_NOWARN, self.ip_alloc_data, node)
        return data, None, slab.ksize(data)

    def alloc_skb(self, size: int, gfp: int = GFP_KERNEL) -> SkBuff:
        """``__alloc_skb(size, gfp, 0, NUMA_NO_NODE)`` (mirrored into memory)."""
        kp = self.kp_alloc_skb
        skb = (kp.call(self._alloc_skb_core, size, gfp, 0, -1) if kp.active
               else self._alloc_skb_core(size, gfp))
        self.sync(skb)
        return skb

    def _netdev_alloc_skb(self, dev: NetDevice, length: int, gfp: int) -> SkBuff:
        kp = self.kp_alloc_skb
        size = length + NET_SKB_PAD
        skb = (kp.call(self._alloc_skb_core, size, gfp, 0, -1) if kp.active
               else self._alloc_skb_core(size, gfp))
        skb.data += NET_SKB_PAD                  # skb_reserve(skb, NET_SKB_PAD)
        skb.tail += NET_SKB_PAD
        skb.dev, skb.dev_addr = dev, dev.addr
        self.sync(skb)
        return skb

    def netdev_alloc_skb(self, dev: NetDevice, length: int, gfp: int = GFP_ATOMIC) -> SkBuff:
        """``netdev_alloc_skb(dev, length)`` = ``__netdev_alloc_skb(dev, length, GFP_ATOMIC)``."""
        kp = self.kp_netdev_alloc_skb
        if kp.active:
            return kp.call(self._netdev_alloc_skb, dev, length, gfp)
        return self._netdev_alloc_skb(dev, length, gfp)


    def skb_put(self, skb: SkBuff, data: bytes) -> None:
        """Append ``data`` at the tail (the driver copying a frame in)."""
        n = len(data)
        if skb.tail + n > skb.end:
            raise ValueError(f"skb_put over end: tail {skb.tail} + {n} > end {skb.end}")
        self.mem.write(skb.head + skb.tail, data)
        skb.tail += n
        skb.len += n

    def _free_skb(self, skb: SkBuff) -> None:
        """``__kfree_skb``: release the data (skb_release_data), then the head (kfree_skbmem)."""
        kp = self.kp_release_data
        if kp.active:
            kp.call(self._release_data, skb, SKB_DROP_REASON_NOT_SPECIFIED)
        else:
            self._release_data(skb, SKB_DROP_REASON_NOT_SPECIFIED)
        kp = self.kp_kfree_skbmem
        if kp.active:
            kp.call(self._kfree_skbmem, skb)
        else:
            self.slab.kmem_cache_free(self.head_cache, skb.addr, self.ip_kfree_skbmem)

    def _release_data(self, skb: SkBuff, reason: int) -> None:
        cache = skb.head_cache
        if cache is self.small_head_cache:       # the common case first: one compare
            self.slab.kmem_cache_free(cache, skb.head, self.ip_release_data)
            return
        if isinstance(cache, SharedData):        # a clone's buffer: freed with the last user
            cache.dataref -= 1
            if cache.dataref:
                return
            cache = cache.cache
        if cache is not None:
            self.slab.kmem_cache_free(cache, skb.head, self.ip_release_data)
        else:
            self.slab.kfree(skb.head, self.ip_release_data)

    def _kfree_skbmem(self, skb: SkBuff) -> None:
        self.slab.kmem_cache_free(self.head_cache, skb.addr, self.ip_kfree_skbmem)

    def _reason_drop(self, sk: int, skb: SkBuff, reason: int, location: int) -> None:
        if skb.users != 1:                       # skb_unref: someone else still holds it
            skb.users -= 1
            self.sync(skb)
            return
        if reason == SKB_CONSUMED:
            tp = self.tp_consume_skb
            if tp.enabled:
                tp.fire(skb, location)
        else:
            tp = self.tp_kfree_skb
            if tp.enabled:
                tp.fire(skb, location, reason, sk)
        kp = self.kp_kfree_skb_core
        if kp.active:
            kp.call(self._free_skb, skb)
        else:
            self._free_skb(skb)

    def kfree_skb(self, skb: SkBuff | None, reason: int = SKB_DROP_REASON_NOT_SPECIFIED,
                  location: int = 0, sk: Any = 0) -> None:
        """``kfree_skb_reason(skb, reason)`` → ``sk_skb_reason_drop(sk, skb, reason)``.

        ``location`` is the caller's return address (the event's ``location``); ``sk`` the
        receiving socket, when the drop happens at one (the event's ``rx_sk``)."""
        if skb is None:
            return
        kp = self.kp_reason_drop
        if kp.active:
            kp.call(self._reason_drop, sk, skb, reason, location)
        else:
            self._reason_drop(sk, skb, reason, location)

    def free_skb_quietly(self, skb: SkBuff) -> None:
        """``__kfree_skb``: free without a skb: event, as the kernel does where the skb did its
        job in a protocol's fast path (a TCP ACK, a datagram read by recvmsg)."""
        kp = self.kp_kfree_skb_core
        if kp.active:
            kp.call(self._free_skb, skb)
        else:
            self._free_skb(skb)

    def _consume(self, skb: SkBuff, location: int) -> None:
        self._reason_drop(0, skb, SKB_CONSUMED, location)

    def consume_skb(self, skb: SkBuff | None, location: int = 0) -> None:
        """Free an skb that did its job (skb:consume_skb, not a drop)."""
        if skb is None:
            return
        kp = self.kp_consume_skb
        if kp.active:
            kp.call(self._consume, skb, location)
        else:
            self._consume(skb, location)

    def skb_clone(self, skb: SkBuff, gfp: int = GFP_ATOMIC) -> SkBuff:
        """``skb_clone``: a new sk_buff (head from ``skbuff_head_cache``) sharing the data."""
        kp = self.kp_skb_clone
        return kp.call(self._skb_clone, skb, gfp) if kp.active else self._skb_clone(skb, gfp)

    def _skb_clone(self, skb: SkBuff, gfp: int) -> SkBuff:
        shared = skb.head_cache
        if type(shared) is not SharedData:
            shared = skb.head_cache = SharedData(shared)
        shared.dataref += 1
        addr = self.slab.kmem_cache_alloc(self.head_cache, gfp, self.ip_clone)
        region = self.mem.pages[addr >> 12]
        n = SkBuff()
        for name in SkBuff.__slots__:
            setattr(n, name, getattr(skb, name))
        n.addr, n._buf, n._off, n.users = addr, region.buf, addr - region.base, 1
        self.sync(n)
        return n

    # ------------------------------------------------------------------ helpers on skbs
    def eth_type_trans(self, skb: SkBuff, dev: NetDevice) -> int:
        """Set dev, mac header, pkt_type; pull the Ethernet header; return the protocol (be16)."""
        kp = self.kp_eth_type_trans
        return kp.call(self._eth_type_trans, skb, dev) if kp.active else self._eth_type_trans(skb, dev)

    def _eth_type_trans(self, skb: SkBuff, dev: NetDevice) -> int:
        skb.dev, skb.dev_addr = dev, dev.addr
        skb.mac_header = skb.data - skb.head
        eth = self.mem.read(skb.data, ETH_HLEN)
        dst = eth[:6]
        if dst[0] & 1:
            skb.pkt_type = PACKET_BROADCAST if dst == b"\xff" * 6 else PACKET_MULTICAST
        elif not dev.loopback and dst != dev.mac:
            skb.pkt_type = PACKET_OTHERHOST
        else:
            skb.pkt_type = PACKET_HOST
        skb.data += ETH_HLEN                     # skb_pull_inline(skb, ETH_HLEN)
        skb.len -= ETH_HLEN
        skb.protocol = int.from_bytes(eth[12:14], "little")   # __be16 as stored
        return skb.protocol

    def frame_of(self, skb: SkBuff) -> bytes:
        """The skb's linear data from the MAC header to the tail."""
        start = skb.head + (skb.mac_header if skb.mac_header != 0xffff else skb.data - skb.head)
        return self.mem.read(start, skb.head + skb.tail - start)

    # ------------------------------------------------------------------ receive
    def receive(self, dev: NetDevice | str, frame: bytes, queue: int | None = None) -> None:
        """A NIC receives ``frame`` on ``queue`` (default: this CPU's): hardirq, then NET_RX."""
        dev = self.device(dev) if isinstance(dev, str) else dev
        if dev.loopback:
            raise ValueError("lo has no wire: send through it with xmit_frame")
        m = self.machine
        q = m.current.id % dev.num_rx_queues if queue is None else queue
        with m.hardirq():                        # the device interrupt: napi_schedule
            dev.rx_ring[q].append(frame)
            napi = dev.napi[q]
            self._napi_schedule(napi, m.current.id)
        self.do_softirq()

    def _napi_schedule(self, napi: Napi, cpu: int) -> None:
        """napi_schedule: on the CPU's poll list unless already scheduled (NAPI_STATE_SCHED,
        which stays set while it is being polled)."""
        if not napi.state & NAPI_STATE_SCHED:
            napi.state |= NAPI_STATE_SCHED
            self.poll_list[cpu].append(napi)
            if self.tp_softirq_raise.enabled:            # __raise_softirq_irqoff(NET_RX_SOFTIRQ)
                self.tp_softirq_raise.fire(NET_RX_SOFTIRQ)

    def do_softirq(self) -> None:
        """Run pending NET_RX work on this CPU (irq_exit / local_bh_enable); inside a softirq
        or hardirq nothing: the running net_rx_action (or the next) polls what was queued."""
        cpu = self.machine.current
        if self.poll_list[cpu.id] and not cpu.preempt_count & 0xf0100:
            with self.machine.softirq():
                if self.tp_softirq_entry.enabled:        # handle_softirqs around the action
                    self.tp_softirq_entry.fire(NET_RX_SOFTIRQ)
                kp = self.kp_net_rx_action
                if kp.active:
                    kp.call(self.net_rx_action)
                else:
                    self.net_rx_action()
                if self.tp_softirq_exit.enabled:
                    self.tp_softirq_exit.fire(NET_RX_SOFTIRQ)

    def net_rx_action(self) -> None:
        pending = self.poll_list[self.machine.current.id]
        while pending:
            napi = pending.pop(0)
            kp = self.kp_napi_poll
            more = kp.call(self._napi_poll, napi, 0) if kp.active else self._napi_poll(napi, 0)
            if more:
                pending.append(napi)
            else:
                napi.state &= ~NAPI_STATE_SCHED      # napi_complete_done

    def _napi_poll(self, napi: Napi, repoll: int) -> bool:
        weight = napi.weight
        work = napi.poll(napi, weight)
        tp = self.tp_napi_poll
        if tp.enabled:
            tp.fire(napi, work, weight)
        return bool(napi.queue)

    def virtnet_poll(self, napi: Napi, budget: int) -> int:
        kp = self.kp_virtnet_poll
        return kp.call(self._virtnet_poll, napi, budget) if kp.active else self._virtnet_poll(napi, budget)

    def _virtnet_poll(self, napi: Napi, budget: int) -> int:
        dev, ring, work = napi.dev, napi.queue, 0
        assert dev is not None
        while ring and work < budget:
            frame = ring.pop(0)
            skb = self.netdev_alloc_skb(dev, len(frame))
            self.skb_put(skb, frame)
            self.eth_type_trans(skb, dev)
            skb.queue_mapping = napi.cpu + 1     # skb_record_rx_queue
            skb.napi_id = napi.napi_id
            dev.rx_packets += 1
            dev.rx_bytes += skb.len
            self.sync(skb)
            self.netif_receive_skb(skb)
            work += 1
        return work

    def process_backlog(self, napi: Napi, quota: int) -> int:
        kp = self.kp_process_backlog
        if kp.active:
            return kp.call(self._process_backlog, napi, quota)
        return self._process_backlog(napi, quota)

    def _process_backlog(self, napi: Napi, quota: int) -> int:
        work = 0
        m = self.machine
        while napi.queue and work < quota:
            skb = napi.queue.pop(0)
            with m.rcu_read_lock():
                self._netif_receive_skb_internal(skb)
            work += 1
        return work

    def netif_receive_skb(self, skb: SkBuff) -> int:
        """Deliver to the stack now (from a NAPI poll)."""
        kp = self.kp_netif_receive_skb
        return kp.call(self._netif_receive_skb, skb) if kp.active else self._netif_receive_skb(skb)

    def _netif_receive_skb(self, skb: SkBuff) -> int:
        tp = self.tp_netif_receive_skb_entry
        if tp.enabled:
            tp.fire(skb)
        with self.machine.rcu_read_lock():       # netif_receive_skb_internal
            ret = self._netif_receive_skb_internal(skb)
        tp = self.tp_netif_receive_skb_exit
        if tp.enabled:
            tp.fire(ret)
        return ret

    def _netif_receive_skb_internal(self, skb: SkBuff) -> int:
        kp = self.kp_netif_receive_skb_int
        if kp.active:
            return kp.call(self._netif_receive_skb_one, skb)
        return self._netif_receive_skb_one(skb)

    def _netif_receive_skb_one(self, skb: SkBuff) -> int:
        slot = self._pskb_slots[self.machine.current.id]
        self.mem.write_u64(slot, skb.addr)       # the caller's local `skb`, passed as **pskb
        kp = self.kp_receive_core
        if kp.active:
            return kp.call(self._receive_core, _Ptr(slot, skb), False, 0)
        return self._receive_core(_Ptr(slot, skb), False, 0)

    def _receive_core(self, pskb: _Ptr, pfmemalloc: bool, ppt_prev: int) -> int:
        skb = pskb.obj
        tp = self.tp_netif_receive_skb
        if tp.enabled:
            tp.fire(skb)
        skb.network_header = skb.data - skb.head           # skb_reset_network_header
        if skb.transport_header == 0xffff:
            skb.transport_header = skb.network_header
        skb.mac_len = skb.network_header - skb.mac_header if skb.mac_header != 0xffff else 0
        skb.skb_iif = skb.dev.ifindex if skb.dev is not None else 0
        self.sync(skb)
        proto = htons(skb.protocol)
        if proto == ETH_P_IP:
            kp = self.kp_ip_rcv
            if kp.active:
                return kp.call(self._ip_rcv, skb, skb.dev, 0, 0)
            return self._ip_rcv(skb, skb.dev, 0, 0)
        if proto == ETH_P_IPV6:
            kp = self.kp_ipv6_rcv
            if kp.active:
                return kp.call(self._ipv6_rcv, skb, skb.dev, 0, 0)
            return self._ipv6_rcv(skb, skb.dev, 0, 0)
        if proto == ETH_P_ARP:
            self.consume_skb(skb, self.ip_unhandled)
            return NET_RX_SUCCESS
        skb.dev.rx_dropped += 1
        self.kfree_skb(skb, SKB_DROP_REASON_UNHANDLED_PROTO, self.ip_unhandled)
        return 1                                  # NET_RX_DROP

    def _ip_rcv(self, skb: SkBuff, dev: Any, pt: int, orig_dev: int) -> int:
        """``ip_rcv``: ip_rcv_core's checks, then (no netfilter hooks) ip_rcv_finish."""
        p = self._ip_rcv_core(skb, 4)
        if p is None:
            return 1
        kp = self.kp_ip_rcv_finish
        return kp.call(self._ip_rcv_finish, 0, 0, skb, p) if kp.active else self._ip_rcv_finish(0, 0, skb, p)

    def _ipv6_rcv(self, skb: SkBuff, dev: Any, pt: int, orig_dev: int) -> int:
        """``ipv6_rcv`` → ``ip6_rcv_finish`` → ``ip6_input`` → ``ip6_protocol_deliver_rcu``."""
        p = self._ip_rcv_core(skb, 6)
        if p is None:
            return 1
        kp = self.kp_ip6_input
        return kp.call(self._ip6_input, skb, p) if kp.active else self._ip6_input(skb, p)

    def _ip6_input(self, skb: SkBuff, p: Any) -> int:
        if self.nf_input_drop and self._nf_local_in_drops(skb, p):
            return 1
        self._pull_to_transport(skb)
        kp = self.kp_ip6_protocol_deliver
        if kp.active:
            return kp.call(self._protocol_deliver, 0, skb, p.proto, False, p)
        return self._protocol_deliver(0, skb, p.proto, False, p)

    def _ip_rcv_core(self, skb: SkBuff, version: int) -> Any:
        """The header checks: a truncated packet or one for another host is dropped here."""
        p = self._parse_frame(self.frame_of(skb))
        location = self.ip_deliver[version]
        if p.truncated or p.l4_offset < 0:
            self.kfree_skb(skb, SKB_DROP_REASON_PKT_TOO_SMALL, location)
            return None
        if skb.pkt_type == PACKET_OTHERHOST:
            self.kfree_skb(skb, SKB_DROP_REASON_OTHERHOST, location)
            return None
        skb.transport_header = skb.mac_header + p.l4_offset
        self.sync(skb)
        return p

    def _ip_rcv_finish(self, net: int, sk: int, skb: SkBuff, p: Any) -> int:
        kp = self.kp_ip_local_deliver
        return kp.call(self._ip_local_deliver, skb, p) if kp.active else self._ip_local_deliver(skb, p)

    def _nf_local_in_drops(self, skb: SkBuff, p: Any) -> bool:
        """NF_HOOK(NF_INET_LOCAL_IN): a DROP rule's verdict, the skb freed in nf_hook_slow."""
        if (p.proto, p.dport) in self.nf_input_drop:
            self.kfree_skb(skb, SKB_DROP_REASON_NETFILTER_DROP, self.ip_nf_drop)
            return True
        return False

    def _ip_local_deliver(self, skb: SkBuff, p: Any) -> int:
        if self.nf_input_drop and self._nf_local_in_drops(skb, p):
            return 1
        kp = self.kp_ip_local_deliver_finish
        if kp.active:
            return kp.call(self._ip_local_deliver_finish, 0, 0, skb, p)
        return self._ip_local_deliver_finish(0, 0, skb, p)

    def _pull_to_transport(self, skb: SkBuff) -> None:
        """__skb_pull(skb, skb_network_header_len(skb)): data at the transport header."""
        pulled = skb.transport_header - (skb.data - skb.head)
        skb.data += pulled
        skb.len -= pulled
        self.sync(skb)

    def _ip_local_deliver_finish(self, net: int, sk: int, skb: SkBuff, p: Any) -> int:
        self._pull_to_transport(skb)
        with self.machine.rcu_read_lock():
            kp = self.kp_ip_protocol_deliver
            if kp.active:
                return kp.call(self._protocol_deliver, 0, skb, p.proto, False, p)
            return self._protocol_deliver(0, skb, p.proto, False, p)

    def _protocol_deliver(self, net: int, skb: SkBuff, protocol: int, _v6: bool, p: Any) -> int:
        """``ip_protocol_deliver_rcu`` / ``ip6_protocol_deliver_rcu``: the transport's handler."""
        if p.proto in (packets.IPPROTO_ICMP, packets.IPPROTO_ICMPV6):
            kp = self.kp_icmp_rcv
            return kp.call(self._icmp_rcv, skb, p) if kp.active else self._icmp_rcv(skb, p)
        return self.sockets.transport_rcv(skb, p)

    def _parse_frame(self, frame: bytes) -> Any:
        """packets.parse, remembered per frame: traffic generators replay a pool of frames, and
        the result is only read here and in _icmp_rcv."""
        p = self._parsed.get(frame)
        if p is None:
            p = packets.parse(frame)
            if len(self._parsed) < PARSE_MEMO_MAX:
                self._parsed[frame] = p
        return p

    def _icmp_rcv(self, skb: SkBuff, p: Any) -> int:
        frame = self.frame_of(skb)
        icmp = frame[p.l4_offset:]
        kind = icmp[0] if icmp else -1
        v6 = p.proto == packets.IPPROTO_ICMPV6
        if kind == (128 if v6 else 8):           # echo request: answer on the same device
            assert skb.dev is not None           # a received skb always has its device
            ident, seq = int.from_bytes(icmp[4:6], "big"), int.from_bytes(icmp[6:8], "big")
            reply = build_frame(skb.dev, "icmp-reply", p.dst, p.src, ident, seq, icmp[8:],
                                v6=v6, outgoing=True)
            self.xmit_frame(skb.dev, reply, via_ip=True)     # icmp_echo → icmp_reply
            self.consume_skb(skb, self.ip_icmp)
            return NET_RX_SUCCESS
        if kind == (129 if v6 else 0):           # echo reply: ping_rcv, to the socket of ident
            ident = int.from_bytes(icmp[4:6], "big")
            if self.sockets.ping_rcv(skb, ident, p):
                self.consume_skb(skb, self.ip_icmp)
                return NET_RX_SUCCESS
        self.kfree_skb(skb, SKB_DROP_REASON_NO_SOCKET, self.ip_icmp)
        return 1

    # ------------------------------------------------------------------ transmit
    def xmit_frame(self, dev: NetDevice | str, frame: bytes, via_ip: bool = False) -> int:
        """The host sends ``frame`` out of ``dev``: an skb is built (GFP_KERNEL in a task,
        GFP_ATOMIC in softirq) and ``dev_queue_xmit``'d; ``via_ip`` sends it as the IP layer
        does, through ip_local_out → ip_output → ip_finish_output2."""
        skb = self.frame_skb(dev, frame)
        if via_ip:
            return self.ip_local_out(skb)
        return self.dev_queue_xmit(skb)

    def frame_skb(self, dev: NetDevice | str, frame: bytes) -> SkBuff:
        """An skb holding ``frame`` to send out of ``dev`` (data at the MAC header)."""
        dev = self.device(dev) if isinstance(dev, str) else dev
        gfp = GFP_KERNEL if self.machine.current.in_task() else GFP_ATOMIC
        skb = self.alloc_skb(len(frame) + NET_SKB_PAD, gfp)
        skb.data += NET_SKB_PAD
        skb.tail += NET_SKB_PAD
        skb.dev, skb.dev_addr = dev, dev.addr
        self.skb_put(skb, frame)
        skb.mac_header = skb.data - skb.head
        skb.network_header = skb.mac_header + ETH_HLEN
        skb.protocol = int.from_bytes(frame[12:14], "little")
        self.sync(skb)
        return skb

    def ip_local_out(self, skb: SkBuff) -> int:
        """The IP layer sends ``skb``: ip_local_out → ip_output → ip_finish_output2."""
        kp = self.kp_ip_local_out
        return kp.call(self._ip_local_out, 0, 0, skb) if kp.active else self._ip_local_out(0, 0, skb)

    def _ip_local_out(self, net: int, sk: int, skb: SkBuff) -> int:
        kp = self.kp_ip_output
        return kp.call(self._ip_output, net, sk, skb) if kp.active else self._ip_output(net, sk, skb)

    def _ip_output(self, net: int, sk: int, skb: SkBuff) -> int:
        kp = self.kp_ip_finish_output2
        if kp.active:
            return kp.call(self._ip_finish_output2, net, sk, skb)
        return self._ip_finish_output2(net, sk, skb)

    def _ip_finish_output2(self, net: int, sk: int, skb: SkBuff) -> int:
        return self.dev_queue_xmit(skb)          # neigh_output: the MAC header is in place

    def dev_queue_xmit(self, skb: SkBuff) -> int:
        """``dev_queue_xmit`` → ``__dev_queue_xmit(skb, NULL)``; bottom halves re-enabled after."""
        m = self.machine
        with m.bh_disabled():                    # rcu_read_lock_bh
            kp = self.kp_dev_queue_xmit
            rc = kp.call(self._dev_queue_xmit, skb, 0) if kp.active else self._dev_queue_xmit(skb, 0)
        self.do_softirq()                        # local_bh_enable runs pending softirqs
        return rc

    def _dev_queue_xmit(self, skb: SkBuff, sb_dev: int) -> int:
        dev = skb.dev
        assert dev is not None                   # set by whoever queues the skb
        pick = self.select_queue.get(dev.name)      # ndo_select_queue (tun: kernel_model/tun.py)
        skb.queue_mapping = pick(skb) if pick else (
            0 if dev.loopback else self.machine.current.id % dev.real_num_tx_queues)
        self.sync(skb)
        tp = self.tp_net_dev_queue
        if tp.enabled:
            tp.fire(skb)
        drop = self.qdisc_drop.get(dev.name)
        if drop is not None and drop(skb):       # the qdisc's enqueue dropped it
            self.kfree_skb(skb, SKB_DROP_REASON_QDISC_DROP, self.ip_qdisc_drop)
            return NETDEV_TX_OK                  # NET_XMIT_SUCCESS | __NET_XMIT_BYPASS
        kp = self.kp_hard_start_xmit
        if kp.active:
            return kp.call(self._hard_start_xmit, skb, dev, 0, 0)
        return self._hard_start_xmit(skb, dev, 0, 0)

    def _hard_start_xmit(self, skb: SkBuff, dev: NetDevice, txq: int, more: int) -> int:
        tp = self.tp_net_dev_start_xmit
        if tp.enabled:
            tp.fire(skb, dev)
        length = skb.len
        if dev.loopback:
            kp = self.kp_loopback_xmit
            rc = kp.call(self._loopback_xmit, skb, dev) if kp.active else self._loopback_xmit(skb, dev)
        else:
            dev.tx_packets += 1
            dev.tx_bytes += length
            rc = NETDEV_TX_OK
        tp = self.tp_net_dev_xmit
        if tp.enabled:
            tp.fire(skb, rc, dev, length)
        if not dev.loopback:
            self.consume_skb(skb, self.ip_tx_done)   # TX completion
        return rc

    def _loopback_xmit(self, skb: SkBuff, dev: NetDevice) -> int:
        length = skb.len
        self.eth_type_trans(skb, dev)
        self.sync(skb)
        dev.tx_packets += 1
        dev.tx_bytes += length
        dev.rx_packets += 1
        dev.rx_bytes += skb.len
        kp = self.kp_netif_rx_core
        return kp.call(self._netif_rx_core, skb) if kp.active else self._netif_rx_core(skb)

    def netif_rx(self, skb: SkBuff) -> int:
        """Queue to this CPU's backlog (net:netif_rx); processed at the next softirq."""
        kp = self.kp_netif_rx
        return kp.call(self._netif_rx, skb) if kp.active else self._netif_rx(skb)

    def _netif_rx(self, skb: SkBuff) -> int:
        tp = self.tp_netif_rx_entry
        if tp.enabled:
            tp.fire(skb)
        kp = self.kp_netif_rx_core
        return kp.call(self._netif_rx_core, skb) if kp.active else self._netif_rx_core(skb)

    def _netif_rx_core(self, skb: SkBuff) -> int:
        """``__netif_rx`` → netif_rx_internal (loopback calls it without netif_rx's entry/exit
        events)."""
        tp = self.tp_netif_rx
        if tp.enabled:
            tp.fire(skb)
        cpu = self.machine.current.id
        kp = self.kp_enqueue_backlog
        if kp.active:
            return kp.call(self._enqueue_to_backlog, skb, cpu, 0)
        return self._enqueue_to_backlog(skb, cpu, 0)

    def _enqueue_to_backlog(self, skb: SkBuff, cpu: int, qtail: int) -> int:
        backlog = self.backlogs[cpu]
        backlog.queue.append(skb)
        self._napi_schedule(backlog, cpu)
        return NET_RX_SUCCESS


class _Ptr:
    """A pointer argument to a model object held in memory at ``addr`` (``struct sk_buff **``)."""

    __slots__ = ("addr", "obj")

    def __init__(self, addr: int, obj: Any) -> None:
        self.addr = addr
        self.obj = obj


def peer_mac(dev: NetDevice) -> bytes:
    """The MAC address of the machine at the other end of ``dev``'s wire."""
    return bytes(6) if dev.loopback else bytes([0x52, 0x54, 0, 0xab, 0xcd, dev.ifindex])


def build_frame(dev: NetDevice, kind: str, src: str, dst: str, sport: int, dport: int,
                payload: bytes, v6: bool = False, outgoing: bool = False) -> bytes:
    """An Ethernet frame on ``dev`` (to the host, or from it with ``outgoing``): kind udp, tcp,
    icmp (an echo request; sport/dport are its ident/sequence) or icmp-reply."""
    number: int
    if kind == "icmp-reply":
        segment = packets.icmp_echo(sport, dport, payload, v6=v6)
        segment = bytes([129 if v6 else 0]) + segment[1:]
        segment = _fix_icmp_checksum(segment, v6, src, dst)
        number = packets.IPPROTO_ICMPV6 if v6 else packets.IPPROTO_ICMP
    else:
        number, segment = packets.l4_segment(kind, sport, dport, payload, v6)
    packet = (packets.ipv6(src, dst, number, segment) if v6
              else packets.ipv4(src, dst, number, segment))
    ours, theirs = dev.mac, peer_mac(dev)
    dst_mac, src_mac = (theirs, ours) if outgoing else (ours, theirs)
    return packets.ethernet(dst_mac, src_mac, ETH_P_IPV6 if v6 else ETH_P_IP, packet)


def _fix_icmp_checksum(segment: bytes, v6: bool, src: str, dst: str) -> bytes:
    """Recompute an ICMP checksum after the type byte changed (ICMPv6 is done by ipv6())."""
    if v6:
        return segment
    body = segment[:2] + b"\0\0" + segment[4:]
    return body[:2] + packets.internet_checksum(body).to_bytes(2, "big") + body[4:]


def packet_frame(dev: NetDevice, proto: str, length: int, seq: int = 0, v6: bool = False,
                 dport: int = DISCARD_PORT, sport: int = 40000) -> bytes:
    """A frame arriving on ``dev`` whose IP packet (the skb ``len`` after eth_type_trans) is
    exactly ``length`` bytes; ``proto`` udp, tcp or icmp (an echo request)."""
    ip_hdr = 40 if v6 else 20
    l4_hdr = {"udp": 8, "tcp": 20, "icmp": 8}.get(proto)
    if l4_hdr is None:
        raise ValueError(f"unknown protocol {proto!r} (udp, tcp, icmp)")
    room = length - ip_hdr - l4_hdr
    if room < 0:
        raise ValueError(f"--len {length} is too short for {proto} over IPv{6 if v6 else 4}"
                         f" (at least {ip_hdr + l4_hdr})")
    payload = bytes((seq + i) & 0xff for i in range(room))
    src, dst = (dev.peer_ipv6, dev.ipv6) if v6 else (dev.peer_ipv4, dev.ipv4)
    if proto == "icmp":
        sport, dport = 0x7ace, seq & 0xffff
    return build_frame(dev, proto, src, dst, sport, dport, payload, v6)

