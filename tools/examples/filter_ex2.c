/* filter_ex2: count packets per device in a hash map; every PRINT_EVERY packets of a device
 * print its count (the 2013 RFC's second example, with today's maps). */
#include <linux/skbuff.h>
#include <bpf/bpf_helpers.h>
#include "tp_net.h"

#ifndef PRINT_EVERY
#define PRINT_EVERY 10000
#endif

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct net_device *);
	__type(value, __u64);
	__uint(max_entries, 4096);
} pkt_count SEC(".maps");

SEC("tracepoint/net/netif_receive_skb")
int filter_ex2(struct netif_receive_skb_args *ctx)
{
	struct sk_buff *skb = ctx->skbaddr;
	struct net_device *dev = NULL;
	__u64 *count, one = 1;

	bpf_probe_read_kernel(&dev, sizeof(dev), &skb->dev);
	count = bpf_map_lookup_elem(&pkt_count, &dev);
	if (!count) {
		bpf_map_update_elem(&pkt_count, &dev, &one, BPF_NOEXIST);
		return 1;
	}
	__sync_fetch_and_add(count, 1);
	if (*count % PRINT_EVERY == 0)
		bpf_printk("dev %p  pkt_cnt %llu\n", dev, *count);
	return 1;
}

char _license[] SEC("license") = "GPL";
