"""Hist triggers (kernel/trace/trace_events_hist.c): parse, aggregate, print.

``hist:keys=K[,K2]:vals=V,..:sort=S[.descending],..:size=N:name=NAME:VAR=EXPR,..:pause|cont|clear
:onmatch(SYS.EVT).trace(SYNTH,ARGS)|onmax($v).save(..)|onchange($v).snapshot() [if FILTER]``
written to an event's ``trigger`` file makes a ``HistTrigger``; every hit of the event (with its
record) adds to a map keyed by the key fields' values: the hit count, the sums of the values and
the variables. ``hist_text(file)`` is the event's ``hist`` file: per trigger the header comments,
one ``{ key: ... } hitcount: ...`` line per entry in sort order, and the Totals.

Parsing follows the kernel's order (actions, variables, values, keys, sort keys, then the
filter, registration and the actions' bindings), and a refused command sets the kernel's errno
and, where the kernel logs one, an ``error_log`` entry (location ``hist:SYS:EVT``, the command as
``hist:`` + the text after it, the caret under the word ``errpos`` finds in it).

Registration itself (the trigger list, soft mode) is triggers.py's; ``command`` returns what to
do: ``("add", trigger)``, ``("remove", trigger)`` or None when the write only updated or did
nothing.
"""
from __future__ import annotations

import errno
import functools
import struct
from collections.abc import Callable
from functools import partial
from typing import Any

from tracesim.kernel_model.trace.call_stack import event_stack
from tracesim.kernel_model.trace.events.syscalls import SYSCALLS

HIST_ERRORS = {
    "DUPLICATE_VAR": "Variable already defined",
    "VAR_NOT_UNIQUE": "Variable name not unique, need to use fully qualified name "
                      "(subsys.event.var) for variable",
    "TOO_MANY_VARS": "Too many variables defined",
    "MALFORMED_ASSIGNMENT": "Malformed assignment",
    "NAMED_MISMATCH": "Named hist trigger doesn't match existing named trigger "
                      "(includes variables)",
    "TRIGGER_EEXIST": "Hist trigger already exists",
    "TRIGGER_ENOENT_CLEAR": "Can't clear or continue a nonexistent hist trigger",
    "SET_CLOCK_FAIL": "Couldn't set trace_clock",
    "BAD_FIELD_MODIFIER": "Invalid field modifier",
    "TOO_MANY_SUBEXPR": "Too many subexpressions (3 max)",
    "TIMESTAMP_MISMATCH": "Timestamp units in expression don't match",
    "TOO_MANY_FIELD_VARS": "Too many field variables defined",
    "EVENT_FILE_NOT_FOUND": "Event file not found",
    "HIST_NOT_FOUND": "Matching event histogram not found",
    "HIST_CREATE_FAIL": "Couldn't create histogram for field",
    "SYNTH_VAR_NOT_FOUND": "Couldn't find synthetic variable",
    "SYNTH_EVENT_NOT_FOUND": "Couldn't find synthetic event",
    "SYNTH_TYPE_MISMATCH": "Param type doesn't match synthetic event field type",
    "SYNTH_COUNT_MISMATCH": "Param count doesn't match synthetic event field count",
    "FIELD_VAR_PARSE_FAIL": "Couldn't parse field variable",
    "VAR_CREATE_FIND_FAIL": "Couldn't create or find variable",
    "ONX_NOT_VAR": "For onmax(x) or onchange(x), x must be a variable",
    "ONX_VAR_NOT_FOUND": "Couldn't find onmax or onchange variable",
    "ONX_VAR_CREATE_FAIL": "Couldn't create onmax or onchange variable",
    "FIELD_VAR_CREATE_FAIL": "Couldn't create field variable",
    "TOO_MANY_PARAMS": "Too many action params",
    "PARAM_NOT_FOUND": "Couldn't find param",
    "INVALID_PARAM": "Invalid action param",
    "ACTION_NOT_FOUND": "No action found",
    "NO_SAVE_PARAMS": "No params found for save()",
    "TOO_MANY_SAVE_ACTIONS": "Can't have more than one save() action per hist",
    "ACTION_MISMATCH": "Handler doesn't support action",
    "NO_CLOSING_PAREN": "No closing paren found",
    "SUBSYS_NOT_FOUND": "Missing subsystem",
    "INVALID_SUBSYS_EVENT": "Invalid subsystem or event name",
    "INVALID_REF_KEY": "Using variable references in keys not supported",
    "VAR_NOT_FOUND": "Couldn't find variable",
    "FIELD_NOT_FOUND": "Couldn't find field",
    "EMPTY_ASSIGNMENT": "Empty assignment",
    "INVALID_SORT_MODIFIER": "Invalid sort modifier",
    "EMPTY_SORT_FIELD": "Empty sort field",
    "TOO_MANY_SORT_FIELDS": "Too many sort fields (Max = 2)",
    "INVALID_SORT_FIELD": "Sort field must be a key or a val",
    "INVALID_STR_OPERAND": "String type can not be an operand in expression",
    "EXPECT_NUMBER": "Expecting numeric literal",
    "UNARY_MINUS_SUBEXPR": "Unary minus not supported in sub-expressions",
    "DIVISION_BY_ZERO": "Division by zero",
    "NEED_NOHC_VAL": "Non-hitcount value is required for 'nohitcount'",
}

U64 = (1 << 64) - 1
MAP_BITS_DEFAULT, MAP_BITS_MIN, MAP_BITS_MAX = 11, 7, 17
KEYS_MAX, VALS_MAX, VARS_MAX, SORT_KEYS_MAX = 3, 3, 16, 2
ACTIONS_MAX, SYNTH_FIELDS_MAX = 8, 64
STACKTRACE_DEPTH = 16
# get_hist_field_flags: the one modifier a field is printed with, in the kernel's order
FLAG_ORDER = ("hex", "sym", "sym-offset", "execname", "syscall", "log2", "buckets", "usecs",
              "percent", "graph", "stacktrace")
MODIFIERS = frozenset(FLAG_ORDER)


class HistError(Exception):
    """A refused hist command: errno, error table key (None: nothing logged), caret word."""

    def __init__(self, key: str | None, word: str | None = None, code: int = errno.EINVAL,
                 pos: int | None = None) -> None:
        super().__init__(key)
        self.key, self.word, self.code, self.pos = key, word, code, pos


# -- fields and expressions ---------------------------------------------------------------------

