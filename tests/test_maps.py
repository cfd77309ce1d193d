"""BPF maps: the user-side interface with the kernel's errno values, and the map helpers as
programs attached to events use them (per-CPU values, ring buffer records, BTF-decoded dumps)."""
from __future__ import annotations

import errno
import re

import pytest
from tracesim.filters.bpf.compiler.driver import compile_source
from tracesim.filters.bpf.runtime import map_commands
from tracesim.filters.bpf.runtime.maps import (
    BPF_EXIST,
    BPF_NOEXIST,
    MAP_TYPE_ARRAY,
    MAP_TYPE_HASH,
    MAP_TYPE_LRU_HASH,
    MAP_TYPE_PERCPU_ARRAY,
    MAP_TYPE_PERCPU_HASH,
    MAP_TYPE_RINGBUF,
    MapError,
    create_map,
)

from tests.test_bpf_filter import EXAMPLES, NETIF, cat_into


def k(n: int, size: int = 4) -> bytes:
    return n.to_bytes(size, "little")


def err_of(fn, *args) -> int:
    with pytest.raises(MapError) as info:
        fn(*args)
    return info.value.errno


def test_hash_map_flags_and_capacity():
    m = create_map("h", MAP_TYPE_HASH, 4, 8, 2)
    m.update(k(1), k(10, 8))
    assert err_of(m.update, k(1), k(11, 8), BPF_NOEXIST) == errno.EEXIST
    assert err_of(m.update, k(2), k(11, 8), BPF_EXIST) == errno.ENOENT
    m.update(k(2), k(20, 8))
    assert err_of(m.update, k(3), k(30, 8)) == errno.E2BIG
    assert m.lookup(k(2)) == k(20, 8)
    m.delete(k(1))
    assert err_of(m.delete, k(1)) == errno.ENOENT
    m.update(k(3), k(30, 8))                     # the freed slot is reused
    assert sorted(m.keys()) == [k(2), k(3)]
    assert err_of(m.update, k(1, 8), k(1, 8)) == errno.EINVAL


def test_array_map():
    m = create_map("a", MAP_TYPE_ARRAY, 4, 4, 3)
    assert m.lookup(k(2)) == bytes(4)
    m.update(k(2), k(7))
    assert err_of(m.update, k(3), k(7)) == errno.E2BIG
    assert err_of(m.update, k(0), k(7), BPF_NOEXIST) == errno.EEXIST
    assert err_of(m.delete, k(0)) == errno.EINVAL
    assert m.lookup(k(5)) is None
    assert [key for key, _ in m.items()] == [k(0), k(1), k(2)]
    assert err_of(create_map, "bad", MAP_TYPE_ARRAY, 8, 4, 1) == errno.EINVAL


def test_per_cpu_maps_keep_one_value_per_cpu():
    m = create_map("p", MAP_TYPE_PERCPU_HASH, 4, 4, 4, ncpus=3)
    m.update(k(1), k(5))                        # one value: every CPU gets it
    assert m.lookup(k(1)) == [k(5)] * 3
    m.update(k(1), k(1) + k(2) + k(3))
    assert m.lookup(k(1)) == [k(1), k(2), k(3)]
    a = create_map("pa", MAP_TYPE_PERCPU_ARRAY, 4, 8, 2, ncpus=2)
    assert a.lookup(k(1)) == [bytes(8), bytes(8)]


def test_lru_hash_evicts_the_least_recently_used():
    m = create_map("l", MAP_TYPE_LRU_HASH, 4, 4, 2)
    m.update(k(1), k(1))
    m.update(k(2), k(2))
    m.lookup_offset(k(1))                       # 1 is now more recent than 2
    m.update(k(3), k(3))
    assert sorted(m.keys()) == [k(1), k(3)]


def test_ringbuf_size_and_overflow():
    assert err_of(create_map, "r", MAP_TYPE_RINGBUF, 0, 0, 5000) == errno.EINVAL
    r = create_map("r", MAP_TYPE_RINGBUF, 0, 0, 4096)
    assert r.output(bytes(100)) == 0
    while r.output(bytes(1000)) == 0:
        pass
    assert r.output(bytes(1000)) == -errno.EAGAIN and r.dropped == 2
    assert len(r.consume()) == 4 and r.consume() == []


# ---------------------------------------------------------------------------------------------
# maps used by programs on events

PROGRAMS = r"""
#include <linux/skbuff.h>
#include <bpf/bpf_helpers.h>
#include "tp_net.h"

struct event { __u32 len; __u32 cpu; char comm[16]; };
struct totals { __u64 packets; __u64 bytes; };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct totals);
	__uint(max_entries, 1);
} per_cpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

SEC("tracepoint/net/netif_receive_skb")
int account(struct netif_receive_skb_args *ctx)
{
	__u32 zero = 0;
	struct totals *t = bpf_map_lookup_elem(&per_cpu, &zero);
	struct event e = {};

	if (t) {
		t->packets += 1;
		t->bytes += ctx->len;
	}
	e.len = ctx->len;
	e.cpu = bpf_get_smp_processor_id();
	bpf_get_current_comm(e.comm, sizeof(e.comm));
	bpf_ringbuf_output(&events, &e, sizeof(e), 0);
	return 0;
}

char _license[] SEC("license") = "GPL";
"""


def test_per_cpu_array_and_ringbuf_from_a_program(system):
    tree = system.tree
    cat_into(tree, NETIF + "/filter", compile_source(PROGRAMS, "acct.c", [EXAMPLES]).elf)
    tree.echo(NETIF + "/enable", "1")
    system.control(["send", "lo", "--len", "100", "--count", "2"])
    system.control(["send", "eth0", "--len", "60"])
    assert [line for line in tree.read_text("/trace").splitlines()
            if not line.startswith("#")] == []                      # the program returns 0
    status, dump = system.control(["map", "dump", "per_cpu"])
    assert status == 0
    assert dump.splitlines() == [
        "key: 0",
        "  value (CPU 00): {packets = 3, bytes = 260}",
        "  value (CPU 01): {packets = 0, bytes = 0}",
        "Found 1 element"]
    status, records = system.control(["map", "dump", "events"])
    raw = [bytes.fromhex(r.replace(" ", "")) for r in re.findall(r"record \d+: (.*)", records)]
    assert len(raw) == 3 and records.endswith("Found 3 records\n")
    lens = [int.from_bytes(r[:4], "little") for r in raw]
    comms = [r[8:24].split(b"\0")[0].decode() for r in raw]
    assert lens == [100, 100, 60]
    assert comms == ["tracesim-ctl", "tracesim-ctl", "swapper/0"]
    assert system.control(["map", "dump", "events"])[1] == "Found 0 records\n"   # consumed
    listing = system.control(["maps"])[1]
    assert re.search(r"^\d+ +per_cpu +percpu_array +4 +16 +1 +1 +\(top\) +net:netif_receive_skb$",
                     listing, re.M), listing
    assert re.search(r"^\d+ +events +ringbuf ", listing, re.M)


def test_map_commands_usage(system):
    assert map_commands.run(system.bpf, ["map", "show"])[0] == 2
    assert system.control(["maps"]) == (0, "no maps (no BPF filter with maps is attached)\n")
