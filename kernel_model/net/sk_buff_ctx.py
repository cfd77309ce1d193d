"""The ``struct __sk_buff`` context image a socket filter runs on (uapi, Linux 6.18).

The kernel builds it where it runs the program (``bpf_prog_run_clear_cb`` in the TUN driver's
steering hook), so it belongs to the model; the BPF helpers and the loader read its layout from
here (helpers use the model, the model never imports the helpers).
"""
from __future__ import annotations

import struct
from typing import Protocol

# struct __sk_buff: 192 bytes; the leading fields socket filters may read.
SK_BUFF_CTX_SIZE = 192
SK_BUFF_FIELDS = {"len": 0, "pkt_type": 4, "mark": 8, "queue_mapping": 12, "protocol": 16,
                  "vlan_present": 20, "vlan_tci": 24, "vlan_proto": 28, "priority": 32,
                  "ingress_ifindex": 36, "ifindex": 40, "tc_index": 44, "cb": 48, "hash": 68}

_U32 = 0xFFFF_FFFF


class SkbData(Protocol):
    """The packet a program runs on: ``data`` (``skb->data`` to the tail), the MAC header offset
    from ``data`` (None when unset) and the network header offset."""
    data: bytes
    mac_header: int | None
    network_header: int


def sk_buff_context(skb: SkbData, *, protocol: int = 0, queue_mapping: int = 0, ifindex: int = 0,
                    ingress_ifindex: int = 0, skb_hash: int = 0, mark: int = 0,
                    vlan_tci: int | None = None, vlan_proto: int = 0) -> bytearray:
    """The ``struct __sk_buff`` a socket filter sees for ``skb`` (``cb`` cleared, as
    ``bpf_prog_run_clear_cb`` does).  ``protocol`` is in network order, as the kernel keeps it."""
    ctx = bytearray(SK_BUFF_CTX_SIZE)
    f = SK_BUFF_FIELDS
    struct.pack_into("<I", ctx, f["len"], len(skb.data))
    struct.pack_into("<I", ctx, f["mark"], mark & _U32)
    struct.pack_into("<I", ctx, f["queue_mapping"], queue_mapping & 0xFFFF)
    struct.pack_into("<I", ctx, f["protocol"],
                     int.from_bytes((protocol & 0xFFFF).to_bytes(2, "big"), "little"))
    if vlan_tci is not None:
        struct.pack_into("<III", ctx, f["vlan_present"], 1, vlan_tci & 0xFFFF,
                         int.from_bytes((vlan_proto & 0xFFFF).to_bytes(2, "big"), "little"))
    struct.pack_into("<II", ctx, f["ingress_ifindex"], ingress_ifindex & _U32, ifindex & _U32)
    struct.pack_into("<I", ctx, f["hash"], skb_hash & _U32)
    return ctx
