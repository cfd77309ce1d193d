"""kprobe events (kernel/trace/trace_kprobe.c): the ``p``/``r`` commands of ``kprobe_events``
and ``dynamic_events``, their events, ``kprobe_profile`` and the probe blacklist.

Commands (one per line, ``#`` starts a comment)::

    p[:[GRP/][EVENT]] SYM[+offs] [FETCHARGS]            entry probe (or SYM%return: exit)
    r[MAXACTIVE][:[GRP/][EVENT]] SYM[+0] [FETCHARGS]    return probe
    -:[GRP/]EVENT [FETCHARGS]                           delete

The checks run in ``__trace_kprobe_create``'s order; fetch arguments are parsed by
``trace_probe.parse_arg`` (``$argN`` and parameter names through the functions' BTF
prototypes). Errors go to the trace array's ``error_log`` with location ``trace_kprobe``.
Default names: group ``kprobes``, event ``p_<sym>_<offs>`` / ``r_<sym>_<offs>``. A probe is
registered with the machine's kprobes (``kernel.kprobes``) only while its event is in use, so
an unused probe costs nothing. Functions on the kprobe blacklist (``KPROBE_BLACKLIST``) are
refused as register_kprobe refuses them: EINVAL, "Failed to register probe event".
"""
from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tracesim.kernel_model.kprobes import KPROBE_BLACKLIST, PtRegs
from tracesim.kernel_model.kprobes import KprobeError as MachineKprobeError
from tracesim.kernel_model.trace.event import trace_ctx
from tracesim.kernel_model.trace.probe import (
    MAX_EVENT_NAME_LEN,
    CommandError,
    ParseContext,
    ProbeArg,
    ProbeError,
    kstrtoul,
    parse_args,
    parse_event_name,
    sanitize_event_name,
)
from tracesim.kernel_model.trace.probe_btf import FUNC_PROTOS
from tracesim.kernel_model.trace.probe_event import ProbeEvent

if TYPE_CHECKING:
    from tracesim.kernel_model.trace.printfmt import Buffer

KprobeError = CommandError          # the name the kprobe tests and tools know it by
MAXACTIVE_MAX = 4096                # KRETPROBE_MAXACTIVE_MAX



class KprobeEvent(ProbeEvent):
    """The event of a kprobe: ``__probe_ip`` (or ``__probe_func``, ``__probe_ret_ip``) + args."""

    def __init__(self, owner: KprobeEvents, group: str, name: str, symbol: str, offset: int,
                 is_return: bool, maxactive: int, args: list[ProbeArg]) -> None:
        self.owner = owner
        self.symbol = symbol
        self.offset = offset
        self.is_return = is_return
        self.maxactive = maxactive
        self.args = args
        self.nhit = 0
        self.missed_base = 0
        self._probe: Any = None
        # trace_probe_append: more probe points on this event (``p:ev SYM2`` with the same
        # arguments); an appended probe writes its records as this event's
        self.siblings: list[KprobeEvent] = []
        self.primary: KprobeEvent | None = None
        self.address_text: str | None = None        # a probe defined by address lists it
        super().__init__(group, name, kprobe_head(is_return), args)

    def same_place(self, other: ProbeEvent) -> bool:
        """trace_kprobe_has_same_kprobe: the same probe point (and so the same probe)."""
        return any((p.symbol, p.offset) == (getattr(other, "symbol", None),
                                            getattr(other, "offset", None))
                   for p in (self, *self.siblings))

    def append(self, probe: KprobeEvent) -> None:
        probe.primary = self
        probe.id = self.id
        probe.this_cpu = self.this_cpu
        self.siblings.append(probe)
        self.on_enabled_changed()

    # -- definition text
    def definition(self) -> str:
        """The ``kprobe_events`` / ``dynamic_events`` line (trace_kprobe_show)."""
        kind = "r" + (str(self.maxactive) if self.maxactive else "") if self.is_return else "p"
        where = self.address_text or (f"{self.symbol}+{self.offset}" if self.offset
                                      else self.symbol)
        return f"{kind}:{self.system}/{self.name} {where}{self.args_text()}\n"

    @property
    def nmissed(self) -> int:
        return self.missed_base + (self._probe.nmissed if self._probe is not None else 0)

    # -- runtime
    def on_enabled_changed(self) -> None:
        """Arm the machine's kprobe while any trace array uses the event, disarm otherwise."""
        kprobes = self.owner.kernel.kprobes
        if self.enabled and self._probe is None:
            self._probe = kprobes.register_kprobe(self.symbol, self._hit, retprobe=self.is_return,
                                                  offset=self.offset, raw=True)
        elif not self.enabled and self._probe is not None:
            self.missed_base += self._probe.nmissed
            kprobes.unregister_kprobe(self._probe)
            self._probe = None
        if self._probe is not None:
            handler = self._handler()
            self._probe.set_handler(handler, getattr(handler, "args_hit", None))
        for sibling in self.siblings:
            sibling.enabled, sibling.sinks = self.enabled, self.sinks
            sibling.on_enabled_changed()

    def _handler(self) -> Callable[[bytearray], None]:
        """The probe's handler for the current sinks: ``_hit``, or with one sink whose BPF
        program gates the write, a hit that calls the program itself (one layer less on the
        path the program runs for every hit)."""
        if self.primary is not None:
            return self._appended_hit
        sinks = self.sinks
        if len(sinks) != 1:
            return self._hit
        this_cpu = self.this_cpu
        direct = getattr(sinks[0], "direct", None)
        if direct is not None:      # the generated hit (probe_codegen.py) does it all
            return direct
        gate = getattr(sinks[0], "gate", None)
        if gate is None:            # one trace array records it: call its emitter directly
            sink = sinks[0]

            def hit_one(ctx: bytearray) -> None:
                self.nhit += 1
                sink(None, this_cpu(), ctx)
            return hit_one
        prog, write = gate

        def hit(ctx: bytearray) -> None:
            self.nhit += 1
            if prog(ctx):
                write(None, this_cpu(), ctx)
        return hit

    def _hit(self, ctx: bytearray) -> None:
        """The probe's handler: ``ctx`` is the CPU's live pt_regs, what a BPF program gets."""
        self.nhit += 1
        cpu = self.this_cpu()
        for sink in self.sinks:
            sink(None, cpu, ctx)

    def _appended_hit(self, ctx: bytearray) -> None:
        """An appended probe's hit: its own record (its probe point, its values)."""
        self.nhit += 1
        cpu = self.this_cpu()
        record = self.record_from_ctx(ctx, cpu)
        for sink in self.sinks:
            sink(record, cpu, ctx)

    def record_from_ctx(self, ctx: Buffer, cpu: Any) -> bytes:
        """The record for the hit being dispatched (``ctx`` is its pt_regs bytes)."""
        regs = PtRegs(ctx, self._probe.site.addr)        # read now, within the hit: no copy
        if self.is_return:
            regs.ret_ip = regs.ip
        flags, depth = trace_ctx(cpu)
        return self.build(self._values(regs, cpu), flags, depth, cpu.task.pid)

    def _values(self, regs: Any, cpu: Any) -> list[Any]:
        if self.is_return:
            head: list[Any] = [regs.func, regs.ret_ip]
        else:
            head = [regs.values[_IP]]
        return head + self.arg_values(regs, cpu)


