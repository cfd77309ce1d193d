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
BPF kprobe program gets as its context). Return handlers also see ``func`` (the probed address)
and ``ret_ip``. A handler that re-enters a probed function from inside a handler is not run
again: the hit counts as missed (``nmissed``), as the kernel does with recursion.

The model has no instructions, so a probe at ``sym+off`` (0 < off < size) fires at the entry
with ``ip = sym + off``; return probes need ``off == 0`` (the kernel refuses others too).
"""
from __future__ import annotations

import struct
from typing import Any, Callable

from kernel_model.kallsyms import Kallsyms
from kernel_model.memory import Memory

ENOENT, EINVAL, EEXIST = 2, 22, 17

PT_REGS_NAMES = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx",
                 "dx", "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss")
PT_REGS_OFFSETS = {name: 8 * i for i, name in enumerate(PT_REGS_NAMES)}
PT_REGS_SIZE = 8 * len(PT_REGS_NAMES)
ARG_REGS = ("di", "si", "dx", "cx", "r8", "r9")
_PT_REGS = struct.Struct("<21Q")
_ARG_INDEX = tuple(PT_REGS_NAMES.index(r) for r in ARG_REGS)
_AX, _IP, _SP, _CS, _SS, _FLAGS = (PT_REGS_NAMES.index(r) for r in ("ax", "ip", "sp", "cs", "ss", "flags"))
KERNEL_CS, KERNEL_DS = 0x10, 0x18
X86_EFLAGS_IF = 0x200
THREAD_SIZE = 16384
MASK64 = (1 << 64) - 1


class KprobeError(Exception):
    """register_kprobe refused: ``errno`` is the kernel's (ENOENT unknown symbol, EINVAL ...)."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno


class PtRegs:
    """A ``struct pt_regs`` snapshot: ``values`` (21 u64 in struct order), ``raw`` bytes."""

    __slots__ = ("values", "raw", "func", "ret_ip")

    def __init__(self, values: list[int], func: int = 0, ret_ip: int = 0) -> None:
        self.values = values
        self.raw = _PT_REGS.pack(*values)
        self.func = func
        self.ret_ip = ret_ip

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


class Kprobe:
    """A registered probe (what ``register_kprobe`` returns; pass it to ``unregister_kprobe``)."""

    __slots__ = ("site", "handler", "retprobe", "offset", "nhit", "nmissed")

    def __init__(self, site: KprobeSite, handler: Callable[[PtRegs], Any], retprobe: bool,
                 offset: int) -> None:
        self.site = site
        self.handler = handler
        self.retprobe = retprobe
        self.offset = offset
        self.nhit = 0
        self.nmissed = 0

    @property
    def symbol(self) -> str:
        return self.site.name


