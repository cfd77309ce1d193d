"""The function tracers: ``function`` and ``function_graph`` (kernel/trace/trace_functions.c,
trace_functions_graph.c, ftrace.c), over the modelled kernel functions.

A trace array's ``FunctionTracing`` (``function_tracing(array)``) holds its tracer and the
function filters. While a tracer other than ``nop`` runs, the array is hooked into
``Kprobes.ftrace`` and holds the call stacks, so every modelled function goes through its
site's ``call``: ``entry(site, stack, cpu)`` before the function runs and, when entry returned
a token, ``exit(site, stack, cpu, token)`` after it returns.

* ``function`` writes a ``TRACE_FN`` entry (ip = the function, parent_ip = the return address
  into its caller); with ``func_stack_trace`` a ``kernel_stack`` entry follows.
* ``function_graph`` writes ``TRACE_GRAPH_ENT`` (func, depth) at entry and ``TRACE_GRAPH_RET``
  (func, depth, overrun, calltime, rettime) at return; ``max_graph_depth`` caps the depth,
  ``set_graph_function`` limits the graph to calls under the named functions,
  ``set_graph_notrace`` hides the named functions and everything they call; with
  ``funcgraph-irqs`` off, functions in hardirq context are not recorded; with
  ``tracing_thresh`` set only the returns that took that long are.

Both tracers honour ``set_ftrace_filter`` (when not empty, only those functions),
``set_ftrace_notrace`` (never those), ``set_ftrace_pid``/``set_ftrace_notrace_pid`` and
``tracing_on``. Entries go through the ring buffer API like every other entry.

The per-call path (the kernel's patched mcount call): while one array's ``function`` or
``function_graph`` is the only ftrace user and no function command is set, each modelled
function's ``call`` is that tracer's own closure (``site_call``, picked by
``Kprobes.set_ftrace``/``unprobed_call`` whenever the hook or the stack holds change). It tests
the usual case per call (tracing on, the function traced, no pid lists or per-call options)
and packs the entry straight into the CPU's tail page (``fixed_writer``'s write inlined into the
closure's source: no lock while no reader is in the buffer, ip/parent_ip packed once per caller,
a real-mode clock read inline); anything else goes through ``_function_entry`` /
``_graph_entry`` / ``exit``, which write the same bytes with the same clock reads
(``tests/test_function_tracer_fastpath.py``).
"""
from __future__ import annotations

import errno
import struct
import time
import types
from collections.abc import Callable
from typing import Any

from tracesim.kernel_model.trace.errlog import os_error
from tracesim.kernel_model.trace.event import HARDIRQ_MASK, trace_ctx
from tracesim.kernel_model.trace.events.ftrace import stack_record
from tracesim.kernel_model.trace.ring_buffer import event_length, fixed_write_source

TRACE_FN, TRACE_STACK, TRACE_GRAPH_RET, TRACE_GRAPH_ENT, TRACE_FUNC_REPEATS = 1, 4, 10, 11, 20
FN_RECORD = struct.Struct("<HBBiQQ")              # struct ftrace_entry (args[] empty)
GRAPH_ENT_RECORD = struct.Struct("<HBBiQI4x")      # struct ftrace_graph_ent_entry
GRAPH_RET_RECORD = struct.Struct("<HBBiQIIQQ")     # struct ftrace_graph_ret_entry
REPEATS_RECORD = struct.Struct("<HBBiQQHHI")        # struct func_repeats_entry
U16_MAX = 0xffff

NOP, FUNCTION, FUNCTION_GRAPH = "nop", "function", "function_graph"
# available_tracers: register_tracer puts the newest first (function_graph registers after
# function at boot)
TRACERS = (FUNCTION_GRAPH, FUNCTION, NOP)
# tracer_flags of each tracer, in the kernel's order, with their defaults
TRACER_OPTIONS: dict[str, tuple[tuple[str, bool], ...]] = {
    FUNCTION: (("func_stack_trace", False), ("func-no-repeats", False)),
    FUNCTION_GRAPH: (("funcgraph-overrun", False), ("funcgraph-cpu", True),
                     ("funcgraph-overhead", True), ("funcgraph-proc", False),
                     ("funcgraph-duration", True), ("funcgraph-abstime", False),
                     ("funcgraph-irqs", True), ("funcgraph-tail", False),
                     ("sleep-time", True), ("graph-time", True)),
}
MAX_GRAPH_DEPTH_LIMIT = 100      # FTRACE_RETFUNC_DEPTH: deeper calls are not recorded


def function_tracing(array: Any) -> FunctionTracing:
    """The array's function tracer state (made on first use)."""
    state = getattr(array, "function_tracing", None)
    if state is None:
        state = array.function_tracing = FunctionTracing(array)
    return state


