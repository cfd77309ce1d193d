"""What happens when a BPF program is written to an event's ``filter`` file, in one place.

    attached = load_event_filter(data, event, kernel=kernel, ta=trace_array, engine="jit")
    event_file.set_prog(attached.prog)          # the emission path calls prog(ctx) per hit

``data`` is an ELF object (``tracesim cc`` or ``clang -target bpf``) or a 2013 RFC image
(``"bpf\\0"``).  Loading picks the program for the event and loads it through
``tracesim.filters.bpf.loader`` (its type from its section name: a kprobe event takes kprobe programs, a
tracepoint tracepoint ones; the object's maps; the verifier for the event's context; the
engine: JIT or interpreter), then returns an ``AttachedFilter`` whose ``prog`` is the fast path
the kernel model calls before reserving anything in the ring buffer: ``prog(ctx) -> r0``; 0
drops the event.

Contexts, per event kind:

* kprobe events: ``struct pt_regs`` (168 bytes; the first argument in ``di``), program type
  ``kprobe``, sections ``kprobe/<symbol>`` (``kretprobe/<symbol>`` for return probes);
* tracepoints: the record exactly as the event's ``format`` file describes it (common fields
  included; the verifier refuses reads of bytes 0-7 as Linux does), program type
  ``tracepoint``, sections ``tracepoint/<sys>/<event>`` or ``tp/<sys>/<event>``;
* 2013 images keep 2013 semantics: a ``pt_regs`` context and an event that is never recorded
  (the translated ``RET`` returns 0; output only through ``bpf_trace_printk``).  On a kprobe
  event the probe's own ``pt_regs`` is passed.  On a tracepoint the RFC passed the
  tracepoint's C arguments in ``si``/``dx``/``cx``; the model has only the record, so those
  registers hold the record's first three fields after the common ones, each widened to 64
  bits (an approximation: it is exact when the leading fields are the arguments, as
  ``skbaddr`` of ``net:netif_receive_skb`` is; a ``__data_loc`` field gives its loc word).

A program that cannot be used raises ``BpfFilterError`` (an ``OSError`` with ``EACCES``)
carrying a one-line ``summary`` (for ``error_log``) and the full verifier ``log``.
"""
from __future__ import annotations

import copy
import errno
import random
import struct
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracesim.filters.bpf import loader as loadermod
from tracesim.filters.bpf.loader import LoadedProgram, LoadError
from tracesim.filters.bpf.runtime import helpers_tracing
from tracesim.filters.bpf.runtime.helpers_tracing import KERNEL_HALF
from tracesim.filters.bpf.runtime.maps import BpfMap
from tracesim.filters.bpf.toolchain import elf as elfmod
from tracesim.filters.bpf.toolchain import image2013
from tracesim.filters.bpf.verifier.pool import VerifyWorkerError, verify_in_worker
from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.interp import Interpreter
from tracesim.filters.bpf.vm.jit import JitProgram
from tracesim.filters.bpf.vm.memory import VMError
from tracesim.filters.bpf.vm.native import NativeProgram
from tracesim.kernel_model.mm.memory import PAGE_SHIFT
from tracesim.kernel_model.trace.event import trace_ctx
from tracesim.kernel_model.trace.kprobe_events import KprobeEvent

__all__ = ["AttachedFilter", "BpfFilterError", "TraceEnv", "fast_path", "load_event_filter",
           "pick_program",
           "program_sections", "section_matches"]

PT_REGS = struct.Struct("<21Q")
PT_REGS_SIZE = PT_REGS.size
M64 = (1 << 64) - 1
# pt_regs slots (x86-64, 8 bytes each) where a 2013 tracepoint program found its arguments.
V1_TRACEPOINT_ARG_OFFSETS = (104, 96, 88)          # si, dx, cx
TRACE_PRINTK_ID = isa.HELPER_IDS["trace_printk"]
PRINTK_HELPERS = (TRACE_PRINTK_ID, isa.HELPER_IDS["trace_vprintk"])   # both enable the event
# helpers that read the kernel stack: while a program calling them is attached, the model keeps
# complete per-CPU call stacks (kprobes.hold_call_stacks)
STACK_HELPERS = (isa.HELPER_IDS["get_stackid"], isa.HELPER_IDS["get_stack"])