class HistField:
    """One key, value, variable or operand (struct hist_field).

    ``kind``: ``hitcount``, ``field`` (an event field), ``ts`` (common_timestamp), ``cpu``,
    ``comm`` (common_comm), ``stack`` (common_stacktrace), ``const``, ``ref`` (``$var``) or
    ``expr`` (``op`` over ``operands``)."""

    def __init__(self, kind: str, field: Any = None, flags: frozenset[str] = frozenset(),
                 buckets: int = 0) -> None:
        self.kind = kind
        self.field = field
        self.flags = flags
        self.buckets = buckets
        self.var_name: str | None = None        # set when this field defines a variable
        self.name = ""                          # expr text / referenced variable name
        self.operands: list[HistField] = []
        self.op = ""
        self.constant = 0
        self.ref: VarRef | None = None
        self.read = _field_reader(field) if field is not None else _no_read

    # what the field's printed name is (hist_field_name)
    def field_name(self) -> str:
        if self.field is not None:
            return self.field.name
        return {"ts": "common_timestamp", "cpu": "common_cpu", "comm": "common_comm",
                "stack": "common_stacktrace", "hitcount": "hitcount"}.get(self.kind, self.name)

    @property
    def is_string(self) -> bool:
        if self.kind == "comm" or "execname" in self.flags and self.var_name:
            return True
        if self.kind == "ref" and self.ref is not None:
            return self.ref.target.is_string
        f = self.field
        return f is not None and (f.type.startswith("char") or f.is_data_loc) and \
            "[" in f.type

    def c_type(self) -> tuple[str, int, bool]:
        """(type, size, signed) as create_hist_field sets them: what a synthetic event's
        parameter is checked against."""
        if self.kind == "ref" and self.ref is not None:
            return self.ref.target.c_type()
        if self.kind == "expr":
            return self.operands[0].c_type()
        if self.kind == "comm" or (self.var_name and "execname" in self.flags):
            return "char[]", 256, False
        if self.kind == "cpu":
            return "unsigned int", 4, False
        if self.kind == "stack":
            return "unsigned long[]", 8, False
        if self.field is not None:
            return self.field.type, self.field.size, self.field.is_signed
        return "u64", 8, False

    @property
    def usecs(self) -> bool:
        if self.kind == "ref" and self.ref is not None:
            return self.ref.target.usecs
        if self.kind == "expr":
            return self.operands[0].usecs
        return "usecs" in self.flags

    def flag_text(self) -> str:
        for flag in FLAG_ORDER:
            if flag in self.flags:
                return f".{flag}"
        return ""

    def spec(self) -> str:
        """hist_field_print: how the trigger info shows this field."""
        out = f"{self.var_name}=" if self.var_name else ""
        if self.kind == "const":
            return out + str(self.constant)
        if self.kind == "stack" or ("stacktrace" in self.flags and self.field is None):
            return out + "common_stacktrace"
        if self.kind == "ref":
            return out + "$" + self.name
        out += self.field_name()
        if self.kind != "expr":
            out += self.flag_text()
            if self.buckets:
                out += f"={self.buckets}"
        return out

    def operand_text(self) -> str:
        """expr_field_str: an operand inside an expression's name."""
        if self.kind == "ref":
            return "$" + self.name
        if self.kind == "const":
            return str(self.constant)
        return self.field_name() + ("" if self.kind == "expr" else self.flag_text())

    # evaluation
    def value(self, hit: Hit) -> Any:
        kind = self.kind
        if kind == "field":
            if self.var_name and "execname" in self.flags:
                return hit.comm                  # update_var_execname: the comm as a string
            v = self.read(hit.record)
        elif kind == "ts":
            v = hit.ts_us if self.usecs else hit.ts
        elif kind == "cpu":
            v = hit.cpu.id
        elif kind == "comm":
            return hit.comm
        elif kind == "hitcount":
            return 1
        elif kind == "stack":
            return hit.stack
        elif kind == "const":
            return self.constant
        elif kind == "ref":
            return hit.refs.get(self.ref, 0)
        elif kind == "expr":
            return _apply(self.op, [o.value(hit) for o in self.operands])
        else:
            return 0
        if isinstance(v, str):
            return v
        if "log2" in self.flags:
            return _ilog2_roundup(v & U64)
        if self.buckets:
            return (v & U64) // self.buckets * self.buckets
        return v


_INT_CODES = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
              (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}


def _field_reader(field: Any) -> Callable[[bytes], Any]:
    """How a hit reads one field of the record (hist_field_<type>, hist_field_string,
    hist_field_dynstring): numbers by size and sign, strings up to their NUL."""
    off = field.offset
    if field.is_data_loc:
        loc = struct.Struct("<I")

        def dynstring(record: bytes) -> str:
            v = loc.unpack_from(record, off)[0]
            start = v & 0xffff
            return _cstr(record[start:start + (v >> 16)])
        return dynstring
    if "[" in field.type:
        end = off + field.size

        def string(record: bytes) -> str:
            return _cstr(record[off:end])
        return string
    code = _INT_CODES.get((field.size, field.is_signed))
    if code is None:
        return _no_read
    unpack = struct.Struct("<" + code).unpack_from
    return lambda record: unpack(record, off)[0]


def _no_read(record: bytes) -> int:
    return 0


def _cstr(raw: bytes) -> str:
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")


def _apply(op: str, vals: list[Any]) -> int:
    a = vals[0] & U64
    if op == "neg":
        return -a & U64
    b = vals[1] & U64
    if op == "+":
        return (a + b) & U64
    if op == "-":
        return (a - b) & U64
    if op == "*":
        return (a * b) & U64
    return U64 if b == 0 else a // b          # hist_field_div: -1 for the undefined case


def _ilog2_roundup(v: int) -> int:
    """ilog2(roundup_pow_of_two(v))."""
    return 0 if v <= 1 else (v - 1).bit_length()


class VarRef:
    """A reference to a variable of a hist trigger (its own or another event's)."""

    def __init__(self, hist: HistTrigger, target: HistField, target_hist: HistTrigger,
                 system: str | None = None, event: str | None = None) -> None:
        self.hist = hist
        self.target = target
        self.target_hist = target_hist
        self.system, self.event = system, event
        self.read_once = False


class Hit:
    """One event hit as the fields see it."""

    def __init__(self, record: bytes, cpu: Any, ts: int, ts_us: int, comm: str,
                 stack: tuple[int, ...]) -> None:
        self.record = record
        self.cpu = cpu
        self.ts, self.ts_us = ts, ts_us
        self.comm = comm
        self.stack = stack
        self.refs: dict[VarRef, Any] = {}


class Elt:
    """One map entry (tracing_map_elt): sums, variables, the comm for .execname, tracking."""

    __slots__ = ("sums", "vars", "comm", "track", "saved")

    def __init__(self, nvals: int, comm: str) -> None:
        self.sums = [0] * nvals
        self.vars: dict[str, Any] = {}
        self.comm = comm
        self.track: dict[int, int] = {}       # action index -> max / changed value
        self.saved: dict[str, Any] = {}


# -- actions ------------------------------------------------------------------------------------

