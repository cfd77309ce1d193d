"""The tracing core: event registry, trace arrays (top level + instances), the emission path.

Contract
--------
``Tracing(kernel)`` is created by ``Kernel`` as ``kernel.tracing``. It reads from the machine:

* ``kernel.machine.this_cpu()`` → ``id``, ``task`` (``pid``, ``tgid``, ``comm``),
  ``preempt_count`` (kernel encoding), ``irqs_off``, ``need_resched``, ``migrate_disable``;
* ``kernel.clock.reader(name)`` → a zero-argument function for a trace clock (names as
  ``tracesim.kernel_model.clock.CLOCK_NAMES``; ``CLOCKS_IN_NS`` says which print as secs.usecs);
* ``kernel.kallsyms.lookup(addr)`` → ``(name, offset, size)`` or None, and
  ``kernel.kallsyms.address_of(name)`` → int or None (for ``%pS``, kprobe symbols);
* ``kernel.kprobes.register_kprobe(sym, handler, retprobe=False)`` / ``unregister_kprobe``
  (kprobe events, see trace_kprobe.py);
* ``kernel.ncpus`` (or ``len(kernel.machine.cpus)``) and ``kernel.seed`` (the %p hash key).

What the machine (K1) calls: ``tracing.event(system, name)`` → ``TraceEvent`` with ``.enabled``
and ``.fire(*TP_PROTO args)`` (trace_event.py).

What tracefs (T) calls — one method per operation (errors are ``OSError(errno, text)``):

* registry: ``available_events()``, ``systems()``, ``events_of(system)``
* instances: ``tracing.top``, ``create_instance(name)`` (EEXIST), ``remove_instance(name)``
  (ENOENT, EBUSY while ``ta.refs`` > 0 — T calls ``ta.get()``/``ta.put()`` around open files),
  ``instance(name)``, ``instance_names()``
* per trace array ``ta`` (``TraceArray``):
  ``ta.file(sys, name)`` → ``EventFile`` with ``.enable_text()`` (``0``/``1``/``0*``/``1*``),
  ``.set_enabled(bool)``, ``.set_filter(compiled | None, text)`` / ``.filter_text``,
  ``.triggers`` (triggers.py: ``set_trigger(ta, file, cmd)``, ``trigger_text(file)``),
  ``.prog`` (the BPF seam: callable(ctx bytes) → int, or None);
  ``ta.system_enable_text(sys | None)`` (``0``/``1``/``X``/``?``), ``ta.set_system_enabled``;
  ``ta.set_event_text()``, ``ta.set_event_write(text, truncate)``;
  ``ta.tracing_on`` / ``ta.set_tracing_on(bool)``; ``ta.clock_text()`` / ``ta.set_clock(name)``;
  ``ta.buffer_size_text(cpu=None)`` / ``ta.set_buffer_size_kb(kb, cpu=None)``,
  ``ta.buffer_total_size_text()``; ``ta.options`` / ``ta.set_option(name, bool)``,
  ``ta.options_text()``; ``ta.clear(cpu=None)`` (``echo > trace``);
  ``ta.trace_marker_write(text)``; ``ta.event_pids_text(notrace=False)`` /
  ``ta.add_event_pids(pids, notrace=False)`` / ``ta.clear_event_pids(notrace=False)``
  (``set_event_pid``, ``set_event_notrace_pid``; ``event-fork`` follows forks and exits);
  ``ta.error_log_text()`` / ``ta.clear_error_log()`` /
  ``ta.log_error(location, command, message, pos)``;
  reading: ``trace_output.trace_text(ta, cpu=None)`` (header + lines, non-consuming),
  ``trace_output.PipeReader(ta, cpu=None)`` (consuming lines, blocking with wake-ups),
  ``ta.buffer.read_page(cpu)`` (``trace_pipe_raw``), ``trace_output.stats_text(ta, cpu)``
* global: ``saved_cmdlines_text()``, ``saved_tgids_text()``, ``saved_cmdlines_size`` /
  ``set_saved_cmdlines_size(n)``,
  ``printk_formats_text()``, ``kprobes`` (trace_kprobe.KprobeEvents: ``write(text, truncate)``,
  ``text()``, ``profile_text()``), ``dynevents`` (dynamic_events.DynamicEvents: every probe
  event kind, ``write(text, truncate)``, ``text()``), ``trace_printk(msg, ta=None)``
  (bpf_trace_printk).

Modules (kernel_model/trace/): tracing.py (``Tracing``: the event registry, the instances, the
global files), array.py (``TraceArray``), emit.py (``EventFile`` and the emission hot path, from
the tracepoint to the ring buffer's reserve/commit/discard), ring_buffer.py, cmdlines.py
(saved_cmdlines), errlog.py (error_log), symbols.py (%p, kallsyms), output.py (reading),
triggers.py, hist.py and synth.py, the probe events: probe.py (arguments, errors),
probe_event.py (their events), probe_btf.py, kprobe_events.py, fprobe.py, eprobe.py,
dynamic_events.py; the function tracers functions.py (+ graph_output.py, ftrace_commands.py,
ftrace_profile.py, stack_tracer.py).
"""
from __future__ import annotations

