"""One BPF object opened, loaded and attached the way libbpf's skeleton does it (``tracesim run``).

    run = ObjectRun(kernel, ta, elf_bytes, name="biolatency", sets=["min_us=10"])
    run.messages                  # libbpf-style lines (load and attach failures, in order)
    run.drain()                   # [(map, raw record)] from its ring buffers / perf buffers
    run.detach()

The steps are libbpf's: open (the one loader's ``open_object``: ELF, CO-RE), set globals in
``.rodata``/``.data``/``.bss`` by their BTF names (``--set``, before load: ``.rodata`` is then
frozen), create the maps (a map the kernel refuses fails the whole object, as
``bpf_object__load`` does), load every program (its type from its section), attach each by its
section (``tracesim.filters.bpf.attach``).  A program that fails to load or attach is reported with
libbpf's lines and the others go on (``strict``: the first failure detaches everything and raises
``ObjectError``).  Each program's ``run_cnt``/``run_time_ns`` are counted as the kernel's
``bpf_stats`` counts them.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from tracesim.filters.bpf import loader as loadermod
from tracesim.filters.bpf.attach import (
    AttachError,
    Link,
    attach_program,
    check_load_target,
    errstr,
)
from tracesim.filters.bpf.event_filter import (
    PRINTK_HELPERS,
    STACK_HELPERS,
    FilterStats,
    TraceEnv,
    calls_helper,
    fast_path,
)
from tracesim.filters.bpf.runtime.maps import BpfMap
from tracesim.filters.bpf.toolchain import btf as btfmod
from tracesim.filters.bpf.vm import isa

OBJ_NAME_LEN = 16                               # BPF_OBJ_NAME_LEN
DATA_SECTIONS = (".rodata", ".data", ".bss", ".kconfig")


class ObjectError(Exception):
    """The object cannot run at all: ``lines`` are what libbpf (or the option parser) says."""

    def __init__(self, *lines: str) -> None:
        super().__init__(lines[-1] if lines else "")
        self.lines = list(lines)


@dataclass
class ProgramRun:
    """One program of the object: loaded (``runner`` set) and attached (``link``), or failed."""
    name: str
    section: str
    prog_type: str = ""
    insns: int = 0
    tag: str = ""
    engine: str = ""
    state: str = "failed"                          # attached, loaded (no auto-attach), failed
    error: str = ""
    link: Link | None = None
    stats: FilterStats = field(default_factory=FilterStats)
    map_names: list[str] = field(default_factory=list)
    loaded: loadermod.LoadedProgram | None = None

    @property
    def attach_point(self) -> str:
        if self.link is None:
            return "-"
        return f"{self.link.target.describe()} ({', '.join(self.link.points)})" \
            if self.link.points and self.link.target.kind.endswith("multi") \
            else self.link.target.describe()


def object_name(path: str) -> str:
    """libbpf's ``obj->name``: the file's base name up to its first dot."""
    return os.path.basename(path).split(".", 1)[0] or "obj"


def map_display_name(obj_name: str, map_name: str) -> str:
    """The name the kernel knows an internal map by: ``<obj prefix><.rodata>`` in 15 bytes."""
    if not map_name.startswith(".") or map_name.count(".") > 1:
        return map_name[:OBJ_NAME_LEN - 1]
    prefix = min(OBJ_NAME_LEN - len(map_name) - 1, len(obj_name))
    return obj_name[:prefix] + map_name


def prog_tag(insns: Sequence[isa.Insn]) -> str:
    """A program's tag as bpftool prints it (16 hex digits of a SHA-1 over its instructions)."""
    return hashlib.sha1(isa.encode(list(insns))).hexdigest()[:16]


