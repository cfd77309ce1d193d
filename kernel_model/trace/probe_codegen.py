"""Generated hit handlers for kprobe events: fetch, reserve, write, filter and commit in one
function, the record's fields written straight into the ring buffer's tail page.

The general path of a kprobe hit (``KprobeEvent.record_from_ctx`` → ``ProbeEvent.arg_values`` →
``TraceEvent.build`` → ``RingBuffer.write_unlocked``) wraps the CPU's pt_regs in a ``PtRegs``,
calls one fetch closure per argument, makes a list of values, packs a ``bytes`` record and copies
it into the page. ``direct_hit(event, file, match, prog)`` generates, once per event and trace
array state (``EventFile.emitter`` asks again after every change), one function ``hit(ctx)``
that:

* reads register arguments (``%REG``, ``$argN`` for N ≤ 6, ``$stack``, ``$retval``) from the
  raw pt_regs with one ``unpack_from`` each, and ``+OFF(%REG)`` memory (integers through
  ``Memory.probe_mem_read``, user memory below TASK_SIZE; strings with ``read_cstr``'s
  one-object case inlined for kernel memory); a ``+uOFF`` dereference is its own closure's;
* computes the record's length and its ``__data_loc`` words from the fetched strings (the
  layout is worked out here, once);
* when the event is the usual one for the tail page (the page has events, the time delta fits
  the header's 27 bits, the event fits), packs the event header and the fixed part in one
  ``pack_into`` at the page's write offset and copies the strings after it: the kernel's
  reserve/commit with no record object in between;
* with a predicate, does what the kernel does while an event has a filter
  (``trace_buffered_event``): builds the record off the ring buffer (one ``pack`` of the fixed
  part and the strings), runs the predicate on it, and only when it passes reads the clock
  and copies it into the page; a failing event leaves the buffer untouched (nothing to
  discard);
* without one, packs the header, the fixed part and a single string in one ``pack_into``
  (a ``Struct`` per string length, made once);
* commits: the page's and CPU's counters, the comm, waking readers.

Anything else takes the general path with the record built as bytes: an argument the generator
does not know (BTF names, arrays, bitfields, nested dereferences, immediates, symbols ...) is
fetched by its own closure over a ``PtRegs`` of the hit; a page switch, a time extend or a
reader inside the buffer (``RingBuffer.others``) hands the bytes to ``fallback`` (the file's
``committer``: any predicate has passed by then), so overwrite, producer-drop, locking and the
accounting stay in one place (ring_buffer.py). The record bytes are the same on both paths
(``tests/test_probe_codegen.py`` compares them on hostile values).
"""
from __future__ import annotations

import re
import struct
import time
from collections.abc import Callable
from typing import Any

from tracesim.kernel_model.kprobes import PT_REGS_NAMES, PtRegs, reg_value
from tracesim.kernel_model.mm.memory import PAGE_SHIFT
from tracesim.kernel_model.trace.event import trace_ctx
from tracesim.kernel_model.trace.probe import FETCH_TYPES, MAX_STRING_SIZE
from tracesim.kernel_model.trace.ring_buffer import (
    _LENGTHS,
    PAGE_HEADER,
    RB_LEN_TIME_EXTEND,
    RB_MAX_SMALL_DATA,
    TS_MASK,
    TS_SHIFT,
    TYPE_TIME_EXTEND,
    event_length,
)

M64 = (1 << 64) - 1
_REG = {name: 8 * i for i, name in enumerate(PT_REGS_NAMES)}
_ARG_REGS = ("di", "si", "dx", "cx", "r8", "r9")
_IP_OFF = _REG["ip"]
_U64 = struct.Struct("<Q").unpack_from
_INT_TYPES = {t for t, (_, _, decl, _) in FETCH_TYPES.items()
              if not decl.startswith("__data_loc") and t != "symbol"}
_DEREF = re.compile(r"^([+-])(u?)(0[xX][0-9a-fA-F]+|\d+)\(%([a-z0-9]+)\)$")


def _reg_offset(expr: str) -> int | None:
    """The pt_regs offset a register expression reads, or None when it is not one."""
    if expr.startswith("%"):
        return _REG.get(expr[1:])
    if expr in ("$stack",):
        return _REG["sp"]
    if expr == "$retval":
        return _REG["ax"]
    if expr.startswith("$arg") and expr[4:].isdigit():
        n = int(expr[4:])
        if 1 <= n <= len(_ARG_REGS):
            return _REG[_ARG_REGS[n - 1]]
    return None


