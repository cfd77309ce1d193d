"""Attaching loaded programs where their ELF section names say, as libbpf's skeleton attach does.

    link = attach_program(kernel, "handle_exec", "kprobe/__netif_receive_skb", run)
    link.detach()

``run(ctx: bytes) -> int`` is the program's fast path (``event_filter.fast_path``).  The section
is parsed as libbpf's attach callbacks parse it (``attach_target``); the hooks are the model's:

* ``kprobe/SYM[+OFF]``, ``kretprobe/SYM``: ``kprobes.register_kprobe``; ``struct pt_regs``;
* ``kprobe.multi/GLOB``, ``kretprobe.multi/GLOB``: one kprobe per matching function;
* ``ksyscall/NAME``, ``kretsyscall/NAME``: a kprobe on ``__x64_sys_NAME`` (``__se_sys_NAME``
  when the model has no syscall wrappers, as libbpf decides by looking for ``__x64_sys_bpf``);
* ``tracepoint/SYS/EV``, ``tp/SYS/EV``: ``tracing.register_probe``, the record built as perf
  builds it (the same bytes as the ftrace record) is the context;
* ``raw_tracepoint/EV``, ``raw_tp/EV``, ``tp_btf/EV``: ``tracing.register_probe``, the context is
  ``u64 args[]``, the TP_PROTO arguments (objects as their addresses);
* ``fentry/SYM``, ``fexit/SYM``: a kprobe at the entry / return, the context ``u64 args[]`` (fexit:
  the return value after the arguments);
* ``perf_event``: a ``CpuClockSampler`` per program: every ``PERF_EVENT_PERIOD_NS`` of the model's
  clock, on every CPU, with ``struct bpf_perf_event_data`` (the CPU's last pt_regs).

A bare section (``SEC("kprobe")``) has no target: libbpf does not auto-attach it, and neither does
this (``attach_target`` returns None); nor ``socket`` programs (libbpf attaches none: a socket
filter needs a socket, ``SO_ATTACH_BPF``).  A target the model does not have fails with the errno the
kernel gives (ENOENT) and libbpf's message, as ``AttachError``.
"""
from __future__ import annotations

import errno
import fnmatch
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tracesim.filters.bpf.loader import LoadError, errstr
from tracesim.kernel_model.kprobes import ARG_REGS, PT_REGS_OFFSETS, KprobeError, reg_value
from tracesim.kernel_model.trace.event import trace_ctx
from tracesim.kernel_model.trace.probe_btf import FUNC_PROTOS

MAX_ARGS = 12                                  # MAX_BPF_FUNC_ARGS: the u64 args[] context
_ARGS = struct.Struct(f"<{MAX_ARGS}Q")
_ARG_OFFSETS = tuple(PT_REGS_OFFSETS[r] for r in ARG_REGS)
_AX = PT_REGS_OFFSETS["ax"]
_U64 = struct.Struct("<Q")
M64 = (1 << 64) - 1
PERF_EVENT_PERIOD_NS = 10_000_000              # perf_event programs: 100 Hz of cpu-clock
class AttachError(Exception):
    """An attach that failed: ``errno`` and libbpf's lines (``lines``, without ``libbpf: ``)."""

    def __init__(self, err: int, *lines: str) -> None:
        super().__init__(lines[-1] if lines else errstr(err))
        self.errno = err
        self.lines = list(lines)


@dataclass(frozen=True)
class Target:
    """Where a section says a program attaches: ``kind`` (the section's first word, aliases
    folded: ``tp`` -> ``tracepoint``, ``raw_tp`` -> ``raw_tracepoint``), ``name`` (symbol,
    glob, ``sys/event``, tracepoint or syscall name) and ``offset`` (kprobes)."""
    kind: str
    name: str
    offset: int = 0

    def describe(self) -> str:
        off = f"+0x{self.offset:x}" if self.offset else ""
        return f"{self.kind}/{self.name}{off}" if self.name else self.kind


@dataclass
class Link:
    """An attached program (``bpf_link``): what it is attached to and how to undo it."""
    target: Target
    points: list[str]                     # the functions / events it runs on
    detach_fns: list[Callable[[], None]] = field(default_factory=list, repr=False)
    sampler: Any = field(default=None, repr=False)    # perf_event: the CPU clock sampler

    def detach(self) -> None:
        for fn in self.detach_fns:
            fn()
        self.detach_fns = []