class ObjectRun:
    """An object loaded and attached in ``kernel`` (bpf_printk goes to trace array ``ta``)."""

    def __init__(self, kernel: Any, ta: Any, data: bytes, *, name: str = "obj",
                 sets: Sequence[str] = (), engine: str = "auto", strict: bool = False,
                 verify_with: Callable[..., Any] | None = None,
                 cookies: Mapping[str, int | Mapping[str, int]] | Sequence[str] | None = None
                 ) -> None:
        self.kernel = kernel
        # bpf_cookie per program name (the skeleton's attach with opts.bpf_cookie; a
        # kprobe.multi program's may map symbols to cookies, as opts.cookies[] does)
        self.cookies: dict[str, int | Mapping[str, int]] = \
            dict(parse_cookies(cookies)) if isinstance(cookies, (list, tuple)) else \
            dict(cast(Mapping[str, "int | Mapping[str, int]"], cookies or {}))
        self.name = name
        self.messages: list[str] = []
        self.programs: list[ProgramRun] = []
        try:
            self.obj = loadermod.open_object(data)
        except loadermod.LoadError as e:
            raise ObjectError(f"libbpf: failed to open object '{name}': {e.summary}") from None
        self.messages += [f"libbpf: {line}" for line in self.obj.core_log]
        unknown = sorted(set(self.cookies) - {p.name for p in self.obj.programs})
        if unknown:
            raise ObjectError(f"--cookie {unknown[0]}: the object has no program "
                              f"'{unknown[0]}'")
        for assignment in sets:
            set_global(self.obj, assignment)
        self.maps: list[BpfMap] = []
        for spec in self.obj.maps:
            try:
                self.maps += loadermod.create_maps([spec], kernel.ncpus)
            except loadermod.LoadError as e:
                why = e.log.splitlines()[1] if len(e.log.splitlines()) > 1 else e.summary
                raise ObjectError(f"libbpf: map '{map_display_name(name, spec.name)}': failed to "
                                  f"create: {errstr(e.errno)} ({why})",
                                  f"libbpf: failed to load object '{name}'") from None
        for m, spec in zip(self.maps, self.obj.maps, strict=True):
            m.name = map_display_name(name, spec.name)      # as bpftool lists it
            m.section = spec.section          # type: ignore[attr-defined]
            m.frozen = spec.section.startswith((".rodata", ".kconfig"))  # type: ignore[attr-defined]
        self.env = TraceEnv(kernel, ta)
        for prog_spec in self.obj.programs:
            prog = self._load(prog_spec, engine, verify_with)
            self.programs.append(prog)
            if prog.state == "failed" and strict:
                self.detach()
                raise ObjectError(*self.messages)
        # libbpf fills program arrays and maps of maps from ``.values = {...}`` after loading
        loaded = {p.name: p.loaded for p in self.programs if p.loaded is not None}
        try:
            loadermod.fill_initial_slots(self.obj.maps, self.maps, loaded)
        except loadermod.LoadError as e:
            self.messages.append(e.summary)
            if strict:
                self.detach()
                raise ObjectError(*self.messages) from None

    def _load(self, spec: Any, engine: str, verify_with: Callable[..., Any] | None) -> ProgramRun:
        prog = ProgramRun(spec.name, spec.section)
        try:
            check_load_target(self.kernel, spec.name, spec.section)
            loaded = loadermod.load_object_program(self.obj, spec, maps=self.maps,
                                                   ncpus=self.kernel.ncpus, engine=engine,
                                                   verify_with=verify_with)
        except loadermod.LoadError as e:
            prog.error = e.summary
            self.messages += _load_failure(spec.name, e)
            return prog
        prog.loaded = loaded
        prog.prog_type, prog.insns, prog.engine = loaded.prog_type, len(loaded.insns), loaded.engine
        prog.tag = prog_tag(loaded.insns)
        prog.map_names = [m.name for m in loaded.maps if _references(loaded.insns, loaded.maps, m)]
        if calls_helper(loaded.insns, PRINTK_HELPERS):
            self.env.enable_printk()
        if calls_helper(loaded.insns, STACK_HELPERS):
            self.env.hold_stacks()
        env = self.env.for_program()          # what its helpers learn of its attachment
        run = _timed(fast_path(loaded, env, prog.stats), prog.stats)
        try:
            prog.link = attach_program(self.kernel, spec.name, spec.section, run, env,
                                       self.cookies.get(spec.name, 0))
        except AttachError as e:
            prog.error = e.lines[-1] if e.lines else errstr(e.errno)
            self.messages += [f"libbpf: {line}" for line in e.lines]
            self.messages.append(f"libbpf: prog '{spec.name}': failed to auto-attach: "
                                 f"{errstr(e.errno)}")
            return prog
        prog.state = "attached" if prog.link is not None else "loaded"
        return prog

    # -- while running
    def tick(self) -> None:
        """Run what is due on the model's clock (perf_event samplers)."""
        for p in self.programs:
            if p.link is not None and p.link.sampler is not None:
                p.link.sampler.tick()

    def drain(self) -> list[tuple[BpfMap, bytes]]:
        """Every record committed to the object's ring buffers and perf buffers since the last
        call, oldest first per map (``consume()`` of each such map)."""
        out = []
        for m in self.maps:
            consume = getattr(m, "consume", None)
            if consume is not None:
                out += [(m, bytes(r)) for r in consume()]
        return out

    def detach(self) -> None:
        for p in self.programs:
            if p.link is not None:
                p.link.detach()
                p.link = None
                if p.state == "attached":
                    p.state = "detached"


