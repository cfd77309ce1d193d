/* Everything the modelled kernel declares: the types the kernel model lays out in its memory and
 * the ones BPF programs include. */
#ifndef _TRACESIM_KERNEL_H
#define _TRACESIM_KERNEL_H
#include <linux/types.h>
#include <linux/ptrace.h>
#include <linux/sched.h>
#include <linux/netdevice.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#endif
