"""Front end: a C function's pycparser AST, typed with ``tracesim.kernel_model.c_types``, lowered to IR.

Scalar locals whose address is never taken live in virtual registers; arrays, structs and
address-taken locals live in stack slots.  Conditions are lowered straight to compare-and-branch.
``inline`` functions are expanded at the call; other functions become bpf-to-bpf calls.
"""
from __future__ import annotations

from pycparser import c_ast
from tracesim.filters.bpf.compiler import ctypes_ext as T
from tracesim.filters.bpf.compiler.errors import error_at
from tracesim.filters.bpf.compiler.expressions import ExpressionLowering
from tracesim.filters.bpf.compiler.ir import Block, Function, Imm, Op
from tracesim.filters.bpf.compiler.statements import EXPR_NODES, StatementLowering, unroll_plan  # noqa: F401
from tracesim.filters.bpf.compiler.values import (
    InlineFrame,
    Loop,
    LVal,
    Scope,
    Val,
    ValueLowering,
    address_taken,
)
from tracesim.kernel_model.c_types import CType, CTypeError, Func, Void


class Lowerer(StatementLowering, ExpressionLowering, ValueLowering):
    """Lowers one function (with its inlined callees) to IR.  The methods live by topic in
    ``statements``, ``expressions`` and ``values``; this class holds the state and the blocks."""

    def __init__(self, unit, fdef: c_ast.FuncDef, ftype: Func, section: str, is_global: bool):
        self.u = unit
        self.fdef = fdef
        self.ftype = ftype
        self.fn = Function(fdef.decl.name, section, [], nparams=len(ftype.params),
                           is_global=is_global)
        self.next_label = 0
        self.cur: Block = None   # set by start() before anything is emitted
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
