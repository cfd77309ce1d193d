"""The model's struct layouts are Linux 6.18's: the committed headers are exactly what
``kernel_model/gen_layouts.py`` derives from the shared 6.18 BTF, the model writes its memory at
those offsets, and a program clang builds against the real kernel's ``vmlinux.h`` reads the
fields it means."""
from __future__ import annotations

import re
import subprocess

import pytest
from tracesim.filters.bpf.toolchain import btf as B
from tracesim.filters.bpf.toolchain.btf_dump import dump_c
from tracesim.kernel_model import gen_layouts
from tracesim.kernel_model.c_types import INCLUDE_DIR, kernel_types

from tests.conftest import REFERENCE, need_shared, need_tool
from tests.tree_helpers import cat_into

BTF_PATH = REFERENCE / "btf" / "vmlinux.gz"
NETIF = "/events/net/netif_receive_skb"

# Offsets and sizes read from the 6.18 BTF, so the model is checked even where ../shared is
# absent: (struct, member path, offset, size).
KNOWN = [
    ("sk_buff", "dev", 0x10, 8), ("sk_buff", "len", 0x70, 4), ("sk_buff", "protocol", 0xb0, 2),
    ("sk_buff", "head", 0xc0, 8), ("sk_buff", "data", 0xc8, 8), ("sk_buff", "users", 0xd4, 4),
    ("net_device", "name", 0x118, 16), ("net_device", "ifindex", 0xe0, 4),
    ("net_device", "mtu", 0x38, 4), ("task_struct", "pid", 0x4f0, 4),
    ("task_struct", "comm", 0x6d8, 16), ("task_struct", "thread_info.cpu", 0x14, 4),
    ("pt_regs", "di", 0x70, 8), ("pt_regs", "ip", 0x80, 8),
]
SIZES = {"sk_buff": 224, "net_device": 2496, "task_struct": 3264, "sock": 784, "file": 184,
         "inode": 616, "page": 64, "skb_shared_info": 320, "pt_regs": 168, "iphdr": 20,
         "ipv6hdr": 40, "tcphdr": 20, "udphdr": 8, "napi_struct": 496, "kmem_cache": 8416}


@pytest.fixture(scope="module")
def real_btf() -> B.Btf:
    need_shared()
    return gen_layouts.load_btf(BTF_PATH)


def member_type_size(tag: str, path: str) -> int:
    t = kernel_types().struct(tag)
    *outer, last = path.split(".")
    for part in outer:
        t = t.field(part).type
    return t.field(last).type.size


@pytest.mark.parametrize("tag, path, offset, size", KNOWN)
def test_model_offsets_are_the_kernels(tag, path, offset, size):
    assert kernel_types().struct(tag).offsetof(path) == offset
    assert member_type_size(tag, path) == size


def test_model_struct_sizes_are_the_kernels():
    env = kernel_types()
    assert {tag: env.struct(tag).size for tag in SIZES} == SIZES


def test_headers_are_what_the_btf_gives(real_btf):
    texts = gen_layouts.generate(real_btf)
    assert {p: (INCLUDE_DIR / p).read_text() for p in texts} == texts, \
        ("regenerate: python -m tracesim.kernel_model.gen_layouts"
         " ../shared/reference/linux-6.18/btf/vmlinux.gz")


def test_every_mirrored_member_sits_where_the_btf_says(real_btf):
    from tracesim.kernel_model.net.core import NAPI_MIRROR_FIELDS, NETDEV_MIRROR_FIELDS, SKB_MIRROR_FIELDS
    touched = {"sk_buff": list(SKB_MIRROR_FIELDS), "net_device": list(NETDEV_MIRROR_FIELDS),
               "napi_struct": list(NAPI_MIRROR_FIELDS),
               "task_struct": ["pid", "tgid", "comm", "flags", "thread_info"],
               "kmem_cache": ["object_size", "size", "align", "flags", "name"]}
    env = kernel_types()
    for tag, members in touched.items():
        want: dict[str, tuple[int, int, int]] = {}
        gen_layouts._leaves(real_btf, real_btf.find(B.STRUCT, tag), 0, want)
        for name in members:
            m = env.struct(tag).field(name)
            bit, bits, size = want[name]
            assert (8 * m.offset + (m.bit_offset or 0), m.bit_size or 0, m.type.size) == \
                (bit, bits, size), f"{tag}.{name}"


