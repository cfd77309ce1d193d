"""The tracing core: event registry, trace arrays (top level + instances), the emission path.

Contract
--------
``Tracing(kernel)`` is created by ``Kernel`` as ``kernel.tracing``. It reads from the machine:

* ``kernel.machine.this_cpu()`` → ``id``, ``task`` (``pid``, ``tgid``, ``comm``),
  ``preempt_count`` (kernel encoding), ``irqs_off``, ``need_resched``, ``migrate_disable``;
* ``kernel.clock.reader(name)`` → a zero-argument function for a trace clock (names as
  ``kernel_model.clock.CLOCK_NAMES``; ``CLOCKS_IN_NS`` says which print as secs.usecs);
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
  ``text()``, ``profile_text()``), ``trace_printk(msg, ta=None)`` (bpf_trace_printk).

Emission (per instance, per event file — EventFile.sink), in the kernel's order:
unconditional triggers (soft mode) → soft-disabled? stop → the array's pid lists
(``set_event_pid``/``set_event_notrace_pid``: a task they leave out stops here) → BPF
``prog(ctx)`` (0 drops the event at the cost of the program only; tracepoints pass the record,
kprobe events the CPU's live pt_regs buffer, valid during the call) → reserve + write into the
ring buffer → conditional
triggers test the record → predicate filter / soft-disable discards the written record (as the
kernel: the filter runs after the write) → commit (saved_cmdlines, wake readers) → trigger
actions. Without triggers, soft mode or pid lists the event calls ``EventFile.emitter()``'s
leaner form of the same steps, and without a predicate filter either, write and commit in one
step.
"""
from __future__ import annotations

import errno
import fnmatch
import hashlib
import threading
from collections.abc import Callable, Iterable
from typing import Any

from kernel_model import ring_buffer
from kernel_model.trace_event import TraceEvent, trace_ctx

CLOCK_NAMES = ("local", "global", "counter", "uptime", "perf", "mono", "mono_raw", "boot",
               "tai", "x86-tsc")
CLOCKS_IN_NS = frozenset({"local", "global", "perf", "mono", "mono_raw", "boot", "tai"})
ERROR_LOG_MAX = 8                 # TRACING_LOG_ERRS_MAX
FIRST_DYNAMIC_ID = 100            # ids below are ftrace's own entry types (TRACE_PRINT = 5)
SAVED_CMDLINES_DEFAULT = 128

# trace_options of 6.18 in the kernel's order, with their boot defaults (trace_iterator_flags)
TRACE_OPTIONS: tuple[tuple[str, bool], ...] = (
    ("print-parent", True), ("sym-offset", False), ("sym-addr", False), ("verbose", False),
    ("raw", False), ("hex", False), ("bin", False), ("block", False), ("fields", False),
    ("trace_printk", True), ("annotate", True), ("userstacktrace", False),
    ("sym-userobj", False), ("printk-msg-only", False), ("context-info", True),
    ("latency-format", False), ("record-cmd", True), ("record-tgid", False),
    ("overwrite", True), ("disable_on_free", False), ("irq-info", True), ("markers", True),
    ("event-fork", False), ("pause-on-trace", False), ("hash-ptr", True),
    ("function-trace", True), ("function-fork", False), ("display-graph", False),
    ("stacktrace", False),
)


def _err(code: int, text: str = "") -> OSError:
    return OSError(code, text or errno.errorcode.get(code, str(code)))


_UNSEEN = object()


class Symbols:
    """What printing needs from the kernel: %p hashing and kallsyms lookups."""

    def __init__(self, kernel: Any, key: bytes) -> None:
        self.kallsyms = getattr(kernel, "kallsyms", None)
        self.key = key
        self.hash_raw = False
        self._cache: dict[int, int] = {}
        self._lookups: dict[int, tuple[str, int, int] | None] = {}

    def hash_ptr(self, addr: int) -> int:
        """ptr_to_id: a keyed hash of the pointer, masked to 32 bits (CONFIG_64BIT); the raw
        address with the top-level ``hash-ptr`` option off."""
        if self.hash_raw:
            return addr
        h = self._cache.get(addr)
        if h is None:
            digest = hashlib.blake2b(addr.to_bytes(8, "little"), digest_size=8, key=self.key)
            h = int.from_bytes(digest.digest(), "little") & 0xFFFFFFFF
            if len(self._cache) < 65536:
                self._cache[addr] = h
        return h

    def lookup(self, addr: int) -> tuple[str, int, int] | None:
        """kallsyms' (name, offset, size) of ``addr``, remembered: kallsyms does not change
        after boot and the same call sites print on every line."""
        hit = self._lookups.get(addr, _UNSEEN)
        if hit is _UNSEEN:
            hit = self.kallsyms.lookup(addr) if self.kallsyms is not None else None
            if len(self._lookups) < 65536:
                self._lookups[addr] = hit
        return hit

    def address_of(self, name: str) -> int | None:
        return self.kallsyms.address_of(name) if self.kallsyms is not None else None


