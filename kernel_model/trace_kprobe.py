"""kprobe events (kernel/trace/trace_kprobe.c, trace_probe.c): ``kprobe_events`` commands.

Commands (one per line, ``#`` starts a comment)::

    p[:[GRP/][EVENT]] SYM[+offs] [FETCHARGS]     entry probe
    r[MAXACTIVE][:[GRP/][EVENT]] SYM[+0] [FETCHARGS]   return probe
    -:[GRP/]EVENT                                  delete

FETCHARGS: ``[NAME=]ARG[:TYPE]`` with ARG one of ``%REG``, ``@ADDR``, ``@SYM[+|-off]``,
``$argN``, ``$retval``, ``$comm``, ``$stack``, ``$stackN``, ``\\IMM``, ``+|-off(ARG)`` (nested),
TYPE one of u8..u64, s8..s64, x8..x64, string, symbol (default x64; ``$comm`` string).

Errors raise ``KprobeError(errno, message, pos)`` and are added to the trace array's
``error_log`` with location ``trace_kprobe`` and the command (the words joined by one space)
as the kernel logs them. Default names: group ``kprobes``, event ``p_<sym>_<offs>`` /
``r_<sym>_<offs>``. A probe is registered with the machine's kprobes (``kernel.kprobes``) only
while its event is in use, so an unused probe costs nothing.
"""
from __future__ import annotations

import errno
import re
import struct
from collections.abc import Callable
from typing import Any

from kernel_model.memory import KernelFault
from kernel_model.trace_event import TraceEvent, trace_ctx

MAX_EVENT_NAME_LEN = 64
MAX_ARG_NAME_LEN = 32
MAX_TRACE_ARGS = 128
MAX_STRING_SIZE = 4096
MAXACTIVE_MAX = 4096
DEREF_MAX = 15            # fetch-instruction budget: the kernel's FETCH_INSN_MAX is 16

REG_NAMES = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx",
             "dx", "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss")
_REG_INDEX = {n: i for i, n in enumerate(REG_NAMES)}
_ARG_REGS = ("di", "si", "dx", "cx", "r8", "r9")

# fetch types: name -> (size, signed, format field type, print fmt in the `format` file)
FETCH_TYPES: dict[str, tuple[int, bool, str, str]] = {
    "u8": (1, False, "u8", "%u"), "u16": (2, False, "u16", "%u"),
    "u32": (4, False, "u32", "%u"), "u64": (8, False, "u64", "%Lu"),
    "s8": (1, True, "s8", "%d"), "s16": (2, True, "s16", "%d"),
    "s32": (4, True, "s32", "%d"), "s64": (8, True, "s64", "%Ld"),
    "x8": (1, False, "u8", "0x%x"), "x16": (2, False, "u16", "0x%x"),
    "x32": (4, False, "u32", "0x%x"), "x64": (8, False, "u64", "0x%Lx"),
    "string": (4, False, "__data_loc char[]", '\\"%s\\"'),
    "symbol": (8, False, "u64", "%pS"),
}
DEFAULT_TYPE = "x64"

