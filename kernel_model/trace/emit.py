"""The emission path: one event occurrence from its tracepoint into a trace array's ring buffer.

A tracepoint (``TraceEvent.fire``, a kprobe hit) builds the record once and calls each active
``EventFile``'s emitter. For one event file the kernel's order is (``emit``, top to bottom):

1. unconditional triggers run (soft mode: enable_event/disable_event point here); when one
   has a filter or reads the record (hist), all wait for the record (TRIGGER_COND);
2. a soft-disabled file stops here, unless a conditional trigger must still see the record;
3. the array's pid lists (``set_event_pid`` / ``set_event_notrace_pid``): a task they leave out
   stops here (trace_event_ignore_this_pid: nothing reserved, no trigger);
4. the BPF program: ``prog(ctx)`` returning 0 drops the event at the cost of the program only
   (tracepoints pass the record, kprobe events the CPU's live pt_regs, valid during the call);
5. reserve the record in the ring buffer (the fields are written with it);
6. conditional triggers test the record;
7. the predicate filter tests the written record (as the kernel: the filter runs after the
   write), and a failing or soft-disabled record is discarded — never an entry;
8. otherwise commit: the entry counts, the task's comm (and tgid) are saved, readers wake;
9. the triggers that fired run their actions.

Without triggers, soft mode or pid lists the file's ``emitter()`` is a leaner form of the same
steps (``update_event`` asks again after every state change, as the kernel flips static keys and
file flags): the BPF program gating ``emit_filtered`` (steps 5, 7, 8), and without a predicate
either, ``committer`` (steps 5 and 8 in one ``ring_buffer_write``); with a predicate,
``filtered_committer`` (steps 7, then 5 and 8 for a record that passes: the kernel's
``trace_buffered_event``, the filter run on a scratch copy, so a failing record never touches
the ring buffer). Those two write without the buffer's lock while no
reader is in the buffer (``RingBuffer.write_unlocked`` / ``reserve_unlocked``). For a kprobe
event the emitter also carries ``direct``, the event's generated hit (probe_codegen.py: steps
4, 5, 7 and 8 in one function, the fields fetched from pt_regs and written into the tail page
with no record object; the unusual cases hand a built record to the emitter), which the
probe calls when this file is its only sink.

ftrace's own entries (``trace_marker``, stack traces) cannot be filtered: ``write_entry`` writes
and commits them through the same ring buffer API (ring_buffer.py).
"""
from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tracesim.kernel_model.trace.errlog import os_error
from tracesim.kernel_model.trace.event import TraceEvent, trace_ctx
from tracesim.kernel_model.trace.kprobe_events import KprobeEvent
from tracesim.kernel_model.trace.probe_codegen import direct_hit

if TYPE_CHECKING:
    from tracesim.kernel_model.trace.array import TraceArray
    from tracesim.kernel_model.trace.printfmt import Buffer

Emitter = Callable[[bytes | None, Any, "Buffer"], None]


class EventFile:
    """One event's state in one trace array (the kernel's ``trace_event_file``)."""

    def __init__(self, array: TraceArray, event: TraceEvent) -> None:
        self.array = array
        self.event = event
        self.enabled = False          # the ``enable`` file
        self.soft_refs = 0            # enable_event/disable_event triggers pointing here
        self.soft_disabled = False    # SOFT_DISABLED flag (meaningful while soft_refs > 0)
        self.filter: Any = None       # compiled predicate (tracesim.filters.predicate) or None
        self.filter_text = "none"     # what ``filter`` reads
        self.triggers: list[Any] = [] # triggers.Trigger objects
        self.prog: Callable[[Buffer], int] | None = None

    # -- state seen through files
    @property
    def recording(self) -> bool:
        """Whether hits are written: in soft mode (enable_event/disable_event triggers point
        here) the SOFT_DISABLED flag decides, otherwise the ``enable`` file."""
        return not self.soft_disabled if self.soft_refs else self.enabled

    def enable_text(self) -> str:
        """event_enable_read: ``0``/``1``, with ``*`` in soft mode."""
        return ("1" if self.recording else "0") + ("*" if self.soft_refs else "") + "\n"

    def set_enabled(self, on: bool) -> None:
        self.enabled = on
        if self.soft_refs:
            self.soft_disabled = not on
        self.array.tracing.update_event(self.event)

    def set_filter(self, compiled: Any, text: str) -> None:
        """Install a compiled predicate (None clears); ``text`` is what ``filter`` reads."""
        self.filter = compiled
        self.filter_text = text
        self.array.tracing.update_event(self.event)

    def set_prog(self, prog: Callable[[Buffer], int] | None) -> None:
        self.prog = prog
        self.array.tracing.update_event(self.event)

    @property
    def active(self) -> bool:
        """Whether the tracepoint must call this file (enabled, soft mode or triggers)."""
        return self.enabled or bool(self.soft_refs) or bool(self.triggers)

    # -- what the tracepoint calls
    def sink(self, record: bytes | None, cpu: Any, ctx: Buffer) -> None:
        """One event occurrence for this trace array (record None: build it from ``ctx``)."""
        emit(self, record, cpu, ctx)

    def emitter(self) -> Emitter:
        """What the event calls per occurrence while this file is active: ``sink`` (every
        step), or when no trigger, soft mode or pid list stands before the write (the usual
        case) the same steps without their checks."""
        if self.triggers or self.soft_refs or not self.enabled or self.array.pid_filtered:
            return self.sink
        prog = self.prog
        plain = committer(self)
        write = filtered_committer(self) if self.filter is not None else plain
        # a kprobe event's generated hit: fetch, filter, write into the page, commit (it
        # filters before it hands a record on, so what it hands on is written as it is)
        direct = direct_hit(self.event, self, plain,
                            self.filter.match if self.filter is not None else None, prog) \
            if isinstance(self.event, KprobeEvent) else None
        if prog is None:
            write.direct = direct  # type: ignore[attr-defined]  # the kprobe event runs it
            return write

        def gated(record: bytes | None, cpu: Any, ctx: Buffer) -> None:
            if prog(ctx):
                write(record, cpu, ctx)
        gated.gate = (prog, write)  # type: ignore[attr-defined]  # kprobe events run the two
        gated.direct = direct  # type: ignore[attr-defined]
        return gated


