"""The files every trace array has: the top level and each ``instances/<name>``.

Each file maps to one operation of the trace array (``kernel_model.trace.array.TraceArray``) with the
kernel's parsing and errno: numbers through kstrtoul (``tracing_on``, ``buffer_size_kb``),
names stripped (``trace_clock``, ``current_tracer``), ``echo > trace`` clears the buffers,
``echo > error_log`` clears the log. Open files of an instance hold a reference on it, so
``rmdir`` fails with EBUSY while any is open.
"""
from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from tracesim.kernel_model.trace.ftrace_commands import run_command
from tracesim.kernel_model.trace.functions import TRACERS, function_tracing
from tracesim.tracefs.errors import FsError, kernel_call
from tracesim.tracefs.events import EventsDir
from tracesim.tracefs.handles import Handle, LazyTextHandle, SeqHandle, seq_opener, truncating
from tracesim.tracefs.lists import EventPidList, FunctionFilter, PidList
from tracesim.tracefs.nodes import MODE_DIR, MODE_MARKER, MODE_RO, MODE_RW, MODE_WO, Dir, File, Node
from tracesim.tracefs.parse import TraceParser, kstrtoul_from_user, strstrip
from tracesim.tracefs.streams import open_trace_pipe, open_trace_pipe_raw

TIMESTAMP_MODE = "[delta] absolute\n"
PAGE_KB = 4                   # a sub-buffer is PAGE_SIZE << order
SUBBUF_ORDER_MAX = 7          # 128 pages: 512 KiB
EVENT_BUF_SIZE = 127          # trace_events.c: the longest set_event word


