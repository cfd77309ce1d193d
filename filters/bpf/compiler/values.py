"""The values of the lowering: typed registers and lvalues, conversions, loads and stores.

``Val`` and ``LVal`` are what every expression lowers to; ``ValueLowering`` holds the methods of
the ``Lowerer`` that make, convert, load and store them, and the module functions fold constants
and scan a body for address-taken names (the builtins use them too).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from pycparser import c_ast
from tracesim.filters.bpf.compiler import ctypes_ext as T
from tracesim.filters.bpf.compiler.errors import error_at
from tracesim.filters.bpf.compiler.ir import FP, Imm, Op
from tracesim.filters.bpf.parts import Part
from tracesim.kernel_model.c_types import Array, CType, Func, Int, Member, Pointer, Struct, Void, strip

MAX_INLINE_DEPTH = 16

ALU_OF = {"+": "add", "-": "sub", "*": "mul", "/": "div", "%": "mod", "&": "and", "|": "or",
          "^": "xor", "<<": "lsh", ">>": "rsh"}

CMP_OF = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}


@dataclass
class Val:
    """An rvalue: a virtual register or an immediate, with its C type."""
    v: Any               # int (vreg) or Imm
    type: CType


@dataclass
class LVal:
    """An lvalue: a register variable (``reg``) or memory at ``base + off`` (``mem``)."""
    kind: str
    type: CType
    reg: int = 0
    base: int = 0
    off: int = 0
    bit_offset: int | None = None
    bit_size: int | None = None
    const: Imm | None = None       # an unrolled loop counter: read-only constant


@dataclass
class Loop:
    brk: int
    cont: int


@dataclass
class InlineFrame:
    name: str
    ret_block: int
    ret_reg: int | None
    ret_type: CType


@dataclass
class Scope:
    names: dict[str, LVal] = field(default_factory=dict)


class ValueLowering(Part):
    """The ``Lowerer``'s methods for values (mixed into ``lower.Lowerer``)."""

    def flag(self, test: Callable[[int, int], None]) -> int:
        """A register holding 1 where ``test(t, f)`` branches to ``t`` and 0 where to ``f``."""
        r = self.vreg()
        t, f, end = self.new_block(), self.new_block(), self.new_block()
        test(t, f)
        self.start(t)
        self.emit(Op("mov", dst=r, a=Imm(1), w32=True))
        self.jump(end)
        self.start(f)
        self.emit(Op("mov", dst=r, a=Imm(0), w32=True))
        self.jump(end)
        self.start(end)
        return r

    # ------------------------------------------------------------ values
    def materialize(self, v: Val) -> int:
        """A register holding ``v`` (constants are cached within the block)."""
        if isinstance(v.v, int):
            return v.v
        image = T.reg_value(v.v.value, v.type)
        key = (image,)
        if key in self.const_cache and self.cur is not None:
            return self.const_cache[key]
        r = self.vreg()
        self.emit(Op("mov", dst=r, a=Imm(image), w32=image <= 0xFFFFFFFF and T.is_w32(v.type)))
        self.const_cache[key] = r
        return r

    def const_int(self, e: c_ast.Node) -> int:
        v = self.rv(e)
        if not isinstance(v.v, Imm):
            raise error_at(e, "expression is not an integer constant expression")
        return v.v.value

    def need_arith(self, e, *vals: Val) -> None:
        for v in vals:
            if T.is_float(v.type):
                raise error_at(e, "floating point is not supported in BPF programs")
            if not T.is_int(v.type):
                raise error_at(e, "invalid operands to binary expression ('"
                                  + "' and '".join(str(x.type) for x in vals) + "')")

    def convert(self, v: Val, to: CType, e) -> Val:
        """``v`` converted to type ``to``, keeping the register invariant of ctypes_ext."""
        src = v.type
        if T.is_float(to) or T.is_float(src):
            raise error_at(e, "floating point is not supported in BPF programs")
        if isinstance(src, Array):
            src = Pointer(src.elem)
        if isinstance(to, Void):
            return Val(v.v, to)
        if not T.is_scalar(to) or not T.is_scalar(src):
            if isinstance(to, Struct) and src is to:
                return v
            raise error_at(e, f"cannot convert '{v.type}' to '{to}'")
        if isinstance(v.v, Imm):
            return Val(Imm(T.wrap(v.v.value, to)), to)
        if strip(to) == T.BOOL or getattr(strip(to), "name", "") == "_Bool":
            if strip(src) == strip(to):
                return Val(v.v, to)
            b = self.bool_of(v)
            return Val(b, to)
        ssize = 8 if T.is_ptr(src) else strip(src).size
        tsize = 8 if T.is_ptr(to) else strip(to).size
        r = v.v
        if tsize == 8 and ssize <= 4:
            if T.is_signed(src):
                r = self.alu("lsh", r, Imm(32), False)
                r = self.alu("arsh", r, Imm(32), False)
            return Val(r, to)
        if tsize <= 4:
            if ssize == 8:
                t = self.vreg()
                self.emit(Op("mov", dst=t, a=r, w32=True))
                r = t
            if tsize < 4 and (tsize < ssize or T.is_signed(to) != T.is_signed(src)):
                r = self.narrow(r, cast(Int, strip(to)))
            return Val(r, to)
        return Val(r, to)

    def narrow(self, r: int, t: Int) -> int:
        """Normalise a 32-bit value to char/short ``t``."""
        bits = 8 * t.size
        if t.signed:
            r = self.alu("lsh", r, Imm(32 - bits), True)
            return self.alu("arsh", r, Imm(32 - bits), True)
        return self.alu("and", r, Imm((1 << bits) - 1), True)

    def bool_of(self, v: Val) -> int:
        return self.flag(lambda t, f: self.branch("ne", v, Val(Imm(0), v.type), t, f))

    def alu(self, op: str, a, b, w32: bool) -> int:
        r = self.vreg()
        self.emit(Op("alu", dst=r, a=a, b=b, alu=op, w32=w32))
        return r

    # -- memory
    def load(self, lv: LVal, e) -> Val:
        t = lv.type
        if lv.kind == "reg":
            if lv.const is not None:
                return Val(lv.const, t)
            return Val(lv.reg, t)
        if isinstance(t, Array):                    # arrays decay to a pointer
            return self.address_of(lv, e, Pointer(t.elem))
        if isinstance(t, (Struct,)):
            return Val(lv, t)                        # aggregates travel as their lvalue
        if isinstance(t, Func):
            raise error_at(e, "function designators are not values here")
        if T.is_float(t):
            raise error_at(e, "floating point is not supported in BPF programs")
        size = 8 if T.is_ptr(t) else strip(t).size
        r = self.vreg()
        self.emit(Op("ld", dst=r, a=lv.base, off=lv.off, size=size, loc=getattr(e, "coord", None)))
        if lv.bit_size is not None:
            w32 = size <= 4
            shift_left = (32 if w32 else 64) - lv.bit_offset - lv.bit_size
            if shift_left:
                r = self.alu("lsh", r, Imm(shift_left), w32)
            r = self.alu("arsh" if T.is_signed(t) else "rsh", r,
                         Imm((32 if w32 else 64) - lv.bit_size), w32)
            return Val(r, t)
        st = strip(t)
        if isinstance(st, Int) and st.signed and st.size < 4:
            r = self.narrow(r, st)
        return Val(r, t)

    def store(self, lv: LVal, v: Val, e) -> None:
        t = lv.type
        if isinstance(t, Struct) or isinstance(t, Array):
            if not isinstance(v.v, LVal) or v.type is not t and v.type != t:
                raise error_at(e, f"assigning to '{t}' from incompatible type '{v.type}'")
            src = v.v
            self.copy_memory(lv.base, lv.off, src.base, src.off, t.size, e)
            return
        size = 8 if T.is_ptr(t) else strip(t).size
        if lv.bit_size is not None:
            self.store_bitfield(lv, v, size, e)
            return
        self.emit(Op("st", a=lv.base, off=lv.off, b=self.materialize(v), size=size,
                     loc=getattr(e, "coord", None)))

    def store_bitfield(self, lv: LVal, v: Val, size: int, e) -> None:
        w32 = size <= 4
        mask = ((1 << lv.bit_size) - 1) << lv.bit_offset
        full = (1 << (8 * size)) - 1
        old = self.vreg()
        self.emit(Op("ld", dst=old, a=lv.base, off=lv.off, size=size))
        old = self.alu("and", old, Imm(T.wrap(full & ~mask, T.INT if w32 else T.LONG)), w32) \
            if fits_s32(T.wrap(full & ~mask, T.INT if w32 else T.LONG)) or w32 else \
            self.alu("and", old, self.materialize(Val(Imm(full & ~mask), T.U64)), w32)
        if isinstance(v.v, Imm):
            new = Val(Imm((v.v.value << lv.bit_offset) & mask), T.U64 if not w32 else T.UINT)
            nv = self.alu("or", old, new.v, w32) if fits_s32(new.v.value) or w32 else \
                self.alu("or", old, self.materialize(new), w32)
        else:
            x = self.alu("and", v.v, Imm((1 << lv.bit_size) - 1) if lv.bit_size < 32 else
                         self.materialize(Val(Imm((1 << lv.bit_size) - 1), T.U64)), w32)
            if lv.bit_offset:
                x = self.alu("lsh", x, Imm(lv.bit_offset), w32)
            nv = self.alu("or", old, x, w32)
        self.emit(Op("st", a=lv.base, off=lv.off, b=nv, size=size))

    def assign(self, lv: LVal, v: Val, e) -> Val:
        if lv.const is not None:
            raise error_at(e, "cannot assign to the counter of an unrolled loop")
        if isinstance(lv.type, (Struct, Array)):
            self.store(lv, v, e)
            return v
        if isinstance(v.type, Struct):
            raise error_at(e, f"assigning to '{lv.type}' from incompatible type '{v.type}'")
        v = self.convert(v, lv.type, e)
        if lv.kind == "reg":
            self.emit(Op("mov", dst=lv.reg, a=v.v, w32=T.is_w32(lv.type)))
            return Val(lv.reg, lv.type)
        self.store(lv, v, e)
        return v

    def address_of(self, lv: LVal, e, as_type: CType | None = None) -> Val:
        if lv.kind != "mem":
            raise error_at(e, "cannot take the address of a value held in a register")
        if lv.bit_size is not None:
            raise error_at(e, "address of bit-field requested")
        t = as_type or Pointer(lv.type)
        if lv.off == 0:
            return Val(lv.base, t)
        if lv.base == FP:
            r = self.vreg()
            self.emit(Op("mov", dst=r, a=FP))
            return Val(self.alu("add", r, Imm(lv.off), False), t)
        return Val(self.alu("add", lv.base, Imm(lv.off), False), t)

    def copy_memory(self, dbase: int, doff: int, sbase: int, soff: int, n: int, e) -> None:
        pos = 0
        for size in (8, 4, 2, 1):
            while n - pos >= size and (doff + pos) % size == 0 and (soff + pos) % size == 0 \
                    or (size == 1 and pos < n):
                r = self.vreg()
                self.emit(Op("ld", dst=r, a=sbase, off=soff + pos, size=size))
                self.emit(Op("st", a=dbase, off=doff + pos, b=r, size=size))
                pos += size
                if pos >= n:
                    return

    def init_memory(self, base: int, off: int, t: CType, init: c_ast.Node) -> None:
        """Initialise an object in memory: explicit parts from ``init``, the rest zero."""
        parts: dict[int, tuple[int, Val]] = {}      # offset -> (size, value)
        self.collect_init(t, init, 0, parts)
        covered = bytearray(t.size)
        consts = bytearray(t.size)
        dynamic: list[tuple[int, int, Val]] = []
        for o, (size, v) in sorted(parts.items()):
            if isinstance(v.v, Imm):
                consts[o:o + size] = (T.wrap(v.v.value, T.U64) & ((1 << (8 * size)) - 1)) \
                    .to_bytes(size, "little")
            else:
                dynamic.append((o, size, v))
            covered[o:o + size] = b"\1" * size
        for o, size, _ in dynamic:
            covered[o:o + size] = b"\2" * size
        # Constant bytes (explicit or zero) as the widest aligned stores that avoid dynamic parts.
        pos = 0
        while pos < t.size:
            if covered[pos] == 2:
                pos += 1
                continue
            for size in (8, 4, 2, 1):
                if (off + pos) % size == 0 and pos + size <= t.size and \
                        2 not in covered[pos:pos + size]:
                    break
            value = int.from_bytes(consts[pos:pos + size], "little")
            ty = {8: T.U64, 4: T.UINT, 2: Int("unsigned short", 2, False), 1: T.UCHAR}[size]
            self.emit(Op("st", a=base, off=off + pos, b=self.materialize(Val(Imm(value), ty)),
                         size=size))
            pos += size
        for o, size, v in dynamic:
            self.emit(Op("st", a=base, off=off + o, b=self.materialize(v), size=size))

    def collect_init(self, t: CType, init: c_ast.Node, at: int,
                     parts: dict[int, tuple[int, Val]]) -> None:
        if isinstance(t, Array) and isinstance(init, c_ast.Constant) and init.type == "string":
            data = string_bytes(init.value)
            if t.count is not None and len(data) > t.count:
                raise error_at(init, "initializer-string for char array is too long")
            for i, byte in enumerate(data):
                parts[at + i] = (1, Val(Imm(byte), T.UCHAR))
            return
        if isinstance(t, (Array, Struct)):
            if not isinstance(init, c_ast.InitList):
                v = self.rv(init)
                if isinstance(v.v, LVal) and v.type == t:
                    raise error_at(init, "initialising an aggregate from another is not "
                                         "supported: assign it after the declaration")
                raise error_at(init, f"initializing '{t}' with an expression of incompatible "
                                     f"type '{v.type}'")
            idx = 0
            members = [m for m in t.members if m.name is not None or isinstance(m.type, Struct)] \
                if isinstance(t, Struct) else None
            for item in init.exprs:
                sub = item
                if isinstance(item, c_ast.NamedInitializer):
                    d = item.name[0]
                    sub = item.expr
                    if isinstance(d, c_ast.ID):
                        if not isinstance(t, Struct):
                            raise error_at(item, "field designator in an array initializer")
                        names = [m.name for m in members]
                        if d.name not in names:
                            m = t.find(d.name)
                            if m is None:
                                raise error_at(d, f"field designator '{d.name}' does not refer "
                                                  f"to any field in type '{t}'")
                            self.collect_member(m, sub, at, parts)
                            idx = len(members)
                            continue
                        idx = names.index(d.name)
                    else:
                        idx = self.const_int(d)
                if isinstance(t, Array):
                    if t.count is not None and idx >= t.count:
                        raise error_at(item, "excess elements in array initializer")
                    self.collect_init(t.elem, sub, at + idx * t.elem.size, parts)
                else:
                    if idx >= len(members):
                        raise error_at(item, "excess elements in struct initializer")
                    self.collect_member(members[idx], sub, at, parts)
                    if t.kind == "union":
                        idx = len(members)
                idx += 1
            return
        if isinstance(init, c_ast.InitList):
            if not init.exprs:
                return
            init = init.exprs[0]
        v = self.convert(self.rv(init), t, init)
        parts[at] = (8 if T.is_ptr(t) else strip(t).size, v)

    def collect_member(self, m: Member, init: c_ast.Node, at: int, parts: dict) -> None:
        if m.bit_size is not None:
            raise error_at(init, "initialising bit-fields is not supported: assign them")
        self.collect_init(m.type, init, at + m.offset, parts)


