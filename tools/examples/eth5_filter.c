/* eth5_filter: the 2013 RFC benchmark's filter -- keep the event only when the device name is
 * "eth5".  Two programs: one for a kprobe event on __netdev_alloc_skb (the net_device pointer is
 * the first argument, pt_regs->di) and one for the net:netif_receive_skb tracepoint. */
#include <linux/skbuff.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "tp_net.h"

static __always_inline int name_is_eth5(const char *name)
{
	char buf[5];

	bpf_probe_read_kernel(buf, sizeof(buf), name);
	return buf[0] == 'e' && buf[1] == 't' && buf[2] == 'h' && buf[3] == '5' && buf[4] == 0;
}

SEC("kprobe/__netdev_alloc_skb")
int eth5_kprobe(struct pt_regs *ctx)
{
	struct net_device *dev = (struct net_device *)PT_REGS_PARM1(ctx);

	return name_is_eth5(dev->name);
}

SEC("tracepoint/net/netif_receive_skb")
int eth5_tracepoint(struct netif_receive_skb_args *ctx)
{
	struct sk_buff *skb = ctx->skbaddr;
	struct net_device *dev;

	bpf_probe_read_kernel(&dev, sizeof(dev), &skb->dev);
	return name_is_eth5(dev->name);
}

char _license[] SEC("license") = "GPL";