ERR_TEXT = {
    "BAD_MAXACT_TYPE": "Maxactive is only for function exit",
    "BAD_MAXACT": "Invalid maxactive number",
    "MAXACT_TOO_BIG": "Maxactive is too big",
    "BAD_PROBE_ADDR": "Invalid probed address or symbol",
    "BAD_RETPROBE": "Retprobe address must be an function entry",
    "NO_GROUP_NAME": "Group name is not specified",
    "GROUP_TOO_LONG": "Group name is too long",
    "BAD_GROUP_NAME": "Group name must follow the same rules as C identifiers",
    "NO_EVENT_NAME": "Event name is not specified",
    "EVENT_TOO_LONG": "Event name is too long",
    "BAD_EVENT_NAME": "Event name must follow the same rules as C identifiers",
    "RETVAL_ON_PROBE": "$retval is not available on probe",
    "BAD_STACK_NUM": "Invalid stack number",
    "BAD_ARG_NUM": "Invalid argument number",
    "BAD_VAR": "Invalid $-valiable specified",
    "BAD_REG_NAME": "Invalid register name",
    "BAD_MEM_ADDR": "Invalid memory address",
    "BAD_IMM": "Invalid immediate value",
    "TOO_MANY_OPS": "Dereference is too much nested",
    "DEREF_NEED_BRACE": "Dereference needs a brace",
    "BAD_DEREF_OFFS": "Invalid dereference offset",
    "DEREF_OPEN_BRACE": "Dereference brace is not closed",
    "COMM_CANT_DEREF": "$comm can not be dereferenced",
    "BAD_FETCH_ARG": "Invalid fetch argument",
    "BAD_TYPE": "Unknown type is specified",
    "BAD_STRING": "String accepts only memory argument",
    "ARG_NAME_TOO_LONG": "Argument name is too long",
    "NO_ARG_NAME": "Argument name is not specified",
    "BAD_ARG_NAME": "Argument name must follow the same rules as C identifiers",
    "USED_ARG_NAME": "This argument name is already used",
    "NO_ARG_BODY": "No argument expression",
    "TOO_MANY_ARGS": "Too many arguments are specified",
    "DIFF_PROBE_TYPE": "Probe type is different from existing probe",
    "DIFF_ARG_TYPE": "Argument type or name is different from existing probe",
    "SAME_PROBE": "There is already the exact same probe event",
}

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class KprobeError(OSError):
    """A refused ``kprobe_events`` command: errno, the kernel's message, caret position."""

    def __init__(self, code: int, message: str, pos: int = 0, command: str = "") -> None:
        super().__init__(code, message)
        self.message = message
        self.pos = pos
        self.command = command


class _ParseError(Exception):
    def __init__(self, key: str, index: int, offset: int, code: int = errno.EINVAL) -> None:
        super().__init__(key)
        self.key, self.index, self.offset, self.code = key, index, offset, code


Fetch = Callable[[Any, Any], Any]     # (pt_regs bytes, cpu) -> int | bytes | None (fault)
_U64_AT = struct.Struct("<Q").unpack_from
MASK64 = (1 << 64) - 1


def _reg(i: int) -> Fetch:
    """Register ``i`` of pt_regs (REG_NAMES order), read from the raw 168 bytes."""
    off = 8 * i
    return _inlinable(lambda ctx, cpu: _U64_AT(ctx, off)[0], f"u64(ctx, {off})[0]")


def _inlinable(fetch: Fetch, expr: str) -> Fetch:
    """Mark ``fetch`` with the Python expression (over ``ctx``, ``u64``) that computes the same
    value, so the event's record builder can inline it instead of calling it."""
    fetch.expr = expr  # type: ignore[attr-defined]
    return fetch


class ProbeArg:
    """One fetch argument: its name, the original text (read back), type and fetch function."""

    def __init__(self, name: str, text: str, type_name: str, fetch: Fetch) -> None:
        self.name = name
        self.text = text
        self.type_name = type_name
        self.fetch = fetch


