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
_LEADING_FIELDS = struct.Struct("<18I")
assert _LEADING_FIELDS.size == SK_BUFF_FIELDS["hash"] + 4


def _be16(value: int) -> int:
    """A 16-bit value in network order, read back as the little-endian u32 the field holds."""
    return ((value & 0xFF) << 8) | ((value >> 8) & 0xFF)


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
    if vlan_tci is None:
        vlan_present = vlan_tci = vlan_proto = 0
    else:
        vlan_present = 1
    # one pack of the fields through ``hash`` (18 u32 words; pkt_type, priority, tc_index and
    # cb stay 0): a steering hook builds this once per packet, so it is part of each run's cost
    _LEADING_FIELDS.pack_into(ctx, 0, len(skb.data), 0, mark & _U32, queue_mapping & 0xFFFF,
                              _be16(protocol), vlan_present, vlan_tci & 0xFFFF, _be16(vlan_proto),
                              0, ingress_ifindex & _U32, ifindex & _U32, 0, 0, 0, 0, 0, 0,
                              skb_hash & _U32)
    return ctx
