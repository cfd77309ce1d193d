"""Synthetic events (kernel/trace/trace_events_synth.c): ``synthetic_events`` and ``s:`` lines of
``dynamic_events``.

A command is ``NAME TYPE FIELD[; TYPE FIELD ...]`` (``!NAME`` removes it); the event appears as
``events/synthetic/NAME`` with the usual files. Its record is the kernel's ``struct
synth_trace_event``: the common header, then one u64 slot per field (a fixed-size string takes
``STR_VAR_LEN_MAX`` bytes), the ``format`` file showing each field with its declared type and
size at its slot's offset. Hist trigger actions (``onmatch(...).trace(NAME, ...)``) fire it with
``SynthEvent.trace(values)``.

Field types: the numeric types of ``SYNTH_TYPES``, fixed strings ``char name[N]`` (N up to
``STR_VAR_LEN_MAX``, a 256-byte slot) and dynamic strings ``char name[]`` (an 8-byte slot holding
the ``__data_loc`` word, the text after the slots). Errors are ``OSError`` with the kernel's
errno and, for malformed commands, an ``error_log`` entry at location ``synthetic_events`` with
the caret under the offending word.
"""
from __future__ import annotations

import errno
import re
import struct
from typing import Any

from tracesim.kernel_model.trace.errlog import os_error
from tracesim.kernel_model.trace.event import COMMON_FIELDS, Field, TraceEvent, trace_ctx

SYSTEM = "synthetic"
SYNTH_FIELDS_MAX = 64
STR_VAR_LEN_MAX = 256
MAX_EVENT_NAME_LEN = 64

SYNTH_ERRORS = {
    "BAD_NAME": "Illegal name",
    "INVALID_CMD": "Command must be of the form: <name> field[;field] ...",
    "INVALID_DYN_CMD": "Command must be of the form: s or -:[synthetic/]<name> field[;field] ...",
    "EVENT_EXISTS": "Event already exists",
    "TOO_MANY_FIELDS": "Too many fields",
    "INCOMPLETE_TYPE": "Incomplete type",
    "INVALID_TYPE": "Invalid type",
    "INVALID_FIELD": "Invalid field",
    "INVALID_ARRAY_SPEC": "Invalid array specification",
}

# synth_field_size / synth_field_fmt: type -> (size, printf); synth_field_signed: every type
# not starting with "u" is signed, but gfp_t
SYNTH_TYPES: dict[str, tuple[int, str]] = {
    "s64": (8, "%lld"), "u64": (8, "%llu"), "s32": (4, "%d"), "u32": (4, "%u"),
    "s16": (2, "%d"), "u16": (2, "%u"), "s8": (1, "%d"), "u8": (1, "%u"), "char": (1, "%d"),
    "unsigned char": (1, "%u"), "int": (4, "%d"), "unsigned int": (4, "%u"),
    "long": (8, "%ld"), "unsigned long": (8, "%lu"), "bool": (1, "%d"), "pid_t": (4, "%d"),
    "gfp_t": (4, "%x"),
}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_STRING = re.compile(r"^char\[(\d{0,3})\]$")


class SynthField:
    """One declared field: C type, name, size, signedness, and whether it is a string."""

    def __init__(self, ctype: str, name: str) -> None:
        self.name = name
        m = _STRING.match(ctype)
        self.is_string = m is not None
        # synth_field_is_stack: "long[]" / "unsigned long[]", a stack trace kept as a
        # dynamic array of return addresses
        self.is_stack = "long[" in ctype
        self.is_dynamic = (m is not None and not m.group(1)) or self.is_stack
        self.type = "__data_loc " + ctype if self.is_dynamic else ctype
        self.is_signed = not self.type.startswith("u") and ctype != "gfp_t" \
            and not self.is_stack
        if m:
            self.size = 8 if self.is_dynamic else int(m.group(1))
            self.fmt = "%.*s"
        elif self.is_stack:
            self.size, self.fmt = 8, "%s"
        else:
            self.size, self.fmt = SYNTH_TYPES[ctype]

    @property
    def shown_type(self) -> str:
        """The type as ``synthetic_events`` shows it (``__data_loc`` only in ``format``)."""
        return self.type.removeprefix("__data_loc ")


class SynthError(Exception):
    def __init__(self, key: str, word: str | None = None, code: int = errno.EINVAL) -> None:
        super().__init__(key)
        self.key, self.word, self.code = key, word, code