def emit(file: EventFile, record: bytes | None, cpu: Any, ctx: Buffer) -> None:
    """Every step of one occurrence for ``file`` (the module docstring's 1–9)."""
    triggers = file.triggers
    cond = False
    if triggers:                                                   # 1
        cond = any(t.filter is not None or t.needs_record for t in triggers)
        if not cond:
            _run_triggers(file, triggers, None)
    soft_off = file.soft_disabled if file.soft_refs else not file.enabled
    if soft_off and not cond:                                      # 2
        return
    array = file.array
    if array.pid_filtered and array.ignores_event(file.event, cpu.task, record):   # 3
        return
    prog = file.prog
    if prog is not None and not prog(ctx):                         # 4
        return
    emit_filtered(file, record, cpu, ctx, cond, soft_off)          # 5-9


def emit_filtered(file: EventFile, record: bytes | None, cpu: Any, ctx: Buffer,
                  cond: bool = False, soft_off: bool = False) -> None:
    """Steps 5–9: reserve, conditional triggers, predicate, commit or discard, trigger
    actions. ``cond``: conditional triggers are attached; ``soft_off``: the file is
    soft-disabled (the record is written only for those triggers, then discarded)."""
    if record is None:                   # a kprobe event's record is made from its pt_regs
        record = file.event.record_from_ctx(ctx, cpu)  # type: ignore[attr-defined]
    array = file.array
    fired: list[Any] = []
    if array.recording:
        buf = array.buffer
        with buf.exclusive:
            cb = buf.cpus[cpu.id]
            res = cb.reserve(array.clock(), record)                # 5
            if cond:                                               # 6
                fired = _test_triggers(file.triggers, record, cpu)
            if res is not None:
                flt = file.filter
                if soft_off or (flt is not None and                # 7
                                not flt.match(record, cpu.id, cpu.task.comm)):
                    cb.discard(res)
                else:                                              # 8
                    cb.commit(res)
                    task = cpu.task                # _save_task, inline on the hot path
                    if array.record_cmd:
                        array.tracing.cmdlines.record(task.pid, task.comm)
                    if array.record_tgid:
                        array.tracing.tgids[task.pid] = task.tgid
                    if buf.waiters:
                        buf.cond.notify_all()
    elif cond:
        fired = _test_triggers(file.triggers, record, cpu)
    if fired:                                                      # 9
        _run_triggers(file, fired, record)


def committer(file: EventFile) -> Emitter:
    """Steps 5 and 8 for a file without predicate, triggers or soft mode: nothing can
    discard the record, so it is reserved and committed in one ``write``, without the
    buffer's lock while no reader or control write is in the buffer (``write_unlocked``),
    the comm saved only when it changed. Objects that never change are bound once; the
    array's ``tracing_on``, ``clock`` and options are read per event (``ts``: the time a
    caller already read for this event, kprobe events' generated hit)."""
    array = file.array
    buf = array.buffer
    exclusive, cpus = buf.exclusive, buf.cpus
    write_unlocked = buf.write_unlocked
    tracing = array.tracing
    cmdlines, tgids = tracing.cmdlines, tracing.tgids
    saved = cmdlines.map
    from_ctx = getattr(file.event, "record_from_ctx", None)

    def commit(record: bytes | None, cpu: Any, ctx: Buffer, ts: int | None = None) -> None:
        if not array.tracing_on:
            return
        if record is None:
            record = from_ctx(ctx, cpu)
        written = write_unlocked(cpu.id, array.clock() if ts is None else ts, record)
        if written is None:            # a reader is in the buffer: the locked path
            with exclusive:
                written = cpus[cpu.id].write(array.clock(), record)
        if written:
            task = cpu.task
            if array.record_cmd and saved.get(task.pid) != task.comm:
                cmdlines.record(task.pid, task.comm)
            if array.record_tgid:
                tgids[task.pid] = task.tgid
            if buf.waiters:
                buf.wake_waiters()
    return commit


