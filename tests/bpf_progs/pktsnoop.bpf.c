// SPDX-License-Identifier: GPL-2.0
/* An execsnoop-like ring buffer tool for tracesim's tests: one record per skb the driver
 * allocates (__netdev_alloc_skb(dev, length, gfp)).  The model's exec path is not there yet,
 * so this watches a function the model has; the shape (reserve, fill, submit) is execsnoop's. */
#ifndef __TRACESIM_CC__		/* tracesim cc's bpf_helpers.h brings the uapi and pt_regs */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#endif
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define TASK_COMM_LEN 16

struct event {
	__u32 pid;
	__u32 cpu;
	__u32 len;
	char comm[TASK_COMM_LEN];
};

/* user space decodes records with this type: a global keeps it in the object's BTF */
const struct event *unused_event __attribute__((unused));

const volatile __u32 targ_min_len = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

__u64 emitted = 0;
__u64 lost = 0;

SEC("kprobe/__netdev_alloc_skb")
int on_alloc(struct pt_regs *ctx)
{
	unsigned int length = PT_REGS_PARM2(ctx);
	struct event *e;

	if (length < targ_min_len)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&lost, 1);
		return 0;
	}
	e->pid = bpf_get_current_pid_tgid();
	e->cpu = bpf_get_smp_processor_id();
	e->len = length;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	__sync_fetch_and_add(&emitted, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