class SavedCmdlines:
    """pid → comm as ``saved_cmdlines`` keeps them (a fixed number of slots, oldest replaced)."""

    def __init__(self, size: int = SAVED_CMDLINES_DEFAULT) -> None:
        self.size = size
        self.map: dict[int, str] = {}

    def record(self, pid: int, comm: str) -> None:
        if self.map.get(pid) == comm:
            return
        self.map.pop(pid, None)
        if len(self.map) >= self.size:
            del self.map[next(iter(self.map))]
        self.map[pid] = comm

    def find(self, pid: int) -> str:
        """trace_find_cmdline: ``<idle>`` for pid 0, ``<...>`` when not saved."""
        if pid == 0:
            return "<idle>"
        return self.map.get(pid, "<...>")

    def text(self) -> str:
        return "".join(f"{pid} {comm}\n" for pid, comm in self.map.items())

    def resize(self, size: int) -> None:
        if size < 1 or size > 32768:       # PID_MAX_DEFAULT
            raise _err(errno.EINVAL)
        self.size = size
        while len(self.map) > size:
            del self.map[next(iter(self.map))]


class EventFile:
    """One event's state in one trace array (the kernel's ``trace_event_file``)."""

    def __init__(self, array: TraceArray, event: TraceEvent) -> None:
        self.array = array
        self.event = event
        self.enabled = False          # the ``enable`` file
        self.soft_refs = 0            # enable_event/disable_event triggers pointing here
        self.soft_disabled = False    # SOFT_DISABLED flag (meaningful while soft_refs > 0)
        self.filter: Any = None       # compiled predicate (filters.predicate) or None
        self.filter_text = "none"     # what ``filter`` reads
        self.triggers: list[Any] = [] # triggers.Trigger objects
        self.prog: Callable[[bytes], int] | None = None

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

    def set_prog(self, prog: Callable[[bytes], int] | None) -> None:
        self.prog = prog
        self.array.tracing.update_event(self.event)

    @property
    def active(self) -> bool:
        """Whether the tracepoint must call this file (enabled, soft mode or triggers)."""
        return self.enabled or bool(self.soft_refs) or bool(self.triggers)

    # -- the emission path
    def sink(self, record: bytes | None, cpu: Any, ctx: bytes) -> None:
        """One event occurrence for this trace array (record None: build it from ``ctx``)."""
        triggers = self.triggers
        cond = False
        if triggers:
            cond = any(t.filter is not None for t in triggers)
            if not cond:
                _run_triggers(self, triggers, None)
        soft_off = self.soft_disabled if self.soft_refs else not self.enabled
        if soft_off and not cond:
            return
        if self.array.pid_filtered and self.array.ignores_task(cpu.task):
            return                  # trace_event_ignore_this_pid: nothing reserved, no trigger
        prog = self.prog
        if prog is not None and not prog(ctx):
            return
        self.write_record(record, cpu, ctx, cond, soft_off)

    def emitter(self) -> Callable[[bytes | None, Any, bytes], None]:
        """What the event calls per occurrence while this file is active: ``sink``, or when no
        trigger and no soft mode stands before the write (the usual case) the same steps
        without their checks: the BPF program gating ``write_record``, or ``write_record``
        alone.  ``update_event`` asks again after every change of enable, soft mode, triggers,
        filter, program or the array's pid lists (the kernel's static keys and file flags)."""
        if self.triggers or self.soft_refs or not self.enabled or self.array.pid_filtered:
            return self.sink
        prog = self.prog
        write = self.write_record if self.filter is not None else self._committer()
        if prog is None:
            return write

        def gated(record: bytes | None, cpu: Any, ctx: bytes) -> None:
            if prog(ctx):
                write(record, cpu, ctx)
        gated.gate = (prog, write)          # an event may run the two itself (kprobe events do)
        return gated

    def _committer(self) -> Callable[[bytes | None, Any, bytes], None]:
        """``write_record`` for a file without predicate filter, triggers or soft mode: nothing
        can discard the record, so it is written and committed in one step (no discard token,
        the comm saved only when it changed). Objects that never change are bound once; the
        array's ``tracing_on``, ``clock`` and options are read per event."""
        array = self.array
        buf = array.buffer
        lock, cpus, cond = buf.lock, buf.cpus, buf.cond
        tracing = array.tracing
        cmdlines, tgids = tracing.cmdlines, tracing.tgids
        saved = cmdlines.map
        from_ctx = getattr(self.event, "record_from_ctx", None)

        def commit(record: bytes | None, cpu: Any, ctx: bytes) -> None:
            if record is None:
                record = from_ctx(ctx, cpu)
            if not array.tracing_on:
                return
            with lock:
                if cpus[cpu.id].write(array.clock(), record) is not None:
                    task = cpu.task
                    if array.record_cmd and saved.get(task.pid) != task.comm:
                        cmdlines.record(task.pid, task.comm)
                    if array.record_tgid:
                        tgids[task.pid] = task.tgid
                    if buf.waiters:
                        cond.notify_all()
        return commit

    def write_record(self, record: bytes | None, cpu: Any, ctx: bytes, cond: bool = False,
                     soft_off: bool = False) -> None:
        """Past the program: reserve and write, test conditional triggers (``cond``), discard on
        the predicate filter or soft-disable, commit, run the triggers that fired."""
        if record is None:
            record = self.event.record_from_ctx(ctx, cpu)
        array = self.array
        fired: list[Any] = []
        if array.recording:
            buf = array.buffer
            with buf.lock:
                cb = buf.cpus[cpu.id]
                token = cb.write(array.clock(), record)
                if cond:
                    fired = _test_triggers(self.triggers, record, cpu)
                if token is not None:
                    flt = self.filter
                    if soft_off or (flt is not None and not flt.match(record, cpu.id,
                                                                        cpu.task.comm)):
                        cb.discard(token)
                    else:
                        if array.record_cmd:
                            array.tracing.cmdlines.record(cpu.task.pid, cpu.task.comm)
                        if array.record_tgid:
                            array.tracing.tgids[cpu.task.pid] = cpu.task.tgid
                        if buf.waiters:
                            buf.cond.notify_all()
        elif cond:
            fired = _test_triggers(self.triggers, record, cpu)
        if fired:
            _run_triggers(self, fired, record)


