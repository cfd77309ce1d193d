/* struct sk_buff as Linux 6.18 lays out its leading and header fields on x86-64 (simplified:
 * config-dependent members are left out, the order of what remains is the kernel's). */
#ifndef _LINUX_SKBUFF_H
#define _LINUX_SKBUFF_H
#include <linux/types.h>
#include <linux/netdevice.h>

struct sock;

typedef unsigned int sk_buff_data_t;

struct sk_buff {
	union {
		struct {
			struct sk_buff *next;
			struct sk_buff *prev;
			union {
				struct net_device *dev;
				unsigned long dev_scratch;
			};
		};
		struct rb_node rbnode;
		struct list_head list;
		struct llist_node ll_node;
	};
	struct sock *sk;
	union {
		ktime_t tstamp;
		u64 skb_mstamp_ns;
	};
	char cb[48];
	union {
		struct {
			unsigned long _skb_refdst;
			void (*destructor)(struct sk_buff *skb);
		};
		struct list_head tcp_tsorted_anchor;
	};
	unsigned long _nfct;
	unsigned int len;
	unsigned int data_len;
	__u16 mac_len;
	__u16 hdr_len;
	__u16 queue_mapping;
	__u8 cloned:1, nohdr:1, fclone:2, peeked:1, head_frag:1, pfmemalloc:1, pp_recycle:1;
	__u8 active_extensions;
	__u8 pkt_type:3, ignore_df:1, dst_pending_confirm:1, ip_summed:2, ooo_okay:1;
	__u8 l4_hash:1, sw_hash:1, wifi_acked_valid:1, wifi_acked:1, no_fcs:1, encapsulation:1,
	     encap_hdr_csum:1, csum_valid:1;
	__u8 vlan_present:1, csum_complete_sw:1, csum_level:2, inner_protocol_type:1,
	     remcsum_offload:1, redirected:1, from_ingress:1;
	__u8 ndisc_nodetype:2, ipvs_property:1, nf_trace:1, offload_fwd_mark:1,
	     offload_l3_fwd_mark:1, decrypted:1, slow_gro:1;
	__u16 tc_index;
	u16 alloc_cpu;
	union {
		__wsum csum;
		struct {
			__u16 csum_start;
			__u16 csum_offset;
		};
	};
	__u32 priority;
	int skb_iif;
	__u32 hash;
	union {
		u32 vlan_all;
		struct {
			__be16 vlan_proto;
			__u16 vlan_tci;
		};
	};
	unsigned int napi_id;
	__u32 secmark;
	union {
		__u32 mark;
		__u32 reserved_tailroom;
	};
	union {
		__be16 inner_protocol;
		__u8 inner_ipproto;
	};
	__u16 inner_transport_header;
	__u16 inner_network_header;
	__u16 inner_mac_header;
	__be16 protocol;
	__u16 transport_header;
	__u16 network_header;
	__u16 mac_header;
	sk_buff_data_t tail;
	sk_buff_data_t end;
	unsigned char *head;
	unsigned char *data;
	unsigned int truesize;
	refcount_t users;
};

#endif
