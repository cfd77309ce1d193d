"""The one helper table, like the kernel's ``struct bpf_func_proto`` per ``enum bpf_func_id``.

For each helper tracesim implements, one ``HelperSpec``: its kernel name, the Python
implementation, the kinds of its arguments r1..r5 and of its result (what the verifier checks),
``gpl_only``, the program types that may call it, and its C declaration.  Everything else is
made from or checked against this table:

* the verifier (``helper_proto``: "program of this type cannot use helper ..." otherwise);
* the program loader (``implementations()``: the id -> callable map a program runs with; an id
  missing there is "unknown helper"), its GPL check (``gpl_only``);
* ``bpf/bpf_helpers.h`` for the C compiler (``render_header``; the file in
  ``filters/bpf/include`` is its output: ``python -m tracesim.filters.bpf.runtime.helper_table --header``);
* the README's helper list (``render_doc_list``), checked by ``tests/test_helper_table.py``.

Names of all ids 1..211 are ``isa.HELPER_IDS`` (``___BPF_FUNC_MAPPER``).  A caller that needs
other behaviour passes its own table (or a changed copy of ``implementations()``) as
``helpers=``; nothing here is meant to be changed at run time.
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from tracesim.filters.bpf.runtime import helpers_calls as hc
from tracesim.filters.bpf.runtime import helpers_maps as hm
from tracesim.filters.bpf.runtime import helpers_skb as hs
from tracesim.filters.bpf.runtime import helpers_stack as hk
from tracesim.filters.bpf.runtime import helpers_tracing as ht
from tracesim.filters.bpf.runtime import maps as mp
from tracesim.filters.bpf.runtime.helpers import Helper, StopProgram
from tracesim.filters.bpf.vm.isa import HELPER_NAMES

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
UNINIT_MAP_VALUE = "uninit_map_value"  # memory of the map's value_size the helper writes
MEM_OR_NULL = "mem_or_null"        # like MEM, or NULL with a zero size
UNINIT_MEM_OR_NULL = "uninit_mem_or_null"
CONST_STR = "const_str"            # a NUL-terminated string in a read-only map value
FUNC = "func"                      # a callback: ld_imm64 PSEUDO_FUNC (see HelperSpec.callback)
STACK_OR_NULL = "stack_or_null"    # the callback's context: a stack pointer or NULL
PERCPU_BTF_ID = "percpu_btf_id"    # a per-CPU variable: ld_imm64 of a typed __ksym
U64_OUT = "u64_out"                # 8 bytes the helper writes (ARG_PTR_TO_FIXED_SIZE_MEM)

# Return kinds (enum bpf_return_type).
RET_INTEGER = "integer"
RET_VOID = "void"
RET_MAP_VALUE_OR_NULL = "map_value_or_null"
RET_RINGBUF_MEM_OR_NULL = "ringbuf_mem_or_null"
# RET_PTR_TO_MEM_OR_BTF_ID | MEM_RDONLY (| PTR_MAYBE_NULL): the variable's instance, read-only
RET_PERCPU_MEM_OR_NULL = "percpu_mem_or_null"
RET_PERCPU_MEM = "percpu_mem"

FUNC_MAX_ID = 212      # __BPF_FUNC_MAX_ID in Linux 6.18: ids at or above it are "unknown"

# Program types (the verifier's names); BTF_TRACING is BPF_PROG_TYPE_TRACING (fentry, fexit,
# tp_btf).  CAP_PERFMON-only: bpf_base_func_proto gives trace_printk, snprintf and
# trace_vprintk to socket filters only when the loader is privileged.
KPROBE, TRACEPOINT, SOCKET_FILTER, CONFORMANCE = "kprobe", "tracepoint", "socket_filter", "conformance"
# raw tracepoints, tp_btf/fentry/fexit (BPF_PROG_TYPE_TRACING) and perf_event programs take
# the tracing helpers too (bpf_tracing_func_proto)
RAW_TRACEPOINT, BTF_TRACING, PERF_EVENT = "raw_tracepoint", "tracing", "perf_event"
TRACING = frozenset({KPROBE, TRACEPOINT, RAW_TRACEPOINT, BTF_TRACING, PERF_EVENT})
ALL_TYPES = TRACING | {SOCKET_FILTER}
PERFMON_ONLY = frozenset({SOCKET_FILTER})


@dataclass(frozen=True)
class HelperSpec:
    """One helper (``struct bpf_func_proto`` plus what tracesim needs around it).
    ``c_ret``/``c_params``: the C declaration in ``bpf_helpers.h``; ``privileged_types``:
    types that may call it only from a privileged loader; ``callback``: what the callback of a
    ``FUNC`` argument receives."""
    id: int
    impl: Helper
    args: tuple[str, ...]
    ret: str
    gpl_only: bool
    prog_types: frozenset[str]
    c_ret: str
    c_params: str
    privileged_types: frozenset[str] = frozenset()
    callback: str = ""          # a FUNC argument's signature: "loop" or "for_each_map_elem"

    @property
    def name(self) -> str:
        return "bpf_" + HELPER_NAMES[self.id]


_PROBE_READ = (UNINIT_MEM, CONST_SIZE_OR_ZERO, ANYTHING)
_PROBE_READ_C = "void *dst, __u32 size, const void *unsafe_ptr"

_SPECS = (
    HelperSpec(1, hm.map_lookup_elem, (CONST_MAP_PTR, MAP_KEY), RET_MAP_VALUE_OR_NULL, False,
               ALL_TYPES, "void *", "void *map, const void *key"),
    HelperSpec(2, hm.map_update_elem, (CONST_MAP_PTR, MAP_KEY, MAP_VALUE, ANYTHING), RET_INTEGER,
               False, ALL_TYPES, "long", "void *map, const void *key, const void *value, "
                                         "__u64 flags"),
    HelperSpec(3, hm.map_delete_elem, (CONST_MAP_PTR, MAP_KEY), RET_INTEGER, False, ALL_TYPES,
               "long", "void *map, const void *key"),
    HelperSpec(4, ht.probe_read_compat, _PROBE_READ, RET_INTEGER, True, TRACING, "long",
               _PROBE_READ_C),
    HelperSpec(5, ht.ktime_get_ns, (), RET_INTEGER, False, ALL_TYPES, "__u64", "void"),
    HelperSpec(6, ht.trace_printk, (MEM, CONST_SIZE), RET_INTEGER, True, TRACING, "long",
               "const char *fmt, __u32 fmt_size, ...", PERFMON_ONLY),
    HelperSpec(7, ht.get_prandom_u32, (), RET_INTEGER, False, ALL_TYPES, "__u32", "void"),
    HelperSpec(8, ht.get_smp_processor_id, (), RET_INTEGER, False, ALL_TYPES, "__u32", "void"),
    HelperSpec(12, hc.tail_call, (CTX, CONST_MAP_PTR, ANYTHING), RET_VOID, False, ALL_TYPES,
               "long", "void *ctx, void *prog_array_map, __u32 index"),
    HelperSpec(14, ht.get_current_pid_tgid, (), RET_INTEGER, False, TRACING, "__u64", "void"),
    HelperSpec(15, ht.get_current_uid_gid, (), RET_INTEGER, False, TRACING, "__u64", "void"),
    HelperSpec(16, ht.get_current_comm, (UNINIT_MEM, CONST_SIZE), RET_INTEGER, False, TRACING,
               "long", "void *buf, __u32 size_of_buf"),
    HelperSpec(25, hm.perf_event_output, (CTX, CONST_MAP_PTR, ANYTHING, MEM, CONST_SIZE_OR_ZERO),
               RET_INTEGER, True, TRACING, "long",
               "void *ctx, void *map, __u64 flags, void *data, __u64 size"),
    HelperSpec(26, hs.skb_load_bytes, (CTX, ANYTHING, UNINIT_MEM, CONST_SIZE), RET_INTEGER,
               False, frozenset({SOCKET_FILTER}), "long",
               "const void *skb, __u32 offset, void *to, __u32 len"),
    HelperSpec(27, hk.get_stackid, (CTX, CONST_MAP_PTR, ANYTHING), RET_INTEGER, True, TRACING,
               "long", "void *ctx, void *map, __u64 flags"),
    HelperSpec(35, ht.get_current_task, (), RET_INTEGER, True, TRACING, "__u64", "void"),
    HelperSpec(45, ht.probe_read_compat_str, _PROBE_READ, RET_INTEGER, True, TRACING, "long",
               _PROBE_READ_C),
    HelperSpec(67, hk.get_stack, (CTX, UNINIT_MEM, CONST_SIZE_OR_ZERO, ANYTHING), RET_INTEGER,
               True, TRACING, "long", "void *ctx, void *buf, __u32 size, __u64 flags"),
    HelperSpec(68, hs.skb_load_bytes_relative, (CTX, ANYTHING, UNINIT_MEM, CONST_SIZE, ANYTHING),
               RET_INTEGER, False, frozenset({SOCKET_FILTER}), "long",
               "const void *skb, __u32 offset, void *to, __u32 len, __u32 start_header"),
    HelperSpec(87, hm.map_push_elem, (CONST_MAP_PTR, MAP_VALUE, ANYTHING), RET_INTEGER, False,
               ALL_TYPES, "long", "void *map, const void *value, __u64 flags"),
    HelperSpec(88, hm.map_pop_elem, (CONST_MAP_PTR, UNINIT_MAP_VALUE), RET_INTEGER, False,
               ALL_TYPES, "long", "void *map, void *value"),
    HelperSpec(89, hm.map_peek_elem, (CONST_MAP_PTR, UNINIT_MAP_VALUE), RET_INTEGER, False,
               ALL_TYPES, "long", "void *map, void *value"),
    HelperSpec(112, ht.probe_read_user, _PROBE_READ, RET_INTEGER, True, TRACING, "long",
               _PROBE_READ_C),
    HelperSpec(113, ht.probe_read_kernel, _PROBE_READ, RET_INTEGER, True, TRACING, "long",
               _PROBE_READ_C),
    HelperSpec(114, ht.probe_read_user_str, _PROBE_READ, RET_INTEGER, True, TRACING, "long",
               _PROBE_READ_C),
    HelperSpec(115, ht.probe_read_kernel_str, _PROBE_READ, RET_INTEGER, True, TRACING, "long",
               _PROBE_READ_C),
    HelperSpec(125, ht.ktime_get_boot_ns, (), RET_INTEGER, False, ALL_TYPES, "__u64", "void"),
    HelperSpec(130, hm.ringbuf_output, (CONST_MAP_PTR, MEM, CONST_SIZE_OR_ZERO, ANYTHING),
               RET_INTEGER, False, ALL_TYPES, "long",
               "void *ringbuf, void *data, __u64 size, __u64 flags"),
    HelperSpec(131, hm.ringbuf_reserve, (CONST_MAP_PTR, CONST_ALLOC_SIZE_OR_ZERO, ANYTHING),
               RET_RINGBUF_MEM_OR_NULL, False, ALL_TYPES, "void *",
               "void *ringbuf, __u64 size, __u64 flags"),
    HelperSpec(132, hm.ringbuf_submit, (RINGBUF_MEM_RELEASE, ANYTHING), RET_VOID, False,
               ALL_TYPES, "void", "void *data, __u64 flags"),
    HelperSpec(133, hm.ringbuf_discard, (RINGBUF_MEM_RELEASE, ANYTHING), RET_VOID, False,
               ALL_TYPES, "void", "void *data, __u64 flags"),
    HelperSpec(134, hm.ringbuf_query, (CONST_MAP_PTR, ANYTHING), RET_INTEGER, False, ALL_TYPES,
               "__u64", "void *ringbuf, __u64 flags"),
    # The kernel returns PTR_TO_BTF_ID (trusted); the verifier here has no BTF pointers, so r0
    # is a scalar: programs read through it with bpf_probe_read_kernel / BPF_CORE_READ.
    HelperSpec(153, ht.per_cpu_ptr, (PERCPU_BTF_ID, ANYTHING), RET_PERCPU_MEM_OR_NULL, False,
               TRACING, "void *", "const void *percpu_ptr, __u32 cpu", PERFMON_ONLY),
    HelperSpec(154, ht.this_cpu_ptr, (PERCPU_BTF_ID,), RET_PERCPU_MEM, False, TRACING, "void *",
               "const void *percpu_ptr", PERFMON_ONLY),
    HelperSpec(158, ht.get_current_task, (), RET_INTEGER, True, TRACING, "struct task_struct *",
               "void"),
    HelperSpec(164, hc.for_each_map_elem, (CONST_MAP_PTR, FUNC, STACK_OR_NULL, ANYTHING),
               RET_INTEGER, False, ALL_TYPES, "long",
               "void *map, void *callback_fn, void *callback_ctx, __u64 flags",
               callback="for_each_map_elem"),
    HelperSpec(165, ht.snprintf, (UNINIT_MEM_OR_NULL, CONST_SIZE_OR_ZERO, CONST_STR, MEM_OR_NULL,
                                  CONST_SIZE_OR_ZERO), RET_INTEGER, False, TRACING, "long",
               "char *str, __u32 str_size, const char *fmt, __u64 *data, __u32 data_len",
               PERFMON_ONLY),
    HelperSpec(173, ht.get_func_ip, (CTX,), RET_INTEGER, False, frozenset({KPROBE, BTF_TRACING}),
               "__u64", "void *ctx"),
    HelperSpec(174, ht.get_attach_cookie, (CTX,), RET_INTEGER, False, TRACING, "__u64",
               "void *ctx"),
    HelperSpec(177, ht.trace_vprintk, (MEM, CONST_SIZE, MEM_OR_NULL, CONST_SIZE_OR_ZERO),
               RET_INTEGER, True, TRACING, "long",
               "const char *fmt, __u32 fmt_size, const void *data, __u32 data_len",
               PERFMON_ONLY),
    HelperSpec(181, hc.loop, (ANYTHING, FUNC, STACK_OR_NULL, ANYTHING), RET_INTEGER, False,
               ALL_TYPES, "long", "__u32 nr_loops, void *callback_fn, void *callback_ctx, "
                                  "__u64 flags", callback="loop"),
    HelperSpec(183, ht.get_func_arg, (CTX, ANYTHING, U64_OUT), RET_INTEGER, False,
               frozenset({BTF_TRACING}), "long", "void *ctx, __u32 n, __u64 *value"),
    HelperSpec(184, ht.get_func_ret, (CTX, U64_OUT), RET_INTEGER, False,
               frozenset({BTF_TRACING}), "long", "void *ctx, __u64 *value"),
    HelperSpec(185, ht.get_func_arg_cnt, (CTX,), RET_INTEGER, False, frozenset({BTF_TRACING}),
               "long", "void *ctx"),
    HelperSpec(195, hm.map_lookup_percpu_elem, (CONST_MAP_PTR, MAP_KEY, ANYTHING),
               RET_MAP_VALUE_OR_NULL, False, ALL_TYPES, "void *",
               "void *map, const void *key, __u32 cpu"),
)

TABLE: Mapping[int, HelperSpec] = MappingProxyType({s.id: s for s in _SPECS})
RINGBUF_HELPERS = frozenset({130, 131, 132, 133, 134})


def _unwind(vm: object, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """The conformance suite's helper 5: end the program with r0 = 0 when r1 is 0."""
    if r1 == 0:
        raise StopProgram(0)
    return r1


