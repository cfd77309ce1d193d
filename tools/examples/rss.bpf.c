/* RSS steering for a multi-queue TUN device (TUNSETSTEERINGEBPF), written for tracesim.
 *
 * Behaves as QEMU's virtio-net eBPF RSS program (tools/ebpf/rss.bpf.c, 9.1 generation): a
 * socket filter whose return value is the queue ((u16)ret % numqueues in the TUN driver).
 * It reads the packet only through bpf_skb_load_bytes_relative(), hashes addresses (and ports)
 * with the Toeplitz function and looks the hash up in an indirection table:
 *
 *   - EtherType at MAC+12; 802.1Q re-reads it at MAC+16, 802.1AD (QinQ) at MAC+20;
 *     the L3 header is always read at NET+0 (the TUN device sets the network header past tags);
 *   - IPv4: a packet is a fragment when MF is set or the offset is non-zero (DF alone is not:
 *     the original's "frag_off != 0" was a bug);
 *   - IPv6: up to 11 headers among hop-by-hop, routing, fragment, ICMPv6, none, destination
 *     options and mobility; a type-2 routing header gives the _EX destination, a home-address
 *     destination option the _EX source, a fragment header makes the packet a fragment;
 *   - TCP before UDP before address-only hashing; _EX bits only substitute addresses;
 *   - redirect == 0, an unparsable packet or no enabled hash type -> default_queue;
 *     a computed hash (zero included) -> table[hash % indirections_len];
 *     a missing configuration -> 0.
 * Any failed load ends the parse: the packet gets no hash.
 *
 * Build: tracesim cc tools/examples/rss.bpf.c -o rss.bpf.o
 *    or: clang -O2 -g -target bpf -nostdinc -I kernel_model/include -I filters/bpf/include \
 *              -c tools/examples/rss.bpf.c -o rss.bpf.o
 */
#include <linux/types.h>
#include <uapi/linux/bpf.h>
#include <linux/in.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define INDIRECTION_TABLE_SIZE 128
#define HASH_INPUT_SIZE 36
#define IP6_EXTENSIONS_COUNT 11
#define IP6_OPTIONS_COUNT 30

/* VIRTIO_NET_RSS_HASH_TYPE_* */
#define HASH_TYPE_IPv4 (1 << 0)
#define HASH_TYPE_TCPv4 (1 << 1)
#define HASH_TYPE_UDPv4 (1 << 2)
#define HASH_TYPE_IPv6 (1 << 3)
#define HASH_TYPE_TCPv6 (1 << 4)
#define HASH_TYPE_UDPv6 (1 << 5)
#define HASH_TYPE_IP_EX (1 << 6)
#define HASH_TYPE_TCP_EX (1 << 7)
#define HASH_TYPE_UDP_EX (1 << 8)

/* The same 10 bytes as QEMU's packed struct rss_config_t {u8 redirect; u8 populate_hash;
 * u32 hash_types; u16 indirections_len; u16 default_queue}: hash_types sits at offset 2, so it
 * is declared as two halves (little-endian host) and the struct needs no packed attribute. */
struct rss_config {
	__u8 redirect;
	__u8 populate_hash;
	__u16 hash_types_lo;
	__u16 hash_types_hi;
	__u16 indirections_len;
	__u16 default_queue;
};

/* The 40-byte key as QEMU stores it: the first 32 bits as a host-order number, then the rest. */
struct toeplitz_key {
	__u32 leftmost_32_bits;
	__u8 next_byte[HASH_INPUT_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct rss_config);
	__uint(max_entries, 1);
} tap_rss_map_configurations SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct toeplitz_key);
	__uint(max_entries, 1);
} tap_rss_map_toeplitz_key SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u16);
	__uint(max_entries, INDIRECTION_TABLE_SIZE);
} tap_rss_map_indirection_table SEC(".maps");

/* What parsing learns.  Addresses and ports stay in wire order: they are hashed as bytes. */
struct packet_info {
	__u32 src[4];          /* IPv4 uses the first word */
	__u32 dst[4];
	__u32 ext_src[4];      /* home address (destination options) */
	__u32 ext_dst[4];      /* type-2 routing header address */
	__u16 sport;
	__u16 dport;
	__u8 is_ipv4;
	__u8 is_ipv6;
	__u8 is_tcp;
	__u8 is_udp;
	__u8 has_ext_src;
	__u8 has_ext_dst;
	__u8 is_fragmented;
};

static __always_inline int load_net(struct __sk_buff *skb, __u32 off, void *to, __u32 len)
{
	return bpf_skb_load_bytes_relative(skb, off, to, len, BPF_HDR_START_NET);
}

