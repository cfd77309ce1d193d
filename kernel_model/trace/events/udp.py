"""udp:udp_fail_queue_rcv_skb (include/trace/events/udp.h, 6.18): a datagram the socket's
receive queue could not take. The addresses are the datagram's (TP_STORE_ADDR_PORTS_SKB)."""
from __future__ import annotations

from typing import Any

from tracesim.kernel_model.trace.event import TraceEvent
from tracesim.kernel_model.trace.events.sock import FAMILY_SYMBOLS, sockaddr


def _fail_queue(rc: int, sk: Any, skb: Any, src: tuple, dst: tuple) -> tuple:
    """``src``/``dst``: (packed address, port) of the datagram, from its IP and UDP headers."""
    return (rc, src[1], dst[1], sk.family, sockaddr(sk.family, *src),
            sockaddr(sk.family, *dst))


def events() -> list[TraceEvent]:
    return [TraceEvent(
        "udp", "udp_fail_queue_rcv_skb",
        [("int", "rc"), ("__u16", "sport"), ("__u16", "dport"), ("__u16", "family"),
         ("__u8[28]", "saddr"), ("__u8[28]", "daddr")],
        f'"rc=%d family=%s src=%pISpc dest=%pISpc", REC->rc, __print_symbolic(REC->family, '
        f"{FAMILY_SYMBOLS}), REC->saddr, REC->daddr",
        _fail_queue, proto="int rc, struct sock *sk, struct sk_buff *skb")]
