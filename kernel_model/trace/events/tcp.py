"""tcp: events of the modelled TCP (include/trace/events/tcp.h, 6.18): tcp_probe,
tcp_retransmit_skb, tcp_rcv_space_adjust, tcp_send_reset, tcp_destroy_sock, tcp_bad_csum.

tcp.h prints states through ``tcp_state_name``, whose table names the enum constants without a
TRACE_DEFINE_ENUM, so the format shows ``{ TCP_ESTABLISHED, "TCP_ESTABLISHED" }``: the values
come from ``print_constants``. Sockets are those of ``kernel_model/sockets.py``.
"""
from __future__ import annotations

from typing import Any

from tracesim.kernel_model.trace.event import TraceEvent
from tracesim.kernel_model.trace.events.sock import (
    ADDR_ARGS,
    ADDR_FIELDS,
    ADDR_FMT,
    AF_INET,
    FAMILY_SYMBOLS,
    TCP_STATE_VALUES,
    sockaddr,
    state_symbols,
    store_addrs,
)

# enum sk_rst_reason (include/net/rstreason.h, 6.18)
RST_REASONS = ("NOT_SPECIFIED", "NO_SOCKET", "TCP_INVALID_ACK_SEQUENCE", "TCP_RFC7323_PAWS",
               "TCP_TOO_OLD_ACK", "TCP_ACK_UNSENT_DATA", "TCP_FLAGS", "TCP_OLD_ACK",
               "TCP_ABORT_ON_DATA", "TCP_TIMEWAIT_SOCKET", "INVALID_SYN", "TCP_ABORT_ON_CLOSE",
               "TCP_ABORT_ON_LINGER", "TCP_ABORT_ON_MEMORY", "TCP_STATE", "TCP_KEEPALIVE_TIMEOUT",
               "TCP_DISCONNECT_WITH_DATA", "MPTCP_RST_EUNSPEC", "MPTCP_RST_EMPTCP",
               "MPTCP_RST_ERESOURCE", "MPTCP_RST_EPROHIBIT", "MPTCP_RST_EWQ2BIG",
               "MPTCP_RST_EBADPERF", "MPTCP_RST_EMIDDLEBOX", "ERROR", "MAX")
RST_REASON_VALUES = {name: i for i, name in enumerate(RST_REASONS)}
_PORTS = [("__u16", "sport"), ("__u16", "dport"), ("__u16", "family")]
_SOCK_FMT = f"family=%s sport=%hu dport=%hu {ADDR_FMT}"
_SOCK_ARGS = f"__print_symbolic(REC->family, {FAMILY_SYMBOLS}), REC->sport, REC->dport, {ADDR_ARGS}"


def _probe(sk: Any, skb: Any, data_len: int) -> tuple:
    return (sockaddr(sk.family, sk.saddr, sk.sport), sockaddr(sk.family, sk.daddr, sk.dport),
            sk.sport, sk.dport, sk.family, skb.mark, data_len, sk.snd_nxt, sk.snd_una,
            sk.snd_cwnd, sk.ssthresh, sk.snd_wnd, sk.srtt_us >> 3, sk.rcv_wnd, sk.cookie,
            skb.addr, sk.addr)


def _retransmit(sk: Any, skb: Any, err: int) -> tuple:
    return (skb.addr, sk.addr, sk.state, sk.sport, sk.dport, sk.family, *store_addrs(sk), err)


def _sock_cookie_event(sk: Any) -> tuple:
    return (sk.addr, sk.sport, sk.dport, sk.family, *store_addrs(sk), sk.cookie)


def _send_reset(skb: Any, sk: Any, reason: int, src: tuple, dst: tuple) -> tuple:
    """``src``/``dst`` are (family, packed address, port) of the reset's addresses: the
    socket's when there is one, else the offending segment's, swapped (TP_STORE_ADDR_PORTS_SKB
    with the destination as source)."""
    return (skb.addr, sk.addr if sk is not None else 0, sk.state if sk is not None else 0,
            reason, sockaddr(*src), sockaddr(*dst))