static __always_inline int is_ipv6_ext(__u8 proto)
{
	return proto == IPPROTO_HOPOPTS || proto == IPPROTO_ROUTING || proto == IPPROTO_FRAGMENT ||
	       proto == IPPROTO_ICMPV6 || proto == IPPROTO_NONE || proto == IPPROTO_DSTOPTS ||
	       proto == IPPROTO_MH;
}

/* EtherType in host order after up to two VLAN tags; 0 when a read fails. */
static __always_inline __u16 eth_type(struct __sk_buff *skb)
{
	__be16 proto = 0;
	__u32 off = 12;

	if (bpf_skb_load_bytes_relative(skb, off, &proto, 2, BPF_HDR_START_MAC))
		return 0;
	if (proto == bpf_htons(ETH_P_8021AD))
		off += 8;
	else if (proto == bpf_htons(ETH_P_8021Q))
		off += 4;
	else
		return bpf_ntohs(proto);
	if (bpf_skb_load_bytes_relative(skb, off, &proto, 2, BPF_HDR_START_MAC))
		return 0;
	return bpf_ntohs(proto);
}

/* Home-address option in a destination-options header at `hdr` of `hdrlen` (8-byte units). */
static __always_inline int find_hao(struct __sk_buff *skb, struct packet_info *info, __u32 hdr,
				    __u8 hdrlen)
{
	__u8 opt[2] = {0, 0};
	__u32 off = 2;

	for (int j = 0; j < IP6_OPTIONS_COUNT; j++) {
		if (load_net(skb, hdr + off, opt, 2))
			return -1;
		if (opt[0] == IPV6_TLV_HAO) {
			if (load_net(skb, hdr + off + 2, info->ext_src, 16))
				return -1;
			info->has_ext_src = 1;
			return 0;
		}
		off += opt[0] == IPV6_TLV_PAD1 ? 1 : opt[1] + 2;
		if (off + 1 >= hdrlen * 8)
			return 0;
	}
	return 0;
}

/* Walk IPv6 extension headers from `*l4_off`, leaving the upper-layer protocol and its offset. */
static __always_inline int parse_ipv6_ext(struct __sk_buff *skb, struct packet_info *info,
					  __u8 *l4_proto, __u32 *l4_off)
{
	struct ipv6_rt_hdr rt = {};
	struct ipv6_opt_hdr ext = {};

	for (int i = 0; i < IP6_EXTENSIONS_COUNT; i++) {
		if (!is_ipv6_ext(*l4_proto))
			return 0;
		if (load_net(skb, *l4_off, &ext, sizeof(ext)))
			return -1;
		if (*l4_proto == IPPROTO_ROUTING) {
			if (load_net(skb, *l4_off, &rt, sizeof(rt)))
				return -1;
			if (rt.type == IPV6_SRCRT_TYPE_2 && rt.hdrlen == 2 && rt.segments_left == 1) {
				if (load_net(skb, *l4_off + 8, info->ext_dst, 16))
					return -1;
				info->has_ext_dst = 1;
			}
		} else if (*l4_proto == IPPROTO_DSTOPTS) {
			if (find_hao(skb, info, *l4_off, ext.hdrlen))
				return -1;
		} else if (*l4_proto == IPPROTO_FRAGMENT) {
			info->is_fragmented = 1;
		}
		*l4_proto = ext.nexthdr;
		*l4_off += (ext.hdrlen + 1) * 8;
	}
	return 0;
}

static __always_inline int parse_packet(struct __sk_buff *skb, struct packet_info *info)
{
	__u16 l3 = eth_type(skb);
	__u8 l4_proto = 0;
	__u32 l4_off = 0;

	if (l3 == 0)
		return -1;
	if (l3 == ETH_P_IP) {
		struct iphdr ip = {};

		info->is_ipv4 = 1;
		if (load_net(skb, 0, &ip, sizeof(ip)))
			return -1;
		info->src[0] = ip.saddr;
		info->dst[0] = ip.daddr;
		info->is_fragmented = (bpf_ntohs(ip.frag_off) & (IP_MF | IP_OFFSET)) != 0;
		l4_proto = ip.protocol;
		l4_off = ip.ihl * 4;
	} else if (l3 == ETH_P_IPV6) {
		/* struct ipv6hdr read as words, so the address copies are aligned stack loads. */
		__u32 ip6[sizeof(struct ipv6hdr) / 4] = {};

		info->is_ipv6 = 1;
		if (load_net(skb, 0, ip6, sizeof(ip6)))
			return -1;
		for (int i = 0; i < 4; i++) {
			info->src[i] = ip6[2 + i];
			info->dst[i] = ip6[6 + i];
		}
		l4_proto = ((__u8 *)ip6)[6];
		l4_off = sizeof(ip6);
		if (parse_ipv6_ext(skb, info, &l4_proto, &l4_off))
			return -1;
	}
	if (l4_proto == 0 || info->is_fragmented)
		return 0;
	if (l4_proto == IPPROTO_TCP) {
		struct tcphdr tcp = {};

		info->is_tcp = 1;
		if (load_net(skb, l4_off, &tcp, sizeof(tcp)))
			return -1;
		info->sport = tcp.source;
		info->dport = tcp.dest;
	} else if (l4_proto == IPPROTO_UDP) {
		struct udphdr udp = {};

		info->is_udp = 1;
		if (load_net(skb, l4_off, &udp, sizeof(udp)))
			return -1;
		info->sport = udp.source;
		info->dport = udp.dest;
	}
	return 0;
}

