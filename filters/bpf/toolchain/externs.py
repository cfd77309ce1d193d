"""``extern`` variables of a BPF object resolved as libbpf resolves them (``bpf_object__collect_
externs`` / ``bpf_object__resolve_externs``):

* ``__kconfig`` externs (section ``.kconfig``): ``LINUX_KERNEL_VERSION`` (the model is Linux
  6.18.44: ``KERNEL_VERSION(6, 18, 44)``), ``LINUX_HAS_SYSCALL_WRAPPER`` and
  ``LINUX_HAS_BPF_COOKIE`` (both true on the model's x86-64), and ``CONFIG_*`` from ``KCONFIG``,
  a distribution-like tracing configuration.  Their values go into one read-only array map,
  ``.kconfig``, and every reference becomes a load from it.
* ``__ksym`` externs (section ``.ksyms``): an untyped one (``extern const void sym __ksym``)
  is the symbol's address from the model's kallsyms (the loader passes a ``ksym_address``
  look-up); ``ld_imm64`` loads it as a constant.  A typed one (``extern const int cpu_number
  __ksym``) is a VAR of the kernel's BTF (``kernel_btf``: the model's, whose VARs are its
  per-CPU variables), its type compatible with the extern's as ``bpf_core_types_are_compat``
  decides; ``ld_imm64`` then carries the VAR's BTF id (``BPF_PSEUDO_BTF_ID``).
* A ``__weak`` extern that cannot be resolved is 0; a strong one fails the open with libbpf's
  message (``ExternError``, errno ESRCH), as does a value of the wrong type (EINVAL).
"""
from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field

from tracesim.filters.bpf.toolchain import btf as btfmod

KERNEL_VERSION = (6, 18, 44)


def kernel_version_code(major: int, minor: int, patch: int) -> int:
    """KERNEL_VERSION(a, b, c) as libbpf computes it (the patch level saturates at 255)."""
    return (major << 16) + (minor << 8) + min(patch, 255)


VIRTUAL_EXTERNS = {"LINUX_KERNEL_VERSION": kernel_version_code(*KERNEL_VERSION),
                   "LINUX_HAS_SYSCALL_WRAPPER": 1, "LINUX_HAS_BPF_COOKIE": 1}

# The model's /boot/config-6.18.44: what a distribution kernel built for tracing sets (y, m,
# numbers, quoted strings); anything else is unset ("is not set").
KCONFIG: dict[str, str] = {
    "CONFIG_64BIT": "y", "CONFIG_X86_64": "y", "CONFIG_SMP": "y", "CONFIG_NR_CPUS": "8192",
    "CONFIG_HZ": "250", "CONFIG_HZ_250": "y", "CONFIG_PREEMPT_VOLUNTARY": "y",
    "CONFIG_PREEMPT_DYNAMIC": "y", "CONFIG_LOCALVERSION": '""',
    "CONFIG_DEFAULT_HOSTNAME": '"(none)"', "CONFIG_ARCH_HAS_NON_OVERLAPPING_ADDRESS_SPACE": "y",
    "CONFIG_BPF": "y", "CONFIG_BPF_SYSCALL": "y", "CONFIG_BPF_JIT": "y",
    "CONFIG_BPF_JIT_ALWAYS_ON": "y", "CONFIG_BPF_JIT_DEFAULT_ON": "y",
    "CONFIG_BPF_UNPRIV_DEFAULT_OFF": "y", "CONFIG_BPF_EVENTS": "y", "CONFIG_BPF_LSM": "y",
    "CONFIG_BPF_STREAM_PARSER": "y", "CONFIG_CGROUP_BPF": "y", "CONFIG_CGROUPS": "y",
    "CONFIG_DEBUG_INFO_BTF": "y", "CONFIG_DEBUG_INFO_BTF_MODULES": "y",
    "CONFIG_PAHOLE_HAS_SPLIT_BTF": "y", "CONFIG_KALLSYMS": "y", "CONFIG_KALLSYMS_ALL": "y",
    "CONFIG_KPROBES": "y", "CONFIG_KPROBE_EVENTS": "y", "CONFIG_KRETPROBES": "y",
    "CONFIG_UPROBES": "y", "CONFIG_UPROBE_EVENTS": "y", "CONFIG_TRACEPOINTS": "y",
    "CONFIG_FTRACE": "y", "CONFIG_FUNCTION_TRACER": "y", "CONFIG_FUNCTION_GRAPH_TRACER": "y",
    "CONFIG_DYNAMIC_FTRACE": "y", "CONFIG_DYNAMIC_FTRACE_WITH_REGS": "y",
    "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS": "y", "CONFIG_DYNAMIC_FTRACE_WITH_ARGS": "y",
    "CONFIG_FPROBE": "y", "CONFIG_FPROBE_EVENTS": "y", "CONFIG_PROBE_EVENTS_BTF_ARGS": "y",
    "CONFIG_FTRACE_SYSCALLS": "y", "CONFIG_HAVE_SYSCALL_TRACEPOINTS": "y",
    "CONFIG_STACK_TRACER": "y", "CONFIG_HIST_TRIGGERS": "y", "CONFIG_SYNTH_EVENTS": "y",
    "CONFIG_USER_EVENTS": "y", "CONFIG_PERF_EVENTS": "y", "CONFIG_FUNCTION_ERROR_INJECTION": "y",
    "CONFIG_NET": "y", "CONFIG_INET": "y", "CONFIG_IPV6": "y", "CONFIG_XDP_SOCKETS": "y",
    "CONFIG_NET_CLS_BPF": "m", "CONFIG_NET_ACT_BPF": "m", "CONFIG_NETFILTER": "y",
    "CONFIG_NF_CONNTRACK": "m", "CONFIG_TCP_CONG_BBR": "m", "CONFIG_TUN": "m",
    "CONFIG_VIRTIO_NET": "m", "CONFIG_EXT4_FS": "y", "CONFIG_XFS_FS": "m", "CONFIG_BTRFS_FS": "m",
    "CONFIG_BLK_DEV_IO_TRACE": "y", "CONFIG_SCHED_CLASS_EXT": "y", "CONFIG_SCHEDSTATS": "y",
}


