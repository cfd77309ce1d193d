"""``tracesim check`` and the mount agree on every helper and map type: the same object is
accepted by both, or refused by both with the same message (both go through the one loader)."""
from __future__ import annotations

import errno

import pytest
from tracesim.filters.bpf.compiler.driver import compile_source
from tracesim.tools.cli import main as cli_main

from tests.test_bpf_filter import EXAMPLES, NETIF, errno_of
from tests.tree_helpers import cat_into

PROGRAM = r"""
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_%(type)s);
	__uint(max_entries, %(entries)s);
	%(kv)s
	__uint(map_flags, %(flags)s);
} m SEC(".maps");

const char fmt[] = "value %%llu";

SEC("tracepoint/net/netif_receive_skb")
int prog(void *ctx)
{
	__u64 key[2] = {};
	__u64 val[2] = {};
	%(body)s
	return 1;
}

char _license[] SEC("license") = "GPL";
"""

KV8 = "__uint(key_size, 8);\n\t__uint(value_size, 8);"
KV4 = "__uint(key_size, 4);\n\t__uint(value_size, 4);"
V8 = "__uint(value_size, 8);"
LOOKUP = "if (bpf_map_lookup_elem(&m, key)) return 0;"
ACCEPTED = [
    ("HASH", 8, KV8, 0, LOOKUP),
    ("PERCPU_HASH", 8, KV8, 0, LOOKUP + " bpf_map_lookup_percpu_elem(&m, key, 0);"),
    ("PERCPU_ARRAY", 8, KV4.replace("value_size, 4", "value_size, 8"), 0, LOOKUP),
    ("LRU_HASH", 8, KV8, 0, "bpf_map_update_elem(&m, key, val, 0);"),
    ("LRU_PERCPU_HASH", 8, KV8, 0, "bpf_map_delete_elem(&m, key);"),
    ("LPM_TRIE", 8, "__uint(key_size, 8);\n\t__uint(value_size, 8);", "BPF_F_NO_PREALLOC",
     LOOKUP),
    ("PROG_ARRAY", 4, KV4, 0, "bpf_tail_call(ctx, &m, 0);"),
    ("PERF_EVENT_ARRAY", 4, KV4, 0,
     "bpf_perf_event_output(ctx, &m, BPF_F_CURRENT_CPU, val, sizeof(val));"),
    ("STACK_TRACE", 16, "__uint(key_size, 4);\n\t__uint(value_size, 64);", 0,
     "bpf_get_stackid(ctx, &m, 0);"),
    ("RINGBUF", 4096, "", 0, "bpf_ringbuf_output(&m, val, 8, 0);"),
    ("QUEUE", 4, V8, 0, "bpf_map_push_elem(&m, val, 0); bpf_map_pop_elem(&m, val);"),
    ("STACK", 4, V8, 0, "bpf_map_peek_elem(&m, val);"),
    ("BLOOM_FILTER", 4, V8, 0, "bpf_map_push_elem(&m, val, 0); bpf_map_peek_elem(&m, val);"),
    ("ARRAY", 4, "__uint(key_size, 4);\n\t__uint(value_size, 8);", 0,
     "bpf_get_stack(ctx, val, sizeof(val), 0); bpf_ktime_get_boot_ns(); "
     "bpf_get_current_uid_gid(); bpf_get_attach_cookie(ctx); bpf_get_smp_processor_id();"),
    ("HASH", 8, KV8, 0, "char buf[16]; bpf_snprintf(buf, sizeof(buf), fmt, val, 8); "
                        "bpf_trace_vprintk(fmt, sizeof(fmt), val, 8);"),
]
REFUSED = [
    (("ARRAY", 4, KV8, 0, LOOKUP), "libbpf: map 'm': failed to create: -EINVAL"),
    (("HASH", 4, "__uint(key_size, 600);\n\t__uint(value_size, 8);", 0, ""),
     "libbpf: map 'm': failed to create: -E2BIG"),
    (("LRU_HASH", 4, KV8, "BPF_F_NO_PREALLOC", ""), "libbpf: map 'm': failed to create: -ENOTSUPP"),
    (("STACK_TRACE", 4, "__uint(key_size, 4);\n\t__uint(value_size, 12);", 0, ""),
     "libbpf: map 'm': failed to create: -EINVAL"),
    (("QUEUE", 4, KV8, 0, ""), "libbpf: map 'm': failed to create: -EINVAL"),
    (("HASH", 8, KV8, 0, "bpf_tail_call(ctx, &m, 0);"),
     "cannot pass map_type 1 into func bpf_tail_call#12"),
    (("QUEUE", 4, V8, 0, LOOKUP), "cannot pass map_type 22 into func bpf_map_lookup_elem#1"),
    (("STACK_TRACE", 16, "__uint(key_size, 4);\n\t__uint(value_size, 64);", 0, LOOKUP),
     "cannot pass map_type 7 into func bpf_map_lookup_elem#1"),
    (("HASH", 8, KV8, 0, "bpf_get_func_arg_cnt(ctx);"),
     "program of this type cannot use helper bpf_get_func_arg_cnt#185"),
    (("HASH", 8, KV8, 0, "bpf_get_func_ip(ctx);"),
     "program of this type cannot use helper bpf_get_func_ip#173"),
]


def _object(tmp_path, case) -> tuple[bytes, str]:
    type_, entries, kv, flags, body = case
    src = PROGRAM % {"type": type_, "entries": entries, "kv": kv, "flags": flags, "body": body}
    elf = compile_source(src, "case.c", [EXAMPLES]).elf
    path = tmp_path / "case.o"
    path.write_bytes(elf)
    return elf, str(path)


@pytest.mark.parametrize("case", ACCEPTED, ids=[f"{c[0]}-{i}" for i, c in enumerate(ACCEPTED)])
def test_both_accept(system, tmp_path, capsys, case):
    elf, path = _object(tmp_path, case)
    assert cli_main(["check", path]) == 0
    assert capsys.readouterr().out.strip() == "OK"
    cat_into(system.tree, NETIF + "/filter", elf)
    assert system.tree.read_text(NETIF + "/filter").startswith("bpf elf prog ")


@pytest.mark.parametrize("case, message", REFUSED, ids=[m for _, m in REFUSED])
def test_both_refuse_with_the_same_message(system, tmp_path, capsys, case, message):
    elf, path = _object(tmp_path, case)
    assert cli_main(["check", path]) == 1
    out = capsys.readouterr()
    assert message in (out.out + out.err).splitlines()
    assert errno_of(cat_into, system.tree, NETIF + "/filter", elf) == errno.EACCES
    assert f"bpf: error: {message}" in system.tree.read_text("/error_log")