/* Fill the hash input (source, destination, then ports); its length, or 0 for "no hash". */
static __always_inline __u32 hash_input(struct packet_info *info, __u32 types, __u32 *input)
{
	__u32 ex = 0;
	int ports = 0;

	if (info->is_ipv4) {
		if (info->is_tcp && (types & HASH_TYPE_TCPv4))
			ports = 1;
		else if (info->is_udp && (types & HASH_TYPE_UDPv4))
			ports = 1;
		else if (!(types & HASH_TYPE_IPv4))
			return 0;
		input[0] = info->src[0];
		input[1] = info->dst[0];
		if (!ports)
			return 8;
		input[2] = info->sport | (info->dport << 16);   /* wire order on a little-endian host */
		return 12;
	}
	if (!info->is_ipv6)
		return 0;
	if (info->is_tcp && (types & HASH_TYPE_TCPv6)) {
		ex = types & HASH_TYPE_TCP_EX;
		ports = 1;
	} else if (info->is_udp && (types & HASH_TYPE_UDPv6)) {
		ex = types & HASH_TYPE_UDP_EX;
		ports = 1;
	} else if (types & HASH_TYPE_IPv6) {
		ex = types & HASH_TYPE_IP_EX;
	} else {
		return 0;
	}
	for (int i = 0; i < 4; i++) {
		input[i] = ex && info->has_ext_src ? info->ext_src[i] : info->src[i];
		input[4 + i] = ex && info->has_ext_dst ? info->ext_dst[i] : info->dst[i];
	}
	if (!ports)
		return 32;
	input[8] = info->sport | (info->dport << 16);
	return 36;
}

/* Toeplitz over `len` bytes: for each set input bit, xor in the 32 key bits that start there. */
static __always_inline __u32 toeplitz(const __u8 *input, __u32 len, const struct toeplitz_key *key)
{
	__u32 acc = 0;
	__u32 window = key->leftmost_32_bits;

	for (int i = 0; i < HASH_INPUT_SIZE; i++) {
		__u8 in, next;

		if (i >= len)
			break;
		in = input[i];
		next = key->next_byte[i];
		for (int bit = 0; bit < 8; bit++) {
			if (in & 0x80)
				acc ^= window;
			window = (window << 1) | (next >> 7);
			in <<= 1;
			next <<= 1;
		}
	}
	return acc;
}

SEC("socket")
int tun_rss_steering_prog(struct __sk_buff *skb)
{
	struct packet_info info = {};
	__u32 input[HASH_INPUT_SIZE / 4] = {};
	struct rss_config *config;
	struct toeplitz_key *key;
	__u32 zero = 0;
	__u32 types, len, idx;
	__u16 *queue;

	config = bpf_map_lookup_elem(&tap_rss_map_configurations, &zero);
	key = bpf_map_lookup_elem(&tap_rss_map_toeplitz_key, &zero);
	if (!config || !key)
		return 0;
	if (!config->redirect)
		return config->default_queue;
	if (parse_packet(skb, &info))
		return config->default_queue;
	types = config->hash_types_lo | ((__u32)config->hash_types_hi << 16);
	len = hash_input(&info, types, input);
	if (len == 0)
		return config->default_queue;
	idx = toeplitz((__u8 *)input, len, key);
	if (config->indirections_len)
		idx = idx % config->indirections_len;
	queue = bpf_map_lookup_elem(&tap_rss_map_indirection_table, &idx);
	if (!queue)
		return config->default_queue;
	return *queue;
}

char _license[] SEC("license") = "GPL v2";
