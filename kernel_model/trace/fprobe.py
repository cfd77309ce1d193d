"""fprobe and tracepoint-probe events (kernel/trace/trace_fprobe.c): ``f`` and ``t`` commands.

::

    f[:[GRP/][EVENT]] SYM[%return] [FETCHARGS]     function entry (exit with %return, or when an
                                                   argument uses $retval)
    t[:[GRP/][EVENT]] TRACEPOINT [FETCHARGS]       a tracepoint's arguments

Default group ``fprobes`` (``tracepoints`` for ``t``), default event ``SYM__entry`` /
``SYM__exit`` / the tracepoint's name. fprobes read no registers: ``$argN`` and parameter names
(the functions' BTF prototypes), ``$retval``, ``$stackN``, ``$comm``, memory. A tracepoint probe's
arguments are the tracepoint's (``TP_PROTO``), named as the prototype names them. An fprobe
rides the machine's kprobe site of the function (entry or return); a tracepoint probe is a
probe on the tracepoint's ``fire`` (``TraceEvent.probes``). Errors go to error_log as
``trace_fprobe``.
"""
from __future__ import annotations

import errno
import re
from typing import Any

from tracesim.kernel_model.trace.event import TraceEvent, trace_ctx
from tracesim.kernel_model.trace.kprobe_events import KprobeEvent, check_registrable
from tracesim.kernel_model.trace.probe import (
    ParseContext,
    ProbeArg,
    ProbeError,
    parse_args,
    parse_event_name,
    sanitize_event_name,
)
from tracesim.kernel_model.trace.probe_btf import FUNC_PROTOS
from tracesim.kernel_model.trace.probe_event import ProbeEvent


class FprobeEvent(KprobeEvent):
    """An fprobe: a kprobe event at a function's entry or exit, listed as ``f:``."""

    def definition(self) -> str:
        """trace_fprobe_show: ``f:GRP/EVENT SYM[%return] ARGS``."""
        suffix = "%return" if self.is_return else ""
        return f"f:{self.system}/{self.name} {self.symbol}{suffix}{self.args_text()}\n"


class TprobeEvent(ProbeEvent):
    """A tracepoint probe: its record is written when the tracepoint fires."""

    is_return = False

    def __init__(self, owner: FprobeEvents, group: str, name: str, tracepoint: str,
                 target: TraceEvent | None, args: list[ProbeArg]) -> None:
        self.owner = owner
        self.symbol = tracepoint
        self.target = target
        self.nhit = 0
        super().__init__(group, name, ProbeEvent.HEAD_NORMAL, args)

    def definition(self) -> str:
        return f"t:{self.system}/{self.name} {self.symbol}{self.args_text()}\n"

    def on_enabled_changed(self) -> None:
        """Hook the tracepoint while the event is in use (tracepoint_probe_register)."""
        target = self.target
        if target is None:
            return
        want = bool(self.sinks)
        has = self._hit in target.probes
        if want and not has:
            target.probes += (self._hit,)
        elif not want and has:
            target.probes = tuple(p for p in target.probes if p != self._hit)
        if want != has:
            self.owner.tracing.update_event(target)

    def detach(self) -> None:
        if self.target is not None and self._hit in self.target.probes:
            self.target.probes = tuple(p for p in self.target.probes if p != self._hit)
            self.owner.tracing.update_event(self.target)

    def _hit(self, tp_args: tuple) -> None:
        self.nhit += 1
        cpu = self.this_cpu()
        flags, depth = trace_ctx(cpu)
        # __probe_ip: the tracepoint's probe stub (__probestub_<tp>) is the probed address
        ip = self.owner.kernel.kallsyms.address_of(f"__probestub_{self.symbol}") or 0
        record = self.build([ip] + self.arg_values(tp_args, cpu), flags, depth, cpu.task.pid)
        for sink in self.sinks:
            sink(record, cpu, record)