def calls_helper(insns: Sequence[isa.Insn], ids: Sequence[int]) -> bool:
    return any(i.opcode == isa.OP_CALL and i.src == 0 and i.imm in ids for i in insns)
# The verifier log a failed load keeps (its tail, as a kernel log buffer of this size would):
# it goes to dmesg line by line, and a loop walked to the 1M-insn limit logs a line per insn.
VERIFIER_LOG_SIZE = 16 * 1024


class BpfFilterError(OSError):
    """A program that cannot be attached: ``errno`` EACCES, ``summary`` for ``error_log``,
    ``log`` the verifier's full log (or the loader's message), ``command`` what was written."""

    def __init__(self, summary: str, log: str = "", command: str = "bpf",
                 err: int = errno.EACCES) -> None:
        super().__init__(err, summary)
        self.summary = summary
        self.log = log or summary + "\n"
        self.command = command


# ---------------------------------------------------------------------------------------------
# What helpers see of the kernel (``vm.env``)

class TraceEnv:
    """The running kernel as the tracing helpers ask it (see ``helpers_tracing``).

    ``trace_printk`` writes the ``bpf_trace:bpf_trace_printk`` event into the trace array the
    program is attached in (and only there), as ``tracing.trace_printk`` would into its array.

    What a program learns of its attachment (``bpf_get_func_ip``, ``bpf_get_attach_cookie``,
    ``bpf_get_func_arg_cnt``/``_ret``) is per program: ``for_program()`` gives each its own
    copy, whose ``ip``, ``cookie``, ``nargs`` and ``func_returned`` the attach layer
    (``attach.py``) sets for the link and, where they vary, for each hit.
    """

    ip = 0                         # bpf_get_func_ip: the traced function's address, or 0
    cookie = 0                     # bpf_get_attach_cookie: the link's (or this symbol's) cookie
    nargs = 0                      # the traced function's argument count (its BTF prototype)
    func_returned = False          # fexit: the return value follows the arguments in ctx

    def __init__(self, kernel: Any, ta: Any) -> None:
        self.kernel = kernel
        self.ta = ta
        self.kpages = kernel.mem.pages                # probe_read_kernel's fast path
        self._this_cpu = kernel.machine.this_cpu
        self._mono = kernel.clock.reader("mono")
        self._symbols = kernel.tracing.symbols
        self._rand = random.Random(getattr(kernel, "seed", 0))
        self._printk_file = ta.files[("bpf_trace", "bpf_trace_printk")]
        self._printk_event = self._printk_file.event

    def for_program(self) -> TraceEnv:
        """A copy for one program: the same kernel, its own attachment fields."""
        env = copy.copy(self)
        env.ip = env.cookie = env.nargs = 0
        env.func_returned = False
        return env

    def func_ip(self) -> int:
        return self.ip

    def attach_cookie(self) -> int:
        return self.cookie

    def func_nargs(self) -> int:
        return self.nargs

    def cpu_id(self) -> int:
        return self._this_cpu().id

    def kernel_stack(self) -> list[int]:
        """This CPU's kernel stack as return addresses, innermost first (bpf_get_stack*)."""
        return self.kernel.kprobes.call_stack()

    def hold_stacks(self) -> None:
        """Keep complete call stacks while this environment lives: a program reading them is
        attached. The hold goes with the environment (when its last program is detached)."""
        if not getattr(self, "_holds_stacks", False):
            self._holds_stacks = True
            kprobes = self.kernel.kprobes
            kprobes.hold_call_stacks()
            weakref.finalize(self, kprobes.release_call_stacks)

    def task(self) -> Any:
        return self._this_cpu().task

    def ktime_ns(self) -> int:
        return self._mono()

    def prandom_u32(self) -> int:
        return self._rand.getrandbits(32)

    def hash_ptr(self, addr: int) -> int:
        return self._symbols.hash_ptr(addr)

    def symbol(self, addr: int) -> tuple[str, int, int] | None:
        return self._symbols.lookup(addr)

    def trace_printk(self, msg: str) -> None:
        cpu = self._this_cpu()
        flags, depth = trace_ctx(cpu)
        record = self._printk_event.build((msg,), flags, depth, cpu.task.pid)
        self._printk_file.sink(record, cpu, record)

    def enable_printk(self) -> None:
        """The kernel enables bpf_trace_printk when a program using the helper is loaded."""
        if not self._printk_file.enabled:
            self._printk_file.set_enabled(True)


