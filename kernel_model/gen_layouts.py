"""Generate the model's kernel headers from the BTF of a real kernel.

    python -m tracesim.kernel_model.gen_layouts ../shared/reference/linux-6.18/btf/vmlinux.gz [--out DIR]

reads the raw BTF (``/sys/kernel/btf/vmlinux``, optionally gzipped) and writes the headers listed
in ``HEADERS`` under ``kernel_model/include`` (or DIR): every struct the model lays out in its
memory, with the real offset, size and type of each member the model uses (``KEEP``) and the
members it does not use replaced by ``char __pad_at_<offset>[n]`` arrays at their real place, so
each struct has the kernel's total size. Small types those members need (typedefs, list heads,
``in6_addr`` ...) are copied whole. Before writing, the generated text is parsed with the model's
own C parser (``c_types``) and every member's offset, bit position and size, and every struct's
size, is compared with the BTF; a difference is an error.

The generated headers are committed: tracesim does not need the BTF at run time.
``tests/test_btf_layouts.py`` regenerates them from the shared BTF and fails on any difference.
"""
from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tracesim.filters.bpf.toolchain import btf as B
from tracesim.filters.bpf.toolchain.btf_dump import CWriter, member_bits
from tracesim.kernel_model import c_types

ALL = None   # keep every member

# The members the model reads or writes (kernel_model/net.py, machine.py, slab.py, kprobes.py)
# and the ones BPF programs commonly read; the rest of each struct is padding.
KEEP: dict[str, set[str] | None] = {
    "sk_buff": ALL,
    "skb_shared_info": ALL,
    "net_device": {"name", "name_node", "state", "dev_list", "features", "ifindex", "flags",
                   "priv_flags", "gflags", "hard_header_len", "mtu", "type", "needed_headroom",
                   "num_tx_queues", "real_num_tx_queues", "num_rx_queues", "real_num_rx_queues",
                   "addr_len", "perm_addr", "dev_addr", "stats"},
    "napi_struct": {"poll_list", "state", "weight", "defer_hard_irqs_count", "poll", "list_owner",
                    "dev", "skb", "thread", "napi_id", "dev_list", "irq", "index"},
    "task_struct": {"thread_info", "__state", "flags", "stack", "usage", "on_cpu", "prio",
                    "static_prio", "normal_prio", "rt_priority", "tasks", "mm", "pid", "tgid",
                    "real_parent", "parent", "group_leader", "utime", "stime", "start_time",
                    "cred", "comm", "files", "nsproxy", "se"},
    "sched_entity": {"run_node", "group_node", "on_rq", "exec_start", "sum_exec_runtime",
                     "vruntime", "prev_sum_exec_runtime"},
    "kmem_cache": {"flags", "size", "object_size", "align", "name", "list", "refcount", "ctor",
                   "inuse"},
    "sock": {"__sk_common", "sk_rcvbuf", "sk_sndbuf", "sk_priority", "sk_mark", "sk_protocol",
             "sk_type"},
    "dentry": {"d_flags", "d_parent", "d_name", "d_inode", "d_sb"},
    "filename": ALL,
    "file": {"f_mode", "f_op", "f_mapping", "private_data", "f_inode", "f_flags", "f_cred",
             "f_path", "f_pos"},
    "inode": {"i_mode", "i_opflags", "i_uid", "i_gid", "i_flags", "i_sb", "i_mapping", "i_ino",
              "i_nlink", "__i_nlink", "i_rdev", "i_size", "i_atime_sec", "i_mtime_sec",
              "i_ctime_sec", "i_blocks"},
    "page": {"flags", "lru", "mapping", "private", "compound_head", "page_type", "_mapcount",
             "_refcount"},
}


@dataclass
class Header:
    path: str                     # under include/
    doc: str                      # the first comment line
    types: list[str]              # "struct x", "union x", "typedef x", "enum x", in order
    includes: list[str] = field(default_factory=list)
    prelude: str = ""             # macros and hand-written protocol types (not in the BTF)


_TYPEDEFS = ["__s8", "__u8", "__s16", "__u16", "__s32", "__u32", "__s64", "__u64", "s8", "u8",
             "s16", "u16", "s32", "u32", "s64", "u64", "__le16", "__be16", "__le32", "__be32",
             "__le64", "__be64", "__sum16", "__wsum", "bool", "size_t", "ssize_t", "pid_t",
             "gfp_t", "ktime_t", "uintptr_t", "atomic_t", "atomic64_t", "atomic_long_t",
             "refcount_t"]

