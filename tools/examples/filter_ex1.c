/* filter_ex1: the 2013 RFC's first example in today's style.
 * On net:netif_receive_skb keep only packets received on "lo" and print the skb and device:
 *   tracesim cc filter_ex1.c -o filter_ex1.o
 *   cat filter_ex1.o > events/net/netif_receive_skb/filter */
#include <linux/skbuff.h>
#include <bpf/bpf_helpers.h>
#include "tp_net.h"

SEC("tracepoint/net/netif_receive_skb")
int filter_ex1(struct netif_receive_skb_args *ctx)
{
	struct sk_buff *skb = ctx->skbaddr;
	struct net_device *dev;
	char devname[4];

	bpf_probe_read_kernel(&dev, sizeof(dev), &skb->dev);
	bpf_probe_read_kernel(devname, sizeof(devname), dev->name);
	if (devname[0] == 'l' && devname[1] == 'o' && devname[2] == 0) {
		bpf_printk("skb %p dev %p\n", skb, dev);
		return 1;	/* record the event */
	}
	return 0;		/* drop it */
}

char _license[] SEC("license") = "GPL";
