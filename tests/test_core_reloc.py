"""CO-RE relocations (``filters/bpf/core_reloc.py``) on clang-built objects, against the model's
BTF: a program whose local ``struct sk_buff___old`` puts ``len`` elsewhere is patched to the
model's offset, bitfields, field existence, enum values and type sizes get the target's values,
and an unresolvable field poisons its instruction as libbpf does."""
from __future__ import annotations

import errno
import io
import re
import subprocess

import pytest
from elftools.elf.elffile import ELFFile
from tracesim.filters.bpf.toolchain import btf as B
from tracesim.filters.bpf.toolchain import core_reloc as C
from tracesim.filters.bpf.toolchain.asm import assemble
from tracesim.filters.bpf.toolchain.btf_dump import dump_c
from tracesim.filters.bpf.verifier import verify
from tracesim.filters.bpf.vm.isa import decode
from tracesim.kernel_model.c_types import kernel_types
from tracesim.kernel_model.model_btf import model_btf

from tests.conftest import need_tool
from tests.tree_helpers import cat_into

SOURCE = r"""
#include "vmlinux.h"
#define SEC(name) __attribute__((section(name), used))
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *src) = (void *)113;

/* an older kernel's layout: len first, and a member the model's kernel does not have */
struct sk_buff___old {
	unsigned int len;
	unsigned int gone;
	struct net_device *dev;
} __attribute__((preserve_access_index));

enum which { NOT_THERE = 7 };

SEC("kprobe/__netif_receive_skb")
int probe(struct pt_regs *ctx)
{
	struct sk_buff___old *skb = (void *)ctx->di;
	unsigned int len = 0, gone = 0;
	long r = 0;

	bpf_probe_read_kernel(&len, sizeof(len), &skb->len);
	r += __builtin_preserve_field_info(skb->gone, 2);             /* FIELD_EXISTS */
	if (__builtin_preserve_field_info(skb->gone, 2))
		bpf_probe_read_kernel(&gone, sizeof(gone), &skb->gone);  /* poisoned, dead */
	r += __builtin_preserve_field_info(((struct sk_buff *)skb)->pkt_type, 0);   /* BYTE_OFFSET */
	r += __builtin_preserve_field_info(((struct sk_buff *)skb)->pkt_type, 4);   /* LSHIFT_U64 */
	r += __builtin_preserve_type_info(*(struct task_struct *)0, 1);          /* TYPE_SIZE */
	r += __builtin_preserve_type_info(*(enum which *)0, 0);                  /* TYPE_EXISTS */
	return len + gone + r;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    clang = need_tool("clang", "clang")
    tmp = tmp_path_factory.mktemp("core")
    (tmp / "vmlinux.h").write_text(dump_c(model_btf()))
    (tmp / "prog.c").write_text(SOURCE)
    subprocess.run([clang, "-g", "-O2", "-target", "bpf", "-c", "prog.c", "-o", "prog.o"],
                   cwd=tmp, check=True, capture_output=True)
    elf = ELFFile(io.BytesIO((tmp / "prog.o").read_bytes()))
    local = B.parse(elf.get_section_by_name(".BTF").data())
    ext = C.parse_btf_ext(elf.get_section_by_name(".BTF.ext").data(), local)
    insns = decode(elf.get_section_by_name("kprobe/__netif_receive_skb").data())
    return local, ext, insns


def relocated(built) -> C.Relocated:
    local, ext, insns = built
    return C.relocate(insns, ext.core_relos["kprobe/__netif_receive_skb"], local, model_btf(),
                      prog="probe", section="kprobe/__netif_receive_skb")


def test_btf_ext_has_func_line_and_core_records(built):
    local, ext, _ = built
    assert ext.func_info["kprobe/__netif_receive_skb"][0][0] == 0
    assert local.types[ext.func_info["kprobe/__netif_receive_skb"][0][1]].name == "probe"
    lines = ext.line_info["kprobe/__netif_receive_skb"]
    assert any("bpf_probe_read_kernel(&len" in text for _, _, text, _, _ in lines)
    kinds = {r.kind for r in ext.core_relos["kprobe/__netif_receive_skb"]}
    assert {C.FIELD_BYTE_OFFSET, C.FIELD_EXISTS, C.FIELD_LSHIFT_U64, C.TYPE_SIZE,
            C.TYPE_EXISTS} <= kinds


def test_flavored_struct_reads_the_models_offset(built):
    out = relocated(built)
    sk = kernel_types().struct("sk_buff")
    assert out.log[0] == "sec 'kprobe/__netif_receive_skb': found 8 CO-RE relocations"
    assert any(re.fullmatch(r"prog 'probe': relo #\d+: <byte_off> \[\d+\] struct sk_buff___old\.len "
                            r"\(0:0 @ offset 0\)", ln) for ln in out.log)
    assert any(re.fullmatch(r"prog 'probe': relo #\d+: matching candidate #0 <byte_off> \[\d+\] "
                            r"struct sk_buff\.len \(0:6 @ offset 112\)", ln) for ln in out.log)
    assert any(re.fullmatch(r"CO-RE relocating \[\d+\] struct sk_buff___old: found target "
                            r"candidate \[\d+\] struct sk_buff in \[vmlinux\]", ln) for ln in out.log)
    patched = [ln for ln in out.log if "patched insn" in ln]
    assert any(ln.endswith(f"(ALU/ALU64) imm 0 -> {sk.offsetof('len')}") for ln in patched), patched
    # the local offset of len (0) became 0x70 in an add to the skb pointer
    assert any(i.imm == 0x70 and i.opcode & 0x07 in (0x04, 0x07) for i in out.insns)


def test_missing_field_poisons_and_exists_is_zero(built):
    out = relocated(built)
    assert any("no matching targets found" in ln for ln in out.log)
    assert any("substituting insn #" in ln and "w/ invalid insn" in ln for ln in out.log)
    assert any(i.opcode == 0x85 and i.imm == C.POISON_IMM for i in out.insns)
    exists = [ln for ln in out.log if "<field_exists>" in ln and ".gone" in ln]
    assert exists


def test_bitfield_and_type_values(built):
    out = relocated(built)
    sk = kernel_types().struct("sk_buff")
    pkt = sk.field("pkt_type")
    text = "\n".join(out.log)
    assert f"(ALU/ALU64) imm {0} -> {pkt.offset}" in text or f"-> {pkt.offset}" in text
    lshift = 64 - (8 * pkt.offset + pkt.bit_offset + 3 - 8 * pkt.offset)
    assert f"-> {lshift}" in text
    assert f"-> {kernel_types().struct('task_struct').size}" in text     # TYPE_SIZE


def test_essential_names():
    assert C.essential_name("task_struct___v2") == "task_struct"
    assert C.essential_name("a___b___c") == "a___b"
    assert C.essential_name("x____y") == "x____y"
    assert C.essential_name("sk_buff") == "sk_buff"


def test_bad_access_strings(built):
    local, ext, insns = built
    relo = ext.core_relos["kprobe/__netif_receive_skb"][0]
    for access in ("", ":1", "0:99", "x"):
        with pytest.raises(C.CoreReloError) as info:
            C.relocate(insns, [C.CoreRelo(relo.insn_off, relo.type_id, access, relo.kind)],
                       local, model_btf())
        assert info.value.errno == errno.EINVAL


def test_malformed_btf_ext(built):
    local = built[0]
    with pytest.raises(C.CoreReloError, match="BTF.ext header not found"):
        C.parse_btf_ext(b"\x9f\xeb", local)
    with pytest.raises(C.CoreReloError, match="Invalid BTF.ext magic:1234"):
        C.parse_btf_ext(b"\x34\x12\x01\x00" + bytes(28), local)


ENUM_SOURCE = r"""
#include "vmlinux.h"
#define SEC(name) __attribute__((section(name), used))
enum color___mine { RED___mine = 1, GREEN___mine = 2, BLUE___mine = 3 };

