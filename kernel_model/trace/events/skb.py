"""skb:kfree_skb, skb:consume_skb and skb:skb_copy_datagram_iovec as in Linux 6.18
include/trace/events/skb.h."""
from __future__ import annotations

from typing import Any

from tracesim.kernel_model.trace.event import TraceEvent

# enum skb_drop_reason (include/net/dropreason-core.h, 6.18): NOT_SPECIFIED = 2 ... MAX
DROP_REASONS: tuple[str, ...] = (
    "NOT_SPECIFIED", "NO_SOCKET", "SOCKET_CLOSE", "SOCKET_FILTER", "SOCKET_RCVBUFF",
    "UNIX_DISCONNECT", "UNIX_SKIP_OOB", "PKT_TOO_SMALL", "TCP_CSUM", "UDP_CSUM", "NETFILTER_DROP",
    "OTHERHOST", "IP_CSUM", "IP_INHDR", "IP_RPFILTER", "UNICAST_IN_L2_MULTICAST", "XFRM_POLICY",
    "IP_NOPROTO", "PROTO_MEM", "TCP_AUTH_HDR", "TCP_MD5NOTFOUND", "TCP_MD5UNEXPECTED",
    "TCP_MD5FAILURE", "TCP_AONOTFOUND", "TCP_AOUNEXPECTED", "TCP_AOKEYNOTFOUND", "TCP_AOFAILURE",
    "SOCKET_BACKLOG", "TCP_FLAGS", "TCP_ABORT_ON_DATA", "TCP_ZEROWINDOW", "TCP_OLD_DATA",
    "TCP_OVERWINDOW", "TCP_OFOMERGE", "TCP_RFC7323_PAWS", "TCP_RFC7323_PAWS_ACK",
    "TCP_RFC7323_TW_PAWS", "TCP_RFC7323_TSECR", "TCP_LISTEN_OVERFLOW", "TCP_OLD_SEQUENCE",
    "TCP_INVALID_SEQUENCE", "TCP_INVALID_END_SEQUENCE", "TCP_INVALID_ACK_SEQUENCE", "TCP_RESET",
    "TCP_INVALID_SYN", "TCP_CLOSE", "TCP_FASTOPEN", "TCP_OLD_ACK", "TCP_TOO_OLD_ACK",
    "TCP_ACK_UNSENT_DATA", "TCP_OFO_QUEUE_PRUNE", "TCP_OFO_DROP", "IP_OUTNOROUTES",
    "BPF_CGROUP_EGRESS", "IPV6DISABLED", "NEIGH_CREATEFAIL", "NEIGH_FAILED", "NEIGH_QUEUEFULL",
    "NEIGH_DEAD", "NEIGH_HH_FILLFAIL", "TC_EGRESS", "SECURITY_HOOK", "QDISC_DROP",
    "QDISC_OVERLIMIT", "QDISC_CONGESTED", "CAKE_FLOOD", "FQ_BAND_LIMIT", "FQ_HORIZON_LIMIT",
    "FQ_FLOW_LIMIT", "CPU_BACKLOG", "XDP", "TC_INGRESS", "UNHANDLED_PROTO", "SKB_CSUM",
    "SKB_GSO_SEG", "SKB_UCOPY_FAULT", "DEV_HDR", "DEV_READY", "FULL_RING", "NOMEM", "HDR_TRUNC",
    "TAP_FILTER", "TAP_TXFILTER", "ICMP_CSUM", "INVALID_PROTO", "IP_INADDRERRORS", "IP_INNOROUTES",
    "IP_LOCAL_SOURCE", "IP_INVALID_SOURCE", "IP_LOCALNET", "IP_INVALID_DEST", "PKT_TOO_BIG",
    "DUP_FRAG", "FRAG_REASM_TIMEOUT", "FRAG_TOO_FAR", "TCP_MINTTL", "IPV6_BAD_EXTHDR",
    "IPV6_TOO_MANY_EXTHDRS", "IPV6_NDISC_FRAG", "IPV6_NDISC_HOP_LIMIT", "IPV6_NDISC_BAD_CODE",
    "IPV6_NDISC_BAD_OPTIONS", "IPV6_NDISC_NS_OTHERHOST", "QUEUE_PURGE", "TC_COOKIE_ERROR",
    "PACKET_SOCK_ERROR", "TC_CHAIN_NOTFOUND", "TC_RECLASSIFY_LOOP", "VXLAN_INVALID_HDR",
    "VXLAN_VNI_NOT_FOUND", "MAC_INVALID_SOURCE", "VXLAN_ENTRY_EXISTS", "NO_TX_TARGET",
    "IP_TUNNEL_ECN", "TUNNEL_TXINFO", "LOCAL_MAC", "ARP_PVLAN_DISABLE", "MAC_IEEE_MAC_CONTROL",
    "BRIDGE_INGRESS_STP_STATE", "CAN_RX_INVALID_FRAME", "CANFD_RX_INVALID_FRAME",
    "CANXL_RX_INVALID_FRAME", "PFMEMALLOC", "DUALPI2_STEP_DROP", "PSP_INPUT", "PSP_OUTPUT",
    "RECURSION_LIMIT", "SKB_RX_HEADROOM", "MAX",
)
DROP_REASON_VALUES = {name: i + 2 for i, name in enumerate(DROP_REASONS)}


def ntohs(v: int) -> int:
    """skb->protocol is __be16: the tracepoint stores ntohs(skb->protocol)."""
    return (v >> 8 | v << 8) & 0xFFFF


def _symbolic(table: tuple[str, ...], first: int) -> str:
    return ", ".join(f'{{ {first + i}, "{name}" }}' for i, name in enumerate(table))


def _kfree_skb(skb: Any, location: int, reason: int, rx_sk: Any = 0) -> tuple:
    sk = rx_sk if type(rx_sk) is int else rx_sk.addr       # a socket of sockets.py
    return (skb.addr, location, sk, ntohs(skb.protocol), reason)


def _consume_skb(skb: Any, location: int) -> tuple:
    return (skb.addr, location)


def events() -> list[TraceEvent]:
    return [
        TraceEvent(
            "skb", "kfree_skb",
            [("void *", "skbaddr"), ("void *", "location"), ("void *", "rx_sk"),
             ("unsigned short", "protocol"), ("enum skb_drop_reason", "reason")],
            '"skbaddr=%p rx_sk=%p protocol=%u location=%pS reason: %s", REC->skbaddr, '
            "REC->rx_sk, REC->protocol, REC->location, __print_symbolic(REC->reason, "
            + _symbolic(DROP_REASONS, 2) + ")",
            _kfree_skb,
            proto="struct sk_buff *skb, void *location, enum skb_drop_reason reason, "
                  "struct sock *rx_sk"),
        TraceEvent(
            "skb", "consume_skb",
            [("void *", "skbaddr"), ("void *", "location")],
            '"skbaddr=%p location=%pS", REC->skbaddr, REC->location',
            _consume_skb, proto="struct sk_buff *skb, void *location"),
        TraceEvent(
            "skb", "skb_copy_datagram_iovec", [("const void *", "skbaddr"), ("int", "len")],
            '"skbaddr=%p len=%d", REC->skbaddr, REC->len', lambda skb, length: (skb.addr, length),
            proto="const struct sk_buff *skb, int len"),
    ]
