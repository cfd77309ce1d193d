"""Calls: BPF helpers (declared the libbpf way), bpf-to-bpf calls, inlined functions, and the
compiler builtins a BPF program uses (``__builtin_memcpy``/``memset``/``memcmp``, byte swaps,
``__sync_*`` atomics, ``offsetof``)."""
from __future__ import annotations

from pycparser import c_ast
from tracesim.filters.bpf.compiler import ctypes_ext as T
from tracesim.filters.bpf.compiler.errors import error_at
from tracesim.filters.bpf.compiler.ir import FP, Imm, Op
from tracesim.filters.bpf.compiler.values import (
    MAX_INLINE_DEPTH,
    InlineFrame,
    LVal,
    Scope,
    Val,
    address_taken,
)
from tracesim.kernel_model.c_types import Array, Func, Pointer, Struct, Void, strip

ATOMIC_OPS = {"add": "add", "or": "or", "and": "and", "xor": "xor", "sub": "add"}


def call(lw, e: c_ast.FuncCall):
    if not isinstance(e.name, c_ast.ID) or lw.lookup(e.name.name, e) is not None:
        raise error_at(e, "calls through function pointers are not supported in BPF programs")
    name = e.name.name
    args = list(e.args.exprs) if e.args else []
    if name == "offsetof":
        return offsetof(lw, e, args)
    if name in BUILTINS:
        return BUILTINS[name](lw, e, args)
    if name.startswith(("__sync_", "__atomic_")):
        return atomic(lw, e, name, args)
    u = lw.u
    if name in u.helpers:
        hid, ftype = u.helpers[name]
        vals = call_args(lw, e, name, ftype, args)
        return finish_call(lw, e, Op("call", imm=hid, nargs=len(vals), loc=e.coord), vals, ftype)
    if name not in u.functions:
        if name in u.prototypes:
            raise error_at(e, f"function '{name}' is declared but not defined: a BPF program can "
                              "only call helpers and functions defined in the same file")
        raise error_at(e, f"call to undeclared function '{name}'")
    info = u.functions[name]
    ftype = info.type
    if name == lw.fn.name or any(f.name == name for f in lw.inline_stack):
        raise error_at(e, f"recursive call to '{name}': recursion is not supported in BPF programs")
    vals = call_args(lw, e, name, ftype, args)
    if not info.inline:
        lw.calls.add(name)
        u.called.add(name)
        return finish_call(lw, e, Op("call", sym=name, nargs=len(vals), loc=e.coord), vals, ftype)
    if len(lw.inline_stack) >= MAX_INLINE_DEPTH:
        raise error_at(e, f"inlining '{name}' nests too deeply")
    end = lw.new_block()
    ret_reg = None if T.is_void(ftype.ret) else lw.vreg()
    saved = (lw.scopes, lw.loops, lw.labels, lw.addr_taken)
    lw.scopes, lw.loops, lw.labels = [Scope()], [], {}
    lw.addr_taken = address_taken(info.node.body)
    lw.inline_stack.append(InlineFrame(name, end, ret_reg, ftype.ret))
    for p, pt, v in zip(lw.param_decls(info.node.decl), ftype.params, vals, strict=False):
        lw.bind_local(p, pt, v)
    lw.stmt(info.node.body)
    if ret_reg is not None and lw.cur is not None:
        lw.emit(Op("mov", dst=ret_reg, a=Imm(0)))
    lw.jump(end)
    lw.inline_stack.pop()
    lw.scopes, lw.loops, lw.labels, lw.addr_taken = saved
    lw.start(end)
    return Val(ret_reg if ret_reg is not None else Imm(0), ftype.ret)


def call_args(lw, e, name: str, ftype: Func, args: list) -> list:
    nparams = len(ftype.params)
    if len(args) < nparams or (len(args) > nparams and not ftype.variadic):
        raise error_at(e, f"too {'few' if len(args) < nparams else 'many'} arguments to function "
                          f"call '{name}', expected {nparams}, have {len(args)}")
    if len(args) > 5:
        raise error_at(e, f"call to '{name}' passes {len(args)} arguments: BPF calls take at most 5")
    vals = []
    for i, a in enumerate(args):
        v = lw.rv(a)
        if isinstance(v.type, Struct):
            raise error_at(a, "passing a struct by value is not supported: pass a pointer")
        pt = ftype.params[i] if i < nparams else (
            T.promote(v.type) if T.is_int(v.type) else
            Pointer(v.type.elem) if isinstance(v.type, Array) else v.type)
        vals.append(lw.convert(v, pt, a))
    return [Val(lw.materialize(v) if not isinstance(v.v, Imm) else v.v, v.type) for v in vals]