def _sock_event(name: str) -> TraceEvent:
    return TraceEvent(
        "tcp", name, [("const void *", "skaddr"), *_PORTS, *ADDR_FIELDS, ("__u64", "sock_cookie")],
        f'"{_SOCK_FMT} sock_cookie=%llx", {_SOCK_ARGS}, REC->sock_cookie', _sock_cookie_event,
        proto="struct sock *sk")


def events() -> list[TraceEvent]:
    names = state_symbols(numeric=False)
    reasons = ", ".join(f'{{ {i}, "{n}" }}' for i, n in enumerate(RST_REASONS))
    return [
        TraceEvent(
            "tcp", "tcp_retransmit_skb",
            [("const void *", "skbaddr"), ("const void *", "skaddr"), ("int", "state"), *_PORTS,
             *ADDR_FIELDS, ("int", "err")],
            f'"skbaddr=%p skaddr=%p family=%s sport=%hu dport=%hu {ADDR_FMT} state=%s err=%d", '
            f"REC->skbaddr, REC->skaddr, __print_symbolic(REC->family, {FAMILY_SYMBOLS}), "
            f"REC->sport, REC->dport, {ADDR_ARGS}, __print_symbolic(REC->state, {names}), "
            "REC->err",
            _retransmit, proto="const struct sock *sk, const struct sk_buff *skb, int err",
            print_constants=TCP_STATE_VALUES),
        TraceEvent(
            "tcp", "tcp_send_reset",
            [("const void *", "skbaddr"), ("const void *", "skaddr"), ("int", "state"),
             ("enum sk_rst_reason", "reason"), ("__u8[28]", "saddr"), ("__u8[28]", "daddr")],
            '"skbaddr=%p skaddr=%p src=%pISpc dest=%pISpc state=%s reason=%s", REC->skbaddr, '
            f"REC->skaddr, REC->saddr, REC->daddr, REC->state ? __print_symbolic(REC->state, "
            f'{names}) : "UNKNOWN", __print_symbolic(REC->reason, {reasons})',
            _send_reset, proto="const struct sock *sk, const struct sk_buff *skb, "
                               "const enum sk_rst_reason reason",
            print_constants=TCP_STATE_VALUES),
        _sock_event("tcp_destroy_sock"),
        TraceEvent(
            "tcp", "tcp_bad_csum",
            [("const void *", "skbaddr"), ("__u8[28]", "saddr"), ("__u8[28]", "daddr")],
            '"skbaddr=%p src=%pISpc dest=%pISpc", REC->skbaddr, REC->saddr, REC->daddr',
            lambda skb, src, dst: (skb.addr, sockaddr(*src), sockaddr(*dst)),
            proto="const struct sk_buff *skb"),
        _sock_event("tcp_rcv_space_adjust"),
        TraceEvent(
            "tcp", "tcp_probe",
            [("__u8[28]", "saddr"), ("__u8[28]", "daddr"), *_PORTS, ("__u32", "mark"),
             ("__u16", "data_len"), ("__u32", "snd_nxt"), ("__u32", "snd_una"),
             ("__u32", "snd_cwnd"), ("__u32", "ssthresh"), ("__u32", "snd_wnd"),
             ("__u32", "srtt"), ("__u32", "rcv_wnd"), ("__u64", "sock_cookie"),
             ("const void *", "skbaddr"), ("const void *", "skaddr")],
            '"family=%s src=%pISpc dest=%pISpc mark=%#x data_len=%d snd_nxt=%#x snd_una=%#x '
            'snd_cwnd=%u ssthresh=%u snd_wnd=%u srtt=%u rcv_wnd=%u sock_cookie=%llx skbaddr=%p '
            f'skaddr=%p", __print_symbolic(REC->family, {FAMILY_SYMBOLS}), REC->saddr, '
            "REC->daddr, REC->mark, REC->data_len, REC->snd_nxt, REC->snd_una, REC->snd_cwnd, "
            "REC->ssthresh, REC->snd_wnd, REC->srtt, REC->rcv_wnd, REC->sock_cookie, "
            "REC->skbaddr, REC->skaddr",
            _probe, proto="struct sock *sk, struct sk_buff *skb"),
    ]


__all__ = ["AF_INET", "RST_REASON_VALUES", "events"]
