"""Sockets of the modelled kernel: UDP with receive queues, ICMP ping, and a small but real TCP.

The transport layer below ``ip_protocol_deliver_rcu`` (net.py) and the socket calls tasks make,
following Linux 6.18 function by function, each through its kprobe site, with the sock:, tcp:,
udp: and skb: events where the kernel has them:

* UDP: ``udp_rcv`` → ``__udp4_lib_rcv`` → ``udp_unicast_rcv_skb`` → ``udp_queue_rcv_skb`` →
  ``udp_queue_rcv_one_skb`` → ``__udp_enqueue_schedule_skb``: queued while ``rmem_alloc`` is
  not above ``sk_rcvbuf`` (sock:sk_data_ready from ``sock_def_readable``), else -ENOMEM:
  udp:udp_fail_queue_rcv_skb and skb:kfree_skb ``SOCKET_RCVBUFF`` with ``rx_sk`` set. No socket:
  kfree_skb ``NO_SOCKET``. ``udp_recvmsg`` copies (skb:skb_copy_datagram_iovec) and frees with
  ``skb_consume_udp`` (no skb: event, as the kernel's stateless free).
* ping: ``ping_rcv`` queues a clone (``skb_clone``: a head from ``skbuff_head_cache`` sharing the
  data) with ``sock_queue_rcv_skb`` (sock:sock_rcvqueue_full when full); ``icmp_rcv`` consumes
  the original; ``ping_recvmsg`` copies and ``skb_free_datagram`` consumes the clone.
* TCP, IPv4 and IPv6: listen, connect (the three-way handshake with a request sock and a child
  made by ``inet_csk_clone_lock``), send, receive, close on both sides (FIN_WAIT1, FIN_WAIT2,
  CLOSE_WAIT, LAST_ACK, CLOSE), each change through ``tcp_set_state`` (sock:inet_sock_set_state,
  with the kernel's quirks: sport 0 at SYN_SENT, the child's LISTEN→SYN_RECV shows the
  listener's addresses), tcp:tcp_probe in ``tcp_rcv_established``, tcp:tcp_rcv_space_adjust in
  ``tcp_recvmsg``, a retransmission queue and ``tcp_retransmit_timer`` (tcp:tcp_retransmit_skb,
  cwnd to 1, doubled RTO), tcp:tcp_destroy_sock, and for a segment to a closed port
  ``tcp_v4_send_reset`` (tcp:tcp_send_reset, an RST sent) and kfree_skb ``NO_SOCKET``; a bad
  checksum on a frame from a NIC is dropped with ``TCP_CSUM`` after tcp:tcp_bad_csum
  (``UDP_CSUM`` for UDP).
* ``sock_sendmsg`` / ``sock_recvmsg`` fire sock:sock_send_length / sock_recv_length.

What is simplified (and says so): every transmitted TCP segment is a fresh skb (the kernel
queues one and transmits clones); received TCP skbs are freed with ``__kfree_skb`` (no skb:
event) when read or processed; there are no delayed-ACK or keepalive timers (a response carries
the ACK of a request); windows do not scale; TIME_WAIT leaves no timewait sock. The discard
service on port 9 (net.py's ``listeners``) consumes at delivery, as before.
"""
from __future__ import annotations

import struct
import zlib
from typing import TYPE_CHECKING, Any

from tracesim.kernel_model.mm.slab import GFP_ATOMIC, GFP_KERNEL, SLAB_HWCACHE_ALIGN
from tracesim.kernel_model.net import packets
from tracesim.kernel_model.net.core import build_frame, peer_mac
from tracesim.kernel_model.trace.events.skb import DROP_REASON_VALUES
from tracesim.kernel_model.trace.events.sock import AF_INET, AF_INET6, TCP_STATE_VALUES
from tracesim.kernel_model.trace.events.tcp import RST_REASON_VALUES

if TYPE_CHECKING:
    from tracesim.kernel_model.net.core import Net, NetDevice, SkBuff

SOCK_STREAM, SOCK_DGRAM = 1, 2
ENOMEM, EAGAIN = 12, 11
TCP_ESTABLISHED = TCP_STATE_VALUES["TCP_ESTABLISHED"]
TCP_SYN_SENT = TCP_STATE_VALUES["TCP_SYN_SENT"]
TCP_SYN_RECV = TCP_STATE_VALUES["TCP_SYN_RECV"]
TCP_FIN_WAIT1 = TCP_STATE_VALUES["TCP_FIN_WAIT1"]
TCP_FIN_WAIT2 = TCP_STATE_VALUES["TCP_FIN_WAIT2"]
TCP_CLOSE = TCP_STATE_VALUES["TCP_CLOSE"]
TCP_CLOSE_WAIT = TCP_STATE_VALUES["TCP_CLOSE_WAIT"]
TCP_LAST_ACK = TCP_STATE_VALUES["TCP_LAST_ACK"]
TCP_LISTEN = TCP_STATE_VALUES["TCP_LISTEN"]
TCP_NEW_SYN_RECV = TCP_STATE_VALUES["TCP_NEW_SYN_RECV"]
SK_RCVBUF_DEFAULT = 212992            # net.core.rmem_default
TCP_INIT_CWND = 10
TCP_INFINITE_SSTHRESH = 0x7fffffff
TCP_RTO_MIN_NS = 200_000_000
TCP_WINDOW = 65535
EPHEMERAL_FIRST = 32768               # net.ipv4.ip_local_port_range
# struct sizes of the 6.18 x86-64 BTF: the protocols' slab caches
SOCK_CACHES = {"TCP": 2304, "TCPv6": 2304, "UDP": 1344, "UDPv6": 1344, "PING": 1016,
               "request_sock_TCP": 312}
