// SPDX-License-Identifier: GPL-2.0
/* One program per auto-attach kind, each counting its hits in .bss (tracesim's tests). */
#ifndef __TRACESIM_CC__		/* tracesim cc's bpf_helpers.h brings the uapi and pt_regs */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#endif
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

__u64 tp_hits = 0, tp_bytes = 0, raw_hits = 0, btf_hits = 0, fentry_hits = 0;
__u64 fexit_hits = 0, multi_hits = 0, kret_hits = 0, perf_hits = 0;

SEC("tracepoint/net/netif_receive_skb")
int on_tp(void *ctx)
{
	__u32 len = *(__u32 *)(ctx + 16);	/* field len, offset 16 in its format file */

	__sync_fetch_and_add(&tp_hits, 1);
	__sync_fetch_and_add(&tp_bytes, len);
	return 0;
}

SEC("raw_tp/netif_receive_skb")
int BPF_PROG(on_raw, void *skb)
{
	if (skb)
		__sync_fetch_and_add(&raw_hits, 1);
	return 0;
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(on_btf, void *skb)
{
	__sync_fetch_and_add(&btf_hits, 1);
	return 0;
}

SEC("fentry/__netif_receive_skb")
int BPF_PROG(on_fentry, void *skb)
{
	if (skb)
		__sync_fetch_and_add(&fentry_hits, 1);
	return 0;
}

SEC("fexit/__kmalloc_noprof")
int BPF_PROG(on_fexit, unsigned long size, unsigned int flags, void *ret)
{
	if (ret)
		__sync_fetch_and_add(&fexit_hits, 1);
	return 0;
}

SEC("kprobe.multi/kmem_cache_*")
int on_multi(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&multi_hits, 1);
	return 0;
}

SEC("kretprobe/consume_skb")
int BPF_KRETPROBE(on_kret)
{
	__sync_fetch_and_add(&kret_hits, 1);
	return 0;
}

SEC("perf_event")
int on_sample(void *ctx)
{
	__sync_fetch_and_add(&perf_hits, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
