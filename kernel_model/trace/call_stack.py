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


def current_stack(cpu: Any, kprobes: Any = None, here: str = "") -> list[int]:
    """Return addresses of the functions active on ``cpu``, innermost first: the kprobes'
    per-CPU call stack of modelled functions (complete while a user holds the call stacks,
    ``hold_stacks``), else the CPU's ``stack`` attribute when the machine keeps one."""
    if kprobes is not None:
        found = kprobes.call_stack(cpu.id, here)
        if found:
            return found
    return [a for a in (getattr(cpu, "stack", None) or ()) if a]


def event_stack(tracing: Any, event: Any, cpu: Any) -> list[int]:
    """The frames a stack trace taken in ``event``'s tracepoint shows: the tracepoint's own,
    then the call chain that reached it (the tracepoint is called as ``trace_<event>``)."""
    frames = []
    for name in (f"trace_event_raw_event_{event.name}", f"__traceiter_{event.name}"):
        addr = tracing.symbols.address_of(name)
        if addr:
            frames.append(addr)
    kprobes = getattr(getattr(tracing, "kernel", None), "kprobes", None)
    return frames + current_stack(cpu, kprobes, f"trace_{event.name}")


def hold_stacks(tracing: Any, hold: bool) -> None:
    """A trigger that records stacks starts (``hold``) or stops using the call stacks: while
    one is held every modelled function keeps its frame on the per-CPU stacks."""
    kprobes = getattr(getattr(tracing, "kernel", None), "kprobes", None)
    if kprobes is None or not hasattr(kprobes, "hold_call_stacks"):
        return
    if hold:
        kprobes.hold_call_stacks()
    else:
        kprobes.release_call_stacks()
