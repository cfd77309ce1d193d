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
argument itself is the ``struct __sk_buff`` image ``tracesim.kernel_model.net.sk_buff_ctx.sk_buff_context()``
builds.
"""
from __future__ import annotations

from tracesim.filters.bpf.runtime.helpers import VMContext
from tracesim.filters.bpf.vm.memory import VMError

# The context layout is the model's (it builds the context); re-exported for the helpers' users.
from tracesim.kernel_model.net.sk_buff_ctx import (
    SK_BUFF_CTX_SIZE,
    SK_BUFF_FIELDS,
    SkbData,
    sk_buff_context,
)

EFAULT = 14
INT_MAX = 0x7FFF_FFFF
BPF_HDR_START_MAC = 0
BPF_HDR_START_NET = 1
__all__ = ["SK_BUFF_CTX_SIZE", "SK_BUFF_FIELDS", "SkbData", "sk_buff_context"]

_U32 = 0xFFFF_FFFF


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

