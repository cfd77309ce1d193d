"""``events/``: per-event and per-subsystem control files of one trace array.

Layout (eventfs, all directories 0755 with link count 1)::

    events/{enable, header_page, header_event}
    events/<sys>/{enable, filter}
    events/<sys>/<event>/{enable, filter, format, id, trigger}
    events/ftrace/<event>/{format, id}        (ftrace's internal entries: not enabled by users)

The directory listing is computed from the tracing registry at each lookup, so kprobe events
appear and disappear with ``kprobe_events`` writes; node objects are kept per event so an open
file stays attached to its event.

Filters: text is applied per ``write()`` as the kernel does (apply_event_filter: a bad filter
fails the write with the parser's errno, leaves no active filter, and reads back with the error;
the error goes to ``error_log``). A write starting with a BPF object's magic (ELF ``\\x7fELF`` or
the 2013 RFC image ``bpf\\0``) is collected across writes and handed, whole, at close to the
tree's BPF loader hook (``TreeContext.bpf_loader``).
"""
from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tracesim.tracefs.caller import caller_process_comm
from tracesim.tracefs.errors import FsError
from tracesim.tracefs.handles import Handle, seq_opener, to_text
from tracesim.tracefs.nodes import MODE_EVENTS_DIR, MODE_RO, MODE_RW, Dir, File, Node
from tracesim.tracefs.parse import kstrtoul_from_user, strstrip

if TYPE_CHECKING:
    from tracesim.tracefs.context import TreeContext

PAGE_SIZE = 4096
BPF_MAGICS = (b"\x7fELF", b"bpf\0")
BPF_OBJECT_MAX = 1 << 20
INTERNAL_SYSTEM = "ftrace"

SUBSYSTEM_FILTER_DEFAULT = (
    "### global filter ###\n"
    "# Use this to set filters for multiple events.\n"
    "# Only events with the given fields will be affected.\n"
    "# If no events are modified, an error message will be displayed here\n"
)


@dataclass
class BpfTarget:
    """Where a BPF object written to a ``filter`` file goes: the trace array and event files.

    ``system``/``event`` name the file written (``event`` is None for a subsystem filter, whose
    ``files`` are every event of the subsystem).
    """

    tracing: Any
    array: Any
    system: str
    event: str | None
    files: list


def _enable_value(text: str) -> bool:
    """``enable`` files take 0 or 1 (kstrtoul base 10); anything else is EINVAL."""
    value = kstrtoul_from_user(text)
    if value not in (0, 1):
        raise FsError(errno.EINVAL)
    return bool(value)


class FilterHandle(Handle):
    """An open ``filter`` file: text per write, BPF objects collected and loaded at flush."""

    def __init__(self, flags: int, show: Callable[[], str], apply_text: Callable[[str], None],
                 apply_bpf: Callable[[bytes], None]) -> None:
        super().__init__(flags)
        self._show = show
        self._apply_text = apply_text
        self._apply_bpf = apply_bpf
        self._object: bytearray | None = None
        self._text = b""

    def read(self, size: int, offset: int) -> bytes:
        if offset == 0:
            self._text = self._show().encode("utf-8", "surrogateescape")
        return self._text[offset:offset + size]

    def write(self, data: bytes, offset: int) -> int:
        if self._object is not None or data.startswith(BPF_MAGICS):
            if self._object is None:
                self._object = bytearray()
            if len(self._object) + len(data) > BPF_OBJECT_MAX:
                self._object = None
                raise FsError(errno.EFBIG)
            self._object += data
            return len(data)
        if len(data) >= PAGE_SIZE:             # event_filter_write: cnt >= PAGE_SIZE
            raise FsError(errno.EINVAL)
        self._apply_text(to_text(data))
        return len(data)

    def flush(self) -> None:
        obj, self._object = self._object, None
        if obj is not None:
            self._apply_bpf(bytes(obj))