class ExternError(ValueError):
    """An extern libbpf cannot resolve; ``errno`` is what the open returns."""

    def __init__(self, message: str, err: int) -> None:
        super().__init__(message)
        self.errno = err


@dataclass
class ExternSym:
    """An undefined symbol of the object: ``weak`` from its ELF binding."""
    name: str
    weak: bool


@dataclass
class Externs:
    """What the relocations need: ``kconfig_offsets`` (name -> offset in the ``.kconfig`` map
    image ``kconfig``) and ``ksyms`` (name -> address, 0 for an unresolved weak one)."""
    kconfig: bytes
    kconfig_offsets: dict[str, int]
    ksyms: dict[str, int]
    ksym_btf_ids: dict[str, int] = field(default_factory=dict)   # typed: the kernel VAR's id


def _kcfg_value(name: str, kind: str, size: int, raw: str) -> bytes:
    """set_kcfg_value_tri/_num/_str: the bytes of ``raw`` for an extern of ``kind``."""
    if raw in ("y", "n", "m"):
        if kind == "bool" and raw == "m":
            raise ExternError(f"extern (kcfg) '{name}': value '{raw}' implies tristate or char "
                              f"type", errno.EINVAL)
        if kind in ("bool", "tristate"):
            return {"y": 1, "n": 0, "m": 2}[raw].to_bytes(size, "little")
        if kind == "char":
            return raw.encode()
        raise ExternError(f"extern (kcfg) '{name}': value '{raw}' implies bool, tristate or "
                          f"char type", errno.EINVAL)
    if raw.startswith('"'):
        if kind != "char_array":
            raise ExternError(f"extern (kcfg) '{name}': value '{raw}' implies char array type",
                              errno.EINVAL)
        text = raw.strip('"').encode()[:size - 1]
        return text + bytes(size - len(text))
    value = int(raw, 0)
    if kind not in ("int", "char"):
        raise ExternError(f"extern (kcfg) '{name}': value '{value}' implies integer type",
                          errno.EINVAL)
    if value >= 1 << (8 * size):
        raise ExternError(f"extern (kcfg) '{name}': value '{value}' doesn't fit in {size} bytes",
                          errno.ERANGE)
    return value.to_bytes(size, "little")


def _kcfg_kind(btf: btfmod.Btf, type_id: int) -> str:
    t = btf.get(btf.resolve(type_id))
    if t.kind == btfmod.INT:
        if t.int_encoding & btfmod.INT_BOOL:
            return "bool"
        return "char" if t.int_encoding & btfmod.INT_CHAR or t.ref == 1 else "int"
    if t.kind in (btfmod.ENUM, btfmod.ENUM64):
        return "tristate" if t.name == "libbpf_tristate" else "int"
    if t.kind == btfmod.ARRAY and _kcfg_kind(btf, t.array[0]) == "char":
        return "char_array"
    return "unsupported"


def _ksym_types(btf: btfmod.Btf | None) -> dict[str, int]:
    """The typed ``__ksym`` variables of the object: name -> local type id (modifiers and
    typedefs skipped; a ``void`` one is untyped and left out)."""
    out: dict[str, int] = {}
    if btf is None:
        return out
    for name, type_id, _off, _size in btf.datasec(".ksyms"):
        tid = btf.resolve(type_id)
        if tid and btf.get(tid).kind != btfmod.FUNC:
            out[name] = tid
    return out


_KIND_STR = {btfmod.INT: "int", btfmod.PTR: "ptr", btfmod.ARRAY: "array",
             btfmod.STRUCT: "struct", btfmod.UNION: "union", btfmod.ENUM: "enum",
             btfmod.FWD: "fwd", btfmod.TYPEDEF: "typedef", btfmod.FUNC_PROTO: "func_proto",
             btfmod.ENUM64: "enum64", btfmod.FLOAT: "float"}


