/* latency_map: time from netif_receive_skb to kfree_skb per packet, as a histogram of
 * microseconds (bucket 63 collects everything longer) in an array map. */
#include <linux/skbuff.h>
#include <bpf/bpf_helpers.h>
#include "tp_net.h"

#define BUCKETS 64

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);		/* skb address */
	__type(value, __u64);		/* bpf_ktime_get_ns() at receive */
	__uint(max_entries, 10240);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, BUCKETS);
} latency_us SEC(".maps");

SEC("tracepoint/net/netif_receive_skb")
int on_receive(struct netif_receive_skb_args *ctx)
{
	__u64 skb = (__u64)ctx->skbaddr;
	__u64 ts = bpf_ktime_get_ns();

	bpf_map_update_elem(&start, &skb, &ts, BPF_ANY);
	return 1;
}

SEC("tracepoint/skb/kfree_skb")
int on_free(struct kfree_skb_args *ctx)
{
	__u64 skb = (__u64)ctx->skbaddr;
	__u64 *tsp, usecs, *count;
	__u32 slot;

	tsp = bpf_map_lookup_elem(&start, &skb);
	if (!tsp)
		return 1;
	usecs = (bpf_ktime_get_ns() - *tsp) / 1000;
	bpf_map_delete_elem(&start, &skb);
	slot = usecs < BUCKETS - 1 ? usecs : BUCKETS - 1;
	count = bpf_map_lookup_elem(&latency_us, &slot);
	if (count)
		__sync_fetch_and_add(count, 1);
	return 1;
}

char _license[] SEC("license") = "GPL";