_ALIASES = {"tp": "tracepoint", "raw_tp": "raw_tracepoint"}
_KPROBE_SPEC = re.compile(r"^([a-zA-Z0-9_.]+)(?:\+(0x[0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*))?$")
_GLOB_SPEC = re.compile(r"^[a-zA-Z0-9_.*?]+$")
AUTO_ATTACH = ("kprobe", "kretprobe", "kprobe.multi", "kretprobe.multi", "ksyscall",
               "kretsyscall", "tracepoint", "raw_tracepoint", "tp_btf", "fentry", "fexit",
               "perf_event")


def attach_target(prog: str, section: str) -> Target | None:
    """The target of ``SEC(section)`` as libbpf's attach callback parses it; None when the
    section has none (a bare ``SEC("kprobe")``) or its kind is not auto-attached.
    ``AttachError`` (EINVAL) for a malformed target."""
    kind, sep, rest = section.partition("/")
    kind = _ALIASES.get(kind, kind)
    if kind == "perf_event" and not sep:
        return Target(kind, "")
    if kind not in AUTO_ATTACH or not rest:
        return None
    if kind in ("kprobe", "kretprobe"):
        m = _KPROBE_SPEC.match(rest)
        if m is None:
            raise AttachError(errno.EINVAL, f"prog '{prog}': invalid format of section "
                                            f"definition '{section}'")
        digits = m.group(2) or "0"          # %li: 0x hex, 0 octal, else decimal
        offset = int(digits, 16 if digits[:2] == "0x" else 8 if digits[0] == "0" else 10)
        if kind == "kretprobe" and offset:
            raise AttachError(errno.EINVAL, f"prog '{prog}': kretprobes do not support "
                                            "offset specification")
        return Target(kind, m.group(1), offset)
    if kind in ("kprobe.multi", "kretprobe.multi") and not _GLOB_SPEC.match(rest):
        raise AttachError(errno.EINVAL, f"prog '{prog}': invalid format of section definition "
                                        f"'{section}'")
    if kind == "tracepoint" and "/" not in rest.strip("/"):
        raise AttachError(errno.EINVAL, f"prog '{prog}': invalid format of section definition "
                                        f"'{section}'")
    return Target(kind, rest)


# ---------------------------------------------------------------- the load-time target check

# sections whose target is a BTF id found when the program is loaded (SEC_ATTACH_BTF)
BTF_TARGET_KINDS = ("tp_btf", "fentry", "fexit", "fmod_ret", "fentry.s", "fexit.s", "fmod_ret.s")
# include/linux/noreturns.h: the __noreturn functions of 6.18 a kernel symbol of the model may
# name (the verifier's noreturn_deny set; fexit and fmod_ret there are refused)
NORETURN = frozenset({
    "__x64_sys_exit", "__x64_sys_exit_group", "arch_cpu_idle_dead", "cpu_startup_entry",
    "do_exit", "do_group_exit", "do_task_dead", "hlt_play_dead", "kthread_complete_and_exit",
    "kthread_exit", "make_task_dead", "nmi_panic_self_stop", "panic", "panic_smp_self_stop",
    "rest_init", "rewind_stack_and_make_dead", "start_kernel", "stop_this_cpu", "vpanic",
    "x86_64_start_kernel", "x86_64_start_reservations"})


def has_btf_function(kernel: Any, name: str) -> bool:
    """Whether the model's BTF has a FUNC ``name`` with a prototype (``func_nargs``) and the
    function is in its kallsyms: what an fentry/fexit target needs."""
    return func_nargs(kernel, name) is not None and name in kernel.kprobes.sites