class FunctionTracing:
    """One trace array's function tracer, filters and graph state."""

    def __init__(self, array: Any) -> None:
        self.array = array
        self.tracer = NOP
        self.filter: list[str] = []          # set_ftrace_filter
        self.notrace: list[str] = []         # set_ftrace_notrace
        self.graph_functions: list[str] = []  # set_graph_function
        self.graph_notrace: list[str] = []   # set_graph_notrace
        self.pids: set[int] = set()          # set_ftrace_pid (empty: every task)
        self.notrace_pids: set[int] = set()  # set_ftrace_notrace_pid
        self.max_graph_depth = 0
        self._traced: frozenset[str] | None = None   # None: every function
        ncpus = array.tracing.ncpus
        self._depth = [0] * ncpus            # graph depth per CPU
        self._in_graph = [0] * ncpus         # set_graph_function nesting per CPU
        self._hidden = [0] * ncpus           # set_graph_notrace nesting per CPU
        # func-no-repeats: per CPU [ip, parent_ip, repeats, time of the last repeat]
        self._last_call: list[list[int] | None] = [None] * ncpus
        kernel = array.tracing.kernel
        self._machine = kernel.machine
        self._kprobes = kernel.kprobes
        self._cmdlines = array.tracing.cmdlines
        self._saved = self._cmdlines.map
        self.probes: dict[str, list[Any]] = {}     # function commands by function name
        self.probe_order: list[Any] = []
        # ``glob:mod:module`` words kept for modules not loaded (tr->mod_trace, mod_notrace),
        # by file: True for set_ftrace_filter, False for set_ftrace_notrace
        self.mod_cache: dict[bool, list[tuple[str, str]]] = {True: [], False: []}
        self._hooked = False
        self._tracer_entry: Callable[[Any, list[Any], int], Any] = _no_entry
        self.entry: Callable[[Any, list[Any], int], Any] = _no_entry

    # -- control ------------------------------------------------------------------------------
    @property
    def kprobes(self) -> Any:
        return self.array.tracing.kernel.kprobes

    def set_tracer(self, name: str) -> None:
        """``current_tracer``: EINVAL for an unknown name; the options of the tracer show up."""
        if name not in TRACERS:
            raise os_error(errno.EINVAL)
        if name == self.tracer:
            return
        self.tracer = name
        self.array.buffer.reset()            # tracing_set_tracer resets the buffers
        self._depth = [0] * len(self._depth)
        self._in_graph = [0] * len(self._in_graph)
        self._hidden = [0] * len(self._hidden)
        self._rehook()

    def _rehook(self) -> None:
        """Hook into the model's functions while a tracer runs or a function command is set
        (holding the call stacks), and pick the entry hook for that state."""
        kps = self.kprobes
        hooked = self.tracer != NOP or bool(self.probes)
        if hooked != self._hooked:
            self._hooked = hooked
            if hooked:
                kps.hold_call_stacks()
            else:
                kps.release_call_stacks()
        # entry(site, stack, cpu_id), the hook at a function's entry: a token (not None)
        # asks for exit(site, stack, cpu_id, token) at its return
        self._tracer_entry = {FUNCTION: self._function_entry,
                              FUNCTION_GRAPH: self._graph_entry}.get(self.tracer, _no_entry)
        self.entry = self._entry_with_probes if self.probes else self._tracer_entry
        _install(self.array.tracing, kps)

    # -- function commands (ftrace_commands.py) -----------------------------------------------
    def add_probes(self, probes: list[Any]) -> None:
        """Set commands on functions; one already set (same function, command, target) is
        replaced."""
        for probe in probes:
            old = next((p for p in self.probe_order if p.key() == probe.key()), None)
            if old is not None:
                self._drop_probe(old)
            self.probe_order.append(probe)
            self.probes.setdefault(probe.func, []).append(probe)
        self._rehook()

    def remove_probes(self, names: list[str], cmd: str, target: Any) -> None:
        wanted = set(names)
        for probe in [p for p in self.probe_order if p.func in wanted and p.cmd == cmd
                      and p.target is target]:
            self._drop_probe(probe)
        self._rehook()

    def clear_probes(self) -> None:
        for probe in list(self.probe_order):
            self._drop_probe(probe)
        self._rehook()

    def _drop_probe(self, probe: Any) -> None:
        self.probe_order.remove(probe)
        on_func = self.probes[probe.func]
        on_func.remove(probe)
        if not on_func:
            del self.probes[probe.func]
        probe.release()

    def probes_text(self) -> str:
        return "".join(p.text() for p in self.probe_order)

    def _entry_with_probes(self, site: Any, stack: list[Any], cpu_id: int) -> Any:
        probes = self.probes.get(site.name)
        if probes:
            cpu = self._machine.current
            for probe in list(probes):
                probe.hit(self.array, cpu_id,
                          lambda _p: self._write_stack(cpu, self._stack_of(stack, site, cpu_id)))
        return self._tracer_entry(site, stack, cpu_id)

    def _repeated(self, cpu: Any, cpu_id: int, ip: int, parent: int) -> bool:
        """func-no-repeats (function_no_repeats_trace_call): a call like the last one on this
        CPU only counts; another call first writes the count as a func_repeats entry."""
        last = self._last_call[cpu_id]
        if last is not None and last[0] == ip and last[1] == parent and last[2] < U16_MAX:
            last[2] += 1
            last[3] = self.array.clock()
            return True
        if last is not None and last[2]:
            count, last_ts = last[2], last[3]
            ip0, parent0 = last[0], last[1]

            def build(ts: int, f: int, pc: int, pid: int) -> bytes:
                delta = max(0, ts - last_ts)
                return REPEATS_RECORD.pack(TRACE_FUNC_REPEATS, f, pc, pid, ip0, parent0, count,
                                           delta >> 32 & 0xffff, delta & 0xffffffff)
            self._write(cpu, build)
        self._last_call[cpu_id] = [ip, parent, 0, 0]
        return False

    def _stack_of(self, stack: list[Any], site: Any, cpu_id: int) -> list[int]:
        """The kernel stack as seen at ``site``'s entry: its return address, then its
        callers'."""
        kps = self._kprobes
        return [kps.caller_address(stack, site), *kps.call_stack(cpu_id, site.name)[1:]]

    def set_filters(self, filter: list[str], notrace: list[str]) -> None:
        """The filter hashes; a filter holding only words kept for a module not loaded yet
        is not empty (FTRACE_HASH_FL_MOD): nothing is traced until the module loads."""
        self.filter, self.notrace = list(filter), list(notrace)
        pending = bool(self.mod_cache[True])
        if not filter and not notrace and not pending:
            self._traced = None
        else:
            names = filter or ([] if pending else [s.name for s in self.kprobes.sites.values()])
            self._traced = frozenset(names) - frozenset(notrace)

    def mods_text(self, enable: bool) -> str:
        """The kept ``:mod:`` words, as set_ftrace_filter / set_ftrace_notrace list them."""
        return "".join(f"{func}:mod:{module}\n" for func, module in self.mod_cache[enable])

    def clear_mods(self, enable: bool) -> None:
        """Opening the file with O_TRUNC forgets its kept ``:mod:`` words."""
        self.mod_cache[enable].clear()

    def follow_fork(self, on: bool) -> None:
        """The function-fork option: children of listed tasks join set_ftrace_pid /
        set_ftrace_notrace_pid, and exiting tasks leave them (ftrace_pid_follow_fork)."""
        machine = self._machine
        if not hasattr(machine, "fork_hooks"):
            return
        for hooks, hook in ((machine.fork_hooks, self._task_forked),
                            (machine.exit_hooks, self._task_exited)):
            if on and hook not in hooks:
                hooks.append(hook)
            elif not on and hook in hooks:
                hooks.remove(hook)

    def _task_forked(self, parent: Any, child: Any) -> None:
        for pids in (self.pids, self.notrace_pids):
            if parent.pid in pids:
                pids.add(child.pid)

    def _task_exited(self, task: Any) -> None:
        self.pids.discard(task.pid)
        self.notrace_pids.discard(task.pid)

    def set_graph_filters(self, functions: list[str], notrace: list[str]) -> None:
        self.graph_functions, self.graph_notrace = list(functions), list(notrace)

    def set_max_graph_depth(self, depth: int) -> None:
        self.max_graph_depth = depth

    def traced(self, name: str) -> bool:
        """Whether the tracer records function ``name`` (the filter hash test)."""
        return self._traced is None or name in self._traced

    def ignores(self, pid: int) -> bool:
        pids, no_pids = self.pids, self.notrace_pids
        return bool((pids and pid not in pids) or (no_pids and pid in no_pids))

    # -- the hooks ----------------------------------------------------------------------------
    def _function_entry(self, site: Any, stack: list[Any], cpu_id: int) -> None:
        """function_trace_call: one TRACE_FN entry (the hot path of the function tracer:
        everything it needs is read straight off the objects)."""
        array = self.array
        if not array.tracing_on:
            return None
        traced = self._traced
        if traced is not None and site.name not in traced:
            return None
        cpu = self._machine.current
        task = cpu.task
        pid = task.pid
        if (self.pids or self.notrace_pids) and self.ignores(pid):
            return None
        if stack:
            caller = stack[-1]
            parent = site.return_ips.get(caller) or self._kprobes.caller_address(stack, site)
        else:
            parent = self._kprobes.return_address
        if array.options["func-no-repeats"] and self._repeated(cpu, cpu_id, site.addr, parent):
            return None
        flags, pc = _ctx_of(cpu)
        buf = array.buffer
        with buf.exclusive:
            if buf.cpus[cpu_id].write(array.clock(), _FN_PACK(TRACE_FN, flags, pc, pid,
                                                               site.addr, parent)):
                if array.record_cmd and self._saved.get(pid) != task.comm:
                    self._cmdlines.record(pid, task.comm)
                if array.record_tgid:
                    array.tracing.tgids[pid] = task.tgid
                if buf.waiters:
                    buf.cond.notify_all()
        if array.options["func_stack_trace"]:
            self._write_stack(cpu, self._stack_of(stack, site, cpu_id))
        return None

    def _graph_entry(self, site: Any, stack: list[Any], cpu_id: int) -> Any:
        name = site.name
        if self._hidden[cpu_id]:
            return None
        if name in self.graph_notrace:
            self._hidden[cpu_id] += 1
            return False                      # exit only undoes the hiding
        starts = name in self.graph_functions
        if self.graph_functions and not (starts or self._in_graph[cpu_id]):
            return None
        depth = self._depth[cpu_id]
        limit = self.max_graph_depth
        if (limit and depth >= limit) or depth >= MAX_GRAPH_DEPTH_LIMIT or not self.traced(name):
            return None
        array = self.array
        cpu = array.tracing.this_cpu()
        if self.ignores(cpu.task.pid) or not array.tracing_on:
            return None
        if cpu.preempt_count & HARDIRQ_MASK and not array.options["funcgraph-irqs"]:
            return None                      # ftrace_graph_ignore_irqs
        addr = site.addr
        if getattr(array.tracing, "tracing_thresh", 0):      # returns only (thresh_return)
            calltime = array.clock()
        else:
            calltime = self._write(cpu, lambda ts, f, pc, pid: GRAPH_ENT_RECORD.pack(
                TRACE_GRAPH_ENT, f, pc, pid, addr, depth))
        self._depth[cpu_id] = depth + 1
        if starts:
            self._in_graph[cpu_id] += 1
        return (calltime, depth, starts)

    def exit(self, site: Any, stack: list[Any], cpu_id: int, token: Any) -> None:
        if token is False:
            self._hidden[cpu_id] -= 1
            return
        calltime, depth, starts = token
        self._depth[cpu_id] = depth
        if starts:
            self._in_graph[cpu_id] -= 1
        array = self.array
        thresh = getattr(array.tracing, "tracing_thresh", 0)
        if array.tracing_on and not (thresh and array.clock() - calltime < thresh):
            cpu = array.tracing.this_cpu()
            addr = site.addr
            self._write(cpu, lambda ts, f, pc, pid: GRAPH_RET_RECORD.pack(
                TRACE_GRAPH_RET, f, pc, pid, addr, depth, 0, calltime, ts))

    # -- the per-function fast path ------------------------------------------------------------
    def site_call(self, site: Any) -> Callable[..., Any] | None:
        """``call`` for an unprobed site while this array is the only ftrace user (Kprobes
        asks when the hook or the stack holds change): the tracer's work for that function
        in one closure around it, as the kernel patches each function's mcount call to its
        tracer. None (the generic ``_call_unprobed``) while function commands are set."""
        if self.probes:
            return None
        if self.tracer == FUNCTION:
            return _function_call(self, site)
        if self.tracer == FUNCTION_GRAPH:
            return _graph_call(self, site)
        return None

    def _write(self, cpu: Any, build: Callable[[int, int, int, int], bytes]) -> int:
        """One entry, ``build(ts, flags, preempt_count, pid)``, into the array's ring buffer
        on ``cpu`` (written and committed at once: nothing filters it); returns its time."""
        array = self.array
        flags, pc = _ctx_of(cpu)
        task = cpu.task
        buf = array.buffer
        with buf.exclusive:
            ts = array.clock()
            if buf.cpus[cpu.id].write(ts, build(ts, flags, pc, task.pid)):
                tracing = array.tracing
                if array.record_cmd and tracing.cmdlines.map.get(task.pid) != task.comm:
                    tracing.cmdlines.record(task.pid, task.comm)
                if array.record_tgid:
                    tracing.tgids[task.pid] = task.tgid
                if buf.waiters:
                    buf.cond.notify_all()
        return ts

    def _write_stack(self, cpu: Any, callers: list[int]) -> None:
        """A ``kernel_stack`` entry (__ftrace_trace_stack) with every one of ``callers``."""
        flags, pc = _ctx_of(cpu)
        record = stack_record(flags, pc, cpu.task.pid, callers)
        array = self.array
        if not array.tracing_on:
            return
        buf = array.buffer
        with buf.exclusive:
            buf.cpus[cpu.id].write(array.clock(), record)


