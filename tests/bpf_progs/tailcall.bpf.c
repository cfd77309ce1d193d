// SPDX-License-Identifier: GPL-2.0
/* A tail-call dispatcher: the entry program jumps to a handler chosen by CPU through a
 * PROG_ARRAY filled by libbpf from the map's initial values (tracesim's tests). */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>

__u64 handled[2] = {};
__u64 fell_through = 0;

SEC("kprobe")
int handle_cpu0(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&handled[0], 1);
	return 0;
}

SEC("kprobe")
int handle_cpu1(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&handled[1], 1);
	return 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__uint(key_size, sizeof(__u32));
	__array(values, int (void *));
} handlers SEC(".maps") = {
	.values = { [0] = (void *)&handle_cpu0, [1] = (void *)&handle_cpu1 },
};

SEC("kprobe/netif_receive_skb")
int dispatch(struct pt_regs *ctx)
{
	bpf_tail_call(ctx, &handlers, bpf_get_smp_processor_id());
	__sync_fetch_and_add(&fell_through, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
