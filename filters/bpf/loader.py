"""The one program loader: object -> maps -> program type -> verifier -> checks -> engine.

    obj = open_object(elf_bytes)                       # ELF parsed, relocations applied
    loaded = load_object_program(obj, obj.program("name"), engine="jit", event=event)
    loaded.runner(ctx, env=...)                        # Interpreter or JitProgram

or, for instructions that come from elsewhere (a 2013 image, assembler text, raw bytes),
``load(insns, prog_type=..., ...)``.  Every path that runs a program goes through ``load``: the
event filter (``event_filter``), the RSS steering program (``tools/ebpf_rss.py``),
``tracesim check`` (``engine=None``: verify and check only) and the conformance runner.

The program type comes from the ELF section name as libbpf finds it (``SECTION_DEFS``, first
match wins; ``kprobe+`` matches ``kprobe`` and ``kprobe/...``); a name libbpf does not know fails
as libbpf's load does ("missing BPF prog type").  The verify step is one call,
``verify_program``, so another way of verifying (a worker pool) can replace it in one place.
Engines are ``ENGINES`` (``interp``: the reference interpreter, ``jit``: Python source,
``native``: machine code through llvmlite) and ``auto``, which ``choose_engine`` resolves per
program; ``helpers=`` gives a program its own id -> callable map (default: the implementations of
``helper_table``).

The ``auto`` rule (measured with ``tracesim bench vm``: a call into native code costs a few
microseconds of ctypes and table set-up, the Python JIT runs a straight-line instruction in tens of
nanoseconds): native for a program that loops (a backward jump), calls a subprogram, or has more
than ``AUTO_NATIVE_MIN_INSNS`` instructions; the Python JIT for anything smaller, such as a
tracepoint filter.  Without llvmlite, ``auto`` takes the Python JIT and says so once on stderr.
"""
from __future__ import annotations

import errno
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from tracesim.filters.bpf.runtime import helper_table
from tracesim.filters.bpf.runtime.helpers import Helper
from tracesim.filters.bpf.runtime.helpers_skb import SK_BUFF_CTX_SIZE
from tracesim.filters.bpf.runtime.maps import (
    MAP_TYPE_PROG_ARRAY,
    MAP_TYPE_RINGBUF,
    BpfMap,
    MapError,
    create_map,
)
from tracesim.filters.bpf.runtime.program import Program, ProgramError, load_program
from tracesim.filters.bpf.toolchain import core_reloc
from tracesim.filters.bpf.toolchain import elf as elfmod
from tracesim.filters.bpf.toolchain.externs import ExternError
from tracesim.filters.bpf.verifier import ContextSpec, VerifierResult, verify
from tracesim.filters.bpf.verifier.context import BTF_ARGS_SIZE, PT_REGS_SIZE
from tracesim.filters.bpf.vm import isa, native
from tracesim.filters.bpf.vm.analysis import is_pseudo_call
from tracesim.filters.bpf.vm.interp import Interpreter
from tracesim.filters.bpf.vm.jit import JitProgram, compile_program
from tracesim.kernel_model.kallsyms import Kallsyms

ENGINES = ("jit", "interp", "native")
ENGINE_CHOICES = ENGINES + ("auto",)
AUTO_NATIVE_MIN_INSNS = 200        # straight-line length from which native code pays for its call
GPL_COMPATIBLE = ("GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL",
                  "Dual MIT/GPL", "Dual MPL/GPL")                 # license_is_gpl_compatible