# The conformance suite's execution model has exactly one helper, under id 5.
CONFORMANCE_TABLE: Mapping[int, HelperSpec] = MappingProxyType({5: HelperSpec(
    5, _unwind, (ANYTHING,), RET_INTEGER, False, frozenset({CONFORMANCE}), "__u64", "__u64 x")})


def table_for(prog_type: str) -> Mapping[int, HelperSpec]:
    return CONFORMANCE_TABLE if prog_type == CONFORMANCE else TABLE


def implementations(table: Mapping[int, HelperSpec] = TABLE) -> dict[int, Helper]:
    """A fresh id -> callable map for a program to run with (the caller may change its copy;
    a plain dict, as the interpreter looks a helper up on every call)."""
    return {hid: spec.impl for hid, spec in table.items()}


# ---------------------------------------------------------------- what the verifier asks

def helper_name(func_id: int) -> str:
    """``bpf_<name>`` of a uapi helper id, "unknown" outside 1..211."""
    name = HELPER_NAMES.get(func_id)
    return "bpf_" + name if name else "unknown"


def helper_proto(func_id: int, prog_type: str, privileged: bool = True) -> HelperSpec | None:
    """The helper a program of ``prog_type`` may call as ``func_id``, or None if it may not."""
    spec = table_for(prog_type).get(func_id)
    if spec is None:
        return None
    if prog_type in spec.prog_types or (privileged and prog_type in spec.privileged_types):
        return spec
    return None


