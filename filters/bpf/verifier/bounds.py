"""Scalar value tracking: a tnum plus signed/unsigned 64- and 32-bit ranges per register.

The arithmetic follows kernel/bpf/verifier.c (``scalar_min_max_*``, ``reg_bounds_sync``,
``is_branch_taken``, ``regs_refine_cond_op``): every operation keeps all five views sound, and
``sync`` lets each view tighten the others.  Functions here only touch the scalar fields of a
register object (``var``, ``smin``..``u32max``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from tracesim.filters.bpf.verifier import tnum
from tracesim.filters.bpf.vm import isa

U64 = tnum.U64
U32 = tnum.U32
S64_MIN, S64_MAX = -(1 << 63), (1 << 63) - 1
S32_MIN, S32_MAX = -(1 << 31), (1 << 31) - 1
_LIMITS = {64: (S64_MIN, S64_MAX, U64), 32: (S32_MIN, S32_MAX, U32)}


def s64(v: int) -> int:
    v &= U64
    return v - (1 << 64) if v >> 63 else v


def s32(v: int) -> int:
    v &= U32
    return v - (1 << 32) if v >> 31 else v


def mark_unknown(r) -> None:
    r.var = tnum.UNKNOWN
    r.smin, r.smax, r.umin, r.umax = S64_MIN, S64_MAX, 0, U64
    r.s32min, r.s32max, r.u32min, r.u32max = S32_MIN, S32_MAX, 0, U32


def mark_const(r, v: int) -> None:
    v &= U64
    r.var = (v, 0)
    r.smin = r.smax = s64(v)
    r.umin = r.umax = v
    r.s32min = r.s32max = s32(v)
    r.u32min = r.u32max = v & U32


def mark_unsigned_max(r, umax: int) -> None:
    """An unknown value in [0, umax] (e.g. a zero-extended load of a narrow field)."""
    mark_unknown(r)
    r.umax = umax
    sync(r)


def mark_signed_range(r, lo: int, hi: int) -> None:
    mark_unknown(r)
    r.smin, r.smax = lo, hi
    sync(r)


def is_const(r) -> bool:
    return r.var[1] == 0


def is_const32(r) -> bool:
    return not (r.var[1] & U32)


def valid(r) -> bool:
    """False when the ranges are empty: the path that produced them cannot happen."""
    return (r.smin <= r.smax and r.umin <= r.umax and r.s32min <= r.s32max and r.u32min <= r.u32max
            and (r.var[0] & r.var[1]) == 0)


def _tighten(v, m, smin, smax, umin, umax, s32min, s32max, u32min, u32max, passes=2):
    """update_reg_bounds + reg_deduce_bounds on plain ints (locals keep this hot path fast)."""
    # the tnum bounds every range
    t = v | (m & 0x8000000000000000)
    smin = max(smin, t - (1 << 64) if t >> 63 else t)
    t = v | (m & S64_MAX)
    smax = min(smax, t - (1 << 64) if t >> 63 else t)
    umin = max(umin, v)
    umax = min(umax, v | m)
    v32, m32 = v & U32, m & U32
    t = v32 | (m32 & 0x80000000)
    s32min = max(s32min, t - (1 << 32) if t >> 31 else t)
    t = v32 | (m32 & 0x7FFFFFFF)
    s32max = min(s32max, t - (1 << 32) if t >> 31 else t)
    u32min = max(u32min, v32)
    u32max = min(u32max, v32 | m32)
    for _ in range(passes):
        # 64-bit ranges whose upper halves agree bound the lower half
        if (umin >> 32) == (umax >> 32):
            lo, hi = umin & U32, umax & U32
            u32min, u32max = max(u32min, lo), min(u32max, hi)
            slo, shi = s32(lo), s32(hi)
            if slo <= shi:
                s32min, s32max = max(s32min, slo), min(s32max, shi)
        if (smin >> 32) == (smax >> 32):
            lo, hi = smin & U32, smax & U32
            if lo <= hi:
                u32min, u32max = max(u32min, lo), min(u32max, hi)
            slo, shi = s32(lo), s32(hi)
            if slo <= shi:
                s32min, s32max = max(s32min, slo), min(s32max, shi)
        # signed <-> unsigned when the range does not cross the sign boundary
        slo, shi = s32(u32min), s32(u32max)
        if slo <= shi:
            s32min, s32max = max(s32min, slo), min(s32max, shi)
        lo, hi = s32min & U32, s32max & U32
        if lo <= hi:
            u32min, u32max = max(u32min, lo), min(u32max, hi)
        slo, shi = s64(umin), s64(umax)
        if slo <= shi:
            smin, smax = max(smin, slo), min(smax, shi)
        lo, hi = smin & U64, smax & U64
        if lo <= hi:
            umin, umax = max(umin, lo), min(umax, hi)
        # the 32-bit ranges tighten the lower half of the 64-bit ones
        umin = max(umin, (umin & ~U32) | u32min)
        umax = min(umax, (umax & ~U32) | u32max)
        smin = max(smin, (smin & ~U32) | u32min)
        smax = min(smax, (smax & ~U32) | u32max)
        if S32_MIN <= smin and smax <= S32_MAX:
            smin, smax = max(smin, s32min), min(smax, s32max)
    return smin, smax, umin, umax, s32min, s32max, u32min, u32max


_FULL = (S64_MIN, S64_MAX, 0, U64, S32_MIN, S32_MAX, 0, U32)


_SYNCED: dict[tuple, tuple] = {}     # (var, ranges) -> what sync makes of them
_SYNCED_MAX = 1 << 16


def sync(r) -> None:
    v, m = r.var
    key = (v, m, r.smin, r.smax, r.umin, r.umax, r.s32min, r.s32max, r.u32min, r.u32max)
    if m == U64 and key[2:] == _FULL:
        return          # nothing known, nothing to deduce
    done = _SYNCED.get(key)
    if done is not None:
        (r.var, r.smin, r.smax, r.umin, r.umax, r.s32min, r.s32max, r.u32min,
         r.u32max) = done
        return
    _sync(r, v, m)
    if len(_SYNCED) >= _SYNCED_MAX:
        _SYNCED.clear()
    _SYNCED[key] = (r.var, r.smin, r.smax, r.umin, r.umax, r.s32min, r.s32max, r.u32min,
                    r.u32max)


def _sync(r, v: int, m: int) -> None:
    if m == 0:
        if r.umin <= v <= r.umax and r.smin <= s64(v) <= r.smax and r.u32min <= (v & U32) \
                <= r.u32max and r.s32min <= s32(v) <= r.s32max:
            mark_const(r, v)
            return
        r.umin, r.umax = max(r.umin, v), min(r.umax, v)   # contradiction: leave empty ranges
        return
    t = _tighten(v, m, r.smin, r.smax, r.umin, r.umax, r.s32min, r.s32max, r.u32min, r.u32max)
    smin, smax, umin, umax, s32min, s32max, u32min, u32max = t
    if umin <= umax and u32min <= u32max:
        # bound_offset: the ranges tighten the tnum
        var64 = tnum.intersect((v, m), tnum.trange(umin, umax))
        var32 = tnum.intersect((v & U32, m & U32), tnum.trange(u32min, u32max))
        v, m = tnum.or_(tnum.clear_subreg(var64), var32)
        t = _tighten(v, m, smin, smax, umin, umax, s32min, s32max, u32min, u32max, passes=0)
    r.var = (v, m)
    r.smin, r.smax, r.umin, r.umax, r.s32min, r.s32max, r.u32min, r.u32max = t


# --- ALU -------------------------------------------------------------------------------------

def _add(a, b, bits):
    smin_l, smax_l, umax_l = _LIMITS[bits]
    span = 1 << bits
    smin, smax = a[0] + b[0], a[1] + b[1]
    if smin < smin_l and smax < smin_l:
        smin, smax = smin + span, smax + span
    elif smin > smax_l and smax > smax_l:
        smin, smax = smin - span, smax - span
    elif smin < smin_l or smax > smax_l:
        smin, smax = smin_l, smax_l
    umin, umax = a[2] + b[2], a[3] + b[3]
    if umin > umax_l:
        umin, umax = umin - span, umax - span
    elif umax > umax_l:
        umin, umax = 0, umax_l
    return smin, smax, umin, umax


def _sub(a, b, bits):
    smin_l, smax_l, umax_l = _LIMITS[bits]
    span = 1 << bits
    smin, smax = a[0] - b[1], a[1] - b[0]
    if smin < smin_l and smax < smin_l:
        smin, smax = smin + span, smax + span
    elif smin > smax_l and smax > smax_l:
        smin, smax = smin - span, smax - span
    elif smin < smin_l or smax > smax_l:
        smin, smax = smin_l, smax_l
    umin, umax = a[2] - b[3], a[3] - b[2]
    if umax < 0:
        umin, umax = umin + span, umax + span
    elif umin < 0:
        umin, umax = 0, umax_l
    return smin, smax, umin, umax


def _mul(a, b, bits):
    smin_l, smax_l, umax_l = _LIMITS[bits]
    umin, umax = a[2] * b[2], a[3] * b[3]
    if umax > umax_l:
        umin, umax = 0, umax_l
    corners = (a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1])
    smin, smax = min(corners), max(corners)
    if smin < smin_l or smax > smax_l:
        smin, smax = smin_l, smax_l
    return smin, smax, umin, umax


def _bitwise(op, a, b, var, bits):
    smin_l, smax_l, umax_l = _LIMITS[bits]
    vmax = var[0] | var[1]
    if op == isa.AND:
        umin, umax = var[0], min(a[3], b[3], vmax)
    elif op == isa.OR:
        umin, umax = max(a[2], b[2], var[0]), vmax
    else:
        umin, umax = var[0], vmax
    if a[0] >= 0 and b[0] >= 0 and umax <= smax_l:
        return umin, umax, umin, umax
    return smin_l, smax_l, umin, umax


def _shift(op, a, k, bits):
    smin_l, smax_l, umax_l = _LIMITS[bits]
    if op == isa.LSH:
        if a[3] > (umax_l >> k):
            return smin_l, smax_l, 0, umax_l
        return smin_l, smax_l, a[2] << k, a[3] << k
    if op == isa.RSH:
        return smin_l, smax_l, a[2] >> k, a[3] >> k
    return a[0] >> k, a[1] >> k, 0, umax_l          # ARSH


def _bounds64(r):
    return (r.smin, r.smax, r.umin, r.umax)


def _bounds32(r):
    return (r.s32min, r.s32max, r.u32min, r.u32max)


def _set64(r, t) -> None:
    r.smin, r.smax, r.umin, r.umax = t


def _set32(r, t) -> None:
    r.s32min, r.s32max, r.u32min, r.u32max = t


def _tnum_op(op, a, b, k, bits):
    if op == isa.ADD:
        return tnum.add(a, b)
    if op == isa.SUB:
        return tnum.sub(a, b)
    if op == isa.MUL:
        return tnum.mul(a, b)
    if op == isa.AND:
        return tnum.and_(a, b)
    if op == isa.OR:
        return tnum.or_(a, b)
    if op == isa.XOR:
        return tnum.xor(a, b)
    if op == isa.LSH:
        return tnum.lshift(a, k)
    if op == isa.RSH:
        return tnum.rshift(a, k)
    return tnum.arshift(a, k, bits)


_ARITH = (isa.ADD, isa.SUB, isa.MUL)
_BITWISE = (isa.AND, isa.OR, isa.XOR)
_SHIFTS = (isa.LSH, isa.RSH, isa.ARSH)


def const_result(op: int, a: int, b: int, bits: int, signed: bool) -> int | None:
    """Exact result of ``a op b`` on constants for the ops tracked only when both are known."""
    mask = (1 << bits) - 1
    a &= mask
    b &= mask
    conv = s64 if bits == 64 else s32
    if op == isa.DIV:
        if b == 0:
            return 0
        if signed:
            x, y = conv(a), conv(b)
            q = abs(x) // abs(y)
            return (-q if (x < 0) != (y < 0) else q) & mask
        return a // b
    if op == isa.MOD:
        if b == 0:
            return a
        if signed:
            x, y = conv(a), conv(b)
            rem = abs(x) % abs(y)
            return (-rem if x < 0 else rem) & mask
        return a % b
    return None


_CONST_OPS = {isa.ADD: lambda a, b: a + b, isa.SUB: lambda a, b: a - b,
              isa.MUL: lambda a, b: a * b, isa.AND: lambda a, b: a & b,
              isa.OR: lambda a, b: a | b, isa.XOR: lambda a, b: a ^ b}


def shift_const(op: int, a: int, k: int, bits: int) -> int:
    """RFC 9669: the count is masked to the width; 32-bit results are zero-extended."""
    mask = (1 << bits) - 1
    k &= bits - 1
    a &= mask
    if op == isa.LSH:
        return (a << k) & mask
    if op == isa.RSH:
        return a >> k
    if a >> (bits - 1):
        a -= 1 << bits
    return (a >> k) & mask


def alu(dst, src, op: int, is64: bool, signed_divmod: bool = False) -> None:
    """``dst = dst op src`` on two scalars (src may be a constant register built from an imm)."""
    bits = 64 if is64 else 32
    if op in _SHIFTS:
        if is_const(dst) and is_const(src):
            mark_const(dst, shift_const(op, dst.var[0], src.var[0], bits))
            return
        if not is_const(src) or src.umin >= bits:
            # a shift by an unknown or too large amount: only the width survives.
            mark_unknown(dst)
            if not is64:
                zext(dst)
            return
        k = src.umin
    else:
        k = 0
    if op in (isa.DIV, isa.MOD):
        _divmod(dst, src, op, bits, signed_divmod)
        return
    if dst.var[1] == 0 and src.var[1] == 0:
        mark_const(dst, _CONST_OPS[op](dst.var[0], src.var[0]) & (U64 if is64 else U32))
        return
    if is64:
        var = _tnum_op(op, dst.var, src.var, k, 64)
        a64, b64 = _bounds64(dst), _bounds64(src)
        a32, b32 = _bounds32(dst), _bounds32(src)
        if op in _ARITH:
            n64 = (_add if op == isa.ADD else _sub if op == isa.SUB else _mul)(a64, b64, 64)
            n32 = (_add if op == isa.ADD else _sub if op == isa.SUB else _mul)(a32, b32, 32)
        elif op in _BITWISE:
            n64 = _bitwise(op, a64, b64, var, 64)
            n32 = _bitwise(op, a32, b32, tnum.subreg(var), 32)
        else:
            n64 = _shift(op, a64, k, 64)
            n32 = (S32_MIN, S32_MAX, 0, U32)
        dst.var = var
        _set64(dst, n64)
        _set32(dst, n32)
    else:
        var32 = tnum.subreg(_tnum_op(op, tnum.subreg(dst.var), tnum.subreg(src.var), k, 32))
        a32, b32 = _bounds32(dst), _bounds32(src)
        if op in _ARITH:
            n32 = (_add if op == isa.ADD else _sub if op == isa.SUB else _mul)(a32, b32, 32)
        elif op in _BITWISE:
            n32 = _bitwise(op, a32, b32, var32, 32)
        else:
            n32 = _shift(op, a32, k, 32)
        dst.var = var32
        _set32(dst, n32)
        dst.smin, dst.smax, dst.umin, dst.umax = 0, U32, 0, U32
    sync(dst)


def _divmod(dst, src, op, bits, signed) -> None:
    if is_const(dst) and is_const(src):
        mark_const(dst, const_result(op, dst.var[0], src.var[0], bits, signed))
        return
    d = _bounds64(dst) if bits == 64 else _bounds32(dst)
    s = _bounds64(src) if bits == 64 else _bounds32(src)
    mark_unknown(dst)
    if not signed and s[2] > 0:
        # unsigned division by a divisor known non-zero
        if op == isa.DIV:
            lo, hi = d[2] // s[3], d[3] // s[2]
        else:
            lo, hi = 0, min(d[3], s[3] - 1)
        if bits == 64:
            dst.umin, dst.umax = lo, hi
        else:
            dst.u32min, dst.u32max = lo, hi
    elif not signed and op == isa.DIV:
        hi = d[3]           # x / 0 == 0, x / y <= x
        if bits == 64:
            dst.umax = hi
        else:
            dst.u32max = hi
    elif not signed and op == isa.MOD:
        hi = d[3]           # x % 0 == x, x % y <= x
        if bits == 64:
            dst.umax = hi
        else:
            dst.u32max = hi
    if bits == 32:
        zext(dst)
    sync(dst)


def zext(r) -> None:
    """Zero-extend the 32-bit subregister into the whole register."""
    r.var = tnum.subreg(r.var)
    r.smin, r.smax, r.umin, r.umax = 0, U32, 0, U32
    if r.u32min <= r.u32max:
        r.smin, r.umin = r.u32min, r.u32min
        r.smax, r.umax = r.u32max, r.u32max
    sync(r)


def neg(r, is64: bool) -> None:
    if is_const(r):
        mark_const(r, (-r.var[0]) & (U64 if is64 else U32))
        return
    var = tnum.neg(r.var if is64 else tnum.subreg(r.var))
    mark_unknown(r)
    r.var = var if is64 else tnum.subreg(var)
    if not is64:
        zext(r)
    sync(r)


def byteswap(r, imm: int, to_be: bool, is64: bool) -> None:
    """END/BSWAP: to-LE on a little-endian machine truncates; a real swap keeps only the width."""
    mask = (1 << imm) - 1
    if is_const(r):
        v = r.var[0] & mask
        if to_be or is64:
            v = int.from_bytes(v.to_bytes(imm // 8, "little"), "big")
        mark_const(r, v)
        return
    if not to_be and not is64:
        r.var = tnum.cast(r.var, imm // 8)
        r.smin, r.smax, r.umin, r.umax = S64_MIN, S64_MAX, 0, U64
        r.s32min, r.s32max, r.u32min, r.u32max = S32_MIN, S32_MAX, 0, U32
        sync(r)
        return
    mark_unsigned_max(r, mask)


def movsx(dst, src, bits: int, is64: bool) -> None:
    """``dst = (s8/s16/s32) src`` sign-extended to 64 (or 32) bits."""
    half = 1 << (bits - 1)
    if is_const(src):
        v = src.var[0] & ((1 << bits) - 1)
        if v & half:
            v -= 1 << bits
        mark_const(dst, v & (U64 if is64 else U32))
        return
    if src.umax < half:
        copy_scalar(dst, src)
        if is64:
            return
        zext(dst)
        return
    mark_signed_range(dst, -half, half - 1)
    if not is64:
        lo32, hi32 = dst.s32min, dst.s32max
        mark_unknown(dst)
        dst.s32min, dst.s32max = lo32, hi32
        zext(dst)


def copy_scalar(dst, src) -> None:
    dst.var = src.var
    dst.smin, dst.smax, dst.umin, dst.umax = src.smin, src.smax, src.umin, src.umax
    dst.s32min, dst.s32max, dst.u32min, dst.u32max = src.s32min, src.s32max, src.u32min, src.u32max


# --- conditional jumps --------------------------------------------------------------------------

NEGATE = {isa.JEQ: isa.JNE, isa.JNE: isa.JEQ, isa.JGT: isa.JLE, isa.JLE: isa.JGT,
          isa.JGE: isa.JLT, isa.JLT: isa.JGE, isa.JSGT: isa.JSLE, isa.JSLE: isa.JSGT,
          isa.JSGE: isa.JSLT, isa.JSLT: isa.JSGE}
JSET_FALSE = 0x1000   # pseudo op: "(a & b) == 0", the fall-through of JSET
NEGATE[isa.JSET] = JSET_FALSE
NEGATE[JSET_FALSE] = isa.JSET
SWAP = {isa.JEQ: isa.JEQ, isa.JNE: isa.JNE, isa.JGT: isa.JLT, isa.JLT: isa.JGT, isa.JGE: isa.JLE,
        isa.JLE: isa.JGE, isa.JSGT: isa.JSLT, isa.JSLT: isa.JSGT, isa.JSGE: isa.JSLE,
        isa.JSLE: isa.JSGE, isa.JSET: isa.JSET, JSET_FALSE: JSET_FALSE}


def _view(r, is32: bool):
    if is32:
        return r.s32min, r.s32max, r.u32min, r.u32max, tnum.subreg(r.var)
    return r.smin, r.smax, r.umin, r.umax, r.var


def branch_taken(a, b, op: int, is32: bool) -> int:
    """1 when ``a op b`` always holds, 0 when it never does, -1 when both can happen."""
    smin1, smax1, umin1, umax1, t1 = _view(a, is32)
    smin2, smax2, umin2, umax2, t2 = _view(b, is32)
    if op == isa.JEQ or op == isa.JNE:
        if t1[1] == 0 and t2[1] == 0:
            res = int(t1[0] == t2[0])
        elif (umin1 > umax2 or umax1 < umin2 or smin1 > smax2 or smax1 < smin2
              or ((t1[0] ^ t2[0]) & ~(t1[1] | t2[1]))):
            res = 0
        else:
            return -1
        return res if op == isa.JEQ else 1 - res
    if op == isa.JSET or op == JSET_FALSE:
        if t1[0] & t2[0]:          # a bit known to be 1 on both sides
            res = 1
        elif not ((t1[0] | t1[1]) & (t2[0] | t2[1])):
            res = 0
        else:
            return -1
        return res if op == isa.JSET else 1 - res
    if op == isa.JGT:
        return 1 if umin1 > umax2 else 0 if umax1 <= umin2 else -1
    if op == isa.JGE:
        return 1 if umin1 >= umax2 else 0 if umax1 < umin2 else -1
    if op == isa.JLT:
        return 1 if umax1 < umin2 else 0 if umin1 >= umax2 else -1
    if op == isa.JLE:
        return 1 if umax1 <= umin2 else 0 if umin1 > umax2 else -1
    if op == isa.JSGT:
        return 1 if smin1 > smax2 else 0 if smax1 <= smin2 else -1
    if op == isa.JSGE:
        return 1 if smin1 >= smax2 else 0 if smax1 < smin2 else -1
    if op == isa.JSLT:
        return 1 if smax1 < smin2 else 0 if smin1 >= smax2 else -1
    if op == isa.JSLE:
        return 1 if smax1 <= smin2 else 0 if smin1 > smax2 else -1
    return -1


class _Width(NamedTuple):
    """One half of a scalar's bounds: the fields and views that ``_refine`` narrows."""
    umin: str
    umax: str
    smin: str
    smax: str
    mask: int
    is_const: Callable[[Any], bool]
    signed: Callable[[int], int]
    part: Callable[[tnum.Tnum], tnum.Tnum]               # the bits of ``var`` this width sees
    merge: Callable[[tnum.Tnum, tnum.Tnum], tnum.Tnum]   # put narrowed bits back into ``var``


