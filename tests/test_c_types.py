"""The C type model: SysV x86-64 layout of structs, unions, bitfields, arrays, enums."""
from __future__ import annotations

import subprocess

from tracesim.kernel_model.c_types import Array, Int, Pointer, TypeEnv, kernel_types, parse_c, preprocess

from tests.conftest import need_tool

SOURCE = """
typedef unsigned int u32;
enum color { RED, GREEN = 5, BLUE };
struct bits { unsigned char a:3, b:6; unsigned int c:30; unsigned short d:4; long e; };
struct zero { int x:3; int :0; char y; };
union u { char c[3]; u32 v; struct { short lo, hi; }; };
struct outer { char tag; union u u; struct bits b[2]; enum color col; int arr[BLUE]; char tail; };
struct flex { int n; char data[]; };
"""
STRUCTS = ["bits", "zero", "outer", "flex"]
MEMBERS = {"bits": ["e"], "zero": ["y"], "outer": ["u", "b", "col", "arr", "tail"],
           "flex": ["data"]}


def env_of(src: str) -> TypeEnv:
    env = TypeEnv()
    env.add(parse_c(preprocess(src)))
    return env


def test_enum_and_array_bounds():
    env = env_of(SOURCE)
    assert env.enum_consts == {"RED": 0, "GREEN": 5, "BLUE": 6}
    arr = env.struct("outer").field("arr").type
    assert isinstance(arr, Array) and arr.count == 6


def test_bitfield_positions():
    bits = env_of(SOURCE).struct("bits")
    a, b, c, d = (bits.field(n) for n in "abcd")
    assert (a.offset, a.bit_offset, a.bit_size) == (0, 0, 3)
    assert (b.offset, b.bit_offset) == (1, 0)          # 3+6 > 8: next byte unit
    assert (c.offset, c.bit_offset) == (4, 0)          # 14+30 bits cross the int unit: next one
    assert (d.offset, d.bit_offset) == (8, 0)


def test_anonymous_members_are_reachable():
    u = env_of(SOURCE).union("u")
    assert u.field("hi").offset == 2 and u.size == 4


def test_kernel_pointer_and_sizes():
    env = kernel_types()
    assert env.struct("pt_regs").size == 168
    assert env.struct("pt_regs").field("di").offset == 112
    dev = env.struct("sk_buff").field("dev")
    assert dev.offset == 16 and isinstance(dev.type, Pointer)
    assert env.parse_type("u64") == Int("unsigned long long", 8, False)


def test_layout_agrees_with_gcc(tmp_path):
    need_tool("gcc", "gcc")
    checks = [f'printf("%zu\\n", sizeof(struct {s}));' for s in STRUCTS]
    checks += [f'printf("%zu\\n", offsetof(struct {s}, {m}));' for s in STRUCTS for m in MEMBERS[s]]
    (tmp_path / "t.c").write_text("#include <stddef.h>\n#include <stdio.h>\n" + SOURCE +
                                  "int main(void){" + "".join(checks) + "return 0;}\n")
    subprocess.run(["gcc", "-o", str(tmp_path / "t"), str(tmp_path / "t.c")], check=True)
    got = [int(x) for x in subprocess.run([str(tmp_path / "t")], capture_output=True,
                                          text=True, check=True).stdout.split()]
    env = env_of(SOURCE)
    ours = [env.struct(s).size for s in STRUCTS]
    ours += [env.struct(s).field(m).offset for s in STRUCTS for m in MEMBERS[s]]
    assert ours == got