class Action:
    """``onmatch(SYS.EVT)``, ``onmax($var)`` or ``onchange($var)`` with ``trace``/``save``/
    ``snapshot`` (or a synthetic event's name: an implicit trace)."""

    def __init__(self, handler: str, arg: str, name: str, params: list[str],
                 use_trace: bool) -> None:
        self.handler = handler                # onmatch / onmax / onchange
        self.arg = arg                        # SYS.EVT or $var
        self.name = name                      # trace / save / snapshot / <synthetic event>
        self.params = params
        self.use_trace = use_trace
        self.synth: Any = None
        self.synth_name = ""
        self.param_fields: list[HistField] = []
        self.track_ref: VarRef | None = None
        self.save_fields: list[HistField] = []

    @property
    def kind(self) -> str:
        if self.name.startswith("save"):
            return "save"
        if self.name.startswith("snapshot"):
            return "snapshot"
        return "trace"

    def spec(self) -> str:
        if self.kind == "save":
            inner = ",".join(f.var_name or "" for f in self.save_fields)
        elif self.kind == "trace":
            inner = ",".join(([self.synth_name] if self.use_trace else []) + self.params)
        else:
            inner = ""
        if self.handler == "onmatch":
            return f":onmatch({self.arg}).{self.name}({inner})"
        return f":{self.handler}({self.arg}).{self.name}({inner})"


# -- the trigger --------------------------------------------------------------------------------

class HistTrigger:
    """A hist trigger on one event file: its definition, its map, paused or active."""

    cmd = "hist"
    count = -1
    target = None
    needs_record = True

    def __init__(self, file: Any, text: str) -> None:
        self.file = file
        self.text_cmd = text                  # what follows ``hist:`` (the error caret base)
        self.name: str | None = None
        self.keys: list[HistField] = []
        self.vals: list[HistField] = []       # vals[0] is hitcount
        self.vars: list[HistField] = []
        self.sort: list[tuple[HistField, bool]] = []
        self.map_bits = MAP_BITS_DEFAULT
        self.clock = "global"
        self.timestamps = False
        self.pause = self.cont = self.clear = False
        self.no_hitcount = False
        self.actions: list[Action] = []
        self.refs: list[VarRef] = []          # variable references, in creation order
        self.field_vars: list[HistField] = []
        self.filter: Any = None
        self.filter_text: str | None = None
        self.paused = False
        self.shared: HistTrigger = self       # a named trigger shares the first one's map
        self.map: dict[tuple, Elt] = {}
        self.hits = 0
        self.drops = 0
        self.snapshot_taken: tuple[int, tuple, Elt] | None = None
        self.var_users: list[HistTrigger] = []
        self.field_var_hists: list[HistTrigger] = []   # made on other events for params
        self.holds_array = False      # save_hist_vars took a reference on the trace array

    # -- identity (hist_trigger_match) and listing
    def spec(self) -> str:
        """event_hist_trigger_print without the state suffix."""
        out = "hist:" + (f"name={self.name}:" if self.name else "") + "keys="
        out += ",".join(k.spec() for k in self.keys)
        shown = [] if self.no_hitcount else ["hitcount"]
        shown += [v.spec() for v in self.vals[1:]]
        out += ":vals=" + ",".join(shown)
        if self.vars:
            out += ":" + ",".join(v.spec() for v in self.vars)
        out += ":sort=" + ",".join(
            ("hitcount" if f.kind == "hitcount" else f.spec()) + (".descending" if d else "")
            for f, d in self.sort)
        out += f":size={1 << self.map_bits}"
        if self.timestamps:
            out += f":clock={self.clock}"
        if self.no_hitcount:
            out += ":nohitcount"
        out += "".join(a.spec() for a in self.actions)
        if self.filter_text is not None:
            out += f" if {self.filter_text}"
        return out

    def text(self) -> str:
        return self.spec() + (" [paused]\n" if self.paused else " [active]\n")

    def same(self, other: Any) -> bool:
        return isinstance(other, HistTrigger) and other.spec() == self.spec()

    # -- a hit
    def fire(self, file: Any, record: bytes | None) -> None:
        if self.paused or record is None:
            return
        tracing = file.array.tracing
        cpu = tracing.this_cpu()
        ts = file.array.clock()
        ts_us = (ts + 500) // 1000 if file.array.clock_in_ns else ts
        task = cpu.task
        comm = "<idle>" if task.pid == 0 else task.comm
        stack = tuple(event_stack(tracing, file.event, cpu)[:STACKTRACE_DEPTH]) \
            if self.has_stack else ()
        hit = Hit(record, cpu, ts, ts_us, comm, stack)
        self.shared.update(self, hit)

    @functools.cached_property
    def has_stack(self) -> bool:
        return any(k.kind == "stack" for k in self.keys + self.vars)

    @functools.cached_property
    def key_plan(self) -> tuple[tuple[HistField, bool, bool], ...]:
        """Per key: the field, whether it is the stack, whether it is a string (fixed once
        the trigger is registered, so worked out at the first hit)."""
        return tuple((k, k.kind == "stack", k.is_string) for k in self.keys)

    def key_of(self, hit: Hit) -> tuple:
        return tuple(hit.stack if stack else (k.value(hit) if text else k.value(hit) & U64)
                     for k, stack, text in self.key_plan)

    def update(self, trig: HistTrigger, hit: Hit) -> None:
        """event_hist_trigger on the map this trigger owns (``trig`` is the one hit)."""
        key = trig.key_of(hit)
        for ref in trig.refs:                                    # other events' variables
            if ref.target_hist is trig:
                continue
            # tracing_map_lookup compares the other map's key_size bytes: with each key in
            # its own u64-aligned slot, that is this key's leading fields
            elt = ref.target_hist.map.get(key[:len(ref.target_hist.keys)])
            if elt is None or ref.target.var_name not in elt.vars:
                return
            hit.refs[ref] = (elt.vars.pop(ref.target.var_name) if ref.read_once
                             else elt.vars[ref.target.var_name])
        elt = self.map.get(key)
        if elt is None:
            if len(self.map) >= 1 << self.map_bits:
                self.drops += 1
                return
            elt = self.map[key] = Elt(len(trig.vals), hit.comm)
        self.hits += 1
        for i, v in enumerate(trig.vals):
            elt.sums[i] = (elt.sums[i] + (v.value(hit) if not v.is_string else 0)) & U64
        for v in trig.vars + trig.field_vars:
            elt.vars[v.var_name or ""] = v.value(hit)
        for ref in trig.refs:                                    # its own variables
            if ref.target_hist is trig:
                if ref.target.var_name not in elt.vars:
                    return
                hit.refs[ref] = elt.vars[ref.target.var_name]
        for i, action in enumerate(trig.actions):
            trig.run_action(i, action, elt, key, hit)

    def run_action(self, i: int, action: Action, elt: Elt, key: tuple, hit: Hit) -> None:
        if action.handler != "onmatch":
            val = hit.refs.get(action.track_ref, 0) & U64
            old = elt.track.get(i, 0)
            if action.handler == "onmax" and val <= old:
                return
            if action.handler == "onchange" and val == old:
                return
            elt.track[i] = val
            if action.kind == "save":
                for f in action.save_fields:
                    elt.saved[f.var_name or ""] = f.value(hit)
                return
            if action.kind == "snapshot":
                taken = self.snapshot_taken
                if taken is None or _track_better(action.handler, taken[0], val):
                    self.snapshot_taken = (val, key, Elt(0, elt.comm))
                    self.file.array.take_snapshot()
                return
        values = [f.value(hit) for f in action.param_fields]
        action.synth.trace(values)

    # -- the hist file
    def show(self, symbols: Any) -> str:
        data = self.shared
        lines = ["# event histogram\n#\n# trigger info: ", self.text(), "#\n\n"]
        entries = self.sorted_entries()
        stats = self._val_stats(entries)
        for key, elt in entries:
            lines.append(self.entry_line(key, elt, stats, symbols))
        if data.snapshot_taken is not None:
            action = next(a for a in self.actions if a.kind == "snapshot")
            val, key, elt = data.snapshot_taken
            lines.append("\nSnapshot taken (see tracing/snapshot).  Details:\n")
            lines.append(f"\ttriggering value {{ {action.handler}({action.arg}) }}: {val:10d}")
            lines.append("\ttriggered by event with key: " + self.key_text(key, elt, symbols)
                         + "\n")
        lines.append(f"\nTotals:\n    Hits: {data.hits}\n    Entries: {len(entries)}\n"
                     f"    Dropped: {data.drops}\n")
        return "".join(lines)

    def sorted_entries(self) -> list[tuple[tuple, Elt]]:
        entries = list(self.shared.map.items())
        entries.sort(key=lambda kv: tuple(_sortable(v) for v in kv[0]))
        for field, desc in reversed(self.sort):
            entries.sort(key=partial(self._sort_key, field), reverse=desc)
        return entries

    def _sort_key(self, field: HistField, kv: tuple[tuple, Elt]) -> Any:
        return _sortable(self._sort_value(field, kv))

    def _sort_value(self, field: HistField, kv: tuple[tuple, Elt]) -> Any:
        if field in self.keys:
            return kv[0][self.keys.index(field)]
        return kv[1].sums[self.vals.index(field)]

    def _val_stats(self, entries: list[tuple[tuple, Elt]]) -> dict[int, tuple[int, int]]:
        stats = {}
        for i, v in enumerate(self.vals):
            if v.flags & {"percent", "graph"}:
                sums = [elt.sums[i] for _, elt in entries]
                stats[i] = (max(sums, default=0), sum(sums))
        return stats

    def entry_line(self, key: tuple, elt: Elt, stats: dict[int, tuple[int, int]],
                   symbols: Any) -> str:
        out = [self.key_text(key, elt, symbols)]
        if not self.no_hitcount:
            out.append(_val_text("hitcount", elt.sums[0], self.vals[0].flags, stats.get(0)))
        for i, v in enumerate(self.vals[1:], 1):
            out.append(" " + _val_text(v.field_name() if v.kind != "ref" else v.name,
                                       elt.sums[i], v.flags, stats.get(i)))
        for i, action in enumerate(self.actions):
            if action.handler == "onmatch" or action.kind == "snapshot":
                continue
            label = "max" if action.handler == "onmax" else "changed"
            out.append(f"\n\t{label}: {elt.track.get(i, 0):10d}")
            for f in action.save_fields:
                saved = elt.saved.get(f.var_name or "", 0)
                out.append(f"  {f.var_name}: {saved:<32}" if isinstance(saved, str)
                           else f"  {f.var_name}: {saved & U64:10d}")
        return "".join(out) + "\n"

    def key_text(self, key: tuple, elt: Elt, symbols: Any) -> str:
        """hist_trigger_print_key."""
        parts = []
        multiline = False
        for i, (k, v) in enumerate(zip(self.keys, key, strict=True)):
            sep = ", " if i else ""
            name = k.field_name()
            if k.kind == "stack":
                frames = "".join(f"{' ' * 9}{_sym(a, symbols, True)}\n" for a in v if a)
                parts.append(f"{sep}common_stacktrace:\n{frames}")
                multiline = True
            elif "hex" in k.flags:
                parts.append(f"{sep}{name}: {v:x}")
            elif "sym" in k.flags:
                parts.append(f"{sep}{name}: [{v:x}] {_sym(v, symbols, False):<45}")
            elif "sym-offset" in k.flags:
                parts.append(f"{sep}{name}: [{v:x}] {_sym(v, symbols, True):<55}")
            elif "execname" in k.flags:
                parts.append(f"{sep}{name}: {elt.comm:<16}[{v:10d}]")
            elif "syscall" in k.flags:
                call = _SYSCALL_NAMES.get(v, "unknown_syscall")        # get_syscall_name
                parts.append(f"{sep}{name}: {call:<30}[{v:3d}]")
            elif "log2" in k.flags:
                parts.append(f"{sep}{name}: ~ 2^{v:<2d}")
            elif k.buckets:
                parts.append(f"{sep}{name}: ~ {v}-{v + k.buckets - 1}")
            elif isinstance(v, str):
                parts.append(f"{sep}{name}: {v:<50}")
            else:
                parts.append(f"{sep}{name}: {v:10d}")
        return "{ " + "".join(parts) + ("" if multiline else " ") + "}"