_FN_PACK = FN_RECORD.pack
# The entries as the fast path packs them: the same bytes as FN_RECORD / GRAPH_*_RECORD, with
# type, flags and preempt count as one little-endian u32 word (``type | flags << 16 | pc <<
# 24``: the type itself while the CPU's context is plain), the function's address (and for
# TRACE_FN the parent's) as bytes made once, and for TRACE_GRAPH_RET depth and overrun (0) as
# one u64; ``_*_EVENT`` put the ring buffer's event header in front.
_FN_WIRE = struct.Struct("<Ii16s")                 # word, pid, ip + parent_ip
_GRAPH_ENT_WIRE = struct.Struct("<Ii8sI4x")        # word, pid, func, depth
_GRAPH_RET_WIRE = struct.Struct("<Ii8sQQQ")        # word, pid, func, depth + overrun, times
_FN_EVENT, _GRAPH_ENT_EVENT, _GRAPH_RET_EVENT = (
    struct.Struct("<I" + wire.format[1:]) for wire in (_FN_WIRE, _GRAPH_ENT_WIRE, _GRAPH_RET_WIRE))
_FN_LENGTH, _GRAPH_ENT_LENGTH, _GRAPH_RET_LENGTH = (
    event_length(wire.size) for wire in (_FN_WIRE, _GRAPH_ENT_WIRE, _GRAPH_RET_WIRE))
