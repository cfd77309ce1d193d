"""kprobes on the modelled kernel's functions.

Every function in kallsyms has a ``KprobeSite``. A modelled function is written as::

    kp = self._kp_netdev_alloc_skb             # cached at init
    if kp.active:                              # the only cost when nothing probes it
        return kp.call(self._netdev_alloc_skb, dev, length, gfp)
    return self._netdev_alloc_skb(dev, length, gfp)

``call`` builds an x86-64 ``pt_regs`` (168 bytes, ``asm/ptrace.h``) with the arguments in di, si,
dx, cx, r8, r9 (an argument that is a model object passes its ``addr``; booleans pass 0/1),
``ip`` = the probed address, ``sp`` inside this CPU's kernel stack, then runs the entry handlers,
the function, and the return handlers with ``ax`` = the return value (``addr`` of a returned
object, 0 for None) and ``ip`` = the return address.

Handlers receive a ``PtRegs``: register values as attributes and the 168 bytes as ``raw`` (what a
BPF kprobe program gets as its context), a snapshot they may keep. Return handlers also see
``func`` (the probed address) and ``ret_ip``. A handler registered with ``raw=True`` gets the
CPU's live pt_regs ``bytearray`` instead (no copy: the hot path of kprobe events and their BPF
programs); it is valid during the call only and must not be written; ``PtRegs(bytes(regs), func,
ret_ip)`` makes a snapshot of it. A raw entry probe may also have an ``args_handler``
(``Kprobe.set_handler``): the same work from the function's C arguments, which a site with that
probe alone at the function's start runs instead of writing pt_regs (a kprobe event whose fields
read only argument registers and ``ip``). A handler that re-enters a probed function from inside a
handler is not run again: the hit counts as missed (``nmissed``), as the kernel does with
recursion.

Each CPU has one pt_regs buffer, written in place per hit: the argument registers through ``ip``
with one ``pack_into`` (the slots the call leaves unused are zeroed), the rest (cs, ss, flags, sp)
set once.

Call stacks (for stack traces: the ``stacktrace`` trigger and option, ``bpf_get_stackid``,
``bpf_get_stack``, the stack tracer, kretprobe return addresses). Each CPU has a stack of the
modelled functions running on it: ``call`` pushes its site while the function runs. While no
one needs stacks an idle site is skipped by its caller (one ``.active`` test), so the stacks
are complete only while a user holds them:

* ``kprobes.hold_call_stacks()`` / ``release_call_stacks()``: a counted hold; while held every
  site is active (the cost of one Python call per modelled function). Return probes and the
  function tracers hold them themselves;
* ``kprobes.call_stack(cpu=None, here="")`` → ``list[int]``: return addresses, innermost first
  (the point in the running function, then each caller's return address), as
  ``stack_trace_save`` fills ``entries``; symbolize with ``kallsyms.lookup``;
* ``kprobes.call_stack_functions(cpu=None)`` → the functions' start addresses, innermost first;
* ``kprobes.caller_address(stack, site)``: where ``site`` returns to in its caller;
* ``kprobes.frame_size(frame)``: the bytes of stack a function's frame takes (stack tracer);
* ``with kprobes.frame("skb_bench_run"):`` runs the body as called from a kernel function the
  model has no site for (so the outermost modelled function has a caller).

A return address is ``caller + off`` with ``off`` fixed per (caller, callee) pair
(``call_offset``): kretprobe lines read ``(caller+0x4d <- func)`` as on a kernel.

Symbols of a real 6.18 build that the model never runs (``kallsyms.real_count``) can be probed:
the probe gets a dormant site and never fires, as on a kernel where that path is idle.

The model has no instructions, so a probe at ``sym+off`` (0 < off < size) fires at the entry
with ``ip = sym + off``; return probes need ``off == 0`` (the kernel refuses others too). An
``off`` past the function's end names the address there: the probe goes to the symbol
containing it (``_kprobe_addr``). ``list_text`` is debugfs's ``kprobes/list``; ``optimization``
is the ``debug.kprobes-optimization`` sysctl.
"""
from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

from tracesim.kernel_model.kallsyms import NOTRACE, Kallsyms
from tracesim.kernel_model.mm.memory import Memory

ENOENT, EINVAL, EEXIST = 2, 22, 17

PT_REGS_NAMES = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx",
                 "dx", "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss")