# syscall_nr_to_meta(nr)->name: the metadata's "sys_<name>" of each modelled syscall
_SYSCALL_NAMES = {nr: f"sys_{name}" for name, (nr, _) in SYSCALLS.items()}


def _track_better(handler: str, old: int, new: int) -> bool:
    return new > old if handler == "onmax" else new != old


def _sortable(v: Any) -> Any:
    return v if not isinstance(v, tuple) else tuple(v)


def _sym(addr: int, symbols: Any, offset: bool) -> str:
    """%ps / %pS of an address (the raw address when no symbol covers it)."""
    hit = symbols.lookup(addr) if addr else None
    if hit is None:
        return f"0x{addr:x}"
    name, off, size = hit
    return f"{name}+0x{off:x}/0x{size:x}" if offset else name


def _val_text(name: str, val: int, flags: frozenset[str], stat: tuple[int, int] | None) -> str:
    """hist_trigger_print_val (with its leading space)."""
    if "percent" in flags and stat is not None:
        pc = _percentage(val, stat[1])
        if pc is None:
            return f" {name} (%):[ERROR]"
        return f" {name} (%): {pc // 100:3d}.{pc % 100:02d}"
    if "graph" in flags and stat is not None:
        pc = _percentage(val, stat[0])
        bar = "[ERROR]" if pc is None else "#" * min(pc * 20 // 10000, 20)
        return f" {name}: {bar:<20}"
    if "hex" in flags:
        return f" {name}: {val:10x}"
    return f" {name}: {val:10d}"


def _percentage(val: int, total: int) -> int | None:
    if not total:
        return None if val else 0
    return val * 10000 // total


# -- parsing ------------------------------------------------------------------------------------

class Parser:
    """Builds a HistTrigger from the text after ``hist:`` (create_hist_data's steps)."""

    def __init__(self, file: Any, text: str, remove: bool) -> None:
        self.file = file
        self.event = file.event
        self.tracing = file.array.tracing
        self.text = text
        self.remove = remove
        self.trig = HistTrigger(file, text)
        self.last_cmd = "hist:" + text

    def errpos(self, word: str | None) -> int:
        if not word:
            return 0
        pos = self.last_cmd.find(word)
        return max(pos, 0)

    def parse(self) -> HistTrigger:
        param, filter_text = _split_filter(self.text)
        param = param.replace(".sym-offset", ".symXoffset")
        attrs = self.parse_attrs(param)
        t = self.trig
        for a in attrs["actions"]:
            t.actions.append(self.parse_action(a))
        self.parse_vars(attrs["assignments"])
        self.parse_vals(attrs.get("vals"))
        for name, expr in self.var_defs:
            self.create_var(name, expr)
        self.parse_keys(attrs["keys"])
        self.parse_sort(attrs.get("sort"))
        if t.no_hitcount and len(t.vals) < 2:
            raise HistError("NEED_NOHC_VAL")
        if filter_text is not None:
            from tracesim.filters.predicate import FilterError, compile_filter
            try:
                t.filter = compile_filter(filter_text, self.event.all_fields)
            except FilterError as e:
                raise HistError(None, code=e.errno) from None
            t.filter_text = filter_text
        return t

    # parse_hist_trigger_attrs
    def parse_attrs(self, param: str) -> dict[str, Any]:
        t = self.trig
        attrs: dict[str, Any] = {"assignments": [], "actions": []}
        for s in param.split(":"):
            if "=" in s:
                if not s.split("=", 1)[1]:
                    raise HistError("EMPTY_ASSIGNMENT", s)
                self.parse_assignment(s, attrs)
            elif s == "pause":
                t.pause = True
            elif s in ("cont", "continue"):
                t.cont = True
            elif s == "clear":
                t.clear = True
            elif s in ("nohitcount", "NOHC"):
                t.no_hitcount = True
            elif s.startswith(("onmatch(", "onmax(", "onchange(")):
                if len(attrs["actions"]) >= ACTIONS_MAX:
                    raise HistError(None)
                attrs["actions"].append(s)
            else:
                raise HistError(None)
        if "keys" not in attrs:
            raise HistError(None)
        return attrs

    def parse_assignment(self, s: str, attrs: dict[str, Any]) -> None:
        t = self.trig
        head, _, rhs = s.partition("=")
        if head in ("key", "keys"):
            attrs["keys"] = rhs
        elif head in ("val", "vals", "values"):
            attrs["vals"] = rhs
        elif head == "sort":
            attrs["sort"] = rhs
        elif head == "name":
            t.name = rhs
        elif head == "clock":
            t.clock = rhs.strip()
        elif head == "size":
            t.map_bits = _map_bits(rhs)
        else:
            if len(attrs["assignments"]) == VARS_MAX:
                raise HistError("TOO_MANY_VARS", s)
            attrs["assignments"].append(s)

    def parse_vars(self, assignments: list[str]) -> None:
        self.var_defs: list[tuple[str, str]] = []
        for s in assignments:
            for item in s.split(","):
                name, eq, expr = item.partition("=")
                if not eq:
                    raise HistError("MALFORMED_ASSIGNMENT", name)
                if len(self.var_defs) == VARS_MAX:
                    raise HistError("TOO_MANY_VARS", name)
                self.var_defs.append((name, expr))

    def parse_vals(self, text: str | None) -> None:
        t = self.trig
        t.vals.append(HistField("hitcount"))
        if text is None:
            return
        # create_val_fields: at most VALS_MAX items looked at and VALS_MAX - 1 values made
        # besides hitcount; anything left over but a lone "hitcount" is EINVAL
        items = text.split(",")
        taken = 0
        while taken < VALS_MAX and len(t.vals) < VALS_MAX and taken < len(items):
            item = items[taken]
            taken += 1
            if item == "hitcount":
                continue
            f = self.parse_expr(item, 0, None, key=False)
            # __create_val_field: a value is a sum, so no modifier that changes what is
            # summed; .percent and .graph only change how the sum is shown
            if f.flags & {"buckets", "log2", "sym", "sym-offset", "syscall", "stacktrace"} \
                    or f.buckets:
                raise HistError("BAD_FIELD_MODIFIER", item)
            t.vals.append(f)
        if items[taken:] not in ([], ["hitcount"]):
            raise HistError(None)

    def create_var(self, name: str, expr: str) -> None:
        t = self.trig
        if (self.find_var(name) is not None) and not self.remove:
            raise HistError("DUPLICATE_VAR", name)
        f = self.parse_expr(expr, 0, name, key=False)
        if f.flags & {"graph", "percent", "buckets", "log2"} or f.buckets:
            raise HistError("BAD_FIELD_MODIFIER", expr)
        f.var_name = name
        t.vars.append(f)

    def find_var(self, name: str, file: Any = None) -> HistField | None:
        """find_var: this trigger's variables, then those of the event's other hist triggers."""
        for v in self.trig.vars + self.trig.field_vars:
            if v.var_name == name:
                return v
        return _file_var(file or self.file, name)

    def parse_keys(self, text: str) -> None:
        t = self.trig
        items = text.split(",")
        if len(items) > KEYS_MAX:
            raise HistError(None)
        for item in items:
            if item in ("stacktrace", "common_stacktrace"):
                f = HistField("stack")
            else:
                f = self.parse_expr(item, 0, None, key=True)
                if _has_vars(f):
                    raise HistError("INVALID_REF_KEY", item)
            t.keys.append(f)

    def parse_sort(self, text: str | None) -> None:
        t = self.trig
        if text is None:
            t.sort = [(t.vals[0], False)]
            return
        items = text.split(",")
        for i, item in enumerate(items):
            if not item:
                raise HistError("EMPTY_SORT_FIELD", "sort=")
            if i == SORT_KEYS_MAX - 1 and len(items) > SORT_KEYS_MAX:
                raise HistError("TOO_MANY_SORT_FIELDS", "sort=")
            name, dot, mod = item.partition(".")
            if not name:
                raise HistError("EMPTY_SORT_FIELD", "sort=")
            desc = _is_descending(mod if dot else None)
            if desc is None:
                raise HistError("INVALID_SORT_MODIFIER", mod)
            if name == "hitcount":
                t.sort.append((t.vals[0], desc))
                continue
            match = next((f for f in t.vals[1:] + t.keys if f.field_name() == name), None)
            if match is None:
                raise HistError("INVALID_SORT_FIELD", name)
            t.sort.append((match, desc))

    # parse_expr / parse_atom / parse_field
    def parse_expr(self, s: str, depth: int, var_name: str | None, key: bool) -> HistField:
        if depth > 3:
            raise HistError("TOO_MANY_SUBEXPR", s)
        op, sep = _root_operator(s)
        if op is None:
            return self.parse_atom(s, var_name, key)
        if op == "neg":
            depth += 1
            if depth > 3:
                raise HistError("TOO_MANY_SUBEXPR", s)
            inner = s[1:]
            if not inner.startswith("(") or ")" not in inner:
                raise HistError(None)
            close = inner.rfind(")")
            if inner[close + 1:]:
                raise HistError("UNARY_MINUS_SUBEXPR", inner[1:])
            operand = self.parse_expr(inner[1:close], depth, None, key)
            if operand.is_string:
                raise HistError("INVALID_STR_OPERAND", inner[1:])
            e = HistField("expr")
            e.op, e.operands = "neg", [operand]
            e.name = f"-({operand.operand_text()})"
            return e
        depth += 1
        left, right = s[:sep], s[sep + 1:]
        if not left or not right:
            raise HistError(None)
        a = self.parse_expr(left, depth, None, key)
        if a.is_string:
            raise HistError("INVALID_STR_OPERAND", left)
        b = self.parse_expr(right, depth, None, key)
        if b.is_string:
            raise HistError("INVALID_STR_OPERAND", right)
        if a.usecs != b.usecs:
            raise HistError("TIMESTAMP_MISMATCH", pos=0)
        if op == "/" and b.kind == "const" and b.constant == 0:
            raise HistError("DIVISION_BY_ZERO", right, errno.EDOM)
        for operand in (a, b):
            if operand.kind == "ref" and operand.ref is not None:
                operand.ref.read_once = True
        if a.kind == "const" and b.kind == "const":
            c = HistField("const")
            c.constant = _apply(op, [a.constant, b.constant])
            return c
        e = HistField("expr")
        e.op, e.operands = op, [a, b]
        e.name = a.operand_text() + op + b.operand_text()
        return e

    def parse_atom(self, s: str, var_name: str | None, key: bool) -> HistField:
        if s[:1].isdigit():
            try:
                value = int(s, 0)
            except ValueError:
                raise HistError("EXPECT_NUMBER", s) from None
            c = HistField("const")
            c.constant = value & U64
            return c
        system = event = None
        ref_var = s
        if s.count(".") >= 2:
            system, event, ref_var = s.split(".", 2)
        if ref_var.startswith("$") and len(ref_var) >= 2:
            local = self.local_field_of_var(system, event, ref_var[1:])
            if local is None:
                return self.parse_var_ref(system, event, ref_var[1:], var_name)
            s = local
        return self.parse_field(s, key)

    def local_field_of_var(self, system: str | None, event: str | None,
                           name: str) -> str | None:
        """local_field_var_ref: ``$x`` names a plain-field variable defined in this command."""
        if system is not None and (system, event) != (self.event.system, self.event.name):
            return None
        for vname, expr in getattr(self, "var_defs", []):
            if vname == name and _root_operator(expr)[0] is None and not expr.startswith("$"):
                return expr
        return None

    def parse_var_ref(self, system: str | None, event: str | None, name: str,
                      alias: str | None) -> HistField:
        target, owner = self.find_event_var(system, event, name)
        if target is None:
            raise HistError("VAR_NOT_FOUND", name)
        f = HistField("ref")
        f.name = name if system is None else f"{system}.{event}.{name}"
        f.ref = self.add_ref(target, owner, system, event)
        return f

    def add_ref(self, target: HistField, owner: HistTrigger, system: str | None = None,
                event: str | None = None) -> VarRef:
        for ref in self.trig.refs:
            if ref.target is target:
                return ref
        ref = VarRef(self.trig, target, owner, system, event)
        self.trig.refs.append(ref)
        return ref

    def find_event_var(self, system: str | None, event: str | None,
                       name: str) -> tuple[HistField | None, Any]:
        """find_event_var: the onmatch event's variables first, then any event's (unique)."""
        if system is None:
            for a in self.trig.actions:
                if a.handler == "onmatch":
                    sysname, evname = a.arg.split(".", 1)
                    hit = _file_var_owner(self.file.array.file(sysname, evname), name)
                    if hit[0] is not None:
                        return hit
            own = next((v for v in self.trig.vars if v.var_name == name), None)
            if own is not None:
                return own, self.trig
            found: tuple[HistField | None, Any] = (None, None)
            for f in self.file.array.files.values():
                hit = _file_var_owner(f, name)
                if hit[0] is not None:
                    if found[0] is not None:
                        raise HistError("VAR_NOT_UNIQUE", name)
                    found = hit
            return found
        try:
            return _file_var_owner(self.file.array.file(system, event), name)
        except OSError:
            return None, None

    def parse_field(self, s: str, key: bool) -> HistField:
        name, dot, modifier = s.partition(".")
        flags: set[str] = set()
        buckets = 0
        if dot:
            if modifier == "symXoffset":
                flags.add("sym-offset")
            elif modifier == "execname" and name == "common_pid":
                flags.add("execname")
            elif modifier.startswith("bucket"):
                rest = modifier[6:]
                rest = rest[1:] if rest.startswith("s") else rest
                try:
                    buckets = int(rest[1:], 0) if rest.startswith("=") else 0
                except ValueError:
                    buckets = 0
                if not buckets:
                    raise HistError("BAD_FIELD_MODIFIER", modifier)
                flags.add("buckets")
            elif modifier in ("percent", "graph"):
                if key:
                    raise HistError("BAD_FIELD_MODIFIER", modifier)
                flags.add(modifier)
            elif modifier in MODIFIERS and modifier not in ("execname", "buckets",
                                                           "sym-offset"):
                flags.add(modifier)
            else:
                raise HistError("BAD_FIELD_MODIFIER", modifier)
        if name == "common_timestamp":
            self.trig.timestamps = True
            return HistField("ts", None, frozenset(flags))
        if name in ("common_cpu", "cpu", "CPU") and not _event_field(self.event, name):
            return HistField("cpu", None, frozenset(flags))
        if name == "common_comm":
            return HistField("comm", None, frozenset(flags))
        if name in ("common_stacktrace",) or (name in ("stacktrace", "STACKTRACE")
                                              and not _event_field(self.event, name)):
            return HistField("stack", None, frozenset(flags))
        if name == "hitcount":
            return HistField("hitcount", None, frozenset(flags))
        field = _event_field(self.event, name)
        if field is None:
            raise HistError("FIELD_NOT_FOUND", name)
        return HistField("field", field, frozenset(flags), buckets)

    # actions
    def parse_action(self, s: str) -> Action:
        handler, _, rest = s.partition("(")
        arg, close, tail = rest.partition(")")
        if handler == "onmatch":
            if not close:
                raise HistError("NO_CLOSING_PAREN", arg)
            system, dot, event = arg.partition(".")
            if not dot:
                raise HistError("SUBSYS_NOT_FOUND", system)
            if (system, event) not in self.file.array.files:
                raise HistError("INVALID_SUBSYS_EVENT", event)
        elif not close:
            raise HistError(None)
        if not tail.startswith(".") or "(" not in tail:
            raise HistError("ACTION_NOT_FOUND", pos=0)
        name, _, params_text = tail[1:].partition("(")
        params_text, closed, _ = params_text.partition(")")
        kind = "save" if name.startswith("save") else (
            "snapshot" if name.startswith("snapshot") else "trace")
        if kind == "snapshot" and not closed:
            raise HistError("NO_CLOSING_PAREN", params_text)
        if kind != "trace" and handler == "onmatch":
            raise HistError("ACTION_MISMATCH", name)
        params = []
        if kind != "snapshot" and params_text:
            for p in params_text.split(","):
                p = p.strip()
                if len(p) < 2:
                    raise HistError("INVALID_PARAM", p or None)
                params.append(p)
            if len(params) > SYNTH_FIELDS_MAX:
                raise HistError("TOO_MANY_PARAMS", pos=0)
        if kind == "save" and not params:
            raise HistError("NO_SAVE_PARAMS", pos=0)
        use_trace = kind == "trace" and name.startswith("trace")
        action = Action(handler, arg, name, params, use_trace)
        if use_trace:
            if not params:
                raise HistError("SYNTH_EVENT_NOT_FOUND", pos=0)
            action.synth_name = params[0]
            action.params = params[1:]
        return action

    def bind_actions(self) -> None:
        """create_actions: resolve each action's variables, fields and synthetic event."""
        t = self.trig
        saves = 0
        for action in t.actions:
            if action.handler != "onmatch":
                var = action.arg
                if not var.startswith("$"):
                    raise HistError("ONX_NOT_VAR", var)
                target = next((v for v in t.vars if v.var_name == var[1:]), None)
                if target is None:
                    raise HistError("ONX_VAR_NOT_FOUND", var[1:])
                action.track_ref = self.add_ref(target, t)
            if action.kind == "save":
                saves += 1
                if saves > 1:
                    raise HistError("TOO_MANY_SAVE_ACTIONS", code=errno.EEXIST, pos=0)
                for p in action.params:
                    try:
                        f = self.parse_field(p, False)
                    except HistError:
                        raise HistError("FIELD_VAR_CREATE_FAIL", p) from None
                    f.var_name = p
                    action.save_fields.append(f)
            elif action.kind == "trace":
                self.bind_trace(action)

    def bind_trace(self, action: Action) -> None:
        synth_name = action.synth_name or action.name
        synth = self.tracing.synth.find(synth_name)
        if synth is None:
            raise HistError("SYNTH_EVENT_NOT_FOUND", synth_name)
        fields = []
        for pos, p in enumerate(action.params):
            system = event = None
            name = p
            if p.count(".") >= 2:
                system, event, name = p.split(".", 2)
            if name.startswith("$"):
                f = self.action_var(action, system, event, name[1:])
            else:
                f = self.action_field(action, system, event, name)
            if pos >= len(synth.synth_fields) or not _type_ok(synth.synth_fields[pos], f):
                raise HistError("SYNTH_TYPE_MISMATCH", name)
            fields.append(f)
        if len(fields) != len(synth.synth_fields):
            raise HistError("SYNTH_COUNT_MISMATCH", synth.name)
        action.param_fields = fields
        action.synth = synth
        synth.ref += 1

    def action_var(self, action: Action, system: str | None, event: str | None,
                   name: str) -> HistField:
        target = None
        owner: Any = None
        if system is None or (system, event) == (self.event.system, self.event.name):
            target = next((v for v in self.trig.vars if v.var_name == name), None)
            owner = self.trig
        if target is None:
            if system is None and action.handler == "onmatch":
                system, event = action.arg.split(".", 1)
            target, owner = self.find_event_var(system, event, name)
        if target is None:
            raise HistError("PARAM_NOT_FOUND", name)
        f = HistField("ref")
        f.name = name
        f.ref = self.add_ref(target, owner, system, event)
        return f

    def action_field(self, action: Action, system: str | None, event: str | None,
                     name: str) -> HistField:
        """A plain field as a parameter (trace_action_create_field_var): a field variable
        on this event, else one on the onmatch event, made by a new hist trigger there."""
        here = system is None or (system, event) == (self.event.system, self.event.name)
        if here and (_event_field(self.event, name) is not None or name.startswith("common_")):
            f = self.parse_field(name, False)
            f.var_name = name
            self.trig.field_vars.append(f)
            return f
        if system is None and action.handler == "onmatch":
            system, event = action.arg.split(".", 1)
        if system is None:
            raise HistError("FIELD_VAR_PARSE_FAIL", name)
        return self.field_var_hist(system, event, name)

    def field_var_hist(self, system: str, event: str, name: str) -> HistField:
        """create_field_var_hist: on the other event, a hist trigger with the keys of one of
        its hist triggers whose keys match this one's, and a ``synthetic_<field>`` variable."""
        try:
            other = self.file.array.file(system, event)
        except OSError:
            raise HistError("EVENT_FILE_NOT_FOUND", name) from None
        compatible = next((t for t in other.triggers if isinstance(t, HistTrigger)
                           and _keys_compatible(t, self.trig)), None)
        if compatible is None:
            raise HistError("HIST_NOT_FOUND", name)
        var_name = "synthetic_" + name
        found, owner = _file_var_owner(other, var_name)
        if found is None:
            text = ("keys=" + ",".join(k.field_name() for k in compatible.keys)
                    + f":{var_name}={name}"
                    + (f" if {compatible.filter_text}" if compatible.filter_text else ""))
            try:
                owner = Parser(other, text, False).parse()
            except HistError:
                raise HistError("HIST_CREATE_FAIL", name) from None
            self.trig.field_var_hists.append(owner)
            found = owner.vars[-1]
        f = HistField("ref")
        f.name = var_name
        f.ref = self.add_ref(found, owner, system, event)
        return f


def _keys_compatible(a: HistTrigger, b: HistTrigger) -> bool:
    """compatible_keys: as many keys, each of the same type, size and signedness."""
    return len(a.keys) == len(b.keys) and all(
        x.c_type() == y.c_type() for x, y in zip(a.keys, b.keys, strict=True))


def _type_ok(synth_field: Any, f: HistField) -> bool:
    """check_synth_field: a dynamic string takes any string; otherwise types named alike
    match, and others need the same size (and, for numbers, signedness)."""
    ctype, size, signed = f.c_type()
    if getattr(synth_field, "is_stack", False) or ctype == "unsigned long[]":
        # a stack field takes a stacktrace variable, and only that
        return bool(getattr(synth_field, "is_stack", False)) and ctype == "unsigned long[]"
    if "char[" in ctype and synth_field.is_string and synth_field.is_dynamic:
        return True
    if synth_field.type != ctype:
        return synth_field.size == size and (synth_field.is_string or
                                             synth_field.is_signed == signed)
    return True


def _split_filter(text: str) -> tuple[str, str | None]:
    """Separate ``k:v [if filter]`` (an ``if`` between blanks)."""
    i = 0
    while True:
        i = text.find("if", i)
        if i < 0:
            return text, None
        if i == 0:
            raise HistError(None)
        if text[i - 1] in " \t" and text[i + 2:i + 3] in (" ", "\t"):
            if i + 2 >= len(text) - 1:
                raise HistError(None)
            return text[:i - 1].strip(), text[i + 2:].strip()
        i += 1


def _map_bits(text: str) -> int:
    try:
        size = int(text, 0)
    except ValueError:
        raise HistError(None) from None
    bits = _ilog2_roundup(size)
    if not MAP_BITS_MIN <= bits <= MAP_BITS_MAX:
        raise HistError(None)
    return bits


def _root_operator(s: str) -> tuple[str | None, int]:
    """contains_operator: the rightmost + or - (lower precedence), else the rightmost * or /."""
    minus, plus = s.rfind("-"), s.rfind("+")
    if minus == 0:
        return "neg", 0
    if minus > 0 or plus >= 0:
        return ("+", plus) if plus > minus else ("-", minus)
    div, mult = s.rfind("/"), s.rfind("*")
    if div < 0 and mult < 0:
        return None, -1
    return ("*", mult) if mult > div else ("/", div)


def _is_descending(mod: str | None) -> bool | None:
    if mod is None or mod == "ascending":
        return False
    if mod == "descending":
        return True
    return None


def _has_vars(f: HistField) -> bool:
    return f.kind == "ref" or any(_has_vars(o) for o in f.operands)


def _event_field(event: Any, name: str) -> Any:
    return next((f for f in event.all_fields if f.name == name and f.size), None)


def _file_var_owner(file: Any, name: str) -> tuple[HistField | None, Any]:
    for t in file.triggers:
        if isinstance(t, HistTrigger):
            for v in t.vars + t.field_vars:
                if v.var_name == name:
                    return v, t
    return None, None


def _file_var(file: Any, name: str) -> HistField | None:
    return _file_var_owner(file, name)[0]


# -- the command --------------------------------------------------------------------------------

def command(file: Any, text: str) -> list[tuple[str, HistTrigger]]:
    """One ``[!]hist:...`` write to ``file``'s trigger file (event_hist_trigger_parse): the
    triggers to add or remove, each on its own event file (``trigger.file``)."""
    remove = text.startswith("!")
    body = text[1:] if remove else text
    param = body[len("hist"):]
    param = param[1:] if param[:1] in (":", " ", "\t") else param
    parser = Parser(file, param, remove)
    try:
        if not param.strip():
            raise HistError(None)
        trig = parser.parse()
        existing = next((t for t in file.triggers if trig.same(t)), None)
        if remove:
            if existing is None:
                return []
            if _referenced(existing):
                raise HistError(None, code=errno.EBUSY)
            return [("remove", existing)] + _release(existing)
        if trig.pause or trig.cont or trig.clear:
            if existing is not None:
                if trig.pause:
                    existing.paused = True
                elif trig.cont:
                    existing.paused = False
                else:
                    existing.shared.map.clear()
                    existing.shared.hits = existing.shared.drops = 0
                return []
        named = _named(file.array, trig.name) if trig.name else None
        if named is not None and named.spec().split(":", 2)[2] != trig.spec().split(":", 2)[2]:
            raise HistError("NAMED_MISMATCH", trig.name)
        if existing is not None:
            raise HistError("TRIGGER_EEXIST", code=errno.EEXIST, pos=0)
        if trig.cont or trig.clear:
            raise HistError("TRIGGER_ENOENT_CLEAR", code=errno.ENOENT, pos=0)
        trig.paused = trig.pause
        if named is not None:
            trig.shared = named.shared
        else:
            try:
                _register(parser, trig)
            except HistError:
                _release(trig)
                raise
        return [("add", h) for h in trig.field_var_hists] + [("add", trig)]
    except HistError as e:
        if e.key is not None:
            pos = e.pos if e.pos is not None else parser.errpos(e.word)
            file.array.log_error(f"hist:{file.event.system}:{file.event.name}",
                                 parser.last_cmd, HIST_ERRORS[e.key], pos)
        raise OSError(e.code, HIST_ERRORS.get(e.key or "", "Invalid argument")) from None


def _register(parser: Parser, trig: HistTrigger) -> None:
    """The steps after the duplicate checks (event_trigger_register, create_actions)."""
    array = parser.file.array
    parser.bind_actions()
    if any(a.kind == "snapshot" for a in trig.actions):
        # tracing_snapshot_cond_enable: one conditional snapshot user per trace array
        if array.cond_snapshot is not None:
            raise HistError(None, code=errno.EBUSY)
    if trig.timestamps:
        try:
            array.set_clock(trig.clock)
        except OSError:
            raise HistError("SET_CLOCK_FAIL", trig.clock) from None
    for ref in trig.refs:
        if ref.target_hist is not trig:
            ref.target_hist.var_users.append(trig)
    if any(a.kind == "snapshot" for a in trig.actions):
        array.alloc_snapshot()
        array.cond_snapshot = trig
    # save_hist_vars: a trigger with variables or references holds its trace array, so the
    # instance cannot be removed (EBUSY) while it is there
    for t in [*trig.field_var_hists, trig]:
        if t.vars or t.refs or t.field_vars:
            t.file.array.get()
            t.holds_array = True


def _named(array: Any, name: str) -> HistTrigger | None:
    for f in array.files.values():
        for t in f.triggers:
            if isinstance(t, HistTrigger) and t.name == name:
                return t
    return None


def _referenced(trig: HistTrigger) -> bool:
    """check_var_refs: another trigger still reads one of this trigger's variables."""
    return any(user is not trig for user in trig.var_users)


def _release(trig: HistTrigger) -> list[tuple[str, HistTrigger]]:
    """What removing a trigger gives back: its references, synthetic event uses and the
    conditional snapshot; returns the field-variable hists it made, to be removed too
    (unregister_field_var_hists)."""
    for ref in trig.refs:
        while trig in ref.target_hist.var_users:
            ref.target_hist.var_users.remove(trig)
    for a in trig.actions:
        if a.synth is not None:
            a.synth.ref -= 1
            a.synth = None
    if trig.file.array.cond_snapshot is trig:
        trig.file.array.cond_snapshot = None
    if trig.holds_array:
        trig.holds_array = False
        trig.file.array.put()
    helpers, trig.field_var_hists = trig.field_var_hists, []
    ops: list[tuple[str, HistTrigger]] = []
    for h in helpers:
        if not _referenced(h):
            ops += [("remove", h)] + _release(h)
    return ops


def removable_on_truncate(file: Any) -> list[tuple[str, HistTrigger]]:
    """hist_unreg_all: O_TRUNC removes every hist trigger, or none when one is referenced."""
    hists = [t for t in file.triggers if isinstance(t, HistTrigger)]
    if any(_referenced(t) for t in hists):
        return []
    ops: list[tuple[str, HistTrigger]] = []
    for t in hists:
        ops += [("remove", t)] + _release(t)
    return ops


def set_paused(file: Any, paused: bool) -> None:
    """enable_hist / disable_hist: (un)pause every hist trigger of ``file``."""
    for t in file.triggers:
        if isinstance(t, HistTrigger):
            t.paused = paused


def hist_text(file: Any) -> str:
    """The ``hist`` file of an event (hist_show): each hist trigger's table, in list order."""
    symbols = file.array.tracing.symbols
    tables = [t.show(symbols) for t in file.triggers if isinstance(t, HistTrigger)]
    return "\n\n".join(tables)