HEADERS: list[Header] = [
    Header("linux/types.h", "Fixed-width kernel types and the small structs the others share.",
           [f"typedef {n}" for n in _TYPEDEFS]
           + ["struct list_head", "struct hlist_node", "struct hlist_head", "struct rb_node",
              "struct llist_node", "struct callback_head"]),
    Header("asm/ptrace.h", "x86-64 struct pt_regs (arch/x86/include/asm/ptrace.h).",
           ["struct pt_regs"], ["linux/types.h"]),
    Header("linux/netdevice.h", "struct net_device and struct napi_struct.",
           ["struct net_device_stats", "struct net_device", "struct napi_struct"],
           ["linux/types.h"], "#define IFNAMSIZ 16\n"),
    Header("linux/skbuff.h", "struct sk_buff and struct skb_shared_info.",
           ["struct sk_buff", "struct skb_shared_info"], ["linux/types.h", "linux/netdevice.h"]),
    Header("linux/sched.h", "struct task_struct.", ["struct task_struct"], ["linux/types.h"],
           "#define TASK_COMM_LEN 16\n"),
    Header("linux/slab.h", "struct kmem_cache (SLUB).", ["struct kmem_cache"], ["linux/types.h"]),
    Header("net/sock.h", "struct sock and struct sock_common.",
           ["struct sock_common", "struct sock"], ["linux/types.h", "linux/ipv6.h"]),
    Header("linux/fs.h", "struct file, struct inode, struct dentry and struct filename.",
           ["struct qstr", "struct dentry", "struct path", "struct file", "struct inode",
            "struct filename"], ["linux/types.h"]),
    Header("linux/mm_types.h", "struct page.", ["struct page"], ["linux/types.h"]),
    Header("linux/if_ether.h", "The Ethernet header (uapi <linux/if_ether.h>).", ["struct ethhdr"],
           ["linux/types.h"],
           "#define ETH_ALEN 6\n#define ETH_HLEN 14\n#define ETH_P_IP 0x0800\n"
           "#define ETH_P_ARP 0x0806\n#define ETH_P_8021Q 0x8100\n#define ETH_P_IPV6 0x86DD\n"
           "#define ETH_P_8021AD 0x88A8\n"),
    Header("linux/ip.h", "struct iphdr (uapi <linux/ip.h>).", ["struct iphdr"], ["linux/types.h"],
           "#define IP_CE 0x8000\n#define IP_DF 0x4000\n#define IP_MF 0x2000\n"
           "#define IP_OFFSET 0x1FFF\n"),
    Header("linux/ipv6.h", "The IPv6 header and extension headers (uapi <linux/ipv6.h>).",
           ["struct in6_addr", "struct ipv6hdr", "struct ipv6_opt_hdr", "struct ipv6_rt_hdr",
            "struct frag_hdr"], ["linux/types.h"],
           "#define IPV6_SRCRT_TYPE_2 2\n#define IPV6_TLV_PAD1 0\n#define IPV6_TLV_PADN 1\n"
           "#define IPV6_TLV_HAO 201\n#define s6_addr in6_u.u6_addr8\n"
           "#define s6_addr16 in6_u.u6_addr16\n#define s6_addr32 in6_u.u6_addr32\n"),
    Header("linux/tcp.h", "struct tcphdr (uapi <linux/tcp.h>).", ["struct tcphdr"],
           ["linux/types.h"]),
    Header("linux/udp.h", "struct udphdr (uapi <linux/udp.h>).", ["struct udphdr"],
           ["linux/types.h"]),
]

# Written after a header's generated types: what the BTF does not have.
EPILOGUE = {
    "linux/ipv6.h": "/* Type-2 routing header (Mobile IPv6, <net/ipv6.h>; not in vmlinux BTF). */\n"
                    "struct rt2_hdr {\n\tstruct ipv6_rt_hdr rt_hdr;\n\t__u32 reserved;\n"
                    "\tstruct in6_addr addr;\n};\n",
}

BANNER = """\
/* {doc}
 * Generated by kernel_model/gen_layouts.py from the BTF of Linux 6.18 (x86-64); do not edit.
 * Members the model does not use are padding (__pad_at_<offset>) at their real place. */
"""


class LayoutError(Exception):
    """The BTF lacks a type or member the spec names, or a generated layout is wrong."""


def load_btf(path: str | Path) -> B.Btf:
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return B.parse(data)


