"""Instruction selection: the three-address IR becomes the machine's two-address form.

``d = a op b`` turns into ``d = a; d op= b`` (the move disappears when the register allocator
gives ``d`` and ``a`` the same register), immediates that an instruction cannot encode go into a
register first, a fetching atomic reads and writes the same register, and memory offsets are kept
within the 16-bit field.
"""
from __future__ import annotations

from tracesim.filters.bpf.compiler.ir import COMMUTATIVE, Function, Imm, Op
from tracesim.filters.bpf.compiler.opt import fits_imm


def select(fn: Function) -> None:
    for b in fn.blocks:
        out: list[Op] = []
        for op in b.ops:
            out.extend(lower_op(fn, op))
        b.ops = out


def lower_op(fn: Function, op: Op) -> list[Op]:
    k = op.kind
    pre: list[Op] = []
    if k == "alu" and op.alu == "mod":
        # a % b as a - a / b * b, as clang 14 emits it: LLVM 14's tools cannot decode BPF_MOD.
        # (Same result for b == 0: the quotient is 0 and the dividend stays.)
        t = fn.new_vreg()
        seq = [Op("alu", dst=t, a=op.a, b=op.b, alu="div", w32=op.w32),
               Op("alu", dst=t, a=t, b=op.b, alu="mul", w32=op.w32),
               Op("alu", dst=op.dst, a=op.a, b=t, alu="sub", w32=op.w32)]
        return [x for s in seq for x in lower_op(fn, s)]
    if k in ("alu", "br") and isinstance(op.b, Imm) and not fits_imm(op.b.value, op.w32):
        t = fn.new_vreg()
        pre.append(Op("mov", dst=t, a=op.b))
        op.b = t
    if k == "alu":
        d, a, b = op.dst, op.a, op.b
        if a == d:
            return pre + [op]
        if b == d and op.alu in COMMUTATIVE:
            op.a, op.b = d, a
            return pre + [op]
        if b == d:                                  # d = a - d: compute in a fresh register
            t = fn.new_vreg()
            return pre + [Op("mov", dst=t, a=a),
                          Op("alu", dst=t, a=t, b=b, alu=op.alu, w32=op.w32),
                          Op("mov", dst=d, a=t)]
        # A plain 64-bit copy: a 32-bit operation that follows clears the upper half itself.
        op.a = d
        return pre + [Op("mov", dst=d, a=a, w32=isinstance(a, Imm) and op.w32), op]
    if k in ("neg", "end"):
        d, a = op.dst, op.a
        op.a = d
        if a == d:
            return [op]
        return [Op("mov", dst=d, a=a), op]
    if k == "br":
        if isinstance(op.a, Imm):
            t = fn.new_vreg()
            pre.append(Op("mov", dst=t, a=op.a, w32=op.w32))
            op.a = t
        return pre + [op]
    if k in ("ld", "st", "atomic"):
        if isinstance(op.b, Imm):
            t = fn.new_vreg()
            pre.append(Op("mov", dst=t, a=op.b))
            op.b = t
        if not -32768 <= op.off <= 32767:
            t = fn.new_vreg()
            pre += [Op("mov", dst=t, a=op.a), Op("alu", dst=t, a=t, b=Imm(op.off), alu="add")]
            op.a, op.off = t, 0
        if k == "atomic" and op.dst is not None and op.alu != "cmpxchg":
            # The fetched value lands in the source register.
            t, d, src = fn.new_vreg(), op.dst, op.b
            op.b, op.dst = t, t
            return pre + [Op("mov", dst=t, a=src), op, Op("mov", dst=d, a=t)]
        return pre + [op]
    return pre + [op]
