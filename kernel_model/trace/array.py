"""A trace array: the top level (name "") or one instance under ``instances/``.

Its ring buffer, its event files (trace_emit.EventFile), its pid lists, clock, options and
control files, and its error_log. What tracefs calls on it is listed in trace.py.
"""
from __future__ import annotations

import errno
import fnmatch
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from tracesim.kernel_model.trace.emit import EventFile, write_marker
from tracesim.kernel_model.trace.errlog import ErrorLog, os_error
from tracesim.kernel_model.trace.functions import TRACER_OPTIONS, function_tracing
from tracesim.kernel_model.trace.printk import KERN_DEBUG
from tracesim.kernel_model.trace.ring_buffer import RingBuffer

if TYPE_CHECKING:
    from tracesim.kernel_model.trace.tracing import Tracing

CLOCK_NAMES = ("local", "global", "counter", "uptime", "perf", "mono", "mono_raw", "boot",
               "tai", "x86-tsc")
CLOCKS_IN_NS = frozenset({"local", "global", "perf", "mono", "mono_raw", "boot", "tai"})


# trace_options of 6.18 in the kernel's order (TRACE_FLAGS in kernel/trace/trace.h), with the top
# array's boot defaults, for the features the model has: function-trace/function-fork come with
# CONFIG_FUNCTION_TRACER as on the reference kernel, display-graph would come with function_graph
# (not modelled), the blk and function tracers' own options with those tracers (not modelled).
TRACE_OPTIONS: tuple[tuple[str, bool], ...] = (
    ("print-parent", True), ("sym-offset", False), ("sym-addr", False), ("verbose", False),
    ("raw", False), ("hex", False), ("bin", False), ("block", False), ("fields", False),
    ("trace_printk", True), ("annotate", True), ("userstacktrace", False),
    ("sym-userobj", False), ("printk-msg-only", False), ("context-info", True),
    ("latency-format", False), ("record-cmd", True), ("record-tgid", False),
    ("overwrite", True), ("disable_on_free", False), ("irq-info", True), ("markers", True),
    ("event-fork", False), ("trace_printk_dest", True), ("copy_trace_marker", True),
    ("pause-on-trace", False), ("hash-ptr", True),
    ("function-trace", True), ("function-fork", False), ("display-graph", False),
    ("stacktrace", False),
)
CORE_OPTIONS = frozenset(name for name, _ in TRACE_OPTIONS)
# ZEROED_TRACE_FLAGS: off in a new instance whatever the top array has
ZEROED_IN_INSTANCES = frozenset({"event-fork", "function-fork", "trace_printk_dest", "copy_trace_marker"})
# The current tracer's own options (tracer_flags), listed after the core ones in trace_options.
# nop's two exist to test the option API (kernel/trace/trace_nop.c nop_set_flag): a write to
# either logs a KERN_DEBUG line; test_nop_refuse then refuses the change with EINVAL.
NOP_TRACER_OPTIONS: tuple[tuple[str, bool], ...] = (("test_nop_accept", False), ("test_nop_refuse", False))



# ftrace's own entries (print, kernel_stack) carry TRACE_EVENT_FL_IGNORE_ENABLE: no enable file,
# and events/enable, set_event and the system enable files pass over them.
IGNORE_ENABLE_SYSTEM = "ftrace"



# The scheduler events the kernel hooks with pid-list probes, and the pid fields they read.
_PID_PROBES: dict[tuple[str, str], str] = {
    ("sched", "sched_switch"): "switch",
    ("sched", "sched_wakeup"): "wakeup",
    ("sched", "sched_wakeup_new"): "wakeup",
    ("sched", "sched_waking"): "wakeup",
}
_PID_FIELDS = {"switch": ("prev_pid", "next_pid"), "wakeup": ("pid",)}


_PID_OFFSETS: dict[tuple[str, str], list[int]] = {}    # the formats are fixed: found once