PT_REGS_OFFSETS = {name: 8 * i for i, name in enumerate(PT_REGS_NAMES)}
PT_REGS_SIZE = 8 * len(PT_REGS_NAMES)
ARG_REGS = ("di", "si", "dx", "cx", "r8", "r9")
_PT_REGS = struct.Struct("<21Q")
_ARG_INDEX = tuple(PT_REGS_NAMES.index(r) for r in ARG_REGS)
_IP, _SP, _CS, _SS, _FLAGS = (PT_REGS_NAMES.index(r) for r in ("ip", "sp", "cs", "ss", "flags"))
_IP_OFFSET, _AX_OFFSET = PT_REGS_OFFSETS["ip"], PT_REGS_OFFSETS["ax"]
# the registers a call writes: r9 .. ip are contiguous in pt_regs (ax and orig_ax among them)
_CALL_REGS = PT_REGS_NAMES[PT_REGS_NAMES.index("r9"):_IP + 1]
_CALL_REGS_OFFSET = PT_REGS_OFFSETS["r9"]
_CALL_REGS_PACK = struct.Struct(f"<{len(_CALL_REGS)}Q").pack_into
_U64_PACK = struct.Struct("<Q").pack_into
KERNEL_CS, KERNEL_DS = 0x10, 0x18
X86_EFLAGS_IF = 0x200
THREAD_SIZE = 16384
MASK64 = (1 << 64) - 1
KPROBE_HASH_BITS = 6
GOLDEN_RATIO_64 = 0x61C8864680B583EB
JMP32_INSN_SIZE = 5


def _hash_ptr(value: int, bits: int) -> int:
    """hash_ptr on 64-bit: hash_64 (multiply by GOLDEN_RATIO_64, keep the top ``bits``)."""
    return ((value * GOLDEN_RATIO_64) & MASK64) >> (64 - bits)

# within_kprobe_blacklist: NOKPROBE_SYMBOL() functions and the .kprobes.text / .entry.text /
# .noinstr.text sections of a 6.18 x86-64 kernel (a sample of what /sys/kernel/debug/kprobes/
# blacklist lists); register_kprobe refuses them with EINVAL.
KPROBE_BLACKLIST = frozenset({
    "do_int3", "do_int3_user", "exc_int3", "exc_debug", "exc_nmi", "exc_page_fault",
    "exc_general_protection", "notify_die", "atomic_notifier_call_chain",
    "notifier_call_chain", "kprobe_int3_handler", "kprobe_debug_handler",
    "kprobe_fault_handler", "kprobe_exceptions_notify", "kprobe_ftrace_handler",
    "pre_handler_kretprobe", "kretprobe_trampoline_handler", "arch_rethook_trampoline",
    "arch_rethook_trampoline_callback", "rethook_trampoline_handler", "optimized_callback",
    "opt_pre_handler", "aggr_pre_handler", "aggr_post_handler", "kprobe_dispatcher",
    "kretprobe_dispatcher", "kprobe_trace_func", "kretprobe_trace_func", "kprobe_perf_func",
    "kretprobe_perf_func", "process_fetch_insn", "fetch_store_string", "fetch_store_strlen",
    "native_load_idt", "native_set_debugreg", "native_get_debugreg", "fixup_bad_iret",
    "sync_regs", "do_debug", "oops_begin", "oops_end", "__die", "entry_SYSCALL_64",
    "asm_exc_int3", "asm_exc_page_fault", "error_entry", "paranoid_entry", "paranoid_exit",
    "sysvec_apic_timer_interrupt", "ftrace_ops_list_func", "arch_ftrace_ops_list_func",
    "perf_trace_buf_alloc", "perf_trace_buf_update", "preempt_schedule",
    "preempt_schedule_notrace", "__do_softirq", "irqentry_enter", "irqentry_exit",
})


class KprobeError(Exception):
    """register_kprobe refused: ``errno`` is the kernel's (ENOENT unknown symbol, EINVAL ...)."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno


class PtRegs:
    """A ``struct pt_regs`` snapshot: ``raw`` (168 bytes), ``values`` (21 u64 in struct order,
    unpacked on first use) and register values as attributes."""

    __slots__ = ("raw", "func", "ret_ip", "_values")

    def __init__(self, raw: bytes | bytearray | memoryview, func: int = 0, ret_ip: int = 0) -> None:
        self.raw = raw          # a snapshot, or the live buffer for a reader done within the hit
        self.func = func
        self.ret_ip = ret_ip
        self._values: tuple[int, ...] | None = None

    @property
    def values(self) -> tuple[int, ...]:
        values = self._values
        if values is None:
            values = self._values = _PT_REGS.unpack(self.raw)
        return values

    def __getattr__(self, name: str) -> int:
        try:
            return self.values[PT_REGS_NAMES.index(name)]
        except ValueError:
            raise AttributeError(name) from None

    def arg(self, n: int) -> int:
        """The n-th function argument, 1-based (``$argN``)."""
        return self.values[_ARG_INDEX[n - 1]]


def reg_value(v: Any) -> int:
    """What a C argument holds in a register: an object's address, an int as u64."""
    if type(v) is int:                 # the common case first (sizes, flags, reasons)
        return v & MASK64
    if v is None:
        return 0
    addr = getattr(v, "addr", None)
    if addr is not None:
        return addr
    return int(v) & MASK64