_IP = struct.Struct("<Q")
_IP_PAIR = struct.Struct("<QQ")


def _fast_clock(array: Any) -> tuple[Any, int]:
    """(the base reader of a ``real`` time base, its origin): a trace clock that is that
    reader is read inline as ``perf_counter_ns() - origin`` (what it returns) on the fast
    path; (None, 0) in virtual mode."""
    clock = array.tracing.kernel.clock
    if clock.mode != "real":
        return None, 0
    return clock.base_ns, clock._real_origin


def _indented(indent: str, text: str) -> str:
    return "".join(indent + line + "\n" for line in text.splitlines())


def _inline_write(indent: str, length: int, pack: str, fields: str, wire: str, cpu_id: str,
                  ts: str, task: str) -> str:
    """Source of a fast path's write (``ring_buffer.fixed_write_source``, as ``fixed_writer``
    runs it): one ``length``-byte event at ``ts`` on CPU ``cpu_id``, lock-free while no one
    else is in the buffer (``write_unlocked``'s handshake), else ``after_write`` writes the
    record ``wire`` under the lock. Then a written entry's saved comm, tgid and wake-up."""
    place = fixed_write_source(length, pack, fields, wire, "cpus", cpu_id, ts)
    lines = f"""\
buf.writing = True
if buf.others:
    buf.writing = False
    rare.after_write(array, buf, {task}, {cpu_id}, {ts}, {wire})
else:
    try:
{_indented(" " * 8, place)}\
    finally:
        buf.writing = False
    if written:
        if array.record_cmd and saved_get({task}.pid) != {task}.comm:
            rare.cmdlines.record({task}.pid, {task}.comm)
        if array.record_tgid:
            tgids[{task}.pid] = {task}.tgid
        if buf.waiters:
            buf.wake_waiters()
"""
    return _indented(indent, lines)


