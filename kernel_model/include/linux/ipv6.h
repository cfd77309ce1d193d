/* IPv6 header and extension headers (uapi <linux/ipv6.h>, <linux/in6.h>, <net/ipv6.h> parts). */
#ifndef _LINUX_IPV6_H
#define _LINUX_IPV6_H
#include <linux/types.h>

#define IPV6_SRCRT_TYPE_2 2
#define IPV6_TLV_PAD1 0
#define IPV6_TLV_PADN 1
#define IPV6_TLV_HAO 201

struct in6_addr {
	__u8 s6_addr[16];
};

struct ipv6hdr {
	__u8 priority:4, version:4;
	__u8 flow_lbl[3];
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	struct in6_addr saddr;
	struct in6_addr daddr;
};

/* The common start of hop-by-hop, routing and destination-options headers. */
struct ipv6_opt_hdr {
	__u8 nexthdr;
	__u8 hdrlen;
};

struct ipv6_rt_hdr {
	__u8 nexthdr;
	__u8 hdrlen;
	__u8 type;
	__u8 segments_left;
};

/* Type-2 routing header (Mobile IPv6): one home address. */
struct rt2_hdr {
	struct ipv6_rt_hdr rt_hdr;
	__u32 reserved;
	struct in6_addr addr;
};

struct frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

#endif
