// SPDX-License-Identifier: GPL-2.0
/* bpf_loop: sum 1..n for every received skb, n set from user space (tracesim's tests). */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 n = 10;
__u64 total = 0, calls = 0;

static long add_one(__u32 index, void *ctx)
{
	*(__u64 *)ctx += index + 1;
	return 0;
}

SEC("kprobe/netif_receive_skb")
int sum_loop(struct pt_regs *ctx)
{
	__u64 sum = 0;

	bpf_loop(n, add_one, &sum, 0);
	__sync_fetch_and_add(&total, sum);
	__sync_fetch_and_add(&calls, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
