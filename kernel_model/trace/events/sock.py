"""sock: events of the modelled sockets (include/trace/events/sock.h, 6.18): inet_sock_set_state,
sk_data_ready, sock_rcvqueue_full, sock_send_length, sock_recv_length.

The assign functions read a socket of ``kernel_model/sockets.py``: ``addr``, ``family``,
``protocol``, ``state``, ``sport``/``dport`` (host order), ``saddr``/``daddr`` (4 or 16 packed
bytes). The address helpers here are shared with the tcp: and udp: events (the kernel's
TP_STORE_ADDRS and TP_STORE_ADDR_PORTS macros).
"""
from __future__ import annotations

import struct
from typing import Any

from tracesim.kernel_model.trace.event import TraceEvent

AF_INET, AF_INET6 = 2, 10
TCP_STATES = ("TCP_ESTABLISHED", "TCP_SYN_SENT", "TCP_SYN_RECV", "TCP_FIN_WAIT1",
              "TCP_FIN_WAIT2", "TCP_TIME_WAIT", "TCP_CLOSE", "TCP_CLOSE_WAIT", "TCP_LAST_ACK",
              "TCP_LISTEN", "TCP_CLOSING", "TCP_NEW_SYN_RECV")
TCP_STATE_VALUES = {name: i + 1 for i, name in enumerate(TCP_STATES)}
FAMILY_SYMBOLS = '{ 2, "AF_INET" }, { 10, "AF_INET6" }'
PROTO_SYMBOLS = '{ 6, "IPPROTO_TCP" }, { 132, "IPPROTO_SCTP" }, { 262, "IPPROTO_MPTCP" }'
# the v4/v6 address fields every inet event of sock.h and tcp.h records (TP_STORE_ADDRS)
ADDR_FIELDS = [("__u8[4]", "saddr"), ("__u8[4]", "daddr"), ("__u8[16]", "saddr_v6"),
               ("__u8[16]", "daddr_v6")]
ADDR_FMT = "saddr=%pI4 daddr=%pI4 saddrv6=%pI6c daddrv6=%pI6c"
ADDR_ARGS = "REC->saddr, REC->daddr, REC->saddr_v6, REC->daddr_v6"
V4MAPPED = bytes(10) + b"\xff\xff"


def store_addrs(sk: Any) -> tuple[bytes, bytes, bytes, bytes]:
    """TP_STORE_ADDRS: the IPv4 addresses, and the IPv6 ones (v4-mapped for an AF_INET socket)."""
    if sk.family == AF_INET6:
        return bytes(4), bytes(4), sk.saddr, sk.daddr
    return sk.saddr, sk.daddr, V4MAPPED + sk.saddr, V4MAPPED + sk.daddr


def sockaddr(family: int, addr: bytes, port: int) -> bytes:
    """A ``struct sockaddr_in`` / ``sockaddr_in6`` in the 28 bytes TP_STORE_ADDR_PORTS fills."""
    if family == AF_INET6:
        return struct.pack("<H", family) + struct.pack("!HI", port, 0) + addr + bytes(4)
    return (struct.pack("<H", family) + struct.pack("!H", port) + addr).ljust(28, b"\0")


def state_symbols(numeric: bool) -> str:
    """The ``__print_symbolic`` table of TCP states: by value (sock.h defines the enum for
    tracing) or by name (tcp.h's tcp_state_name leaves the names in the format)."""
    return ", ".join(f'{{ {i + 1 if numeric else name}, "{name}" }}'
                     for i, name in enumerate(TCP_STATES))


def _inet_sock_set_state(sk: Any, oldstate: int, newstate: int) -> tuple:
    return (sk.addr, oldstate, newstate, sk.sport, sk.dport, sk.family, sk.protocol,
            *store_addrs(sk))


def _sock_length(sk: Any, ret: int, flags: int) -> tuple:
    return (sk.addr, sk.family, sk.protocol, ret, flags)


def _length_event(name: str) -> TraceEvent:
    return TraceEvent(
        "sock", name,
        [("void *", "sk"), ("__u16", "family"), ("__u16", "protocol"), ("int", "ret"),
         ("int", "flags")],
        '"sk address = %p, family = %s protocol = %s, length = %d, error = %d, flags = 0x%x", '
        f"REC->sk, __print_symbolic(REC->family, {FAMILY_SYMBOLS}), "
        f"__print_symbolic(REC->protocol, {PROTO_SYMBOLS}), !(REC->flags & 2) ? "
        "(REC->ret > 0 ? REC->ret : 0) : 0, REC->ret < 0 ? REC->ret : 0, REC->flags",
        _sock_length, proto="struct sock *sk, int ret, int flags")


def events() -> list[TraceEvent]:
    states = state_symbols(numeric=True)
    return [
        TraceEvent(
            "sock", "inet_sock_set_state",
            [("const void *", "skaddr"), ("int", "oldstate"), ("int", "newstate"),
             ("__u16", "sport"), ("__u16", "dport"), ("__u16", "family"), ("__u16", "protocol"),
             *ADDR_FIELDS],
            f'"family=%s protocol=%s sport=%hu dport=%hu {ADDR_FMT} oldstate=%s newstate=%s", '
            f"__print_symbolic(REC->family, {FAMILY_SYMBOLS}), "
            f"__print_symbolic(REC->protocol, {PROTO_SYMBOLS}), REC->sport, REC->dport, "
            f"{ADDR_ARGS}, __print_symbolic(REC->oldstate, {states}), "
            f"__print_symbolic(REC->newstate, {states})",
            _inet_sock_set_state,
            proto="const struct sock *sk, const int oldstate, const int newstate"),
        TraceEvent(
            "sock", "sk_data_ready",
            [("const void *", "skaddr"), ("__u16", "family"), ("__u16", "protocol"),
             ("unsigned long", "ip")],
            '"family=%u protocol=%u func=%ps", REC->family, REC->protocol, (void *)REC->ip',
            lambda sk, ip: (sk.addr, sk.family, sk.protocol, ip),
            proto="const struct sock *sk"),
        TraceEvent(
            "sock", "sock_rcvqueue_full",
            [("int", "rmem_alloc"), ("unsigned int", "truesize"), ("int", "sk_rcvbuf")],
            '"rmem_alloc=%d truesize=%u sk_rcvbuf=%d", REC->rmem_alloc, REC->truesize, '
            "REC->sk_rcvbuf",
            lambda sk, skb: (sk.rmem_alloc, skb.truesize, sk.rcvbuf),
            proto="struct sock *sk, struct sk_buff *skb"),
        _length_event("sock_send_length"),
        _length_event("sock_recv_length"),
    ]
