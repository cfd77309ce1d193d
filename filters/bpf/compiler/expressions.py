"""Expressions: conditions lowered to compare-and-branch, rvalues, lvalues and operators."""
from __future__ import annotations

from typing import cast

from pycparser import c_ast
from tracesim.filters.bpf.compiler import ctypes_ext as T
from tracesim.filters.bpf.compiler.builtins import call
from tracesim.filters.bpf.compiler.errors import error_at
from tracesim.filters.bpf.compiler.ir import FP, SWAPPED, Block, Imm, Op
from tracesim.filters.bpf.compiler.values import (
    ALU_OF,
    CMP_OF,
    LVal,
    Val,
    eval_cmp,
    fits_s32,
    fold,
    literal_type,
    string_bytes,
    walk,
)
from tracesim.filters.bpf.parts import Part
from tracesim.kernel_model.c_types import (
    Array,
    CType,
    Float,
    Member,
    Pointer,
    Struct,
    Void,
    char_value,
    parse_int_literal,
)


class ExpressionLowering(Part):
    """The ``Lowerer``'s methods for expressions (mixed into ``lower.Lowerer``)."""

    cur: Block                    # the block being filled (the Lowerer's state)

    # ------------------------------------------------------------ conditions
    def cond(self, e: c_ast.Node, t: int, f: int) -> None:
        if isinstance(e, c_ast.BinaryOp) and e.op in ("&&", "||"):
            mid = self.new_block()
            if e.op == "&&":
                self.cond(e.left, mid, f)
            else:
                self.cond(e.left, t, mid)
            self.start(mid)
            self.cond(e.right, t, f)
            return
        if isinstance(e, c_ast.UnaryOp) and e.op == "!":
            self.cond(e.expr, f, t)
            return
        if isinstance(e, c_ast.BinaryOp) and e.op in CMP_OF:
            a, b = self.rv(e.left), self.rv(e.right)
            self.compare(e, CMP_OF[e.op], a, b, t, f)
            return
        v = self.rv(e)
        if not T.is_scalar(v.type):
            raise error_at(e, f"statement requires expression of scalar type ('{v.type}' invalid)")
        self.branch("ne", v, Val(Imm(0), v.type), t, f)

    def compare(self, e, op: str, a: Val, b: Val, t: int, f: int) -> None:
        if T.is_ptr(a.type) or T.is_ptr(b.type):
            ct: CType = T.U64
            for v in (a, b):
                if not T.is_scalar(v.type):
                    raise error_at(e, f"invalid operands to binary expression ('{a.type}' and "
                                      f"'{b.type}')")
            a, b = self.convert(a, ct, e), self.convert(b, ct, e)
        else:
            self.need_arith(e, a, b)
            ct = T.common_type(a.type, b.type)
            a, b = self.convert(a, ct, e), self.convert(b, ct, e)
        if op not in ("eq", "ne") and T.is_signed(ct):
            op = "s" + op
        self.branch(op, a, b, t, f)

    def branch(self, op: str, a: Val, b: Val, t: int, f: int) -> None:
        if isinstance(a.v, Imm) and isinstance(b.v, Imm):
            self.jump(t if eval_cmp(op, a.v.value, b.v.value) else f)
            return
        if isinstance(a.v, Imm):
            a, b, op = b, a, SWAPPED[op]
        w32 = T.is_w32(a.type)
        bv = b.v
        if isinstance(bv, Imm) and not w32 and not fits_s32(T.wrap(bv.value, a.type)):
            bv = self.materialize(b)
        elif isinstance(bv, Imm):
            bv = Imm(T.wrap(bv.value, a.type))
        self.emit(Op("br", a=a.v, b=bv, alu=op, w32=w32, targets=(t, f)))

    def cond_value(self, e: c_ast.Node) -> Val:
        """A condition as a 0/1 int."""
        return Val(self.flag(lambda t, f: self.cond(e, t, f)), T.INT)

    def compare_value(self, op: str, a: Val, b: Val, e) -> Val:
        return Val(self.flag(lambda t, f: self.compare(e, op, a, b, t, f)), T.INT)

    def rv(self, e: c_ast.Node) -> Val:
        m = getattr(self, "e_" + type(e).__name__, None)
        if m is None:
            raise error_at(e, f"{type(e).__name__} expressions are not supported")
        v = m(e)
        if isinstance(v, LVal):
            v = self.load(v, e)
        if isinstance(v.type, Float):
            raise error_at(e, "floating point is not supported in BPF programs")
        return v

    # -- primary
    def e_Constant(self, e: c_ast.Constant) -> Val:
        if e.type == "string":
            sym, off = self.u.string_literal(string_bytes(e.value))
            r = self.vreg()
            self.emit(Op("ldaddr", dst=r, sym=sym, off=off))
            return Val(r, Pointer(T.CHAR))
        if e.type == "char":
            return Val(Imm(char_value(e.value)), T.INT)
        if e.type in ("float", "double", "long double"):
            raise error_at(e, "floating point is not supported in BPF programs")
        text = e.value
        try:
            value = parse_int_literal(text)
        except ValueError:
            raise error_at(e, f"invalid integer constant '{text}'") from None
        return Val(Imm(value), literal_type(text, value))

    def e_ID(self, e: c_ast.ID) -> Val | LVal:
        lv = self.lookup(e.name, e)
        if lv is not None:
            if lv.const is not None:
                return Val(lv.const, lv.type)
            return lv
        if e.name in self.u.env.enum_consts:
            return Val(Imm(self.u.env.enum_consts[e.name]), T.INT)
        if e.name in self.u.maps:
            raise error_at(e, f"map '{e.name}' can only be used by address (&{e.name})")
        if e.name in self.u.globals:
            g = self.u.globals[e.name]
            base = self.vreg()
            self.emit(Op("ldaddr", dst=base, sym=e.name, off=0))
            return LVal("mem", g.type, base=base, off=0)
        if e.name in self.u.helpers or e.name in self.u.functions:
            raise error_at(e, f"function '{e.name}' used as a value: only calls are supported")
        raise error_at(e, f"use of undeclared identifier '{e.name}'")

    def e_StructRef(self, e: c_ast.StructRef) -> LVal:
        if e.type == "->":
            p = self.rv(e.name)
            if not T.is_ptr(p.type) and not isinstance(p.type, Array):
                raise error_at(e, f"member reference type '{p.type}' is not a pointer")
            st = p.type.target if isinstance(p.type, Pointer) else p.type.elem
            base, off = self.materialize(p), 0
        else:
            lv = self.lval(e.name)
            st = lv.type
            if lv.kind != "mem":
                raise error_at(e, f"member reference base type '{st}' is not a structure or union")
            base, off = lv.base, lv.off
        if not isinstance(st, Struct):
            raise error_at(e, f"member reference base type '{st}' is not a structure or union")
        if not st.complete:
            raise error_at(e, f"incomplete definition of type '{st}'")
        m = st.find(e.field.name)
        if m is None:
            raise error_at(e.field, f"no member named '{e.field.name}' in '{st}'")
        return self.member_lval(base, off + m.offset, m)

    def member_lval(self, base: int, off: int, m: Member) -> LVal:
        if not -32768 <= off <= 32767:
            base = self.alu("add", base, Imm(off), False)
            off = 0
        return LVal("mem", m.type, base=base, off=off, bit_offset=m.bit_offset,
                    bit_size=m.bit_size)

    def e_ArrayRef(self, e: c_ast.ArrayRef) -> LVal:
        arr = self.e_any(e.name)
        idx = self.rv(e.subscript)
        if isinstance(arr, Val) and T.is_int(arr.type) and not T.is_int(idx.type):
            arr, idx = idx, arr                     # 2[a] is a[2]
        if not T.is_int(idx.type):
            raise error_at(e.subscript, "array subscript is not an integer")
        if isinstance(arr, LVal) and isinstance(arr.type, Array) and arr.kind == "mem":
            elem = arr.type.elem
            if isinstance(idx.v, Imm):
                off = arr.off + idx.v.value * elem.size
                if -32768 <= off <= 32767:
                    return LVal("mem", elem, base=arr.base, off=off)
            addr = self.address_of(arr, e, Pointer(elem))
            return LVal("mem", elem, base=self.materialize(self.ptr_add(addr, idx, 1, e)), off=0)
        p = self.load(arr, e) if isinstance(arr, LVal) else arr
        if not T.is_ptr(p.type):
            raise error_at(e, "subscripted value is not an array or pointer")
        elem = p.type.target
        if isinstance(idx.v, Imm) and -32768 <= idx.v.value * elem.size <= 32767:
            return LVal("mem", elem, base=self.materialize(p), off=idx.v.value * elem.size)
        return LVal("mem", elem, base=self.materialize(self.ptr_add(p, idx, 1, e)), off=0)

    def e_any(self, e: c_ast.Node) -> Val | LVal:
        m = getattr(self, "e_" + type(e).__name__, None)
        if m is None:
            raise error_at(e, f"{type(e).__name__} expressions are not supported")
        return m(e)

    def lval(self, e: c_ast.Node) -> LVal:
        v = self.e_any(e)
        if not isinstance(v, LVal):
            raise error_at(e, "expression is not assignable")
        return v

    # -- operators
    def e_UnaryOp(self, e: c_ast.UnaryOp) -> Val | LVal:
        op = e.op
        if op == "sizeof":
            if isinstance(e.expr, c_ast.Typename):
                t = self.type_of(e.expr)
            else:
                t = self.type_without_code(e.expr)
            return Val(Imm(t.size), T.ULONG)
        if op == "_Alignof":
            return Val(Imm(self.type_of(e.expr).align), T.ULONG)
        if op == "&":
            if isinstance(e.expr, c_ast.ID) and e.expr.name in self.u.maps and \
                    self.lookup(e.expr.name, e) is None:
                r = self.vreg()
                self.emit(Op("ldmap", dst=r, sym=e.expr.name))
                return Val(r, Pointer(self.u.maps[e.expr.name].type))
            target = self.e_any(e.expr)
            if isinstance(target, Val):
                if isinstance(target.v, LVal):
                    return self.address_of(target.v, e)
                raise error_at(e, f"cannot take the address of an rvalue of type '{target.type}'")
            if target.kind == "reg":
                raise error_at(e, "cannot take the address of a value held in a register")
            return self.address_of(target, e)
        if op == "*":
            p = self.rv(e.expr)
            if isinstance(p.type, Array):
                return LVal("mem", p.type.elem, base=self.materialize(p), off=0)
            if not T.is_ptr(p.type):
                raise error_at(e, f"indirection requires pointer operand ('{p.type}' invalid)")
            if isinstance(p.type.target, Void):
                raise error_at(e, "dereferencing a 'void *' pointer")
            return LVal("mem", p.type.target, base=self.materialize(p), off=0)
        if op in ("++", "--", "p++", "p--"):
            lv = self.lval(e.expr)
            old = self.load(lv, e)
            one = Val(Imm(1), T.INT)
            new = self.arith("+" if "+" in op else "-", old, one, e)
            res = self.assign(lv, new, e)
            if op.startswith("p"):
                if lv.kind == "reg":                 # the register now holds the new value
                    return self.arith("-" if "+" in op else "+", res, one, e)
                return old
            return res
        if op == "!":
            v = self.rv(e.expr)
            if isinstance(v.v, Imm):
                return Val(Imm(int(v.v.value == 0)), T.INT)
            return self.cond_value(e)
        v = self.rv(e.expr)
        if op == "+":
            self.need_arith(e, v)
            return self.convert(v, T.promote(v.type), e)
        if op == "-":
            self.need_arith(e, v)
            t = T.promote(v.type)
            v = self.convert(v, t, e)
            if isinstance(v.v, Imm):
                return Val(Imm(T.wrap(-v.v.value, t)), t)
            r = self.vreg()
            self.emit(Op("neg", dst=r, a=v.v, w32=T.is_w32(t)))
            return Val(r, t)
        if op == "~":
            self.need_arith(e, v)
            t = T.promote(v.type)
            v = self.convert(v, t, e)
            if isinstance(v.v, Imm):
                return Val(Imm(T.wrap(~v.v.value, t)), t)
            return Val(self.alu("xor", v.v, Imm(-1), T.is_w32(t)), t)
        raise error_at(e, f"unary operator '{op}' is not supported")

    def type_without_code(self, e: c_ast.Node) -> CType:
        """The type of an expression for sizeof, without keeping the code it would run."""
        saved_blocks = list(self.fn.blocks)
        saved_cur: Block = self.cur
        saved_next = self.fn.next_vreg
        saved_ops = list(self.cur.ops) if self.cur is not None else None
        v = self.e_any(e)
        t = v.type
        self.fn.blocks = saved_blocks
        self.cur = saved_cur
        if saved_cur is not None:
            saved_cur.ops[:] = saved_ops
        self.fn.next_vreg = saved_next
        return t

    def e_BinaryOp(self, e: c_ast.BinaryOp) -> Val:
        op = e.op
        if op in ("&&", "||") or op in CMP_OF:
            if op in CMP_OF:
                a, b = self.rv(e.left), self.rv(e.right)
                if isinstance(a.v, Imm) and isinstance(b.v, Imm) and T.is_int(a.type) \
                        and T.is_int(b.type):
                    ct = T.common_type(a.type, b.type)
                    opn = CMP_OF[op]
                    if opn not in ("eq", "ne") and T.is_signed(ct):
                        opn = "s" + opn
                    return Val(Imm(int(eval_cmp(opn, T.wrap(a.v.value, ct),
                                                T.wrap(b.v.value, ct)))), T.INT)
                return self.compare_value(CMP_OF[op], a, b, e)
            return self.cond_value(e)
        a, b = self.rv(e.left), self.rv(e.right)
        return self.arith(op, a, b, e)

    def arith(self, op: str, a: Val, b: Val, e) -> Val:
        if isinstance(a.type, Array):
            a = Val(a.v, Pointer(a.type.elem))
        if op in ("+", "-") and (T.is_ptr(a.type) or T.is_ptr(b.type)):
            if T.is_ptr(a.type) and T.is_ptr(b.type):
                if op != "-":
                    raise error_at(e, "invalid operands to binary expression (pointer + pointer)")
                size = max(a.type.target.size, 1)
                d = Val(self.alu("sub", self.materialize(a), b.v, False), T.LONG)
                if size == 1:
                    return d
                if size & (size - 1) == 0:
                    return Val(self.alu("arsh", d.v, Imm(size.bit_length() - 1), False), T.LONG)
                return Val(self.alu("sdiv", d.v, Imm(size), False), T.LONG)
            if T.is_ptr(b.type):
                if op == "-":
                    raise error_at(e, "invalid operands to binary expression (int - pointer)")
                a, b = b, a
            if not T.is_int(b.type):
                raise error_at(e, f"invalid operands to binary expression ('{a.type}' and "
                                  f"'{b.type}')")
            return self.ptr_add(a, b, -1 if op == "-" else 1, e)
        self.need_arith(e, a, b)
        if op in ("<<", ">>"):
            t = T.promote(a.type)
            a = self.convert(a, t, e)
            b = self.convert(b, T.promote(b.type), e)
            if isinstance(b.v, Imm):
                if isinstance(a.v, Imm):
                    n = b.v.value
                    if n < 0 or n >= 8 * t.size:
                        return Val(Imm(0), t)
                    v = a.v.value << n if op == "<<" else a.v.value >> n
                    return Val(Imm(T.wrap(v, t)), t)
                bv: object = Imm(b.v.value & (8 * t.size - 1))
            else:
                bv = b.v
            alu = "lsh" if op == "<<" else ("arsh" if T.is_signed(t) else "rsh")
            return Val(self.alu(alu, self.materialize(a), bv, T.is_w32(t)), t)
        t = T.common_type(a.type, b.type)
        a, b = self.convert(a, t, e), self.convert(b, t, e)
        if isinstance(a.v, Imm) and isinstance(b.v, Imm):
            return Val(Imm(fold(op, a.v.value, b.v.value, t, e)), t)
        alu = ALU_OF.get(op)
        if alu is None:
            raise error_at(e, f"binary operator '{op}' is not supported")
        if alu in ("div", "mod") and T.is_signed(t):
            alu = "s" + alu
        w32 = T.is_w32(t)
        if isinstance(a.v, Imm):
            if alu in ("add", "mul", "and", "or", "xor"):
                a, b = b, a
            else:
                a = Val(self.materialize(a), t)
        bv = b.v
        if isinstance(bv, Imm):
            bv = Imm(T.wrap(bv.value, t))
            if not w32 and not fits_s32(bv.value):
                bv = self.materialize(Val(bv, t))
        return Val(self.alu(alu, a.v, bv, w32), t)

    def ptr_add(self, p: Val, i: Val, sign: int, e) -> Val:
        elem = p.type.target if isinstance(p.type, Pointer) else cast(Array, p.type).elem
        size = max(getattr(elem, "size", 1), 1) if not isinstance(elem, Void) else 1
        pt = p.type if T.is_ptr(p.type) else Pointer(elem)
        i = self.convert(i, T.LONG if T.is_signed(i.type) else T.ULONG, e)
        if isinstance(i.v, Imm):
            delta = sign * i.v.value * size
            if isinstance(p.v, Imm):
                return Val(Imm(T.wrap(p.v.value + delta, T.U64)), pt)
            if delta == 0:
                return Val(p.v, pt)
            if fits_s32(delta):
                return Val(self.alu("add", self.materialize(p), Imm(delta), False), pt)
            return Val(self.alu("add", self.materialize(p),
                                self.materialize(Val(Imm(delta), T.LONG)), False), pt)
        scaled = i.v
        if size > 1:
            if size & (size - 1) == 0:
                scaled = self.alu("lsh", scaled, Imm(size.bit_length() - 1), False)
            else:
                scaled = self.alu("mul", scaled, Imm(size), False)
        return Val(self.alu("sub" if sign < 0 else "add", self.materialize(p), scaled, False), pt)

    def e_Assignment(self, e: c_ast.Assignment) -> Val:
        lv = self.lval(e.lvalue)
        if e.op == "=":
            v = self.rv(e.rvalue)
            return self.assign(lv, v, e)
        old = self.load(lv, e)
        v = self.arith(e.op[:-1], old, self.rv(e.rvalue), e)
        return self.assign(lv, v, e)

    def e_Cast(self, e: c_ast.Cast) -> Val:
        t = self.type_of(e.to_type)
        v = self.rv(e.expr)
        if isinstance(t, Void):
            return Val(Imm(0), t)
        return self.convert(v, t, e)

    def e_TernaryOp(self, e: c_ast.TernaryOp) -> Val:
        c = self.rv(e.cond) if _is_const_candidate(e.cond) else None
        if c is not None and isinstance(c.v, Imm):
            return self.rv(e.iftrue if c.v.value else e.iffalse)
        t_b, f_b, end = self.new_block(), self.new_block(), self.new_block()
        self.cond(e.cond, t_b, f_b)
        r = self.vreg()
        self.start(t_b)
        a = self.rv(e.iftrue)
        a_block = self.cur
        mov_a = self.emit(Op("mov", dst=r, a=None))
        self.jump(end)
        self.start(f_b)
        b = self.rv(e.iffalse)
        if T.is_ptr(a.type) or T.is_ptr(b.type):
            t = a.type if T.is_ptr(a.type) else b.type
        elif T.is_void(a.type) or T.is_void(b.type):
            t = Void()
        else:
            self.need_arith(e, a, b)
            t = T.common_type(a.type, b.type)
        b = self.convert(b, t, e) if not T.is_void(t) else b
        self.emit(Op("mov", dst=r, a=b.v if not T.is_void(t) else Imm(0), w32=T.is_w32(t)))
        self.jump(end)
        # The true arm's conversion goes before its move.
        saved = self.cur
        self.cur = a_block
        mov_idx = a_block.ops.index(mov_a)
        tail = a_block.ops[mov_idx:]
        del a_block.ops[mov_idx:]
        a = self.convert(a, t, e) if not T.is_void(t) else Val(Imm(0), t)
        mov_a.a, mov_a.w32 = a.v, T.is_w32(t)
        a_block.ops.extend(tail)
        self.cur = saved
        self.start(end)
        return Val(r, t)

    def e_ExprList(self, e: c_ast.ExprList) -> Val:
        v = Val(Imm(0), T.INT)
        for x in e.exprs:
            v = self.rv(x)
        return v

    def e_CompoundLiteral(self, e: c_ast.CompoundLiteral) -> LVal:
        t = self.type_of(e.type)
        off = self.fn.new_slot(t.size, 8 if t.size >= 8 else max(t.align, 1))
        self.init_memory(FP, off, t, e.init)
        return LVal("mem", t, base=FP, off=off)

    def e_FuncCall(self, e: c_ast.FuncCall) -> Val:
        return call(self, e)


def _is_const_candidate(e: c_ast.Node) -> bool:
    return isinstance(e, (c_ast.Constant, c_ast.ID, c_ast.UnaryOp, c_ast.BinaryOp)) and \
        not any(isinstance(n, (c_ast.FuncCall, c_ast.Assignment)) for n in walk(e)) and \
        not (isinstance(e, c_ast.UnaryOp) and e.op in ("++", "--", "p++", "p--"))
