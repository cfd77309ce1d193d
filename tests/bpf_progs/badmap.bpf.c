// SPDX-License-Identifier: GPL-2.0
/* An array map with 8-byte keys: the kernel refuses it (array keys are u32). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u64);
	__type(value, __u64);
} wide_keys SEC(".maps");

SEC("kprobe/netif_receive_skb")
int uses_it(void *ctx)
{
	__u64 key = 0;

	bpf_map_lookup_elem(&wide_keys, &key);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
