"""The example programs: built by `tracesim cc` (and by clang when present), accepted by the
verifier, disassembled by `tracesim objdump` exactly as llvm-objdump does."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tracesim.filters.bpf.runtime.maps import create_map
from tracesim.filters.bpf.toolchain import elf
from tracesim.filters.bpf.verifier import ContextSpec, verify
from tracesim.tools import cmd_objdump

from tests.conftest import ROOT, need_tool

EXAMPLES = ROOT / "tools" / "examples"
NAMES = ["filter_ex1", "filter_ex2", "eth5_filter", "kprobe_kfree_skb_len", "latency_map"]
INCLUDES = ["-I", str(ROOT / "kernel_model" / "include"), "-I", str(ROOT / "filters" / "bpf" /
                                                                     "include")]
TRACESIM = str(ROOT / ".venv" / "bin" / "tracesim")
# Records of the tracepoints the examples attach to (offsets from their format files).
TP_CONTEXT = {"netif_receive_skb": ContextSpec.tracepoint(
    [("skbaddr", 8, 8), ("len", 16, 4), ("name", 20, 4)], 24),
    "kfree_skb": ContextSpec.tracepoint(
    [("skbaddr", 8, 8), ("location", 16, 8), ("rx_sk", 24, 8), ("protocol", 32, 2),
     ("reason", 36, 4)], 40)}


def tracesim_cc(name: str, out: Path) -> Path:
    obj = out / f"{name}.o"
    subprocess.run([TRACESIM, "cc", str(EXAMPLES / f"{name}.c"), "-o", str(obj)], check=True)
    return obj


def clang_cc(name: str, out: Path) -> Path:
    need_tool("clang", "clang")
    obj = out / f"{name}.clang.o"
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", *INCLUDES, "-c",
                    str(EXAMPLES / f"{name}.c"), "-o", str(obj)], check=True)
    return obj


def verify_object(path: Path) -> None:
    obj = elf.load_object(path.read_bytes())
    assert obj.license == "GPL"
    maps = [create_map(m.name, m.type, m.key_size, m.value_size, m.max_entries, m.flags,
                       initial=m.initial) for m in obj.maps]
    assert obj.programs
    for p in obj.programs:
        if p.section.startswith("kprobe/"):
            res = verify(p.insns, "kprobe", maps=maps)
        else:
            res = verify(p.insns, "tracepoint", ctx=TP_CONTEXT[p.section.rsplit("/", 1)[1]],
                         maps=maps)
        assert res.ok, f"{path.name}:{p.name}: {res.error}\n{res.log}"


@pytest.mark.parametrize("name", NAMES)
def test_example_builds_and_verifies(name, tmp_path):
    verify_object(tracesim_cc(name, tmp_path))


@pytest.mark.parametrize("name", NAMES)
def test_example_builds_with_clang_and_our_loader_loads_it(name, tmp_path):
    ours = elf.load_object(tracesim_cc(name, tmp_path).read_bytes())
    theirs_path = clang_cc(name, tmp_path)
    verify_object(theirs_path)
    theirs = elf.load_object(theirs_path.read_bytes())
    assert [p.section for p in theirs.programs] == [p.section for p in ours.programs]
    assert [(m.name, m.type, m.key_size, m.value_size, m.max_entries) for m in theirs.maps
            if m.section == ".maps"] == \
        [(m.name, m.type, m.key_size, m.value_size, m.max_entries) for m in ours.maps
         if m.section == ".maps"]


@pytest.mark.parametrize("flags", [["-d"], ["-d", "-r"]])
@pytest.mark.parametrize("name", NAMES)
def test_objdump_matches_llvm_objdump(name, flags, tmp_path, capsys):
    llvm = need_tool("llvm-objdump", "llvm")
    for obj in (tracesim_cc(name, tmp_path), clang_cc(name, tmp_path)):
        want = subprocess.run([llvm, *flags, str(obj)], check=True, capture_output=True,
                              text=True).stdout
        capsys.readouterr()
        assert cmd_objdump.main([*flags, str(obj)]) == 0
        assert capsys.readouterr().out == want
