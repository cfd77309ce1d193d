"""The modelled kernel's tracepoints, declared as in Linux 6.18, one module per TRACE_SYSTEM.

``all_events()`` returns fresh ``TraceEvent`` objects in a fixed order, so event IDs (assigned by
``Tracing`` in registration order) are deterministic.
"""
from __future__ import annotations

from kernel_model.events import bpf_trace, ftrace, kmem, napi, net, skb, sock, tcp, udp
from kernel_model.trace_event import TraceEvent


def all_events() -> list[TraceEvent]:
    out: list[TraceEvent] = []
    for module in (ftrace, bpf_trace, kmem, napi, net, skb, sock, tcp, udp):
        out += module.events()
    return out