# check_map_func_compatibility, both ways: the helpers a map type may be passed to (types not
# listed: any helper not listed below), and the map types a helper accepts.
_MAP_FUNCS = {
    mp.MAP_TYPE_PROG_ARRAY: frozenset({12}),
    mp.MAP_TYPE_PERF_EVENT_ARRAY: frozenset({22, 25, 55, 111, 121}),
    mp.MAP_TYPE_RINGBUF: RINGBUF_HELPERS | {198, 199, 200},
    mp.MAP_TYPE_STACK_TRACE: frozenset({27}),
    mp.MAP_TYPE_ARRAY_OF_MAPS: frozenset({1}),
    mp.MAP_TYPE_HASH_OF_MAPS: frozenset({1}),
    mp.MAP_TYPE_QUEUE: frozenset({87, 88, 89}),
    mp.MAP_TYPE_STACK: frozenset({87, 88, 89}),
    mp.MAP_TYPE_BLOOM_FILTER: frozenset({87, 89}),
}
_PERCPU = frozenset({mp.MAP_TYPE_PERCPU_HASH, mp.MAP_TYPE_PERCPU_ARRAY,
                     mp.MAP_TYPE_LRU_PERCPU_HASH})
_FUNC_MAPS = {
    12: frozenset({mp.MAP_TYPE_PROG_ARRAY}),
    25: frozenset({mp.MAP_TYPE_PERF_EVENT_ARRAY}),
    27: frozenset({mp.MAP_TYPE_STACK_TRACE}),
    **{f: frozenset({mp.MAP_TYPE_RINGBUF}) for f in RINGBUF_HELPERS},
    87: frozenset({mp.MAP_TYPE_QUEUE, mp.MAP_TYPE_STACK, mp.MAP_TYPE_BLOOM_FILTER}),
    88: frozenset({mp.MAP_TYPE_QUEUE, mp.MAP_TYPE_STACK}),
    89: frozenset({mp.MAP_TYPE_QUEUE, mp.MAP_TYPE_STACK, mp.MAP_TYPE_BLOOM_FILTER}),
    164: frozenset({mp.MAP_TYPE_HASH, mp.MAP_TYPE_LRU_HASH, mp.MAP_TYPE_ARRAY}) | _PERCPU,
    195: _PERCPU,
}


