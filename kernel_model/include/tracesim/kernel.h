/* Everything the modelled kernel declares: the types the kernel model lays out in its memory and
 * the ones BPF programs include (the struct layouts are Linux 6.18's, see gen_layouts.py). */
#ifndef _TRACESIM_KERNEL_H
#define _TRACESIM_KERNEL_H
#include <linux/types.h>
#include <linux/ptrace.h>
#include <linux/sched.h>
#include <linux/netdevice.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include <linux/fs.h>
#include <linux/mm_types.h>
#include <net/sock.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#endif