class KprobeEvent(TraceEvent):
    """The event of a kprobe: ``__probe_ip`` (or ``__probe_func``, ``__probe_ret_ip``) + args."""

    def __init__(self, owner: KprobeEvents, group: str, name: str, symbol: str, offset: int,
                 is_return: bool, maxactive: int, args: list[ProbeArg]) -> None:
        self.owner = owner
        self.symbol = symbol
        self.offset = offset
        self.is_return = is_return
        self.maxactive = maxactive
        self.args = args
        self.nhit = 0
        self.missed_base = 0
        self._probe: Any = None
        head = ([("unsigned long", "__probe_func"), ("unsigned long", "__probe_ret_ip")]
                if is_return else [("unsigned long", "__probe_ip")])
        fields = head + [(FETCH_TYPES[a.type_name][2], a.name) for a in args]
        if is_return:
            fmt, rec = "(%lx <- %lx)", "REC->__probe_func, REC->__probe_ret_ip"
        else:
            fmt, rec = "(%lx)", "REC->__probe_ip"
        fmt += "".join(f" {a.name}={FETCH_TYPES[a.type_name][3]}" for a in args)
        rec += "".join(f", __get_str({a.name})" if a.type_name == "string"
                       else f", REC->{a.name}" for a in args)
        super().__init__(group, name, fields, f'"{fmt}", {rec}', self._assign,
                         printer=_kprobe_printer, packed=True)
        # the record of a hit from its pt_regs bytes (``ctx``), generated once for the event
        self.record_from_ctx: Callable[[bytes, Any], bytes] = _record_builder(self)

    # -- definition text
    def definition(self) -> str:
        """The ``kprobe_events`` / ``dynamic_events`` line (trace_kprobe_show)."""
        kind = "r" + (str(self.maxactive) if self.maxactive else "") if self.is_return else "p"
        where = f"{self.symbol}+{self.offset}" if self.offset else self.symbol
        args = "".join(f" {a.name}={a.text}" for a in self.args)
        return f"{kind}:{self.system}/{self.name} {where}{args}\n"

    @property
    def nmissed(self) -> int:
        return self.missed_base + (self._probe.nmissed if self._probe is not None else 0)

    # -- runtime
    def on_enabled_changed(self) -> None:
        """Arm the machine's kprobe while any trace array uses the event, disarm otherwise."""
        kprobes = self.owner.kernel.kprobes
        if self.enabled and self._probe is None:
            self._probe = kprobes.register_kprobe(self.symbol, self._hit, retprobe=self.is_return,
                                                  offset=self.offset, raw=True)
        elif not self.enabled and self._probe is not None:
            self.missed_base += self._probe.nmissed
            kprobes.unregister_kprobe(self._probe)
            self._probe = None
        if self._probe is not None:
            self._probe.handler = self._handler()

    def _handler(self) -> Callable[[bytearray], None]:
        """The probe's handler for the current sinks: ``_hit``, or with one sink, a hit that
        calls it directly, or when its BPF program gates the write, calls the program itself
        (one layer less on the path the program runs for every hit)."""
        sinks = self.sinks
        if len(sinks) != 1:
            return self._hit
        this_cpu = self.this_cpu
        gate = getattr(sinks[0], "gate", None)
        if gate is None:            # one trace array records it: call its emitter directly
            sink = sinks[0]

            def hit_one(ctx: bytearray) -> None:
                self.nhit += 1
                sink(None, this_cpu(), ctx)
            return hit_one
        prog, write = gate

        def hit(ctx: bytearray) -> None:
            self.nhit += 1
            if prog(ctx):
                write(None, this_cpu(), ctx)
        return hit

    def _hit(self, ctx: bytearray) -> None:
        """The probe's handler: ``ctx`` is the CPU's live pt_regs, what a BPF program gets."""
        self.nhit += 1
        cpu = self.this_cpu()
        for sink in self.sinks:
            sink(None, cpu, ctx)

    def _assign(self, *values: Any) -> tuple:
        return values


def _record_builder(ev: KprobeEvent) -> Callable[[bytes, Any], bytes]:
    """``record(ctx, cpu)``: one generated function per event that fetches every argument from
    the raw pt_regs and packs the record (the probe's head fields, the args converted to their
    fetch types, ``__data_loc`` strings after the fixed part; a fault stores ``(fault)`` or
    0), so a hit costs the fetches and one ``pack``: the layout is worked out here, once."""
    env: dict[str, Any] = {"trace_ctx": trace_ctx, "u64": _U64_AT, "ev": ev,
                           "pack": ev._fixed.pack, "FAULT": b"(fault)\0",
                           "read_cstr": ev.owner.kernel.mem.read_cstr, "KernelFault": KernelFault}
    lines = ["def record(ctx, cpu):",
             "    if cpu.preempt_count or cpu.irqs_off or cpu.need_resched or"
             " cpu.migrate_disable or cpu.need_resched_lazy:",
             "        flags, depth = trace_ctx(cpu)",
             "    else:",
             "        flags = depth = 0"]
    ip = f"u64(ctx, {8 * _REG_INDEX['ip']})[0]"
    values = ["ev._probe.site.addr", ip] if ev.is_return else [ip]
    strings: list[str] = []
    for n, arg in enumerate(ev.args):
        env[f"f{n}"] = arg.fetch
        at_expr = getattr(getattr(arg.fetch, "string_at", None), "expr", None)
        if at_expr is not None:        # a string at a register-relative address: inline
            lines += ["    try:",
                      f"        a{n} = read_cstr({at_expr}, {MAX_STRING_SIZE - 1}) + b'\\0'",
                      "    except KernelFault:",
                      f"        a{n} = FAULT"]
        else:
            lines.append(f"    a{n} = {getattr(arg.fetch, 'expr', None) or f'f{n}(ctx, cpu)'}")
        if arg.type_name == "string":
            if at_expr is None:
                lines.append(f"    a{n} = FAULT if a{n} is None else a{n} + b'\\0'")
            at = " + ".join([str(ev.data_offset)] + [f"len({x})" for x in strings])
            values.append(f"len(a{n}) << 16 | ({at})")
            strings.append(f"a{n}")
            continue
        size, signed = FETCH_TYPES[arg.type_name][:2]
        bits = 8 * size
        lines.append(f"    a{n} = (a{n} or 0) & {(1 << bits) - 1:#x}")
        if signed:
            lines.append(f"    if a{n} >> {bits - 1}:")
            lines.append(f"        a{n} -= {1 << bits:#x}")
        values.append(f"a{n}")
    lines.append(f"    return pack(ev.id, flags, depth, cpu.task.pid, {', '.join(values)})"
                 + "".join(f" + {x}" for x in strings))
    exec(compile("\n".join(lines) + "\n", f"<kprobe record {ev.name}>", "exec"), env)
    return env["record"]