def check_load_target(kernel: Any, prog: str, section: str) -> None:
    """What loading a program of a ``SEC_ATTACH_BTF`` section checks of its target before the
    verifier runs: libbpf's BTF id look-up (``libbpf_prepare_prog_load``: -EINVAL without a
    target, -ESRCH for a name the kernel's BTF lacks, its messages as ``stage`` "prepare"),
    then the kernel's ``bpf_check_attach_target`` / ``check_attach_btf_id`` (a verifier log
    line, EINVAL).  ``LoadError`` (from ``loader``) for a target that fails."""
    kind, sep, name = section.partition("/")
    if kind not in BTF_TARGET_KINDS:
        return
    if not sep:
        raise _prepare_error(prog, f"prog '{prog}': no BTF-based attach target is specified, "
                                   "use bpf_program__set_attach_target()", errno.EINVAL)
    if kind == "tp_btf":
        found = any(n == name and s != "ftrace" and not hasattr(e, "symbol")
                    for (s, n), e in kernel.tracing.events.items())
    else:
        found = has_btf_function(kernel, name)
    if not found:
        raise _prepare_error(prog, f"prog '{prog}': failed to find kernel BTF type ID of "
                                   f"'{name}': {errstr(errno.ESRCH)}", errno.ESRCH)
    if kind.startswith(("fexit", "fmod_ret")) and name in NORETURN:
        msg = f"Attaching fexit/fmod_ret to __noreturn function '{name}' is rejected."
        raise LoadError(msg, msg + "\n", err=errno.EINVAL, stage="verifier")


def _prepare_error(prog: str, line: str, err: int) -> LoadError:
    """libbpf's lines for a program whose load attributes could not be prepared: ``summary``
    the first, ``log`` all three."""
    lines = [line, f"prog '{prog}': failed to prepare load attributes: {errstr(err)}",
             f"prog '{prog}': failed to load: {errstr(err)}"]
    return LoadError(line, "".join(f"libbpf: {x}\n" for x in lines), err=err, stage="prepare")


# ---------------------------------------------------------------- the hooks

def attach_program(kernel: Any, prog: str, section: str, run: Callable[[bytes], int],
                   env: Any = None, cookie: int | Mapping[str, int] = 0) -> Link | None:
    """Attach ``run`` where ``SEC(section)`` says; None for a section libbpf does not
    auto-attach; ``AttachError`` when the target is missing.

    ``env`` is the program's own environment (``TraceEnv.for_program()``): the attachment sets
    what the program's helpers learn of it there (``ip``, ``cookie``, ``nargs``,
    ``func_returned``), for the link and, for a ``kprobe.multi`` link, for each hit.
    ``cookie`` is the link's ``bpf_cookie`` (``bpf_*_opts.bpf_cookie``); for ``kprobe.multi``
    and ``kretprobe.multi`` it may map each symbol to its own (``opts.cookies[]``, a symbol
    without one has 0)."""
    target = attach_target(prog, section)
    if target is None:
        return None
    if not isinstance(cookie, int) and not target.kind.endswith(".multi"):
        raise AttachError(errno.EINVAL, f"prog '{prog}': per-symbol cookies are for "
                                        f"kprobe.multi links only")
    link = Link(target, [])
    try:
        _ATTACHERS[target.kind](kernel, prog, target, run, link, env, cookie)
    except AttachError:
        link.detach()
        raise
    return link


def _cookie_of(cookie: int | Mapping[str, int], symbol: str) -> int:
    value = cookie if isinstance(cookie, int) else cookie.get(symbol, 0)
    return value & M64


def _kprobe(kernel: Any, prog: str, target: Target, run: Callable[[bytes], int],
            link: Link, env: Any, cookie: int | Mapping[str, int]) -> None:
    retprobe = target.kind in ("kretprobe", "kretsyscall", "kretprobe.multi")
    for symbol in _kprobe_symbols(kernel, prog, target):
        if env is None:
            handler = _plain(run)
        else:
            # bpf_get_func_ip_kprobe: the function's address when the probe sits at its
            # entry (a kretprobe's too), 0 for a probe at an offset into it; the multi
            # links' entry_ip is always the function's address
            addr = kernel.kallsyms.address_of(symbol) or 0
            handler = _with_env(run, env, 0 if target.offset else addr,
                                _cookie_of(cookie, symbol))
        _register(kernel, prog, symbol, target.offset, retprobe, handler, link)


def _plain(run: Callable[[bytes], int]) -> Callable[[bytearray], Any]:
    return lambda regs: run(bytes(regs))


def _with_env(run: Callable[[bytes], int], env: Any, ip: int,
              cookie: int) -> Callable[[bytearray], Any]:
    """The handler of one probe point: its ip and cookie in the program's env, then the run
    (one program may be attached at many points: a multi link, or links made by hand)."""
    def handler(regs: bytearray) -> Any:
        env.ip = ip
        env.cookie = cookie
        return run(bytes(regs))
    return handler