def _test_triggers(triggers: list[Any], record: bytes, cpu: Any) -> list[Any]:
    return [t for t in triggers
            if t.filter is None or t.filter.match(record, cpu.id, cpu.task.comm)]


def _run_triggers(file: EventFile, triggers: list[Any], record: bytes | None) -> None:
    for t in list(triggers):
        t.fire(file, record)


class TraceArray:
    """A trace instance: the top level (name "") or one under ``instances/``."""

    def __init__(self, tracing: Tracing, name: str) -> None:
        self.tracing = tracing
        self.name = name
        self.refs = 0
        self.buffer = ring_buffer.RingBuffer(tracing.ncpus)
        self.tracing_on = True
        self.options = dict(TRACE_OPTIONS)
        self.record_cmd = True
        self.record_tgid = False
        self.clock_name = "local"
        self.clock: Callable[[], int] = tracing.clock_reader("local")
        self.errors: list[str] = []
        self.files: dict[tuple[str, str], EventFile] = {
            key: EventFile(self, ev) for key, ev in tracing.events.items()}
        self.lock = threading.RLock()
        # set_event_pid / set_event_notrace_pid (tr->filtered_pids, filtered_no_pids): None
        # until pids are written; a list emptied by exits stays, and then matches no task
        self.event_pids: set[int] | None = None
        self.event_notrace_pids: set[int] | None = None
        self.pid_filtered = False             # EVENT_FILE_FL_PID_FILTER on the array's files

    # -- references held by open files (rmdir → EBUSY)
    def get(self) -> None:
        self.refs += 1

    def put(self) -> None:
        self.refs -= 1

    @property
    def recording(self) -> bool:
        return self.tracing_on

    @property
    def clock_in_ns(self) -> bool:
        return self.clock_name in CLOCKS_IN_NS

    # -- events
    def file(self, system: str, name: str) -> EventFile:
        try:
            return self.files[(system, name)]
        except KeyError:
            raise _err(errno.ENOENT) from None

    def system_enable_text(self, system: str | None = None) -> str:
        """``events/<sys>/enable`` or ``events/enable``: 0, 1, X (mixed), ? (no events)."""
        states = {f.enabled for (s, _), f in self.files.items() if system in (None, s)}
        if not states:
            return "?\n"
        return "X\n" if len(states) > 1 else ("1\n" if True in states else "0\n")

    def set_system_enabled(self, system: str | None, on: bool) -> None:
        with self.lock:
            for (s, _), f in sorted(self.files.items()):
                if system in (None, s):
                    f.set_enabled(on)

    def set_event_text(self) -> str:
        """``set_event``: enabled events, ``system:event`` per line (registry order)."""
        return "".join(f"{s}:{n}\n" for (s, n), f in self.files.items() if f.enabled)

    def set_event_write(self, text: str, truncate: bool) -> None:
        """A write to ``set_event``; O_TRUNC (``>``) first disables every event.

        Each whitespace-separated token is ``[!][sys:]event`` with ``*`` globs
        (ftrace_set_clr_event); no match → EINVAL.
        """
        with self.lock:
            if truncate:
                self.set_system_enabled(None, False)
            for token in text.split():
                self._set_clr_event(token)

    def _set_clr_event(self, token: str) -> None:
        on = not token.startswith("!")
        token = token.lstrip("!")
        if ":" in token:
            sys_glob, ev_glob = token.split(":", 1)
        else:
            sys_glob, ev_glob = "", token
        sys_glob = sys_glob or "*"
        ev_glob = ev_glob or "*"
        hits = [f for (s, n), f in self.files.items()
                if fnmatch.fnmatchcase(s, sys_glob) and fnmatch.fnmatchcase(n, ev_glob)]
        if not hits:
            raise _err(errno.EINVAL)
        for f in hits:
            f.set_enabled(on)

    # -- set_event_pid / set_event_notrace_pid
    def ignores_task(self, task: Any) -> bool:
        """trace_ignore_this_task: not in a pid list that exists, or in the notrace list."""
        pids, no_pids = self.event_pids, self.event_notrace_pids
        return ((pids is not None and task.pid not in pids)
                or (no_pids is not None and task.pid in no_pids))

    def event_pids_text(self, notrace: bool = False) -> str:
        """The file's text: one pid a line, ascending (trace_pid_show)."""
        pids = self.event_notrace_pids if notrace else self.event_pids
        return "".join(f"{pid}\n" for pid in sorted(pids or ()))

    def add_event_pids(self, pids: Iterable[int], notrace: bool = False) -> None:
        """A write (trace_pid_write): the list becomes the old pids plus ``pids``; a write that
        leaves it without any pid removes the list (tracing every task again)."""
        old = self.event_notrace_pids if notrace else self.event_pids
        new = set(old or ()) | set(pids)
        self._set_pid_list(new or None, notrace)

    def clear_event_pids(self, notrace: bool = False) -> None:
        """Opening the file with O_TRUNC (ftrace_clear_event_pids)."""
        self._set_pid_list(None, notrace)

    def _set_pid_list(self, pids: set[int] | None, notrace: bool) -> None:
        if notrace:
            self.event_notrace_pids = pids
        else:
            self.event_pids = pids
        filtered = self.event_pids is not None or self.event_notrace_pids is not None
        if filtered != self.pid_filtered:
            self.pid_filtered = filtered
            for f in self.files.values():
                self.tracing.update_event(f.event)

    def _task_forked(self, parent: Any, child: Any) -> None:
        """sched_process_fork with event-fork: a child of a listed task is listed too."""
        for pids in (self.event_pids, self.event_notrace_pids):
            if pids is not None and parent.pid in pids:
                pids.add(child.pid)

    def _task_freed(self, task: Any) -> None:
        """sched_process_free with event-fork: the pid leaves both lists."""
        for pids in (self.event_pids, self.event_notrace_pids):
            if pids is not None:
                pids.discard(task.pid)

    def _follow_fork(self, on: bool) -> None:
        """The event-fork option (trace_event_follow_fork): hook task creation and exit."""
        machine = getattr(self.tracing.kernel, "machine", None)
        if machine is None or not hasattr(machine, "fork_hooks"):
            return
        for hooks, hook in ((machine.fork_hooks, self._task_forked),
                            (machine.exit_hooks, self._task_freed)):
            if on and hook not in hooks:
                hooks.append(hook)
            elif not on and hook in hooks:
                hooks.remove(hook)

    # -- control files
    def set_tracing_on(self, on: bool) -> None:
        self.tracing_on = on

    def clock_text(self) -> str:
        return " ".join(f"[{c}]" if c == self.clock_name else c for c in CLOCK_NAMES) + "\n"

    def set_clock(self, name: str) -> None:
        """Select a trace clock; the buffers are reset as the kernel does (tracing_set_clock)."""
        name = name.strip()
        if name not in CLOCK_NAMES:
            raise _err(errno.EINVAL)
        self.clock = self.tracing.clock_reader(name)
        self.clock_name = name
        self.buffer.reset()

    def now(self) -> int:
        return self.clock()

    def buffer_size_text(self, cpu: int | None = None) -> str:
        """``buffer_size_kb`` (top: ``X`` when per-CPU sizes differ)."""
        if cpu is not None:
            return f"{self.buffer.size_kb(cpu)}\n"
        sizes = {self.buffer.size_kb(c) for c in range(self.tracing.ncpus)}
        return f"{sizes.pop()}\n" if len(sizes) == 1 else "X\n"

    def buffer_total_size_text(self) -> str:
        return f"{sum(self.buffer.size_kb(c) for c in range(self.tracing.ncpus))}\n"

    def set_buffer_size_kb(self, kb: int, cpu: int | None = None) -> None:
        if kb <= 0:             # tracing_entries_write: 0 is rejected
            raise _err(errno.EINVAL)
        self.buffer.resize(kb, cpu)

    def options_text(self) -> str:
        return "".join(("" if on else "no") + name + "\n" for name, on in self.options.items())

    def set_option(self, name: str, on: bool) -> None:
        """``trace_options`` / ``options/<name>``; unknown names → EINVAL."""
        if name not in self.options:
            raise _err(errno.EINVAL)
        self.options[name] = on
        if name == "overwrite":
            self.buffer.set_overwrite(on)
        elif name == "record-cmd":
            self.record_cmd = on
        elif name == "record-tgid":
            self.record_tgid = on
        elif name == "event-fork":
            self._follow_fork(on)
        elif name == "hash-ptr" and self is self.tracing.top:
            self.tracing.symbols.hash_raw = not on      # %p prints the raw address

    def clear(self, cpu: int | None = None) -> None:
        """``echo > trace`` (all CPUs) or ``echo > per_cpu/cpuN/trace``."""
        self.buffer.reset(cpu)

    def trace_marker_write(self, text: str | bytes) -> int:
        """``trace_marker``: a ftrace:print entry ``tracing_mark_write: <text>``; returns the count.

        The kernel appends a newline when the text does not end with one; writes while the
        buffer is off fail with EBADF, with the ``markers`` option off with EINVAL.
        """
        raw = text.encode() if isinstance(text, str) else bytes(text)
        if not self.options["markers"]:
            raise _err(errno.EINVAL)
        if not self.recording:
            raise _err(errno.EBADF)
        msg = raw[:4096]
        if not msg.endswith(b"\n"):
            msg += b"\n"
        ev = self.tracing.print_event
        cpu = self.tracing.this_cpu()
        flags, depth = trace_ctx(cpu)
        ip = self.tracing.symbols.address_of("tracing_mark_write") or 0
        record = ev.build((ip, msg), flags, depth, cpu.task.pid)
        with self.buffer.lock:
            if self.buffer.cpus[cpu.id].write(self.clock(), record) is not None:
                if self.record_cmd:
                    self.tracing.cmdlines.record(cpu.task.pid, cpu.task.comm)
                if self.record_tgid:
                    self.tracing.tgids[cpu.task.pid] = cpu.task.tgid
                self.buffer.notify()
        return len(raw)

    # -- error_log
    def log_error(self, location: str, command: str, message: str, pos: int) -> None:
        """tracing_log_err: ``[ts] location: error: message`` / ``  Command: ...`` / caret."""
        ns = self.tracing.clock_reader("local")()
        entry = (f"[{ns // 1_000_000_000:5d}.{ns % 1_000_000_000 // 1000:06d}] {location}: "
                 f"error: {message}\n  Command: {command}\n{' ' * (11 + pos)}^\n")
        self.add_error_entry(entry)

    def add_error_entry(self, entry: str) -> None:
        """Append a ready-made entry (e.g. ``FilterError.error_log_entry``); last 8 kept."""
        self.errors.append(entry)
        del self.errors[:-ERROR_LOG_MAX]

    def error_timestamp(self) -> str:
        ns = self.tracing.clock_reader("local")()
        return f"{ns // 1_000_000_000:5d}.{ns % 1_000_000_000 // 1000:06d}"

    def error_log_text(self) -> str:
        return "".join(self.errors)

    def clear_error_log(self) -> None:
        self.errors.clear()