def _pid_offsets(event: Any, rule: str) -> list[int]:
    """Offsets of the pid fields ``rule`` reads in ``event``'s record."""
    key = (event.system, event.name)
    offsets = _PID_OFFSETS.get(key)
    if offsets is None:
        by_name = {f.name: f.offset for f in event.fields}
        offsets = _PID_OFFSETS[key] = [by_name[name] for name in _PID_FIELDS[rule]]
    return offsets


class TraceArray:
    """A trace instance: the top level (name "") or one under ``instances/``."""

    def __init__(self, tracing: Tracing, name: str) -> None:
        self.tracing = tracing
        self.name = name
        self.refs = 0
        self.buffer = RingBuffer(tracing.ncpus)
        self.tracing_on = True
        self.options = dict(TRACE_OPTIONS)
        if name:
            self.options.update((opt, False) for opt in ZEROED_IN_INSTANCES)
        self.options.update(NOP_TRACER_OPTIONS)
        for tracer_options in TRACER_OPTIONS.values():   # every tracer's flags have files
            self.options.update(tracer_options)
        self.record_cmd = True
        self.record_tgid = False
        self.clock_name = "local"
        self.clock: Callable[[], int] = tracing.clock_reader("local")
        self.error_log = ErrorLog(lambda: tracing.clock_reader("local")())
        # tr->events: an instance made now gets every event in registration order (it adds them
        # walking ftrace_events, newest first, each at the list head); the top array's order,
        # where later dynamic events go to the head, is kept by Tracing.register_event.
        self.files: dict[tuple[str, str], EventFile] = {
            key: EventFile(self, ev)
            for key, ev in sorted(tracing.events.items(), key=lambda item: item[1].id)}
        self.lock = threading.RLock()
        # set_event_pid / set_event_notrace_pid (tr->filtered_pids, filtered_no_pids): None
        # until pids are written; a list emptied by exits stays, and then matches no task
        self.event_pids: set[int] | None = None
        self.event_notrace_pids: set[int] | None = None
        self.pid_filtered = False             # EVENT_FILE_FL_PID_FILTER on the array's files
        self.snapshot_buffer: RingBuffer | None = None     # tr->max_buffer while allocated
        self.max_latency_ns = 0                            # tracing_max_latency
        self.cond_snapshot: Any = None        # the hist trigger whose .snapshot() owns it
        self.cpumask = (1 << tracing.ncpus) - 1             # tracing_cpumask

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
            raise os_error(errno.ENOENT) from None

    def system_enable_text(self, system: str | None = None) -> str:
        """``events/<sys>/enable`` or ``events/enable``: 0, 1, X (mixed), ? (no events)."""
        states = {f.enabled for (s, _), f in self.files.items()
                  if system in (None, s) and s != IGNORE_ENABLE_SYSTEM}
        if not states:
            return "?\n"
        return "X\n" if len(states) > 1 else ("1\n" if True in states else "0\n")

    def set_system_enabled(self, system: str | None, on: bool) -> None:
        with self.lock:
            for (s, _), f in sorted(self.files.items()):
                if system in (None, s) and s != IGNORE_ENABLE_SYSTEM:
                    f.set_enabled(on)

    def set_event_text(self) -> str:
        """``set_event``: enabled events, ``system:event`` per line, in tr->events order (s_next
        walks that list: boot events in registration order, later dynamic events first)."""
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
        hits = [f for (s, n), f in self.files.items() if s != IGNORE_ENABLE_SYSTEM
                and fnmatch.fnmatchcase(s, sys_glob) and fnmatch.fnmatchcase(n, ev_glob)]
        if not hits:
            raise os_error(errno.EINVAL)
        for f in hits:
            f.set_enabled(on)

    # -- set_event_pid / set_event_notrace_pid
    def ignores_task(self, task: Any) -> bool:
        """trace_ignore_this_task: not in a pid list that exists, or in the notrace list."""
        return self._ignores_pid(task.pid)

    def ignores_event(self, event: Any, task: Any, record: bytes | None) -> bool:
        """Step 3 of ``emit`` for one occurrence while pid lists exist: the current task's
        verdict, except on the scheduler events whose pre-probes decide by the tasks they name
        (event_filter_pid_sched_switch_probe_pre / _wakeup_probe_pre): a sched_switch is kept
        when either prev or next is traced (dropped by the notrace list only when both are in
        it), and a wakeup the current task would drop is kept when the woken task is traced."""
        ignored = self.ignores_task(task)
        rule = _PID_PROBES.get((event.system, event.name)) if record is not None else None
        if rule is None:
            return ignored
        pids = [int.from_bytes(record[off:off + 4], "little", signed=True)
                for off in _pid_offsets(event, rule)]
        if rule == "switch":
            prev, nxt = pids
            listed, unlisted = self.event_pids, self.event_notrace_pids
            if unlisted is not None and prev in unlisted and nxt in unlisted:
                return True
            return listed is not None and prev not in listed and nxt not in listed
        if not ignored:
            return False
        return self._ignores_pid(pids[0])

    def _ignores_pid(self, pid: int) -> bool:
        pids, no_pids = self.event_pids, self.event_notrace_pids
        return (pids is not None and pid not in pids) or (no_pids is not None and pid in no_pids)

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
            raise os_error(errno.EINVAL)
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
            raise os_error(errno.EINVAL)
        self.buffer.resize(kb, cpu)

    def trace_options_names(self) -> list[str]:
        """What ``trace_options`` lists and takes: the core flags, then the current tracer's
        own (another tracer's flags only have their ``options/`` file)."""
        tracer = getattr(getattr(self, "function_tracing", None), "tracer", "nop")
        own = dict(TRACER_OPTIONS.get(tracer, NOP_TRACER_OPTIONS))
        return [n for n in self.options if n in CORE_OPTIONS] + list(own)

    def options_text(self) -> str:
        """``trace_options``."""
        return "".join(("" if self.options[n] else "no") + n + "\n"
                       for n in self.trace_options_names())

    def set_option(self, name: str, on: bool) -> None:
        """``trace_options`` / ``options/<name>``; unknown names → EINVAL."""
        if name not in self.options:
            raise os_error(errno.EINVAL)
        if name in ("test_nop_accept", "test_nop_refuse"):
            if self.options[name] == on:          # the option API calls set_flag on changes only
                return
            verdict = name.rsplit("_", 1)[1]
            self.tracing.kernel.printk.printk(
                f"nop_{name.replace('_nop', '')} flag set to {int(on)}: we {verdict}. "
                "Now cat trace_options to see the result", KERN_DEBUG)
            if verdict == "refuse":
                raise os_error(errno.EINVAL)
        elif name == "trace_printk_dest":
            self._set_printk_dest(on)
            return
        self.options[name] = on
        if name == "overwrite":
            self.buffer.set_overwrite(on)
        elif name == "record-cmd":
            self.record_cmd = on
        elif name == "record-tgid":
            self.record_tgid = on
        elif name == "event-fork":
            self._follow_fork(on)
        elif name == "function-fork":
            function_tracing(self).follow_fork(on)
        elif name == "hash-ptr" and self is self.tracing.top:
            self.tracing.symbols.hash_raw = not on      # %p prints the raw address

    def _set_printk_dest(self, on: bool) -> None:
        """trace_printk output goes to exactly one array (update_printk_trace): setting the
        flag moves it here, clearing it where it is sends it back to the top array, which
        cannot clear it itself."""
        top = self.tracing.top
        if on:
            for ta in self.tracing.arrays():
                ta.options["trace_printk_dest"] = ta is self
        elif self.options["trace_printk_dest"]:
            if self is top:
                raise os_error(errno.EINVAL)
            self.options["trace_printk_dest"] = False
            top.options["trace_printk_dest"] = True

    def clear(self, cpu: int | None = None) -> None:
        """``echo > trace`` (all CPUs) or ``echo > per_cpu/cpuN/trace``."""
        self.buffer.reset(cpu)

    def trace_marker_write(self, text: str | bytes) -> int:
        """``trace_marker``: see ``trace_emit.write_marker``. The top array's marker writes
        into every array with ``copy_trace_marker`` set (the marker_copies list, newest first,
        the top array last since it joined at boot); ENODEV when none has it."""
        tracing = self.tracing
        if self is not tracing.top:
            return write_marker(self, text)
        copies = [ta for ta in reversed(tracing.arrays()) if ta.options["copy_trace_marker"]]
        if not copies:
            raise os_error(errno.ENODEV)
        for ta in copies:
            written = write_marker(ta, text)
        return written

    def alloc_snapshot(self) -> None:
        """tracing_alloc_snapshot_instance: a buffer the size of the live one, empty."""
        if self.snapshot_buffer is None:
            snap = RingBuffer(self.tracing.ncpus, overwrite=self.buffer.overwrite)
            for mine, live in zip(snap.cpus, self.buffer.cpus, strict=True):
                mine.nr_pages = live.nr_pages       # resize_buffer_duplicate_size
                mine.record_disabled = live.record_disabled
            self.snapshot_buffer = snap

    def set_cpumask(self, mask: int) -> None:
        """tracing_set_cpumask: recording stops on the CPUs that leave the mask and starts
        again on those that join it, in the live buffer and the snapshot buffer alike (a
        snapshot swaps them, so both must agree)."""
        mask &= (1 << self.tracing.ncpus) - 1
        for buf in (self.buffer, self.snapshot_buffer):
            if buf is None:
                continue
            with buf.exclusive:
                for cb in buf.cpus:
                    cb.record_disabled = not mask >> cb.cpu & 1
        self.cpumask = mask

    def free_snapshot(self) -> None:
        self.snapshot_buffer = None

    def take_snapshot(self, cpu: int | None = None) -> None:
        """update_max_tr (or update_max_tr_single for ``cpu``): the live buffer and the
        snapshot buffer change places. Unallocated, the kernel writes two warning lines into
        the live buffer and stops tracing (tracing_snapshot_instance_cond)."""
        if self.snapshot_buffer is None:
            for text in ("*** SNAPSHOT NOT ALLOCATED ***\n", "*** stopping trace here!   ***\n"):
                try:                    # trace_array_puts: nothing to report if it fails
                    write_marker(self, text)
                except OSError:
                    pass
            self.set_tracing_on(False)
            return
        self.buffer.swap_with(self.snapshot_buffer, cpu)

    def snapshot_write(self, value: int, cpu: int | None = None) -> None:
        """tracing_snapshot_write: 0 frees (EINVAL per CPU), 1 allocates and swaps, any
        other number clears the snapshot buffer (or one CPU of it). A hist trigger's
        conditional snapshot holds the buffer: EBUSY."""
        if self.cond_snapshot is not None:
            raise os_error(errno.EBUSY)
        if value == 0:
            if cpu is not None:
                raise os_error(errno.EINVAL)
            self.free_snapshot()
        elif value == 1:
            self.alloc_snapshot()
            self.take_snapshot(cpu)
        elif self.snapshot_buffer is not None:
            self.snapshot_buffer.reset(cpu)

    def snapshot_view(self) -> SnapshotView:
        return SnapshotView(self)

    # -- error_log
    def log_error(self, location: str, command: str, message: str, pos: int) -> None:
        """tracing_log_err: ``[ts] location: error: message`` / ``  Command: ...`` / caret."""
        self.error_log.log(location, command, message, pos)

    def add_error_entry(self, entry: str) -> None:
        """Append a ready-made entry (e.g. ``FilterError.error_log_entry``); last 8 kept."""
        self.error_log.add(entry)

    def error_timestamp(self) -> str:
        return self.error_log.timestamp()

    def error_log_text(self) -> str:
        return self.error_log.text()

    def clear_error_log(self) -> None:
        self.error_log.clear()


class SnapshotView:
    """The trace array as the ``snapshot`` file reads it: the snapshot buffer in place of the
    live one (an empty buffer when none is allocated); every other attribute is the array's."""

    def __init__(self, array: TraceArray) -> None:
        self._array = array
        self.buffer = array.snapshot_buffer or RingBuffer(array.tracing.ncpus, 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._array, name)
