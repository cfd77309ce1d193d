"""Programs compiled by tracesim cc and run on the VM (interpreter and JIT) give C's answers."""
from __future__ import annotations

import pytest
from tracesim.filters.bpf.compiler import compile_source
from tracesim.filters.bpf.runtime.maps import create_map
from tracesim.filters.bpf.runtime.program import load_program
from tracesim.filters.bpf.toolchain import elf
from tracesim.filters.bpf.vm.interp import Interpreter
from tracesim.filters.bpf.vm.jit import compile_program

PRELUDE = "#include <linux/types.h>\n#include <bpf/bpf_helpers.h>\n"

# (body of `long f(void *ctx, long a, long b)`, a, b, expected r0)
CASES = [
    ("return 40 + 2;", 0, 0, 42),
    ("return a + b;", 5, 7, 12),
    ("return a - b;", 5, 7, (5 - 7) & (2**64 - 1)),
    ("return a * b / 3;", 6, 7, 14),
    ("return a % b;", 17, 5, 2),
    ("int x = a; return x / -2;", 9, 0, (-4) & (2**64 - 1)),
    ("int x = a; return x % -4;", -9, 0, (-1) & (2**64 - 1)),
    ("unsigned int u = a; return u >> 1;", -2, 0, 0x7FFFFFFF),
    ("int i = a; return i >> 1;", -2, 0, (-1) & (2**64 - 1)),
    ("return (unsigned char)(a + 250);", 10, 0, 4),
    ("signed char c = a; return c;", 0xFF, 0, (-1) & (2**64 - 1)),
    ("short s = a; return s == -1;", 0xFFFF, 0, 1),
    ("unsigned long x = a; return x << 40 >> 40;", 0x123456789A, 0, 0x56789A),
    ("return ~a & 0xff;", 0x0F, 0, 0xF0),
    ("return -a;", 3, 0, (-3) & (2**64 - 1)),
    ("return !a + !b;", 0, 5, 1),
    ("return a < b ? a : b;", 3, 9, 3),
    ("return (int)a < (int)b;", -1, 1, 1),
    ("return (unsigned int)a < (unsigned int)b;", -1, 1, 0),
    ("return a && b || !a;", 1, 0, 0),
    ("long s = 0; for (int i = 0; i < a; i++) s += i; return s;", 10, 0, 45),
    ("long s = 0; int i = 0; while (i < 5) { i++; if (i == 2) continue; s += i; } return s;",
     0, 0, 13),
    ("long n = 0; do { n++; } while (n < a); return n;", 4, 0, 4),
    ("long s = 0; for (int i = 0; ; i++) { if (i > 3) break; s += 2; } return s;", 0, 0, 8),
    ("switch (a) { case 1: return 10; case 2: case 3: return 20; default: return 30; }",
     3, 0, 20),
    ("long r = 0; switch (a) { case 1: r += 1; case 2: r += 2; break; case 5: r = 50; } return r;",
     1, 0, 3),
    ("char buf[8] = \"hello\"; return buf[1] + buf[5];", 0, 0, ord("e")),
    ("__u32 arr[4] = {1, 2, 3, 4}; long s = 0; for (int i = 0; i < 4; i++) s += arr[i]; "
     "return s;", 0, 0, 10),
    ("__u32 arr[4] = {1, 2, 3, 4}; return arr[a & 3];", 2, 0, 3),
    ("struct { int x; long y; char z; } s = {.y = 5, .x = 2}; return s.x * s.y + s.z;",
     0, 0, 10),
    ("struct pt { int x, y; } p = {3, 4}, q; q = p; q.y += 10; return p.y * 100 + q.y;",
     0, 0, 414),
    ("long v = a; long *p = &v; *p += 5; return v;", 1, 0, 6),
    ("int arr[3] = {7, 8, 9}; int *p = arr; p++; return *p + p[1];", 0, 0, 17),
    ("int arr[3] = {7, 8, 9}; int *p = &arr[2], *q = arr; return p - q;", 0, 0, 2),
    ("__u64 x = 0x1122334455667788ULL; return x >> 32;", 0, 0, 0x11223344),
    ("return __builtin_bswap32(0x11223344);", 0, 0, 0x44332211),
    ("__u32 v = a; return __builtin_bswap16(v);", 0x1234, 0, 0x3412),
    ("char a1[4] = \"abc\", a2[4] = \"abd\"; return __builtin_memcmp(a1, a2, 3) < 0;", 0, 0, 1),
    ("char d[8]; __builtin_memset(d, 'x', 8); char s[8] = \"copy\"; __builtin_memcpy(d, s, 4); "
     "return d[3] * 256 + d[5];", 0, 0, ord("y") * 256 + ord("x")),
    ("__u64 c = 5; __sync_fetch_and_add(&c, 3); return c;", 0, 0, 8),
    ("__u64 c = 5; long old = __sync_fetch_and_add(&c, 3); return old * 10 + c;", 0, 0, 58),
    ("__u64 c = 5; __sync_fetch_and_or(&c, 2); return c;", 0, 0, 7),
    ("__u64 c = 5; long old = __sync_val_compare_and_swap(&c, 5, 9); return old * 10 + c;",
     0, 0, 59),
    ("struct { unsigned a:3, b:5; int c:4; } s = {}; s.a = 5; s.b = 17; s.c = -2; "
     "return s.a + s.b * 10 + (s.c == -2) * 1000;", 0, 0, 1175),
    ("long s = 0;\n#pragma unroll\nfor (int i = 0; i < 4; i++) s = s * 10 + i; return s;",
     0, 0, 123),
    ("enum e { A = 3, B }; return B * sizeof(long) + offsetof(struct pt_regs, di);",
     0, 0, 4 * 8 + 112),
    ("return twice(a) + sq(b);", 3, 4, 22),
    ("return sum3(a, b, 1);", 3, 4, 8),
    ("__u32 x = a; x = x * 0x10000001; return x;", 3, 0, 0x30000003),
    ("long x = a; x = (x + 1) * (x - 1) + (a << b); return x;", 5, 2, 24 + 20),
    ("int v = 0, w = 1, x2 = 2, y = 3, z = 4, u = 5, q = 6, r = 7, s = 8, t = 9, m = 10, n = 11;"
     "for (int i = 0; i < a; i++) { v += w; w += x2; x2 += y; y += z; z += u; u += q; q += r;"
     " r += s; s += t; t += m; m += n; n += 1; } return v + w + x2 + y + z + u + q + r + s + t + m"
     " + n + counter(1) + counter(2);", 3, 0, None),
]

