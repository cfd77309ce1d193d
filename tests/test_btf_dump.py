"""The model's BTF and ``tracesim btf dump``: bpftool's raw text, a ``vmlinux.h`` clang builds BPF
programs against with the model's exact layouts, the raw bytes, and the same BTF from a mount."""
from __future__ import annotations

import re
import subprocess

import pytest
from tracesim.filters.bpf.toolchain import btf as B
from tracesim.filters.bpf.toolchain.btf_dump import PAD_PREFIX, dump_raw, member_bits
from tracesim.kernel_model import c_types
from tracesim.kernel_model.c_types import kernel_types
from tracesim.kernel_model.model_btf import build, model_btf, model_btf_bytes, uapi_types
from tracesim.tools.cli import main as cli

from tests.conftest import need_tool
from tests.fuse_helpers import ROOT, TRACESIM, mounted, need_fuse, tracesim

RAW_LINE = re.compile(
    r"\[\d+\] (INT '[^']+' size=\d+ bits_offset=0 nr_bits=\d+ encoding=(\(none\)|SIGNED|CHAR|BOOL)"
    r"|(PTR|CONST|VOLATILE|RESTRICT|TYPEDEF|TYPE_TAG) '[^']+' type_id=\d+"
    r"|ARRAY '\(anon\)' type_id=\d+ index_type_id=\d+ nr_elems=\d+"
    r"|(STRUCT|UNION) '[^']+' size=\d+ vlen=\d+"
    r"|VAR '[^']+' type_id=\d+, linkage=(static|global)"
    r"|DATASEC '[^']+' size=\d+ vlen=\d+"
    r"|ENUM(64)? '[^']+' encoding=(UNSIGNED|SIGNED) size=\d+ vlen=\d+"
    r"|FWD '[^']+' fwd_kind=(struct|union)"
    r"|FUNC_PROTO '\(anon\)' ret_type_id=\d+ vlen=\d+)$")