def _write_locked(array: Any, buf: Any, task: Any, cpu_id: int, ts: int, record: bytes) -> None:
    """A fast path's entry while someone is in the buffer: written under the lock, then the
    comm, tgid and wake-up as after a lock-free write."""
    with buf.exclusive:
        written = buf.cpus[cpu_id].write(ts, record)
    if written:
        tracing = array.tracing
        if array.record_cmd and tracing.cmdlines.map.get(task.pid) != task.comm:
            tracing.cmdlines.record(task.pid, task.comm)
        if array.record_tgid:
            tracing.tgids[task.pid] = task.tgid
        if buf.waiters:
            buf.wake_waiters()


# What every fast path binds (``_fast_env``), then the per-function ``call`` of each tracer, as
# source compiled once (``make`` binds it to a site). The CPU's id and call stack stay in the
# closure until the CPU changes.
_COMMON_PARAMS = ("state, site, machine, stacks, buf, array, tracing, options, cmdlines, "
                  "saved_get, tgids, real_base, origin, now, ctx_of, after_write")
_CTX_WORD = """\
if (cpu.preempt_count or cpu.irqs_off or cpu.need_resched or cpu.migrate_disable
        or cpu.need_resched_lazy):
    flags, pc = rare.ctx_of(cpu)
    {word} = {type} | flags << 16 | pc << 24
else:
    {word} = {type}
{ts} = now() - origin if array.clock is real_base else array.clock()
"""