def arg_plan(arg: Any) -> tuple[str, int, int] | None:
    """How the generator fetches ``arg`` inline: ("reg", offset, 0), ("deref", register
    offset, displacement) for an integer or string, or None (the argument's own closure).
    Read from the argument's text as written (``comm``), checked against its parsed type."""
    if arg.count or arg.bitfield is not None:
        return None
    expr = arg.comm.split(":", 1)[0]
    typed = arg.type_name
    m = _DEREF.match(expr)
    if m is not None:
        reg = _REG.get(m.group(4))
        if reg is None or m.group(2) or not (typed == "string" or typed in _INT_TYPES):
            return None
        disp = int(m.group(3), 0) * (-1 if m.group(1) == "-" else 1)
        return "deref", reg, disp
    if typed not in _INT_TYPES:
        return None
    off = _reg_offset(expr)
    return None if off is None else ("reg", off, 0)


_U64_READ = re.compile(r"u64\(ctx, (\d+)\)\[0\]")
_CTX = re.compile(r"\bctx\b")


def _one_register_read(lines: list[str], env: dict[str, Any]) -> list[str]:
    """Every ``u64(ctx, OFF)[0]`` of the generated lines read once, by one ``unpack_from``
    over the pt_regs slots they name (placed after ``task = cpu.task``)."""
    offs = sorted({int(m) for line in lines for m in _U64_READ.findall(line)})
    if len(offs) < 2:
        return lines
    fmt, at = "<", offs[0]
    for off in offs:
        fmt += f"{off - at}x" if off > at else ""
        fmt += "Q"
        at = off + 8
    names = ", ".join(f"x{off}" for off in offs)
    out = [_U64_READ.sub(lambda m: f"x{m.group(1)}", line) for line in lines]
    i = out.index("    task = cpu.task") + 1
    env["unpack_regs"] = struct.Struct(fmt).unpack_from
    out.insert(i, f"    {names} = unpack_regs(ctx, {offs[0]})")
    return out


def _real_clock(clock: Callable[[], int]) -> Any:
    """``clock`` when it is the model's real-time base (``Clock._real_base``: the
    ``perf_counter_ns`` since boot), which the generated code reads without the call; else a
    marker no clock is."""
    func = getattr(clock, "__func__", None)
    owner = getattr(clock, "__self__", None)
    if (func is not None and func.__name__ == "_real_base" and hasattr(owner, "_real_origin")
            and func.__code__.co_names == ("time", "perf_counter_ns", "_real_origin")):
        return clock
    return object()


def _plain_this_cpu_owner(this_cpu: Callable[[], Any]) -> Any:
    """The machine whose own ``this_cpu`` (``return self.current``) ``this_cpu`` is, so the
    generated code reads ``machine.current`` without the call; None for anything else."""
    owner = getattr(this_cpu, "__self__", None)
    func = getattr(this_cpu, "__func__", None)
    if owner is None or func is None or func.__name__ != "this_cpu":
        return None
    return owner if func.__code__.co_names == ("current",) and hasattr(owner, "current") else None