def _call_regs_writer(nargs: int) -> Callable[[bytearray, int, tuple], None]:
    """``write(regs, ip, args)``: the first ``nargs`` of ``args`` into di, si, dx, cx, r8, r9,
    every other register from r9 to ip zeroed, and ``ip``, as one ``pack_into``.

    Generated per argument count so the conversion of int arguments is inline (only objects
    call ``reg_value``).
    """
    slot = {reg: i for i, reg in enumerate(ARG_REGS[:nargs])}
    lines = [f"    a{i} = args[{i}]" for i in range(nargs)]
    # an object's address without a call: ``reg_value`` returns ``addr`` when there is one
    values = ["ip" if reg == "ip" else
              f"(a{slot[reg]} & MASK64 if type(a{slot[reg]}) is int else "
              f"g if (g := getattr(a{slot[reg]}, 'addr', None)) is not None "
              f"else reg_value(a{slot[reg]}))"
              if reg in slot else "0" for reg in _CALL_REGS]
    source = ("def write(regs, ip, args):\n" + "".join(line + "\n" for line in lines)
              + f"    pack(regs, {_CALL_REGS_OFFSET}, {', '.join(values)})\n")
    env: dict[str, Any] = {"pack": _CALL_REGS_PACK, "reg_value": reg_value, "MASK64": MASK64}
    exec(compile(source, f"<pt_regs writer {nargs}>", "exec"), env)
    return env["write"]


def _handler_then_func(setup: list[str], handler_call: str, names: str) -> str:
    """The tail of a generated site call: the probe's handler run once unless a handler is
    already running on the way (then a miss, as kprobe_running()), then the function itself
    with the C arguments ``names`` and the model's extra ones."""
    sep = ", " if names else ""
    return ("        if kps.in_handler:\n"
            "            probe.nmissed += 1\n"
            "        else:\n"
            + "".join(f"            {line}\n" for line in setup)
            + "            kps.in_handler = True\n"
            "            try:\n"
            "                probe.nhit += 1\n"
            f"                {handler_call}\n"
            "            finally:\n"
            "                kps.in_handler = False\n"
            "        if more:\n"
            f"            return func({names}{sep}*more)\n"
            f"        return func({names})\n"
            "    return call\n")


def _one_probe_call_maker(nargs: int) -> Callable[..., Callable[..., Any]]:
    """``KprobeSite._one_probe_call``'s closure with the pt_regs writer of ``nargs``
    arguments inline (``_call_regs_writer``'s one ``pack_into``) and the CPU read as
    ``machine.current.id``. The C arguments are named parameters (no tuple built and taken
    apart per call); a call with fewer than ``nargs`` goes through the writer for them, the
    model's own extra arguments pass through ``more``."""
    slot = {reg: i for i, reg in enumerate(ARG_REGS[:nargs])}
    values = ["addr" if reg == "ip" else
              f"(a{slot[reg]} & MASK64 if type(a{slot[reg]}) is int else "
              f"g if (g := getattr(a{slot[reg]}, 'addr', None)) is not None "
              f"else reg_value(a{slot[reg]}))"
              if reg in slot else "0" for reg in _CALL_REGS]
    params = "".join(f", a{i}=MISSING" for i in range(nargs))
    names = ", ".join(f"a{i}" for i in range(nargs))
    given = f"({names}{',' if nargs == 1 else ''})" if nargs else "()"
    last = f"a{nargs - 1} is MISSING" if nargs else "False"
    source = (
        "def make(kps, probe, all_regs, machine, addr, call_probed, writers):\n"
        f"    def call(func{params}, *more):\n"
        f"        if {last}:            # fewer arguments than the function's C ones\n"
        f"            args = tuple(a for a in {given} if a is not MISSING)\n"
        "            if kps.ftrace is not None:\n"
        "                return call_probed(func, *args)\n"
        "            if kps.in_handler:\n"
        "                probe.nmissed += 1\n"
        "            else:\n"
        "                kps.in_handler = True\n"
        "                try:\n"
        "                    regs = all_regs[machine.current.id]\n"
        "                    writers[len(args)](regs, addr, args)\n"
        "                    probe.nhit += 1\n"
        "                    probe.handler(regs)\n"
        "                finally:\n"
        "                    kps.in_handler = False\n"
        "            return func(*args)\n"
        "        if kps.ftrace is not None:\n"
        f"            return call_probed(func, {names}{', ' if nargs else ''}*more)\n"
        + _handler_then_func(["regs = all_regs[machine.current.id]",
                              f"pack(regs, {_CALL_REGS_OFFSET}, {', '.join(values)})"],
                             "probe.handler(regs)", names))
    env: dict[str, Any] = {"pack": _CALL_REGS_PACK, "reg_value": reg_value, "MASK64": MASK64,
                           "MISSING": _MISSING}
    exec(compile(source, f"<kprobe call {nargs}>", "exec"), env)
    return env["make"]