SEC("kprobe/x")
int probe(struct pt_regs *ctx)
{
	long r = 0;

	r += __builtin_preserve_enum_value(*(enum color___mine *)GREEN___mine, 1);   /* VALUE */
	r += __builtin_preserve_enum_value(*(enum color___mine *)BLUE___mine, 0);    /* EXISTS */
	r += __builtin_preserve_type_info(*(struct list_head *)0, 0);               /* EXISTS */
	r += __builtin_preserve_type_info(*(struct sk_buff *)0, 0);                 /* EXISTS */
	return r;
}

char LICENSE[] SEC("license") = "GPL";
"""


def build(tmp, source: str, target: B.Btf) -> tuple[B.Btf, C.BtfExt, list]:
    clang = need_tool("clang", "clang")
    (tmp / "vmlinux.h").write_text(dump_c(target))
    (tmp / "p.c").write_text(source)
    subprocess.run([clang, "-g", "-O2", "-target", "bpf", "-c", "p.c", "-o", "p.o"], cwd=tmp,
                   check=True, capture_output=True)
    elf = ELFFile(io.BytesIO((tmp / "p.o").read_bytes()))
    local = B.parse(elf.get_section_by_name(".BTF").data())
    ext = C.parse_btf_ext(elf.get_section_by_name(".BTF.ext").data(), local)
    return local, ext, decode(elf.get_section_by_name("kprobe/x").data())


def tiny_target(text: str) -> B.Btf:
    from tracesim.kernel_model import c_types
    from tracesim.kernel_model.model_btf import build as build_btf
    env = c_types.TypeEnv()
    env.add(c_types.parse_c(c_types.preprocess(text)))
    return build_btf(env)


def test_enum_values_and_type_existence(tmp_path):
    """Against a target whose enum color has GREEN = 20 and no BLUE, and no sk_buff: the value
    is the target's, BLUE and sk_buff do not exist, list_head does."""
    target = tiny_target("enum color { RED = 1, GREEN = 20 };\n"
                         "struct list_head { struct list_head *next, *prev; };\n")
    local, ext, insns = build(tmp_path, ENUM_SOURCE, model_btf())
    out = C.relocate(insns, ext.core_relos["kprobe/x"], local, target, prog="probe")
    text = "\n".join(out.log)
    assert re.search(r"relo #0: <enumval_value> \[\d+\] enum color___mine::GREEN___mine = 2", text)
    assert re.search(r"relo #0: matching candidate #0 <enumval_value> \[\d+\] enum color::GREEN = 20",
                     text)
    assert re.search(r"relo #0: patched insn #\d+ \(\w+(/\w+)*\) imm(64)? 2 -> 20", text), text
    assert re.search(r"relo #1: patched insn #\d+ \(\w+(/\w+)*\) imm(64)? 1 -> 0", text), text
    assert re.search(r"relo #2: patched insn #\d+ \(\w+(/\w+)*\) imm(64)? 1 -> 1", text), text
    assert re.search(r"relo #3: patched insn #\d+ \(\w+(/\w+)*\) imm(64)? 1 -> 0", text), text


