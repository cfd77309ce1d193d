"""Event probes (kernel/trace/trace_eprobe.c): ``e`` commands, events made from another event.

::

    e[:[GRP/][EVENT]] SYS.EVENT|SYS/EVENT [FETCHARGS] [if FILTER]

Default group ``eprobes``, default event the attached event's name. Arguments fetch the attached
event's fields (``$FIELD``, ``+OFFS($FIELD)``...) and ``$comm``; registers and function
arguments are refused. The optional filter is checked against the attached event's fields and
decides, per hit, whether the eprobe writes. While the eprobe's event is in use its handler is
one of the attached event's sinks (``TraceEvent.attached``), so the attached event fires even
when it is not enabled itself; the eprobe's record is ``__probe_type`` (the attached event's
ID) then the arguments, printed ``(SYS.EVENT) name=value ...``. Errors go to error_log as
``event_probe``.
"""
from __future__ import annotations

import errno
from typing import Any

from tracesim.filters.predicate.compile import compile_filter
from tracesim.filters.predicate.errors import FilterError
from tracesim.kernel_model.trace.event import TraceEvent, trace_ctx
from tracesim.kernel_model.trace.probe import (
    MAX_EVENT_NAME_LEN,
    MAX_TRACE_ARGS,
    CommandError,
    ParseContext,
    ProbeArg,
    ProbeError,
    parse_arg,
    parse_event_name,
)
from tracesim.kernel_model.trace.probe_event import ProbeEvent
from tracesim.kernel_model.trace.triggers import _soft_get as soft_mode_get
from tracesim.kernel_model.trace.triggers import _soft_put as soft_mode_put


class EprobeEvent(ProbeEvent):
    """An event probe: its record is made from each record of the attached event."""

    def __init__(self, owner: EprobeEvents, group: str, name: str, target: TraceEvent,
                 filter_match: Any, args: list[ProbeArg]) -> None:
        self.owner = owner
        self.target = target
        self.filter_match = filter_match
        self.nhit = 0
        self._held: list[Any] = []          # attached event files held in soft mode
        super().__init__(group, name, ProbeEvent.HEAD_EVENT, args)

    def definition(self) -> str:
        """eprobe_dyn_event_show (the filter is not shown)."""
        return (f"e:{self.system}/{self.name} {self.target.system}.{self.target.name}"
                f"{self.args_text()}\n")

    def head_text(self, vals: dict[str, Any], symbols: Any) -> str:
        return f"({self.target.system}.{self.target.name})"

    def on_enabled_changed(self) -> None:
        """Attach to the event while in use (the kernel's eprobe trigger on it). In each trace
        array using the eprobe, the attached event is in soft mode, as a trigger puts it
        (trace_event_trigger_enable_disable): its ``enable`` reads ``0*``."""
        self._hold_targets()
        want = bool(self.sinks)
        has = self._hit in self.target.attached
        if want and not has:
            self.target.attached += (self._hit,)
        elif not want and has:
            self.detach()
            return
        if want != has:
            self.owner.tracing.update_event(self.target)

    def _hold_targets(self) -> None:
        key = (self.system, self.name)
        tkey = (self.target.system, self.target.name)
        want = [ta.files[tkey] for ta in self.owner.tracing.arrays()
                if key in ta.files and ta.files[key].active and tkey in ta.files]
        for f in want:
            if f not in self._held:
                soft_mode_get(f)
        for f in self._held:
            if f not in want:
                soft_mode_put(f)
        self._held = want

    def detach(self) -> None:
        for f in self._held:
            soft_mode_put(f)
        self._held = []
        if self._hit in self.target.attached:
            self.target.attached = tuple(s for s in self.target.attached if s != self._hit)
            self.owner.tracing.update_event(self.target)

    def _hit(self, record: bytes | None, cpu: Any, ctx: Any) -> None:
        if record is None:                     # a kprobe event's hit: its record first
            record = self.target.record_from_ctx(ctx, cpu)  # type: ignore[attr-defined]
        if self.filter_match is not None and not self.filter_match(record, cpu, cpu.task.comm):
            return
        self.nhit += 1
        vals = self.owner.field_values(self.target, record)
        flags, depth = trace_ctx(cpu)
        out = self.build([self.target.id] + self.arg_values(vals, cpu), flags, depth,
                         cpu.task.pid)
        for sink in self.sinks:
            sink(out, cpu, out)


