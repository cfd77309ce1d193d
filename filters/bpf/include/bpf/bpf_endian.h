/* Byte-order conversions that fold to constants or compile to the BPF `be` instructions. */
#ifndef __BPF_ENDIAN__
#define __BPF_ENDIAN__

#define ___bpf_swab16(x) ((__u16)((((__u16)(x) & 0x00ffU) << 8) | (((__u16)(x) & 0xff00U) >> 8)))
#define ___bpf_swab32(x) ((__u32)((((__u32)(x) & 0x000000ffUL) << 24) |	\
				  (((__u32)(x) & 0x0000ff00UL) << 8) |	\
				  (((__u32)(x) & 0x00ff0000UL) >> 8) |	\
				  (((__u32)(x) & 0xff000000UL) >> 24)))

#ifdef __TRACESIM_CC__
#define bpf_htons(x) __builtin_bswap16(x)
#define bpf_ntohs(x) __builtin_bswap16(x)
#define bpf_htonl(x) __builtin_bswap32(x)
#define bpf_ntohl(x) __builtin_bswap32(x)
#define bpf_cpu_to_be64(x) __builtin_bswap64(x)
#define bpf_be64_to_cpu(x) __builtin_bswap64(x)
#else
#define bpf_htons(x) (__builtin_constant_p(x) ? ___bpf_swab16(x) : __builtin_bswap16(x))
#define bpf_ntohs(x) bpf_htons(x)
#define bpf_htonl(x) (__builtin_constant_p(x) ? ___bpf_swab32(x) : __builtin_bswap32(x))
#define bpf_ntohl(x) bpf_htonl(x)
#define bpf_cpu_to_be64(x) __builtin_bswap64(x)
#define bpf_be64_to_cpu(x) __builtin_bswap64(x)
#endif

#endif /* __BPF_ENDIAN__ */
