"""The call chain a stack trace records: ``stacktrace`` triggers and hist ``common_stacktrace``.

A tracepoint's stack trace starts in the tracepoint's own frames (6.18 prints
``trace_event_raw_event_<event>`` then ``__traceiter_<event>``, as
``captures/05b_stacktrace_trace_full.txt`` shows), then the modelled call chain of the CPU,
innermost first. ``current_stack`` is the one place that reads that chain: today the CPU's
``stack`` attribute (return addresses, innermost first) when the machine keeps one; the per-CPU
call stack of modelled functions (kernel_model/kprobes.py) plugs in here.
"""
from __future__ import annotations

from typing import Any


def current_stack(cpu: Any) -> list[int]:
    """Return addresses of the functions active on ``cpu``, innermost first."""
    return [a for a in (getattr(cpu, "stack", None) or ()) if a]


def event_stack(tracing: Any, event: Any, cpu: Any) -> list[int]:
    """The frames a stack trace taken in ``event``'s tracepoint shows."""
    frames = []
    for name in (f"trace_event_raw_event_{event.name}", f"__traceiter_{event.name}"):
        addr = tracing.symbols.address_of(name)
        if addr:
            frames.append(addr)
    return frames + current_stack(cpu)