def _references(insns: Sequence[isa.Insn], maps: Sequence[BpfMap], m: BpfMap) -> bool:
    index = next(i for i, x in enumerate(maps) if x is m)
    return any(i.opcode == isa.LD_IMM64 and i.src in (isa.PSEUDO_MAP_FD, isa.PSEUDO_MAP_VALUE)
               and i.imm == index for i in insns)


def _timed(run: Callable[[bytes], int], stats: FilterStats) -> Callable[[bytes], int]:
    """``run`` with its time added to ``stats.run_time_ns`` (bpf_stats' run_time_ns)."""
    clock = time.perf_counter_ns

    def prog(ctx: bytes) -> int:
        start = clock()
        try:
            return run(ctx)
        finally:
            stats.run_time_ns += clock() - start
    return prog


def _load_failure(prog: str, e: loadermod.LoadError) -> list[str]:
    """What libbpf prints when the kernel refuses a program (its verifier log between
    BEGIN/END markers), or for a section it cannot type."""
    if e.stage == "section":
        return [f"libbpf: {e.summary}", f"libbpf: prog '{prog}': failed to load: "
                                        f"{errstr(e.errno)}"]
    if e.stage == "prepare":            # the sec_def's prog_prepare_load_fn failed
        return [f"libbpf: {e.summary}",
                f"libbpf: prog '{prog}': failed to prepare load attributes: {errstr(e.errno)}",
                f"libbpf: prog '{prog}': failed to load: {errstr(e.errno)}"]
    reason = os.strerror(e.errno)
    log = e.log if e.log.endswith("\n") else e.log + "\n"
    return [f"libbpf: prog '{prog}': BPF program load failed: {reason}",
            f"libbpf: prog '{prog}': -- BEGIN PROG LOAD LOG --\n{log}-- END PROG LOAD LOG --",
            f"libbpf: prog '{prog}': failed to load: {errstr(e.errno)}"]


# ---------------------------------------------------------------- --cookie PROG=VALUE

def parse_cookies(words: Sequence[str]) -> dict[str, int | dict[str, int]]:
    """``--cookie PROG=VALUE`` (the link's bpf_cookie) and ``--cookie PROG:SYMBOL=VALUE`` (one
    symbol's cookie of a kprobe.multi link): program name -> cookie or {symbol: cookie}.
    ``ObjectError`` for a malformed one."""
    out: dict[str, int | dict[str, int]] = {}
    for word in words:
        where, sep, text = word.partition("=")
        prog, colon, symbol = where.strip().partition(":")
        try:
            value = int(text, 0)
        except ValueError:
            value = -1
        if not sep or not prog or (colon and not symbol) or not 0 <= value < 1 << 64:
            raise ObjectError(f"--cookie '{word}': expected PROG=VALUE or PROG:SYMBOL=VALUE "
                              "with a 64-bit unsigned VALUE")
        have = out.get(prog)
        if colon:
            if isinstance(have, int):
                raise ObjectError(f"--cookie '{word}': {prog} already has one cookie")
            out.setdefault(prog, {})[symbol] = value      # type: ignore[index]
        elif have is not None:
            raise ObjectError(f"--cookie '{word}': {prog} already has a cookie")
        else:
            out[prog] = value
    return out