def finish_call(lw, e, op: Op, vals: list, ftype: Func):
    for i, v in enumerate(vals):
        if isinstance(v.v, Imm):
            image = T.reg_value(v.v.value, v.type)
            lw.emit(Op("mov", dst=i + 1, a=Imm(image), w32=T.is_w32(v.type) and image < 1 << 32))
        else:
            lw.emit(Op("mov", dst=i + 1, a=v.v))
    lw.emit(op)
    lw.const_cache = {}
    if T.is_void(ftype.ret):
        return Val(Imm(0), ftype.ret)
    r = lw.vreg()
    lw.emit(Op("mov", dst=r, a=0))
    return Val(r, ftype.ret)


# ---------------------------------------------------------------- memory builtins

def const_arg(lw, a, what: str) -> int:
    v = lw.rv(a)
    if not isinstance(v.v, Imm):
        raise error_at(a, f"{what} must be a compile-time constant")
    return v.v.value


def pointer_arg(lw, a):
    """(base register, offset, alignment) of a pointer argument."""
    node = a
    while isinstance(node, c_ast.Cast):
        node = node.expr
    if isinstance(node, c_ast.UnaryOp) and node.op == "&" or isinstance(node, c_ast.ID):
        target = lw.e_any(node.expr if isinstance(node, c_ast.UnaryOp) else node)
        if isinstance(target, LVal) and target.kind == "mem" and (
                isinstance(node, c_ast.UnaryOp) or isinstance(target.type, Array)):
            return target.base, target.off, 8 if target.base == FP else max(target.type.align, 1)
    v = lw.rv(a)
    if not T.is_ptr(v.type) and not isinstance(v.type, Array):
        raise error_at(a, f"passing '{v.type}' where a pointer is expected")
    target = v.type.target if T.is_ptr(v.type) else v.type.elem
    align = 1 if isinstance(target, Void) else max(getattr(target, "align", 1), 1)
    return lw.materialize(v), 0, align


def chunks(n: int, off_a: int, off_b: int, align: int):
    """(position, size) pieces for copying n bytes: the widest aligned accesses."""
    pos = 0
    while pos < n:
        for size in (8, 4, 2, 1):
            if pos + size <= n and size <= align and (off_a + pos) % size == 0 and \
                    (off_b + pos) % size == 0:
                yield pos, size
                pos += size
                break


def b_memcpy(lw, e, args):
    if len(args) != 3:
        raise error_at(e, "__builtin_memcpy takes 3 arguments")
    n = const_arg(lw, args[2], "the size of __builtin_memcpy")
    db, doff, dal = pointer_arg(lw, args[0])
    sb, soff, sal = pointer_arg(lw, args[1])
    for pos, size in chunks(n, doff, soff, min(dal, sal)):
        r = lw.vreg()
        lw.emit(Op("ld", dst=r, a=sb, off=soff + pos, size=size))
        lw.emit(Op("st", a=db, off=doff + pos, b=r, size=size))
    return Val(db if doff == 0 else Imm(0), T.VOIDP)


def b_memset(lw, e, args):
    if len(args) != 3:
        raise error_at(e, "__builtin_memset takes 3 arguments")
    c = const_arg(lw, args[1], "the value of __builtin_memset") & 0xFF
    n = const_arg(lw, args[2], "the size of __builtin_memset")
    db, doff, dal = pointer_arg(lw, args[0])
    for pos, size in chunks(n, doff, doff, dal):
        value = int.from_bytes(bytes([c]) * size, "little")
        ty = T.U64 if size == 8 else T.UINT
        lw.emit(Op("st", a=db, off=doff + pos, b=lw.materialize(Val(Imm(value), ty)), size=size))
    return Val(db if doff == 0 else Imm(0), T.VOIDP)


def b_memcmp(lw, e, args):
    """Byte by byte: the result is the difference of the first differing bytes (its sign is
    what memcmp promises)."""
    if len(args) != 3:
        raise error_at(e, "__builtin_memcmp takes 3 arguments")
    n = const_arg(lw, args[2], "the size of __builtin_memcmp")
    ab, aoff, _ = pointer_arg(lw, args[0])
    bb, boff, _ = pointer_arg(lw, args[1])
    r = lw.vreg()
    end = lw.new_block()
    lw.emit(Op("mov", dst=r, a=Imm(0), w32=True))
    for i in range(n):
        x, y = lw.vreg(), lw.vreg()
        lw.emit(Op("ld", dst=x, a=ab, off=aoff + i, size=1))
        lw.emit(Op("ld", dst=y, a=bb, off=boff + i, size=1))
        lw.emit(Op("alu", dst=r, a=x, b=y, alu="sub", w32=True))
        nxt = lw.new_block()
        lw.emit(Op("br", a=r, b=Imm(0), alu="ne", w32=True, targets=(end, nxt)))
        lw.start(nxt)
    lw.jump(end)
    lw.start(end)
    return Val(r, T.INT)