def fits_s32(v: int) -> bool:
    return -(1 << 31) <= v < (1 << 31)


def eval_cmp(op: str, a: int, b: int) -> bool:
    return {"eq": a == b, "ne": a != b, "gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b,
            "sgt": a > b, "sge": a >= b, "slt": a < b, "sle": a <= b, "set": bool(a & b)}[op]


def fold(op: str, a: int, b: int, t: CType, e) -> int:
    if op in ("/", "%"):
        if b == 0:
            raise error_at(e, "division by zero in a constant expression")
        q = abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1)
        return T.wrap(q if op == "/" else a - q * b, t)
    r = {"+": a + b, "-": a - b, "*": a * b, "&": a & b, "|": a | b, "^": a ^ b}.get(op)
    if r is None:
        raise error_at(e, f"binary operator '{op}' is not supported")
    return T.wrap(r, t)


def literal_type(text: str, value: int) -> CType:
    suffix = text.lower()
    unsigned = "u" in suffix.lstrip("0x").rstrip("0123456789abcdef") or suffix.endswith("u") \
        or "u" in suffix[-3:]
    longs = suffix[-3:].count("l")
    decimal = not text.lower().startswith("0")
    if longs == 0:
        if not unsigned and value < (1 << 31):
            return T.INT
        if (unsigned or not decimal) and value < (1 << 32):
            return T.UINT
    if unsigned or (value >= (1 << 63)):
        return T.ULONG
    return T.LONG