class EventsDir:
    """Builds and caches the ``events/`` nodes of one trace array."""

    def __init__(self, ctx: TreeContext, array: Any, counted: Callable[[Callable], Callable]):
        self.ctx = ctx
        self.array = array
        self.counted = counted        # wraps openers so open files hold the array (rmdir EBUSY)
        self._systems: dict[str, Dir] = {}
        self._events: dict[tuple[str, str, int], Dir] = {}
        self.root = Dir(MODE_EVENTS_DIR, self._top_entries, eventfs=True)
        self._top_files: dict[str, Node] = {
            "enable": self._seq(MODE_RW, lambda: self.array.system_enable_text(None),
                                lambda t: self._set_system(None, t)),
            "header_page": self._seq(MODE_RO, self._header_page_text),
            "header_event": self._seq(MODE_RO, self.ctx.header_event_text),
        }

    def _header_page_text(self) -> str:
        """This array's buffer's page header (its sub-buffer size)."""
        from tracesim.kernel_model.trace.ring_buffer import page_header_text
        return page_header_text(self.array.buffer.subbuf_data_size)

    def _file(self, mode: int, opener: Callable[[int], Handle]) -> File:
        return File(mode, self.counted(opener))

    def _seq(self, mode: int, show: Callable[[], str],
             store: Callable[[str], Any] | None = None) -> File:
        return self._file(mode, seq_opener(show, store, None, self.ctx.lock))

    # -- directories ---------------------------------------------------------------------------
    def _top_entries(self) -> dict[str, Node]:
        entries: dict[str, Node] = dict(self._top_files)
        tracing = self.ctx.tracing
        systems = set(tracing.systems()) | {INTERNAL_SYSTEM}
        for system in sorted(systems):
            if system == INTERNAL_SYSTEM and not tracing.events_of(system):
                continue
            node = self._systems.get(system)
            if node is None:
                node = Dir(MODE_EVENTS_DIR, lambda s=system: self._system_entries(s), eventfs=True)
                self._systems[system] = node
            entries[system] = node
        return entries

    def _system_entries(self, system: str) -> dict[str, Node]:
        tracing = self.ctx.tracing
        entries: dict[str, Node] = {}
        if system != INTERNAL_SYSTEM:
            entries["enable"] = self._seq(MODE_RW, lambda: self.array.system_enable_text(system),
                                          lambda t: self._set_system(system, t))
            entries["filter"] = self._file(MODE_RW, lambda f: FilterHandle(
                f, lambda: SUBSYSTEM_FILTER_DEFAULT,
                lambda t: self._apply_subsystem_filter(system, t),
                lambda obj: self._load_bpf(system, None, obj)))
        for name in tracing.events_of(system):
            event = tracing.event(system, name)
            key = (system, name, event.id)
            node = self._events.get(key)
            if node is None:
                node = self._event_dir(system, name, event)
                self._events[key] = node
            entries[name] = node
        return entries

    def _event_dir(self, system: str, name: str, event: Any) -> Dir:
        files: dict[str, Node] = {
            "format": self._file(MODE_RO, not_for_host_perf(
                seq_opener(event.format_text, None, None, self.ctx.lock))),
            "id": self._seq(MODE_RO, lambda: f"{event.id}\n"),
        }
        if system != INTERNAL_SYSTEM:
            files["enable"] = self._seq(
                MODE_RW, lambda: self._event_file(system, name).enable_text(),
                lambda t: self._event_file(system, name).set_enabled(_enable_value(t)))
            files["filter"] = self._file(MODE_RW, lambda f: FilterHandle(
                f, lambda: self._filter_read(system, name),
                lambda t: self._apply_event_filter(system, name, t),
                lambda obj: self._load_bpf(system, name, obj)))
        if system != INTERNAL_SYSTEM or name == "print":
            # event_callback: of ftrace's own events only print takes triggers (trace_marker
            # writes run them)
            files["trigger"] = self._file(MODE_RW, lambda f: self._open_trigger(f, system, name))
            files["hist"] = self._seq(MODE_RO, lambda: self._hist_text(system, name))
        return Dir(MODE_EVENTS_DIR, files, eventfs=True)

    # -- state -------------------------------------------------------------------------------
    def _event_file(self, system: str, name: str) -> Any:
        try:
            return self.array.file(system, name)
        except OSError:
            raise FsError(errno.ENODEV) from None     # the event went away under an open file

    def _set_system(self, system: str | None, text: str) -> None:
        self.array.set_system_enabled(system, _enable_value(text))

    # -- filters -------------------------------------------------------------------------------
    def _filter_read(self, system: str, name: str) -> str:
        file = self._event_file(system, name)
        text = file.filter_text
        text = text if text.endswith("\n") else text + "\n"
        describe = getattr(file.prog, "describe", None)    # a BPF filter: its one-line summary,
        if describe is not None:                            # then the predicate if one is set
            return describe() + "\n" + (text if file.filter is not None else "")
        return text

    def _compile_options(self) -> dict[str, Any]:
        return self.ctx.filter_compile_options()

    def _apply_event_filter(self, system: str, name: str, text: str) -> None:
        from tracesim.filters.predicate import FilterError, compile_filter, is_clear_request
        file = self._event_file(system, name)
        with self.ctx.lock:
            if is_clear_request(text):
                file.set_filter(None, "none")
                self.ctx.unload_bpf(file)
                return
            try:
                compiled = compile_filter(text, file.event.all_fields, **self._compile_options())
            except FilterError as err:
                file.set_filter(None, err.filter_file_text())
                self.array.add_error_entry(err.error_log_entry(self.array.error_timestamp()))
                raise FsError(err.errno) from None
            file.set_filter(compiled, compiled.text)

    def _apply_subsystem_filter(self, system: str, text: str) -> None:
        from tracesim.filters.predicate import compile_subsystem_filter, is_clear_request
        tracing = self.ctx.tracing
        names = tracing.events_of(system)
        if not names:
            raise FsError(errno.ENODEV)
        files = {n: self._event_file(system, n) for n in names}
        with self.ctx.lock:
            if is_clear_request(text):
                for file in files.values():
                    file.set_filter(None, "none")
                    self.ctx.unload_bpf(file)
                return
            results = compile_subsystem_filter(
                text, {n: f.event.all_fields for n, f in files.items()},
                **self._compile_options())
            # process_system_preds: every event gets its own result (an event lacking a field
            # gets the error text and no active filter, and an error_log entry), the write
            # succeeds, and the subsystem file keeps its default message (create_system_filter
            # drops the system filter's string once the events are processed)
            stamp = self.array.error_timestamp()
            for n, result in results.items():
                if hasattr(result, "match"):
                    files[n].set_filter(result, result.text)
                else:
                    files[n].set_filter(None, result.filter_file_text())
                    self.array.add_error_entry(result.error_log_entry(stamp))

    def _load_bpf(self, system: str, name: str | None, obj: bytes) -> None:
        tracing = self.ctx.tracing
        names = [name] if name is not None else tracing.events_of(system)
        target = BpfTarget(tracing, self.array, system, name,
                           [self._event_file(system, n) for n in names])
        self.ctx.load_bpf(target, obj)

    # -- triggers ------------------------------------------------------------------------------
    def _open_trigger(self, flags: int, system: str, name: str) -> Handle:
        from tracesim.kernel_model.trace import triggers
        file = self._event_file(system, name)

        def store(text: str) -> None:
            if len(text) >= PAGE_SIZE:
                raise FsError(errno.EINVAL)
            triggers.set_trigger(file, strstrip(text))

        # O_TRUNC clears only hist triggers (hist_unreg_all)
        return seq_opener(lambda: triggers.trigger_text(file), store,
                          lambda: triggers.truncate_hist(file), self.ctx.lock)(flags)

    def _hist_text(self, system: str, name: str) -> str:
        from tracesim.kernel_model.trace.hist import hist_text
        return hist_text(self._event_file(system, name))


# perf counts a tracepoint with the host kernel's perf_event_open(PERF_TYPE_TRACEPOINT, config =
# the event's id), and the host has no model events: the id perf reads here (from ``format`` or
# ``id``) would make it count whatever host event has that number, silently.  A perf process is
# refused instead (perf says "Operation not supported"); ``tracesim perf stat`` counts through
# the model.  Processes of other names (cat, trace-cmd) read these files as usual.
HOST_PERF_COMMS = frozenset({"perf", "perf-exec"})


def not_for_host_perf(opener: Callable[[int], Handle]) -> Callable[[int], Handle]:
    def open_(flags: int) -> Handle:
        if caller_process_comm() in HOST_PERF_COMMS:
            raise FsError(errno.EOPNOTSUPP)
        return opener(flags)
    return open_