# libbpf's section_defs (v1.7, in its order): SEC() pattern -> BPF_PROG_TYPE_*.  "x+" matches
# "x" and "x/anything"; any other pattern only itself.
SECTION_DEFS: tuple[tuple[str, str], ...] = (
    ("socket", "SOCKET_FILTER"), ("sk_reuseport/migrate", "SK_REUSEPORT"),
    ("sk_reuseport", "SK_REUSEPORT"), ("kprobe+", "KPROBE"), ("uprobe+", "KPROBE"),
    ("uprobe.s+", "KPROBE"), ("kretprobe+", "KPROBE"), ("uretprobe+", "KPROBE"),
    ("uretprobe.s+", "KPROBE"), ("kprobe.multi+", "KPROBE"), ("kretprobe.multi+", "KPROBE"),
    ("kprobe.session+", "KPROBE"), ("uprobe.multi+", "KPROBE"), ("uretprobe.multi+", "KPROBE"),
    ("uprobe.session+", "KPROBE"), ("uprobe.multi.s+", "KPROBE"),
    ("uretprobe.multi.s+", "KPROBE"), ("uprobe.session.s+", "KPROBE"), ("ksyscall+", "KPROBE"),
    ("kretsyscall+", "KPROBE"), ("usdt+", "KPROBE"), ("usdt.s+", "KPROBE"),
    ("tc/ingress", "SCHED_CLS"), ("tc/egress", "SCHED_CLS"), ("tcx/ingress", "SCHED_CLS"),
    ("tcx/egress", "SCHED_CLS"), ("tc", "SCHED_CLS"), ("classifier", "SCHED_CLS"),
    ("action", "SCHED_ACT"), ("netkit/primary", "SCHED_CLS"), ("netkit/peer", "SCHED_CLS"),
    ("tracepoint+", "TRACEPOINT"), ("tp+", "TRACEPOINT"), ("raw_tracepoint+", "RAW_TRACEPOINT"),
    ("raw_tp+", "RAW_TRACEPOINT"), ("raw_tracepoint.w+", "RAW_TRACEPOINT_WRITABLE"),
    ("raw_tp.w+", "RAW_TRACEPOINT_WRITABLE"), ("tp_btf+", "TRACING"), ("fentry+", "TRACING"),
    ("fmod_ret+", "TRACING"), ("fexit+", "TRACING"), ("fentry.s+", "TRACING"),
    ("fmod_ret.s+", "TRACING"), ("fexit.s+", "TRACING"), ("freplace+", "EXT"),
    ("lsm+", "LSM"), ("lsm.s+", "LSM"), ("lsm_cgroup+", "LSM"), ("iter+", "TRACING"),
    ("iter.s+", "TRACING"), ("syscall", "SYSCALL"), ("xdp.frags/devmap", "XDP"),
    ("xdp/devmap", "XDP"), ("xdp.frags/cpumap", "XDP"), ("xdp/cpumap", "XDP"),
    ("xdp.frags", "XDP"), ("xdp", "XDP"), ("perf_event", "PERF_EVENT"), ("lwt_in", "LWT_IN"),
    ("lwt_out", "LWT_OUT"), ("lwt_xmit", "LWT_XMIT"), ("lwt_seg6local", "LWT_SEG6LOCAL"),
    ("sockops", "SOCK_OPS"), ("sk_skb/stream_parser", "SK_SKB"),
    ("sk_skb/stream_verdict", "SK_SKB"), ("sk_skb/verdict", "SK_SKB"), ("sk_skb", "SK_SKB"),
    ("sk_msg", "SK_MSG"), ("lirc_mode2", "LIRC_MODE2"), ("flow_dissector", "FLOW_DISSECTOR"),
    ("cgroup_skb/ingress", "CGROUP_SKB"), ("cgroup_skb/egress", "CGROUP_SKB"),
    ("cgroup/skb", "CGROUP_SKB"), ("cgroup/sock_create", "CGROUP_SOCK"),
    ("cgroup/sock_release", "CGROUP_SOCK"), ("cgroup/sock", "CGROUP_SOCK"),
    ("cgroup/post_bind4", "CGROUP_SOCK"), ("cgroup/post_bind6", "CGROUP_SOCK"),
    ("cgroup/bind4", "CGROUP_SOCK_ADDR"), ("cgroup/bind6", "CGROUP_SOCK_ADDR"),
    ("cgroup/connect4", "CGROUP_SOCK_ADDR"), ("cgroup/connect6", "CGROUP_SOCK_ADDR"),
    ("cgroup/connect_unix", "CGROUP_SOCK_ADDR"), ("cgroup/sendmsg4", "CGROUP_SOCK_ADDR"),
    ("cgroup/sendmsg6", "CGROUP_SOCK_ADDR"), ("cgroup/sendmsg_unix", "CGROUP_SOCK_ADDR"),
    ("cgroup/recvmsg4", "CGROUP_SOCK_ADDR"), ("cgroup/recvmsg6", "CGROUP_SOCK_ADDR"),
    ("cgroup/recvmsg_unix", "CGROUP_SOCK_ADDR"), ("cgroup/getpeername4", "CGROUP_SOCK_ADDR"),
    ("cgroup/getpeername6", "CGROUP_SOCK_ADDR"), ("cgroup/getpeername_unix", "CGROUP_SOCK_ADDR"),
    ("cgroup/getsockname4", "CGROUP_SOCK_ADDR"), ("cgroup/getsockname6", "CGROUP_SOCK_ADDR"),
    ("cgroup/getsockname_unix", "CGROUP_SOCK_ADDR"), ("cgroup/sysctl", "CGROUP_SYSCTL"),
    ("cgroup/getsockopt", "CGROUP_SOCKOPT"), ("cgroup/setsockopt", "CGROUP_SOCKOPT"),
    ("cgroup/dev", "CGROUP_DEVICE"), ("struct_ops+", "STRUCT_OPS"),
    ("struct_ops.s+", "STRUCT_OPS"), ("sk_lookup", "SK_LOOKUP"), ("netfilter", "NETFILTER"),
)