def string_bytes(literal: str) -> bytes:
    """The bytes of a C string literal (without the terminating NUL)."""
    body = literal[literal.index('"') + 1:-1]
    out = bytearray()
    i = 0
    esc = {"n": 10, "t": 9, "r": 13, "\\": 92, "'": 39, '"': 34, "a": 7, "b": 8, "f": 12,
           "v": 11, "?": 63, "e": 27}
    while i < len(body):
        c = body[i]
        if c == '"':                         # adjacent literals "a" "b" joined by pycparser
            j = body.index('"', i + 1)
            i = j + 1
            continue
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        n = body[i + 1]
        if n == "x":
            j = i + 2
            while j < len(body) and body[j] in "0123456789abcdefABCDEF":
                j += 1
            out.append(int(body[i + 2:j], 16) & 0xFF)
            i = j
        elif n in "01234567":
            j = i + 1
            while j < len(body) and j < i + 4 and body[j] in "01234567":
                j += 1
            out.append(int(body[i + 1:j], 8) & 0xFF)
            i = j
        else:
            out.append(esc.get(n, ord(n)))
            i += 2
    return bytes(out)


def walk(node: c_ast.Node):
    yield node
    for _, child in node.children():
        yield from walk(child)


def address_taken(body: c_ast.Node) -> set[str]:
    """Names whose address is taken (``&x``, or ``x`` as an array base is fine)."""
    out = set()
    for n in walk(body):
        if isinstance(n, c_ast.UnaryOp) and n.op == "&":
            inner = n.expr
            while isinstance(inner, (c_ast.StructRef, c_ast.ArrayRef)) and \
                    not (isinstance(inner, c_ast.StructRef) and inner.type == "->"):
                inner = inner.name
            if isinstance(inner, c_ast.ID):
                out.add(inner.name)
    return out
