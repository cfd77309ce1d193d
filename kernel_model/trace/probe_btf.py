"""The BTF a probe's arguments are typed with: prototypes of the modelled functions (names and
types of their parameters, their return type) and the model's struct layouts (``c_types``), as
trace_probe.c reads the kernel's BTF (``find_btf_func_param``, ``type_from_btf_id``)."""
from __future__ import annotations

import functools
from typing import Any

from tracesim.kernel_model.c_types import Array, Enum, Int, Pointer, kernel_types

# prototypes of the modelled functions whose parameters a probe may name
FUNC_PROTOS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "kmem_cache_alloc_noprof": ("void *", (("struct kmem_cache *", "s"), ("gfp_t", "gfpflags"))),
    "kmem_cache_free": ("void", (("struct kmem_cache *", "s"), ("void *", "x"))),
    "__kmalloc_noprof": ("void *", (("size_t", "size"), ("gfp_t", "flags"))),
    "kfree": ("void", (("const void *", "object"),)),
    "__alloc_skb": ("struct sk_buff *", (("unsigned int", "size"), ("gfp_t", "gfp_mask"),
                                         ("int", "flags"), ("int", "node"))),
    "__netdev_alloc_skb": ("struct sk_buff *", (("struct net_device *", "dev"),
                                                ("unsigned int", "len"), ("gfp_t", "gfp_mask"))),
    "__kfree_skb": ("void", (("struct sk_buff *", "skb"),)),
    "consume_skb": ("void", (("struct sk_buff *", "skb"),)),
    "sk_skb_reason_drop": ("void", (("struct sock *", "sk"), ("struct sk_buff *", "skb"),
                                    ("enum skb_drop_reason", "reason"))),
    "eth_type_trans": ("__be16", (("struct sk_buff *", "skb"), ("struct net_device *", "dev"))),
    "__dev_queue_xmit": ("int", (("struct sk_buff *", "skb"), ("struct net_device *", "sb_dev"))),
    "netif_rx": ("int", (("struct sk_buff *", "skb"),)),
    "netif_receive_skb": ("int", (("struct sk_buff *", "skb"),)),
    "__netif_receive_skb": ("int", (("struct sk_buff *", "skb"),)),
    "ip_rcv": ("int", (("struct sk_buff *", "skb"), ("struct net_device *", "dev"),
                       ("struct packet_type *", "pt"), ("struct net_device *", "orig_dev"))),
    "ipv6_rcv": ("int", (("struct sk_buff *", "skb"), ("struct net_device *", "dev"),
                         ("struct packet_type *", "pt"), ("struct net_device *", "orig_dev"))),
    "icmp_rcv": ("int", (("struct sk_buff *", "skb"),)),
    "net_rx_action": ("void", ()),
    # the task model's functions (sched.py, syscalls.py, the tree's own directories), as the
    # 6.18 BTF declares them (FUNC_PROTO: parameter names, types, the return type)
    "vfs_read": ("ssize_t", (("struct file *", "file"), ("char *", "buf"), ("size_t", "count"),
                             ("loff_t *", "pos"))),
    "vfs_write": ("ssize_t", (("struct file *", "file"), ("const char *", "buf"),
                              ("size_t", "count"), ("loff_t *", "pos"))),
    "ksys_read": ("ssize_t", (("unsigned int", "fd"), ("char *", "buf"), ("size_t", "count"))),
    "ksys_write": ("ssize_t", (("unsigned int", "fd"), ("const char *", "buf"),
                               ("size_t", "count"))),
    "do_sys_openat2": ("int", (("int", "dfd"), ("const char *", "filename"),
                               ("struct open_how *", "how"))),
    "getname_flags": ("struct filename *", (("const char *", "filename"), ("int", "flags"))),
    "dput": ("void", (("struct dentry *", "dentry"),)),
    "kernel_clone": ("pid_t", (("struct kernel_clone_args *", "args"),)),
    "do_exit": ("void", (("long int", "code"),)),
    "eventfs_create_dir": ("struct eventfs_inode *", (
        ("const char *", "name"), ("struct eventfs_inode *", "parent"),
        ("const struct eventfs_entry *", "entries"), ("int", "size"), ("void *", "data"))),
    "tracefs_create_dir": ("struct dentry *", (("const char *", "name"),
                                               ("struct dentry *", "parent"))),
}

@functools.cache
def ctype_of(spelling: str) -> Any:
    """The model BTF's type of a prototype's spelling (None if the model lacks it)."""
    try:
        return kernel_types().parse_type(spelling)
    except Exception:                  # noqa: BLE001 - a type the model does not declare
        return None


def btf_fetch_type(ctype: Any) -> str | None:
    """type_from_btf_id: pointers are x64, enums s32 (s64), ints by size and sign."""
    if isinstance(ctype, Pointer):
        return "x64"
    if isinstance(ctype, Enum):
        return "s64" if ctype.size == 8 else "s32"
    if isinstance(ctype, Int) and ctype.size in (1, 2, 4, 8):
        return f"{'s' if ctype.signed else 'u'}{ctype.size * 8}"
    return None


def is_string_type(ctype: Any) -> bool:
    """check_prepare_btf_string_fetch: a char pointer or a char array."""
    inner = ctype.target if isinstance(ctype, Pointer) else \
        ctype.elem if isinstance(ctype, Array) else None
    return isinstance(inner, Int) and inner.size == 1