class Tracing:
    """All of tracing for one modelled kernel."""

    def __init__(self, kernel: Any) -> None:
        from kernel_model.events import all_events
        self.kernel = kernel
        machine = kernel.machine
        self.ncpus = getattr(kernel, "ncpus", None) or len(machine.cpus)
        self.this_cpu: Callable[[], Any] = machine.this_cpu
        seed = getattr(kernel, "seed", 0)
        self.symbols = Symbols(kernel, key=hashlib.sha256(f"ptr_key:{seed}".encode()).digest()[:32])
        self.cmdlines = SavedCmdlines()
        self.tgids: dict[int, int] = {}          # pid → tgid, recorded with record-tgid
        self.events: dict[tuple[str, str], TraceEvent] = {}
        self.by_id: dict[int, TraceEvent] = {}
        self._next_id = FIRST_DYNAMIC_ID
        for ev in all_events():
            self.register_event(ev)
        self.print_event = self.events[("ftrace", "print")]
        self.top = TraceArray(self, "")
        self.instances: dict[str, TraceArray] = {}
        from kernel_model.trace_kprobe import KprobeEvents
        self.kprobes = KprobeEvents(self)

    def clock_reader(self, name: str) -> Callable[[], int]:
        return self.kernel.clock.reader(name)

    # -- registry
    def register_event(self, ev: TraceEvent) -> TraceEvent:
        """Add an event (boot-time tracepoints, then kprobe events); assigns its ID."""
        key = (ev.system, ev.name)
        if key in self.events:
            raise _err(errno.EEXIST)
        if ev.id == 0:
            ev.id = self._next_id
            self._next_id += 1
        ev.this_cpu = self.this_cpu
        self.events[key] = ev
        self.by_id[ev.id] = ev
        for ta in self.arrays():
            ta.files[key] = EventFile(ta, ev)
        return ev

    def unregister_event(self, ev: TraceEvent) -> None:
        """Remove a dynamic event; EBUSY while any instance has it enabled or filtered by triggers."""
        key = (ev.system, ev.name)
        if any(ta.files[key].active for ta in self.arrays()):
            raise _err(errno.EBUSY)
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
        ev.sinks = tuple(f.emitter() for f in files if f.active)
        ev.enabled = bool(ev.sinks)
        hook = getattr(ev, "on_enabled_changed", None)
        if hook is not None:
            hook()

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
            raise _err(errno.ENOENT) from None

    def instance_names(self) -> list[str]:
        return sorted(self.instances)

    def create_instance(self, name: str) -> TraceArray:
        if name in self.instances:
            raise _err(errno.EEXIST)
        ta = TraceArray(self, name)
        self.instances[name] = ta
        return ta

    def remove_instance(self, name: str) -> None:
        ta = self.instance(name) if name else None
        if ta is None:
            raise _err(errno.ENOENT)
        if ta.refs > 0:
            raise _err(errno.EBUSY)
        from kernel_model.triggers import clear_triggers
        for f in ta.files.values():
            clear_triggers(f)
            f.enabled = False
        ta._follow_fork(False)
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
        return "".join(f"{pid} {tgid}\n" for pid, tgid in sorted(self.tgids.items()))

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
