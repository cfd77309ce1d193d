"""Front end: a C function's pycparser AST, typed with ``kernel_model.c_types``, lowered to IR.

Scalar locals whose address is never taken live in virtual registers; arrays, structs and
address-taken locals live in stack slots.  Conditions are lowered straight to compare-and-branch.
``inline`` functions are expanded at the call; other functions become bpf-to-bpf calls.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pycparser import c_ast

from kernel_model.c_types import (
    Array,
    CType,
    CTypeError,
    Float,
    Func,
    Int,
    Member,
    Pointer,
    Struct,
    Void,
    char_value,
    parse_int_literal,
    strip,
)

from . import ctypes_ext as T
from .errors import error_at
from .ir import FP, Block, Function, Imm, Op

MAX_INLINE_DEPTH = 16
ALU_OF = {"+": "add", "-": "sub", "*": "mul", "/": "div", "%": "mod", "&": "and", "|": "or",
          "^": "xor", "<<": "lsh", ">>": "rsh"}
CMP_OF = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}


@dataclass
class Val:
    """An rvalue: a virtual register or an immediate, with its C type."""
    v: object            # int (vreg) or Imm
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


class Lowerer:
    """Lowers one function (with its inlined callees) to IR."""

    def __init__(self, unit, fdef: c_ast.FuncDef, ftype: Func, section: str, is_global: bool):
        self.u = unit
        self.fdef = fdef
        self.ftype = ftype
        self.fn = Function(fdef.decl.name, section, [], nparams=len(ftype.params),
                           is_global=is_global)
        self.next_label = 0
        self.cur: Block | None = None
        self.scopes: list[Scope] = [Scope()]
        self.loops: list[Loop] = []
        self.inline_stack: list[InlineFrame] = []
        self.labels: dict[str, int] = {}
        self.depth = 0
        self.addr_taken: set[str] = set()
        self.const_cache: dict[tuple, int] = {}
        self.calls: set[str] = set()
        self.discarding: c_ast.Node | None = None   # expression whose value nobody reads

    # ------------------------------------------------------------ blocks and emission
    def new_block(self) -> int:
        self.next_label += 1
        return self.next_label

    def start(self, label: int) -> None:
        b = Block(label, depth=self.depth)
        self.fn.blocks.append(b)
        self.cur = b
        self.const_cache = {}

    def emit(self, op: Op) -> Op:
        if self.cur is None:          # code after return/break: unreachable, kept apart
            self.start(self.new_block())
        self.cur.ops.append(op)
        if op.kind in ("jmp", "br", "exit"):
            self.cur = None
        return op

    def jump(self, label: int) -> None:
        if self.cur is not None:
            self.emit(Op("jmp", targets=(label,)))

    def vreg(self) -> int:
        return self.fn.new_vreg()

    # ------------------------------------------------------------ entry
    def lower(self) -> Function:
        self.addr_taken = address_taken(self.fdef.body)
        self.start(self.new_block())
        params = self.param_decls(self.fdef.decl)
        if len(params) > 5:
            raise error_at(self.fdef.decl, "functions take at most 5 arguments in BPF")
        for i, (p, pt) in enumerate(zip(params, self.ftype.params, strict=False)):
            if not T.is_scalar(pt):
                raise error_at(p, f"parameter of type '{pt}' is not supported: pass a pointer")
            v = self.vreg()
            self.emit(Op("mov", dst=v, a=i + 1, w32=T.is_w32(pt)))
            self.bind_local(p, pt, Val(v, pt))
        self.stmt(self.fdef.body)
        if self.cur is not None:             # falling off the end returns 0
            self.emit(Op("mov", dst=0, a=Imm(0)))
            self.emit(Op("exit"))
        return self.fn

    def param_decls(self, decl: c_ast.Decl) -> list[c_ast.Decl]:
        ftype = decl.type
        while not isinstance(ftype, c_ast.FuncDecl):
            ftype = ftype.type
        out = []
        for p in (ftype.args.params if ftype.args else []):
            if isinstance(p, c_ast.EllipsisParam):
                raise error_at(p, "variadic functions cannot be defined in BPF programs")
            if isinstance(p, c_ast.Typename) or p.name is None:
                if isinstance(self.type_of(p.type), Void):
                    continue
                raise error_at(p, "parameter name omitted")
            out.append(p)
        return out

    # ------------------------------------------------------------ types
    def type_of(self, node: c_ast.Node) -> CType:
        try:
            return self.u.env.type_of(node)
        except (CTypeError, KeyError) as e:
            raise error_at(node, str(e).strip("'\"")) from None

    def lookup(self, name: str, node: c_ast.Node) -> LVal | None:
        for s in reversed(self.scopes):
            if name in s.names:
                return s.names[name]
        return None

    # ------------------------------------------------------------ locals
    def bind_local(self, node: c_ast.Decl, t: CType, init: Val | None) -> LVal:
        name = node.name
        if T.is_scalar(t) and name not in self.addr_taken:
            v = self.vreg()
            lv = LVal("reg", t, reg=v)
            if init is not None:
                self.assign(lv, init, node)
        else:
            if t.size == 0 or (isinstance(t, Array) and t.count is None):
                raise error_at(node, f"variable '{name}' has incomplete type '{t}'")
            off = self.fn.new_slot(t.size, max(t.align, 1) if t.size < 8 else 8)
            lv = LVal("mem", t, base=FP, off=off)
            if init is not None:
                self.assign(lv, init, node)
        self.scopes[-1].names[name] = lv
        return lv

    def local_decl(self, d: c_ast.Decl) -> None:
        if d.name is None:                         # struct/enum declaration only
            self.type_of(d.type)
            return
        if "static" in d.storage or "extern" in d.storage:
            raise error_at(d, f"'{'static' if 'static' in d.storage else 'extern'}' local "
                              "variables are not supported: declare it at file scope")
        if isinstance(d.type, c_ast.ArrayDecl) and d.type.dim is not None:
            try:
                self.u.env.const_value(d.type.dim)
            except CTypeError:
                raise error_at(d.type.dim, "variable-length arrays are not supported") from None
        t = self.type_of(d.type)
        if isinstance(t, Func):
            return                                  # a local prototype
        if T.is_float(t):
            raise error_at(d, "floating point is not supported in BPF programs")
        if "register" in d.storage and d.name in self.addr_taken:
            raise error_at(d, f"address of register variable '{d.name}' requested")
        if isinstance(t, Array) and t.count is None and d.init is not None:
            if isinstance(d.init, c_ast.Constant) and d.init.type == "string":
                t = Array(t.elem, len(string_bytes(d.init.value)) + 1)
            elif isinstance(d.init, c_ast.InitList):
                t = Array(t.elem, len(d.init.exprs))
        if d.init is None:
            self.bind_local(d, t, None)
            return
        if T.is_scalar(t) and not isinstance(d.init, c_ast.InitList):
            self.bind_local(d, t, self.rv(d.init))
            return
        lv = self.bind_local(d, t, None)
        if T.is_scalar(t):
            self.init_memory(lv.base, lv.off, t, d.init)
            if lv.kind == "reg":
                self.assign(lv, self.rv(d.init.exprs[0]), d)
            return
        self.init_memory(lv.base, lv.off, t, d.init)

    # ------------------------------------------------------------ statements
    def stmt(self, s: c_ast.Node | None) -> None:
        if s is None:
            return
        m = getattr(self, "s_" + type(s).__name__, None)
        if m is None:
            raise error_at(s, f"{type(s).__name__} statements are not supported")
        m(s)

    def s_Compound(self, s: c_ast.Compound) -> None:
        self.scopes.append(Scope())
        items = s.block_items or []
        i = 0
        while i < len(items):
            item = items[i]
            if isinstance(item, c_ast.Pragma) and i + 1 < len(items) and \
                    item.string.strip().startswith("unroll") and isinstance(items[i + 1], c_ast.For):
                self.unrolled_for(items[i + 1])
                i += 2
                continue
            self.stmt(item)
            i += 1
        self.scopes.pop()

    def s_Pragma(self, s: c_ast.Pragma) -> None:
        pass                                        # unknown pragmas are ignored, as in C

    def s_Decl(self, s: c_ast.Decl) -> None:
        self.local_decl(s)

    def s_DeclList(self, s: c_ast.DeclList) -> None:
        for d in s.decls:
            self.local_decl(d)

    def s_Typedef(self, s: c_ast.Typedef) -> None:
        self.u.env.typedefs[s.name] = self.type_of(s.type)

    def s_EmptyStatement(self, s) -> None:
        pass

    def s_StaticAssert(self, s: c_ast.StaticAssert) -> None:
        if not self.const_int(s.cond):
            msg = s.message.value if s.message is not None else ""
            raise error_at(s, f"static assertion failed{': ' + msg if msg else ''}")

    def s_Return(self, s: c_ast.Return) -> None:
        if self.inline_stack:
            frame = self.inline_stack[-1]
            if s.expr is not None and frame.ret_reg is not None:
                v = self.convert(self.rv(s.expr), frame.ret_type, s)
                self.emit(Op("mov", dst=frame.ret_reg, a=v.v, w32=T.is_w32(frame.ret_type)))
            self.jump(frame.ret_block)
            return
        ret = self.ftype.ret
        if s.expr is None:
            self.emit(Op("mov", dst=0, a=Imm(0)))
        else:
            if T.is_void(ret):
                raise error_at(s, "void function should not return a value")
            if not T.is_scalar(ret):
                raise error_at(s, f"returning '{ret}' is not supported: BPF returns a scalar in r0")
            v = self.convert(self.rv(s.expr), ret, s)
            self.emit(Op("mov", dst=0, a=v.v, w32=T.is_w32(ret)))
        self.emit(Op("exit", loc=s.coord))

    def s_If(self, s: c_ast.If) -> None:
        then_b, end_b = self.new_block(), self.new_block()
        else_b = self.new_block() if s.iffalse is not None else end_b
        self.cond(s.cond, then_b, else_b)
        self.start(then_b)
        self.stmt(s.iftrue)
        self.jump(end_b)
        if s.iffalse is not None:
            self.start(else_b)
            self.stmt(s.iffalse)
            self.jump(end_b)
        self.start(end_b)

    def loop(self, init, cond, nxt, body, test_first: bool) -> None:
        self.scopes.append(Scope())
        if init is not None:
            if isinstance(init, c_ast.DeclList):
                self.s_DeclList(init)
            else:
                self.expr_stmt(init)
        body_b, cont_b, end_b = self.new_block(), self.new_block(), self.new_block()
        self.depth += 1
        if test_first and cond is not None:
            self.cond(cond, body_b, end_b)
        else:
            self.jump(body_b)
        self.start(body_b)
        self.loops.append(Loop(end_b, cont_b))
        self.stmt(body)
        self.loops.pop()
        self.jump(cont_b)
        self.start(cont_b)
        if nxt is not None:
            self.expr_stmt(nxt)
        if cond is not None:
            self.cond(cond, body_b, end_b)
        else:
            self.jump(body_b)
        self.depth -= 1
        self.start(end_b)
        self.scopes.pop()

    def s_For(self, s: c_ast.For) -> None:
        self.loop(s.init, s.cond, s.next, s.stmt, True)

    def s_While(self, s: c_ast.While) -> None:
        self.loop(None, s.cond, None, s.stmt, True)

    def s_DoWhile(self, s: c_ast.DoWhile) -> None:
        self.loop(None, s.cond, None, s.stmt, False)

    def unrolled_for(self, s: c_ast.For) -> None:
        """``#pragma unroll`` before ``for (i = A; i < B; i++)`` with constant bounds: the body
        is emitted once per iteration with ``i`` a constant.  Other loops stay loops."""
        plan = unroll_plan(s, self)
        if plan is None:
            self.s_For(s)
            return
        name, t, values = plan
        end_b = self.new_block()
        for _k, value in enumerate(values):
            self.scopes.append(Scope({name: LVal("reg", t, const=Imm(value))}))
            cont_b = self.new_block()
            self.loops.append(Loop(end_b, cont_b))
            self.stmt(s.stmt)
            self.loops.pop()
            self.jump(cont_b)
            self.start(cont_b)
            self.scopes.pop()
        self.jump(end_b)
        self.start(end_b)

    def s_Break(self, s: c_ast.Break) -> None:
        if not self.loops:
            raise error_at(s, "'break' statement not in loop or switch statement")
        self.jump(self.loops[-1].brk)

    def s_Continue(self, s: c_ast.Continue) -> None:
        for lp in reversed(self.loops):
            if lp.cont is not None:
                self.jump(lp.cont)
                return
        raise error_at(s, "'continue' statement not in loop statement")

    def s_Switch(self, s: c_ast.Switch) -> None:
        v = self.rv(s.cond)
        if not T.is_int(v.type):
            raise error_at(s.cond, "statement requires expression of integer type")
        t = T.promote(v.type)
        v = self.convert(v, t, s)
        end_b = self.new_block()
        items = s.stmt.block_items if isinstance(s.stmt, c_ast.Compound) else [s.stmt]
        items = items or []
        cases: list[tuple[int | None, int]] = []   # (value or None for default, label)
        labels_for: dict[int, int] = {}
        for i, it in enumerate(items):
            if isinstance(it, (c_ast.Case, c_ast.Default)):
                lab = self.new_block()
                labels_for[i] = lab
                val = None if isinstance(it, c_ast.Default) else T.wrap(self.const_int(it.expr), t)
                cases.append((val, lab))
        default = next((lab for val, lab in cases if val is None), end_b)
        vv = self.materialize(v) if not isinstance(v.v, int) else v.v
        for val, lab in cases:
            if val is None:
                continue
            nxt = self.new_block()
            self.emit(Op("br", a=vv, b=Imm(val), alu="eq", w32=T.is_w32(t), targets=(lab, nxt)))
            self.start(nxt)
        self.jump(default)
        self.loops.append(Loop(end_b, None))
        self.scopes.append(Scope())
        for i, it in enumerate(items):
            if i in labels_for:
                self.jump(labels_for[i])
                self.start(labels_for[i])
                for sub in it.stmts or []:
                    self.stmt(sub)
            else:
                self.stmt(it)
        self.scopes.pop()
        self.loops.pop()
        self.jump(end_b)
        self.start(end_b)

    def s_Label(self, s: c_ast.Label) -> None:
        lab = self.labels.setdefault(s.name, self.new_block())
        self.jump(lab)
        self.start(lab)
        self.stmt(s.stmt)

    def s_Goto(self, s: c_ast.Goto) -> None:
        self.jump(self.labels.setdefault(s.name, self.new_block()))

    def expr_stmt(self, e: c_ast.Node) -> None:
        if isinstance(e, c_ast.ExprList):
            for x in e.exprs:
                self.expr_stmt(x)
            return
        self.discarding = e
        self.rv(e)
        self.discarding = None

    def __getattr__(self, name: str):
        if name.startswith("s_") and name[2:] in EXPR_NODES:
            return self.expr_stmt
        raise AttributeError(name)

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
            a, b = self.convert(a, ct, e, implicit=False), self.convert(b, ct, e, implicit=False)
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
        from .ir import SWAPPED
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

    def convert(self, v: Val, to: CType, e, implicit: bool = True) -> Val:
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
                r = self.narrow(r, strip(to))
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
            st = p.type.target if T.is_ptr(p.type) else p.type.elem
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
        saved_blocks, saved_cur = list(self.fn.blocks), self.cur
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
        elem = p.type.target if T.is_ptr(p.type) else p.type.elem
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
        return self.convert(v, t, e, implicit=False)

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
        from .builtins import call
        return call(self, e)


EXPR_NODES = {"Assignment", "FuncCall", "UnaryOp", "BinaryOp", "ID", "Constant", "Cast",
              "TernaryOp", "ExprList", "StructRef", "ArrayRef", "CompoundLiteral"}


# ---------------------------------------------------------------- helpers

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


def _is_const_candidate(e: c_ast.Node) -> bool:
    return isinstance(e, (c_ast.Constant, c_ast.ID, c_ast.UnaryOp, c_ast.BinaryOp)) and \
        not any(isinstance(n, (c_ast.FuncCall, c_ast.Assignment)) for n in walk(e)) and \
        not (isinstance(e, c_ast.UnaryOp) and e.op in ("++", "--", "p++", "p--"))


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


def unroll_plan(s: c_ast.For, lw: Lowerer):
    """(name, type, values) for a loop ``#pragma unroll`` can expand, else None."""
    if s.init is None or s.cond is None or s.next is None:
        return None
    if isinstance(s.init, c_ast.DeclList) and len(s.init.decls) == 1:
        d = s.init.decls[0]
        name, init, t = d.name, d.init, lw.type_of(d.type)
    elif isinstance(s.init, c_ast.Assignment) and s.init.op == "=" and \
            isinstance(s.init.lvalue, c_ast.ID):
        name, init = s.init.lvalue.name, s.init.rvalue
        lv = lw.lookup(name, s)
        if lv is None:
            return None
        t = lv.type
    else:
        return None
    if not T.is_int(t) or init is None:
        return None
    try:
        start = lw.u.env.const_value(init)
        c = s.cond
        if not (isinstance(c, c_ast.BinaryOp) and isinstance(c.left, c_ast.ID)
                and c.left.name == name and c.op in ("<", "<=", "!=", ">", ">=")):
            return None
        bound = lw.u.env.const_value(c.right)
        n = s.next
        if isinstance(n, c_ast.UnaryOp) and n.op in ("++", "p++") and n.expr.name == name:
            step = 1
        elif isinstance(n, c_ast.UnaryOp) and n.op in ("--", "p--") and n.expr.name == name:
            step = -1
        elif isinstance(n, c_ast.Assignment) and n.op in ("+=", "-=") and \
                isinstance(n.lvalue, c_ast.ID) and n.lvalue.name == name:
            step = lw.u.env.const_value(n.rvalue) * (1 if n.op == "+=" else -1)
        else:
            return None
    except (CTypeError, AttributeError):
        return None
    for node in walk(s.stmt):                 # the body must not change the counter
        if isinstance(node, c_ast.Assignment) and isinstance(node.lvalue, c_ast.ID) and \
                node.lvalue.name == name:
            return None
        if isinstance(node, c_ast.UnaryOp) and node.op in ("++", "--", "p++", "p--", "&") and \
                isinstance(node.expr, c_ast.ID) and node.expr.name == name:
            return None
    values = []
    i = start
    while eval_cmp({"<": "lt", "<=": "le", "!=": "ne", ">": "gt", ">=": "ge"}[c.op], i, bound):
        values.append(i)
        i += step
        if len(values) > 1024 or step == 0:
            return None
    return name, t, values