def _kprobe_printer(ev: TraceEvent) -> Callable[[bytes, Any], str]:
    """print_kprobe_event / print_kretprobe_event: ``(sym+0x0/0x60) a=0x1`` (name added by output)."""
    assert isinstance(ev, KprobeEvent)

    def sym(addr: int, symbols: Any, offset: bool) -> str:
        if not addr:
            return "0"
        hit = symbols.lookup(addr)
        if hit is None:
            return f"0x{addr:x}"
        name, off, size = hit
        return f"{name}+0x{off:x}/0x{size:x}" if offset else name

    def printer(record: bytes, symbols: Any) -> str:
        vals = ev.decode(record)
        if ev.is_return:
            head = (f"({sym(vals['__probe_ret_ip'], symbols, True)} <- "
                    f"{sym(vals['__probe_func'], symbols, False)})")
        else:
            head = f"({sym(vals['__probe_ip'], symbols, True)})"
        parts = [head]
        for a in ev.args:
            v = vals[a.name]
            t = a.type_name
            if t == "string":
                text = f'"{v}"'
            elif t == "symbol":
                text = sym(v, symbols, True)
            elif t.startswith("x"):
                text = f"0x{v:x}"
            else:
                text = str(v)
            parts.append(f"{a.name}={text}")
        return " ".join(parts)
    return printer


