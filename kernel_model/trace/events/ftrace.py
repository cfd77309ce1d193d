"""ftrace's own entries shown as events (kernel/trace/trace_entries.h, formats by trace_export.c:
``F_printk(fmt, args...) __stringify(fmt) ", " __stringify(args)``): print, kernel_stack."""
from __future__ import annotations

import struct
from typing import Any

from tracesim.kernel_model.trace.event import TraceEvent

TRACE_STACK = 4     # enum trace_type
TRACE_PRINT = 5
FTRACE_STACK_ENTRIES = 8


def ip_sym(addr: int, symbols: Any) -> str:
    """seq_print_ip_sym with the default options (nosym-offset, nosym-addr): the symbol name,
    ``0`` for a zero address, ``0x%08lx`` when no symbol covers it."""
    if not addr:
        return "0"
    hit = symbols.lookup(addr)
    return hit[0] if hit else f"0x{addr:08x}"


def _print_line(ev: TraceEvent) -> Any:
    """trace_print_print: ``<symbol of ip>: <buf>``; buf carries its own newline (the marker
    write appends one when the text lacks it), so nothing is added here."""
    def printer(record: bytes, symbols: Any) -> str:
        vals = ev.decode(record)
        return f"{ip_sym(vals['ip'], symbols)}: {vals['buf']}"
    return printer


def _stack_line(ev: TraceEvent) -> Any:
    """trace_stack_print: ``<stack trace>`` then `` => symbol`` per recorded caller."""
    def printer(record: bytes, symbols: Any) -> str:
        size = struct.unpack_from("<i", record, 8)[0]
        out = ["<stack trace>\n"]
        for i in range(min(size, FTRACE_STACK_ENTRIES)):
            (addr,) = struct.unpack_from("<Q", record, 16 + 8 * i)
            out.append(f" => {ip_sym(addr, symbols)}\n")
        return "".join(out)
    return printer


def events() -> list[TraceEvent]:
    print_ev = TraceEvent("ftrace", "print", [("unsigned long", "ip"), ("char[]", "buf")],
                          '"%ps: %s", (void *)REC->ip, REC->buf', lambda ip, buf: (ip, buf),
                          printer=_print_line, show_name=False)
    print_ev.id = TRACE_PRINT
    # F_printk stringifies the format as written: three literals of 3, 3 and 2 lines
    line = "\\t=> %ps\\n"
    stack_fmt = (f'"{line * 3}" "{line * 3}" "{line * 2}", '
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