_MISSING: Any = object()       # an argument the caller did not pass


def _args_probe_call_maker(nargs: int) -> Callable[..., Callable[..., Any]]:
    """``call`` for a site whose one probe has an ``args_handler``: the handler gets the C
    arguments, no pt_regs is written. Anything unusual (fewer arguments, a function tracer
    hooked in, the args handler gone) is ``regs_call``'s (``_one_probe_call_maker``)."""
    params = "".join(f", a{i}=MISSING" for i in range(nargs))
    names = ", ".join(f"a{i}" for i in range(nargs))
    last = f"a{nargs - 1} is MISSING or " if nargs else ""
    source = (
        "def make(kps, probe, regs_call):\n"
        f"    def call(func{params}, *more):\n"
        f"        if {last}kps.ftrace is not None or (handler := probe.args_handler) is None:\n"
        f"            return regs_call(func, {names}{', ' if nargs else ''}*more)\n"
        + _handler_then_func([], f"handler({names})", names))
    env: dict[str, Any] = {"MISSING": _MISSING}
    exec(compile(source, f"<kprobe args call {nargs}>", "exec"), env)
    return env["make"]


def _plain_cpu_id_owner(this_cpu_id: Callable[[], int]) -> Any:
    """The machine whose own ``smp_processor_id`` (``current.id``) ``this_cpu_id`` is, so a
    hot path can read ``machine.current.id`` without the call; None for anything else."""
    owner = getattr(this_cpu_id, "__self__", None)
    func = getattr(this_cpu_id, "__func__", None)
    if owner is None or func is None or func.__name__ != "smp_processor_id":
        return None
    code = func.__code__
    return owner if code.co_names == ("current", "id") and hasattr(owner, "current") else None


_CALL_REGS_WRITERS = tuple(_call_regs_writer(n) for n in range(len(ARG_REGS) + 1))
_ONE_PROBE_CALLS = tuple(_one_probe_call_maker(n) for n in range(len(ARG_REGS) + 1))
_ARGS_PROBE_CALLS = tuple(_args_probe_call_maker(n) for n in range(len(ARG_REGS) + 1))


class Kprobe:
    """A registered probe (what ``register_kprobe`` returns; pass it to ``unregister_kprobe``)."""

    __slots__ = ("site", "handler", "retprobe", "offset", "raw", "nhit", "nmissed",
                 "args_handler")

    def __init__(self, site: KprobeSite, handler: Callable[[Any], Any], retprobe: bool,
                 offset: int, raw: bool = False) -> None:
        self.site = site
        self.handler = handler
        self.retprobe = retprobe
        self.offset = offset
        self.raw = raw
        self.nhit = 0
        self.nmissed = 0
        # the same handler taking the function's C arguments instead of pt_regs (see
        # ``set_handler``); None: the handler reads pt_regs
        self.args_handler: Callable[..., Any] | None = None

    @property
    def symbol(self) -> str:
        return self.site.name

    @property
    def addr(self) -> int:
        """The probed address (``kprobe.addr``)."""
        return self.site.addr + self.offset

    def set_handler(self, handler: Callable[[Any], Any],
                    args_handler: Callable[..., Any] | None = None) -> None:
        """Replace the handler. ``args_handler(arg0, .., argN-1)``, when given, does what
        ``handler`` does from the probed function's C arguments (what it reads of pt_regs is
        those arguments' registers and ``ip``; it writes the CPU's pt_regs itself should it need
        them): a raw entry probe alone at the function's start then runs it without the site
        writing pt_regs for every call."""
        self.handler = handler
        self.args_handler = args_handler if self.raw and not self.retprobe else None
        self.site.refresh()