# ---------------------------------------------------------------------------------------------
# The attached program

@dataclass
class FilterStats:
    runs: int = 0
    errors: int = 0
    run_time_ns: int = 0          # counted where the caller times runs (bpf_stats)
    last_error: str = ""


@dataclass
class AttachedFilter:
    """A loaded, verified, compiled program attached to one event file.

    ``prog`` is the fast path (a plain function); calling the AttachedFilter calls it too.
    """
    name: str
    section: str
    insn_count: int
    engine: str
    prog_type: str
    origin: str                       # "elf" or "bpf-2013"
    maps: list[BpfMap]
    log: str
    prog: Callable[[bytes], int] = field(repr=False, default=lambda ctx: 0)
    stats: FilterStats = field(default_factory=FilterStats)
    event: str = ""
    btf: Any = field(repr=False, default=None)    # the object's BTF (map dumps), if any

    def __call__(self, ctx: bytes) -> int:
        return self.prog(ctx)

    def describe(self) -> str:
        """``cat filter``: one line naming the program, its size and how it runs."""
        how = "interpreted" if self.engine == "interp" else "jited"     # native code is jited too
        where = f" ({self.section})" if self.section else ""
        maps = f" maps {','.join(m.name for m in self.maps)}" if self.maps else ""
        return f"bpf {self.origin} {self.name}{where} {self.insn_count} insns {how}{maps}"


# ---------------------------------------------------------------------------------------------
# Loading

def is_kprobe_event(event: Any) -> bool:
    return isinstance(event, KprobeEvent)


def load_event_filter(data: bytes, event: Any, *, kernel: Any, ta: Any, engine: str = "jit",
                      maps: Sequence[BpfMap] | None = None, unlock: Any = None) -> AttachedFilter:
    """Load ``data`` as a BPF filter for ``event`` in trace array ``ta``.

    ``maps`` reuses the maps of an earlier load of the same object (programs of one object
    share its maps); otherwise they are created.  The verifier runs in a worker process
    (``verify_pool``) with ``unlock`` (the kernel lock the caller holds, if any) released
    meanwhile.  Raises ``BpfFilterError``.
    """
    loadermod.check_engine(engine)
    command = "bpf object"
    verify_with = pool_verifier(unlock)
    core_log: list[str] = []
    line_info: list[elfmod.LineInfo] = []
    try:
        if image2013.is_image(data):
            command = "bpf image"
            origin, loaded = "bpf-2013", _load_image(data, kernel, engine, maps, verify_with)
        else:
            obj = loadermod.open_object(data)
            # libbpf prints its CO-RE lines to the loader's stderr; here they go to dmesg
            core_log = [f"libbpf: {line}" for line in obj.core_log]
            spec = pick_program(obj.programs, event)
            line_info = spec.line_info
            command = f"{spec.name} ({spec.section})" if spec.section else spec.name
            origin = "elf"
            prog_type = loadermod.prog_type_of(spec.name, spec.section)
            _check_attach(spec.name, prog_type, event)
            loaded = loadermod.load_object_program(obj, spec, maps=maps, ncpus=kernel.ncpus,
                                                   prog_type=prog_type, event=event,
                                                   engine=engine, verify_with=verify_with)
    except LoadError as e:
        # A failed write is EACCES, but a verifier worker that timed out or died says so
        # (EAGAIN / EIO).
        err = e.errno if e.errno in (errno.EAGAIN, errno.EIO) else errno.EACCES
        log = e.log if e.stage != "verifier" else elfmod.annotate_verifier_log(e.log, line_info)
        log = "".join(line + "\n" for line in core_log) + log
        raise BpfFilterError(e.summary, log, command, err=err) from None
    for line in core_log:
        kernel.printk.printk(line)
    env = TraceEnv(kernel, ta)
    if is_kprobe_event(event) and not getattr(event, "offset", 0):
        # bpf_get_func_ip: the probed function's address when the probe is at its entry
        env.ip = kernel.kallsyms.address_of(getattr(event, "symbol", "") or "") or 0
    if calls_helper(loaded.insns, PRINTK_HELPERS):
        env.enable_printk()
    if calls_helper(loaded.insns, STACK_HELPERS):
        env.hold_stacks()
    attached = AttachedFilter(loaded.name, loaded.section, len(loaded.insns), loaded.engine,
                              loaded.prog_type, origin, loaded.maps, loaded.log,
                              event=f"{event.system}:{event.name}", btf=loaded.btf)
    run: Any = fast_path(loaded, env, attached.stats)   # a function, given two attributes below
    if origin == "bpf-2013" and not is_kprobe_event(event):
        run = _v1_tracepoint_path(run, event)
    run.describe = attached.describe       # what ``cat filter`` shows (tracefs reads it)
    run.attached = attached
    attached.prog = run
    return attached