# BPF_PROG_TYPE_* -> the verifier's name, for the types tracesim runs.
SUPPORTED_TYPES = {"KPROBE": "kprobe", "TRACEPOINT": "tracepoint",
                   "SOCKET_FILTER": "socket_filter", "RAW_TRACEPOINT": "raw_tracepoint",
                   "TRACING": "tracing", "PERF_EVENT": "perf_event"}


class LoadError(Exception):
    """A program that cannot be loaded.  ``summary``: one line (``error_log``, the verifier's
    error); ``log``: the verifier's full log, or the summary; ``errno``: EACCES for what the
    verifier or the GPL check refuses, EINVAL for a bad object, section or map; ``stage``: the
    step that failed (one of ``STAGES``)."""

    def __init__(self, summary: str, log: str = "", err: int = errno.EACCES,
                 stage: str = "object") -> None:
        super().__init__(summary)
        self.summary = summary
        self.log = log or summary + "\n"
        self.errno = err
        self.stage = stage


STAGES = ("object", "section", "prepare", "maps", "verifier", "license", "check")


@dataclass
class LoadedProgram:
    """A verified, checked program and the engine that runs it (``runner`` is None when loaded
    with ``engine=None``)."""
    name: str
    section: str
    prog_type: str
    insns: list[isa.Insn]
    maps: list[BpfMap]
    log: str
    program: Program
    engine: str | None
    runner: Interpreter | JitProgram | native.NativeProgram | None = field(default=None, repr=False)
    btf: Any = field(default=None, repr=False)


# ---------------------------------------------------------------- program type

def _section_matches(pattern: str, section: str) -> bool:
    if pattern.endswith("+"):
        stem = pattern[:-1]
        return section == stem or section.startswith(stem + "/")
    return section == pattern


def section_def(section: str) -> str | None:
    """The BPF_PROG_TYPE_* name (without prefix) libbpf gives ``SEC(section)``, or None."""
    return next((t for p, t in SECTION_DEFS if _section_matches(p, section)), None)


def prog_type_of(name: str, section: str) -> str:
    """The verifier's program type for program ``name`` in ``SEC(section)``; ``LoadError``
    (EINVAL) for a section libbpf does not know or a type tracesim does not run."""
    kernel_type = section_def(section)
    if kernel_type is None:
        raise LoadError(f"prog '{name}': missing BPF prog type, check ELF section name "
                        f"'{section}'", err=errno.EINVAL, stage="section")
    prog_type = SUPPORTED_TYPES.get(kernel_type)
    if prog_type is None:
        raise LoadError(f"prog '{name}': program type BPF_PROG_TYPE_{kernel_type} (section "
                        f"'{section}') is not supported by tracesim", err=errno.EINVAL,
                        stage="section")
    return prog_type


def tracepoint_target(section: str) -> tuple[str, str] | None:
    """(system, event) a ``tracepoint/<sys>/<event>`` or ``tp/...`` section names; None for a
    bare ``SEC("tracepoint")``; ``LoadError`` (EINVAL) without the second '/', as libbpf."""
    kind, _, rest = section.partition("/")
    if kind not in ("tracepoint", "tp") or not rest:
        return None
    system, sep, event = rest.partition("/")
    if not sep or not system or not event:
        raise LoadError(f"invalid SEC('{section}'): tracepoint needs <category>/<name>",
                        err=errno.EINVAL, stage="section")
    return system, event


