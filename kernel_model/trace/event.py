"""TRACE_EVENT as data: an event's fields, its binary record, its `format` file and its printed text.

Contract (what the machine, K1, calls)
---------------------------------------
Each tracepoint is a ``TraceEvent`` object, registered once in ``kernel.tracing`` and looked up
with ``kernel.tracing.event(system, name)``. Cache it at init; a call site reads::

    if tp.enabled:                 # the static key: one attribute check when tracing is off
        tp.fire(skb)               # the kernel tracepoint's TP_PROTO arguments, as model objects

``fire(*args)`` takes the TP_PROTO arguments of the Linux 6.18 tracepoint as the machine's Python
objects (see ``kernel_model/events/`` for each event's prototype and what it reads: skb objects
with attributes named like the C fields — ``addr``, ``len``, ``protocol`` (network order, as
``skb->protocol``), ``dev`` (``name``, ``ifindex``) — kmem_cache objects with ``name``,
``object_size``, ``size``; plain ints for addresses, sizes and flags).

What this module reads from the machine: ``kernel.machine.this_cpu()`` → an object with ``id``,
``task`` (``pid``, ``tgid``, ``comm``), ``preempt_count`` (the kernel encoding: PREEMPT 0xff,
SOFTIRQ 0xff00 with SOFTIRQ_OFFSET 0x100 while serving, HARDIRQ 0xf0000, NMI 0xf00000),
``irqs_off``, ``need_resched`` and ``migrate_disable`` (depth); ``kernel.clock.reader(name)`` for
timestamps; ``kernel.kallsyms`` for ``%pS``. Those bindings are made by ``Tracing`` (trace.py).

The record (what BPF programs and predicate filters see, what the ring buffer stores)
------------------------------------------------------------------------------------
Little-endian, laid out as the kernel's ``struct trace_event_raw_<call>``::

    u16 common_type @0, u8 common_flags @2, u8 common_preempt_count @3, s32 common_pid @4,
    then the event's fields at natural alignment, then ``__data_loc`` dynamic data.

The record length is ``sizeof(struct)`` (fixed part rounded up to the struct's alignment) plus
the dynamic data; dynamic data starts at ``offsetof(__data)`` (the unrounded end of the fixed part),
each ``__data_loc`` field holding ``len << 16 | offset`` (len includes the NUL).

Public API
----------
``Field`` (name, type, offset, size, is_signed — the predicate compiler's FieldLike),
``COMMON_FIELDS``, ``TraceEvent(system, name, fields, print_fmt, assign, ...)``,
``ev.format_text()`` (the ``format`` file), ``ev.decode(record) -> dict``,
``ev.print_text(record, symbols) -> str`` (the event part of a trace line, no newline),
``ev.line_text(record, symbols) -> str`` (``name: text`` and the line end(s) as the kernel prints),
``ev.line_printer`` (the function behind ``line_text``, for callers printing many records),
``trace_ctx(cpu) -> (common_flags, common_preempt_count)``.
"""
from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tracesim.kernel_model.trace.printfmt import compile_print_fmt

if TYPE_CHECKING:
    from tracesim.kernel_model.trace.printfmt import Buffer

# trace_flag_type (kernel/trace/trace.h, 6.13+)
TRACE_FLAG_IRQS_OFF = 0x01
TRACE_FLAG_NEED_RESCHED_LAZY = 0x02
TRACE_FLAG_NEED_RESCHED = 0x04
TRACE_FLAG_HARDIRQ = 0x08
TRACE_FLAG_SOFTIRQ = 0x10
TRACE_FLAG_PREEMPT_RESCHED = 0x20
TRACE_FLAG_NMI = 0x40
TRACE_FLAG_BH_OFF = 0x80

# preempt_count layout (include/linux/preempt.h)
SOFTIRQ_OFFSET = 0x100
SOFTIRQ_MASK = 0xff00
HARDIRQ_MASK = 0xf0000
NMI_MASK = 0xf00000


@dataclass(frozen=True)
class Field:
    """One field of an event record, as the ``format`` file describes it.

    ``type`` is the C type text of ``field:<type> <name>;`` with an array's ``[N]`` kept on the
    type (``"char[16]"``) — the predicate compiler's FieldLike convention.
    """

    name: str
    type: str
    offset: int
    size: int
    is_signed: bool

    @property
    def is_data_loc(self) -> bool:
        return self.type.startswith("__data_loc")

    def format_line(self) -> str:
        """The field's line in ``format`` (f_show: arrays print as ``char comm[16];``)."""
        bracket = -1 if self.is_data_loc else self.type.find("[")
        if bracket < 0:
            decl = f"{self.type} {self.name}"
        else:
            decl = f"{self.type[:bracket]} {self.name}{self.type[bracket:]}"
        return (f"\tfield:{decl};\toffset:{self.offset};\tsize:{self.size};"
                f"\tsigned:{int(self.is_signed)};\n")