class Subset:
    """A new BTF holding the spec's types, filtered by ``KEEP``, and what they need."""

    def __init__(self, src: B.Btf) -> None:
        self.src = src
        self.out = B.Btf([B.BtfType(0)])
        self.memo: dict[int, int] = {}
        self.tags: dict[tuple[str, str], int] = {}      # ("struct", name) -> new id
        self.named: dict[tuple[int, str], int] = {}     # source index by (kind, name)
        self.kept: dict[str, set[str]] = {}             # struct -> keep names matched
        for i, t in enumerate(src.types):
            if t.name and (t.kind, t.name) not in self.named:
                if t.kind in (B.STRUCT, B.UNION) and not t.ref and not t.members:
                    continue
                self.named[(t.kind, t.name)] = i

    def lookup(self, spelling: str) -> int:
        kind_word, name = spelling.split()
        kind = {"struct": B.STRUCT, "union": B.UNION, "typedef": B.TYPEDEF, "enum": B.ENUM}[kind_word]
        src_id = self.named.get((kind, name))
        if src_id is None:
            raise LayoutError(f"the BTF has no {spelling}")
        return self.copy(src_id)

    def _add(self, t: B.BtfType) -> int:
        self.out.types.append(t)
        return len(self.out.types) - 1

    def _tag_slot(self, t: B.BtfType) -> int:
        """The new id of a named struct/union: a FWD until its definition is copied."""
        is_union = t.kind == B.UNION or (t.kind == B.FWD and t.kind_flag)
        key = ("union" if is_union else "struct", t.name)
        if key not in self.tags:
            self.tags[key] = self._add(B.BtfType(B.FWD, t.name, kind_flag=is_union))
        return self.tags[key]

    def ref(self, tid: int) -> int:
        """A reference from behind a pointer: named structs need only their name."""
        t = self.src.types[tid] if tid else None
        if t is not None and t.kind in (B.STRUCT, B.UNION, B.FWD) and t.name:
            return self._tag_slot(t)
        if t is not None and t.kind == B.TYPE_TAG:
            return self.ref(t.ref)
        if t is not None and t.kind in (B.CONST, B.VOLATILE, B.RESTRICT):   # const struct x *
            if -tid not in self.memo:
                self.memo[-tid] = self._add(B.BtfType(t.kind, ref=self.ref(t.ref)))
            return self.memo[-tid]
        return self.copy(tid)

    def copy(self, tid: int) -> int:
        if tid == 0:
            return 0
        if tid in self.memo:
            return self.memo[tid]
        t = self.src.types[tid]
        if t.kind == B.TYPE_TAG:                 # attributes the model's C cannot spell
            return self.copy(t.ref)
        if t.kind == B.FWD or (t.kind in (B.STRUCT, B.UNION) and t.name):
            slot = self._tag_slot(t)
            self.memo[tid] = slot
            if t.kind != B.FWD:
                self.out.types[slot] = self._struct(tid, KEEP.get(t.name, ALL), t.name)
            return slot
        new = B.BtfType(t.kind, t.name, t.ref, kind_flag=t.kind_flag, int_bits=t.int_bits,
                        int_encoding=t.int_encoding, linkage=t.linkage)
        nid = self._add(new)
        self.memo[tid] = nid
        if t.kind == B.PTR:
            new.ref = self.ref(t.ref)
        elif t.kind in (B.TYPEDEF, B.CONST, B.VOLATILE, B.RESTRICT):
            new.ref = self.copy(t.ref)
        elif t.kind == B.ARRAY:
            elem, index, n = t.array
            new.array = (self.copy(elem), self.copy(index), n)
        elif t.kind in (B.ENUM, B.ENUM64):
            new.members = list(t.members)
        elif t.kind == B.FUNC_PROTO:
            new.ref = self.ref(t.ref)
            new.members = [(n, self.ref(p), 0) for n, p, _ in t.members]
        elif t.kind in (B.STRUCT, B.UNION):            # anonymous
            self.out.types[nid] = self._struct(tid, ALL, "")
        elif t.kind not in (B.INT, B.FLOAT):
            raise LayoutError(f"cannot copy BTF kind {B.KIND_NAMES.get(t.kind)} ([{tid}])")
        return nid

    def _struct(self, tid: int, keep: set[str] | None, owner: str) -> B.BtfType:
        t = self.src.types[tid]
        members = []
        for name, mtype, raw in t.members:
            if keep is None:
                members.append((name, self.copy(mtype), raw))
            elif name:
                if name in keep:
                    self.kept.setdefault(owner, set()).add(name)
                    members.append((name, self.copy(mtype), raw))
            else:
                inner = self._struct(mtype, keep, owner)
                if inner.members:
                    members.append(("", self._add(inner), raw))
        return B.BtfType(t.kind, t.name, t.ref, kind_flag=t.kind_flag, members=members)

    def check_keep(self) -> None:
        for name, keep in KEEP.items():
            missing = (keep or set()) - self.kept.get(name, set())
            if missing and keep is not None:
                raise LayoutError(f"struct {name} has no member(s) {', '.join(sorted(missing))}")


def _guard(path: str) -> str:
    return "_TRACESIM_" + path.upper().replace("/", "_").replace(".", "_")