def filtered_committer(file: EventFile) -> Emitter:
    """Steps 5, 7 and 8 for a file with a predicate and no triggers or soft mode, the way the
    kernel does them while an event has a filter (``trace_buffered_event``): the record is
    written to a per-CPU scratch buffer (here: the record built), the predicate tests it
    there, and only a record that passes is written into the ring buffer (``ring_buffer_write``,
    as ``committer``); a failing one never touches the buffer, so nothing is left to discard."""
    array = file.array
    from_ctx = getattr(file.event, "record_from_ctx", None)
    match = file.filter.match
    write: Callable[..., None] = committer(file)    # takes the time a caller read

    def commit(record: bytes | None, cpu: Any, ctx: Buffer, ts: int | None = None) -> None:
        if not array.tracing_on:
            return
        if record is None:
            record = from_ctx(ctx, cpu)
        if match(record, cpu.id, cpu.task.comm):                     # 7
            write(record, cpu, ctx, array.clock() if ts is None else ts)   # 5, 8
    return commit


def _save_task(array: TraceArray, task: Any) -> None:
    """What a commit records of the task (tracing_record_taskinfo): its comm, its tgid."""
    if array.record_cmd:
        array.tracing.cmdlines.record(task.pid, task.comm)
    if array.record_tgid:
        array.tracing.tgids[task.pid] = task.tgid


def _test_triggers(triggers: list[Any], record: bytes, cpu: Any) -> list[Any]:
    return [t for t in triggers
            if t.filter is None or t.filter.match(record, cpu.id, cpu.task.comm)]


def _run_triggers(file: EventFile, triggers: list[Any], record: bytes | None) -> None:
    for t in list(triggers):
        t.fire(file, record)


# -- ftrace's own entries

def write_entry(array: TraceArray, event: TraceEvent, values: Any, cpu: Any,
                preempt_bias: int = 0) -> bool:
    """Build an ftrace entry (``print``, ``kernel_stack``) in ``cpu``'s context and write
    it into ``array`` (ring_buffer_write + the commit's task info); False when not written
    (tracing off, or dropped by a full buffer in producer-drop mode). ``preempt_bias``: the
    preemption the writer itself disables before taking the context (the marker's 1)."""
    flags, depth = trace_ctx(cpu)
    if preempt_bias:
        depth = (depth & ~0xf) | min((depth & 0xf) + preempt_bias, 0xf)
    record = event.build(values, flags, depth, cpu.task.pid)
    if not array.recording:
        return False
    buf = array.buffer
    with buf.exclusive:
        if not buf.cpus[cpu.id].write(array.clock(), record):
            return False
        _save_task(array, cpu.task)
        buf.notify()
    return True


def write_marker(array: TraceArray, text: str | bytes) -> int:
    """``trace_marker``: a ftrace:print entry ``tracing_mark_write: <text>``; returns the count.

    The kernel appends a newline when the text does not end with one; writes while the buffer
    is off fail with EBADF, with the ``markers`` option off with EINVAL. A write longer than
    one entry can hold is cut to ``MARKER_MAX`` bytes and that short count returned (the
    writer's stdio writes the rest as more entries). The entry is written with preemption
    disabled, so its flags column reads ``...1.``.
    """
    raw = text.encode() if isinstance(text, str) else bytes(text)
    if not array.options["markers"]:
        raise os_error(errno.EINVAL)
    if not array.recording:
        raise os_error(errno.EBADF)
    msg = raw[:MARKER_MAX]
    taken = len(msg)
    if not msg.endswith(b"\n"):
        msg += b"\n"
    tracing = array.tracing
    ip = tracing.symbols.address_of("tracing_mark_write") or 0
    cpu = tracing.this_cpu()
    # the triggers of the array's ftrace:print file (tr->trace_marker_file) test the entry
    # as written, before the newline is added; the ones that fired act after the commit
    file = array.files.get(("ftrace", "print"))
    fired: list[Any] = []
    record = b""
    if file is not None and file.triggers:
        flags, depth = trace_ctx(cpu)
        depth = (depth & ~0xf) | min((depth & 0xf) + 1, 0xf)
        record = tracing.print_event.build((ip, raw[:MARKER_MAX]), flags, depth, cpu.task.pid)
        fired = _test_triggers(file.triggers, record, cpu)
    write_entry(array, tracing.print_event, (ip, msg), cpu, preempt_bias=1)
    if fired and file is not None:
        _run_triggers(file, fired, record)
    return taken


# tracing_mark_write: the largest event a sub-buffer takes (ring_buffer_max_event_size: the
# 4080 data bytes of a 4 KiB sub-buffer less an 8-byte event header) less the print entry's
# meta (16-byte struct print_entry + the '\0' and a possible '\n'): 4054, as 6.18 takes.
MARKER_MAX = 4080 - 8 - (16 + 2)
