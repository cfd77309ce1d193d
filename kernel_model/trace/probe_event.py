"""The event of a probe (kernel/trace/trace_probe.c: traceprobe_define_arg_fields,
__set_print_fmt, trace_probe_print_args): its head fields, one field per argument packed end to
end, the ``format`` file's print fmt and the trace line printer, shared by every probe kind."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tracesim.kernel_model.kprobes import reg_value
from tracesim.kernel_model.trace.event import TraceEvent
from tracesim.kernel_model.trace.probe import FETCH_TYPES, ProbeArg, symbol_text


class ProbeEvent(TraceEvent):
    """A probe's event: its head fields, then one field per argument, packed end to end
    (``parg->offset = *size``), with the kernel's print fmt and line printer."""

    HEAD_NORMAL = ([("unsigned long", "__probe_ip")], "(%lx)", "REC->__probe_ip")
    HEAD_RETURN = ([("unsigned long", "__probe_func"), ("unsigned long", "__probe_ret_ip")],
                   "(%lx <- %lx)", "REC->__probe_func, REC->__probe_ret_ip")
    HEAD_EVENT = ([("unsigned int", "__probe_type")], "(%u)", "REC->__probe_type")

    owner: Any                       # the kind's table (kprobe, fprobe, eprobe ... events)

    def definition(self) -> str:
        """The line ``dynamic_events`` lists for this probe (each kind says it its way)."""
        raise NotImplementedError

    def __init__(self, group: str, name: str, head: tuple[list[tuple[str, str]], str, str],
                 args: list[ProbeArg]) -> None:
        self.args = args
        fields, fmt, rec = head
        decls = list(fields) + [(a.field_type, a.name) for a in args]
        fmt += "".join(f" {a.name}={a.print_format()}" for a in args)
        rec += "".join(a.rec_args() for a in args)
        super().__init__(group, name, decls, f'"{fmt}", {rec}', _pass_through,
                         printer=_probe_printer, packed=True)

    def head_text(self, vals: dict[str, Any], symbols: Any) -> str:
        """What comes before the arguments in a trace line (``(sym+0x0/0x60)``)."""
        if "__probe_ret_ip" in vals:
            return (f"({symbol_text(vals['__probe_ret_ip'], symbols, True)} <- "
                    f"{symbol_text(vals['__probe_func'], symbols, False)})")
        return f"({symbol_text(vals['__probe_ip'], symbols, True)})"

    def arg_values(self, src: Any, cpu: Any) -> list[Any]:
        """The record values of the arguments (a fault stores 0, or a string of length 0:
        None, which the record builder stores with no bytes, not even the NUL)."""
        out: list[Any] = []
        for a in self.args:
            v = a.fetch(src, cpu)
            if a.is_string:
                out.append(v)
            elif a.count:
                size = FETCH_TYPES[a.type_name][0]
                items = v if v is not None else (0,) * a.count
                out.append(b"".join(int(x).to_bytes(size, "little") for x in items))
            else:
                size, signed = FETCH_TYPES[a.type_name][:2]
                if isinstance(v, bytes):     # $comm as a number: the model's comm has no address
                    v = 0
                v = reg_value(v or 0) & ((1 << (8 * size)) - 1)
                if signed and v >> (8 * size - 1):
                    v -= 1 << (8 * size)
                out.append(v)
        return out

    def same_args(self, other: ProbeEvent) -> int:
        """trace_probe_compare_arg_type: 0, or the 1-based index of the first difference."""
        a, b = self.args, other.args
        if len(a) != len(b):
            return min(len(a), len(b)) + 1
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if (x.type_name, x.count, x.name) != (y.type_name, y.count, y.name):
                return i + 1
        return 0

    def args_text(self) -> str:
        return "".join(f" {a.name}={a.comm}" for a in self.args)


def _pass_through(*values: Any) -> tuple:
    return values


def _probe_printer(ev: TraceEvent) -> Callable[[bytes, Any], str]:
    """print_kprobe_event & co: the head, then ``name=value`` per argument
    (trace_probe_print_args); a string that faulted prints ``(fault)``."""
    assert isinstance(ev, ProbeEvent)

    # print_type_string: a string's __data_loc length 0 is a fetch that faulted ("" is 1)
    loc_offset = {f.name: f.offset for f in ev.fields if f.is_data_loc}

    def one(a: ProbeArg, v: Any, symbols: Any, record: bytes = b"") -> str:
        t = a.type_name
        if a.is_string:
            at = loc_offset[a.name]
            return f'"{v}"' if record[at + 2:at + 4] != b"\0\0" else "(fault)"
        if t == "symbol":
            return symbol_text(v, symbols, True)
        if t == "char":
            return f"'{chr(v)}'"
        if t.startswith("x"):
            return f"0x{v:x}"
        return str(v)

    def printer(record: bytes, symbols: Any) -> str:
        vals = ev.decode(record)
        parts = [ev.head_text(vals, symbols)]
        for a in ev.args:
            v = vals[a.name]
            if a.count:
                size = FETCH_TYPES[a.type_name][0]
                raw = bytes(v).ljust(size * a.count, b"\0")
                items = [int.from_bytes(raw[i:i + size], "little", signed=FETCH_TYPES[a.type_name][1])
                         for i in range(0, size * a.count, size)]
                parts.append(f"{a.name}={{" + ",".join(one(a, x, symbols) for x in items) + "}")
            else:
                parts.append(f"{a.name}={one(a, v, symbols, record)}")
        return " ".join(parts)
    return printer