def direct_hit(ev: Any, file: Any, fallback: Callable[..., None],
               match: Callable[..., bool] | None = None,
               prog: Callable[[Any], int] | None = None) -> Callable[[Any], None] | None:
    """The generated ``hit(ctx)`` for kprobe event ``ev`` recorded by ``file`` (see the module
    docstring), or None when the event's record is not one it lays out (not packed, a flexible
    array). ``fallback(record, cpu, ctx, ts)`` is the emitter that writes a built record at
    the time ``ts`` the hit read."""
    if ev._tail_pad or ev._flex is not None or getattr(ev, "primary", None) is not None:
        return None
    array = file.array
    rb = array.buffer
    tracing = array.tracing
    fmt = ev._fixed.format
    fixed = ev.data_offset
    env: dict[str, Any] = {
        "ev": ev, "array": array, "rb": rb, "cpus": rb.cpus, "this_cpu": ev.this_cpu,
        "trace_ctx": trace_ctx, "u64": _U64, "LENGTHS": _LENGTHS, "event_length": event_length,
        "TS_MASK": TS_MASK, "pack": ev._fixed.pack,
        "pack_small": struct.Struct("<I" + fmt[1:]).pack_into,
        "pack_big": struct.Struct("<II" + fmt[1:]).pack_into,
        "pack_ext": struct.Struct("<II").pack_into, "pack_u32": struct.Struct("<I").pack_into,
        "kpages_get": ev.owner.kernel.mem.pages.get, "probe_read": ev.owner.kernel.mem.probe_mem_read,
        "PtRegs": PtRegs, "reg_value": reg_value,
        "cmdlines": tracing.cmdlines, "saved": tracing.cmdlines.map, "tgids": tracing.tgids,
        "fallback": fallback, "match": match, "prog": prog,
    }
    env["machine"] = machine = _plain_this_cpu_owner(ev.this_cpu)
    env["real_clock"] = _real_clock(array.clock)
    env["perf_counter_ns"] = time.perf_counter_ns
    L = ["def hit(ctx):", "    ev.nhit += 1"]
    inline = getattr(prog, "inline", None)
    if inline is not None:          # a JIT'd BPF program's run (event_filter._jit_path's prog)
        env.update({f"bpf_{k}": v for k, v in inline.items()})
        L += ["    bpf_stats.runs += 1",
              "    if bpf_region.buf is not ctx:",
              "        bpf_region.buf = ctx",
              "        bpf_region.end = bpf_start + len(ctx)",
              "    try:",
              "        r0 = bpf_entry(ctx)",
              "    except bpf_VMError as e:",
              "        r0 = bpf_failed(bpf_stats, e)",
              "    if not r0:",
              "        return"]
    elif prog is not None:
        L += ["    if not prog(ctx):", "        return"]
    L += ["    if not array.tracing_on:", "        return",
          "    cpu = machine.current" if machine is not None else "    cpu = this_cpu()",
          "    if (cpu.preempt_count or cpu.irqs_off or cpu.need_resched or cpu.migrate_disable",
          "            or cpu.need_resched_lazy):",
          "        flags, depth = trace_ctx(cpu)",
          "    else:",
          "        flags = depth = 0",
          "    task = cpu.task"]
    if any(arg_plan(a) is None or a.is_string for a in ev.args):
        L.append("    regs = None")
    if ev.is_return:
        values = ["ev._probe.site.addr", f"u64(ctx, {_IP_OFF})[0]"]
    else:
        values = [f"u64(ctx, {_IP_OFF})[0]"]
    strings: list[str] = []

    def need_regs(ind: str) -> list[str]:
        return [f"{ind}if regs is None:",
                f"{ind}    regs = PtRegs(ctx, ev._probe.site.addr)",
                *([f"{ind}    regs.ret_ip = regs.ip"] if ev.is_return else [])]

    def generic(i: int, a: Any, ind: str) -> list[str]:
        """The argument through its own fetch closure, converted as ``arg_values`` does."""
        env[f"f{i}"] = a.fetch
        out = need_regs(ind) + [f"{ind}v{i} = f{i}(regs, cpu)"]
        if a.is_string:
            return out + [f"{ind}s{i} = b'' if v{i} is None else "
                          f"(v{i}.encode() if type(v{i}) is str else bytes(v{i})) + b'\\0'"]
        size, signed = FETCH_TYPES[a.type_name][:2]
        if a.count:
            return out + [f"{ind}v{i} = b''.join(int(x).to_bytes({size}, 'little') for x in "
                          f"(v{i} if v{i} is not None else (0,) * {a.count}))"]
        bits = 8 * size
        out += [f"{ind}if isinstance(v{i}, bytes):", f"{ind}    v{i} = 0",
                f"{ind}v{i} = reg_value(v{i} or 0) & {(1 << bits) - 1:#x}"]
        if signed:
            out += [f"{ind}if v{i} >> {bits - 1}:", f"{ind}    v{i} -= {1 << bits:#x}"]
        return out

    for i, a in enumerate(ev.args):
        plan = arg_plan(a)
        if plan is None:
            L += generic(i, a, "    ")
        elif plan[0] == "reg" or not a.is_string:
            size, signed = FETCH_TYPES[a.type_name][:2]
            bits = 8 * size
            if plan[0] == "reg":
                L.append(f"    v{i} = u64(ctx, {plan[1]})[0] & {(1 << bits) - 1:#x}")
            else:
                L += [f"    e{i}, r{i} = probe_read((u64(ctx, {plan[1]})[0] + {plan[2]}) & {M64:#x},"
                      f" {size})",
                      f"    v{i} = 0 if e{i} else int.from_bytes(r{i}, 'little')"]
            if signed:
                L += [f"    if v{i} >> {bits - 1}:", f"        v{i} -= {1 << bits:#x}"]
        else:                      # a string at a register-relative address
            L += [f"    p{i} = (u64(ctx, {plan[1]})[0] + {plan[2]}) & {M64:#x}",
                  f"    g{i} = kpages_get(p{i} >> {PAGE_SHIFT})",
                  f"    s{i} = None",
                  f"    if g{i} is not None:",
                  f"        o{i} = p{i} - g{i}.base",
                  f"        z{i} = g{i}.buf.find(0, o{i}, o{i} + {MAX_STRING_SIZE - 1})",
                  f"        if z{i} >= 0:",
                  f"            lv{i} = g{i}.live",
                  f"            if lv{i} is None or ((j{i} := o{i} // g{i}.obj_size) =="
                  f" z{i} // g{i}.obj_size and lv{i}[j{i}]):",
                  f"                s{i} = g{i}.buf[o{i}:z{i} + 1]",
                  f"    if s{i} is None:"]
            L += generic(i, a, "        ")
        if a.is_string:
            L.append(f"    l{i} = len(s{i})")
            at = " + ".join([str(fixed)] + [f"l{s[1:]}" for s in strings])
            values.append(f"l{i} << 16 | ({at})")
            strings.append(f"s{i}")
        else:
            values.append(f"v{i}")
    args = ", ".join([str(ev.id), "flags", "depth", "task.pid"] + values)
    n_expr = " + ".join([str(fixed)] + [f"l{s[1:]}" for s in strings])
    L += [f"    n = {n_expr}",
          "    length = LENGTHS[n] if n < 512 else event_length(n)"]
    clock = ["    clock = array.clock",
             "    ts = perf_counter_ns() - real_clock.__self__._real_origin if clock is real_clock"
             " else clock()"]
    if match is None:
        L += clock
    else:
        # the kernel's buffered event (trace_buffered_event): with a filter the fields are
        # written to a per-CPU scratch record first and the filter runs there; a failing
        # event is dropped without the ring buffer being touched, a passing one is copied in
        # (ring_buffer_write)
        rec = " + ".join([f"pack({args})", *strings])   # bytes + a buffer is bytes
        L += [f"    rec = {rec}",
              "    if not match(rec, cpu.id, task.comm):",
              "        return"] + clock      # the time is read when the record goes in
    L += ["    done = False",
          "    rb.writing = True",
          "    cb = cpus[cpu.id]",
          "    try:",
          "        if not rb.others and not cb.record_disabled:",
          "            page = cb.pages[-1]",
          "            w = page.write",
          "            need = length",
          "            if w:",
          "                delta = ts - page.last_ts",
          "                if delta > TS_MASK:       # a time extend before the event",
          f"                    need += {RB_LEN_TIME_EXTEND}",
          "                fast = delta >= 0 and w + need <= cb.data_size",
          "            else:                  # an empty tail page: stamped with this event",
          "                delta = 0",
          "                fast = length <= cb.data_size",
          "                if fast:",
          "                    page.ts = page.last_ts = ts",
          "            if fast:",
          "                buf = page.buf",
          f"                o = {PAGE_HEADER} + w",
          "                if need != length:",
          f"                    pack_ext(buf, o, {TYPE_TIME_EXTEND} | (delta & TS_MASK) << 5,"
          f" delta >> {TS_SHIFT})",
          f"                    o += {RB_LEN_TIME_EXTEND}",
          "                    delta = 0"]
    if match is not None:           # the record is built: the header, then its bytes
        L += [f"                if length > {RB_MAX_SMALL_DATA + 4}:",
              "                    pack_ext(buf, o, delta << 5, length - 4)",
              "                    buf[o + 8:o + 8 + n] = rec",
              "                else:",
              "                    pack_u32(buf, o, (length - 4) >> 2 | delta << 5)",
              "                    buf[o + 4:o + 4 + n] = rec"]
    elif len(strings) == 1 and ev._fixed.size == fixed:   # header, fields, string: one pack
        small: dict[int, Any] = {}
        env["small_packers"] = small
        head = "<I" + fmt[1:]

        def small_packer(n: int, small: dict = small, head: str = head) -> Any:
            pk = small[n] = struct.Struct(f"{head}{n}s").pack_into
            return pk
        env["small_packer"] = small_packer
        s0 = strings[0]
        L += [f"                if length > {RB_MAX_SMALL_DATA + 4}:",
              f"                    pack_big(buf, o, delta << 5, length - 4, {args})",
              f"                    buf[o + {8 + fixed}:o + {8 + fixed} + l{s0[1:]}] = {s0}",
              "                else:",
              f"                    (small_packers.get(l{s0[1:]}) or small_packer(l{s0[1:]}))("
              f"buf, o, (length - 4) >> 2 | delta << 5, {args}, {s0})"]
    else:
        L += [f"                if length > {RB_MAX_SMALL_DATA + 4}:",
              f"                    pack_big(buf, o, delta << 5, length - 4, {args})",
              "                    d = o + 8",
              "                else:",
              f"                    pack_small(buf, o, (length - 4) >> 2 | delta << 5, {args})",
              "                    d = o + 4"]
        at = f"d + {fixed}"
        for s in strings:
            L.append(f"                buf[{at}:{at} + l{s[1:]}] = {s}")
            at += f" + l{s[1:]}"
    if match is not None:
        record = "rec"
    else:
        record = f"pack({args}){''.join(f' + bytes({s})' for s in strings)}"
    L += ["                page.write = w + need",
          "                page.last_ts = ts",
          "                page.entries += 1",
          "                page.bytes += need",
          "                cb.bytes += need",
          "                cb.entries += 1",
          "                done = True",
          "    finally:",
          "        rb.writing = False",
          "    if not done:",
          f"        fallback({record}, cpu, ctx, ts)",
          "        return",
          "    if array.record_cmd and saved.get(task.pid) != task.comm:",
          "        cmdlines.record(task.pid, task.comm)",
          "    if array.record_tgid:",
          "        tgids[task.pid] = task.tgid",
          "    if rb.waiters:",
          "        rb.wake_waiters()"]
    args_lines = _args_form(ev, L, env) if prog is None else None
    L = _one_register_read(L, env)
    source = "\n".join(L) + "\n"
    exec(compile(source, f"<kprobe hit {ev.system}:{ev.name}>", "exec"), env)  # noqa: S102
    hit = env["hit"]
    hit.source = source
    if args_lines is not None:
        args_source = "\n".join(args_lines) + "\n"
        exec(compile(args_source, f"<kprobe hit {ev.system}:{ev.name} (args)>", "exec"),  # noqa: S102
             env)
        hit.args_hit = env["hit_args"]
        hit.args_hit.source = args_source
    return hit