def generate(src: B.Btf) -> dict[str, str]:
    """Header path -> text."""
    sub = Subset(src)
    placed: dict[str, list[int]] = {h.path: [sub.lookup(s) for s in h.types] for h in HEADERS}
    sub.check_keep()
    by_path = {h.path: h for h in HEADERS}

    def visible(path: str, seen: set[str] | None = None) -> set[str]:
        seen = set() if seen is None else seen
        for inc in by_path[path].includes:
            if inc not in seen:
                seen.add(inc)
                visible(inc, seen)
        return seen

    while True:
        texts: dict[str, str] = {}
        extra: list[int] = []
        for h in HEADERS:
            w = CWriter(sub.out, pad_arrays=True)
            for inc in visible(h.path):
                w.defined.update(placed[inc])
            before = set(w.defined)
            body = w.types(placed[h.path])
            new = (w.defined - before) - set(placed[h.path])
            for tid in sorted(new):
                owner = next((p for p, ids in placed.items() if tid in ids), None)
                if owner is not None:
                    raise LayoutError(f"{h.path} needs {sub.out.type_name(tid)} from {owner}, "
                                      "which it does not include")
                extra.append(tid)
            texts[h.path] = body
        if not extra:
            break
        placed["linux/types.h"] += sorted(set(extra))
    out = {}
    for h in HEADERS:
        guard = _guard(h.path)
        parts = [BANNER.format(doc=h.doc), f"#ifndef {guard}\n#define {guard}\n"]
        parts += [f"#include <{inc}>\n" for inc in h.includes]
        parts.append("\n" + h.prelude + ("\n" if h.prelude else ""))
        parts.append(texts[h.path])
        if h.path in EPILOGUE:
            parts.append(EPILOGUE[h.path] + "\n")
        parts.append("#endif\n")
        out[h.path] = "".join(parts)
    verify(sub.out, out)
    return out


def _leaves(btf: B.Btf, tid: int, base: int, seen: dict[str, tuple[int, int, int]]) -> None:
    """Named members of a struct, through anonymous members: name -> (bit offset, bit size or
    0, byte size); the first of a repeated name wins, as C's lookup does."""
    t = btf.types[tid]
    for name, mtype, raw in t.members:
        off, bits = member_bits(t, raw)
        if not name:
            _leaves(btf, btf.resolve(mtype), base + off, seen)
        elif name not in seen:
            seen[name] = (base + off, bits, btf.size_of(mtype))


def verify(btf: B.Btf, texts: dict[str, str]) -> None:
    """Parse ``texts`` with c_types and compare each struct's layout with ``btf``."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for path, text in texts.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text)
        source = "".join(f"#include <{p}>\n" for p in texts)
        env = c_types.TypeEnv()
        env.add(c_types.parse_c(c_types.preprocess(source, "<layouts>", [root]), "<layouts>"))
    for tid, t in enumerate(btf.types):
        if t.kind not in (B.STRUCT, B.UNION) or not t.name:
            continue
        ours = env.structs.get(t.name) if t.kind == B.STRUCT else env.unions.get(t.name)
        what = f"{'union' if t.kind == B.UNION else 'struct'} {t.name}"
        if ours is None or not ours.complete:
            raise LayoutError(f"{what} is missing from the generated headers")
        if ours.size != t.ref:
            raise LayoutError(f"{what}: size {ours.size}, the BTF says {t.ref}")
        want: dict[str, tuple[int, int, int]] = {}
        _leaves(btf, tid, 0, want)
        for name, (bit, bits, size) in want.items():
            m = ours.find(name)
            if m is None:
                raise LayoutError(f"{what}: member {name} is missing")
            got = (8 * m.offset + (m.bit_offset or 0), m.bit_size or 0, m.type.size)
            if got != (bit, bits, size):
                raise LayoutError(f"{what}.{name}: (bit offset, bits, size) {got}, "
                                  f"the BTF says {(bit, bits, size)}")


def write(texts: dict[str, str], out_dir: Path) -> list[Path]:
    written = []
    for path, text in texts.items():
        target = out_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tracesim.kernel_model.gen_layouts",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("btf", help="raw BTF of the kernel (/sys/kernel/btf/vmlinux), may be gzipped")
    p.add_argument("--out", type=Path, default=c_types.INCLUDE_DIR,
                   help="include directory to write (default: kernel_model/include)")
    args = p.parse_args(argv)
    try:
        texts = generate(load_btf(args.btf))
    except OSError as e:
        print(f"gen_layouts: {args.btf}: {e.strerror}", file=sys.stderr)
        return 1
    except (B.BtfError, LayoutError, c_types.CTypeError) as e:
        print(f"gen_layouts: {e}", file=sys.stderr)
        return 1
    for path in write(texts, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