# Both tracers' calls: the CPU and its call stack, looked up again only when the CPU changed
_CURRENT_CPU = """\
        cpu = machine.current
        if cpu is not cur_cpu:
            cur_id = cpu.id
            cur_stack = rare.stacks[cur_id]
            cur_cpu = cpu
"""

_FUNCTION_CALL_SOURCE = f"""\
def make({_COMMON_PARAMS}, general, caller_address, kps, ips, pair_pack, wire, pack_event, varargs, learn):
    name, addr = site.name, site.addr
    cpus = buf.cpus
    rare = Rare(after_write=after_write, cmdlines=cmdlines, ctx_of=ctx_of, stacks=stacks,
                general=general, wire=wire,
                pair=lambda stack: pair_pack(addr, caller_address(stack, site) if stack
                                             else kps.return_address))
    cur_cpu = cur_id = cur_stack = None
    learned = False

    def call(func, @SIG@):
        nonlocal cur_cpu, cur_id, cur_stack
@PROLOGUE@{_CURRENT_CPU}        stack = cur_stack
        traced = state._traced
        if array.tracing_on and (traced is None or name in traced):
            if (state.pids or state.notrace_pids or options["func-no-repeats"]
                    or options["func_stack_trace"]):
                rare.general(site, stack, cur_id)
            else:
                if stack:
                    caller = stack[-1]
                    pair = ips.get(caller)
                    if pair is None:
                        pair = ips[caller] = rare.pair(stack)
                else:
                    pair = rare.pair(stack)
                task = cpu.task
{_indented(" " * 16, _CTX_WORD.format(word="word", type=TRACE_FN, ts="ts"))}\
{_inline_write(" " * 16, _FN_LENGTH, "pack_event", "word, task.pid, pair",
               "rare.wire(word, task.pid, pair)", "cur_id", "ts", "task")}\
        stack.append(site)
        try:
            return func(@ARGS@)
        finally:
            stack.pop()
    return call
"""

_GRAPH_CALL_SOURCE = f"""\
def make({_COMMON_PARAMS}, general_entry, general_exit, ip, ent_wire, ret_wire,
         pack_ent, pack_ret, varargs, learn):
    name = site.name
    cpus = buf.cpus
    rare = Rare(after_write=after_write, cmdlines=cmdlines, ctx_of=ctx_of, stacks=stacks,
                general_entry=general_entry, general_exit=general_exit, ent_wire=ent_wire,
                ret_wire=ret_wire)
    cur_cpu = cur_id = cur_stack = None
    learned = False

    def call(func, @SIG@):
        nonlocal cur_cpu, cur_id, cur_stack
@PROLOGUE@{_CURRENT_CPU}        cpu_id = cur_id
        stack = cur_stack
        depths = state._depth
        depth = depths[cpu_id]
        limit = state.max_graph_depth
        traced = state._traced
        if (state._hidden[cpu_id] or state.graph_notrace or state.graph_functions
                or state.pids or state.notrace_pids or (limit and depth >= limit)
                or depth >= {MAX_GRAPH_DEPTH_LIMIT} or (traced is not None and name not in traced)
                or not array.tracing_on or tracing.tracing_thresh
                or (cpu.preempt_count & {HARDIRQ_MASK} and not options["funcgraph-irqs"])):
            token = rare.general_entry(site, stack, cpu_id)
            stack.append(site)
            try:
                result = func(@ARGS@)
            finally:
                stack.pop()
            if token is not None:
                rare.general_exit(site, stack, cpu_id, token)
            return result
        task = cpu.task
{_indented(" " * 8, _CTX_WORD.format(word="word", type=TRACE_GRAPH_ENT, ts="calltime"))}\
{_inline_write(" " * 8, _GRAPH_ENT_LENGTH, "pack_ent", "word, task.pid, ip, depth",
               "rare.ent_wire(word, task.pid, ip, depth)", "cpu_id", "calltime", "task")}\
        depths[cpu_id] = depth + 1
        stack.append(site)
        try:
            result = func(@ARGS@)
        finally:
            stack.pop()
        state._depth[cpu_id] = depth
        thresh = tracing.tracing_thresh
        if array.tracing_on and not (thresh and array.clock() - calltime < thresh):
            cpu = machine.current
            cpu_id = cpu.id
            task = cpu.task
{_indented(" " * 12, _CTX_WORD.format(word="word", type=TRACE_GRAPH_RET, ts="rettime"))}\
{_inline_write(" " * 12, _GRAPH_RET_LENGTH, "pack_ret",
               "word, task.pid, ip, depth, calltime, rettime",
               "rare.ret_wire(word, task.pid, ip, depth, calltime, rettime)", "cpu_id", "rettime",
               "task")}\
        return result
    return call
"""


