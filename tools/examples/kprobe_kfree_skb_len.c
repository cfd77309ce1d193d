/* kprobe on kfree_skb: read skb->len with bpf_probe_read_kernel, keep the event for packets of
 * at least MIN_LEN bytes and print their length.
 *
 * In Linux 6.18 kfree_skb() is a static inline that ends in
 * sk_skb_reason_drop(struct sock *sk, struct sk_buff *skb, enum skb_drop_reason reason), so that
 * is the symbol a kprobe can attach to, and the skb is its second argument. */
#include <linux/skbuff.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#ifndef MIN_LEN
#define MIN_LEN 64
#endif

SEC("kprobe/sk_skb_reason_drop")
int kfree_skb_len(struct pt_regs *ctx)
{
	struct sk_buff *skb = (struct sk_buff *)PT_REGS_PARM2(ctx);
	unsigned int len = 0;

	bpf_probe_read_kernel(&len, sizeof(len), &skb->len);
	if (len < MIN_LEN)
		return 0;
	bpf_printk("kfree_skb len %u\n", len);
	return 1;
}

char _license[] SEC("license") = "GPL";
