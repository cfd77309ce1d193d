"""Struct layouts: what the model writes into memory sits at the headers' offsets, and gcc agrees."""
from __future__ import annotations

import subprocess

from tracesim.kernel_model.c_types import INCLUDE_DIR, kernel_types
from tracesim.kernel_model.kprobes import PT_REGS_OFFSETS, PT_REGS_SIZE
from tracesim.kernel_model.net.core import NAPI_MIRROR_FIELDS, NETDEV_MIRROR_FIELDS, SKB_MIRROR_FIELDS

from tests.conftest import need_tool

CHECKED = {
    "sk_buff": [f for f in SKB_MIRROR_FIELDS if f != "pkt_type"],
    "net_device": list(NETDEV_MIRROR_FIELDS),
    "napi_struct": list(NAPI_MIRROR_FIELDS),
    "task_struct": ["pid", "tgid", "comm", "thread_info.cpu", "flags"],
    "pt_regs": list(PT_REGS_OFFSETS),
    "kmem_cache": ["object_size", "size", "name"],
}


def test_pt_regs_table_matches_header():
    regs = kernel_types().struct("pt_regs")
    assert regs.size == PT_REGS_SIZE == 168
    assert {m: regs.field(m).offset for m in PT_REGS_OFFSETS} == PT_REGS_OFFSETS
    assert (PT_REGS_OFFSETS["di"], PT_REGS_OFFSETS["si"], PT_REGS_OFFSETS["ip"]) == (112, 104, 128)


def test_offsets_agree_with_gcc(tmp_path):
    need_tool("gcc", "gcc")
    env = kernel_types()
    lines, ours = [], []
    for tag, members in CHECKED.items():
        lines.append(f"sizeof(struct {tag})")
        ours.append(env.struct(tag).size)
        for m in members:
            lines.append(f"__builtin_offsetof(struct {tag}, {m})")
            ours.append(env.struct(tag).offsetof(m))
    src = ("#include <tracesim/kernel.h>\nint printf(const char *, ...);\nint main(void) {\n"
           + "".join(f'  printf("%lu\\n", (unsigned long)({e}));\n' for e in lines)
           + "  return 0;\n}\n")
    (tmp_path / "layout.c").write_text(src)
    exe = tmp_path / "layout"
    subprocess.run(["gcc", "-nostdinc", "-I", str(INCLUDE_DIR), "-o", str(exe),
                    str(tmp_path / "layout.c")], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    assert [int(x) for x in out] == ours, list(zip(lines, out, ours, strict=False))