def test_a_reachable_poisoned_insn_fails_verification(built):
    """The poisoned call is what the kernel's verifier rejects when it is reachable."""
    out = relocated(built)
    at = next(i for i, x in enumerate(out.insns) if x.imm == C.POISON_IMM)
    res = verify(out.insns[at:at + 1] + assemble("r0 = 0\nexit\n"))
    assert not res.ok and res.error == f"invalid func unknown#{C.POISON_IMM}"


def test_garbage_btf_ext_never_raises_anything_else(built):
    import random
    local = built[0]
    rng = random.Random(15)
    header = bytes.fromhex("9feb0100") + (32).to_bytes(4, "little")
    for _ in range(2000):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 96)))
        data = header + body if rng.random() < 0.7 else body
        try:
            C.parse_btf_ext(data, local)
        except C.CoreReloError:
            pass


def test_type_matches_is_stricter_than_exists(tmp_path):
    """TYPE_MATCHES (clang 15's flag 2, built here from the EXISTS record): a list_head whose
    members differ exists but does not match."""
    local, ext, insns = build(tmp_path, ENUM_SOURCE, model_btf())
    exists = ext.core_relos["kprobe/x"][2]
    matches = C.CoreRelo(exists.insn_off, exists.type_id, exists.access, C.TYPE_MATCHES)
    same = tiny_target("struct list_head { struct list_head *next, *prev; };\n")
    other = tiny_target("struct list_head { struct list_head *next; long prev; };\n")
    value = [C.relocate(insns, [r], local, t).insns[exists.insn_off // 8].imm
             for t in (same, other) for r in (exists, matches)]
    assert value == [1, 1, 1, 0]


def test_btf_with_loops_is_an_error_not_a_hang():
    loop = B.Btf([B.BtfType(0), B.BtfType(B.ARRAY, array=(1, 0, 2)),
                  B.BtfType(B.TYPEDEF, "t", 3), B.BtfType(B.TYPEDEF, "u", 2)])
    with pytest.raises(B.BtfError, match="loop"):
        loop.size_of(1)
    with pytest.raises(B.BtfError, match="loop"):
        loop.size_of(2)


OLD_LAYOUT = r"""
#include "vmlinux.h"
#define SEC(name) __attribute__((section(name), used))
static long (*bpf_trace_printk)(const char *fmt, __u32 fmt_size, ...) = (void *)6;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *src) = (void *)113;

/* how a 3.13-era kernel laid these out: name first in net_device, dev and len early in sk_buff */
struct net_device___3_13 { char name[16]; } __attribute__((preserve_access_index));
struct sk_buff___3_13 {
	struct sk_buff___3_13 *next, *prev;
	void *tstamp;
	struct net_device___3_13 *dev;
	unsigned int len;
	__u16 protocol;
} __attribute__((preserve_access_index));

struct args { __u64 common; struct sk_buff___3_13 *skbaddr; };

SEC("tracepoint/net/netif_receive_skb")
int show(struct args *ctx)
{
	struct sk_buff___3_13 *skb = ctx->skbaddr;
	struct net_device___3_13 *dev = 0;
	unsigned int len = 0;
	__u16 proto = 0;
	char name[16] = {};
	char fmt[] = "dev '%s' len %u proto %x\n";

	bpf_probe_read_kernel(&dev, sizeof(dev), &skb->dev);
	bpf_probe_read_kernel(&len, sizeof(len), &skb->len);
	bpf_probe_read_kernel(&proto, sizeof(proto), &skb->protocol);
	bpf_probe_read_kernel(name, sizeof(name), dev->name);
	bpf_trace_printk(fmt, sizeof(fmt), name, len, proto);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
"""


def printed_by(system, obj: bytes) -> list[str]:
    tree = system.tree
    cat_into(tree, "/events/net/netif_receive_skb/filter", obj)
    tree.echo("/events/net/netif_receive_skb/enable", "1")
    tree.echo("/trace", "")
    assert system.control(["send", "eth5", "--len", "100"])[0] == 0
    return [re.sub(r".*bpf_trace_printk: ", "", ln) for ln in tree.read_text("/trace").splitlines()
            if "bpf_trace_printk" in ln]


def test_relocated_object_reads_the_models_fields_on_the_mount(tmp_path, system):
    """Built for another layout: unrelocated it reads the wrong bytes (the issue's empty device
    name); with the CO-RE relocations applied against the model BTF it reads the event's."""
    clang = need_tool("clang", "clang")
    (tmp_path / "vmlinux.h").write_text(dump_c(model_btf()))
    (tmp_path / "old.c").write_text(OLD_LAYOUT)
    subprocess.run([clang, "-g", "-O2", "-target", "bpf", "-c", "old.c", "-o", "old.o"],
                   cwd=tmp_path, check=True, capture_output=True)
    obj = (tmp_path / "old.o").read_bytes()
    # the same program without preserve_access_index: no CO-RE records, the old offsets stay
    (tmp_path / "plain.c").write_text(OLD_LAYOUT.replace(
        " __attribute__((preserve_access_index))", ""))
    subprocess.run([clang, "-g", "-O2", "-target", "bpf", "-c", "plain.c", "-o", "plain.o"],
                   cwd=tmp_path, check=True, capture_output=True)
    assert printed_by(system, (tmp_path / "plain.o").read_bytes()) != [
        "dev 'eth5' len 100 proto 8"]
    _, log = C.apply_to_elf(obj, model_btf())
    assert any(re.fullmatch(r"prog 'show': relo #\d+: patched insn #\d+ \(ALU/ALU64\) imm 0 -> 280",
                            ln) for ln in log), log           # dev->name: 0 -> 0x118
    # the loader applies the relocations itself: the object as clang wrote it reads the event's
    assert printed_by(system, obj) == ["dev 'eth5' len 100 proto 8"]
    # a .BTF.ext that does not parse is ignored with libbpf's warning, the object unchanged
    ext = ELFFile(io.BytesIO(obj)).get_section_by_name(".BTF.ext")
    broken = obj[:ext["sh_offset"]] + b"\0\0" + obj[ext["sh_offset"] + 2:]
    assert C.apply_to_elf(broken, model_btf()) == (
        broken, ["Error loading ELF section .BTF.ext: -22. Ignored and continue."])


def test_apply_to_elf_leaves_what_it_cannot_relocate_alone(built, tmp_path):
    assert C.apply_to_elf(b"not an elf", model_btf()) == (b"not an elf", [])
    clang = need_tool("clang", "clang")
    (tmp_path / "plain.c").write_text("int x __attribute__((section(\".data\")));\n")
    subprocess.run([clang, "-O2", "-target", "bpf", "-c", "plain.c", "-o", "plain.o"],
                   cwd=tmp_path, check=True, capture_output=True)
    plain = (tmp_path / "plain.o").read_bytes()
    assert C.apply_to_elf(plain, model_btf()) == (plain, [])
