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


STACK_HEAD = struct.Struct("<HBBii4x")  # struct stack_entry up to caller[]: entry, size, pad
ULONG_MAX = (1 << 64) - 1


def stack_record(flags: int, preempt: int, pid: int, callers: list[int]) -> bytes:
    """A ``kernel_stack`` entry as __ftrace_trace_stack reserves it: ``struct_size(entry,
    caller, nr_entries)``, every caller of the stack (the format's ``caller[8]`` is only its
    declaration)."""
    return (STACK_HEAD.pack(TRACE_STACK, flags, preempt, pid, len(callers))
            + struct.pack(f"<{len(callers)}Q", *callers))


def _stack_line(ev: TraceEvent) -> Any:
    """trace_stack_print: ``<stack trace>`` then `` => symbol`` per caller up to the entry's
    end (or a ULONG_MAX)."""
    def printer(record: bytes, symbols: Any) -> str:
        out = ["<stack trace>\n"]
        for off in range(16, len(record) - 7, 8):
            (addr,) = struct.unpack_from("<Q", record, off)
            if addr == ULONG_MAX:
                break
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
    stack_ev.build = lambda values, flags, depth, pid: stack_record(  # type: ignore[method-assign]
        flags, depth, pid, values[1])
    return [*function_events(), print_ev, stack_ev]


def function_events() -> list[TraceEvent]:
    """The function tracers' entries (trace_entries.h: FTRACE_ENTRY function, funcgraph_entry,
    funcgraph_exit, func_repeats) as the events/ftrace formats show them. The tracers write
    their records themselves (trace_functions.py); the printers here are the plain forms the
    ``function`` tracer's output and a graph comment use."""
    fn = TraceEvent("ftrace", "function",
                    [("unsigned long", "ip"), ("unsigned long", "parent_ip"),
                     ("unsigned long[]", "args")],
                    '" %ps <-- %ps", (void *)REC->ip, (void *)REC->parent_ip',
                    _no_assign, printer=_fn_line, show_name=False)
    fn.id = 1
    ent = TraceEvent("ftrace", "funcgraph_entry",
                     [("unsigned long", "func"), ("unsigned int", "depth"),
                      ("unsigned long[]", "args")],
                     '"--> %ps (%u)", (void *)REC->func, REC->depth', _no_assign,
                     printer=_graph_ent_line, show_name=False)
    ent.id = 11
    ret = TraceEvent("ftrace", "funcgraph_exit",
                     [("unsigned long", "func"), ("unsigned int", "depth"),
                      ("unsigned int", "overrun"), ("unsigned long long", "calltime"),
                      ("unsigned long long", "rettime")],
                     '"<-- %ps (%u) (start: %llx  end: %llx) over: %u", (void *)REC->func, '
                     'REC->depth, REC->calltime, REC->rettime, REC->depth', _no_assign,
                     printer=_graph_ret_line, show_name=False)
    ret.id = 10
    repeats = TraceEvent("ftrace", "func_repeats",
                         [("unsigned long", "ip"), ("unsigned long", "parent_ip"),
                          ("u16", "count"), ("u16", "top_delta_ts"), ("u32", "bottom_delta_ts")],
                         '" %ps <-%ps\\t(repeats:%u  delta: -%llu)", (void *)REC->ip, '
                         '(void *)REC->parent_ip, REC->count, '
                         '(((u64)(REC)->top_delta_ts << 32) | (REC)->bottom_delta_ts)',
                         _no_assign, printer=_repeats_plain, show_name=False)
    repeats.id = 20
    return [fn, ent, ret, repeats]


def repeats_line(record: bytes, symbols: Any, opts: Any, ts_text: Any) -> str:
    """trace_func_repeats_print: ``func <-parent (repeats: N, last_ts: T)``, T being the
    entry's time less its delta, printed as the trace prints times (``ts_text``)."""
    count, top, bottom = struct.unpack_from("<HHI", record, 24)
    return (fn_line(record, symbols, opts)[:-1]
            + f" (repeats: {count}, last_ts:{ts_text(top << 32 | bottom)})\n")


def _repeats_plain(ev: TraceEvent) -> Any:
    return lambda record, symbols: repeats_line(record, symbols, _DEFAULT_OPTS, lambda d: f" -{d}")


def _no_assign(*values: Any) -> tuple:
    return values


def print_ip_sym(addr: int, symbols: Any, opts: Any) -> str:
    """seq_print_ip_sym: ``0`` for no address, the symbol (``sym+0xoff/0xsize`` with
    sym-offset), `` <%016lx>`` after it with sym-addr."""
    if not addr:
        return "0"
    hit = symbols.lookup(addr)
    if hit is None:
        text = f"0x{addr:x}"
    elif opts.get("sym-offset"):
        text = f"{hit[0]}+0x{hit[1]:x}/0x{hit[2]:x}"
    else:
        text = hit[0]
    return text + (f" <{addr:016x}>" if opts.get("sym-addr") else "")


def fn_line(record: bytes | bytearray | memoryview, symbols: Any, opts: Any) -> str:
    """trace_fn_trace: ``func <-parent`` (the parent with print-parent, when known)."""
    ip, parent = struct.unpack_from("<QQ", record, 8)
    text = print_ip_sym(ip, symbols, opts)
    if opts.get("print-parent", True) and parent:
        text += " <-" + print_ip_sym(parent, symbols, opts)
    return text + "\n"


_DEFAULT_OPTS = {"print-parent": True}


def _fn_line(ev: TraceEvent) -> Any:
    return lambda record, symbols: fn_line(record, symbols, _DEFAULT_OPTS)


def _graph_ent_line(ev: TraceEvent) -> Any:
    """A graph entry printed outside the graph tracer (its event print format)."""
    def printer(record: bytes, symbols: Any) -> str:
        func, depth = struct.unpack_from("<QI", record, 8)
        return f"--> {ip_sym(func, symbols)} ({depth})\n"
    return printer


def _graph_ret_line(ev: TraceEvent) -> Any:
    def printer(record: bytes, symbols: Any) -> str:
        func, depth, overrun, calltime, rettime = struct.unpack_from("<QIIQQ", record, 8)
        return (f"<-- {ip_sym(func, symbols)} ({depth}) (start: {calltime:x}  end: "
                f"{rettime:x}) over: {depth}\n")
    return printer


def _stack_values(callers: list[int]) -> tuple:
    callers = list(callers)
    return (len(callers), callers)