COMMON_FIELDS: tuple[Field, ...] = (
    Field("common_type", "unsigned short", 0, 2, False),
    Field("common_flags", "unsigned char", 2, 1, False),
    Field("common_preempt_count", "unsigned char", 3, 1, False),
    Field("common_pid", "int", 4, 4, True),
)
COMMON_SIZE = 8
COMMON_STRUCT = "HBBi"

# C scalar types of x86-64: (size, signed, struct code); plain char is unsigned in the kernel
# since 6.2 (kbuild: -funsigned-char), so char fields show signed:0
_SCALARS: dict[str, tuple[int, bool, str]] = {
    "char": (1, False, "B"), "signed char": (1, True, "b"), "unsigned char": (1, False, "B"),
    "bool": (1, False, "B"), "u8": (1, False, "B"), "s8": (1, True, "b"), "__u8": (1, False, "B"),
    "short": (2, True, "h"), "unsigned short": (2, False, "H"), "u16": (2, False, "H"),
    "s16": (2, True, "h"), "__u16": (2, False, "H"),
    "int": (4, True, "i"), "unsigned int": (4, False, "I"), "u32": (4, False, "I"),
    "s32": (4, True, "i"), "__u32": (4, False, "I"), "gfp_t": (4, False, "I"),
    "pid_t": (4, True, "i"),
    "long": (8, True, "q"), "unsigned long": (8, False, "Q"), "size_t": (8, False, "Q"),
    "long long": (8, True, "q"), "unsigned long long": (8, False, "Q"),
    "u64": (8, False, "Q"), "s64": (8, True, "q"), "__u64": (8, False, "Q"),
}


def c_scalar(ctype: str) -> tuple[int, bool, str]:
    """(size, signed, struct code) of a scalar C type as the format file spells it."""
    t = ctype.strip()
    if t.endswith("*"):
        return 8, False, "Q"
    if t.startswith("enum "):
        return 4, False, "I"
    if t.startswith("const "):
        return c_scalar(t[6:])
    try:
        return _SCALARS[t]
    except KeyError:
        raise ValueError(f"unsupported field type {ctype!r}") from None


_ARRAY = re.compile(r"^(.*?)\[(\d*)\]$")


def layout(decls: Sequence[tuple[str, str]],
           packed: bool = False) -> tuple[list[Field], int, int, str]:
    """Lay out declared fields after the common header.

    ``decls`` are ``(ctype, name)`` pairs; ``"__string"`` / ``"__data_loc char[]"`` declare a
    dynamic string, ``"char[16]"`` a fixed array, ``"char[]"`` a trailing flexible array.
    ``packed`` lays fields end to end (probe events: ``parg->offset = *size``).
    Returns (fields, end of the fixed part, sizeof(struct), struct format of the fixed part).
    """
    fields: list[Field] = []
    off = COMMON_SIZE
    max_align = 4
    fmt = "<" + COMMON_STRUCT
    for ctype, name in decls:
        if ctype in ("__string", "__data_loc char[]"):
            ctype, size, signed, code, align = "__data_loc char[]", 4, False, "I", 4
        else:
            m = _ARRAY.match(ctype)
            if m:
                esize, esigned, _ = c_scalar(m.group(1))
                count = int(m.group(2) or 0)
                size, signed, align = esize * count, esigned, esize
                code = f"{size}s" if size else ""
            else:
                size, signed, code = c_scalar(ctype)
                align = size
        if packed:
            align = 1
        pad = -off % align
        if pad:
            fmt += f"{pad}x"
            off += pad
        fields.append(Field(name, ctype, off, size, signed))
        fmt += code
        off += size
        max_align = max(max_align, align)
    if packed:
        return fields, off, off, fmt
    return fields, off, off + (-off % max_align), fmt


_TASK_CTX = (0, 0)


def trace_ctx(cpu: Any) -> tuple[int, int]:
    """(common_flags, common_preempt_count) for the current context (tracing_gen_ctx_irq_test)."""
    pc = cpu.preempt_count
    if not (pc or cpu.irqs_off or cpu.need_resched or cpu.migrate_disable
            or cpu.need_resched_lazy):
        return _TASK_CTX               # task context, nothing disabled: the usual case
    flags = TRACE_FLAG_IRQS_OFF if cpu.irqs_off else 0
    if pc & NMI_MASK:
        flags |= TRACE_FLAG_NMI
    if pc & HARDIRQ_MASK:
        flags |= TRACE_FLAG_HARDIRQ
    if pc & SOFTIRQ_OFFSET:
        flags |= TRACE_FLAG_SOFTIRQ
    if (pc & SOFTIRQ_MASK) >> 9:
        flags |= TRACE_FLAG_BH_OFF
    if cpu.need_resched:
        flags |= TRACE_FLAG_NEED_RESCHED | TRACE_FLAG_PREEMPT_RESCHED
    if getattr(cpu, "need_resched_lazy", False):
        flags |= TRACE_FLAG_NEED_RESCHED_LAZY
    depth = min(pc & 0xff, 0xf) | min(cpu.migrate_disable, 0xf) << 4
    return flags, depth