_IP = 16    # pt_regs.ip's index


def check_registrable(kernel: Any, symbol: str, offset: int, is_return: bool) -> None:
    """register_trace_kprobe's outcome, known at definition time: the blacklist and what the
    machine's register_kprobe refuses (ENOENT → BAD_PROBE_ADDR, else FAIL_REG_PROBE). The
    model arms the probe only while the event is used, so the trial registration is undone."""
    if symbol in KPROBE_BLACKLIST:
        raise ProbeError("FAIL_REG_PROBE", 1, 0)
    kprobes = kernel.kprobes
    try:
        probe = kprobes.register_kprobe(symbol, _no_handler, retprobe=is_return, offset=offset)
    except MachineKprobeError as e:
        if e.errno == errno.ENOENT:
            raise ProbeError("BAD_PROBE_ADDR", 1, 0, errno.ENOENT) from None
        raise ProbeError("FAIL_REG_PROBE", 1, 0) from None
    kprobes.unregister_kprobe(probe)


def _no_handler(regs: Any) -> None:
    return None


def kprobe_head(is_return: bool) -> tuple[list[tuple[str, str]], str, str]:
    return ProbeEvent.HEAD_RETURN if is_return else ProbeEvent.HEAD_NORMAL


class KprobeEvents:
    """The kprobe kind of dynamic event (``kprobe_events``, ``kprobe_profile``)."""

    location = "trace_kprobe"
    commands = "pr"

    def __init__(self, tracing: Any) -> None:
        self.tracing = tracing
        self.kernel = tracing.kernel

    @property
    def events(self) -> list[KprobeEvent]:
        return [ev for ev in self.tracing.dynevents.events
                if ev.owner is self]

    # -- files
    def text(self) -> str:
        return "".join(ev.definition() for ev in self.events)

    def profile_text(self) -> str:
        """probes_profile_seq_show: ``  %-44s %15lu %15lu`` name, hits, misses."""
        return "".join(f"  {ev.name:<44} {ev.nhit:>15} {ev.nmissed:>15}\n" for ev in self.events)

    def write(self, text: str, truncate: bool = False, array: Any = None) -> None:
        """A write to ``kprobe_events``: O_TRUNC removes every kprobe first (EBUSY if one is in
        use), then each line is a ``p``/``r``/``-`` command."""
        self.tracing.dynevents.write(text, truncate, array, kinds=(self,))

    def command(self, line: str, array: Any = None) -> KprobeEvent | None:
        """Run one command; returns the new event for ``p``/``r``."""
        ev = self.tracing.dynevents.command(line, array, kinds=(self,))
        return ev if isinstance(ev, KprobeEvent) else None

    # -- create (__trace_kprobe_create)
    def create(self, argv: list[str]) -> KprobeEvent | None:
        """The new event, or None when the command is not a kprobe's (-ECANCELED)."""
        head = argv[0]
        if head[0] not in "pr" or len(argv) < 2:
            return None
        is_return = head[0] == "r"
        colon = head.find(":", 1)
        event_text = head[colon + 1:] if colon >= 0 else None
        maxactive = 0
        if head[1:2].isdigit():
            if not is_return:
                raise ProbeError("BAD_MAXACT_TYPE", 0, 1)
            digits = head[1:colon] if colon >= 0 else head[1:]
            if len(digits) > MAX_EVENT_NAME_LEN - 1:
                raise ProbeError("BAD_MAXACT", 0, 1)
            try:
                maxactive = int(digits, 0)
            except ValueError:
                raise ProbeError("BAD_MAXACT", 0, 1) from None
            if not maxactive:
                raise ProbeError("BAD_MAXACT", 0, 1)
            if maxactive > MAXACTIVE_MAX:
                raise ProbeError("MAXACT_TOO_BIG", 0, 1)
        place = argv[1]
        if "/" in place and ":" in place:
            return None                    # a uprobe's PATH:OFFSET (no uprobes here)
        kind = "r" if is_return else "p"
        address = kstrtoul(place)
        if address is not None:            # MEMADDR: no symbol, no BTF, not a function entry
            hit = self.kernel.kallsyms.lookup(address)
            symbol, offset = (hit[0], hit[1]) if hit is not None else ("", 0)
            shown = f"0x{self.tracing.symbols.hash_ptr(address):016x}"     # "0x%p"
            ctx = ParseContext(self.kernel, ret=is_return)
            default = f"{kind}_{shown}"
        else:
            symbol, offset, is_return = self._parse_place(place, is_return)
            kind, shown = ("r" if is_return else "p"), None
            ctx = ParseContext(self.kernel, ret=is_return, entry=not is_return and offset == 0,
                               funcname=symbol)
            proto = FUNC_PROTOS.get(symbol)
            if proto is not None:
                ctx.ret_type, ctx.params = proto
            default = f"{kind}_{symbol}_{offset}"
        group, event = "kprobes", None
        if event_text is not None:
            grp, event = parse_event_name(event_text, colon + 1)
            group = grp or group
        parsed = parse_args(argv[2:], ctx)
        if not symbol:                     # not kernel text: register_kprobe says -EINVAL
            raise ProbeError("FAIL_REG_PROBE", 1, 0)
        check_registrable(self.kernel, symbol, offset, is_return)
        ev = KprobeEvent(self, group, event or sanitize_event_name(default), symbol, offset,
                         is_return, maxactive, parsed)
        ev.address_text = shown
        self.tracing.dynevents.add(ev, lambda old: old.is_return == is_return)
        return ev

    def _parse_place(self, place: str, is_return: bool) -> tuple[str, int, bool]:
        """SYM[+offs][%return]: the symbol, its offset, and whether this probes the exit."""
        cut = place.find("%")
        if cut >= 0:
            if place[cut:] != "%return":
                raise ProbeError("BAD_ADDR_SUFFIX", 1, cut)
            place, is_return = place[:cut], True
        sign = next((i for i, c in enumerate(place) if c in "+-"), -1)
        symbol, offset = place, 0
        if sign >= 0:
            symbol = place[:sign]
            try:
                offset = int(place[sign:], 0) if place[sign + 1:] else -1
            except ValueError:
                offset = -1
        if offset < 0 or offset > 0xFFFFFFFF or not symbol:
            raise ProbeError("BAD_PROBE_ADDR", 1, 0)
        syms = self.kernel.kallsyms
        addr = syms.address_of(symbol)
        if addr is None:
            # validate_probe_symbol: not in kallsyms; the kernel defers this to register
            raise ProbeError("BAD_PROBE_ADDR", 1, 0, errno.ENOENT)
        if not syms.is_modelled(symbol) and syms.real_count(symbol) > 1:
            # validate_probe_symbol: static functions of several files share the name
            raise ProbeError("NON_UNIQ_SYMBOL", 1, 0, errno.EADDRNOTAVAIL)
        if is_return and offset:
            raise ProbeError("BAD_RETPROBE", 1, 0)
        # an offset past the symbol's end names the address there (_kprobe_addr): the
        # registration finds the symbol containing it, or fails with ENOENT
        return symbol, offset, is_return