def pool_verifier(unlock: Any) -> Callable[..., Any]:
    """The loader's verify step for filters: ``verify_pool`` (a worker process) with ``unlock``
    released meanwhile and the log kept to its last ``VERIFIER_LOG_SIZE`` bytes."""
    def verify_with(insns: Sequence[isa.Insn], *, strict_loops: bool = False, **kw: Any) -> Any:
        try:
            return verify_in_worker(insns, log_size=VERIFIER_LOG_SIZE, unlock=unlock, **kw)
        except VerifyWorkerError as e:
            raise LoadError(e.strerror, err=e.errno, stage="verifier") from None
    return verify_with


def _load_image(data: bytes, kernel: Any, engine: str, maps: Sequence[BpfMap] | None,
                verify_with: Callable[..., Any]) -> LoadedProgram:
    """A 2013 image: a kprobe-type program on a pt_regs context, no license to check."""
    try:
        image = image2013.parse_image(data)
    except image2013.ImageError as e:
        raise LoadError(e.message) from None
    specs = [elfmod.MapSpec(t.name, t.map_type, t.key_size, t.value_size, t.max_entries)
             for t in image.tables]
    map_objs = list(maps) if maps is not None else loadermod.create_maps(specs, kernel.ncpus)
    ctx, ctx_size = loadermod.context_for("kprobe")
    return loadermod.load(image.insns, prog_type="kprobe", name="bpf_image", maps=map_objs,
                          ctx=ctx, ctx_size=ctx_size, engine=engine, verify_with=verify_with)


def _check_attach(name: str, prog_type: str, event: Any) -> None:
    """perf_event_set_bpf_prog: a kprobe event takes kprobe programs, a tracepoint tracepoint
    programs (EINVAL otherwise)."""
    want = "kprobe" if is_kprobe_event(event) else "tracepoint"
    if prog_type != want:
        raise LoadError(f"prog '{name}' of type {prog_type} cannot be attached to {want} event "
                        f"{event.system}:{event.name}", err=errno.EINVAL)


def program_sections(data: bytes) -> list[str]:
    """The ``SEC()`` names of an ELF object's programs ([] for 2013 images and bad objects)."""
    if image2013.is_image(data):
        return []
    try:
        return [p.section for p in loadermod.open_object(data).programs]
    except LoadError:
        return []


def section_matches(section: str, event: Any) -> bool:
    """Whether ``SEC(section)`` names ``event`` exactly."""
    kind, _, rest = section.partition("/")
    if is_kprobe_event(event):
        return kind == ("kretprobe" if event.is_return else "kprobe") and rest == event.symbol
    return kind in ("tracepoint", "tp") and rest == f"{event.system}/{event.name}"


def _kind_matches(section: str, event: Any) -> bool:
    kind = section.partition("/")[0]
    if is_kprobe_event(event):
        return kind == ("kretprobe" if event.is_return else "kprobe")
    return kind in ("tracepoint", "tp")


def pick_program(programs: Sequence[Any], event: Any) -> Any:
    """The program for ``event``: its exact section, else the only program of the event's kind
    (kprobe/tracepoint), else the object's only program."""
    exact = [p for p in programs if section_matches(p.section, event)]
    if exact:
        return exact[0]
    same_kind = [p for p in programs if _kind_matches(p.section, event)]
    if len(same_kind) == 1:
        return same_kind[0]
    if len(programs) == 1:
        return programs[0]
    names = ", ".join(p.section or p.name for p in programs) or "none"
    raise BpfFilterError(f"no program for {event.system}:{event.name} in the object "
                         f"(sections: {names})", command="bpf object")


# ---------------------------------------------------------------------------------------------
# Fast paths: one plain function per attached program