class KprobeEvents:
    """The set of kprobe events of one kernel (``kprobe_events``, ``kprobe_profile``)."""

    def __init__(self, tracing: Any) -> None:
        self.tracing = tracing
        self.kernel = tracing.kernel
        self.events: list[KprobeEvent] = []

    # -- files
    def text(self) -> str:
        return "".join(ev.definition() for ev in self.events)

    def profile_text(self) -> str:
        """``kprobe_profile``: ``  %-44s %15lu %15lu`` name, hits, misses."""
        return "".join(f"  {ev.name:<44} {ev.nhit:>15} {ev.nmissed:>15}\n" for ev in self.events)

    def write(self, text: str, truncate: bool = False, array: Any = None) -> None:
        """A write to ``kprobe_events``: O_TRUNC removes every probe first (EBUSY if one is used),
        then each line is a command. Errors are logged to ``array``'s error_log (default top)."""
        if truncate:
            self.clear()
        for line in text.split("\n"):
            line = line.split("#", 1)[0].strip()
            if line:
                self.command(line, array)

    def clear(self) -> None:
        if any(_busy(self.tracing, ev) for ev in self.events):
            raise KprobeError(errno.EBUSY, "Device or resource busy")
        for ev in list(self.events):
            self._remove(ev)

    def command(self, line: str, array: Any = None) -> KprobeEvent | None:
        """Run one command; returns the new event for ``p``/``r``."""
        argv = line.split()
        try:
            if argv[0].startswith("-"):
                self._delete(argv)
                return None
            if argv[0][0] not in "pr":
                raise KprobeError(errno.EINVAL, "Invalid argument")
            return self._create(argv)
        except _ParseError as e:
            pos = sum(len(a) + 1 for a in argv[:e.index]) + e.offset
            command = " ".join(argv)
            message = ERR_TEXT[e.key]
            (array or self.tracing.top).log_error("trace_kprobe", command, message, pos)
            raise KprobeError(e.code, message, pos, command) from None

    # -- delete
    def _delete(self, argv: list[str]) -> None:
        """dyn_event_release: ``-:[GRP/]EVENT``; no name at all is EINVAL, ``GRP/`` alone
        matches every event of the group (trace_kprobe_match), a miss is ENOENT."""
        head = argv[0]
        if head[1:2] == ":":
            spec = head[2:]
        elif ":" in head:
            spec = head.split(":", 1)[1]
        else:
            raise KprobeError(errno.EINVAL, "Invalid argument")
        group: str | None = None
        if "/" in spec:
            group, spec = spec.split("/", 1)
        elif not spec:
            raise KprobeError(errno.EINVAL, "Invalid argument")
        hits = [ev for ev in self.events
                if spec in ("", ev.name) and group in (None, ev.system)]
        if not hits:
            raise KprobeError(errno.ENOENT, "No such file or directory")
        for ev in hits:
            if _busy(self.tracing, ev):
                raise KprobeError(errno.EBUSY, "Device or resource busy")
        for ev in hits:
            self._remove(ev)

    def _remove(self, ev: KprobeEvent) -> None:
        self.tracing.unregister_event(ev)
        self.events.remove(ev)

    # -- create
    def _create(self, argv: list[str]) -> KprobeEvent:
        head = argv[0]
        is_return = head[0] == "r"
        group, event = "kprobes", ""
        spec, _, ename = head.partition(":")
        maxactive = 0
        if len(spec) > 1:
            if not is_return:
                raise _ParseError("BAD_MAXACT_TYPE", 0, 1)
            digits = spec[1:]
            if not digits.isdigit() or int(digits) == 0:
                raise _ParseError("BAD_MAXACT", 0, 1)
            maxactive = int(digits)
            if maxactive > MAXACTIVE_MAX:
                raise _ParseError("MAXACT_TOO_BIG", 0, 1)
        if _:
            base = len(spec) + 1
            if "/" in ename:
                group, _, event = ename.partition("/")
                if not group:
                    raise _ParseError("NO_GROUP_NAME", 0, base)
                if len(group) >= MAX_EVENT_NAME_LEN:
                    raise _ParseError("GROUP_TOO_LONG", 0, base)
                if not _IDENT.match(group):
                    raise _ParseError("BAD_GROUP_NAME", 0, base)
                base += len(group) + 1
            else:
                event = ename
            if event:
                if len(event) >= MAX_EVENT_NAME_LEN:
                    raise _ParseError("EVENT_TOO_LONG", 0, base)
                if not _IDENT.match(event):
                    raise _ParseError("BAD_EVENT_NAME", 0, base)
            elif "/" in ename:
                raise _ParseError("NO_EVENT_NAME", 0, base)
        if len(argv) < 2:                  # the kernel returns -ECANCELED: no log entry
            raise KprobeError(errno.EINVAL, "Invalid argument")
        symbol, offset = self._parse_location(argv[1], is_return)
        if not event:
            clean = re.sub(r"[^A-Za-z0-9_]", "_", symbol)
            event = f"{'r' if is_return else 'p'}_{clean}_{offset}"
        if len(argv) - 2 > MAX_TRACE_ARGS:
            raise _ParseError("TOO_MANY_ARGS", 2 + MAX_TRACE_ARGS, 0)
        args: list[ProbeArg] = []
        for i, text in enumerate(argv[2:], start=2):
            args.append(self._parse_arg(text, i, len(args) + 1, is_return, args))
        existing = next((ev for ev in self.events
                         if ev.name == event and ev.system == group), None)
        if existing is not None:
            if existing.is_return != is_return:
                raise _ParseError("DIFF_PROBE_TYPE", 0, 0, errno.EEXIST)
            if [(a.name, a.text) for a in existing.args] != [(a.name, a.text) for a in args]:
                raise _ParseError("DIFF_ARG_TYPE", 0, 0, errno.EEXIST)
            raise _ParseError("SAME_PROBE", 0, 0, errno.EEXIST)
        if (group, event) in self.tracing.events:
            raise _ParseError("DIFF_PROBE_TYPE", 0, 0, errno.EEXIST)
        ev = KprobeEvent(self, group, event, symbol, offset, is_return, maxactive, args)
        self.tracing.register_event(ev)
        self.events.append(ev)
        return ev

    def _parse_location(self, text: str, is_return: bool) -> tuple[str, int]:
        m = re.match(r"^([A-Za-z_.$][A-Za-z0-9_.$]*)(?:\+(\w+))?$", text)
        if not m:       # includes raw addresses: the model probes symbols only
            raise _ParseError("BAD_PROBE_ADDR", 1, 0)
        symbol = m.group(1)
        offset = 0
        if m.group(2) is not None:
            try:
                offset = int(m.group(2), 0)
            except ValueError:
                raise _ParseError("BAD_PROBE_ADDR", 1, 0) from None
        syms = self.kernel.kallsyms
        addr = syms.address_of(symbol)
        if addr is None:
            raise _ParseError("BAD_PROBE_ADDR", 1, 0, errno.ENOENT)
        if is_return and offset:
            raise _ParseError("BAD_RETPROBE", 1, 0)
        hit = syms.lookup(addr)
        if hit is not None and offset >= max(hit[2], 1):
            raise _ParseError("BAD_PROBE_ADDR", 1, 0)
        return symbol, offset

    def _parse_arg(self, text: str, index: int, nth: int, is_return: bool,
                   previous: list[ProbeArg]) -> ProbeArg:
        name, eq, body = text.partition("=")
        base = 0
        if eq:
            if not name:
                raise _ParseError("NO_ARG_NAME", index, 0)
            if len(name) > MAX_ARG_NAME_LEN:
                raise _ParseError("ARG_NAME_TOO_LONG", index, 0)
            if not _IDENT.match(name):
                raise _ParseError("BAD_ARG_NAME", index, 0)
            base = len(name) + 1
            if not body:
                raise _ParseError("NO_ARG_BODY", index, base)
        else:
            name, body = f"arg{nth}", text
        if any(p.name == name for p in previous) or name in ("__probe_ip", "__probe_func",
                                                              "__probe_ret_ip"):
            raise _ParseError("USED_ARG_NAME", index, 0)
        expr, colon, type_name = body.partition(":")
        if colon:
            if type_name not in FETCH_TYPES:
                raise _ParseError("BAD_TYPE", index, base + len(expr) + 1)
        else:
            type_name = "string" if expr == "$comm" else DEFAULT_TYPE
        fetch, is_mem = self._parse_fetch(expr, index, base, is_return, 0)
        if type_name == "string":
            if expr != "$comm":
                if not is_mem:
                    raise _ParseError("BAD_STRING", index, base)
                fetch = self._string_fetch(fetch)
        elif expr == "$comm":
            raise _ParseError("BAD_TYPE", index, base + len(expr) + 1)
        elif is_mem:
            fetch = self._read_sized(fetch, FETCH_TYPES[type_name][0])
        return ProbeArg(name, body, type_name, fetch)

    def _string_fetch(self, addr_fetch: Fetch) -> Fetch:
        """The string at the fetched address, at most MAX_STRING_SIZE - 1 bytes (None on a
        fault: unmapped or freed memory)."""
        read_cstr = self.kernel.mem.read_cstr

        def fetch(ctx: Any, cpu: Any) -> bytes | None:
            addr = addr_fetch(ctx, cpu)
            if addr is None:
                return None
            try:
                return read_cstr(addr, MAX_STRING_SIZE - 1)
            except KernelFault:
                return None
        fetch.string_at = addr_fetch  # type: ignore[attr-defined]  # the builder inlines it
        return fetch

    def _parse_fetch(self, expr: str, index: int, pos: int, is_return: bool,
                     depth: int) -> tuple[Fetch, bool]:
        """Compile one fetch expression; returns (fetch → address or value, reads memory?).

        For memory expressions the fetch returns the *address*; the caller reads it.
        """
        if expr.startswith("%"):
            reg = expr[1:]
            if reg not in _REG_INDEX:
                raise _ParseError("BAD_REG_NAME", index, pos)
            i = _REG_INDEX[reg]
            return _reg(i), False
        if expr.startswith("$"):
            var = expr[1:]
            if var == "retval":
                if not is_return:
                    raise _ParseError("RETVAL_ON_PROBE", index, pos)
                return _reg(_REG_INDEX["ax"]), False
            if var == "comm":
                return (lambda ctx, cpu: cpu.task.comm.encode()), False
            if var == "stack":
                return _reg(_REG_INDEX["sp"]), False
            if var.startswith("stack"):
                if not var[5:].isdigit():
                    raise _ParseError("BAD_STACK_NUM", index, pos)
                return self._stack_nth(int(var[5:])), False
            if var.startswith("arg"):
                if not var[3:].isdigit() or int(var[3:]) < 1:
                    raise _ParseError("BAD_ARG_NUM", index, pos)
                n = int(var[3:])
                if n <= len(_ARG_REGS):
                    return _reg(_REG_INDEX[_ARG_REGS[n - 1]]), False
                return self._stack_nth(n - len(_ARG_REGS)), False
            raise _ParseError("BAD_VAR", index, pos)
        if expr.startswith("@"):
            target = expr[1:]
            m = re.match(r"^([A-Za-z_.][A-Za-z0-9_.]*)([+-]\w+)?$", target)
            if re.match(r"^(0x[0-9a-fA-F]+|\d+)$", target):
                addr = int(target, 0)
            elif m:
                base_addr = self.kernel.kallsyms.address_of(m.group(1))
                if base_addr is None:
                    raise _ParseError("BAD_MEM_ADDR", index, pos)
                try:
                    addr = base_addr + (int(m.group(2), 0) if m.group(2) else 0)
                except ValueError:
                    raise _ParseError("BAD_MEM_ADDR", index, pos) from None
            else:
                raise _ParseError("BAD_MEM_ADDR", index, pos)
            return (lambda ctx, cpu: addr), True
        if expr.startswith("\\"):
            try:
                imm = int(expr[1:], 0)
            except ValueError:
                raise _ParseError("BAD_IMM", index, pos) from None
            return (lambda ctx, cpu: imm), False
        if expr[:1] in "+-" and expr[:1]:
            m = re.match(r"^([+-](?:0x[0-9a-fA-F]+|\d+))", expr)
            if not m:
                raise _ParseError("BAD_DEREF_OFFS", index, pos)
            off = int(m.group(1), 0)
            rest = expr[m.end():]
            if not rest.startswith("("):
                raise _ParseError("DEREF_NEED_BRACE", index, pos + m.end())
            if not rest.endswith(")"):
                raise _ParseError("DEREF_OPEN_BRACE", index, pos + m.end())
            if depth >= DEREF_MAX:
                raise _ParseError("TOO_MANY_OPS", index, pos)
            inner_text = rest[1:-1]
            if inner_text == "$comm":
                raise _ParseError("COMM_CANT_DEREF", index, pos + m.end() + 1)
            inner, inner_mem = self._parse_fetch(inner_text, index, pos + m.end() + 1,
                                                 is_return, depth + 1)
            if inner_mem:          # the inner memory expression yields its value first
                inner = self._read_u64(inner)
            elif inner_text.startswith("%"):   # +off(%reg), the usual form: one step
                roff = 8 * _REG_INDEX[inner_text[1:]]
                return _inlinable(lambda ctx, cpu: (_U64_AT(ctx, roff)[0] + off) & MASK64,
                                  f"(u64(ctx, {roff})[0] + {off}) & {MASK64:#x}"), True
            return (lambda ctx, cpu, f=inner: _add(f(ctx, cpu), off)), True
        raise _ParseError("BAD_FETCH_ARG", index, pos)

    def _read_sized(self, addr_fetch: Fetch, size: int) -> Fetch:
        """Read ``size`` bytes at the fetched address (None on a fault)."""
        mem = self.kernel.mem

        def fetch(ctx: Any, cpu: Any) -> int | None:
            addr = addr_fetch(ctx, cpu)
            if addr is None:
                return None
            err, raw = mem.probe_read(addr, size)
            return None if err else int.from_bytes(raw, "little")
        return fetch

    def _read_u64(self, addr_fetch: Fetch) -> Fetch:
        return self._read_sized(addr_fetch, 8)

    def _stack_nth(self, n: int) -> Fetch:
        sp_index = _REG_INDEX["sp"]
        sp_off = 8 * sp_index
        return self._read_u64(lambda ctx, cpu: _U64_AT(ctx, sp_off)[0] + 8 * n)


def _add(v: int | None, off: int) -> int | None:
    return None if v is None else (v + off) & 0xFFFFFFFFFFFFFFFF


def _busy(tracing: Any, ev: KprobeEvent) -> bool:
    key = (ev.system, ev.name)
    return any(ta.files[key].active or ta.files[key].filter is not None
               for ta in tracing.arrays() if key in ta.files)