class TraceEvent:
    """A tracepoint and its event: the declaration plus the runtime hooks ``Tracing`` sets.

    ``assign(*tp_args)`` returns the field values in declaration order (``str``/``bytes`` for
    dynamic strings and char arrays); ``print_fmt`` is the text after ``print fmt: `` in the
    ``format`` file, evaluated to print records unless ``printer(event)`` returns the
    (record, symbols) -> str function to use instead (ftrace entries, kprobe events).
    """

    def __init__(self, system: str, name: str, fields: Sequence[tuple[str, str]],
                 print_fmt: str, assign: Callable[..., Sequence[Any]],
                 printer: Callable[[TraceEvent], Callable[..., str]] | None = None,
                 proto: str = "", show_name: bool = True, packed: bool = False,
                 print_constants: dict[str, int] | None = None) -> None:
        self.system = system
        self.print_constants = print_constants or {}   # enum names the print fmt leaves as is
        self.name = name
        self.proto = proto
        self.show_name = show_name        # trace lines print ``name: `` first (not ftrace entries)
        self.id = 0
        self.assign = assign
        self.print_fmt = print_fmt
        self.fields, self.data_offset, self.struct_size, fixed_fmt = layout(fields, packed)
        self.all_fields: tuple[Field, ...] = COMMON_FIELDS + tuple(self.fields)
        self._fixed = struct.Struct(fixed_fmt)
        self._tail_pad = bytes(self.struct_size - self._fixed.size)
        self._dyn_index = tuple(i for i, f in enumerate(self.fields) if f.is_data_loc)
        self._flex = next((f for f in self.fields if f.type.endswith("[]")
                           and not f.is_data_loc), None)
        self._array_index = tuple(i for i, f in enumerate(self.fields)
                                  if f.type.endswith("]") and not f.type.endswith("[]"))
        self._simple = not self._dyn_index and not any(f.type.endswith("]") for f in self.fields)
        if self._dyn_index and self._flex is None:
            # strings after the fixed part: one generated builder, the layout worked out once
            self.build = _dynamic_builder(self)  # type: ignore[method-assign,assignment]
        if printer is not None:
            self._printer = printer(self)
            self.line_printer = self._printer if not show_name else self._named(self._printer)
        else:
            self._printer = compile_print_fmt(print_fmt, self)
            # the whole ``name: text\n`` in one generated function (TP_printk adds the newline)
            self.line_printer = compile_print_fmt(print_fmt, self, f"{name}: ", "\n")
        # runtime state, owned by Tracing (trace.py)
        self.enabled = False                     # the static key
        self.sinks: tuple[Callable[[bytes | None, Any, Buffer], None], ...] = ()
        self.attached: tuple[Callable[[bytes | None, Any, Buffer], None], ...] = ()  # eprobes
        # probes called with the TP_PROTO arguments before the record is built, as the
        # kernel's tracepoint_probe_register adds them (tprobes, BPF raw tracepoints, perf events)
        self.probes: tuple[Callable[[tuple], None], ...] = ()
        self.this_cpu: Callable[[], Any] = _no_machine

    def _named(self, printer: Callable[[Buffer, Any], str]) -> Callable[[Buffer, Any], str]:
        head = f"{self.name}: "
        return lambda record, symbols: head + printer(record, symbols) + "\n"

    @property
    def fixed_format(self) -> str:
        """The struct format of the record's fixed part (common fields, fields, padding)."""
        return self._fixed.format

    @property
    def full_name(self) -> str:
        return f"{self.system}:{self.name}"

    # -- the record
    def build(self, values: Sequence[Any], flags: int, depth: int, pid: int) -> bytes:
        """The binary record for field values ``values`` and a context header."""
        if self._simple:
            return self._fixed.pack(self.id, flags, depth, pid, *values) + self._tail_pad
        vals = list(values)
        pieces = []
        off = self.data_offset
        for i in self._dyn_index:
            v = vals[i]
            # None: a probe's string fetch that faulted, stored with length 0
            raw = b"" if v is None else (v.encode() if type(v) is str else bytes(v)) + b"\0"
            vals[i] = len(raw) << 16 | off
            off += len(raw)
            pieces.append(raw)
        flex = None
        if self._flex is not None:
            flex = _as_bytes(vals.pop()) + b"\0"
        for i in self._array_index:
            if type(vals[i]) is str:
                vals[i] = vals[i].encode()
        fixed = self._fixed.pack(self.id, flags, depth, pid, *vals)
        if flex is not None:
            return fixed + flex
        # sizeof(struct) + dynamic size, the data starting at offsetof(__data)
        return fixed + b"".join(pieces) + self._tail_pad

    def fire(self, *args: Any) -> None:
        """The tracepoint: build the record in the current context, hand it to every sink.

        Tracepoint BPF programs get the record itself as their context.
        """
        for probe in self.probes:
            probe(args)
        if not self.sinks:
            return
        cpu = self.this_cpu()
        flags, depth = trace_ctx(cpu)
        record = self.build(self.assign(*args), flags, depth, cpu.task.pid)
        for sink in self.sinks:
            sink(record, cpu, record)

    def decode(self, record: bytes | bytearray | memoryview) -> dict[str, Any]:
        """Field name → value (strings decoded, up to the NUL) for a record of this event."""
        vals = self._fixed.unpack_from(record, 0)
        out: dict[str, Any] = {
            "common_type": vals[0], "common_flags": vals[1],
            "common_preempt_count": vals[2], "common_pid": vals[3],
        }
        vi = 4
        for f in self.fields:
            if f.type.endswith("[]") and not f.is_data_loc:
                out[f.name] = _cstr(bytes(record[f.offset:]))
                continue
            v = vals[vi]
            vi += 1
            if f.is_data_loc:
                off, ln = v & 0xffff, v >> 16
                v = _cstr(bytes(record[off:off + ln]))
            elif isinstance(v, bytes) and f.type.startswith("char"):
                v = _cstr(v)
            out[f.name] = v
        return out

    def print_text(self, record: bytes | bytearray | memoryview, symbols: Any) -> str:
        """The event's text in a trace line (after ``name: ``), without the newline."""
        return self._printer(record, symbols)

    def line_text(self, record: bytes | bytearray | memoryview, symbols: Any) -> str:
        """What the event's output callback writes after the context columns.

        TRACE_EVENT output is ``name: `` + TP_printk text + ``"\n"`` always (trace_events.h:
        ``#define TP_printk(fmt, args...) fmt "\n", args``), so a text that ends with a newline
        (``bpf_printk("...\n")``) is followed by an empty line. ftrace's own entries carry their
        line ends themselves (a ``trace_marker`` text is stored with its newline).
        """
        return self.line_printer(record, symbols)

    # -- the format file
    def format_text(self) -> str:
        """``events/<sys>/<event>/format`` exactly as f_show prints it."""
        lines = [f"name: {self.name}\n", f"ID: {self.id}\n", "format:\n"]
        lines += [f.format_line() for f in COMMON_FIELDS]
        lines.append("\n")
        lines += [f.format_line() for f in self.fields]
        lines.append(f"\nprint fmt: {self.print_fmt}\n")
        return "".join(lines)