def _kprobe_symbols(kernel: Any, prog: str, target: Target) -> list[str]:
    if target.kind in ("kprobe.multi", "kretprobe.multi"):
        names = [n for n in kernel.kprobes.sites if fnmatch.fnmatchcase(n, target.name)]
        if not names:
            raise AttachError(errno.ENOENT, f"prog '{prog}': failed to find any kernel symbol "
                                            f"matching '{target.name}'")
        return sorted(names)
    if target.kind in ("ksyscall", "kretsyscall"):
        # libbpf probes for syscall wrappers with __<arch>_sys_bpf
        wrapped = "__x64_sys_bpf" in kernel.kallsyms
        return [("__x64_sys_" if wrapped else "__se_sys_") + target.name]
    return [target.name]


def _register(kernel: Any, prog: str, symbol: str, offset: int, retprobe: bool,
              handler: Callable[[bytearray], Any], link: Link) -> None:
    kprobes = kernel.kprobes
    try:
        probe = kprobes.register_kprobe(symbol, handler, retprobe=retprobe, offset=offset,
                                        raw=True)
    except KprobeError as e:
        what = "kretprobe" if retprobe else "kprobe"
        raise AttachError(e.errno, f"prog '{prog}': failed to create {what} '{symbol}+0x{offset:x}'"
                                   f" perf event: {errstr(e.errno)}") from None
    link.points.append(symbol)
    link.detach_fns.append(lambda: kprobes.unregister_kprobe(probe))


def func_nargs(kernel: Any, symbol: str) -> int | None:
    """The argument count of ``symbol``'s BTF prototype (``btf_type_vlen`` of its FUNC_PROTO):
    the model's prototype where it has one, else the C argument count its call site passes;
    None for a function the model has no prototype of."""
    proto = FUNC_PROTOS.get(symbol)
    if proto is not None:
        return len(proto[1])
    site = kernel.kprobes.sites.get(symbol)
    return site.nargs if site is not None else None


