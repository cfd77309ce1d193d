"""net:netif_receive_skb, netif_rx, net_dev_queue, net_dev_xmit (include/trace/events/net.h)."""
from __future__ import annotations

from typing import Any

from tracesim.kernel_model.trace.event import TraceEvent

_TEMPLATE_FIELDS = [("void *", "skbaddr"), ("unsigned int", "len"), ("__string", "name")]
_TEMPLATE_FMT = '"dev=%s skbaddr=%p len=%u", __get_str(name), REC->skbaddr, REC->len'


def _net_dev_template(skb: Any) -> tuple:
    return (skb.addr, skb.len, skb.dev.name)


def _net_dev_xmit(skb: Any, rc: int, dev: Any, skb_len: int) -> tuple:
    return (skb.addr, skb_len, rc, dev.name)


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
    return out