import errno
import hashlib
from collections.abc import Callable
from typing import Any

from tracesim.kernel_model.trace.array import CLOCK_NAMES, CLOCKS_IN_NS, TRACE_OPTIONS, TraceArray
from tracesim.kernel_model.trace.cmdlines import SAVED_CMDLINES_DEFAULT, SavedCmdlines
from tracesim.kernel_model.trace.emit import EventFile
from tracesim.kernel_model.trace.errlog import ERROR_LOG_MAX, os_error
from tracesim.kernel_model.trace.event import TraceEvent
from tracesim.kernel_model.trace.symbols import Symbols

__all__ = ["CLOCK_NAMES", "CLOCKS_IN_NS", "ERROR_LOG_MAX", "FIRST_DYNAMIC_ID",
           "SAVED_CMDLINES_DEFAULT", "TRACE_OPTIONS", "EventFile", "SavedCmdlines", "Symbols",
           "TraceArray", "Tracing"]

FIRST_DYNAMIC_ID = 100            # ids below are ftrace's own entry types (TRACE_PRINT = 5)


class Tracing:
    """All of tracing for one modelled kernel."""

    def __init__(self, kernel: Any) -> None:
        from tracesim.kernel_model.trace.events import all_events
        self.kernel = kernel
        machine = kernel.machine
        self.ncpus = getattr(kernel, "ncpus", None) or len(machine.cpus)
        self.this_cpu: Callable[[], Any] = machine.this_cpu
        seed = getattr(kernel, "seed", 0)
        self.symbols = Symbols(kernel, key=hashlib.sha256(f"ptr_key:{seed}".encode()).digest()[:32])
        self.cmdlines = SavedCmdlines()
        self.tgids: dict[int, int] = {}          # pid → tgid, recorded with record-tgid
        # events active in some trace array: while any is, sched_switch saves both comms
        self.recording_events: set[tuple[str, str]] = set()
        self.events: dict[tuple[str, str], TraceEvent] = {}
        self.by_id: dict[int, TraceEvent] = {}
        self._next_id = FIRST_DYNAMIC_ID
        for ev in all_events():
            self.register_event(ev)
        self.print_event = self.events[("ftrace", "print")]
        self.top = TraceArray(self, "")
        self.instances: dict[str, TraceArray] = {}
        from tracesim.kernel_model.trace.kprobe_events import KprobeEvents
        self.kprobes = KprobeEvents(self)
        from tracesim.kernel_model.trace.dynamic_events import DynamicEvents
        self.dynevents = DynamicEvents(self)
        from tracesim.kernel_model.trace.synth import SynthEvents
        self.synth = SynthEvents(self)

    def clock_reader(self, name: str) -> Callable[[], int]:
        return self.kernel.clock.reader(name)

    # -- registry
    def register_event(self, ev: TraceEvent) -> TraceEvent:
        """Add an event (boot-time tracepoints, then kprobe events); assigns its ID."""
        key = (ev.system, ev.name)
        if key in self.events:
            raise os_error(errno.EEXIST)
        if ev.id == 0:
            ev.id = self._next_id
            self._next_id += 1
        ev.this_cpu = self.this_cpu
        self.by_id[ev.id] = ev
        # An event registered after boot (a dynamic event) goes to the head of each trace
        # array's tr->events (list_add in trace_create_new_event), so available_events and
        # set_event list it first; boot events keep registration order.
        booting = getattr(self, "top", None) is None
        add = _add_last if booting else _add_first
        add(self.events, key, ev)
        for ta in self.arrays():
            add(ta.files, key, EventFile(ta, ev))
        return ev

    def unregister_event(self, ev: TraceEvent) -> None:
        """Remove a dynamic event; EBUSY while any instance has it enabled or filtered by triggers."""
        key = (ev.system, ev.name)
        if any(ta.files[key].active for ta in self.arrays()):
            raise os_error(errno.EBUSY)
        for ta in self.arrays():
            del ta.files[key]
        del self.events[key]
        del self.by_id[ev.id]

    def event(self, system: str, name: str) -> TraceEvent:
        try:
            return self.events[(system, name)]
        except KeyError:
            raise KeyError(f"no event {system}:{name}") from None

    def available_events(self) -> list[str]:
        return [f"{s}:{n}" for (s, n) in self.events if s != "ftrace"]

    def systems(self) -> list[str]:
        return sorted({s for (s, _) in self.events if s != "ftrace"})

    def events_of(self, system: str) -> list[str]:
        return sorted(n for (s, n) in self.events if s == system)

    def update_event(self, ev: TraceEvent) -> None:
        """Recompute the static key and the sinks of ``ev`` after a state change."""
        key = (ev.system, ev.name)
        files = [ta.files[key] for ta in self.arrays() if key in ta.files]
        # event probes attached to ``ev`` take its records like a trace array does
        ev.sinks = tuple(f.emitter() for f in files if f.active) + ev.attached
        ev.enabled = bool(ev.sinks or ev.probes)
        (self.recording_events.add if ev.enabled else self.recording_events.discard)(key)
        hook = getattr(ev, "on_enabled_changed", None)
        if hook is not None:
            hook()

    def register_probe(self, ev: TraceEvent, probe: Callable[[tuple], None]) -> None:
        """tracepoint_probe_register: ``probe(args)`` runs on every hit of ``ev``, whatever
        the trace arrays do (BPF raw tracepoint and perf event programs attach here)."""
        ev.probes += (probe,)
        self.update_event(ev)

    def unregister_probe(self, ev: TraceEvent, probe: Callable[[tuple], None]) -> None:
        ev.probes = tuple(p for p in ev.probes if p is not probe)
        self.update_event(ev)

    # -- instances
    def arrays(self) -> list[TraceArray]:
        top = getattr(self, "top", None)
        return ([top] if top is not None else []) + list(getattr(self, "instances", {}).values())

    def instance(self, name: str) -> TraceArray:
        if name == "":
            return self.top
        try:
            return self.instances[name]
        except KeyError:
            raise os_error(errno.ENOENT) from None

    def instance_names(self) -> list[str]:
        return sorted(self.instances)

    def create_instance(self, name: str) -> TraceArray:
        if name in self.instances:
            raise os_error(errno.EEXIST)
        ta = TraceArray(self, name)
        self.instances[name] = ta
        return ta

    def remove_instance(self, name: str) -> None:
        ta = self.instance(name) if name else None
        if ta is None:
            raise os_error(errno.ENOENT)
        if ta.refs > 0:
            raise os_error(errno.EBUSY)
        from tracesim.kernel_model.trace.triggers import clear_triggers
        for f in ta.files.values():
            clear_triggers(f)
            f.enabled = False
        ta._follow_fork(False)
        if ta.options["trace_printk_dest"]:        # the flags are cleared: printk goes back top
            ta.set_option("trace_printk_dest", False)
        from tracesim.kernel_model.trace.functions import release_array
        release_array(ta)                          # its tracer stops (nop)
        del self.instances[name]
        for ev in self.events.values():
            self.update_event(ev)

    # -- global files
    def saved_cmdlines_text(self) -> str:
        return self.cmdlines.text()

    @property
    def saved_cmdlines_size(self) -> int:
        return self.cmdlines.size

    def set_saved_cmdlines_size(self, n: int) -> None:
        self.cmdlines.resize(n)

    def saved_tgids_text(self) -> str:
        """``saved_tgids``: ``pid tgid`` per recorded task."""
        return "".join(f"{pid} {tgid}\n" for pid, tgid in sorted(self.tgids.items())
                       if pid)                     # trace_save_tgid skips the idle task

    def printk_formats_text(self) -> str:
        """``printk_formats``: no trace_printk() call sites with constant formats in the model."""
        return ""

    def trace_printk(self, msg: str | bytes, ta: TraceArray | None = None) -> None:
        """bpf_trace_printk (5.9+): fire bpf_trace:bpf_trace_printk, enabling it in ``ta`` first
        (the kernel enables the event when a program using the helper is loaded)."""
        ev = self.events[("bpf_trace", "bpf_trace_printk")]
        f = (ta or self.top).files[("bpf_trace", "bpf_trace_printk")]
        if not f.enabled:
            f.set_enabled(True)
        ev.fire(msg)


def _add_first(table: dict, key: Any, value: Any) -> None:
    """Put ``key`` at the front of ``table``'s order, in place (holders keep the same dict)."""
    rest = list(table.items())
    table.clear()
    table[key] = value
    table.update(rest)


def _add_last(table: dict, key: Any, value: Any) -> None:
    table[key] = value