class KprobeSite:
    """The probe point of one function: ``active`` is the flag its call site checks."""

    __slots__ = ("name", "addr", "size", "nargs", "active", "entry", "ret", "_kprobes",
                 "_write_regs", "call", "return_ips")

    def __init__(self, kprobes: Kprobes, name: str, addr: int, size: int, nargs: int) -> None:
        self._kprobes = kprobes
        self.name = name
        self.addr = addr
        self.size = size
        self.nargs = nargs
        self.active = False
        self.entry: tuple[Kprobe, ...] = ()
        self.ret: tuple[Kprobe, ...] = ()
        self._write_regs = _CALL_REGS_WRITERS[nargs]
        # where this function returns to, by caller (a stack frame)
        self.return_ips: dict[Any, int] = {}
        # ``call(func, *args)``: the plain form while no probe is registered here
        self.call: Callable[..., Any] = self._call_unprobed

    def refresh(self) -> None:
        """After a probe or a stack hold came or went: ``active`` and the ``call`` form.

        One raw entry probe at the function's address, no return probe (a kprobe event, a BPF
        kprobe program) and no stack hold (so no function tracer: they all hold the stacks)
        is the common case: ``call`` is then a closure that runs just that probe
        (``_one_probe_call``), not ``_call_probed``'s general form."""
        kps = self._kprobes
        entry = self.entry
        probed = bool(entry or self.ret)
        self.active = probed or kps.stack_holds > 0
        if not probed:
            self.call = kps.unprobed_call(self) if kps.stack_holds else self._call_unprobed
        elif (len(entry) == 1 and not self.ret and entry[0].raw and not entry[0].offset
              and not kps.stack_holds):
            self.call = self._one_probe_call(entry[0])
        else:
            self.call = self._call_probed

    def _one_probe_call(self, probe: Kprobe) -> Callable[..., Any]:
        """``call`` for a site with one raw entry probe while no stack is held: the registers
        written, the probe run, the function called; nothing pushed on the call stack (no one
        reads it without a hold). Should a function tracer hook in without a hold, the
        general form runs."""
        kps = self._kprobes
        addr, nargs, write_all, all_regs = self.addr, self.nargs, self._write_regs, kps.regs
        call_probed = self._call_probed
        this_cpu_id = kps.this_cpu_id
        machine = _plain_cpu_id_owner(this_cpu_id)
        if machine is not None:         # the machine's smp_processor_id and the writer, inline
            regs_call = _ONE_PROBE_CALLS[nargs](kps, probe, all_regs, machine, addr, call_probed,
                                                _CALL_REGS_WRITERS)
            if probe.args_handler is None:
                return regs_call
            return _ARGS_PROBE_CALLS[nargs](kps, probe, regs_call)

        def call(func: Callable[..., Any], *args: Any) -> Any:
            if kps.ftrace is not None:
                return call_probed(func, *args)
            if kps.in_handler:
                probe.nmissed += 1
            else:
                regs = all_regs[this_cpu_id()]
                (write_all if len(args) >= nargs else _CALL_REGS_WRITERS[len(args)])(
                    regs, addr, args)
                kps.in_handler = True
                try:
                    probe.nhit += 1
                    probe.handler(regs)
                finally:
                    kps.in_handler = False
            return func(*args)
        return call

    def _call_unprobed(self, func: Callable[..., Any], *args: Any) -> Any:
        """``call`` without probes: the function on the stack, the function tracers' hooks."""
        kps = self._kprobes
        cpu = kps.this_cpu_id()
        stack = kps.stacks[cpu]
        ftrace = kps.ftrace
        token = ftrace.entry(self, stack, cpu) if ftrace is not None else None
        stack.append(self)
        try:
            result = func(*args)
        finally:
            stack.pop()
        if token is not None:
            ftrace.exit(self, stack, cpu, token)
        return result

    def _call_probed(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run ``func(*args)`` with this site's probes around it (``call`` while any is here).

        The first ``nargs`` arguments are the C function's, put in registers; any further ones
        are the model's own (a call site address, a parsed header) and stay out of pt_regs.
        The function is on this CPU's call stack while it runs; the function tracers
        (``Kprobes.ftrace``) see its entry and return.
        """
        kps = self._kprobes
        cpu = kps.this_cpu_id()
        stack = kps.stacks[cpu]
        entry = self.entry
        if entry:
            if kps.in_handler:
                for p in entry:
                    p.nmissed += 1
            else:
                self._run_entry(kps, entry, kps.regs[cpu], args)
        ftrace = kps.ftrace
        token = ftrace.entry(self, stack, cpu) if ftrace is not None else None
        stack.append(self)
        try:
            result = func(*args)
        finally:
            stack.pop()
        if token is not None:
            ftrace.exit(self, stack, cpu, token)
        if self.ret:
            if kps.in_handler:
                for p in self.ret:
                    p.nmissed += 1
            else:
                self._run_return(kps, kps.regs[cpu], args, result, kps.caller_address(stack, self))
        return result

    def _run_entry(self, kps: Kprobes, entry: tuple[Kprobe, ...], regs: bytearray,
                   args: tuple) -> None:
        write = self._write_regs if len(args) >= self.nargs else _CALL_REGS_WRITERS[len(args)]
        addr = self.addr
        write(regs, addr, args)
        kps.in_handler = True
        try:
            for p in entry:
                p.nhit += 1
                if p.offset:
                    _U64_PACK(regs, _IP_OFFSET, addr + p.offset)
                p.handler(regs if p.raw else PtRegs(bytes(regs), addr))
                if p.offset:
                    _U64_PACK(regs, _IP_OFFSET, addr)
        finally:
            kps.in_handler = False

    def _run_return(self, kps: Kprobes, regs: bytearray, args: tuple, result: Any,
                    ret_ip: int) -> None:
        """The return probes, with ``ip`` = the return address into the caller (what the
        kretprobe trampoline restores) and ``ax`` = the return value."""
        write = self._write_regs if len(args) >= self.nargs else _CALL_REGS_WRITERS[len(args)]
        write(regs, ret_ip, args)
        _U64_PACK(regs, _AX_OFFSET, reg_value(result))
        kps.in_handler = True
        try:
            for p in self.ret:
                p.nhit += 1
                p.handler(regs if p.raw else PtRegs(bytes(regs), self.addr, ret_ip))
        finally:
            kps.in_handler = False


class Kprobes:
    """register_kprobe / unregister_kprobe over kallsyms; one site per function."""

    def __init__(self, kallsyms: Kallsyms, mem: Memory | None = None, nr_cpus: int = 1,
                 this_cpu_id: Callable[[], int] = lambda: 0) -> None:
        self.kallsyms = kallsyms
        self.in_handler = False
        self.sites: dict[str, KprobeSite] = {
            s.name: KprobeSite(self, s.name, s.addr, s.size, s.nargs)
            for s in kallsyms if s.nargs is not None}
        # sites of functions the model never runs (probes there are accepted and never fire)
        self.dormant: dict[str, KprobeSite] = {}
        # every registered probe, oldest first (kprobes/list)
        self.registered: list[Kprobe] = []
        # sysctl debug.kprobes-optimization (1 on a kernel with CONFIG_OPTPROBES)
        self.optimization = True
        # the return address of an outermost modelled function when no frame() names its
        # caller (0: unknown)
        self.return_address = 0
        # per-CPU call stacks of modelled functions (KprobeSite, or a kallsyms Symbol pushed
        # by frame()), outermost first; complete while stack users hold them
        self.stacks: list[list[Any]] = [[] for _ in range(nr_cpus)]
        self.stack_holds = 0
        # the function tracers' hook: an object with entry(site, stack, cpu) -> token | None
        # and exit(site, stack, cpu, token), optionally site_call(site) -> a site's own
        # ``call`` (see unprobed_call); None when no function tracer runs. Set it with
        # set_ftrace, so the sites pick their call form again.
        self.ftrace: Any = None
        self._call_offsets: dict[tuple[str, str], int] = {}
        # per-CPU kernel stacks, so $stackN fetches read mapped memory
        self._stack_tops = [0] * nr_cpus
        if mem is not None:
            region = mem.map(THREAD_SIZE * nr_cpus, "kernel stacks")
            self._stack_tops = [region.base + (n + 1) * THREAD_SIZE for n in range(nr_cpus)]
        # per-CPU pt_regs, written in place by each hit (cs, ss, flags, sp stay as set here)
        self.regs = [self._template(cpu) for cpu in range(nr_cpus)]
        self.this_cpu_id = this_cpu_id

    def site(self, name: str) -> KprobeSite:
        """The probe point of function ``name`` (for a call site to cache)."""
        return self.sites[name]

    # -- call stacks ---------------------------------------------------------------------------
    def hold_call_stacks(self) -> None:
        """A user of call stacks starts: every site runs through ``call`` from now on, so the
        per-CPU stacks hold every modelled function (costs a Python call per function)."""
        self.stack_holds += 1
        if self.stack_holds == 1:
            self._update_active()

    def release_call_stacks(self) -> None:
        """The matching end of ``hold_call_stacks``."""
        self.stack_holds -= 1
        if self.stack_holds == 0:
            self._update_active()

    def set_ftrace(self, hook: Any) -> None:
        """Set the function tracers' hook (``ftrace``) and let every site pick its ``call``
        for it (``unprobed_call``)."""
        self.ftrace = hook
        self._update_active()

    def unprobed_call(self, site: KprobeSite) -> Callable[..., Any]:
        """``call`` of a site without probes while the stacks are held: the hook's own form
        for that site when it makes one (``ftrace.site_call(site)``: the function tracers'
        per-function fast path, the kernel's patched mcount call), else ``_call_unprobed``."""
        make = getattr(self.ftrace, "site_call", None)
        call = make(site) if make is not None else None
        return call if call is not None else site._call_unprobed

    def _update_active(self) -> None:
        for site in self.sites.values():
            site.refresh()

    def frame(self, name: str) -> _Frame:
        """``with kprobes.frame("skb_bench_run"):`` — the body runs as called from the kernel
        function ``name`` (a kallsyms symbol the model has no site for: a module's loop, the
        softirq handler), so stacks and return addresses continue into it."""
        return _Frame(self, self.kallsyms.symbol(name))

    def call_offset(self, caller: Any, callee: str) -> int:
        """Where in ``caller`` the call to ``callee`` returns to: a fixed, plausible offset
        (the model has no instructions), the same for every call of that pair."""
        key = (caller.name, callee)
        off = self._call_offsets.get(key)
        if off is None:
            room = caller.size - 0x20
            off = 0x10 + zlib.crc32(f"{caller.name}>{callee}".encode()) % room if room > 0 \
                else caller.size // 2
            self._call_offsets[key] = off
        return off

    def frame_size(self, frame: Any) -> int:
        """The stack frame ``frame``'s function uses, in bytes: fixed per function, 32 to
        192 (the model has no prologues to measure)."""
        return 16 * (2 + zlib.crc32(frame.name.encode()) % 11)

    def caller_address(self, stack: list[Any], callee: Any) -> int:
        """The return address of ``callee`` called from the top of ``stack`` (its caller),
        or ``return_address`` when the stack is empty."""
        if not stack:
            return self.return_address
        caller = stack[-1]
        ip = callee.return_ips.get(caller)
        if ip is None:
            ip = callee.return_ips[caller] = caller.addr + self.call_offset(caller, callee.name)
        return ip

    def call_stack(self, cpu: int | None = None, here: str = "") -> list[int]:
        """The kernel stack of ``cpu`` (default: this CPU) as return addresses, innermost
        first, as ``stack_trace_save`` gives them: the point in the running function (the call
        of ``here``, e.g. a tracepoint name), then each caller's return address. Empty when
        no modelled function runs. Complete only while ``hold_call_stacks`` is in effect."""
        stack = self.stacks[self.this_cpu_id() if cpu is None else cpu]
        out: list[int] = []
        callee = here or "<here>"
        for frame in reversed(stack):
            out.append(frame.addr + self.call_offset(frame, callee))
            callee = frame.name
        return out

    def call_stack_functions(self, cpu: int | None = None) -> list[int]:
        """The function addresses on ``cpu``'s stack, innermost first."""
        stack = self.stacks[self.this_cpu_id() if cpu is None else cpu]
        return [frame.addr for frame in reversed(stack)]

    def _template(self, cpu: int) -> bytearray:
        values = [0] * len(PT_REGS_NAMES)
        values[_CS] = KERNEL_CS
        values[_SS] = KERNEL_DS
        values[_FLAGS] = X86_EFLAGS_IF
        top = self._stack_tops[cpu]
        values[_SP] = top - 256 if top else 0
        return bytearray(_PT_REGS.pack(*values))

    def register_kprobe(self, symbol: str, handler: Callable[[Any], Any],
                        retprobe: bool = False, offset: int = 0, raw: bool = False) -> Kprobe:
        """Probe ``symbol+offset``; ``retprobe`` probes the return instead of the entry.
        ``handler`` gets a ``PtRegs`` snapshot, or with ``raw`` the CPU's live pt_regs buffer.

        As ``_kprobe_addr`` does, ``symbol+offset`` past the end of ``symbol`` is the address
        it names: the probe goes to the symbol containing it (ENOENT where none does)."""
        if symbol in KPROBE_BLACKLIST:
            raise KprobeError(EINVAL, f"{symbol} is on the kprobe blacklist")
        site = self.sites.get(symbol) or self._dormant_site(symbol)
        if offset < 0:
            raise KprobeError(EINVAL, f"offset {offset} is before {symbol}")
        if offset >= site.size:
            addr = site.addr + offset
            sym = self.kallsyms.find(addr)
            if sym is None:
                raise KprobeError(ENOENT, f"0x{addr:x} is in no symbol")
            if sym.name in KPROBE_BLACKLIST:
                raise KprobeError(EINVAL, f"{sym.name} is on the kprobe blacklist")
            site = self._site_of(sym)
            offset = addr - sym.addr
        if retprobe and offset:
            raise KprobeError(EINVAL, "a return probe must be at the function entry")
        probe = Kprobe(site, handler, retprobe, offset, raw)
        if retprobe:
            site.ret += (probe,)
        else:
            site.entry += (probe,)
        self.registered.append(probe)
        site.refresh()
        if retprobe:                    # the caller's address needs complete stacks
            self.hold_call_stacks()
        return probe

    def _site_of(self, sym: Any) -> KprobeSite:
        """The site of the kallsyms symbol ``sym`` (a modelled function's, or a dormant one)."""
        site = self.sites.get(sym.name)
        if site is not None and site.addr == sym.addr:
            return site
        key = sym.name if self.kallsyms.address_of(sym.name) == sym.addr else \
            f"{sym.name}@{sym.addr:x}"
        site = self.dormant.get(key)
        if site is None:
            if sym.type not in "Tt" or not sym.size:
                raise KprobeError(EINVAL, f"{sym.name} is not kernel text")
            site = self.dormant[key] = KprobeSite(self, sym.name, sym.addr, sym.size, 0)
        return site

    def _dormant_site(self, symbol: str) -> KprobeSite:
        """A site for a kernel function the model never runs: probes there never fire."""
        site = self.dormant.get(symbol)
        if site is None:
            try:
                sym = self.kallsyms.symbol(symbol)
            except KeyError:
                raise KprobeError(ENOENT, f"symbol {symbol!r} not found") from None
            site = self._site_of(sym)
        return site

    # -- /sys/kernel/debug/kprobes/list ------------------------------------------------------
    def optimized(self, probe: Kprobe) -> bool:
        """kprobe_optimized on x86-64: the probe's int3 replaced by a jump. The model's
        optimizer runs at once (the kernel's after OPTIMIZE_DELAY), for an entry probe off
        the function's ftrace location (its entry) whose 5-byte jump fits in the function,
        while ``optimization`` (sysctl debug.kprobes-optimization) is on. Every probe at one
        address shares the state, as the kernel's aggregated probe does; a return probe's
        probe is at the entry, where ftrace handles it."""
        return (self.optimization and probe.offset != 0
                and probe.site.size - probe.offset >= JMP32_INSN_SIZE)

    def list_text(self) -> str:
        """``kprobes/list`` (show_kprobe_addr / report_probe): the probes in kprobe_table
        order (bucket ``hash_ptr(addr, KPROBE_HASH_BITS)``, the newest first in a bucket and
        at an address), each ``ADDR  TYPE  SYM+0xOFF  MOD FLAGS``: TYPE ``k``, or ``r`` for
        a return probe; FLAGS ``[OPTIMIZED]`` or ``[FTRACE]`` (a probe at a function's entry,
        its ftrace location)."""
        buckets: dict[int, list[Kprobe]] = {}
        for probe in self.registered:
            buckets.setdefault(_hash_ptr(probe.addr, KPROBE_HASH_BITS), []).append(probe)
        lines = []
        for bucket in sorted(buckets):
            by_addr: dict[int, list[Kprobe]] = {}
            for probe in reversed(buckets[bucket]):
                by_addr.setdefault(probe.addr, []).append(probe)
            for addr, probes in by_addr.items():
                hit = self.kallsyms.find(addr)
                ftrace = probes[0].offset == 0 and hit is not None and \
                    hit.name not in NOTRACE
                flags = ("[OPTIMIZED]" if self.optimized(probes[0]) else "") + \
                    ("[FTRACE]" if ftrace else "")
                for probe in probes:
                    kind = "r" if probe.retprobe else "k"
                    if hit is not None:
                        where = f"{hit.name}+0x{addr - hit.addr:x}  {hit.module or ' '} "
                    else:
                        where = f"0x{addr:x} "
                    lines.append(f"{addr:016x}  {kind}  {where}{flags}\n")
        return "".join(lines)

    def unregister_kprobe(self, probe: Kprobe) -> None:
        site = probe.site
        if probe.retprobe:
            site.ret = tuple(p for p in site.ret if p is not probe)
        else:
            site.entry = tuple(p for p in site.entry if p is not probe)
        self.registered = [p for p in self.registered if p is not probe]
        site.refresh()
        if probe.retprobe:
            self.release_call_stacks()


class _Frame:
    """See ``Kprobes.frame``."""

    __slots__ = ("kprobes", "symbol", "stack")

    def __init__(self, kprobes: Kprobes, symbol: Any) -> None:
        self.kprobes = kprobes
        self.symbol = symbol
        self.stack: list[Any] = []

    def __enter__(self) -> None:
        kps = self.kprobes
        self.stack = kps.stacks[kps.this_cpu_id()]
        self.stack.append(self.symbol)

    def __exit__(self, *exc: object) -> None:
        self.stack.pop()