MEMBER_LINE = re.compile(r"\t'[^']+' (type_id=\d+ bits_offset=\d+( bitfield_size=\d+)?|val=-?\d+"
                         r"|type_id=\d+)$"
                         r"|\ttype_id=\d+ offset=\d+ size=\d+ \(VAR '[^']+'\)$")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = cli(["btf", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def btf_id(btf: B.Btf, kind: int, name: str) -> int:
    found = btf.find(kind, name)
    assert found is not None, name
    return found


def test_raw_dump_is_bpftools_format(capsys):
    status, out, err = run(capsys, "dump")
    assert status == 0 and err == ""
    assert out == run(capsys, "dump", "--format", "raw")[1]
    for line in out.splitlines():
        assert RAW_LINE.match(line) or MEMBER_LINE.match(line), line
    btf = model_btf()
    sk = btf_id(btf, B.STRUCT, "sk_buff")
    block = out.split(f"[{sk}] STRUCT 'sk_buff' size=224 vlen=")[1].split("\n[")[0]
    assert re.search(r"\n\t'len' type_id=\d+ bits_offset=896\n", block)          # 0x70
    tail = re.search(r"\n\t'tail' type_id=(\d+) bits_offset=1472\n", block)        # 0xb8
    assert tail and f"[{tail[1]}] TYPEDEF 'sk_buff_data_t' type_id=" in out
    nd = btf_id(btf, B.STRUCT, "net_device")
    block = out.split(f"[{nd}] STRUCT 'net_device' size=2496 vlen=")[1].split("\n[")[0]
    assert re.search(r"\n\t'name' type_id=\d+ bits_offset=2240\n", block)         # 0x118
    assert "INT 'long unsigned int' size=8 bits_offset=0 nr_bits=64 encoding=(none)" in out
    assert "TYPEDEF '__be16' type_id=" in out and PAD_PREFIX not in out


def test_raw_dump_of_a_small_btf_is_exact():
    env = c_types.TypeEnv()
    env.add(c_types.parse_c(c_types.preprocess(
        "typedef unsigned short __u16; typedef __u16 __be16;\n"
        "struct hdr { __be16 proto; unsigned char a:3, b:5; char __pad_at_3[5]; long x; };\n"
        "enum e { NEG = -1, ONE = 1 };\n")))
    assert dump_raw(build(env)) == (
        "[1] TYPEDEF '__u16' type_id=2\n"
        "[2] INT 'short unsigned int' size=2 bits_offset=0 nr_bits=16 encoding=(none)\n"
        "[3] TYPEDEF '__be16' type_id=1\n"
        "[4] STRUCT 'hdr' size=16 vlen=4\n"
        "\t'proto' type_id=3 bits_offset=0\n"
        "\t'a' type_id=5 bits_offset=16 bitfield_size=3\n"
        "\t'b' type_id=5 bits_offset=19 bitfield_size=5\n"
        "\t'x' type_id=6 bits_offset=64\n"
        "[5] INT 'unsigned char' size=1 bits_offset=0 nr_bits=8 encoding=(none)\n"
        "[6] INT 'long int' size=8 bits_offset=0 nr_bits=64 encoding=SIGNED\n"
        "[7] ENUM 'e' encoding=SIGNED size=4 vlen=2\n"
        "\t'NEG' val=-1\n"
        "\t'ONE' val=1\n")


def test_model_btf_lays_out_as_the_model():
    """Every member of every struct in the BTF sits where c_types puts it; sizes are equal."""
    btf, env, uapi = model_btf(), kernel_types(), uapi_types()
    checked = 0
    for t in btf.types:
        if t.kind not in (B.STRUCT, B.UNION) or not t.name:
            continue
        ours = (env.structs if t.kind == B.STRUCT else env.unions).get(t.name) or uapi.struct(t.name)
        assert ours.size == t.ref, t.name
        for name, mtype, raw in t.members:
            if not name:
                continue
            off, bits = member_bits(t, raw)
            m = ours.field(name)
            assert (8 * m.offset + (m.bit_offset or 0), m.bit_size or 0) == (off, bits), name
            assert btf.size_of(mtype) == m.type.size, f"{t.name}.{name}"
            checked += 1
    assert checked > 200


def test_bin_is_the_raw_btf(tmp_path):
    done = tracesim_cli(tmp_path, "dump", "--format", "bin")
    assert done.stdout == model_btf_bytes()
    assert done.stdout[:4] == b"\x9f\xeb\x01\x00"          # BTF magic, version 1
    assert dump_raw(B.parse(done.stdout)) == dump_raw(model_btf())


def tracesim_cli(tmp_path, *argv: str) -> subprocess.CompletedProcess:
    out = tmp_path / "out.bin"
    with open(out, "wb") as f:
        done = subprocess.run([*TRACESIM, "btf", *argv], stdout=f, stderr=subprocess.PIPE,
                              cwd=ROOT, timeout=60)
    done.stdout = out.read_bytes()
    return done


def test_bad_arguments(capsys):
    with pytest.raises(SystemExit) as info:
        cli(["btf", "dump", "--format", "json"])
    assert info.value.code == 2
    assert "invalid choice: 'json'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["btf"])
    assert capsys.readouterr().err.startswith("usage: tracesim btf dump [--format raw|c|bin]")


def test_mount_that_does_not_answer(capsys, tmp_path):
    status, out, err = run(capsys, "dump", "--mount", str(tmp_path))
    assert status == 1 and out == ""
    assert err.startswith(f"tracesim btf: no tracesim mount answers for {tmp_path}")


PROGRAM = r"""
#include "vmlinux.h"
#define SEC(name) __attribute__((section(name), used))
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *src) = (void *)113;

SEC("kprobe/__netif_receive_skb")
int probe(struct pt_regs *ctx)
{
	struct sk_buff *skb = (struct sk_buff *)ctx->di;
	struct net_device *dev;
	char name[16];
	unsigned int len;

	bpf_probe_read_kernel(&dev, sizeof(dev), &skb->dev);
	bpf_probe_read_kernel(name, sizeof(name), dev->name);
	bpf_probe_read_kernel(&len, sizeof(len), &skb->len);
	return len + name[0];
}

char LICENSE[] SEC("license") = "GPL";
"""


def test_c_dump_compiles_with_clang_to_the_models_layout(capsys, tmp_path):
    clang = need_tool("clang", "clang")
    status, header, _ = run(capsys, "dump", "--format", "c")
    assert status == 0
    assert header.startswith("#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n\n"
                             "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute push "
                             "(__attribute__((preserve_access_index)), apply_to = record)\n#endif\n")
    assert "#ifndef __ksym\n#define __ksym __attribute__((section(\".ksyms\")))\n#endif\n" in header
    assert header.endswith("\n/* BPF kfuncs */\n#ifndef BPF_NO_KFUNC_PROTOTYPES\n#endif\n\n"
                           "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute pop\n"
                           "#endif\n\n#endif /* __VMLINUX_H__ */\n")
    # bpftool's order: enums, then ints and what names them, then structs and their typedefs
    decls = re.findall(r"^(typedef .*|struct \w+ \{|enum \w+ \{)", header, re.M)
    assert decls[0].startswith("enum ") and "typedef _Bool bool;" in decls
    int_typedefs = [i for i, d in enumerate(decls) if re.fullmatch(r"typedef (__)?[us]\d+ \w+;", d)]
    assert max(int_typedefs) < decls.index("struct callback_head {") < decls.index("struct sk_buff {")
    (tmp_path / "vmlinux.h").write_text(header)
    (tmp_path / "probe.c").write_text(PROGRAM)
    subprocess.run([clang, "-g", "-O2", "-target", "bpf", "-c", "probe.c", "-o", "probe.o"],
                   cwd=tmp_path, check=True, capture_output=True)
    # clang's layout of the header is the model's: sizeof and offsetof of every member
    btf, checks = model_btf(), []
    for t in btf.types:
        if t.kind in (B.STRUCT, B.UNION) and t.name:
            kw = "union" if t.kind == B.UNION else "struct"
            checks.append(f"_Static_assert(sizeof({kw} {t.name}) == {t.ref}, \"{t.name}\");")
            for name, _, raw in t.members:
                off, bits = member_bits(t, raw)
                if name and not bits:
                    checks.append(f"_Static_assert(__builtin_offsetof({kw} {t.name}, {name}) == "
                                  f"{off // 8}, \"{t.name}.{name}\");")
    (tmp_path / "layout.c").write_text('#include "vmlinux.h"\n' + "\n".join(checks) + "\n")
    done = subprocess.run([clang, "-O2", "-target", "bpf", "-c", "layout.c", "-o", "layout.o"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[:2000]
    assert len(checks) > 200


def test_mount_serves_the_same_btf(tmp_path):
    need_fuse(tmp_path)
    with mounted(tmp_path / "mnt") as mnt:
        done = tracesim("btf", "dump", "--mount", str(mnt))
        assert done.stdout == dump_raw(model_btf())
        assert "btf" not in {p.name for p in mnt.iterdir()}       # not a tracefs file


def test_dump_of_a_file(capsys, tmp_path):
    raw = tmp_path / "vmlinux"
    raw.write_bytes(model_btf_bytes())
    status, out, _ = run(capsys, "dump", "--file", str(raw))
    assert status == 0 and out == dump_raw(model_btf())
    clang = need_tool("clang", "clang")
    (tmp_path / "m.c").write_text("struct pair { int a; char b[3]; };\n"
                                  "struct pair p __attribute__((section(\".data\")));\n")
    subprocess.run([clang, "-g", "-O2", "-target", "bpf", "-c", "m.c", "-o", "m.o"],
                   cwd=tmp_path, check=True, capture_output=True)
    status, out, _ = run(capsys, "dump", "--file", str(tmp_path / "m.o"))
    assert status == 0 and re.search(r"STRUCT 'pair' size=8 vlen=2\n\t'a' type_id=\d+ "
                                     r"bits_offset=0\n\t'b' type_id=\d+ bits_offset=32\n", out)
    assert run(capsys, "dump", "--file", str(tmp_path / "nope"))[1:] == (
        "", f"tracesim btf: '{tmp_path / 'nope'}': No such file or directory\n")
    assert run(capsys, "dump", "--file", str(tmp_path / "m.c"))[2] == \
        f"tracesim btf: '{tmp_path / 'm.c'}' is neither raw BTF nor an ELF object\n"
