#ifndef _LINUX_SLAB_H
#define _LINUX_SLAB_H
#include <linux/types.h>

struct kmem_cache {
	unsigned int object_size;
	unsigned int size;
	unsigned int align;
	unsigned int flags;
	const char *name;
	struct list_head list;
};

#endif
