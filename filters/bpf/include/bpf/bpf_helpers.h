/* BPF helper declarations and map-definition macros, the libbpf way.
 * GENERATED from filters/bpf/helper_table.py: do not edit; regenerate with
 *     python -m tracesim.filters.bpf.runtime.helper_table --header > filters/bpf/include/bpf/bpf_helpers.h
 * The same file builds with `tracesim cc` and with `clang -target bpf`
 * (both put kernel_model/include and filters/bpf/include on the include path). */
#ifndef __BPF_HELPERS__
#define __BPF_HELPERS__

#include <linux/types.h>

#ifndef NULL
#define NULL ((void *)0)
#endif

/* Where a definition lands in the object: programs, maps, the license. */
#ifdef __TRACESIM_CC__
#define SEC(name) [[gnu::section(name)]]
#else
#define SEC(name) __attribute__((section(name), used))
#endif

/* tracesim cc inlines every `inline` function and calls the others (bpf-to-bpf calls). */
#ifndef __always_inline
#ifdef __TRACESIM_CC__
#define __always_inline inline
#else
#define __always_inline inline __attribute__((always_inline))
#endif
#endif
#ifdef __TRACESIM_CC__
#define __noinline
#else
#define __noinline __attribute__((noinline))
#endif

/* Externs libbpf resolves at open (filters/bpf/externs.py): kconfig values, kernel symbols. */
#ifndef __TRACESIM_CC__
#define __kconfig __attribute__((section(".kconfig")))
#define __ksym __attribute__((section(".ksyms")))
#define __weak __attribute__((weak))
#endif
enum libbpf_tristate {
	TRI_NO = 0,
	TRI_YES = 1,
	TRI_MODULE = 2,
};
#define KERNEL_VERSION(a, b, c) (((a) << 16) + ((b) << 8) + ((c) > 255 ? 255 : (c)))

/* BTF-defined maps: struct { __uint(type, BPF_MAP_TYPE_HASH); __type(key, u32); ... } m SEC(".maps"); */
#define __uint(name, val) int (*name)[val]
#ifdef __TRACESIM_CC__
#define __type(name, val) val *name
#else
#define __type(name, val) typeof(val) *name
#endif
#define __array(name, val) typeof(val) *name[]
#ifndef __TRACESIM_CC__
#define ___bpf_concat(a, b) a ## b
#define ___bpf_unique(a, b) ___bpf_concat(a, b)
#define __ulong(name, val) enum { ___bpf_unique(__unique_value, __COUNTER__) = val } name
#endif

/* Map types, update flags and struct bpf_map_def: the uapi header (kernel_model/include). */
#include <uapi/linux/bpf.h>

/* Helpers tracesim implements, numbered as uapi enum bpf_func_id. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *) 1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *) 2;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *) 3;
static long (*bpf_probe_read)(void *dst, __u32 size, const void *unsafe_ptr) = (void *) 4;
static __u64 (*bpf_ktime_get_ns)(void) = (void *) 5;
static long (*bpf_trace_printk)(const char *fmt, __u32 fmt_size, ...) = (void *) 6;
static __u32 (*bpf_get_prandom_u32)(void) = (void *) 7;
static __u32 (*bpf_get_smp_processor_id)(void) = (void *) 8;
static long (*bpf_tail_call)(void *ctx, void *prog_array_map, __u32 index) = (void *) 12;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *) 14;
static __u64 (*bpf_get_current_uid_gid)(void) = (void *) 15;
static long (*bpf_get_current_comm)(void *buf, __u32 size_of_buf) = (void *) 16;
static long (*bpf_perf_event_output)(void *ctx, void *map, __u64 flags, void *data, __u64 size) = (void *) 25;
static long (*bpf_skb_load_bytes)(const void *skb, __u32 offset, void *to, __u32 len) = (void *) 26;
static long (*bpf_get_stackid)(void *ctx, void *map, __u64 flags) = (void *) 27;
static __u64 (*bpf_get_current_task)(void) = (void *) 35;
static long (*bpf_probe_read_str)(void *dst, __u32 size, const void *unsafe_ptr) = (void *) 45;
static long (*bpf_get_stack)(void *ctx, void *buf, __u32 size, __u64 flags) = (void *) 67;
static long (*bpf_skb_load_bytes_relative)(const void *skb, __u32 offset, void *to, __u32 len, __u32 start_header) = (void *) 68;
static long (*bpf_map_push_elem)(void *map, const void *value, __u64 flags) = (void *) 87;
static long (*bpf_map_pop_elem)(void *map, void *value) = (void *) 88;
static long (*bpf_map_peek_elem)(void *map, void *value) = (void *) 89;
static long (*bpf_probe_read_user)(void *dst, __u32 size, const void *unsafe_ptr) = (void *) 112;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *unsafe_ptr) = (void *) 113;
static long (*bpf_probe_read_user_str)(void *dst, __u32 size, const void *unsafe_ptr) = (void *) 114;
static long (*bpf_probe_read_kernel_str)(void *dst, __u32 size, const void *unsafe_ptr) = (void *) 115;
static __u64 (*bpf_ktime_get_boot_ns)(void) = (void *) 125;
static long (*bpf_ringbuf_output)(void *ringbuf, void *data, __u64 size, __u64 flags) = (void *) 130;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *) 131;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *) 132;
static void (*bpf_ringbuf_discard)(void *data, __u64 flags) = (void *) 133;
static __u64 (*bpf_ringbuf_query)(void *ringbuf, __u64 flags) = (void *) 134;
static void *(*bpf_per_cpu_ptr)(const void *percpu_ptr, __u32 cpu) = (void *) 153;
static void *(*bpf_this_cpu_ptr)(const void *percpu_ptr) = (void *) 154;
static struct task_struct *(*bpf_get_current_task_btf)(void) = (void *) 158;
static long (*bpf_for_each_map_elem)(void *map, void *callback_fn, void *callback_ctx, __u64 flags) = (void *) 164;
static long (*bpf_snprintf)(char *str, __u32 str_size, const char *fmt, __u64 *data, __u32 data_len) = (void *) 165;
static __u64 (*bpf_get_func_ip)(void *ctx) = (void *) 173;
static __u64 (*bpf_get_attach_cookie)(void *ctx) = (void *) 174;
static long (*bpf_trace_vprintk)(const char *fmt, __u32 fmt_size, const void *data, __u32 data_len) = (void *) 177;
static long (*bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx, __u64 flags) = (void *) 181;
static long (*bpf_get_func_arg)(void *ctx, __u32 n, __u64 *value) = (void *) 183;
static long (*bpf_get_func_ret)(void *ctx, __u64 *value) = (void *) 184;
static long (*bpf_get_func_arg_cnt)(void *ctx) = (void *) 185;
static void *(*bpf_map_lookup_percpu_elem)(void *map, const void *key, __u32 cpu) = (void *) 195;

/* bpf_printk("fmt", args...): the format is copied to the stack, as the helper needs. */
#define bpf_printk(fmt, ...)						\
({									\
	char ____fmt[] = fmt;						\
	bpf_trace_printk(____fmt, sizeof(____fmt), ##__VA_ARGS__);	\
})

#endif /* __BPF_HELPERS__ */