# ---------------------------------------------------------------- --set NAME=VALUE

def global_variables(obj: Any) -> dict[str, tuple[Any, int, int, int]]:
    """Global variables of the object's data sections by name: (map spec, BTF type, offset,
    size)."""
    out: dict[str, tuple[Any, int, int, int]] = {}
    if obj.btf is None:
        return out
    for spec in obj.maps:
        if spec.section.startswith(DATA_SECTIONS):
            for var, tid, off, size in obj.btf.datasec(spec.section):
                out.setdefault(var, (spec, tid, off, size))
    return out


def set_global(obj: Any, assignment: str) -> None:
    """``NAME=VALUE``: the variable's initial value, checked against its BTF type, as a
    skeleton's ``skel->rodata->NAME = VALUE`` before load.  ``ObjectError`` naming the problem."""
    name, sep, text = assignment.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ObjectError(f"--set '{assignment}': expected NAME=VALUE")
    variables = global_variables(obj)
    if name not in variables:
        have = ", ".join(sorted(variables)) or "none"
        raise ObjectError(f"--set {name}: the object has no global variable '{name}' in "
                          f".rodata, .data or .bss (it has: {have})")
    spec, tid, off, size = variables[name]
    try:
        raw = encode_value(obj.btf, tid, text)
    except ValueError as e:
        raise ObjectError(f"--set {name}={text}: {e}") from None
    image = bytearray(spec.initial.ljust(spec.value_size, b"\0"))
    image[off:off + size] = raw.ljust(size, b"\0")[:size]
    spec.initial = bytes(image)


def encode_value(btf: Any, tid: int, text: str) -> bytes:
    """``text`` as a value of BTF type ``tid``: integers (range-checked for their size and
    sign), bools, enums (by name or number), char arrays (strings that fit with their NUL).
    ValueError saying why not."""
    rid = btf.resolve(tid)
    t = btf.get(rid)
    tname = btf.type_name(tid)
    if t.kind == btfmod.INT:
        size = t.ref
        if t.int_encoding & btfmod.INT_BOOL:
            if text not in ("true", "false", "1", "0"):
                raise ValueError(f"'{tname}' takes true or false")
            return bytes([text in ("true", "1")]).ljust(size, b"\0")
        signed = bool(t.int_encoding & btfmod.INT_SIGNED)
        return _encode_int(text, size, signed, tname)
    if t.kind in (btfmod.ENUM, btfmod.ENUM64):
        values = {n: v for n, v, _ in t.members}
        if text in values:
            return (values[text] & ((1 << (8 * t.ref)) - 1)).to_bytes(t.ref, "little")
        try:
            return _encode_int(text, t.ref, True, tname)
        except ValueError:
            raise ValueError(f"'{tname}' takes one of {', '.join(values)} or a number") from None
    if t.kind == btfmod.ARRAY:
        elem, _, count = t.array
        et = btf.get(btf.resolve(elem))
        if et.kind == btfmod.INT and et.ref == 1:
            raw = text.encode()
            if len(raw) >= count:
                raise ValueError(f"the string is {len(raw)} bytes: '{tname}' holds at most "
                                 f"{count - 1} and the NUL")
            return raw.ljust(count, b"\0")
    raise ValueError(f"a '{tname}' cannot be set from the command line (integers, bools, "
                     "enums and char arrays can)")


def _encode_int(text: str, size: int, signed: bool, tname: str) -> bytes:
    try:
        value = int(text, 0)
    except ValueError:
        raise ValueError(f"'{text}' is not an integer ('{tname}')") from None
    lo, hi = (-(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1) if signed else \
        (0, (1 << (8 * size)) - 1)
    if not lo <= value <= hi:
        raise ValueError(f"{value} is out of range for '{tname}' ({lo}..{hi})")
    return value.to_bytes(size, "little", signed=signed)
