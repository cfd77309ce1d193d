"""ftrace's own entries shown as events (kernel/trace/trace_entries.h): print, kernel_stack."""
from __future__ import annotations

import struct
from typing import Any

from kernel_model.trace_event import TraceEvent

TRACE_STACK = 4     # enum trace_type
TRACE_PRINT = 5
FTRACE_STACK_ENTRIES = 8


def _print_line(ev: TraceEvent) -> Any:
    """trace_print_print: ``<symbol of ip>: <buf>`` (buf carries its own newline)."""
    def printer(record: bytes, symbols: Any) -> str:
        vals = ev.decode(record)
        hit = symbols.lookup(vals["ip"])
        name = hit[0] if hit else f"0x{vals['ip']:x}"
        return f"{name}: {vals['buf']}"
    return printer


def _stack_line(ev: TraceEvent) -> Any:
    """trace_stack_print: ``<stack trace>`` then `` => symbol`` per caller."""
    def printer(record: bytes, symbols: Any) -> str:
        size = struct.unpack_from("<i", record, 8)[0]
        out = ["<stack trace>\n"]
        for i in range(size):
            (addr,) = struct.unpack_from("<Q", record, 16 + 8 * i)
            hit = symbols.lookup(addr)
            name = f"{hit[0]}+0x{hit[1]:x}/0x{hit[2]:x}" if hit else f"0x{addr:x}"
            out.append(f" => {name}\n")
        return "".join(out)
    return printer


def events() -> list[TraceEvent]:
    print_ev = TraceEvent("ftrace", "print", [("unsigned long", "ip"), ("char[]", "buf")],
                          '"%ps: %s", (void *)REC->ip, REC->buf', lambda ip, buf: (ip, buf),
                          printer=_print_line, show_name=False)
    print_ev.id = TRACE_PRINT
    stack_fmt = ('"' + "\\t=> %ps\\n" * FTRACE_STACK_ENTRIES + '", '
                 + ", ".join(f"(void *)REC->caller[{i}]" for i in range(FTRACE_STACK_ENTRIES)))
    stack_ev = TraceEvent("ftrace", "kernel_stack",
                          [("int", "size"), (f"unsigned long[{FTRACE_STACK_ENTRIES}]", "caller")],
                          stack_fmt, _stack_values, printer=_stack_line, show_name=False)
    stack_ev.id = TRACE_STACK
    return [print_ev, stack_ev]


def _stack_values(callers: list[int]) -> tuple:
    callers = list(callers)[:FTRACE_STACK_ENTRIES]
    packed = struct.pack(f"<{len(callers)}Q", *callers).ljust(8 * FTRACE_STACK_ENTRIES, b"\0")
    return (len(callers), packed)