def map_compatible(func_id: int, map_type: int) -> bool:
    """check_map_func_compatibility: whether ``map_type`` may be passed to ``func_id``."""
    funcs = _MAP_FUNCS.get(map_type)
    if funcs is not None and func_id not in funcs:
        return False
    types = _FUNC_MAPS.get(func_id)
    return types is None or map_type in types


def gpl_only(func_id: int) -> bool:
    spec = TABLE.get(func_id)
    return spec is not None and spec.gpl_only


# ---------------------------------------------------------------- generated text

HEADER = Path(__file__).resolve().parents[1] / "include" / "bpf" / "bpf_helpers.h"

_HEADER_HEAD = """\
/* BPF helper declarations and map-definition macros, the libbpf way.
 * GENERATED from filters/bpf/helper_table.py: do not edit; regenerate with
 *     python -m tracesim.filters.bpf.runtime.helper_table --header > filters/bpf/include/bpf/bpf_helpers.h
 * The same file builds with `tracesim cc` and with `clang -target bpf`
 * (both put kernel_model/include and filters/bpf/include on the include path). */
#ifndef __BPF_HELPERS__
#define __BPF_HELPERS__

#include <linux/types.h>

#ifndef NULL
#define NULL ((void *)0)
#endif

/* Where a definition lands in the object: programs, maps, the license. */
#ifdef __TRACESIM_CC__
#define SEC(name) [[gnu::section(name)]]
#else
#define SEC(name) __attribute__((section(name), used))
#endif

/* tracesim cc inlines every `inline` function and calls the others (bpf-to-bpf calls). */
#ifndef __always_inline
#ifdef __TRACESIM_CC__
#define __always_inline inline
#else
#define __always_inline inline __attribute__((always_inline))
#endif
#endif
#ifdef __TRACESIM_CC__
#define __noinline
#else
#define __noinline __attribute__((noinline))
#endif

/* Externs libbpf resolves at open (filters/bpf/externs.py): kconfig values, kernel symbols. */
#ifndef __TRACESIM_CC__
#define __kconfig __attribute__((section(".kconfig")))
#define __ksym __attribute__((section(".ksyms")))
#define __weak __attribute__((weak))
#endif
enum libbpf_tristate {
	TRI_NO = 0,
	TRI_YES = 1,
	TRI_MODULE = 2,
};
#define KERNEL_VERSION(a, b, c) (((a) << 16) + ((b) << 8) + ((c) > 255 ? 255 : (c)))

/* BTF-defined maps: struct { __uint(type, BPF_MAP_TYPE_HASH); __type(key, u32); ... } m SEC(".maps"); */
#define __uint(name, val) int (*name)[val]
#ifdef __TRACESIM_CC__
#define __type(name, val) val *name
#else
#define __type(name, val) typeof(val) *name
#endif
#define __array(name, val) typeof(val) *name[]
#ifndef __TRACESIM_CC__
#define ___bpf_concat(a, b) a ## b
#define ___bpf_unique(a, b) ___bpf_concat(a, b)
#define __ulong(name, val) enum { ___bpf_unique(__unique_value, __COUNTER__) = val } name
#endif

/* Map types, update flags and struct bpf_map_def: the uapi header (kernel_model/include). */
#include <uapi/linux/bpf.h>

/* Helpers tracesim implements, numbered as uapi enum bpf_func_id. */
"""

