"""Statements and local declarations: blocks, loops (unrolled when asked), switch, goto."""
from __future__ import annotations

from pycparser import c_ast
from tracesim.filters.bpf.compiler import ctypes_ext as T
from tracesim.filters.bpf.compiler.errors import error_at
from tracesim.filters.bpf.compiler.ir import FP, Imm, Op
from tracesim.filters.bpf.compiler.values import Loop, LVal, Scope, Val, eval_cmp, string_bytes, walk
from tracesim.filters.bpf.parts import Part
from tracesim.kernel_model.c_types import Array, CType, CTypeError, Func

EXPR_NODES = {"Assignment", "FuncCall", "UnaryOp", "BinaryOp", "ID", "Constant", "Cast",
              "TernaryOp", "ExprList", "StructRef", "ArrayRef", "CompoundLiteral"}


class StatementLowering(Part):
    """The ``Lowerer``'s methods for statements (mixed into ``lower.Lowerer``)."""

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


def unroll_plan(s: c_ast.For, lw: StatementLowering):
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
