"""bpf_trace:bpf_trace_printk (include/trace/events/bpf_trace.h, 5.9+)."""
from __future__ import annotations

from tracesim.kernel_model.trace.event import TraceEvent


def events() -> list[TraceEvent]:
    return [TraceEvent("bpf_trace", "bpf_trace_printk", [("__string", "bpf_string")],
                       '"%s", __get_str(bpf_string)', lambda msg: (msg,),
                       proto="const char *bpf_string")]