class SynthEvent(TraceEvent):
    """A synthetic event: its fields in u64 slots, printed as ``name=value`` pairs."""

    def __init__(self, name: str, fields: list[SynthField]) -> None:
        self.synth_fields = fields
        self.ref = 0                      # hist triggers using it (removal is EBUSY then)
        slots = [(f"char[{STR_VAR_LEN_MAX}]" if f.is_string and not f.is_dynamic else
                  ("s64" if f.is_signed and not f.is_dynamic else "u64"), f.name)
                 for f in fields]
        fmt = ", ".join(f"{f.name}={f.fmt}" for f in fields)
        args = "".join(f", __get_stacktrace({f.name})" if f.is_stack else
                       f", __get_str({f.name})" if f.is_dynamic else f", REC->{f.name}"
                       for f in fields)
        super().__init__(SYSTEM, name, slots, f'"{fmt}"{args}', self._assign,
                         printer=_synth_printer)
        # the format file shows the declared types and sizes at the slots' offsets
        shown = tuple(Field(f.name, f.type, slot.offset, f.size, f.is_signed)
                      for f, slot in zip(fields, self.fields, strict=True))
        self.slot_fields = self.fields
        self.fields = list(shown)
        self.all_fields = COMMON_FIELDS + shown

    def _assign(self, *values: Any) -> list[Any]:
        """Slot values: numbers cut to the field's size (trace_event_raw_event_synth),
        strings to their slot; a dynamic string's text goes to ``self._tail``."""
        out: list[Any] = []
        tail = b""
        data = self.struct_size
        for f, v in zip(self.synth_fields, values, strict=False):
            if f.is_stack:
                # trace_stack: the addresses up to the first 0, and a 0 ending them
                addrs = [a for a in (v if isinstance(v, tuple | list) else ()) if a]
                raw = struct.pack(f"<{len(addrs) + 1}Q", *addrs, 0)
                out.append(len(raw) << 16 | (data + len(tail)))
                tail += raw
                continue
            if f.is_string:
                raw = (v.encode() if isinstance(v, str) else bytes(v or b""))
                raw = raw[:STR_VAR_LEN_MAX - 1]
                if f.is_dynamic:
                    text = raw + b"\0"
                    out.append(len(text) << 16 | (data + len(tail)))
                    tail += text
                else:
                    out.append(raw[:f.size - 1] if f.size else raw)
            else:
                v = _truncate(int(v), f.size, False)
                out.append(v - (1 << 64) if f.is_signed and f.size == 8 and v >> 63 else v)
        self._tail = tail
        return out

    def definition(self) -> str:
        """``synthetic_events`` line: ``NAME\\tTYPE FIELD; TYPE FIELD``."""
        return f"{self.name}\t" + "; ".join(f"{f.shown_type} {f.name}"
                                            for f in self.synth_fields)

    def trace(self, values: list[Any]) -> None:
        """trace_synth: the event fired from a hist action with the action's values."""
        if not self.enabled:
            return
        cpu = self.this_cpu()
        flags, depth = trace_ctx(cpu)
        slots = self._assign(*values)
        record = self.build(slots, flags, depth, cpu.task.pid) + self._tail
        for sink in self.sinks:
            sink(record, cpu, record)


def _synth_printer(event: TraceEvent) -> Any:
    fields = event.synth_fields                       # type: ignore[attr-defined]
    structs = [struct.Struct("<q" if f.is_signed else "<Q") for f in fields]

    def printer(record: bytes, symbols: Any) -> str:
        """print_synth_event: ``name=value`` pairs separated by one space."""
        parts = []
        for f, shown, st in zip(fields, event.fields, structs, strict=True):
            if f.is_stack:
                # print_synth_event: NAME=STACK: and one "=> %pS" line per address
                loc = struct.unpack_from("<I", record, shown.offset)[0]
                start, size = loc & 0xffff, loc >> 16
                lines = [f"{f.name}=STACK:"]
                for (addr,) in struct.iter_unpack("<Q", bytes(record[start:start + size])):
                    if not addr:
                        break
                    lines.append("=> " + _sym_offset(symbols, addr))
                parts.append("\n".join(lines) + "\n")
                continue
            if f.is_dynamic:
                loc = struct.unpack_from("<I", record, shown.offset)[0]
                raw = bytes(record[loc & 0xffff:(loc & 0xffff) + (loc >> 16)])
                parts.append(f"{f.name}={raw.split(bytes(1), 1)[0].decode('utf-8', 'replace')}")
                continue
            if f.is_string:
                raw = bytes(record[shown.offset:shown.offset + STR_VAR_LEN_MAX])
                text = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
                parts.append(f"{f.name}={text}")
                continue
            v = st.unpack_from(record, shown.offset)[0]
            v = _truncate(v, f.size, f.is_signed)
            parts.append(f"{f.name}={v:x}" if f.fmt == "%x" else f"{f.name}={v}")
        return " ".join(parts)
    return printer


def _sym_offset(symbols: Any, addr: int) -> str:
    """%pS: ``name+0xoff/0xsize``, the address when no symbol covers it."""
    hit = symbols.lookup(addr) if symbols is not None else None
    if hit is None:
        return f"0x{addr:x}"
    name, off, size = hit
    return f"{name}+0x{off:x}/0x{size:x}"


def _truncate(v: int, size: int, signed: bool) -> int:
    v &= (1 << (8 * size)) - 1
    if signed and v >> (8 * size - 1):
        v -= 1 << (8 * size)
    return v


