"""The net: events the modelled data path passes (include/trace/events/net.h, 6.18):
netif_receive_skb, netif_rx, net_dev_queue, net_dev_xmit, net_dev_start_xmit,
netif_receive_skb_entry and netif_receive_skb_exit.

The model's skbs carry no VLAN tag, checksum offload state, fragments or GSO, so those fields
record 0 as the kernel does for such skbs; a header offset of 0xffff is "not set"."""
from __future__ import annotations

from typing import Any

from tracesim.kernel_model.trace.event import TraceEvent

_TEMPLATE_FIELDS = [("void *", "skbaddr"), ("unsigned int", "len"), ("__string", "name")]
_TEMPLATE_FMT = '"dev=%s skbaddr=%p len=%u", __get_str(name), REC->skbaddr, REC->len'


def _net_dev_template(skb: Any) -> tuple:
    return (skb.addr, skb.len, skb.dev.name)


def _net_dev_xmit(skb: Any, rc: int, dev: Any, skb_len: int) -> tuple:
    return (skb.addr, skb_len, rc, dev.name)


_NOT_SET = 0xffff


def _ntohs(v: int) -> int:
    return (v >> 8 | v << 8) & 0xffff


def _net_dev_start_xmit(skb: Any, dev: Any) -> tuple:
    # skb_network_offset / skb_transport_offset: the header minus (data - head)
    data_off = skb.data - skb.head
    transport_set = skb.transport_header != _NOT_SET
    return (dev.name, skb.queue_mapping, skb.addr, 0, 0, 0, _ntohs(skb.protocol), 0, skb.len,
            skb.data_len, skb.network_header - data_off, int(transport_set),
            skb.transport_header - data_off if transport_set else 0, 0, 0, 0, 0)


def _rx_verbose(skb: Any) -> tuple:
    mac_set = skb.mac_header != _NOT_SET
    return (skb.dev.name, skb.napi_id, skb.queue_mapping, skb.addr, 0, 0, 0,
            _ntohs(skb.protocol), 0, skb.hash, 0, skb.len, skb.data_len, skb.truesize,
            int(mac_set), skb.mac_header - (skb.data - skb.head) if mac_set else 0, 0, 0, 0)


_VLAN = [("bool", "vlan_tagged"), ("u16", "vlan_proto"), ("u16", "vlan_tci"),
         ("u16", "protocol"), ("u8", "ip_summed")]
_VLAN_FMT = ("vlan_tagged=%d vlan_proto=0x%04x vlan_tci=0x%04x protocol=0x%04x ip_summed=%d",
             "REC->vlan_tagged, REC->vlan_proto, REC->vlan_tci, REC->protocol, REC->ip_summed")
_RX_VERBOSE_FIELDS = [
    ("__string", "name"), ("unsigned int", "napi_id"), ("u16", "queue_mapping"),
    ("const void *", "skbaddr"), *_VLAN, ("u32", "hash"), ("bool", "l4_hash"),
    ("unsigned int", "len"), ("unsigned int", "data_len"), ("unsigned int", "truesize"),
    ("bool", "mac_header_valid"), ("int", "mac_header"), ("unsigned char", "nr_frags"),
    ("u16", "gso_size"), ("u16", "gso_type")]
_RX_VERBOSE_FMT = (
    f'"dev=%s napi_id=%#x queue_mapping=%u skbaddr=%p {_VLAN_FMT[0]} hash=0x%08x l4_hash=%d '
    'len=%u data_len=%u truesize=%u mac_header_valid=%d mac_header=%d nr_frags=%d gso_size=%d '
    'gso_type=%#x", __get_str(name), REC->napi_id, REC->queue_mapping, REC->skbaddr, '
    f'{_VLAN_FMT[1]}, REC->hash, REC->l4_hash, REC->len, REC->data_len, REC->truesize, '
    'REC->mac_header_valid, REC->mac_header, REC->nr_frags, REC->gso_size, REC->gso_type')


def events() -> list[TraceEvent]:
    # DEFINE_EVENT(net_dev_template, ...) share the class's fields and print format
    out = [TraceEvent("net", name, _TEMPLATE_FIELDS, _TEMPLATE_FMT, _net_dev_template,
                      proto="struct sk_buff *skb")
           for name in ("net_dev_queue", "netif_receive_skb", "netif_rx")]
    out.append(TraceEvent(
        "net", "net_dev_xmit",
        [("void *", "skbaddr"), ("unsigned int", "len"), ("int", "rc"), ("__string", "name")],
        '"dev=%s skbaddr=%p len=%u rc=%d", __get_str(name), REC->skbaddr, REC->len, REC->rc',
        _net_dev_xmit,
        proto="struct sk_buff *skb, int rc, struct net_device *dev, unsigned int skb_len"))
    out.append(TraceEvent(
        "net", "net_dev_start_xmit",
        [("__string", "name"), ("u16", "queue_mapping"), ("const void *", "skbaddr"), *_VLAN,
         ("unsigned int", "len"), ("unsigned int", "data_len"), ("int", "network_offset"),
         ("bool", "transport_offset_valid"), ("int", "transport_offset"), ("u8", "tx_flags"),
         ("u16", "gso_size"), ("u16", "gso_segs"), ("u16", "gso_type")],
        f'"dev=%s queue_mapping=%u skbaddr=%p {_VLAN_FMT[0]} len=%u data_len=%u '
        'network_offset=%d transport_offset_valid=%d transport_offset=%d tx_flags=%d '
        'gso_size=%d gso_segs=%d gso_type=%#x", __get_str(name), REC->queue_mapping, '
        f'REC->skbaddr, {_VLAN_FMT[1]}, REC->len, REC->data_len, REC->network_offset, '
        'REC->transport_offset_valid, REC->transport_offset, REC->tx_flags, REC->gso_size, '
        'REC->gso_segs, REC->gso_type',
        _net_dev_start_xmit, proto="const struct sk_buff *skb, const struct net_device *dev"))
    out.append(TraceEvent("net", "netif_receive_skb_entry", _RX_VERBOSE_FIELDS, _RX_VERBOSE_FMT,
                          _rx_verbose, proto="const struct sk_buff *skb"))
    out.append(TraceEvent("net", "netif_receive_skb_exit", [("int", "ret")], '"ret=%d", REC->ret',
                          lambda ret: (ret,), proto="int ret"))
    return out