def _dynamic_builder(ev: TraceEvent) -> Callable[[Sequence[Any], int, int, int], bytes]:
    """``build`` for an event with ``__data_loc`` strings and no flexible array, generated:
    each string encoded with its NUL, its ``len << 16 | offset`` word computed from the
    strings before it, char arrays given as str encoded, one ``pack`` (the same record as
    the generic ``TraceEvent.build``)."""
    n = len(ev.fields)
    names = [f"v{i}" for i in range(n)]
    lines = ["def build(values, flags, depth, pid):",
             f"    {', '.join(names)}{',' if n == 1 else ''} = values"]
    at = [str(ev.data_offset)]
    strings = []
    for i in range(n):
        if i in ev._dyn_index:
            lines.append(f"    d{i} = b'' if v{i} is None else (v{i}.encode() if type(v{i}) is str"
                         f" else bytes(v{i})) + b'\\0'")
            lines.append(f"    v{i} = len(d{i}) << 16 | ({' + '.join(at)})")
            at.append(f"len(d{i})")
            strings.append(f"d{i}")
        elif i in ev._array_index:
            lines.append(f"    if type(v{i}) is str:")
            lines.append(f"        v{i} = v{i}.encode()")
    lines.append(f"    return pack(ev.id, flags, depth, pid, {', '.join(names)})"
                 + "".join(f" + {d}" for d in strings) + " + TAIL")
    env: dict[str, Any] = {"pack": ev._fixed.pack, "ev": ev, "TAIL": ev._tail_pad}
    exec(compile("\n".join(lines) + "\n", f"<record {ev.system}:{ev.name}>", "exec"), env)
    return env["build"]


def _no_machine() -> Any:
    raise RuntimeError("event fired before Tracing bound it to a machine")


def _as_bytes(v: Any) -> bytes:
    return v.encode() if isinstance(v, str) else bytes(v)


def _cstr(raw: bytes) -> str:
    nul = raw.find(b"\0")
    return (raw if nul < 0 else raw[:nul]).decode("utf-8", "replace")