def _fentry(kernel: Any, prog: str, target: Target, run: Callable[[bytes], int],
            link: Link, env: Any, cookie: int | Mapping[str, int]) -> None:
    site = kernel.kprobes.sites.get(target.name)
    nargs = func_nargs(kernel, target.name)
    if site is None or nargs is None:      # loading checks it first (check_load_target)
        raise AttachError(errno.ESRCH, f"prog '{prog}': failed to find kernel BTF type ID of "
                                       f"'{target.name}': {errstr(errno.ESRCH)}")
    nargs = min(nargs, MAX_ARGS)
    fexit = target.kind == "fexit"
    if env is not None:
        # the trampoline's ctx[-2] (func ip), ctx[-1] (nr_args) and the link's cookie
        env.ip, env.nargs, env.cookie = site.addr, nargs, _cookie_of(cookie, target.name)
        env.func_returned = fexit
    unpack = struct.Struct("<21Q").unpack_from
    slots = [off // 8 for off in _ARG_OFFSETS[:nargs]]
    pad = [0] * (MAX_ARGS - nargs - fexit)

    def handler(regs: bytearray) -> None:
        values = unpack(regs)
        args = [values[i] for i in slots]
        if fexit:
            args.append(values[_AX // 8])     # the return value follows the arguments
        run(_ARGS.pack(*args, *pad))
    _register(kernel, prog, target.name, 0, fexit, handler, link)


def _find_event(kernel: Any, prog: str, target: Target) -> Any:
    tracing = kernel.tracing
    if target.kind == "tracepoint":
        system, _, name = target.name.partition("/")
        ev = tracing.events.get((system, name))
        if ev is not None and (system == "ftrace" or hasattr(ev, "symbol")):
            # perf_event_set_bpf_prog: a kprobe event takes kprobe programs only, and ftrace's
            # own entries are no tracepoints
            raise AttachError(errno.EINVAL, f"prog '{prog}': failed to attach to tracepoint "
                                            f"'{target.name}': {errstr(errno.EINVAL)}")
        if ev is None:
            raise AttachError(errno.ENOENT, f"failed to determine tracepoint '{target.name}' perf "
                                            f"event ID: {errstr(errno.ENOENT)}",
                              f"prog '{prog}': failed to create tracepoint '{target.name}' perf "
                              f"event: {errstr(errno.ENOENT)}")
        return ev
    ev = next((e for (s, n), e in tracing.events.items() if n == target.name
               and s != "ftrace" and not hasattr(e, "symbol")), None)
    if ev is None:
        if target.kind == "tp_btf":         # libbpf names the target, not its btf_trace_ type
            raise AttachError(errno.ESRCH, f"prog '{prog}': failed to find kernel BTF type ID "
                                           f"of '{target.name}': {errstr(errno.ESRCH)}")
        raise AttachError(errno.ENOENT, f"prog '{prog}': failed to attach to raw tracepoint "
                                        f"'{target.name}': {errstr(errno.ENOENT)}")
    return ev


def _tracepoint(kernel: Any, prog: str, target: Target, run: Callable[[bytes], int],
                link: Link, env: Any, cookie: int | Mapping[str, int]) -> None:
    ev = _find_event(kernel, prog, target)
    if env is not None:
        env.cookie = _cookie_of(cookie, target.name)
    if target.kind == "tracepoint":
        this_cpu = kernel.machine.this_cpu

        def probe(args: tuple) -> None:
            cpu = this_cpu()
            flags, depth = trace_ctx(cpu)
            run(ev.build(ev.assign(*args), flags, depth, cpu.task.pid))
    else:
        def probe(args: tuple) -> None:
            values = [reg_value(a) for a in args[:MAX_ARGS]]
            run(_ARGS.pack(*values, *([0] * (MAX_ARGS - len(values)))))
    _add_probe(kernel, ev, probe, link)


def _add_probe(kernel: Any, ev: Any, probe: Callable[[tuple], None], link: Link) -> None:
    tracing = kernel.tracing
    with kernel.lock:
        tracing.register_probe(ev, probe)
    link.points.append(ev.full_name)
    link.detach_fns.append(lambda: tracing.unregister_probe(ev, probe))


def _perf_event(kernel: Any, prog: str, target: Target, run: Callable[[bytes], int],
                link: Link, env: Any, cookie: int | Mapping[str, int]) -> None:
    if env is not None:
        env.cookie = _cookie_of(cookie, "")
    sampler = CpuClockSampler(kernel, run)
    link.points.append(f"cpu-clock period {PERF_EVENT_PERIOD_NS} ns, {kernel.ncpus} CPUs")
    link.detach_fns.append(sampler.stop)
    link.sampler = sampler               # whoever drives the model ticks it


class CpuClockSampler:
    """perf_event_open(PERF_COUNT_SW_CPU_CLOCK, sample_period=period_ns) on every CPU: ``tick()``
    (called by whoever drives the model: ``tracesim run`` between batches) runs the program
    once per elapsed period per CPU, on that CPU, with the CPU's last pt_regs."""

    def __init__(self, kernel: Any, run: Callable[[bytes], int],
                 period_ns: int = PERF_EVENT_PERIOD_NS) -> None:
        self.kernel, self.run, self.period = kernel, run, period_ns
        self.clock = kernel.clock.reader("perf")
        self.next_at = self.clock() + period_ns
        self.active = True

    def tick(self) -> int:
        """Run the samples that are due; how many ran."""
        if not self.active:
            return 0
        now = self.clock()
        due = 0
        machine = self.kernel.machine
        while now >= self.next_at:
            self.next_at += self.period
            for cpu in range(self.kernel.ncpus):
                with machine.on_cpu(cpu):
                    regs = bytes(self.kernel.kprobes.regs[cpu])
                    self.run(regs + _U64.pack(self.period) + _U64.pack(0))
                due += 1
        return due

    def stop(self) -> None:
        self.active = False


_ATTACHERS: dict[str, Callable[..., None]] = {
    "kprobe": _kprobe, "kretprobe": _kprobe, "kprobe.multi": _kprobe,
    "kretprobe.multi": _kprobe, "ksyscall": _kprobe, "kretsyscall": _kprobe,
    "tracepoint": _tracepoint, "raw_tracepoint": _tracepoint, "tp_btf": _tracepoint,
    "fentry": _fentry, "fexit": _fentry, "perf_event": _perf_event,
}
