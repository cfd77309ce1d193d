"""ELF objects: our writer and loader, clang's objects, loader errors that name what is wrong."""
from __future__ import annotations

import subprocess

import pytest
from tracesim.filters.bpf.compiler import compile_source
from tracesim.filters.bpf.toolchain import btf, elf
from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.isa import Insn

from tests.conftest import ROOT, need_tool

INCLUDES = ["-I", str(ROOT / "kernel_model" / "include"), "-I", str(ROOT / "filters" / "bpf" /
                                                                     "include")]
SOURCE = r"""
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, u64);
	__type(value, u64);
	__uint(max_entries, 1024);
} counts SEC(".maps");

struct bpf_map_def SEC("maps") legacy = {
	.type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 8, .max_entries = 4,
};

const volatile int threshold = 5;
int hits;
int total = 3;

static __noinline int scale(int a, int b) { return a * b + threshold; }

SEC("kprobe/__netdev_alloc_skb")
int prog(struct pt_regs *ctx)
{
	u64 key = PT_REGS_PARM1(ctx);
	u64 *v = bpf_map_lookup_elem(&counts, &key);
	__u32 idx = 1;
	if (v)
		__sync_fetch_and_add(v, 1);
	bpf_map_lookup_elem(&legacy, &idx);
	hits++;
	return scale(hits, total);
}

char _license[] SEC("license") = "GPL";
"""


def check_object(obj: elf.BpfObject) -> None:
    assert obj.license == "GPL"
    by_name = {m.name: m for m in obj.maps}
    assert (by_name["counts"].type, by_name["counts"].key_size, by_name["counts"].value_size,
            by_name["counts"].max_entries) == (1, 8, 8, 1024)
    assert (by_name["legacy"].type, by_name["legacy"].key_size, by_name["legacy"].value_size,
            by_name["legacy"].max_entries) == (2, 4, 8, 4)
    assert by_name[".rodata"].initial[:4] == (5).to_bytes(4, "little")
    assert by_name[".rodata"].flags & elf.BPF_F_RDONLY_PROG
    assert by_name[".data"].initial[:4] == (3).to_bytes(4, "little")
    assert by_name[".bss"].value_size >= 4
    assert obj.btf is not None
    assert obj.btf.type_name(by_name["counts"].key_type) in ("u64", "unsigned long long")
    prog = obj.program("prog")
    assert prog.section == "kprobe/__netdev_alloc_skb"
    insns = prog.insns
    refs = [(i, ins) for i, ins in enumerate(insns) if ins.opcode == isa.LD_IMM64]
    fds = {ins.imm for _, ins in refs if ins.src == isa.PSEUDO_MAP_FD}
    assert fds == {obj.map_index("counts"), obj.map_index("legacy")}
    values = {ins.imm for _, ins in refs if ins.src == isa.PSEUDO_MAP_VALUE}
    assert {obj.map_index(".bss"), obj.map_index(".data"), obj.map_index(".rodata")} <= values
    # The bpf-to-bpf call lands on the appended subprogram, which ends in exit.
    calls = [i for i, ins in enumerate(insns) if ins.opcode == isa.OP_CALL and
             ins.src == isa.PSEUDO_CALL]
    assert calls
    target = calls[0] + insns[calls[0]].imm + 1
    assert 0 < target < len(insns) and insns[-1].opcode == isa.OP_EXIT
    assert any(ins.opcode == isa.OP_EXIT for ins in insns[:target])


def test_our_object_loads():
    check_object(elf.load_object(compile_source(SOURCE, "objects.c").elf))


def test_clang_object_loads(tmp_path):
    need_tool("clang", "clang")
    (tmp_path / "objects.c").write_text(SOURCE)
    out = tmp_path / "objects.o"
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", "-mcpu=v3", *INCLUDES, "-c",
                    str(tmp_path / "objects.c"), "-o", str(out)], check=True)
    check_object(elf.load_object(out.read_bytes()))


def test_btf_round_trip_of_clang_object(tmp_path):
    need_tool("clang", "clang")
    (tmp_path / "objects.c").write_text(SOURCE)
    out = tmp_path / "objects.o"
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", *INCLUDES, "-c",
                    str(tmp_path / "objects.c"), "-o", str(out)], check=True)
    from elftools.elf.elffile import ELFFile
    raw = ELFFile(open(out, "rb")).get_section_by_name(".BTF").data()
    assert btf.parse(raw).encode() == raw


def test_btf_maps_need_btf(tmp_path):
    need_tool("clang", "clang")
    (tmp_path / "objects.c").write_text(SOURCE)
    out = tmp_path / "objects.o"
    subprocess.run(["clang", "-O2", "-target", "bpf", *INCLUDES, "-c",
                    str(tmp_path / "objects.c"), "-o", str(out)], check=True)
    with pytest.raises(elf.ElfLoadError, match=r"section '\.maps': map 'counts'.*-g"):
        elf.load_object(out.read_bytes())


def test_writer_round_trip_and_relocation_errors():
    a, b = isa.ld_imm64(1, 0)
    spec = elf.ObjectSpec(
        source_name="x.c",
        code={"kprobe/x": [a, b, Insn(isa.OP_CALL, 0, isa.PSEUDO_CALL, 0, -1),
                           Insn(isa.OP_EXIT)],
              ".text": [Insn(0xB7, 0, 0, 0, 7), Insn(isa.OP_EXIT)]},
        relocs={"kprobe/x": [elf.Reloc(0, "m"), elf.Reloc(2, ".text", elf.R_BPF_64_32)]},
        functions=[elf.FuncSymbol("p", "kprobe/x", 0, 4), elf.FuncSymbol("sub", ".text", 0, 2,
                                                                          False)],
        data={"maps": bytes(20), "license": b"GPL\0", ".data": bytes(8)},
        objects=[elf.DataSymbol("m", "maps", 0, 20), elf.DataSymbol("g", ".data", 0, 8)])
    obj = elf.load_object(elf.write_object(spec))
    p = obj.program()
    assert p.insns[0].src == isa.PSEUDO_MAP_FD and p.insns[2].imm == 1
    assert p.insns[4:] == [Insn(0xB7, 0, 0, 0, 7), Insn(isa.OP_EXIT)]
    # The address of a function is a callback (libbpf's subprogram address relocation).
    spec.relocs["kprobe/x"][0] = elf.Reloc(0, "sub")
    p = elf.load_object(elf.write_object(spec)).program()
    assert p.insns[0].src == isa.PSEUDO_FUNC and p.insns[0].imm == 3      # sub, at insn 4
    # A map reference to something that holds no map names the section and symbol.
    spec.relocs["kprobe/x"][0] = elf.Reloc(0, "license")
    with pytest.raises(elf.ElfLoadError, match=r"section 'kprobe/x'.*'license'.*no map"):
        elf.load_object(elf.write_object(spec))


def test_not_an_object():
    with pytest.raises(elf.ElfLoadError, match="not a valid ELF object"):
        elf.load_object(b"\x7fELF" + b"\0" * 10)
    with pytest.raises(elf.ElfLoadError):
        elf.load_object(b"bpf\0" + b"\0" * 30)
