"""What a program may do with its context pointer (r1 at entry), per program type.

``ContextSpec.check(off, size, write)`` answers like the kernel's ``*_is_valid_access`` callbacks:
None when the access is refused, else the kind of value a read yields.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

PT_REGS_SIZE = 168          # struct pt_regs on x86-64
PERF_MAX_TRACE_SIZE = 2048
MAX_BPF_FUNC_ARGS = 12      # raw tracepoint / fentry contexts: u64 args[12] at most
PERF_EVENT_DATA_SIZE = PT_REGS_SIZE + 16   # struct bpf_perf_event_data: regs, sample_period, addr
BTF_ARGS_SIZE = 8 * (MAX_BPF_FUNC_ARGS + 1)    # fentry/fexit: the arguments, then the return value
SK_BUFF_SIZE = 192          # uapi struct __sk_buff

# uapi struct __sk_buff: name -> (offset, size)
SK_BUFF_FIELDS = {
    "len": (0, 4), "pkt_type": (4, 4), "mark": (8, 4), "queue_mapping": (12, 4),
    "protocol": (16, 4), "vlan_present": (20, 4), "vlan_tci": (24, 4), "vlan_proto": (28, 4),
    "priority": (32, 4), "ingress_ifindex": (36, 4), "ifindex": (40, 4), "tc_index": (44, 4),
    "cb": (48, 20), "hash": (68, 4), "tc_classid": (72, 4), "data": (76, 4), "data_end": (80, 4),
    "napi_id": (84, 4), "family": (88, 4), "remote_ip4": (92, 4), "local_ip4": (96, 4),
    "remote_ip6": (100, 16), "local_ip6": (116, 16), "remote_port": (132, 4),
    "local_port": (136, 4), "data_meta": (140, 4), "flow_keys": (144, 8), "tstamp": (152, 8),
    "wire_len": (160, 4), "gso_segs": (164, 4), "sk": (168, 8), "gso_size": (176, 4),
    "tstamp_type": (180, 1), "hwtstamp": (184, 8),
}

SCALAR = "scalar"
SOCK_COMMON_OR_NULL = "sock_common_or_null"


def _in(off: int, name: str) -> bool:
    start, size = SK_BUFF_FIELDS[name]
    return start <= off < start + size


def _sk_filter_access(off: int, size: int, write: bool) -> str | None:
    """sk_filter_is_valid_access + bpf_skb_is_valid_access (Linux 6.18) for socket filters."""
    for name in ("tc_classid", "data", "data_meta", "data_end", "tstamp", "wire_len", "hwtstamp"):
        if _in(off, name):
            return None
    if 88 <= off < 140:                   # family .. local_port: sk_skb programs only
        return None
    if write and not _in(off, "cb"):
        return None
    if off < 0 or off >= SK_BUFF_SIZE or off % size:
        return None
    if _in(off, "cb"):
        return SCALAR if off + size <= 68 else None
    if _in(off, "flow_keys") or off == 180 or 181 <= off < 184:
        return None
    if off == 168:
        return SOCK_COMMON_OR_NULL if size == 8 else None
    if write:
        return SCALAR if size == 4 else None
    # only narrow reads of the u32 fields: (off & 3) + size <= 4
    return SCALAR if (off & 3) + size <= 4 else None


@dataclass(frozen=True)
class ContextSpec:
    """The context region a program receives in r1."""
    kind: str                      # "pt_regs", "tracepoint", "sk_buff" or "memory"
    size: int
    readonly: bool = True
    fields: tuple[tuple[str, int, int], ...] = field(default=())

    @classmethod
    def pt_regs(cls) -> ContextSpec:
        return cls("pt_regs", PT_REGS_SIZE)

    @classmethod
    def tracepoint(cls, fields: Iterable[tuple[str, int, int]], size: int) -> ContextSpec:
        """The event record as its ``format`` file describes it: (name, offset, size) fields."""
        return cls("tracepoint", size, True, tuple((n, o, s) for n, o, s in fields))

    @classmethod
    def args(cls, count: int = MAX_BPF_FUNC_ARGS) -> ContextSpec:
        """Raw tracepoints, tp_btf, fentry/fexit: ``u64 args[count]`` (fexit: the return value
        after the arguments), read only (raw_tp_prog_is_valid_access / btf_ctx_access)."""
        return cls("args", 8 * count)

    @classmethod
    def perf_event(cls) -> ContextSpec:
        """``struct bpf_perf_event_data`` of a perf_event program, read only."""
        return cls("perf_event", PERF_EVENT_DATA_SIZE)

    @classmethod
    def sk_buff(cls) -> ContextSpec:
        return cls("sk_buff", SK_BUFF_SIZE, False)

    @classmethod
    def btf_args(cls, nargs: int = MAX_BPF_FUNC_ARGS, fexit: bool = True) -> ContextSpec:
        """BPF_PROG_TYPE_TRACING (fentry/fexit/tp_btf): ``u64 ctx[]``, the traced function's
        arguments (and, for fexit, its return value after them), read-only."""
        return cls("btf_args", 8 * (nargs + fexit), True)

    @classmethod
    def memory(cls, size: int) -> ContextSpec:
        """The conformance model: r1 = ``size`` bytes of read-write memory, r2 = ``size``."""
        return cls("memory", size, False)

    @property
    def is_memory(self) -> bool:
        return self.kind == "memory"

    def check(self, off: int, size: int, write: bool) -> str | None:
        """None if the access is refused, else the kind of the value read."""
        if self.kind in ("pt_regs", "args", "perf_event"):
            ok = 0 <= off and off + size <= self.size and off % size == 0 and not write
            return SCALAR if ok else None
        if self.kind == "tracepoint":
            # tp_prog_is_valid_access: the common fields (first 8 bytes) are not readable
            ok = 8 <= off and off + size <= self.size and off % size == 0 and not write
            return SCALAR if ok else None
        if self.kind == "sk_buff":
            return _sk_filter_access(off, size, write)
        if self.kind == "btf_args":
            # btf_ctx_access: an aligned u64 slot (or a narrower read of one), read-only
            ok = 0 <= off and off + size <= self.size and off % size == 0 and not write
            return SCALAR if ok else None
        return None


def default_context(prog_type: str) -> ContextSpec:
    if prog_type == "kprobe":
        return ContextSpec.pt_regs()
    if prog_type == "tracepoint":
        return ContextSpec.tracepoint((), PERF_MAX_TRACE_SIZE)
    if prog_type == "socket_filter":
        return ContextSpec.sk_buff()
    if prog_type in ("raw_tracepoint", "tracing"):
        return ContextSpec.args()
    if prog_type == "perf_event":
        return ContextSpec.perf_event()
    if prog_type == "conformance":
        return ContextSpec.memory(0)
    if prog_type == "tracing":
        return ContextSpec.btf_args()
    raise ValueError(f"unknown program type {prog_type!r}")
