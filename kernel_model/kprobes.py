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
ret_ip)`` makes a snapshot of it. A handler that re-enters a probed function from inside a
handler is not run again: the hit counts as missed (``nmissed``), as the kernel does with
recursion.

Each CPU has one pt_regs buffer, written in place per hit: the argument registers through ``ip``
with one ``pack_into`` (the slots the call leaves unused are zeroed), the rest (cs, ss, flags, sp)
set once.

The model has no instructions, so a probe at ``sym+off`` (0 < off < size) fires at the entry
with ``ip = sym + off``; return probes need ``off == 0`` (the kernel refuses others too).
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

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


class KprobeError(Exception):
    """register_kprobe refused: ``errno`` is the kernel's (ENOENT unknown symbol, EINVAL ...)."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno


class PtRegs:
    """A ``struct pt_regs`` snapshot: ``raw`` (168 bytes), ``values`` (21 u64 in struct order,
    unpacked on first use) and register values as attributes."""

    __slots__ = ("raw", "func", "ret_ip", "_values")

    def __init__(self, raw: bytes, func: int = 0, ret_ip: int = 0) -> None:
        self.raw = raw
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
    values = ["ip" if reg == "ip" else
              f"(a{slot[reg]} & MASK64 if type(a{slot[reg]}) is int else reg_value(a{slot[reg]}))"
              if reg in slot else "0" for reg in _CALL_REGS]
    source = ("def write(regs, ip, args):\n" + "".join(line + "\n" for line in lines)
              + f"    pack(regs, {_CALL_REGS_OFFSET}, {', '.join(values)})\n")
    env: dict[str, Any] = {"pack": _CALL_REGS_PACK, "reg_value": reg_value, "MASK64": MASK64}
    exec(compile(source, f"<pt_regs writer {nargs}>", "exec"), env)
    return env["write"]


_CALL_REGS_WRITERS = tuple(_call_regs_writer(n) for n in range(len(ARG_REGS) + 1))


class Kprobe:
    """A registered probe (what ``register_kprobe`` returns; pass it to ``unregister_kprobe``)."""

    __slots__ = ("site", "handler", "retprobe", "offset", "raw", "nhit", "nmissed")

    def __init__(self, site: KprobeSite, handler: Callable[[Any], Any], retprobe: bool,
                 offset: int, raw: bool = False) -> None:
        self.site = site
        self.handler = handler
        self.retprobe = retprobe
        self.offset = offset
        self.raw = raw
        self.nhit = 0
        self.nmissed = 0

    @property
    def symbol(self) -> str:
        return self.site.name


class KprobeSite:
    """The probe point of one function: ``active`` is the flag its call site checks."""

    __slots__ = ("name", "addr", "size", "nargs", "active", "entry", "ret", "_kprobes",
                 "_write_regs", "call")

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
        # ``call(func, *args)``: what a call site runs while ``active`` (see ``probes_changed``)
        self.call: Callable[..., Any] = self.call_probed

    def probes_changed(self) -> None:
        """After a probe was registered or unregistered: ``call`` is ``call_probed``, or for
        one raw entry probe at the function's address and no return probe (a kprobe event,
        a BPF kprobe program) a closure that runs just that one (``_one_probe_call``)."""
        entry = self.entry
        one = len(entry) == 1 and not self.ret and entry[0].raw and not entry[0].offset
        self.call = self._one_probe_call(entry[0]) if one else self.call_probed

    def _one_probe_call(self, probe: Kprobe) -> Callable[..., Any]:
        kps = self._kprobes
        addr, nargs, write_all, all_regs = self.addr, self.nargs, self._write_regs, kps.regs

        def call(func: Callable[..., Any], *args: Any) -> Any:
            if kps.in_handler:
                probe.nmissed += 1
            else:
                regs = all_regs[kps.this_cpu_id()]
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

    def call_probed(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run ``func(*args)`` with this site's probes around it.

        The first ``nargs`` arguments are the C function's, put in registers; any further ones
        are the model's own (a call site address, a parsed header) and stay out of pt_regs.
        """
        kps = self._kprobes
        write = self._write_regs if len(args) >= self.nargs else _CALL_REGS_WRITERS[len(args)]
        entry = self.entry
        if entry:
            if kps.in_handler:
                for p in entry:
                    p.nmissed += 1
            else:
                addr = self.addr
                regs = kps.regs[kps.this_cpu_id()]
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
        result = func(*args)
        if self.ret:
            if kps.in_handler:
                for p in self.ret:
                    p.nmissed += 1
            else:
                ret_ip = kps.return_address
                regs = kps.regs[kps.this_cpu_id()]
                write(regs, ret_ip, args)
                _U64_PACK(regs, _AX_OFFSET, reg_value(result))
                kps.in_handler = True
                try:
                    for p in self.ret:
                        p.nhit += 1
                        p.handler(regs if p.raw else PtRegs(bytes(regs), self.addr, ret_ip))
                finally:
                    kps.in_handler = False
        return result


class Kprobes:
    """register_kprobe / unregister_kprobe over kallsyms; one site per function."""

    def __init__(self, kallsyms: Kallsyms, mem: Memory | None = None, nr_cpus: int = 1,
                 this_cpu_id: Callable[[], int] = lambda: 0) -> None:
        self.kallsyms = kallsyms
        self.in_handler = False
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
        # per-CPU pt_regs, written in place by each hit (cs, ss, flags, sp stay as set here)
        self.regs = [self._template(cpu) for cpu in range(nr_cpus)]
        self.this_cpu_id = this_cpu_id

    def site(self, name: str) -> KprobeSite:
        """The probe point of function ``name`` (for a call site to cache)."""
        return self.sites[name]

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
        ``handler`` gets a ``PtRegs`` snapshot, or with ``raw`` the CPU's live pt_regs buffer."""
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
        probe = Kprobe(site, handler, retprobe, offset, raw)
        if retprobe:
            site.ret += (probe,)
        else:
            site.entry += (probe,)
        site.active = True
        site.probes_changed()
        return probe

    def unregister_kprobe(self, probe: Kprobe) -> None:
        site = probe.site
        if probe.retprobe:
            site.ret = tuple(p for p in site.ret if p is not probe)
        else:
            site.entry = tuple(p for p in site.entry if p is not probe)
        site.active = bool(site.entry or site.ret)
        site.probes_changed()
