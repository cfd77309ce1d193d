"""Helper prototypes by Linux helper id (uapi ``enum bpf_func_id``), as the verifier checks calls.

Each prototype names the kernel function (for messages such as ``program of this type cannot use
helper bpf_skb_load_bytes#26``), the kinds of its arguments r1..r5 and the kind of its result, the
way ``struct bpf_func_proto`` does.  Which helpers a program type may call is a table too.
"""
from __future__ import annotations

from typing import NamedTuple

# Argument kinds (enum bpf_arg_type, reduced to those tracesim's helpers use).
ANYTHING = "anything"              # any initialised value
CONST_MAP_PTR = "const_map_ptr"    # a map from LD_IMM64 src=PSEUDO_MAP_FD
MAP_KEY = "map_key"                # memory of the map's key_size, initialised
MAP_VALUE = "map_value"            # memory of the map's value_size, initialised
CTX = "ctx"                        # the program's context, unmodified
MEM = "mem"                        # read-only memory, size in the next argument
UNINIT_MEM = "uninit_mem"          # memory the helper writes, size in the next argument
CONST_SIZE = "const_size"          # size of the previous memory argument, > 0
CONST_SIZE_OR_ZERO = "const_size_or_zero"
CONST_ALLOC_SIZE_OR_ZERO = "const_alloc_size_or_zero"   # a known constant: size of returned mem
RINGBUF_MEM_RELEASE = "ringbuf_mem_release"             # memory from ringbuf_reserve, released

# Return kinds (enum bpf_return_type).
RET_INTEGER = "integer"
RET_VOID = "void"
RET_MAP_VALUE_OR_NULL = "map_value_or_null"
RET_RINGBUF_MEM_OR_NULL = "ringbuf_mem_or_null"

BPF_MAP_TYPE_RINGBUF = 27
FUNC_MAX_ID = 212      # __BPF_FUNC_MAX_ID in Linux 6.18: ids at or above it are "unknown"


class HelperProto(NamedTuple):
    name: str
    args: tuple[str, ...]
    ret: str


PROTOS: dict[int, HelperProto] = {
    1: HelperProto("bpf_map_lookup_elem", (CONST_MAP_PTR, MAP_KEY), RET_MAP_VALUE_OR_NULL),
    2: HelperProto("bpf_map_update_elem", (CONST_MAP_PTR, MAP_KEY, MAP_VALUE, ANYTHING),
                   RET_INTEGER),
    3: HelperProto("bpf_map_delete_elem", (CONST_MAP_PTR, MAP_KEY), RET_INTEGER),
    4: HelperProto("bpf_probe_read", (UNINIT_MEM, CONST_SIZE_OR_ZERO, ANYTHING), RET_INTEGER),
    5: HelperProto("bpf_ktime_get_ns", (), RET_INTEGER),
    6: HelperProto("bpf_trace_printk", (MEM, CONST_SIZE), RET_INTEGER),
    7: HelperProto("bpf_get_prandom_u32", (), RET_INTEGER),
    8: HelperProto("bpf_get_smp_processor_id", (), RET_INTEGER),
    14: HelperProto("bpf_get_current_pid_tgid", (), RET_INTEGER),
    16: HelperProto("bpf_get_current_comm", (UNINIT_MEM, CONST_SIZE), RET_INTEGER),
    26: HelperProto("bpf_skb_load_bytes", (CTX, ANYTHING, UNINIT_MEM, CONST_SIZE), RET_INTEGER),
    45: HelperProto("bpf_probe_read_str", (UNINIT_MEM, CONST_SIZE_OR_ZERO, ANYTHING), RET_INTEGER),
    68: HelperProto("bpf_skb_load_bytes_relative",
                    (CTX, ANYTHING, UNINIT_MEM, CONST_SIZE, ANYTHING), RET_INTEGER),
    112: HelperProto("bpf_probe_read_user", (UNINIT_MEM, CONST_SIZE_OR_ZERO, ANYTHING), RET_INTEGER),
    113: HelperProto("bpf_probe_read_kernel", (UNINIT_MEM, CONST_SIZE_OR_ZERO, ANYTHING),
                     RET_INTEGER),
    114: HelperProto("bpf_probe_read_user_str", (UNINIT_MEM, CONST_SIZE_OR_ZERO, ANYTHING),
                     RET_INTEGER),
    115: HelperProto("bpf_probe_read_kernel_str", (UNINIT_MEM, CONST_SIZE_OR_ZERO, ANYTHING),
                     RET_INTEGER),
    130: HelperProto("bpf_ringbuf_output", (CONST_MAP_PTR, MEM, CONST_SIZE_OR_ZERO, ANYTHING),
                     RET_INTEGER),
    131: HelperProto("bpf_ringbuf_reserve", (CONST_MAP_PTR, CONST_ALLOC_SIZE_OR_ZERO, ANYTHING),
                     RET_RINGBUF_MEM_OR_NULL),
    132: HelperProto("bpf_ringbuf_submit", (RINGBUF_MEM_RELEASE, ANYTHING), RET_VOID),
    133: HelperProto("bpf_ringbuf_discard", (RINGBUF_MEM_RELEASE, ANYTHING), RET_VOID),
    134: HelperProto("bpf_ringbuf_query", (CONST_MAP_PTR, ANYTHING), RET_INTEGER),
}

# The conformance suite's execution model has exactly one helper.
CONFORMANCE_PROTOS = {5: HelperProto("unwind", (ANYTHING,), RET_INTEGER)}

# Kernel names of other well-known ids, only for messages about helpers a type may not call.
_OTHER_NAMES = {9: "bpf_skb_store_bytes", 12: "bpf_tail_call", 15: "bpf_get_current_uid_gid",
                25: "bpf_perf_event_output", 35: "bpf_get_current_task",
                113: "bpf_probe_read_kernel"}

_MAP_HELPERS = {1, 2, 3}
_RINGBUF_HELPERS = {130, 131, 132, 133, 134}
_TRACING = _MAP_HELPERS | _RINGBUF_HELPERS | {4, 5, 6, 7, 8, 14, 16, 45, 112, 113, 114, 115}
_SOCKET = _MAP_HELPERS | _RINGBUF_HELPERS | {5, 7, 8, 26, 68}
_SOCKET_PRIVILEGED = {6}      # bpf_base_func_proto gives trace_printk to CAP_PERFMON loaders only

ALLOWED = {"kprobe": _TRACING, "tracepoint": _TRACING, "socket_filter": _SOCKET}


def helper_name(func_id: int) -> str:
    if func_id in PROTOS:
        return PROTOS[func_id].name
    return _OTHER_NAMES.get(func_id, "unknown")


def helper_proto(func_id: int, prog_type: str, privileged: bool = True) -> HelperProto | None:
    """The prototype a program of ``prog_type`` may call as ``func_id``, or None if it may not."""
    if prog_type == "conformance":
        return CONFORMANCE_PROTOS.get(func_id)
    allowed = ALLOWED.get(prog_type, set())
    if func_id in allowed or (privileged and prog_type == "socket_filter"
                              and func_id in _SOCKET_PRIVILEGED):
        return PROTOS[func_id]
    return None


def map_compatible(func_id: int, map_type: int) -> bool:
    """check_map_func_compatibility: ring buffers only with ringbuf helpers and vice versa."""
    if map_type == BPF_MAP_TYPE_RINGBUF:
        return func_id in _RINGBUF_HELPERS
    return func_id not in _RINGBUF_HELPERS