class InstanceFiles:
    """Builds the node dict of one trace array."""

    def __init__(self, ctx: Any, array: Any) -> None:
        self.ctx = ctx
        self.array = array
        self.buffer_percent = 50
        self.event_pids = EventPidList(array, False, ctx.lock)
        self.event_notrace_pids = EventPidList(array, True, ctx.lock)
        functions = ctx.traceable_functions
        self.functions = function_tracing(array)
        self.ftrace_filter = FunctionFilter(functions, "#### all functions enabled ####\n",
                                            self._filters_changed,
                                            lambda g, c, p: self._command(g, c, p, True),
                                            self.functions.probes_text,
                                            (lambda: self.functions.mods_text(True),
                                             lambda: self.functions.clear_mods(True), True))
        self.ftrace_notrace = FunctionFilter(functions, "#### no functions disabled ####\n",
                                             self._filters_changed,
                                             lambda g, c, p: self._command(g, c, p, False),
                                             mods=(lambda: self.functions.mods_text(False),
                                                   lambda: self.functions.clear_mods(False),
                                                   False))
        self.graph_function = FunctionFilter(functions, "#### all functions enabled ####\n",
                                             self._filters_changed)
        self.graph_notrace = FunctionFilter(functions, "#### no functions disabled ####\n",
                                            self._filters_changed)
        self.ftrace_pids = PidList("no pid\n")
        self.ftrace_notrace_pids = PidList("no pid\n")
        # the tracer reads the pid sets in place (an empty set: every task)
        self.functions.pids = self.ftrace_pids.pids
        self.functions.notrace_pids = self.ftrace_notrace_pids.pids
        self.events = EventsDir(ctx, array, self.counted)

    # -- references ----------------------------------------------------------------------------
    def counted(self, opener: Callable[[int], Handle]) -> Callable[[int], Handle]:
        """Wrap an opener: the open file holds the trace array until released."""
        array = self.array

        def open_counted(flags: int) -> Handle:
            handle = opener(flags)
            array.get()
            handle.on_release(array.put)
            return handle
        return open_counted

    def file(self, mode: int, opener: Callable[[int], Handle]) -> File:
        return File(mode, self.counted(opener))

    def seq(self, mode: int, show: Callable[[], str] | None = None,
            store: Callable[[str], Any] | None = None,
            on_trunc: Callable[[], None] | None = None) -> File:
        return self.file(mode, seq_opener(show, store, on_trunc, self.ctx.lock))

    # -- the files -----------------------------------------------------------------------------
    def nodes(self) -> dict[str, Node]:
        a = self.array
        nodes: dict[str, Node] = {
            "available_tracers": self.seq(MODE_RO, lambda: " ".join(TRACERS) + "\n"),
            "current_tracer": self.seq(MODE_RW, lambda: self.functions.tracer + "\n",
                                       self._set_tracer),
            "tracing_cpumask": self.seq(MODE_RW, self._cpumask_text, self._set_cpumask),
            "trace_options": self.seq(MODE_RW, a.options_text, self._trace_options_write),
            "trace": self.file(MODE_RW, lambda f: self._open_trace(f, None)),
            "trace_pipe": self.file(MODE_RO, lambda f: open_trace_pipe(f, a, None)),
            "buffer_size_kb": self.seq(MODE_RW, a.buffer_size_text,
                                       lambda t: a.set_buffer_size_kb(kstrtoul_from_user(t))),
            "buffer_total_size_kb": self.seq(MODE_RO, a.buffer_total_size_text),
            "free_buffer": self.file(MODE_WO, self._open_free_buffer),
            "trace_marker": self.seq(MODE_MARKER, None, self._marker),
            "trace_marker_raw": self.seq(MODE_MARKER, None, self._marker_raw),
            "trace_clock": self.seq(MODE_RW, a.clock_text, lambda t: a.set_clock(strstrip(t))),
            "tracing_on": self.seq(MODE_RW, lambda: f"{int(bool(a.tracing_on))}\n",
                                   self._set_tracing_on),
            "timestamp_mode": self.seq(MODE_RO, lambda: TIMESTAMP_MODE),
            "buffer_percent": self.seq(MODE_RW, lambda: f"{self.buffer_percent}\n",
                                       self._set_buffer_percent),
            "buffer_subbuf_size_kb": self.seq(MODE_RW, self._subbuf_size_text,
                                              self._set_subbuf_size),
            "options": Dir(MODE_DIR, self._options()),
            "per_cpu": Dir(MODE_DIR, {f"cpu{c}": self._per_cpu(c)
                                      for c in range(self.ctx.ncpus)}),
            "set_event": self.file(MODE_RW, self._open_set_event),
            "set_event_pid": self.file(MODE_RW, self.event_pids.open),
            "set_event_notrace_pid": self.file(MODE_RW, self.event_notrace_pids.open),
            "events": self.events.root,
            "error_log": self.seq(MODE_RW, a.error_log_text, lambda t: None,
                                  a.clear_error_log),
            "set_ftrace_filter": self.file(MODE_RW, self.ftrace_filter.open),
            "set_ftrace_notrace": self.file(MODE_RW, self.ftrace_notrace.open),
            "set_ftrace_pid": self.file(MODE_RW, self.ftrace_pids.open),
            "set_ftrace_notrace_pid": self.file(MODE_RW, self.ftrace_notrace_pids.open),
            "set_graph_function": self.file(MODE_RW, self.graph_function.open),
            "set_graph_notrace": self.file(MODE_RW, self.graph_notrace.open),
            "max_graph_depth": self.seq(MODE_RW, lambda: f"{self.functions.max_graph_depth}\n",
                                        self._set_max_graph_depth),
            "snapshot": self.file(MODE_RW, lambda f: self._open_snapshot(f, None)),
            "tracing_max_latency": self.seq(MODE_RW, self._max_latency_text,
                                            self._set_max_latency),
        }
        return nodes

    def _trace_options_write(self, text: str) -> None:
        """trace_set_options: a core flag or one of the current tracer's; else EINVAL."""
        name, on = _option_word(strstrip(text))
        if name not in self.array.trace_options_names():
            raise FsError(errno.EINVAL)
        self.array.set_option(name, on)

    def _filters_changed(self, _selected: list[str]) -> None:
        with self.ctx.lock:
            self.functions.set_filters(self.ftrace_filter.selected, self.ftrace_notrace.selected)
            self.functions.set_graph_filters(self.graph_function.selected,
                                             self.graph_notrace.selected)

    def _command(self, glob: str, cmd: str, param: str | None, enable: bool) -> list[str] | None:
        """A function command or ``:mod:`` (tracesim.kernel_model.trace.ftrace_commands)."""
        with self.ctx.lock:
            return run_command(self.functions, self.ctx.traceable_functions(), glob, cmd, param,
                               enable)

    def _set_max_graph_depth(self, text: str) -> None:
        value = kstrtoul_from_user(text)
        with self.ctx.lock:
            self.functions.set_max_graph_depth(value)

    def _per_cpu(self, cpu: int) -> Dir:
        a = self.array
        return Dir(MODE_DIR, {
            "buffer_size_kb": self.seq(MODE_RW, lambda: a.buffer_size_text(cpu),
                                       lambda t: a.set_buffer_size_kb(kstrtoul_from_user(t), cpu)),
            "stats": self.seq(MODE_RO, lambda: self._stats(cpu)),
            "trace": self.file(MODE_RW, lambda f: self._open_trace(f, cpu)),
            "trace_pipe": self.file(MODE_RO, lambda f: open_trace_pipe(f, a, cpu)),
            "trace_pipe_raw": self.file(MODE_RO, lambda f: open_trace_pipe_raw(f, a, cpu)),
            "snapshot": self.file(MODE_RW, lambda f: self._open_snapshot(f, cpu)),
            "snapshot_raw": self.file(MODE_RO, lambda f: open_trace_pipe_raw(
                f, a.snapshot_view(), cpu)),
        })

    def _options(self) -> dict[str, Node]:
        a = self.array

        def option_file(name: str) -> File:
            def store(text: str) -> None:
                value = kstrtoul_from_user(text)
                if value not in (0, 1):
                    raise FsError(errno.EINVAL)
                a.set_option(name, bool(value))
            return self.seq(MODE_RW, lambda: f"{int(a.options[name])}\n", store)
        # TOP_LEVEL_TRACE_FLAGS: create_trace_options_dir gives an instance no file for them
        top_only = () if a is self.ctx.tracing.top else TOP_LEVEL_OPTIONS
        return {name: option_file(name) for name in a.options if name not in top_only}

    # -- behaviours ----------------------------------------------------------------------------
    def _open_trace(self, flags: int, cpu: int | None) -> Handle:
        from tracesim.kernel_model.trace.output import header_text, iter_trace_lines
        if truncating(flags):
            with self.ctx.lock:
                self.array.clear(cpu)

        def pieces():
            yield header_text(self.array)
            yield from iter_trace_lines(self.array, cpu)
        # tracing_write_stub: writes to ``trace`` are accepted and ignored.
        return LazyTextHandle(flags, pieces, store=lambda t: None)

    def _open_snapshot(self, flags: int, cpu: int | None) -> Handle:
        """``snapshot`` (tracing_snapshot_open/write): reads like ``trace`` over the snapshot
        buffer, with the help text when it is empty; a write of a number is 0 free, 1 take,
        other clear (``echo 1 > snapshot`` opens with O_TRUNC, which clears nothing)."""
        from tracesim.kernel_model.trace.output import header_text, iter_trace_lines
        view = self.array.snapshot_view()

        def pieces():
            if view.buffer.entries()[0] == 0:
                yield "# tracer: nop\n#\n" + snapshot_help(view.snapshot_buffer is not None,
                                                          cpu is not None)
                return
            yield header_text(view)
            yield from iter_trace_lines(view, cpu)

        def store(text: str) -> None:
            value = kstrtoul_from_user(text)
            with self.ctx.lock:
                kernel_call(self.array.snapshot_write)(value, cpu)
        return LazyTextHandle(flags, pieces, store=store)

    def _max_latency_text(self) -> str:
        """tracing_nsecs_read: microseconds."""
        return f"{self.array.max_latency_ns // 1000}\n"

    def _set_max_latency(self, text: str) -> None:
        self.array.max_latency_ns = kstrtoul_from_user(text) * 1000

    def _stats(self, cpu: int) -> str:
        from tracesim.kernel_model.trace.output import stats_text
        return stats_text(self.array, cpu)

    def _open_set_event(self, flags: int) -> Handle:
        """set_event (ftrace_event_write): each write() takes one word with a fresh parser and
        applies it at once, a word cut by the end of the write included; the short count
        makes the writer (libc) send the rest. So a bad name fails the write that carries it,
        and nothing is left to do at close."""
        a = self.array

        def apply(text: str, truncate: bool = False) -> None:
            with self.ctx.lock:
                kernel_call(a.set_event_write)(text, truncate)

        def store(text: str) -> int:
            parser = TraceParser(EVENT_BUF_SIZE + 1)
            taken = parser.get_user(text.encode("utf-8", "surrogateescape"))
            if parser.loaded:
                apply(parser.word())
            return taken

        return SeqHandle(flags, a.set_event_text, store, lambda: apply("", truncate=True))

    def _open_free_buffer(self, flags: int) -> Handle:
        """free_buffer: writes are accepted; the release shrinks the buffer to its minimum and,
        with the disable_on_free option, turns tracing off (tracing_free_buffer_release)."""
        a = self.array
        handle = SeqHandle(flags, None, lambda t: None)

        def release() -> None:
            with self.ctx.lock:
                if a.options.get("disable_on_free"):
                    a.set_tracing_on(False)
                a.buffer.resize(0)
        handle.on_release(release)
        return handle

    def _set_tracer(self, text: str) -> None:
        name = strstrip(text)
        if name not in TRACERS:
            raise FsError(errno.EINVAL)
        with self.ctx.lock:
            self.functions.set_tracer(name)

    def _cpumask_text(self) -> str:
        return f"{self.array.cpumask:x}\n"

    def _set_cpumask(self, text: str) -> None:
        """cpumask_parse_user: hex words separated by commas; CPUs left out stop recording."""
        try:
            mask = int(strstrip(text).replace(",", ""), 16)
        except ValueError:
            raise FsError(errno.EINVAL) from None
        with self.ctx.lock:
            self.array.set_cpumask(mask)

    def _set_tracing_on(self, text: str) -> None:
        on = kstrtoul_from_user(text) != 0
        self.array.set_tracing_on(on)
        self.array.buffer.wake_all()     # trace_pipe readers see the change (EOF when off)

    def _set_buffer_percent(self, text: str) -> None:
        value = kstrtoul_from_user(text)
        if value > 100:
            raise FsError(errno.EINVAL)
        self.buffer_percent = value

    def _subbuf_size_text(self) -> str:
        return f"{(PAGE_KB << self.array.buffer.subbuf_order)}\n"

    def _set_subbuf_size(self, text: str) -> None:
        """buffer_subbuf_size_write: KiB rounded up to a power-of-two number of pages, from 1
        to 128 pages (order = fls(pages - 1), 0..7; 0 KiB gives fls(-1) = 32: EINVAL). A new
        order empties the buffers (and the snapshot buffer, when allocated)."""
        pages = -(-kstrtoul_from_user(text) // PAGE_KB)
        order = (pages - 1).bit_length() if pages else 32
        if order > SUBBUF_ORDER_MAX:
            raise FsError(errno.EINVAL)
        with self.ctx.lock:
            if order != self.array.buffer.subbuf_order:
                self.array.buffer.set_subbuf_order(order)
                if self.array.snapshot_buffer is not None:
                    self.array.snapshot_buffer.set_subbuf_order(order)

    def _marker(self, text: str) -> int:
        """trace_marker: a tracing_mark_write entry in the context of the writing task."""
        with self.ctx.as_caller():
            return self.array.trace_marker_write(text.encode("utf-8", "surrogateescape"))

    def _marker_raw(self, text: str) -> None:
        """trace_marker_raw needs an id of at least 4 bytes (EINVAL otherwise); raw_data entries
        are not modelled, so a well-formed write is refused with ENODEV."""
        if len(text.encode("utf-8", "surrogateescape")) < 4:
            raise FsError(errno.EINVAL)
        raise FsError(errno.ENODEV)


TOP_LEVEL_OPTIONS = ("trace_printk", "printk-msg-only", "record-cmd")


def snapshot_help(allocated: bool, per_cpu: bool) -> str:
    """print_snapshot_help: the state, then the commands of the whole-buffer or per-CPU file."""
    state = "allocated" if allocated else "freed"
    out = f"#\n# * Snapshot is {state} *\n#\n# Snapshot commands:\n"
    if per_cpu:
        return out + (
            "# echo 0 > snapshot : Invalid for per_cpu snapshot file.\n"
            "# echo 1 > snapshot : Allocates snapshot buffer, if not already allocated.\n"
            "#                      Takes a snapshot of the main buffer for this cpu.\n"
            "# echo 2 > snapshot : Clears this cpu's snapshot buffer (but does not allocate)\n"
            "#                      (Doesn't have to be '2' works with any number that\n"
            "#                       is not a '0' or '1')\n")
    return out + (
        "# echo 0 > snapshot : Clears and frees snapshot buffer\n"
        "# echo 1 > snapshot : Allocates snapshot buffer, if not already allocated.\n"
        "#                      Takes a snapshot of the main buffer.\n"
        "# echo 2 > snapshot : Clears snapshot buffer (but does not allocate or free)\n"
        "#                      (Doesn't have to be '2' works with any number that\n"
        "#                       is not a '0' or '1')\n")


def _option_word(word: str) -> tuple[str, bool]:
    """``trace_options`` takes ``NAME`` or ``noNAME``."""
    if word.startswith("no"):
        return word[2:], False
    return word, True