# Each function's ``call`` starts with ``*args`` (``varargs``) and, at its first call, learns
# the count of arguments its callers pass: the site's ``call`` becomes the form taking that many
# (``func(a0, a1)``: no tuple built, an exact call), which hands any other count to ``varargs``.
_MAX_ARITY = 8
_VARARGS_PROLOGUE = """\
        if not learned:
            learn(call, len(args))
"""


def _arity_source(template: str, arity: int | None) -> str:
    if arity is None:
        sig, args, prologue = "*args", "*args", _VARARGS_PROLOGUE
    else:
        names = ", ".join(f"a{i}" for i in range(arity))
        sig = "".join(f"a{i}=_N, " for i in range(arity)) + "*rest"
        args = names
        missing = f"rest or a{arity - 1} is _N" if arity else "rest"
        prologue = (f"        if {missing}:\n"
                    f"            return varargs(func, *[a for a in ({names}{',' if arity else ''}) "
                    "if a is not _N], *rest)\n")
    source = template.replace("@SIG@", sig).replace("@ARGS@", args).replace("@PROLOGUE@", prologue)
    if arity is None:
        source = source.replace("if not learned:\n", "if not learned:\n            learned = True\n"
                                ).replace("nonlocal cur_cpu, cur_id, cur_stack\n",
                                          "nonlocal cur_cpu, cur_id, cur_stack, learned\n")
    return source


class _Missing:
    """An argument the caller did not pass (``_N`` in the sources)."""


_MAKERS: dict[tuple[str, int | None], Callable[..., Any]] = {}
_TEMPLATES = {"function": _FUNCTION_CALL_SOURCE, "function_graph": _GRAPH_CALL_SOURCE}


def _maker(tracer: str, arity: int | None) -> Callable[..., Any]:
    """``make`` of ``tracer``'s call taking ``arity`` arguments (None: ``*args``)."""
    maker = _MAKERS.get((tracer, arity))
    if maker is None:
        env: dict[str, Any] = {"_N": _Missing(), "Rare": types.SimpleNamespace}
        exec(compile(_arity_source(_TEMPLATES[tracer], arity),
                     f"<{tracer} tracer call/{arity}>", "exec"), env)
        maker = _MAKERS[tracer, arity] = env["make"]
    return maker


def _site_call(tracer: str, site: Any, params: tuple[Any, ...]) -> Callable[..., Any]:
    """The ``*args`` call of ``site``; its first call sets the site's ``call`` to the form
    taking as many arguments as that call passed (unless something replaced it meanwhile)."""
    def learn(varargs: Callable[..., Any], arity: int) -> None:
        if arity <= _MAX_ARITY and site.call is varargs:
            site.call = _maker(tracer, arity)(*params, varargs, None)
    call: Callable[..., Any] = _maker(tracer, None)(*params, None, learn)
    return call


def _fast_env(state: FunctionTracing, site: Any) -> tuple[Any, ...]:
    """The values every fast path binds, in ``_COMMON_PARAMS`` order."""
    array = state.array
    tracing = array.tracing
    if not hasattr(tracing, "tracing_thresh"):   # read per call: a plain attribute
        tracing.tracing_thresh = 0
    real_base, origin = _fast_clock(array)
    return (state, site, state._machine, state._kprobes.stacks, array.buffer, array, tracing,
            array.options, tracing.cmdlines, tracing.cmdlines.map.get, tracing.tgids,
            real_base, origin, time.perf_counter_ns, _ctx_of, _write_locked)


def _function_call(state: FunctionTracing, site: Any) -> Callable[..., Any]:
    """The function tracer's ``call`` of ``site`` (function_trace_call): the usual entry
    (tracing on, the function traced, no pid lists, neither ``func_stack_trace`` nor
    ``func-no-repeats``) packed straight into the CPU's ring buffer page without the lock
    while no reader is in the buffer (``_inline_write``), ip and parent_ip as bytes made once
    per caller; anything else through ``_function_entry``. The entry's bytes and clock reads
    are ``_function_entry``'s."""
    kps = state._kprobes
    return _site_call(FUNCTION, site, (*_fast_env(state, site), state._function_entry,
                                       kps.caller_address, kps, {}, _IP_PAIR.pack,
                                       _FN_WIRE.pack, _FN_EVENT.pack_into))