class FprobeEvents:
    """The ``f``/``t`` kind of dynamic event."""

    location = "trace_fprobe"

    def __init__(self, tracing: Any) -> None:
        self.tracing = tracing
        self.kernel = tracing.kernel

    def create(self, argv: list[str]) -> ProbeEvent | None:
        """__trace_fprobe_create; None when the command is not an fprobe's."""
        head = argv[0]
        if head[0] not in "ft" or len(argv) < 2:
            return None
        is_tp = head[0] == "t"
        event_text = None
        if head[1:]:
            if head[1] != ":":
                raise ProbeError("BAD_MAXACT", 0, 1)
            event_text = head[2:]
        symbol, is_return = self._symbol_and_return(argv, is_tp)
        ctx = ParseContext(self.kernel, entry=not is_return, ret=is_return, fprobe=True,
                           tpoint=is_tp, funcname=symbol)
        target = None
        if is_tp:
            target = self._tracepoint(symbol)
            if target is not None and target.proto:
                ctx.params = _proto_params(target.proto)
        else:
            proto = FUNC_PROTOS.get(symbol)
            if proto is not None:
                ctx.ret_type, ctx.params = proto
        group, event = ("tracepoints" if is_tp else "fprobes"), None
        if event_text is not None:
            grp, event = parse_event_name(event_text, 2)
            group = grp or group
        if event is None:
            event = sanitize_event_name(symbol if is_tp else
                                        f"{symbol}__{'exit' if is_return else 'entry'}")
        parsed = parse_args(argv[2:], ctx)
        ev: ProbeEvent
        if is_tp:
            ev = TprobeEvent(self, group, event, symbol, target, parsed)
        else:
            self._check_function(symbol)
            ev = FprobeEvent(self, group, event, symbol, 0, is_return, 0, parsed)  # type: ignore[arg-type]
        self.tracing.dynevents.add(ev, lambda old: isinstance(old, TprobeEvent) == is_tp
                                   and old.is_return == is_return)
        return ev

    def _symbol_and_return(self, argv: list[str], is_tp: bool) -> tuple[str, bool]:
        """parse_symbol_and_return: ``%return`` (fprobes only), tracepoint name characters,
        and ``$retval`` in an argument making an fprobe an exit probe."""
        place = argv[1]
        cut = place.find("%")
        if cut >= 0:
            if is_tp or place[cut:] != "%return":
                raise ProbeError("BAD_ADDR_SUFFIX", 1, cut)
            return place[:cut], True
        if is_tp:
            bad = re.search(r"[^A-Za-z0-9_]", place)
            if bad:
                raise ProbeError("BAD_TP_NAME", 1, bad.start())
        for i, a in enumerate(argv[2:], start=2):
            m = re.search(r"\$retval(?![A-Za-z0-9_])", a)
            if m:
                if is_tp:
                    raise ProbeError("RETVAL_ON_PROBE", i, m.start())
                return place, True
        return place, False

    def _tracepoint(self, name: str) -> TraceEvent | None:
        """The tracepoint of that name (any system); None is a tracepoint a module may bring
        later, which the kernel accepts and arms when it appears."""
        for (system, ev_name), ev in self.tracing.events.items():
            if ev_name == name and system != "ftrace" and not isinstance(ev, ProbeEvent):
                return ev
        return None

    def _check_function(self, symbol: str) -> None:
        """register_fprobe: the symbol must be a traceable function (ENOENT otherwise)."""
        syms = self.kernel.kallsyms
        if syms.address_of(symbol) is None:
            raise ProbeError("BAD_PROBE_ADDR", 1, 0, errno.EINVAL)
        check_registrable(self.kernel, symbol, 0, False)


def _proto_params(proto: str) -> tuple[tuple[str, str], ...]:
    """``struct sk_buff *skb, int len`` → ((type, name), ...)."""
    out = []
    for part in proto.split(","):
        m = re.match(r"^(.*?)([A-Za-z_][A-Za-z0-9_]*)\s*$", part.strip())
        if m:
            out.append((m.group(1).strip(), m.group(2)))
    return tuple(out)

