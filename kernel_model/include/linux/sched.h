/* The part of struct task_struct that tracing reads. */
#ifndef _LINUX_SCHED_H
#define _LINUX_SCHED_H
#include <linux/types.h>

#define TASK_COMM_LEN 16

struct task_struct {
	unsigned int __state;
	unsigned int flags;
	void *stack;
	refcount_t usage;
	int on_cpu;
	unsigned int cpu;
	int prio;
	int static_prio;
	int normal_prio;
	unsigned int rt_priority;
	struct list_head tasks;
	pid_t pid;
	pid_t tgid;
	struct task_struct *real_parent;
	struct task_struct *parent;
	u64 utime;
	u64 stime;
	u64 start_time;
	char comm[TASK_COMM_LEN];
};

#endif