_W64 = _Width("umin", "umax", "smin", "smax", U64, is_const, s64, lambda t: t, lambda _old, t: t)
_W32 = _Width("u32min", "u32max", "s32min", "s32max", U32, is_const32, s32, tnum.subreg, tnum.with_subreg)


def refine(a, b, op: int, is32: bool) -> bool:
    """Narrow ``a`` and ``b`` (scalars) assuming ``a op b`` holds.  False when impossible."""
    _refine(a, b, op, _W32 if is32 else _W64)
    for r in (a, b):
        if not valid(r):
            return False
        sync(r)
        if not valid(r):
            return False
    return True


def _refine(a, b, op: int, w: _Width) -> None:
    """One body for both widths, as the kernel's ``regs_refine_cond_op`` serves JMP and JMP32."""
    if op == isa.JEQ:
        for lo, hi in ((w.umin, w.umax), (w.smin, w.smax)):
            v = max(getattr(a, lo), getattr(b, lo))
            setattr(a, lo, v)
            setattr(b, lo, v)
            v = min(getattr(a, hi), getattr(b, hi))
            setattr(a, hi, v)
            setattr(b, hi, v)
        pa, pb = w.part(a.var), w.part(b.var)
        if (pa[0] ^ pb[0]) & ~(pa[1] | pb[1]) & w.mask:
            setattr(a, w.umin, 1)                # contradictory known bits
            setattr(a, w.umax, 0)
            return
        t = tnum.intersect(pa, pb)
        a.var = w.merge(a.var, t)
        b.var = w.merge(b.var, t)
    elif op == isa.JNE:
        for x, y in ((a, b), (b, a)):
            if w.is_const(y):
                c = y.var[0] & w.mask
                for name, bound, step in ((w.umin, c, 1), (w.umax, c, -1),
                                          (w.smin, w.signed(c), 1), (w.smax, w.signed(c), -1)):
                    if getattr(x, name) == bound:
                        setattr(x, name, bound + step)
    elif op == isa.JSET or op == JSET_FALSE:
        x, y = (a, b) if w.is_const(b) else (b, a)
        if not w.is_const(y):
            return
        val = y.var[0] & w.mask
        if op == JSET_FALSE:
            x.var = tnum.and_(x.var, (~val & U64, 0))
        elif val and not (val & (val - 1)):
            x.var = tnum.or_(x.var, (val, 0))
    else:
        unsigned = op in (isa.JLE, isa.JLT, isa.JGE, isa.JGT)
        if op in (isa.JGE, isa.JGT, isa.JSGE, isa.JSGT):
            a, b, op = b, a, SWAP[op]
        d = 1 if op in (isa.JLT, isa.JSLT) else 0
        lo, hi = (w.umin, w.umax) if unsigned else (w.smin, w.smax)
        setattr(a, hi, min(getattr(a, hi), getattr(b, hi) - d))
        setattr(b, lo, max(getattr(b, lo), getattr(a, lo) + d))
