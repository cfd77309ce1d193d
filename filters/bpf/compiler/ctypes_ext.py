"""C type rules the compiler needs on top of ``tracesim.kernel_model.c_types``: promotions, the usual
arithmetic conversions, and how a value of each type sits in a 64-bit register."""
from __future__ import annotations

from typing import TypeGuard

from tracesim.kernel_model.c_types import CType, Enum, Float, Int, Pointer, Void, strip

INT = Int("int", 4, True)
UINT = Int("unsigned int", 4, False)
LONG = Int("long", 8, True)
ULONG = Int("unsigned long", 8, False)
CHAR = Int("char", 1, True)
UCHAR = Int("unsigned char", 1, False)
BOOL = Int("_Bool", 1, False)
U64 = Int("unsigned long long", 8, False)
VOIDP = Pointer(Void())


def is_int(t: CType) -> bool:
    return isinstance(t, (Int, Enum))


def is_ptr(t: CType) -> TypeGuard[Pointer]:
    return isinstance(t, Pointer)


def is_scalar(t: CType) -> bool:
    return isinstance(t, (Int, Enum, Pointer))


def is_float(t: CType) -> TypeGuard[Float]:
    return isinstance(t, Float)


def is_void(t: CType) -> bool:
    return isinstance(t, Void)


def is_signed(t: CType) -> bool:
    t = strip(t)
    return isinstance(t, Int) and t.signed


def promote(t: CType) -> CType:
    """Integer promotion: anything narrower than int computes as int."""
    t = strip(t)
    if isinstance(t, Int) and t.size < 4:
        return INT
    return t


def common_type(a: CType, b: CType) -> CType:
    """The usual arithmetic conversions for two integer types."""
    a, b = promote(a), promote(b)
    if a == b:
        return a
    assert isinstance(a, Int) and isinstance(b, Int)
    if a.signed == b.signed:
        return a if a.size >= b.size else b
    u, s = (a, b) if not a.signed else (b, a)
    if u.size >= s.size:
        return u
    return s          # the signed type is wider and holds every value of the unsigned one


def wrap(value: int, t: CType) -> int:
    """``value`` converted to integer type ``t`` (C semantics: modulo 2**bits, then signed)."""
    t = strip(t)
    if isinstance(t, Pointer):
        t = U64
    if not isinstance(t, Int):
        return value
    if t.name == "_Bool":
        return int(value != 0)
    bits = 8 * t.size
    value &= (1 << bits) - 1
    if t.signed and value >> (bits - 1):
        value -= 1 << bits
    return value


def reg_value(value: int, t: CType) -> int:
    """The 64-bit register image of a C value of type ``t``: types up to 4 bytes live in the
    32-bit subregister (upper half zero, signed narrow types sign-extended to 32 bits)."""
    t = strip(t)
    size = 8 if isinstance(t, Pointer) else getattr(t, "size", 8)
    if size <= 4:
        return value & 0xFFFFFFFF
    return value & 0xFFFFFFFFFFFFFFFF


def is_w32(t: CType) -> bool:
    """Whether values of ``t`` live in the 32-bit subregister."""
    t = strip(t)
    return isinstance(t, Int) and t.size <= 4