def _graph_call(state: FunctionTracing, site: Any) -> Callable[..., Any]:
    """The function_graph tracer's ``call`` of ``site``: in the usual case (no graph or pid
    lists, under the depth limits, tracing on, the function traced, not a hardirq with
    ``funcgraph-irqs`` off, no ``tracing_thresh``) the entry and return records packed
    straight into the ring buffer page (``_inline_write``, the address as bytes made once),
    the depth kept in locals; else ``_graph_entry`` / ``exit``. Bytes and clock reads are
    theirs."""
    return _site_call(FUNCTION_GRAPH, site, (
        *_fast_env(state, site), state._graph_entry, state.exit, _IP.pack(site.addr),
        _GRAPH_ENT_WIRE.pack, _GRAPH_RET_WIRE.pack, _GRAPH_ENT_EVENT.pack_into,
        _GRAPH_RET_EVENT.pack_into))


_CTX: dict[tuple[int, bool, bool, bool, int], tuple[int, int]] = {}


def _ctx_of(cpu: Any) -> tuple[int, int]:
    """trace_ctx, remembered per CPU state (a handful of states occur)."""
    key = (cpu.preempt_count, cpu.irqs_off, cpu.need_resched, cpu.need_resched_lazy,
           cpu.migrate_disable)
    ctx = _CTX.get(key)
    if ctx is None:
        ctx = _CTX[key] = trace_ctx(cpu)
    return ctx


class _Hooks:
    """``Kprobes.ftrace`` when several arrays trace functions: each sees every call."""

    def __init__(self, states: list[FunctionTracing]) -> None:
        self.states = states

    def entry(self, site: Any, stack: list[Any], cpu_id: int) -> Any:
        tokens = [s.entry(site, stack, cpu_id) for s in self.states]
        return tokens if any(t is not None for t in tokens) else None

    def exit(self, site: Any, stack: list[Any], cpu_id: int, tokens: Any) -> None:
        for state, token in zip(self.states, tokens, strict=True):
            if token is not None:
                state.exit(site, stack, cpu_id, token)


def _no_entry(site: Any, stack: list[Any], cpu_id: int) -> None:
    return None


def _install(tracing: Any, kps: Any) -> None:
    """Point ``kps.ftrace`` at the arrays hooked into the functions and the other ftrace
    users (the profiler, the stack tracer); None when there are none."""
    states = [ta.function_tracing for ta in tracing.arrays()
              if getattr(ta, "function_tracing", None) is not None
              and ta.function_tracing._hooked]
    states += function_hooks(tracing)
    kps.set_ftrace(None if not states else states[0] if len(states) == 1 else _Hooks(states))


def function_hooks(tracing: Any) -> list[Any]:
    """Ftrace users that are not a trace array's tracer (objects with ``entry``/``exit``)."""
    hooks = getattr(tracing, "function_hooks", None)
    if hooks is None:
        hooks = tracing.function_hooks = []
    return hooks


def set_hooked(tracing: Any, hook: Any, on: bool) -> None:
    """Add or remove an ftrace user (holding the call stacks while it is there)."""
    hooks = function_hooks(tracing)
    kps = tracing.kernel.kprobes
    if on and hook not in hooks:
        hooks.append(hook)
        kps.hold_call_stacks()
    elif not on and hook in hooks:
        hooks.remove(hook)
        kps.release_call_stacks()
    _install(tracing, kps)


def release_array(array: Any) -> None:
    """An instance goes away: its tracer stops."""
    state = getattr(array, "function_tracing", None)
    if state is not None:
        state.clear_probes()
        state.set_tracer(NOP)


def enabled_functions_text(tracing: Any) -> str:
    """``enabled_functions``: each function some ftrace user hooks, with how many hook it
    (ftrace_rec_count), then the five flag columns (none set: no regs, ipmodify, direct or
    call-ops users in the model)."""
    counts: dict[str, int] = {}
    names = list(tracing.kernel.kprobes.sites)
    for ta in tracing.arrays():
        state = getattr(ta, "function_tracing", None)
        if state is None:
            continue
        for name in names:
            hooks = (state.tracer != NOP and state.traced(name)) + bool(state.probes.get(name))
            if hooks:
                counts[name] = counts.get(name, 0) + hooks
    for hook in function_hooks(tracing):
        wanted = getattr(hook, "filter", None)
        for name in names:
            if wanted is None or name in wanted:
                counts[name] = counts.get(name, 0) + 1
    return "".join(f"{name} ({counts[name]})" + "  " * 4 + "   \n"
                   for name in names if name in counts)
