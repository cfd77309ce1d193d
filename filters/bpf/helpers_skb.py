"""Socket-filter helpers that read packet bytes: ``bpf_skb_load_bytes`` (26) and
``bpf_skb_load_bytes_relative`` (68), with the kernel's fault semantics (net/core/filter.c):

- ``bpf_skb_load_bytes(skb, offset, to, len)``: ``offset`` is from ``skb->data``; the copy fails
  when ``offset > INT_MAX`` or ``offset + len > skb->len`` (``skb_header_pointer``);
- ``bpf_skb_load_bytes_relative(skb, offset, to, len, start)``: ``offset`` is from the MAC header
  (``BPF_HDR_START_MAC`` = 0, which must have been set) or the network header
  (``BPF_HDR_START_NET`` = 1); it fails when ``offset > 0xffff``, for any other ``start``, or when
  ``start + offset + len`` passes the tail;
- on failure both zero-fill ``to`` and return ``-EFAULT``; on success they return 0.

The skb is what the caller passed to the engine's ``run(env=...)`` (``VMContext.env``): any object
with ``data`` (the bytes from ``skb->data`` to the tail), ``mac_header`` (offset of the MAC header
from ``data``, or None when unset) and ``network_header`` (offset from ``data``).  The context
argument itself is the ``struct __sk_buff`` image ``sk_buff_context()`` builds.
"""
from __future__ import annotations

import struct
from typing import Protocol

from filters.bpf.helpers import VMContext
from filters.bpf.memory import VMError

EFAULT = 14
INT_MAX = 0x7FFF_FFFF
BPF_HDR_START_MAC = 0
BPF_HDR_START_NET = 1

# struct __sk_buff (uapi, Linux 6.18): 192 bytes; the leading fields socket filters may read.
SK_BUFF_CTX_SIZE = 192
SK_BUFF_FIELDS = {"len": 0, "pkt_type": 4, "mark": 8, "queue_mapping": 12, "protocol": 16,
                  "vlan_present": 20, "vlan_tci": 24, "vlan_proto": 28, "priority": 32,
                  "ingress_ifindex": 36, "ifindex": 40, "tc_index": 44, "cb": 48, "hash": 68}

_U32 = 0xFFFF_FFFF


class SkbData(Protocol):
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


def _skb(vm: VMContext) -> SkbData:
    skb = vm.env
    if not hasattr(skb, "network_header") or not hasattr(skb, "data"):
        raise VMError("skb helper called without an skb (run the program with env=skb)")
    return skb


def _fail(vm: VMContext, to: int, length: int) -> int:
    vm.mem.write(to, bytes(length))
    return -EFAULT


def skb_load_bytes(vm: VMContext, ctx: int, offset: int, to: int, length: int, _r5: int = 0) -> int:
    skb = _skb(vm)
    offset, length = offset & _U32, length & _U32
    if offset > INT_MAX or offset + length > len(skb.data):
        return _fail(vm, to, length)
    vm.mem.write(to, bytes(skb.data[offset:offset + length]))
    return 0


def skb_load_bytes_relative(vm: VMContext, ctx: int, offset: int, to: int, length: int,
                            start_header: int) -> int:
    skb = _skb(vm)
    offset, length, start_header = offset & _U32, length & _U32, start_header & _U32
    if offset > 0xFFFF:
        return _fail(vm, to, length)
    if start_header == BPF_HDR_START_MAC:
        if skb.mac_header is None:
            return _fail(vm, to, length)
        start = skb.mac_header
    elif start_header == BPF_HDR_START_NET:
        start = skb.network_header
    else:
        return _fail(vm, to, length)
    at = start + offset
    if at + length > len(skb.data):
        return _fail(vm, to, length)
    vm.mem.write(to, bytes(skb.data[at:at + length]))
    return 0