# where, inside each function, the call the model stands for returns (_RET_IP_ / location)
RET_OFFSETS = {"__udp4_lib_rcv": 0x2f2, "__udp6_lib_rcv": 0x31a, "udp_queue_rcv_one_skb": 0x1e4,
               "sock_def_readable": 0x4b, "skb_free_datagram": 0x12, "tcp_v4_rcv": 0x6b3,
               "tcp_v6_rcv": 0x64d, "tcp_rcv_state_process": 0x29c, "tcp_data_queue": 0x5c1,
               "sk_prot_alloc": 0x49, "ip_protocol_deliver_rcu": 0x15a,
               "ping_queue_rcv_skb": 0x2d}
SKB_DROP = DROP_REASON_VALUES


class Sock:
    """A ``struct sock`` (``addr`` in the protocol's slab cache) with the inet and TCP fields the
    model keeps. Ports are host order, addresses packed (4 or 16 bytes)."""

    __slots__ = ("addr", "cache", "family", "protocol", "type", "state", "saddr", "daddr",
                 "sport", "dport", "rcvbuf", "rmem_alloc", "queue", "cookie", "dev", "dead",
                 "accept_queue", "listener", "snd_nxt", "snd_una", "snd_cwnd", "ssthresh",
                 "snd_wnd", "srtt_us", "rcv_wnd", "rcv_nxt", "rtx", "rto_ns", "sent_at",
                 "timer_at")

    addr: int
    cache: Any                  # the protocol's KmemCache
    family: int
    protocol: int
    type: int
    state: int
    saddr: bytes
    daddr: bytes
    sport: int
    dport: int
    rcvbuf: int
    rmem_alloc: int
    queue: list[Any]
    cookie: int
    dev: NetDevice | None
    dead: bool
    accept_queue: list[Sock]
    listener: Sock | None
    snd_nxt: int
    snd_una: int
    snd_cwnd: int
    ssthresh: int
    snd_wnd: int
    srtt_us: int
    rcv_wnd: int
    rcv_nxt: int
    rtx: list[Any]
    rto_ns: int
    sent_at: dict[int, int]
    timer_at: int

    def __repr__(self) -> str:
        return f"<sock 0x{self.addr:x} proto={self.protocol} state={self.state} :{self.sport}>"


class Segment:
    """A received TCP header and payload."""

    __slots__ = ("sport", "dport", "seq", "ack", "flags", "window", "payload", "hlen")

    def __init__(self, raw: bytes) -> None:
        (self.sport, self.dport, self.seq, self.ack, off, self.flags,
         self.window) = struct.unpack_from("!HHIIBBH", raw)
        self.hlen = (off >> 4) * 4
        self.payload = raw[self.hlen:]

    def has(self, flag: str) -> bool:
        return bool(self.flags & packets.TCP_FLAGS[flag])


def _seq_after(a: int, b: int) -> bool:
    return 0 < (a - b) & 0xffffffff < 0x80000000