def _args_form(ev: Any, lines: list[str], env: dict[str, Any]) -> list[str] | None:
    """The same hit as ``hit_args(a0, ..)``, taking the probed function's C arguments as the
    kprobe site has them (``Kprobe.args_handler``): the register values it reads are the
    arguments' (``reg_value``), ``ip`` the function's address, so the site writes no pt_regs
    for it. Only for an entry probe at the function's start whose fields read argument
    registers and ``ip`` (no BPF program); an argument fetched by its own closure gets the
    CPU's pt_regs written then, as the site would have (``KprobeSite._write_regs``). None when
    the event is not such a one."""
    kprobes = ev.owner.kernel.kprobes
    site = kprobes.sites.get(getattr(ev, "symbol", None))
    if site is None or ev.is_return or getattr(ev, "offset", 0):
        return None
    nargs = site.nargs
    arg_offs = {_REG[r]: i for i, r in enumerate(_ARG_REGS)}
    offs = sorted({int(m) for line in lines for m in _U64_READ.findall(line)})
    values = {}
    for off in offs:
        if off == _IP_OFF:
            values[off] = str(site.addr)
        elif off in arg_offs:
            i = arg_offs[off]
            values[off] = (f"(a{i} & {M64:#x} if type(a{i}) is int else g if (g := getattr(a{i},"
                           f" 'addr', None)) is not None else reg_value(a{i}))"
                           if i < nargs else "0")
        else:
            return None
    params = ", ".join(f"a{i}" for i in range(nargs))
    site_regs, write_regs, addr = kprobes.regs, site._write_regs, site.addr

    def fill_regs(cpu: Any, args: tuple) -> bytearray:
        """The CPU's pt_regs as the site writes them for a call with ``args``."""
        regs = site_regs[cpu.id]
        write_regs(regs, addr, args)
        return regs
    env["fill_regs"] = fill_regs
    given = f"({params}{',' if nargs == 1 else ''})"
    out = [f"def hit_args({params}):"]
    for line in lines[1:]:
        line = _U64_READ.sub(lambda m: f"x{m.group(1)}", line)
        line = line.replace("PtRegs(ctx, ", f"PtRegs(fill_regs(cpu, {given}), ")
        line = line.replace(", cpu, ctx, ts)", ", cpu, None, ts)")
        if _CTX.search(line):
            return None
        out.append(line)
        if line == "    task = cpu.task":
            out += [f"    x{off} = {v}" for off, v in values.items()]
    return out
