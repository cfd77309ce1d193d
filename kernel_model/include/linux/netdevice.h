/* The part of struct net_device that tracing and the examples read. */
#ifndef _LINUX_NETDEVICE_H
#define _LINUX_NETDEVICE_H
#include <linux/types.h>

#define IFNAMSIZ 16

struct net_device_stats {
	unsigned long rx_packets;
	unsigned long tx_packets;
	unsigned long rx_bytes;
	unsigned long tx_bytes;
	unsigned long rx_errors;
	unsigned long tx_errors;
	unsigned long rx_dropped;
	unsigned long tx_dropped;
};

struct net_device {
	char name[IFNAMSIZ];
	struct hlist_node name_node;
	unsigned long state;
	struct list_head dev_list;
	unsigned long long features;
	int ifindex;
	unsigned int flags;
	unsigned int priv_flags;
	unsigned short gflags;
	unsigned short hard_header_len;
	unsigned int mtu;
	unsigned short type;
	unsigned short needed_headroom;
	unsigned int num_tx_queues;
	unsigned int real_num_tx_queues;
	unsigned int num_rx_queues;
	unsigned int real_num_rx_queues;
	unsigned char addr_len;
	unsigned char perm_addr[32];
	unsigned char *dev_addr;
	struct net_device_stats stats;
};

struct napi_struct {
	struct list_head poll_list;
	unsigned long state;
	int weight;
	u32 defer_hard_irqs_count;
	int (*poll)(struct napi_struct *, int);
	int list_owner;
	struct net_device *dev;
	unsigned int napi_id;
};

#endif