_HEADER_TAIL = """
/* bpf_printk("fmt", args...): the format is copied to the stack, as the helper needs. */
#define bpf_printk(fmt, ...)\t\t\t\t\t\t\\
({\t\t\t\t\t\t\t\t\t\\
\tchar ____fmt[] = fmt;\t\t\t\t\t\t\\
\tbpf_trace_printk(____fmt, sizeof(____fmt), ##__VA_ARGS__);\t\\
})

#endif /* __BPF_HELPERS__ */
"""


def _declaration(spec: HelperSpec) -> str:
    ret = spec.c_ret if spec.c_ret.endswith("*") else spec.c_ret + " "
    return f"static {ret}(*{spec.name})({spec.c_params}) = (void *) {spec.id};\n"


def render_header(table: Mapping[int, HelperSpec] = TABLE) -> str:
    """``bpf/bpf_helpers.h``: a declaration for every helper of ``table``, nothing else."""
    return _HEADER_HEAD + "".join(_declaration(table[i]) for i in sorted(table)) + _HEADER_TAIL


def render_doc_list(table: Mapping[int, HelperSpec] = TABLE) -> str:
    """The README's list of helpers: one backquoted name each, in id order."""
    return ", ".join(f"`{table[i].name}`" for i in sorted(table))


def main(argv: list[str]) -> int:
    if argv == ["--header"]:
        sys.stdout.write(render_header())
        return 0
    if argv == ["--doc"]:
        print(render_doc_list())
        return 0
    print("usage: python -m tracesim.filters.bpf.runtime.helper_table --header | --doc", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