class Sockets:
    """The socket tables of one kernel and the transport protocols' functions."""

    def __init__(self, net: Net) -> None:
        self.net = net
        kernel = net.kernel
        self.kernel = kernel
        self.bound: dict[tuple[int, int], Sock] = {}          # (protocol, port): UDP, listeners
        self.conns: dict[tuple, Sock] = {}                     # (local, lport, remote, rport)
        self.ping: dict[int, Sock] = {}                        # ICMP ident -> ping socket
        # the protocols' caches exist from boot (proto_register)
        self.caches: dict[str, Any] = {name: net.slab.kmem_cache_create(name, size, 64,
                                                                       SLAB_HWCACHE_ALIGN)
                                       for name, size in SOCK_CACHES.items()}
        self.next_cookie = 1
        self.next_port = EPHEMERAL_FIRST
        ev = net._event
        self.tp_set_state = ev("sock", "inet_sock_set_state")
        self.tp_data_ready = ev("sock", "sk_data_ready")
        self.tp_rcvqueue_full = ev("sock", "sock_rcvqueue_full")
        self.tp_send_length = ev("sock", "sock_send_length")
        self.tp_recv_length = ev("sock", "sock_recv_length")
        self.tp_copy = ev("skb", "skb_copy_datagram_iovec")
        self.tp_udp_fail = ev("udp", "udp_fail_queue_rcv_skb")
        self.tp_probe = ev("tcp", "tcp_probe")
        self.tp_retransmit = ev("tcp", "tcp_retransmit_skb")
        self.tp_space_adjust = ev("tcp", "tcp_rcv_space_adjust")
        self.tp_send_reset = ev("tcp", "tcp_send_reset")
        self.tp_destroy = ev("tcp", "tcp_destroy_sock")
        self.tp_bad_csum = ev("tcp", "tcp_bad_csum")
        site = kernel.kprobes.site
        self.kp = {name: site(name) for name in (
            "udp_rcv", "udpv6_rcv", "__udp4_lib_rcv", "__udp6_lib_rcv", "udp_unicast_rcv_skb",
            "udp_queue_rcv_skb", "udp_queue_rcv_one_skb", "__udp_enqueue_schedule_skb",
            "sock_def_readable", "udp_recvmsg", "skb_consume_udp", "skb_copy_datagram_iter",
            "skb_free_datagram", "sock_sendmsg", "sock_recvmsg", "ping_v4_sendmsg", "ping_rcv",
            "ping_queue_rcv_skb", "ping_recvmsg", "tcp_v4_rcv", "tcp_v6_rcv", "tcp_v4_do_rcv",
            "tcp_rcv_established", "tcp_rcv_state_process", "tcp_v4_send_reset", "tcp_set_state",
            "tcp_v4_connect", "tcp_finish_connect", "tcp_conn_request", "inet_csk_clone_lock",
            "tcp_sendmsg", "tcp_recvmsg", "tcp_rcv_space_adjust", "__tcp_transmit_skb",
            "tcp_retransmit_timer", "tcp_retransmit_skb", "tcp_close", "tcp_fin", "tcp_done",
            "tcp_v4_destroy_sock", "tcp_send_ack", "inet_listen")}
        ks = kernel.kallsyms
        self.ret = {name: ks.addr(name) + off for name, off in RET_OFFSETS.items()}

    def _run(self, name: str, func: Any, *args: Any) -> Any:
        kp = self.kp[name]
        return kp.call(func, *args) if kp.active else func(*args)

    # ------------------------------------------------------------------ sockets
    def socket(self, family: int, type_: int, protocol: int) -> Sock:
        """``socket(2)`` below the syscall: ``sk_alloc`` from the protocol's cache."""
        name = {packets.IPPROTO_TCP: "TCP", packets.IPPROTO_UDP: "UDP",
                packets.IPPROTO_ICMP: "PING"}[protocol]
        if family == AF_INET6 and name != "PING":
            name += "v6"
        return self._sk_alloc(name, family, type_, protocol, GFP_KERNEL)

    def _sk_alloc(self, cache_name: str, family: int, type_: int, protocol: int,
                  gfp: int) -> Sock:
        cache = self.caches[cache_name]
        sk = Sock()
        sk.addr = self.net.slab.kmem_cache_alloc(cache, gfp, self.ret["sk_prot_alloc"])
        sk.cache, sk.family, sk.type, sk.protocol = cache, family, type_, protocol
        sk.state = TCP_CLOSE
        zero = bytes(16 if family == AF_INET6 else 4)
        sk.saddr = sk.daddr = zero
        sk.sport = sk.dport = sk.rmem_alloc = sk.cookie = 0
        sk.rcvbuf = SK_RCVBUF_DEFAULT
        sk.queue, sk.accept_queue, sk.rtx, sk.sent_at = [], [], [], {}
        sk.dev, sk.listener, sk.dead = None, None, False
        sk.snd_nxt = sk.snd_una = sk.rcv_nxt = sk.srtt_us = 0
        sk.snd_cwnd, sk.ssthresh = TCP_INIT_CWND, TCP_INFINITE_SSTHRESH
        sk.snd_wnd = sk.rcv_wnd = TCP_WINDOW
        sk.rto_ns = TCP_RTO_MIN_NS
        sk.timer_at = 0                   # when the retransmission timer expires (0: not armed)
        return sk

    def _sk_free(self, sk: Sock) -> None:
        self.net.slab.kmem_cache_free(sk.cache, sk.addr, self.ret["sk_prot_alloc"])

    def _cookie(self, sk: Sock) -> None:
        """sock_gen_cookie: a socket gets its cookie the first time one is asked for."""
        if not sk.cookie:
            sk.cookie = self.next_cookie
            self.next_cookie += 1

    def bind(self, sk: Sock, port: int, dev: Any) -> None:
        key = (sk.protocol, port)
        if key in self.bound or key in self.net.listeners:
            raise ValueError(f"port {port} is in use")
        sk.sport, sk.dev = port, dev
        self.bound[key] = sk

    def _ephemeral_port(self, protocol: int) -> int:
        while True:
            port = self.next_port
            self.next_port = port + 1 if port < 60999 else EPHEMERAL_FIRST
            if (protocol, port) not in self.bound:
                return port

    def sock_sendmsg(self, sk: Sock, send: Any, length: int) -> int:
        """``sock_sendmsg``: the protocol's sendmsg, then sock:sock_send_length."""
        ret = self._run("sock_sendmsg", send, sk, length)
        tp = self.tp_send_length
        if tp.enabled:
            tp.fire(sk, ret, 0)
        return ret

    def sock_recvmsg(self, sk: Sock, recv: Any, length: int, flags: int = 0) -> Any:
        """``sock_recvmsg``: the protocol's recvmsg (returns (bytes or -errno, what)), then
        sock:sock_recv_length."""
        ret, what = self._run("sock_recvmsg", recv, sk, length, flags)
        tp = self.tp_recv_length
        if tp.enabled:
            tp.fire(sk, ret, flags)
        return ret, what

    def _data_ready(self, sk: Sock) -> None:
        self._run("sock_def_readable", self._sock_def_readable, sk)

    def _sock_def_readable(self, sk: Sock) -> None:
        tp = self.tp_data_ready
        if tp.enabled:
            tp.fire(sk, self.ret["sock_def_readable"])

    def _copy_to_user(self, skb: SkBuff, length: int) -> None:
        tp = self.tp_copy
        self._run("skb_copy_datagram_iter", lambda s, o, t, n: tp.fire(s, n) if tp.enabled
                  else None, skb, 0, 0, length)

    # ------------------------------------------------------------------ receive dispatch
    def transport_rcv(self, skb: SkBuff, p: Any) -> int:
        """The handler ``ip_protocol_deliver_rcu`` calls for a UDP or TCP packet."""
        v6 = p.l3 == "ipv6"
        if p.proto == packets.IPPROTO_UDP:
            return self._run("udpv6_rcv" if v6 else "udp_rcv", self._udp_rcv, skb, p, v6)
        if p.proto == packets.IPPROTO_TCP:
            return self._run("tcp_v6_rcv" if v6 else "tcp_v4_rcv", self._tcp_rcv, skb, p, v6)
        # no handler and no raw socket (the ICMP protocol-unreachable is not modelled)
        self.net.kfree_skb(skb, SKB_DROP["IP_NOPROTO"], self.ret["ip_protocol_deliver_rcu"])
        return 1

    def _checksum_ok(self, skb: SkBuff, p: Any) -> bool:
        """Frames from a NIC are verified (CHECKSUM_NONE); loopback's are trusted. The answer
        is kept on the frame's parse (net.py remembers those of frames it sees again)."""
        if skb.dev is None or skb.dev.loopback:
            return True
        ok = p.l4_csum_ok
        if ok is None:
            ok = p.l4_csum_ok = self._l4_checksum(self.net.frame_of(skb), p)
        return ok

    @staticmethod
    def _l4_checksum(frame: bytes, p: Any) -> bool:
        segment = frame[p.l4_offset:]
        src, dst = packets.addr_bytes(p.src), packets.addr_bytes(p.dst)
        if p.l3 == "ipv6":
            pseudo = src + dst + struct.pack("!I3xB", len(segment), p.proto)
        else:
            pseudo = src + dst + struct.pack("!BBH", 0, p.proto, len(segment))
        if p.proto == packets.IPPROTO_UDP and segment[6:8] == b"\0\0" and p.l3 == "ipv4":
            return True                          # no checksum
        return packets.internet_checksum(pseudo + segment) == 0

    # ------------------------------------------------------------------ UDP
    def _udp_rcv(self, skb: SkBuff, p: Any, v6: bool) -> int:
        name = "__udp6_lib_rcv" if v6 else "__udp4_lib_rcv"
        return self._run(name, self._udp_lib_rcv, skb, 0, packets.IPPROTO_UDP, p, name)

    def _udp_lib_rcv(self, skb: SkBuff, table: int, proto: int, p: Any, name: str) -> int:
        net = self.net
        if not self._checksum_ok(skb, p):
            net.kfree_skb(skb, SKB_DROP["UDP_CSUM"], self.ret[name])
            return 0
        sk = self.bound.get((proto, p.dport))
        if sk is not None:
            self._run("udp_unicast_rcv_skb", self._udp_unicast_rcv, sk, skb, 0, p)
            return 0
        if (proto, p.dport) in net.listeners:
            net.consume_skb(skb, self.ret[name])      # the discard service
            return 0
        net.kfree_skb(skb, SKB_DROP["NO_SOCKET"], self.ret[name])
        return 0

    def _udp_unicast_rcv(self, sk: Sock, skb: SkBuff, uh: int, p: Any) -> int:
        return self._run("udp_queue_rcv_skb", self._udp_queue_rcv, sk, skb, p)

    def _udp_queue_rcv(self, sk: Sock, skb: SkBuff, p: Any) -> int:
        return self._run("udp_queue_rcv_one_skb", self._udp_queue_rcv_one, sk, skb, p)

    def _udp_queue_rcv_one(self, sk: Sock, skb: SkBuff, p: Any) -> int:
        rc = self._run("__udp_enqueue_schedule_skb", self._udp_enqueue, sk, skb)
        if rc < 0:
            tp = self.tp_udp_fail
            if tp.enabled:
                tp.fire(rc, sk, skb, (packets.addr_bytes(p.src), p.sport),
                        (packets.addr_bytes(p.dst), p.dport))
            self.net.kfree_skb(skb, SKB_DROP["SOCKET_RCVBUFF"], self.ret["udp_queue_rcv_one_skb"],
                               sk)
            return -1
        return 0

    def _udp_enqueue(self, sk: Sock, skb: SkBuff) -> int:
        if sk.rmem_alloc > sk.rcvbuf:
            return -ENOMEM
        sk.rmem_alloc += skb.truesize
        sk.queue.append(skb)
        self._data_ready(sk)
        return 0

    def udp_recv(self, sk: Sock, length: int = 65536) -> int:
        """A task's ``recvfrom`` on a UDP socket: the payload size, or -EAGAIN."""
        return self.sock_recvmsg(sk, self._udp_recvmsg_site, length)[0]

    def _udp_recvmsg_site(self, sk: Sock, length: int, flags: int) -> tuple:
        return self._run("udp_recvmsg", self._udp_recvmsg, sk, 0, length, flags, 0)

    def _udp_recvmsg(self, sk: Sock, msg: int, length: int, flags: int, addr_len: int) -> tuple:
        if not sk.queue:
            return -EAGAIN, None
        skb = sk.queue.pop(0)
        copied = min(length, skb.len - 8)
        self._copy_to_user(skb, copied)
        sk.rmem_alloc -= skb.truesize
        self._run("skb_consume_udp", lambda s, b, n: self.net.free_skb_quietly(b), sk, skb, copied)
        return copied, None

    # ------------------------------------------------------------------ ping
    def ping_socket(self, ident: int) -> Sock:
        sk = self.socket(AF_INET, SOCK_DGRAM, packets.IPPROTO_ICMP)
        if ident in self.ping:
            raise ValueError(f"ping ident {ident} is in use")
        sk.sport = ident
        self.ping[ident] = sk
        return sk

    def ping_close(self, sk: Sock) -> None:
        """``close``: queued replies are purged, the socket freed."""
        self.ping.pop(sk.sport, None)
        for skb in sk.queue:
            self.net.free_skb_quietly(skb)
        sk.queue.clear()
        self._sk_free(sk)

    def ping_send(self, sk: Sock, dev: Any, dst: str, seq: int, payload: bytes) -> int:
        """A task's ``sendto`` on a ping socket: one echo request out of ``dev``."""
        def sendmsg(sk: Sock, length: int) -> int:
            return self._run("ping_v4_sendmsg", self._ping_sendmsg, sk, 0, length, dev, dst,
                             seq, payload)
        return self.sock_sendmsg(sk, sendmsg, len(payload) + 8)

    def _ping_sendmsg(self, sk: Sock, msg: int, length: int, dev: Any, dst: str, seq: int,
                      payload: bytes) -> int:
        frame = build_frame(dev, "icmp", dev.ipv4, dst, sk.sport, seq, payload, outgoing=True)
        self.net.xmit_frame(dev, frame, via_ip=True)
        return length

    def ping_rcv(self, skb: SkBuff, ident: int, p: Any) -> bool:
        """``ping_rcv``: a clone to the socket of ``ident``; False when there is none."""
        return self._run("ping_rcv", self._ping_rcv, skb, ident)

    def _ping_rcv(self, skb: SkBuff, ident: int) -> bool:
        sk = self.ping.get(ident)
        if sk is None:
            return False
        clone = self.net.skb_clone(skb, GFP_ATOMIC)
        self._run("ping_queue_rcv_skb", self._ping_queue_rcv, sk, clone)
        return True

    def _ping_queue_rcv(self, sk: Sock, skb: SkBuff) -> int:
        # sock_queue_rcv_skb_reason: full when rmem_alloc + truesize reaches sk_rcvbuf
        if sk.rmem_alloc + skb.truesize >= sk.rcvbuf:
            tp = self.tp_rcvqueue_full
            if tp.enabled:
                tp.fire(sk, skb)
            self.net.kfree_skb(skb, SKB_DROP["SOCKET_RCVBUFF"], self.ret["ping_queue_rcv_skb"], sk)
            return -ENOMEM
        sk.rmem_alloc += skb.truesize
        sk.queue.append(skb)
        self._data_ready(sk)
        return 0

    def ping_recv(self, sk: Sock) -> tuple[int, int]:
        """A task's ``recvfrom`` on a ping socket: (bytes, echo sequence) or (-EAGAIN, -1)."""
        return self.sock_recvmsg(sk, lambda s, n, f: self._run(
            "ping_recvmsg", self._ping_recvmsg, s, 0, n, f, 0), 65536)

    def _ping_recvmsg(self, sk: Sock, msg: int, length: int, flags: int,
                      addr_len: int) -> tuple:
        if not sk.queue:
            return -EAGAIN, -1
        skb = sk.queue.pop(0)
        copied = min(length, skb.len)             # the whole ICMP message
        icmp = self.net.mem.read(skb.data, 8)
        self._copy_to_user(skb, copied)
        sk.rmem_alloc -= skb.truesize
        self._run("skb_free_datagram", lambda s, b: self.net.consume_skb(
            b, self.ret["skb_free_datagram"]), sk, skb)
        return copied, int.from_bytes(icmp[6:8], "big")

    # ------------------------------------------------------------------ TCP: state
    def _set_state(self, sk: Sock, state: int) -> None:
        self._run("tcp_set_state", self._tcp_set_state, sk, state)

    def _tcp_set_state(self, sk: Sock, state: int) -> None:
        tp = self.tp_set_state
        if tp.enabled:
            tp.fire(sk, sk.state, state)
        sk.state = state

    def _key(self, sk: Sock) -> tuple:
        return (sk.saddr, sk.sport, sk.daddr, sk.dport)

    def listen(self, sk: Sock, port: int, dev: Any) -> None:
        """``bind`` and ``listen(2)``: CLOSE → LISTEN."""
        self.bind(sk, port, dev)
        self._run("inet_listen", lambda s, backlog: self._set_state(s, TCP_LISTEN), sk, 128)

    def _iss(self, sk: Sock) -> int:
        """secure_tcp_seq: a keyed hash of the 4-tuple (here a CRC with the kernel's seed)."""
        return zlib.crc32(repr((self._key(sk), self.kernel.seed)).encode()) & 0xffffffff

    def connect(self, sk: Sock, dev: Any, daddr: str, dport: int) -> None:
        """``connect(2)`` of a TCP socket: SYN_SENT, the SYN out (the handshake completes in the
        softirq that bottom halves re-enabled run, as on loopback)."""
        self._run("tcp_v4_connect", self._tcp_v4_connect, sk, 0, 16, dev, daddr, dport)

    def _tcp_v4_connect(self, sk: Sock, uaddr: int, addr_len: int, dev: Any, daddr: str,
                        dport: int) -> int:
        v6 = sk.family == AF_INET6
        sk.dev = dev
        sk.daddr, sk.dport = packets.addr_bytes(daddr), dport
        sk.saddr = packets.addr_bytes(dev.ipv6 if v6 else dev.ipv4)
        self._set_state(sk, TCP_SYN_SENT)        # inet_hash_connect picks the port after this
        sk.sport = self._ephemeral_port(sk.protocol)
        self.conns[self._key(sk)] = sk
        sk.snd_una = sk.snd_nxt = self._iss(sk)
        self._send(sk, "S", b"", queue=True)
        return 0

    def _destroy(self, sk: Sock) -> None:
        """``inet_csk_destroy_sock`` → ``tcp_v4_destroy_sock`` → the sock freed."""
        def destroy(s: Sock) -> None:
            self._cookie(s)
            tp = self.tp_destroy
            if tp.enabled:
                tp.fire(s)
        self._run("tcp_v4_destroy_sock", destroy, sk)
        for skb in sk.queue:
            self.net.free_skb_quietly(skb)
        sk.queue.clear()
        self.conns.pop(self._key(sk), None)
        if self.bound.get((sk.protocol, sk.sport)) is sk:
            del self.bound[(sk.protocol, sk.sport)]
        self._sk_free(sk)

    def _done(self, sk: Sock) -> None:
        """``tcp_done``: CLOSE, and the socket destroyed once its owner closed it."""
        def done(s: Sock) -> None:
            self._set_state(s, TCP_CLOSE)
            if s.dead:
                self._destroy(s)
        self._run("tcp_done", done, sk)

    def close(self, sk: Sock) -> None:
        """``close(2)``: a listener stops; ESTABLISHED sends FIN (FIN_WAIT1), CLOSE_WAIT sends
        FIN (LAST_ACK); the socket is destroyed when it reaches CLOSE."""
        self._run("tcp_close", self._tcp_close, sk, 0)

    def _tcp_close(self, sk: Sock, timeout: int) -> None:
        sk.dead = True
        if sk.state == TCP_LISTEN:
            self._set_state(sk, TCP_CLOSE)
            for child in sk.accept_queue:
                self.close(child)
            self._destroy(sk)
        elif sk.state in (TCP_ESTABLISHED, TCP_CLOSE_WAIT):
            self._set_state(sk, TCP_FIN_WAIT1 if sk.state == TCP_ESTABLISHED else TCP_LAST_ACK)
            self._send(sk, "FA", b"", queue=True)
        elif sk.state in (TCP_CLOSE, TCP_SYN_SENT):
            if sk.state == TCP_SYN_SENT:
                self._set_state(sk, TCP_CLOSE)
            self._destroy(sk)

    def accept(self, listener: Sock) -> Sock | None:
        return listener.accept_queue.pop(0) if listener.accept_queue else None

    # ------------------------------------------------------------------ TCP: output
    def _segment_frame(self, sk: Sock, flags: str, payload: bytes, seq: int) -> bytes:
        v6 = sk.family == AF_INET6
        seg = packets.tcp(sk.sport, sk.dport, payload, seq=seq, ack=sk.rcv_nxt if "A" in flags
                          else 0, flags=flags, window=sk.rcv_wnd)
        src, dst = packets.addr_text(sk.saddr), packets.addr_text(sk.daddr)
        ip = (packets.ipv6(src, dst, packets.IPPROTO_TCP, seg) if v6
              else packets.ipv4(src, dst, packets.IPPROTO_TCP, seg, df=True))
        return packets.ethernet(peer_mac(sk.dev), sk.dev.mac,
                                packets.ETH_P_IPV6 if v6 else packets.ETH_P_IP, ip)

    def _send(self, sk: Sock, flags: str, payload: bytes, queue: bool) -> None:
        """Send one segment at snd_nxt; ``queue`` keeps it for retransmission (SYN, FIN,
        data), a pure ACK is not kept."""
        seq = sk.snd_nxt
        if queue:
            if not sk.rtx:
                sk.timer_at = self.kernel.clock.peek_ns() + sk.rto_ns
            sk.rtx.append((seq, flags, payload))
            sk.sent_at[seq] = self.kernel.clock.peek_ns()
            sk.snd_nxt = (seq + len(payload) + ("S" in flags) + ("F" in flags)) & 0xffffffff
        self._transmit(sk, flags, payload, seq)

    def _transmit(self, sk: Sock, flags: str, payload: bytes, seq: int) -> Any:
        skb = self.net.frame_skb(sk.dev, self._segment_frame(sk, flags, payload, seq))
        gfp = GFP_KERNEL if self.net.machine.current.in_task() else GFP_ATOMIC
        self._run("__tcp_transmit_skb", lambda s, b, c, g, n: self.net.ip_local_out(b),
                  sk, skb, 1, gfp, sk.rcv_nxt)
        return skb

    def _send_ack(self, sk: Sock) -> None:
        self._run("tcp_send_ack", lambda s: self._send(s, "A", b"", queue=False), sk)

    def send(self, sk: Sock, data: bytes) -> int:
        """A task's ``sendto`` on a connected TCP socket."""
        def sendmsg(s: Sock, length: int) -> int:
            return self._run("tcp_sendmsg", self._tcp_sendmsg, s, 0, length, data)
        return self.sock_sendmsg(sk, sendmsg, len(data))

    def _tcp_sendmsg(self, sk: Sock, msg: int, size: int, data: bytes) -> int:
        if sk.state not in (TCP_ESTABLISHED, TCP_CLOSE_WAIT):
            return -32                           # -EPIPE
        self._send(sk, "PA", data, queue=True)
        return size

    def recv(self, sk: Sock, length: int = 65536) -> int:
        """A task's ``recvfrom`` on a TCP socket: bytes read, 0 at EOF, or -EAGAIN."""
        return self.sock_recvmsg(sk, lambda s, n, f: self._run(
            "tcp_recvmsg", self._tcp_recvmsg, s, 0, n, f, 0), length)[0]

    def _tcp_recvmsg(self, sk: Sock, msg: int, length: int, flags: int, addr_len: int) -> tuple:
        copied = 0
        while sk.queue and copied < length:
            skb = sk.queue.pop(0)
            self._copy_to_user(skb, skb.len)
            copied += skb.len
            sk.rmem_alloc -= skb.truesize
            self.net.free_skb_quietly(skb)       # tcp_eat_recv_skb
        if not copied:
            return (0 if sk.state in (TCP_CLOSE_WAIT, TCP_CLOSE) else -EAGAIN), None
        self._run("tcp_rcv_space_adjust", self._space_adjust, sk)
        return copied, None

    def _space_adjust(self, sk: Sock) -> None:
        tp = self.tp_space_adjust
        if tp.enabled:
            self._cookie(sk)
            tp.fire(sk)

    def retransmit_timer(self, sk: Sock) -> bool:
        """The retransmission timer expired (the caller runs it in softirq at ``timer_at``):
        RTO recovery sends the oldest unacknowledged segment again. False when nothing was
        outstanding."""
        if not sk.rtx:
            sk.timer_at = 0
            return False
        self._run("tcp_retransmit_timer", self._retransmit_timer, sk)
        return True

    def _retransmit_timer(self, sk: Sock) -> None:
        sk.ssthresh = max(sk.snd_cwnd >> 1, 2)    # tcp_enter_loss
        sk.snd_cwnd = 1
        seq, flags, payload = sk.rtx[0]
        self._run("tcp_retransmit_skb", self._retransmit_skb, sk, None, 1, seq, flags, payload)
        sk.sent_at.pop(seq, None)                 # Karn: no RTT sample from a retransmission
        sk.rto_ns *= 2
        sk.timer_at = self.kernel.clock.peek_ns() + sk.rto_ns

    def _retransmit_skb(self, sk: Sock, _skb: Any, segs: int, seq: int, flags: str,
                        payload: bytes) -> int:
        skb = self._transmit(sk, flags, payload, seq)
        tp = self.tp_retransmit
        if tp.enabled:
            tp.fire(sk, skb, 0)
        return 0

    # ------------------------------------------------------------------ TCP: input
    def _tcp_rcv(self, skb: SkBuff, p: Any, v6: bool) -> int:
        """``tcp_v4_rcv`` / ``tcp_v6_rcv``: checksum, socket lookup, the socket's input."""
        net = self.net
        where = self.ret["tcp_v6_rcv" if v6 else "tcp_v4_rcv"]
        if not self._checksum_ok(skb, p):
            tp = self.tp_bad_csum
            if tp.enabled:
                family = AF_INET6 if v6 else AF_INET
                sport, dport = struct.unpack_from("!HH", net.mem.read(skb.data, 4))
                tp.fire(skb, (family, packets.addr_bytes(p.src), sport),
                        (family, packets.addr_bytes(p.dst), dport))
            net.kfree_skb(skb, SKB_DROP["TCP_CSUM"], where)
            return 0
        seg = Segment(net.mem.read(skb.data, skb.len))
        local, remote = packets.addr_bytes(p.dst), packets.addr_bytes(p.src)
        sk = self.conns.get((local, seg.dport, remote, seg.sport))
        if sk is None:
            sk = self.bound.get((packets.IPPROTO_TCP, seg.dport))
        if sk is None:
            if (packets.IPPROTO_TCP, seg.dport) in net.listeners:
                net.consume_skb(skb, where)       # the discard service
                return 0
            if not seg.has("R"):
                self._run("tcp_v4_send_reset", self._send_reset, None, skb,
                          RST_REASON_VALUES["NO_SOCKET"], p, seg)
            net.kfree_skb(skb, SKB_DROP["NO_SOCKET"], where)
            return 0
        # the segment's data from here on: __skb_pull(skb, th->doff * 4) happens in queueing
        if sk.state == TCP_NEW_SYN_RECV:
            sk = self._check_req(sk, skb, seg)
            if sk is None:
                return 0
        self._run("tcp_v4_do_rcv", self._do_rcv, sk, skb, seg)
        return 0

    def _send_reset(self, sk: Any, skb: SkBuff, reason: int, p: Any, seg: Segment) -> None:
        v6 = p.l3 == "ipv6"
        family = AF_INET6 if v6 else AF_INET
        tp = self.tp_send_reset
        if tp.enabled:
            tp.fire(skb, sk, reason, (family, packets.addr_bytes(p.dst), seg.dport),
                    (family, packets.addr_bytes(p.src), seg.sport))
        if seg.has("A"):
            rst = packets.tcp(seg.dport, seg.sport, seq=seg.ack, flags="R", window=0)
        else:
            end = seg.seq + len(seg.payload) + seg.has("S") + seg.has("F")
            rst = packets.tcp(seg.dport, seg.sport, ack=end & 0xffffffff, flags="RA", window=0)
        ip = (packets.ipv6(p.dst, p.src, packets.IPPROTO_TCP, rst) if v6
              else packets.ipv4(p.dst, p.src, packets.IPPROTO_TCP, rst, df=True))
        dev = skb.dev
        frame = packets.ethernet(peer_mac(dev), dev.mac,
                                 packets.ETH_P_IPV6 if v6 else packets.ETH_P_IP, ip)
        self.net.xmit_frame(dev, frame, via_ip=True)   # ip_send_unicast_reply

    def _do_rcv(self, sk: Sock, skb: SkBuff, seg: Segment) -> int:
        if sk.state == TCP_ESTABLISHED:
            return self._run("tcp_rcv_established", self._rcv_established, sk, skb, seg)
        return self._run("tcp_rcv_state_process", self._rcv_state_process, sk, skb, seg)

    def _ack(self, sk: Sock, seg: Segment) -> None:
        """tcp_ack: what the peer acknowledged leaves the retransmission queue; an RTT sample
        (in µs, at least 1) feeds srtt as tcp_rtt_estimator does (srtt_us holds 8×srtt)."""
        if not seg.has("A") or not _seq_after(seg.ack, sk.snd_una):
            sk.snd_wnd = seg.window
            return
        now = self.kernel.clock.peek_ns()
        in_flight = len(sk.rtx)
        while sk.rtx:
            seq, flags, payload = sk.rtx[0]
            end = (seq + len(payload) + ("S" in flags) + ("F" in flags)) & 0xffffffff
            if _seq_after(end, seg.ack):
                break
            sk.rtx.pop(0)
            sent = sk.sent_at.pop(seq, None)
            if sent is not None:
                rtt = max(1, (now - sent) // 1000)
                sk.srtt_us = rtt << 3 if not sk.srtt_us else sk.srtt_us + rtt - (sk.srtt_us >> 3)
            if in_flight >= sk.snd_cwnd and sk.snd_cwnd < sk.ssthresh:
                sk.snd_cwnd += 1                  # slow start, while cwnd-limited
        sk.snd_una = seg.ack
        sk.snd_wnd = seg.window
        sk.rto_ns = TCP_RTO_MIN_NS
        sk.timer_at = now + sk.rto_ns if sk.rtx else 0

    def _rcv_established(self, sk: Sock, skb: SkBuff, seg: Segment) -> None:
        tp = self.tp_probe
        if tp.enabled:
            self._cookie(sk)
            tp.fire(sk, skb, len(seg.payload))
        self._ack(sk, seg)
        self._data(sk, skb, seg)

    def _data(self, sk: Sock, skb: SkBuff, seg: Segment) -> None:
        """tcp_data_queue and tcp_fin: in-order data to the receive queue, old data dropped
        (TCP_OLD_DATA, with an immediate ACK), a FIN moves the state on."""
        if seg.payload:
            if seg.seq != sk.rcv_nxt:
                self._send_ack(sk)
                self.net.kfree_skb(skb, SKB_DROP["TCP_OLD_DATA"], self.ret["tcp_data_queue"],
                                   sk)
                return
            sk.rcv_nxt = (sk.rcv_nxt + len(seg.payload)) & 0xffffffff
            skb.data += seg.hlen                  # __skb_pull(skb, th->doff * 4)
            skb.len -= seg.hlen
            self.net.sync(skb)
            sk.rmem_alloc += skb.truesize
            sk.queue.append(skb)
            self._data_ready(sk)
            if seg.has("F"):
                self._fin(sk)
            return
        if seg.has("F") and seg.seq == sk.rcv_nxt:
            self._fin(sk)
        self.net.free_skb_quietly(skb)

    def _fin(self, sk: Sock) -> None:
        sk.rcv_nxt = (sk.rcv_nxt + 1) & 0xffffffff
        self._run("tcp_fin", self._tcp_fin, sk)

    def _tcp_fin(self, sk: Sock) -> None:
        if sk.state == TCP_ESTABLISHED:
            self._set_state(sk, TCP_CLOSE_WAIT)
            self._send_ack(sk)
            self._data_ready(sk)
        elif sk.state == TCP_FIN_WAIT2:          # tcp_time_wait → tcp_done
            self._send_ack(sk)
            self._done(sk)

    def _rcv_state_process(self, sk: Sock, skb: SkBuff, seg: Segment) -> int:
        net = self.net
        if sk.state == TCP_LISTEN:
            if not seg.has("S") or seg.has("A"):
                net.kfree_skb(skb, SKB_DROP["TCP_FLAGS"], self.ret["tcp_rcv_state_process"], sk)
                return 1
            self._run("tcp_conn_request", self._conn_request, 0, 0, sk, skb, seg)
            net.consume_skb(skb, self.ret["tcp_rcv_state_process"])
            return 0
        if sk.state == TCP_SYN_SENT:
            if seg.has("S") and seg.has("A") and seg.ack == sk.snd_nxt:
                sk.rcv_nxt = (seg.seq + 1) & 0xffffffff
                self._ack(sk, seg)
                self._run("tcp_finish_connect", lambda s, b: self._set_state(s, TCP_ESTABLISHED),
                          sk, skb)
                self._send_ack(sk)
            net.free_skb_quietly(skb)
            return 0
        self._ack(sk, seg)
        acked_all = sk.snd_una == sk.snd_nxt
        if sk.state == TCP_SYN_RECV and acked_all:
            self._set_state(sk, TCP_ESTABLISHED)
        elif sk.state == TCP_FIN_WAIT1 and acked_all:
            self._set_state(sk, TCP_FIN_WAIT2)
        elif sk.state == TCP_LAST_ACK and acked_all:
            self._done(sk)
            net.free_skb_quietly(skb)
            return 0
        self._data(sk, skb, seg)
        return 0

    def _conn_request(self, rsk_ops: int, af_ops: int, sk: Sock, skb: SkBuff,
                      seg: Segment) -> int:
        """A SYN to a listener: a request sock (NEW_SYN_RECV) and the SYN-ACK."""
        req = self._sk_alloc("request_sock_TCP", sk.family, SOCK_STREAM, packets.IPPROTO_TCP,
                             GFP_ATOMIC)
        ip_off = skb.network_header - (skb.data - skb.head)
        hdr = self.net.mem.read(skb.data + ip_off, 40 if sk.family == AF_INET6 else 20)
        if sk.family == AF_INET6:
            req.saddr, req.daddr = hdr[24:40], hdr[8:24]
        else:
            req.saddr, req.daddr = hdr[16:20], hdr[12:16]
        req.sport, req.dport, req.dev, req.listener = sk.sport, seg.sport, skb.dev, sk
        req.state = TCP_NEW_SYN_RECV
        req.rcv_nxt = (seg.seq + 1) & 0xffffffff
        req.snd_una = req.snd_nxt = self._iss(req)
        req.snd_wnd = seg.window
        self.conns[self._key(req)] = req
        self._send(req, "SA", b"", queue=True)     # tcp_v4_send_synack
        return 0

    def _check_req(self, req: Sock, skb: SkBuff, seg: Segment) -> Sock | None:
        """tcp_check_req on the ACK of a SYN-ACK: the child socket, or None (segment dropped)."""
        if seg.has("S") and not seg.has("A"):   # the SYN again: inet_rtx_syn_ack
            self._transmit(req, "SA", b"", req.snd_una)
        if not seg.has("A") or seg.ack != req.snd_nxt:
            self.net.kfree_skb(skb, SKB_DROP["NOT_SPECIFIED"], self.ret["tcp_v4_rcv"],
                               req.listener)
            return None
        listener = req.listener
        child = self._run("inet_csk_clone_lock", self._clone_lock, listener, req, GFP_ATOMIC)
        del self.conns[self._key(req)]
        self._sk_free(req)
        child.saddr, child.daddr, child.dport, child.dev = req.saddr, req.daddr, req.dport, req.dev
        child.snd_una, child.snd_nxt, child.rcv_nxt = req.snd_una, req.snd_nxt, req.rcv_nxt
        child.snd_wnd = seg.window
        child.rtx, child.sent_at = req.rtx, req.sent_at
        self.conns[self._key(child)] = child
        listener.accept_queue.append(child)
        return child                              # tcp_child_process: its state process next

    def _clone_lock(self, listener: Sock, req: Sock, prio: int) -> Sock:
        child = self._sk_alloc("TCPv6" if listener.family == AF_INET6 else "TCP",
                               listener.family, SOCK_STREAM, packets.IPPROTO_TCP, prio)
        child.state, child.sport = listener.state, listener.sport    # sk_clone_lock's copy
        child.saddr, child.daddr = listener.saddr, listener.daddr
        self._set_state(child, TCP_SYN_RECV)
        return child