def b_bswap(bits: int):
    def f(lw, e, args):
        t = {16: T.Int("unsigned short", 2, False), 32: T.UINT, 64: T.U64}[bits]
        v = lw.convert(lw.rv(args[0]), t, e)
        if isinstance(v.v, Imm):
            return Val(Imm(int.from_bytes(v.v.value.to_bytes(bits // 8, "little"), "big")), t)
        r = lw.vreg()
        lw.emit(Op("end", dst=r, a=v.v, alu=f"be{bits}"))
        return Val(r, t)
    return f


def b_expect(lw, e, args):
    return lw.rv(args[0])


def b_constant_p(lw, e, args):
    v = lw.rv(args[0])
    return Val(Imm(int(isinstance(v.v, Imm))), T.INT)


def offsetof(lw, e, args):
    t = lw.type_of(args[0])
    off = 0
    path = []
    node = args[1]
    while not isinstance(node, c_ast.ID):
        path.append(node)
        node = node.name
    path.append(node)
    for part in reversed(path):
        if isinstance(part, c_ast.ArrayRef):
            if not isinstance(t, Array):
                raise error_at(part, "offsetof subscript on a non-array")
            off += lw.const_int(part.subscript) * t.elem.size
            t = t.elem
            continue
        fname = part.name if isinstance(part, c_ast.ID) else part.field.name
        if not isinstance(t, Struct):
            raise error_at(part, f"offsetof requires a struct or union type, got '{t}'")
        m = t.find(fname)
        if m is None:
            raise error_at(part, f"no member named '{fname}' in '{t}'")
        off += m.offset
        t = m.type
    return Val(Imm(off), T.ULONG)


def atomic(lw, e, name: str, args):
    base = name.replace("__sync_", "").replace("__atomic_", "")
    if base in ("val_compare_and_swap", "bool_compare_and_swap"):
        ptr = lw.rv(args[0])
        t = ptr.type.target if T.is_ptr(ptr.type) else None
        size = strip(t).size if t is not None and T.is_scalar(t) else 0
        if size not in (4, 8):
            raise error_at(e, f"{name} needs a pointer to a 4- or 8-byte integer")
        old = lw.convert(lw.rv(args[1]), t, e)
        new = lw.convert(lw.rv(args[2]), t, e)
        lw.emit(Op("mov", dst=0, a=old.v, w32=size == 4))
        lw.emit(Op("atomic", a=lw.materialize(ptr), b=lw.materialize(new), alu="cmpxchg",
                   size=size, dst=0))
        r = lw.vreg()
        lw.emit(Op("mov", dst=r, a=0))
        if base == "bool_compare_and_swap":
            return lw.compare_value("eq", Val(r, t), old, e)
        return Val(r, t)
    kinds = {"fetch_and_add": ("add", False), "fetch_and_sub": ("sub", False),
             "fetch_and_or": ("or", False), "fetch_and_and": ("and", False),
             "fetch_and_xor": ("xor", False), "add_and_fetch": ("add", True),
             "sub_and_fetch": ("sub", True), "or_and_fetch": ("or", True),
             "and_and_fetch": ("and", True), "xor_and_fetch": ("xor", True),
             "fetch_add": ("add", False), "fetch_sub": ("sub", False),
             "fetch_or": ("or", False), "fetch_and": ("and", False), "fetch_xor": ("xor", False),
             "add_fetch": ("add", True), "sub_fetch": ("sub", True),
             "lock_test_and_set": ("xchg", False), "exchange_n": ("xchg", False)}
    if base not in kinds:
        raise error_at(e, f"'{name}' is not supported")
    op, after = kinds[base]
    ptr = lw.rv(args[0])
    t = ptr.type.target if T.is_ptr(ptr.type) else None
    size = strip(t).size if t is not None and T.is_scalar(t) else 0
    if size not in (4, 8):
        raise error_at(e, f"{name} needs a pointer to a 4- or 8-byte integer")
    v = lw.convert(lw.rv(args[1]), t, e)
    if op == "sub":
        if isinstance(v.v, Imm):
            v = Val(Imm(T.wrap(-v.v.value, t)), t)
        else:
            r = lw.vreg()
            lw.emit(Op("neg", dst=r, a=v.v, w32=size == 4))
            v = Val(r, t)
    src = lw.materialize(v)
    used = lw.discarding is not e
    alu = "xchg" if op == "xchg" else ATOMIC_OPS[op]
    if not used and alu != "xchg":
        lw.emit(Op("atomic", a=lw.materialize(ptr), b=src, alu=alu, size=size, loc=e.coord))
        return Val(Imm(0), t)
    old = lw.vreg()
    lw.emit(Op("atomic", a=lw.materialize(ptr), b=src, alu=alu, size=size, dst=old, loc=e.coord))
    if not after:
        return Val(old, t)
    if op in ("add", "sub"):
        return Val(lw.alu("add", old, src, size == 4), t)
    return Val(lw.alu(op, old, src, size == 4), t)


BUILTINS = {
    "__builtin_memcpy": b_memcpy, "__builtin_memset": b_memset, "__builtin_memcmp": b_memcmp,
    "__builtin_bswap16": b_bswap(16), "__builtin_bswap32": b_bswap(32),
    "__builtin_bswap64": b_bswap(64), "__builtin_expect": b_expect,
    "__builtin_constant_p": b_constant_p,
}