class KprobeSite:
    """The probe point of one function: ``active`` is the flag its call site checks."""

    __slots__ = ("name", "addr", "size", "nargs", "active", "entry", "ret", "_kprobes")

    def __init__(self, kprobes: Kprobes, name: str, addr: int, size: int, nargs: int) -> None:
        self._kprobes = kprobes
        self.name = name
        self.addr = addr
        self.size = size
        self.nargs = nargs
        self.active = False
        self.entry: tuple[Kprobe, ...] = ()
        self.ret: tuple[Kprobe, ...] = ()

    def call(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run ``func(*args)`` with this site's probes around it.

        The first ``nargs`` arguments are the C function's, put in registers; any further ones
        are the model's own (a call site address, a parsed header) and stay out of pt_regs.
        """
        kps = self._kprobes
        values = kps.base_regs(self.addr)
        for i, a in zip(_ARG_INDEX, args[:self.nargs]):
            values[i] = a & MASK64 if type(a) is int else reg_value(a)
        if self.entry:
            if kps.in_handler:
                for p in self.entry:
                    p.nmissed += 1
            else:
                kps.in_handler = True
                try:
                    for p in self.entry:
                        p.nhit += 1
                        values[_IP] = self.addr + p.offset
                        p.handler(PtRegs(list(values), self.addr))
                finally:
                    kps.in_handler = False
        result = func(*args)
        if self.ret:
            if kps.in_handler:
                for p in self.ret:
                    p.nmissed += 1
            else:
                values[_AX] = reg_value(result)
                values[_IP] = kps.return_address
                kps.in_handler = True
                try:
                    for p in self.ret:
                        p.nhit += 1
                        p.handler(PtRegs(list(values), self.addr, kps.return_address))
                finally:
                    kps.in_handler = False
        return result


class Kprobes:
    """register_kprobe / unregister_kprobe over kallsyms; one site per function."""

    def __init__(self, kallsyms: Kallsyms, mem: Memory | None = None, nr_cpus: int = 1,
                 this_cpu_id: Callable[[], int] = lambda: 0) -> None:
        self.kallsyms = kallsyms
        self.in_handler = False
        self._this_cpu_id = this_cpu_id
        self.sites: dict[str, KprobeSite] = {
            s.name: KprobeSite(self, s.name, s.addr, s.size, s.nargs)
            for s in kallsyms if s.nargs is not None}
        # the return address return probes report: the caller is the model, not kernel code
        self.return_address = 0
        # per-CPU kernel stacks, so $stackN fetches read mapped memory
        self._stack_tops = [0] * nr_cpus
        if mem is not None:
            region = mem.map(THREAD_SIZE * nr_cpus, "kernel stacks")
            self._stack_tops = [region.base + (n + 1) * THREAD_SIZE for n in range(nr_cpus)]
        self._base_regs = [self._template(cpu) for cpu in range(nr_cpus)]

    def site(self, name: str) -> KprobeSite:
        """The probe point of function ``name`` (for a call site to cache)."""
        return self.sites[name]

    def base_regs(self, ip: int) -> list[int]:
        values = self._base_regs[self._this_cpu_id()].copy()    # per-CPU template: cs, ss, ...
        values[_IP] = ip
        return values

    def _template(self, cpu: int) -> list[int]:
        values = [0] * len(PT_REGS_NAMES)
        values[_CS] = KERNEL_CS
        values[_SS] = KERNEL_DS
        values[_FLAGS] = X86_EFLAGS_IF
        top = self._stack_tops[cpu]
        values[_SP] = top - 256 if top else 0
        return values

    def register_kprobe(self, symbol: str, handler: Callable[[PtRegs], Any],
                        retprobe: bool = False, offset: int = 0) -> Kprobe:
        """Probe ``symbol+offset``; ``retprobe`` probes the return instead of the entry."""
        site = self.sites.get(symbol)
        if site is None:
            if symbol in self.kallsyms:
                raise KprobeError(EINVAL, f"{symbol} cannot be probed: the model has no call site"
                                  " for it")
            raise KprobeError(ENOENT, f"symbol {symbol!r} not found")
        if offset < 0 or offset >= site.size:
            raise KprobeError(EINVAL, f"offset 0x{offset:x} is outside {symbol} (size 0x{site.size:x})")
        if retprobe and offset:
            raise KprobeError(EINVAL, "a return probe must be at the function entry")
        probe = Kprobe(site, handler, retprobe, offset)
        if retprobe:
            site.ret += (probe,)
        else:
            site.entry += (probe,)
        site.active = True
        return probe

    def unregister_kprobe(self, probe: Kprobe) -> None:
        site = probe.site
        if probe.retprobe:
            site.ret = tuple(p for p in site.ret if p is not probe)
        else:
            site.entry = tuple(p for p in site.entry if p is not probe)
        site.active = bool(site.entry or site.ret)

    def probes(self) -> list[Kprobe]:
        """Every registered probe, entry probes first, in kallsyms order."""
        return [p for s in self.sites.values() for p in s.entry + s.ret]
