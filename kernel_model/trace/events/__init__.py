"""The modelled kernel's tracepoints, declared as in Linux 6.18, one module per TRACE_SYSTEM.

``all_events()`` returns fresh ``TraceEvent`` objects in a fixed order, so event IDs (assigned by
``Tracing`` in registration order) are deterministic.
"""
from __future__ import annotations

from tracesim.kernel_model.trace.event import TraceEvent
from tracesim.kernel_model.trace.events import (
    bpf_trace,
    ftrace,
    irq,
    kmem,
    napi,
    net,
    sched,
    signal,
    skb,
    sock,
    syscalls,
    task,
    tcp,
    timer,
    udp,
    workqueue,
)


def all_events() -> list[TraceEvent]:
    out: list[TraceEvent] = []
    for module in (ftrace, bpf_trace, kmem, napi, net, skb, sock, tcp, udp,
                   sched, irq, timer, workqueue, signal, syscalls, task):
        out += module.events()
    return out