def test_a_wrong_layout_is_refused(real_btf):
    texts = gen_layouts.generate(real_btf)
    texts["linux/netdevice.h"] = texts["linux/netdevice.h"].replace("char __pad_at_8[32];",
                                                                    "char __pad_at_8[24];")
    sub = gen_layouts.Subset(real_btf)
    for h in gen_layouts.HEADERS:
        for spelling in h.types:
            sub.lookup(spelling)
    with pytest.raises(gen_layouts.LayoutError, match=r"struct net_device: "):
        gen_layouts.verify(sub.out, texts)


def test_generator_errors_are_one_line(tmp_path, capsys):
    assert gen_layouts.main([str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err == f"gen_layouts: {tmp_path / 'missing'}: No such file or directory\n"
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00" * 64)
    assert gen_layouts.main([str(junk)]) == 1
    assert capsys.readouterr().err == "gen_layouts: .BTF has magic 0x0, expected 0xeb9f\n"


PROGRAM = r"""
#include "vmlinux.h"
#define SEC(name) __attribute__((section(name), used))
static long (*bpf_trace_printk)(const char *fmt, __u32 fmt_size, ...) = (void *)6;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *src) = (void *)113;

struct netif_receive_skb_args { __u64 common; struct sk_buff *skbaddr; };

SEC("tracepoint/net/netif_receive_skb")
int show(struct netif_receive_skb_args *ctx)
{
	struct sk_buff *skb = ctx->skbaddr;
	struct net_device *dev;
	unsigned int len;
	__u16 proto;
	char name[16];
	char fmt[] = "dev %s len %u proto %x\n";

	bpf_probe_read_kernel(&dev, sizeof(dev), &skb->dev);
	bpf_probe_read_kernel(&len, sizeof(len), &skb->len);
	bpf_probe_read_kernel(&proto, sizeof(proto), &skb->protocol);
	bpf_probe_read_kernel(name, sizeof(name), dev->name);
	bpf_trace_printk(fmt, sizeof(fmt), name, len, proto);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
"""


def test_program_built_against_the_real_vmlinux_h_reads_the_right_fields(real_btf, system,
                                                                          tmp_path):
    clang = need_tool("clang", "clang")
    (tmp_path / "vmlinux.h").write_text(dump_c(real_btf))
    (tmp_path / "show.c").write_text(PROGRAM)
    subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-c", str(tmp_path / "show.c"), "-o",
                    str(tmp_path / "show.o")], check=True, capture_output=True, cwd=tmp_path)
    tree = system.tree
    cat_into(tree, NETIF + "/filter", (tmp_path / "show.o").read_bytes())
    tree.echo(NETIF + "/enable", "1")
    assert system.control(["send", "eth5", "--len", "100"])[0] == 0
    printed = [re.sub(r".*bpf_trace_printk: ", "", ln) for ln in tree.read_text("/trace").splitlines()
               if "bpf_trace_printk" in ln]
    assert printed == ["dev eth5 len 100 proto 8"]          # htons(ETH_P_IP) read in host order


def test_model_btf_sk_buff_context_is_the_kernels(real_btf):
    """struct __sk_buff (uapi, what socket filters read) in the model BTF has 6.18's layout."""
    from tracesim.kernel_model.model_btf import model_btf
    ours, theirs = model_btf(), real_btf
    want: dict[str, tuple[int, int, int]] = {}
    got: dict[str, tuple[int, int, int]] = {}
    gen_layouts._leaves(theirs, theirs.find(B.STRUCT, "__sk_buff"), 0, want)
    gen_layouts._leaves(ours, ours.find(B.STRUCT, "__sk_buff"), 0, got)
    assert got == want
    assert ours.size_of(ours.find(B.STRUCT, "__sk_buff")) == 192
