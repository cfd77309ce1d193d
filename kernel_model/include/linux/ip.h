/* struct iphdr (uapi <linux/ip.h>, little-endian bitfield order). */
#ifndef _LINUX_IP_H
#define _LINUX_IP_H
#include <linux/types.h>

#define IP_CE 0x8000
#define IP_DF 0x4000
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

struct iphdr {
	__u8 ihl:4, version:4;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__sum16 check;
	__be32 saddr;
	__be32 daddr;
};

#endif