SCRATCH_SIZE = 65536          # an event record is at most a ring buffer page


class EprobeEvents:
    """The ``e`` kind of dynamic event."""

    location = "event_probe"

    def __init__(self, tracing: Any) -> None:
        self.tracing = tracing
        self.kernel = tracing.kernel
        self._scratch: Any = None

    def field_values(self, target: TraceEvent, record: bytes) -> dict[str, Any]:
        """get_event_field: numbers are their values; a string or char array field is the
        address of its bytes in the record, which is placed in kernel memory for the fetch."""
        mem = self.kernel.mem
        if self._scratch is None:
            self._scratch = mem.map(SCRATCH_SIZE, "eprobe record")
        base = self._scratch.base
        mem.write(base, bytes(record[:SCRATCH_SIZE]))
        vals = target.decode(record)
        for f in target.fields:
            if f.is_data_loc:
                loc = int.from_bytes(record[f.offset:f.offset + 4], "little")
                vals[f.name] = base + (loc & 0xFFFF)
            elif f.type.endswith("]"):
                vals[f.name] = base + f.offset
        return vals

    def create(self, argv: list[str]) -> EprobeEvent | None:
        """__trace_eprobe_create; None when the command is not an eprobe's."""
        head = argv[0]
        if head[0] != "e" or len(argv) < 2:
            return None
        group, event = "eprobes", None
        colon = head.find(":", 1)
        if colon >= 0:
            grp, event = parse_event_name(head[colon + 1:], colon + 1)
            group = grp or group
        try:
            sys_name, sys_event = parse_event_name(argv[1], 0, index=1)
        except ProbeError:
            sys_name = sys_event = None
        if not sys_name or not sys_event:
            raise ProbeError("NO_EVENT_INFO", 1)
        if event is None:
            event = sys_event[:MAX_EVENT_NAME_LEN - 1]
        args = argv[2:]
        filter_words: list[str] | None = None
        if "if" in args:
            cut = args.index("if")
            args, filter_words = args[:cut], args[cut + 1:]
        if len(args) > MAX_TRACE_ARGS:
            raise ProbeError("TOO_MANY_ARGS", 2, 0, errno.E2BIG)
        target = self.tracing.events.get((sys_name, sys_event))
        if target is None or target.system == "ftrace":
            raise ProbeError("BAD_ATTACH_EVENT", 1)
        filter_match = None
        if filter_words is not None:
            if not filter_words:
                raise ProbeError("NO_EP_FILTER", 2 + len(args) + 1)
            filter_match = self._filter(" ".join(filter_words), target)
        ctx = ParseContext(self.kernel, event=target)
        parsed: list[ProbeArg] = []
        for i, text in enumerate(args):
            parsed.append(parse_arg(text, i + 2, i + 1, ctx, parsed))
        if ctx.missing_symbol:
            raise ProbeError("BAD_MEM_ADDR", 2, 0, errno.ENOENT)
        ev = EprobeEvent(self, group, event, target, filter_match, parsed)
        self.tracing.dynevents.add(ev, lambda old: False)
        return ev

    def _filter(self, text: str, target: TraceEvent) -> Any:
        """trace_eprobe_parse_filter: the filter must compile for the attached event."""
        try:
            return compile_filter(text, target.all_fields).match
        except FilterError as e:
            # create_event_filter(top_trace_array(), ..., set_str=true) logs the filter's own
            # parse error; the eprobe then fails with -EINVAL
            top = self.tracing.top
            top.add_error_entry(e.error_log_entry(top.error_timestamp()))
            raise CommandError(errno.EINVAL, e.message) from None
