/* Tracepoint records as the events' format files describe them (tracesim / Linux 6.18).
 * Bytes 0-7 hold the common fields (common_type, common_flags, common_preempt_count, common_pid). */
#ifndef __TP_NET_H
#define __TP_NET_H
#include <linux/types.h>

/* events/net/netif_receive_skb/format */
struct netif_receive_skb_args {
	__u64 common;
	void *skbaddr;
	unsigned int len;
	__u32 name;		/* __data_loc char[]: offset | length << 16 */
};

/* events/skb/kfree_skb/format */
struct kfree_skb_args {
	__u64 common;
	void *skbaddr;
	void *location;
	void *rx_sk;
	unsigned short protocol;
	unsigned int reason;
};
#endif
