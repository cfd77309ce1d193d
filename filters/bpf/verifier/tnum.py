"""Tristate numbers, as kernel/bpf/tnum.c: a 64-bit value whose bits are each 0, 1 or unknown.

A tnum is the pair ``(value, mask)``: bits set in ``mask`` are unknown, the others equal ``value``'s
(``value & mask == 0`` always).  Plain tuples keep them cheap to copy and compare.
"""
from __future__ import annotations

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1

Tnum = tuple  # (value, mask)

UNKNOWN: Tnum = (0, U64)


def const(v: int) -> Tnum:
    return (v & U64, 0)


def trange(lo: int, hi: int) -> Tnum:
    """The smallest tnum holding every value of the unsigned range [lo, hi]."""
    chi = lo ^ hi
    bits = chi.bit_length()
    if bits > 63:
        return UNKNOWN
    delta = (1 << bits) - 1
    return (lo & ~delta & U64, delta)


def is_const(a: Tnum) -> bool:
    return a[1] == 0


def is_unknown(a: Tnum) -> bool:
    return a[1] == U64


def lshift(a: Tnum, s: int) -> Tnum:
    return ((a[0] << s) & U64, (a[1] << s) & U64)


def rshift(a: Tnum, s: int) -> Tnum:
    return (a[0] >> s, a[1] >> s)


def arshift(a: Tnum, s: int, bits: int) -> Tnum:
    """Arithmetic shift right of the low ``bits`` (32 or 64) bits; the result is zero-extended."""
    full = (1 << bits) - 1
    sign = 1 << (bits - 1)

    def sar(x: int) -> int:
        x &= full
        if x & sign:
            x -= 1 << bits
        return (x >> s) & full
    return (sar(a[0]), sar(a[1]))


def add(a: Tnum, b: Tnum) -> Tnum:
    sm = a[1] + b[1]
    sv = a[0] + b[0]
    sigma = sm + sv
    chi = sigma ^ sv
    mu = (chi | a[1] | b[1]) & U64
    return (sv & ~mu & U64, mu)


def sub(a: Tnum, b: Tnum) -> Tnum:
    dv = a[0] - b[0]
    alpha = dv + a[1]
    beta = dv - b[1]
    chi = alpha ^ beta
    mu = (chi | a[1] | b[1]) & U64
    return (dv & ~mu & U64, mu)


def neg(a: Tnum) -> Tnum:
    return sub((0, 0), a)


def and_(a: Tnum, b: Tnum) -> Tnum:
    alpha = a[0] | a[1]
    beta = b[0] | b[1]
    v = a[0] & b[0]
    return (v, alpha & beta & ~v & U64)


def or_(a: Tnum, b: Tnum) -> Tnum:
    v = a[0] | b[0]
    mu = a[1] | b[1]
    return (v, mu & ~v & U64)


def xor(a: Tnum, b: Tnum) -> Tnum:
    v = a[0] ^ b[0]
    mu = a[1] | b[1]
    return (v & ~mu & U64, mu)


def mul(a: Tnum, b: Tnum) -> Tnum:
    acc_v = (a[0] * b[0]) & U64
    acc_m: Tnum = (0, 0)
    while a[0] or a[1]:
        if a[0] & 1:
            acc_m = add(acc_m, (0, b[1]))
        elif a[1] & 1:
            acc_m = add(acc_m, (0, (b[0] | b[1])))
        a = rshift(a, 1)
        b = lshift(b, 1)
    return add((acc_v, 0), acc_m)


def intersect(a: Tnum, b: Tnum) -> Tnum:
    v = a[0] | b[0]
    mu = a[1] & b[1]
    return (v & ~mu & U64, mu)


def cast(a: Tnum, size: int) -> Tnum:
    """Keep the low ``size`` bytes."""
    m = (1 << (size * 8)) - 1
    return (a[0] & m, a[1] & m)


def subreg(a: Tnum) -> Tnum:
    return (a[0] & U32, a[1] & U32)


def clear_subreg(a: Tnum) -> Tnum:
    return (a[0] & ~U32 & U64, a[1] & ~U32 & U64)


def with_subreg(a: Tnum, sub32: Tnum) -> Tnum:
    return or_(clear_subreg(a), subreg(sub32))


def contains(a: Tnum, b: Tnum) -> bool:
    """True when every value of ``b`` is a value of ``a`` (kernel tnum_in(a, b))."""
    if b[1] & ~a[1]:
        return False
    return a[0] == (b[0] & ~a[1])


def is_aligned(a: Tnum, size: int) -> bool:
    if not size:
        return True
    return not ((a[0] | a[1]) & (size - 1))


def tstr(a: Tnum) -> str:
    """The kernel's ``tnum_strn`` text: ``(0x0; 0xff)``."""
    return f"({_hex(a[0])}; {_hex(a[1])})"


def _hex(v: int) -> str:
    return "0x0" if v == 0 else f"{v:#x}"