def fast_path(loaded: LoadedProgram, env: TraceEnv, stats: FilterStats) -> Callable[[bytes], int]:
    """``prog(ctx) -> r0`` for ``loaded`` running in ``env``, counting runs and faults."""
    runner = loaded.runner
    if isinstance(runner, JitProgram):
        return _jit_path(runner, env, stats)
    return _interp_path(runner, env, stats)          # the interpreter or native code


def _jit_path(jp: JitProgram, env: TraceEnv, stats: FilterStats) -> Callable[[bytes], int]:
    jp.vm.env = env                    # helpers read it; constant for this attachment
    _bind_fast_helpers(jp, env)
    entry = jp.entry
    region = jp._ctx_region            # helpers that take a context pointer read through it
    start = region.start

    def prog(ctx: bytes) -> int:
        stats.runs += 1
        if region.buf is not ctx:      # a kprobe event passes its CPU's one pt_regs buffer
            region.buf = ctx
            region.end = start + len(ctx)
        try:
            return entry(ctx)
        except VMError as e:
            return _failed(stats, e)
    # what a caller generating its own hot path inlines (kernel_model/trace/probe_codegen.py):
    # the same steps as ``prog``, one call less per event
    prog.inline = {"entry": entry, "stats": stats, "region": region, "start": start,  # type: ignore[attr-defined]
                   "VMError": VMError, "failed": _failed}
    return prog


def _bind_fast_helpers(jp: JitProgram, env: TraceEnv) -> None:
    """Give this attachment's JIT code a ``bpf_probe_read_kernel`` bound to its objects (the
    BPF stack's region list, the kernel's page table): the usual call, a field of a live kernel
    object copied to a buffer on the BPF stack, without looking them up per call; anything
    else (a fault, a read across objects or regions, another destination, another
    environment) is the helper's own path (``helpers_tracing.probe_read_kernel``), so the
    result is the same."""
    general = helpers_tracing.probe_read_kernel
    stack = jp.vm.mem.regions[0]       # the JIT code's stack: bound once, never rebound
    sbuf, sstart, slen = stack.buf, stack.start, stack.end - stack.start
    kpages_get = env.kpages.get

    def probe_read_kernel(vm: Any, r1: int, r2: int, r3: int, r4: int = 0, r5: int = 0) -> int:
        region = kpages_get(r3 >> PAGE_SHIFT)
        if region is not None and vm.env is env and r2 > 0:
            start = r1 - sstart
            off = r3 - region.base
            end = off + r2
            if 0 <= start <= slen - r2 and end <= region.size and r3 >= KERNEL_HALF:
                live = region.live
                if live is None or ((first := off // region.obj_size)
                                    == (end - 1) // region.obj_size < len(live) and live[first]):
                    sbuf[start:start + r2] = region.buf[off:end]
                    return 0
        return general(vm, r1, r2, r3, r4, r5)

    for fn in jp.functions.values():
        g = fn.__globals__
        for name, value in list(g.items()):
            if name.startswith("_h") and value is general:
                g[name] = probe_read_kernel


def _interp_path(interp: Interpreter | NativeProgram, env: TraceEnv,
                 stats: FilterStats) -> Callable[[bytes], int]:
    def prog(ctx: bytes) -> int:
        stats.runs += 1
        try:
            return interp(ctx, env=env)
        except VMError as e:
            return _failed(stats, e)
    return prog


def _failed(stats: FilterStats, err: Exception) -> int:
    """A run that faulted (the verifier cannot see everything the model allows): the event
    is dropped and the error counted."""
    stats.errors += 1
    stats.last_error = str(err)
    return 0


def _v1_tracepoint_path(run: Callable[[bytes], int], event: Any) -> Callable[[bytes], int]:
    """A 2013 program on a tracepoint: a pt_regs whose si/dx/cx hold the record's leading
    fields (see the module docstring)."""
    readers = [(f.offset, min(f.size, 8), f.is_signed) for f in event.fields[:3]]
    slots = V1_TRACEPOINT_ARG_OFFSETS[:len(readers)]
    pack = struct.Struct("<Q").pack_into

    def prog(record: bytes) -> int:
        regs = bytearray(PT_REGS_SIZE)
        for slot, (off, size, signed) in zip(slots, readers, strict=False):
            pack(regs, slot, int.from_bytes(record[off:off + size], "little",
                                            signed=signed) & M64)
        return run(bytes(regs))
    return prog