def context_for(prog_type: str, event: Any = None) -> tuple[ContextSpec | None, int | None]:
    """(verifier context, bytes each run passes) for a program type; a tracepoint program's
    context is ``event``'s record (its ``all_fields`` and ``struct_size``) when given."""
    if prog_type == "kprobe":
        return ContextSpec.pt_regs(), PT_REGS_SIZE
    if prog_type == "socket_filter":
        return ContextSpec.sk_buff(), SK_BUFF_CTX_SIZE
    if prog_type == "raw_tracepoint":
        spec = ContextSpec.args()
        return spec, spec.size
    if prog_type == "tracing":
        return ContextSpec.btf_args(), BTF_ARGS_SIZE
    if prog_type == "perf_event":
        spec = ContextSpec.perf_event()
        return spec, spec.size
    if prog_type == "tracepoint" and event is not None:
        fields = [(f.name, f.offset, f.size) for f in event.all_fields]
        return ContextSpec.tracepoint(fields, event.struct_size), event.struct_size
    return None, None


# ---------------------------------------------------------------- the steps

def ksym_address(name: str) -> int | None:
    """The model kernel's address of ``name`` (its kallsyms), for ``__ksym`` externs."""
    global _kallsyms
    if _kallsyms is None:
        _kallsyms = Kallsyms()
    return _kallsyms.address_of(name)


_kallsyms: Any = None


def _kernel_btf(data: bytes) -> Any:
    """The model kernel's BTF, for an object with typed ``__ksym`` externs (else None)."""
    if b".ksyms" not in data:
        return None
    from tracesim.kernel_model.model_btf import model_btf
    return model_btf()


def open_object(data: bytes, target_btf: Any = None) -> elfmod.BpfObject:
    """An ELF object, its relocations applied: the CO-RE relocations of its ``.BTF.ext``
    against ``target_btf`` (default: the model kernel's BTF), as libbpf does before loading,
    then the ELF ones, its externs resolved (``externs``: kconfig values of the model, ksyms
    from its kallsyms).  ``LoadError`` (EINVAL; ESRCH for an unresolved strong extern) if it
    cannot be used."""
    core_log: list[str] = []
    if b".BTF.ext" in data:               # only objects with BTF.ext can carry CO-RE records
        if target_btf is None:
            from tracesim.kernel_model.model_btf import model_btf
            target_btf = model_btf()
        try:
            data, core_log = core_reloc.apply_to_elf(data, target_btf)
        except core_reloc.CoreReloError as e:
            raise LoadError(f"libbpf: {e}", err=e.errno, stage="object") from None
    try:
        obj = elfmod.load_object(data, ksym_address, kernel_btf=_kernel_btf(data))
    except ExternError as e:
        raise LoadError(f"libbpf: {e}", err=e.errno) from None
    except (elfmod.ElfLoadError, ValueError) as e:
        raise LoadError(f"invalid BPF object: {e}", err=errno.EINVAL) from None
    obj.core_log = core_log
    return obj


def create_maps(specs: Sequence[Any], ncpus: int = 1) -> list[BpfMap]:
    """bpf(BPF_MAP_CREATE) for each map spec of an object (a map of maps' inner definition
    first, as its template); ``LoadError`` with the kernel's errno and libbpf's message."""
    out = []
    for spec in specs:
        inner_spec = getattr(spec, "inner", None)
        inner = create_maps([inner_spec], ncpus)[0] if inner_spec is not None else None
        entries = spec.max_entries
        if spec.type == MAP_TYPE_RINGBUF:
            entries = ringbuf_size(entries)
        try:
            m = create_map(spec.name, spec.type, spec.key_size, spec.value_size,
                           entries, spec.flags, ncpus, spec.initial, inner=inner,
                           map_extra=getattr(spec, "map_extra", 0))
        except MapError as e:
            msg = f"libbpf: map '{spec.name}': failed to create: {_errno_name(e.errno)}"
            raise LoadError(msg, f"{msg}\n{e}\n", err=e.errno, stage="maps") from None
        m.key_type = getattr(spec, "key_type", 0)      # BTF ids, for dumping
        m.value_type = getattr(spec, "value_type", 0)
        out.append(m)
    return out


