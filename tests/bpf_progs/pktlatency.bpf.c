// SPDX-License-Identifier: GPL-2.0
/* A biolatency-like tool for tracesim's tests: the time an skb lives from netif_receive_skb
 * to kfree_skbmem, as a log2 histogram (struct hist, as libbpf-tools keeps one). */
#ifndef __TRACESIM_CC__		/* tracesim cc's bpf_helpers.h brings the uapi and pt_regs */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#endif
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define MAX_SLOTS 27

struct hist {
	__u32 slots[MAX_SLOTS];
};

const volatile __u64 min_ns = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);
	__type(value, __u64);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hist);
} hists SEC(".maps");

__u64 samples = 0;
__u64 skipped = 0;

static __always_inline __u32 slot_of(__u64 v)
{
	__u32 r = 0, shift;

	shift = (v > 0xFFFFFFFF) << 5; v >>= shift; r |= shift;
	shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

SEC("kprobe/netif_receive_skb")
int rx_start(struct pt_regs *ctx)
{
	__u64 key = PT_REGS_PARM1(ctx), ts = bpf_ktime_get_ns();

	bpf_map_update_elem(&start, &key, &ts, BPF_ANY);
	return 0;
}

SEC("kprobe/kfree_skbmem")
int rx_done(struct pt_regs *ctx)
{
	__u64 key = PT_REGS_PARM1(ctx), delta, *tsp;
	__u32 zero = 0, slot;
	struct hist *h;

	tsp = bpf_map_lookup_elem(&start, &key);
	if (!tsp)
		return 0;
	delta = bpf_ktime_get_ns() - *tsp;
	bpf_map_delete_elem(&start, &key);
	if (delta < min_ns) {
		__sync_fetch_and_add(&skipped, 1);
		return 0;
	}
	h = bpf_map_lookup_elem(&hists, &zero);
	if (!h)
		return 0;
	slot = slot_of(delta);
	if (slot >= MAX_SLOTS)
		slot = MAX_SLOTS - 1;
	__sync_fetch_and_add(&h->slots[slot], 1);
	__sync_fetch_and_add(&samples, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