class SynthEvents:
    """The synthetic events of one kernel (``synthetic_events`` and their ``dynamic_events``)."""

    def __init__(self, tracing: Any) -> None:
        self.tracing = tracing
        self.events: dict[str, SynthEvent] = {}

    def find(self, name: str) -> SynthEvent | None:
        return self.events.get(name)

    # -- files
    def text(self) -> str:
        return "".join(ev.definition() + "\n" for ev in self.events.values())

    def dynamic_text(self) -> str:
        return "".join(f"s:{SYSTEM}/{ev.definition()}\n" for ev in self.events.values())

    def write(self, text: str, truncate: bool = False) -> None:
        """A write to ``synthetic_events``: O_TRUNC removes every unused event first (EBUSY if
        one is in use); each line is a command."""
        if truncate:
            self.clear()
        for line in text.split("\n"):
            line = line.split("#", 1)[0].strip()
            if line:
                self.command(line)

    def clear(self) -> None:
        for ev in list(self.events.values()):
            if self._busy(ev):
                raise os_error(errno.EBUSY)
        for ev in list(self.events.values()):
            self._remove(ev)

    def dynamic_command(self, line: str) -> None:
        """``s:[synthetic/]NAME FIELDS``, ``-:[synthetic/]NAME`` or ``!s:[synthetic/]NAME ...``
        written to dynamic_events."""
        head, _, rest = line.partition(" ")
        remove = head.startswith(("-:", "!"))
        spec = head[head.index(":") + 1:]
        if "/" in spec:
            group, spec = spec.split("/", 1)
            if group != SYSTEM:
                self._log(SynthError("INVALID_DYN_CMD"), line)
                raise os_error(errno.EINVAL)
        if remove:
            self.command("!" + spec, line)
        else:
            self.command(f"{spec} {rest}".strip(), line)

    def command(self, line: str, shown: str | None = None) -> None:
        try:
            if line.startswith("!"):
                self._delete(line[1:].split()[0] if line[1:].split() else "")
                return
            self._create(line)
        except SynthError as e:
            self._log(e, shown or line)
            raise os_error(e.code) from None

    def _log(self, e: SynthError, command: str) -> None:
        pos = command.find(e.word) if e.word else 0
        self.tracing.top.log_error(SYSTEM + "_events", command, SYNTH_ERRORS[e.key],
                                   max(pos, 0))

    # -- create / delete
    def _create(self, line: str) -> None:
        """create_or_delete_synth_event / __create_synth_event, in the kernel's order."""
        head = line.split(";", 1)[0]
        if len(head.split()) < 3:                              # check_command
            raise SynthError("INVALID_CMD")
        name, _, rest = line.partition(" ")
        if len(name) > MAX_EVENT_NAME_LEN or not _IDENT.match(name):
            raise SynthError("BAD_NAME", name)
        if name in self.events:
            raise SynthError("EVENT_EXISTS", name, errno.EEXIST)
        fields: list[SynthField] = []
        for spec in rest.split(";"):
            argv = spec.split()
            consumed = 0
            while consumed < len(argv):
                field, used = _parse_field(argv[consumed:])
                consumed += used
                fields.append(field)
                if len(fields) == SYNTH_FIELDS_MAX:
                    raise SynthError("TOO_MANY_FIELDS")
        if not fields:
            raise SynthError("INVALID_CMD")
        ev = SynthEvent(name, fields)
        self.tracing.register_event(ev)
        self.events[name] = ev

    def _delete(self, name: str) -> None:
        ev = self.events.get(name)
        if ev is None:
            raise os_error(errno.ENOENT)
        if self._busy(ev):
            raise os_error(errno.EBUSY)
        self._remove(ev)

    def _busy(self, ev: SynthEvent) -> bool:
        return ev.ref > 0 or any(ta.files[(SYSTEM, ev.name)].active
                                 for ta in self.tracing.arrays())

    def _remove(self, ev: SynthEvent) -> None:
        self.tracing.unregister_event(ev)
        del self.events[ev.name]


def _parse_field(argv: list[str]) -> tuple[SynthField, int]:
    """parse_synth_field: ``TYPE NAME`` or ``unsigned TYPE NAME``; returns the words used."""
    if argv[0] == "unsigned":
        if len(argv) < 3:
            raise SynthError("INCOMPLETE_TYPE", argv[0])
        ctype, name, used = "unsigned " + argv[1], argv[2], 3
    else:
        if len(argv) < 2:
            raise SynthError("INVALID_FIELD", argv[0])
        ctype, name, used = argv[0], argv[1], 2
    base, bracket, array = name.partition("[")
    if not _IDENT.match(base):
        raise SynthError("BAD_NAME", name)
    full = ctype + (bracket + array if bracket else "")
    if full in ("long[]", "unsigned long[]"):
        pass
    elif "char[" in full:
        m = _STRING.match(full)
        if m is None or (m.group(1) and not 0 < int(m.group(1)) <= STR_VAR_LEN_MAX):
            raise SynthError("INVALID_ARRAY_SPEC", name)
    elif full not in SYNTH_TYPES:
        raise SynthError("INVALID_TYPE", ctype.split()[-1])
    return SynthField(full, base), used