def ringbuf_size(size: int) -> int:
    """libbpf's adjust_ringbuf_sz: a valid ring buffer size (a power-of-2 number of pages)
    stays, any other is rounded up to the next one; 0 stays 0 (for the kernel to refuse)."""
    if not size:
        return 0
    pages = -(-size // 4096)
    return 4096 << (pages - 1).bit_length()


ENOTSUPP = 524                                 # the kernel-internal "not supported"
# the errnos libbpf's errstr() spells by name (any other is its number)
ERRNO_NAMES = {getattr(errno, n): n for n in (
    "EINVAL", "EPERM", "ENXIO", "ENOMEM", "ENOENT", "E2BIG", "EEXIST", "EFAULT", "ENOSPC",
    "EACCES", "EAGAIN", "EBADF", "ENAMETOOLONG", "ESRCH", "EBUSY", "EPROTO", "ERANGE",
    "EMSGSIZE", "EINTR", "ENODATA", "ENODEV", "ENOLINK", "EIO", "EUCLEAN", "EDOM", "ELOOP",
    "EPROTONOSUPPORT", "EDEADLK", "EOVERFLOW", "EOPNOTSUPP", "EINPROGRESS", "EBADFD",
    "EADDRINUSE", "EADDRNOTAVAIL", "ECANCELED", "EILSEQ", "EMFILE", "ENOTTY", "EALREADY",
    "ECHILD")}
ERRNO_NAMES[ENOTSUPP] = "ENOTSUPP"


def errstr(err: int) -> str:
    """libbpf's ``errstr()``: ``-ENOENT`` for a known errno, else the number."""
    name = ERRNO_NAMES.get(err)
    return f"-{name}" if name else f"-{err}"


def _errno_name(err: int) -> str:
    """libbpf's errstr(): -EINVAL, -E2BIG ... (-ENOTSUPP for the kernel-internal 524)."""
    return errstr(err)


def fill_initial_slots(specs: Sequence[Any], maps: Sequence[BpfMap],
                       programs: Mapping[str, LoadedProgram]) -> None:
    """Put what ``.values = { [i] = &x }`` names into program arrays (loaded programs, by
    function name) and maps of maps (the object's maps, by name), as libbpf does after
    loading; ``LoadError`` (EINVAL) for a name it cannot find or the map refuses."""
    by_name = {s.name: m for s, m in zip(specs, maps, strict=True)}   # the object's own names
    for spec, m in zip(specs, maps, strict=True):
        for index, name in sorted(getattr(spec, "init_slots", {}).items()):
            target = programs.get(name) if spec.type == MAP_TYPE_PROG_ARRAY else by_name.get(name)
            if target is None:
                raise LoadError(f"libbpf: map '{spec.name}': slot {index}: no loaded program or "
                                f"map '{name}'", err=errno.EINVAL, stage="maps")
            try:
                cast(Any, m).update(index.to_bytes(m.key_size, "little"), target)  # an fd map
            except MapError as e:
                raise LoadError(f"libbpf: map '{spec.name}': slot {index} ('{name}'): {e}",
                                err=e.errno, stage="maps") from None


def verify_program(insns: Sequence[isa.Insn], *, prog_type: str, ctx: ContextSpec | None,
                   maps: Sequence[Any], privileged: bool = True, log_level: int = 1,
                   strict_loops: bool = False, attach: str = "") -> VerifierResult:
    """The verify step of every load (the one place to swap in another way of verifying)."""
    return verify(insns, prog_type=prog_type, ctx=ctx, maps=maps, privileged=privileged,
                  strict_loops=strict_loops, log_level=log_level, attach=attach)


def expected_attach(prog_type: str, section: str) -> str:
    """A tracing program's expected attach type as its section names it (``fentry``,
    ``fexit.s``, ``tp_btf``...); "" for other programs or a section that does not say."""
    kind = section.partition("/")[0]
    return kind if prog_type == "tracing" and kind in TRACING_ATTACH_KINDS else ""


TRACING_ATTACH_KINDS = ("tp_btf", "fentry", "fexit", "fmod_ret", "fentry.s", "fexit.s",
                        "fmod_ret.s", "iter", "iter.s")


def check_license(insns: Sequence[isa.Insn], license_: str) -> None:
    """check_helper_call: gpl_only helpers need a GPL-compatible license."""
    if license_ in GPL_COMPATIBLE:
        return
    for pc, i in enumerate(insns):
        if i.opcode == isa.OP_CALL and i.src == 0 and helper_table.gpl_only(i.imm):
            msg = "cannot call GPL-restricted function from non-GPL compatible program"
            raise LoadError(msg, f"{pc}: call {helper_table.helper_name(i.imm)}#{i.imm}\n{msg}\n",
                            stage="license")


def check_engine(engine: str) -> None:
    """ValueError unless ``engine`` is one of ``ENGINE_CHOICES``."""
    if engine not in ENGINE_CHOICES:
        raise ValueError(f"engine must be one of {ENGINE_CHOICES}, not {engine!r}")


_fallback_noticed = False


def choose_engine(insns: Sequence[isa.Insn]) -> str:
    """What ``auto`` runs ``insns`` on (the rule is in the module docstring)."""
    global _fallback_noticed
    if not native.available():
        if not _fallback_noticed:
            _fallback_noticed = True
            print(f"tracesim: native BPF engine unavailable ({native.IMPORT_ERROR}); "
                  "using the Python JIT", file=sys.stderr)
        return "jit"
    if len(insns) > AUTO_NATIVE_MIN_INSNS:
        return "native"
    for pc, i in enumerate(insns):
        if is_pseudo_call(i):
            return "native"
        if isa.is_jump(i) and isa.jump_target(pc, i) <= pc:
            return "native"
    return "jit"


def make_runner(program: Program, engine: str) -> Interpreter | JitProgram | native.NativeProgram:
    """The engine ``engine`` (one of ``ENGINE_CHOICES``) prepared for ``program``;
    ``LoadError`` (EINVAL) for ``native`` without llvmlite."""
    check_engine(engine)
    if engine == "auto":
        engine = choose_engine(program.insns)
    if engine == "native":
        try:
            return native.compile_native(program)
        except native.NativeUnavailable as e:
            raise LoadError(str(e), err=errno.EINVAL, stage="check") from None
    return compile_program(program) if engine == "jit" else Interpreter(program)


def engine_of(runner: object) -> str:
    """The name of the engine a runner is (what ``auto`` chose)."""
    if isinstance(runner, JitProgram):
        return "jit"
    return "native" if isinstance(runner, native.NativeProgram) else "interp"


def load(insns: Sequence[isa.Insn], *, prog_type: str, name: str = "", section: str = "",
         maps: Sequence[Any] = (), ctx: ContextSpec | None = None, ctx_size: int | None = None,
         ctx_writable: bool = False, license: str | None = None,
         helpers: Mapping[int, Helper] | None = None, engine: str | None = "jit",
         verify: bool = True, privileged: bool = True, log_level: int = 1,
         strict_loops: bool = False, btf: Any = None,
         verify_with: Callable[..., VerifierResult] | None = None) -> LoadedProgram:
    """Verify (unless ``verify`` is False; with ``verify_with`` instead of ``verify_program``
    when given, e.g. a worker pool), check the license (when ``license`` is not None), check
    the program for the engines and prepare ``engine`` (None: none).  ``LoadError``."""
    if engine is not None:
        check_engine(engine)
    insns = [isa.Insn(*i) for i in insns]
    log = ""
    if verify:
        kw: dict[str, Any] = {}
        attach = expected_attach(prog_type, section)
        if attach:
            kw["attach"] = attach
        res = (verify_with or verify_program)(insns, prog_type=prog_type, ctx=ctx, maps=maps,
                                              privileged=privileged, log_level=log_level,
                                              strict_loops=strict_loops, **kw)
        if not res.ok:
            raise LoadError(res.error or "verifier rejected the program", res.log,
                            err=getattr(res, "errno", errno.EACCES), stage="verifier")
        log = res.log
    if license is not None:
        check_license(insns, license)
    try:
        program = load_program(insns, maps=maps, helpers=helpers, name=name, ctx_size=ctx_size,
                               ctx_writable=ctx_writable)
    except ProgramError as e:
        raise LoadError(str(e), err=errno.EINVAL, stage="check") from None
    runner = make_runner(program, engine) if engine is not None else None
    if runner is not None:
        engine = engine_of(runner)        # what "auto" chose
    return LoadedProgram(name, section, prog_type, insns, list(maps), log, program, engine,
                         runner, btf)


def load_object_program(obj: elfmod.BpfObject, spec: elfmod.ProgramSpec, *,
                        maps: Sequence[BpfMap] | None = None, ncpus: int = 1,
                        prog_type: str | None = None, event: Any = None,
                        **kw: Any) -> LoadedProgram:
    """Load program ``spec`` of ``obj``: its type from its section (unless ``prog_type`` says),
    the object's maps (created, unless ``maps`` reuses those of an earlier load), the context
    for ``event`` (a tracepoint's record), the object's license.  ``kw`` go to ``load``."""
    prog_type = prog_type or prog_type_of(spec.name, spec.section)
    map_objs = list(maps) if maps is not None else create_maps(obj.maps, ncpus)
    ctx, ctx_size = context_for(prog_type, event)
    return load(spec.insns, prog_type=prog_type, name=spec.name, section=spec.section,
                maps=map_objs, ctx=ctx, ctx_size=ctx_size, license=obj.license, btf=obj.btf,
                **kw)
