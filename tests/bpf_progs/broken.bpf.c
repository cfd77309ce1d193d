// SPDX-License-Identifier: GPL-2.0
/* One good program among bad ones: each bad one must fail alone, with its own error. */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

__u64 good_hits = 0;

SEC("kprobe/netif_receive_skb")
int good(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&good_hits, 1);
	return 0;
}

SEC("kprobe/no_such_function")
int missing_target(struct pt_regs *ctx)
{
	return 0;
}

SEC("foo/bar")
int unknown_section(struct pt_regs *ctx)
{
	return 0;
}

SEC("kprobe/consume_skb")
int unsupported_helper(struct pt_regs *ctx)
{
	char buf[4] = {};

	bpf_skb_store_bytes((void *)ctx, 0, buf, sizeof(buf), 0);
	return 0;
}

SEC("kprobe/kfree")
int rejected(struct pt_regs *ctx)
{
	__u64 *p = (__u64 *)PT_REGS_PARM1(ctx);

	return *p == 0;		/* a kernel pointer dereferenced without bpf_probe_read */
}

char LICENSE[] SEC("license") = "GPL";