def _compat(local: btfmod.Btf, lid: int, targ: btfmod.Btf, tid: int, depth: int = 0) -> bool:
    """bpf_core_types_are_compat: the same kind (modifiers and typedefs skipped), ints of any
    size, pointers to compatible types, arrays of compatible elements; structs, unions and
    enums by kind only."""
    lid, tid = local.resolve(lid), targ.resolve(tid)
    if lid == 0 or tid == 0:
        return lid == tid
    lt, tt = local.get(lid), targ.get(tid)
    if lt.kind != tt.kind:
        return {lt.kind, tt.kind} <= {btfmod.ENUM, btfmod.ENUM64} or \
            (btfmod.FWD in (lt.kind, tt.kind) and {lt.kind, tt.kind} <= {
                btfmod.FWD, btfmod.STRUCT, btfmod.UNION})
    if depth > 32:
        return False
    if lt.kind == btfmod.PTR:
        return _compat(local, lt.ref, targ, tt.ref, depth + 1)
    if lt.kind == btfmod.ARRAY:
        return _compat(local, lt.array[0], targ, tt.array[0], depth + 1)
    if lt.kind == btfmod.FUNC_PROTO:
        return len(lt.members) == len(tt.members) and _compat(local, lt.ref, targ, tt.ref,
                                                              depth + 1)
    return True


def _kernel_var(kernel_btf: btfmod.Btf | None, name: str) -> int | None:
    if kernel_btf is None:
        return None
    for tid, t in enumerate(kernel_btf.types):
        if t.kind == btfmod.VAR and t.name == name:
            return tid
    return None


def _resolve_typed_ksym(btf: btfmod.Btf, kernel_btf: btfmod.Btf | None, name: str,
                        local_tid: int, weak: bool) -> int | None:
    """bpf_object__resolve_ksym_var_btf_id: the kernel VAR's BTF id (None: a weak one that
    is not there)."""
    vid = _kernel_var(kernel_btf, name)
    if vid is None:
        if weak:
            return None
        raise ExternError(f"extern (var ksym) '{name}': not found in kernel BTF", errno.ESRCH)
    assert kernel_btf is not None
    targ_tid = kernel_btf.resolve(kernel_btf.get(vid).ref)
    if not _compat(btf, local_tid, kernel_btf, targ_tid):
        lt, tt = btf.get(local_tid), kernel_btf.get(targ_tid)
        raise ExternError(f"extern (var ksym) '{name}': incompatible types, expected "
                          f"[{local_tid}] {_KIND_STR.get(lt.kind, 'unknown')} {lt.name}, but "
                          f"kernel has [{targ_tid}] {_KIND_STR.get(tt.kind, 'unknown')} "
                          f"{tt.name}", errno.EINVAL)
    return vid


def resolve(btf: btfmod.Btf | None, syms: list[ExternSym],
            ksym_address: Callable[[str], int | None] | None = None,
            kconfig: dict[str, str] | None = None,
            kernel_btf: btfmod.Btf | None = None) -> Externs:
    """Resolve the object's externs (``syms``: its undefined symbols), as libbpf does."""
    kconfig = KCONFIG if kconfig is None else kconfig
    weak = {s.name: s.weak for s in syms}
    kcfg_vars = btf.datasec(".kconfig") if btf is not None else []
    image = bytearray()
    offsets: dict[str, int] = {}
    for name, type_id, _off, _size in kcfg_vars:
        if name not in weak:
            continue
        size = btf.size_of(type_id)
        kind = _kcfg_kind(btf, type_id)
        if kind == "unsupported":
            raise ExternError(f"extern (kcfg) '{name}': type '{btf.type_name(type_id)}' is not "
                              f"supported", errno.ENOTSUP)
        align = min(size, 8) if kind != "char_array" else 1
        offsets[name] = off = (len(image) + align - 1) // align * align
        image += bytes(off + size - len(image))
        if name in VIRTUAL_EXTERNS:
            value = VIRTUAL_EXTERNS[name].to_bytes(size, "little")
        elif name.startswith("LINUX_"):
            if not weak[name]:
                raise ExternError(f"extern (kcfg) '{name}': unrecognized virtual extern",
                                  errno.EINVAL)
            continue
        elif name in kconfig:
            value = _kcfg_value(name, kind, size, kconfig[name])
        elif weak[name]:
            continue                                 # weak and unset: stays 0
        else:
            raise ExternError(f"extern '{name}' (strong): not resolved", errno.ESRCH)
        image[off:off + size] = value
    ksyms: dict[str, int] = {}
    btf_ids: dict[str, int] = {}
    typed = _ksym_types(btf)
    for s in syms:                    # the rest: __ksym externs, by address from kallsyms
        if s.name in offsets:
            continue
        if s.name in typed:           # typed: by BTF id (an unresolved weak one loads 0)
            assert btf is not None
            vid = _resolve_typed_ksym(btf, kernel_btf, s.name, typed[s.name], s.weak)
            if vid is None:
                ksyms[s.name] = 0
            else:
                btf_ids[s.name] = vid
            continue
        addr = ksym_address(s.name) if ksym_address is not None else None
        if addr is None and not s.weak:
            raise ExternError(f"extern '{s.name}' (strong): not resolved", errno.ESRCH)
        ksyms[s.name] = addr or 0
    return Externs(bytes(image), offsets, ksyms, btf_ids)