HELPERS_C = """
static __always_inline long twice(long x) { return x * 2; }
static inline long sq(long x) { if (x < 0) return 0; return x * x; }
static __noinline long sum3(long a, long b, long c) { return a + b + c; }
static __noinline long counter(int k) { long s = 0; for (int i = 0; i <= k; i++) s += i; return s; }
"""


def python_many(a: int) -> int:
    v, w, x2, y, z, u, q, r, s, t, m, n = range(12)
    for _ in range(a):
        v += w; w += x2; x2 += y; y += z; z += u; u += q; q += r  # noqa: E702
        r += s; s += t; t += m; m += n; n += 1  # noqa: E702
    return v + w + x2 + y + z + u + q + r + s + t + m + n + 1 + 3


def build(body: str, opt: int = 2):
    src = PRELUDE + "#include <linux/ptrace.h>\n" + HELPERS_C + \
        f'SEC("x") long f(void *ctx, long a, long b) {{ {body} }}\n'
    obj = elf.load_object(compile_source(src, "case.c", opt_level=opt).elf)
    maps = [create_map(m.name, m.type, m.key_size, m.value_size, m.max_entries, m.flags,
                       initial=m.initial) for m in obj.maps]
    return load_program(obj.program("f").insns, maps=maps)


@pytest.mark.parametrize("opt", [2, 0])
@pytest.mark.parametrize("body,a,b,expected", CASES, ids=[c[0][:40] for c in CASES])
def test_compiled_program_result(body, a, b, expected, opt):
    prog = build(body, opt)
    if expected is None:
        expected = python_many(a)
    args = [a & (2**64 - 1), b & (2**64 - 1)]
    # The program's own parameters a and b arrive in r2 and r3 (r1 is the context).
    res = Interpreter(prog).run(b"\0" * 64, args=args)
    assert res.ok, res.error
    assert res.value == expected & (2**64 - 1)
    jitted = compile_program(prog)
    assert jitted.run(b"\0" * 64, args=args).value == res.value
