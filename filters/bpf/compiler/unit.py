"""The translation unit: file-scope declarations sorted into helpers, maps, global variables,
functions and the license, with the data sections they fill."""
from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from pycparser import c_ast
from tracesim.filters.bpf.compiler import ctypes_ext as T
from tracesim.filters.bpf.compiler.errors import error_at
from tracesim.filters.bpf.compiler.values import string_bytes
from tracesim.kernel_model.c_types import (
    Array,
    CType,
    CTypeError,
    Float,
    Func,
    Pointer,
    Struct,
    TypeEnv,
    parse_int_literal,
    strip,
)


@dataclass
class FuncInfo:
    name: str
    node: c_ast.FuncDef
    type: Func
    inline: bool
    section: str | None
    is_static: bool


@dataclass
class GlobalVar:
    name: str
    type: CType
    section: str
    offset: int
    is_global: bool


class Unit:
    def __init__(self) -> None:
        self.env = TypeEnv()
        self.helpers: dict[str, tuple[int, Func]] = {}
        self.maps: dict[str, GlobalVar] = {}
        self.globals: dict[str, GlobalVar] = {}
        self.functions: dict[str, FuncInfo] = {}
        self.prototypes: set[str] = set()
        self.data: dict[str, bytearray] = {}
        self.bss_size = 0
        self.called: set[str] = set()
        self._strings: dict[bytes, int] = {}

    # ------------------------------------------------------------ declarations
    def add(self, ast: c_ast.FileAST) -> None:
        for node in ast.ext:
            try:
                self.declare(node)
            except CTypeError as e:
                raise error_at(node, str(e).strip("'\"")) from None

    def declare(self, node: c_ast.Node) -> None:
        if isinstance(node, c_ast.Typedef):
            strip_attributed_types(node)
            self.env.typedefs[node.name] = self.env.type_of(node.type)
        elif isinstance(node, c_ast.FuncDef):
            self.function(node)
        elif isinstance(node, c_ast.Decl):
            self.decl(node)
        elif isinstance(node, c_ast.StaticAssert):
            if not self.env.const_value(node.cond):
                raise error_at(node, "static assertion failed")
        elif isinstance(node, (c_ast.Pragma, c_ast.AttributeDeclaration)):
            pass
        else:
            raise error_at(node, f"unsupported declaration ({type(node).__name__})")

    def function(self, node: c_ast.FuncDef) -> None:
        d = node.decl
        section = section_of(d)
        strip_attributed_types(d)
        ftype = self.env.type_of(d.type)
        if not isinstance(ftype, Func):
            raise error_at(d, f"'{d.name}' is not a function")
        if ftype.variadic:
            raise error_at(d, "variadic functions cannot be defined in BPF programs")
        for p in (*ftype.params, ftype.ret):
            if isinstance(p, Float):
                raise error_at(d, "floating point is not supported in BPF programs")
        if d.name in self.functions:
            raise error_at(d, f"redefinition of '{d.name}'")
        self.functions[d.name] = FuncInfo(d.name, node, ftype, "inline" in d.funcspec and
                                          section is None, section, "static" in d.storage)

    def decl(self, d: c_ast.Decl) -> None:
        section = section_of(d)
        strip_attributed_types(d)
        t = self.env.type_of(d.type)
        if d.name is None:
            return                                     # struct/union/enum declaration
        if isinstance(t, Func):
            self.prototypes.add(d.name)
            return
        if "extern" in d.storage:
            raise error_at(d, f"extern variable '{d.name}' cannot be resolved in a BPF object")
        helper = helper_id(d, t)
        if helper is not None:
            # helper_id said: a pointer to a function
            self.helpers[d.name] = (helper, cast(Func, cast(Pointer, t).target))
            return
        if isinstance(t, Float):
            raise error_at(d, "floating point is not supported in BPF programs")
        if d.name in self.globals or d.name in self.maps:
            raise error_at(d, f"redefinition of '{d.name}'")
        if isinstance(t, Array) and t.count is None and d.init is not None:
            n = len(string_bytes(d.init.value)) + 1 if isinstance(d.init, c_ast.Constant) \
                else len(d.init.exprs)
            t = Array(t.elem, n)
        is_global = "static" not in d.storage
        if section == ".maps":
            if not isinstance(t, Struct):
                raise error_at(d, f"map '{d.name}' in \".maps\" must be a struct of __uint/__type")
            self.maps[d.name] = self.place(d.name, t, ".maps", bytes(t.size), is_global)
            return
        if section == "maps":
            self.maps[d.name] = self.place(d.name, t, "maps", self.initial(t, d.init), is_global)
            return
        if section is None:
            const = "const" in d.quals or (isinstance(t, Array) and "const" in _elem_quals(d))
            init = self.initial(t, d.init)
            section = ".rodata" if const else (".data" if any(init) else ".bss")
        else:
            init = self.initial(t, d.init)
        self.globals[d.name] = self.place(d.name, t, section, init, is_global)

    def place(self, name: str, t: CType, section: str, init: bytes, is_global: bool) -> GlobalVar:
        align = max(min(t.align, 8), 1) if section not in ("license",) else 1
        if section == ".bss":
            off = -(-self.bss_size // align) * align
            self.bss_size = off + t.size
        else:
            buf = self.data.setdefault(section, bytearray())
            buf += b"\0" * (-len(buf) % align)
            off = len(buf)
            buf += init
        return GlobalVar(name, t, section, off, is_global)

    def initial(self, t: CType, init: c_ast.Node | None) -> bytes:
        """Bytes of a file-scope initialiser (constants only)."""
        out = bytearray(t.size)
        if init is not None:
            self._fill(out, 0, t, init)
        return bytes(out)

    def _fill(self, out: bytearray, at: int, t: CType, init: c_ast.Node) -> None:
        if isinstance(t, Array) and isinstance(init, c_ast.Constant) and init.type == "string":
            data = string_bytes(init.value)
            if t.count is not None and len(data) > t.count:
                raise error_at(init, "initializer-string for char array is too long")
            out[at:at + len(data)] = data
            return
        if isinstance(t, (Array, Struct)):
            if not isinstance(init, c_ast.InitList):
                raise error_at(init, f"initializing '{t}' needs a brace-enclosed initializer")
            idx = 0
            members = t.members if isinstance(t, Struct) else None
            for item in init.exprs:
                sub = item
                if isinstance(item, c_ast.NamedInitializer):
                    dname = item.name[0]
                    sub = item.expr
                    if isinstance(dname, c_ast.ID):
                        m = t.find(dname.name) if isinstance(t, Struct) else None
                        if m is None:
                            raise error_at(dname, f"field designator '{dname.name}' does not "
                                                  f"refer to any field in type '{t}'")
                        self._fill(out, at + m.offset, m.type, sub)
                        idx = next((i for i, mm in enumerate(members) if mm.name == dname.name),
                                   len(members)) + 1
                        continue
                    idx = self.env.const_value(dname)
                if isinstance(t, Array):
                    self._fill(out, at + idx * t.elem.size, t.elem, sub)
                else:
                    if idx >= len(members):
                        raise error_at(item, "excess elements in struct initializer")
                    self._fill(out, at + members[idx].offset, members[idx].type, sub)
                idx += 1
            return
        if isinstance(init, c_ast.InitList):
            if not init.exprs:
                return
            init = init.exprs[0]
        if not T.is_scalar(t):
            raise error_at(init, f"cannot initialise '{t}' here")
        if isinstance(init, c_ast.Constant) and init.type == "string":
            raise error_at(init, "pointers to strings in global variables are not supported")
        try:
            value = self.env.const_value(init)
        except CTypeError:
            raise error_at(init, "initializer element is not a compile-time constant") from None
        size = 8 if isinstance(t, Pointer) else strip(t).size
        out[at:at + size] = (T.wrap(value, T.U64) & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

    def string_literal(self, data: bytes) -> tuple[str, int]:
        """A string literal's place in ``.rodata.str1.1`` (deduplicated)."""
        if data not in self._strings:
            buf = self.data.setdefault(".rodata.str1.1", bytearray())
            self._strings[data] = len(buf)
            buf += data + b"\0"
        return ".rodata.str1.1", self._strings[data]

    def license(self) -> str:
        for g in self.globals.values():
            if g.section == "license":
                raw = self.data["license"][g.offset:g.offset + g.type.size]
                return raw.split(b"\0")[0].decode("ascii", "replace")
        return ""


def strip_attributed_types(node: c_ast.Node) -> None:
    """``T [[attr]] name`` wraps T in an AttributedType; the attribute is read by section_of,
    the type model only needs T."""
    for name in ("type", "decl"):
        child = getattr(node, name, None)
        if isinstance(child, c_ast.AttributedType):
            setattr(node, name, child.type)
            child = child.type
        if isinstance(child, c_ast.Node) and not isinstance(child, (c_ast.Compound,)):
            strip_attributed_types(child)


def section_of(d: c_ast.Decl) -> str | None:
    """The name in ``[[gnu::section("...")]]`` anywhere on the declaration (not its members)."""
    stack = [d]
    while stack:
        n = stack.pop()
        if isinstance(n, c_ast.Attribute) and n.name == "section":
            return string_bytes(n.arguments).decode()
        for _, child in n.children():
            if isinstance(child, (c_ast.Struct, c_ast.Union, c_ast.Compound, c_ast.InitList)):
                continue
            stack.append(child)
    return None


def helper_id(d: c_ast.Decl, t: CType) -> int | None:
    """``static long (*bpf_x)(...) = (void *) N;`` declares helper N."""
    if not (isinstance(t, Pointer) and isinstance(t.target, Func)) or d.init is None:
        return None
    init = d.init
    while isinstance(init, c_ast.Cast):
        init = init.expr
    if isinstance(init, c_ast.Constant) and init.type in ("int", "long", "unsigned int"):
        return parse_int_literal(init.value)
    raise error_at(d, f"function pointer '{d.name}' must be initialised with a helper id: "
                      "(void *) N")


def _elem_quals(d: c_ast.Decl) -> list[str]:
    t = d.type
    while isinstance(t, c_ast.ArrayDecl):
        t = t.type
    return getattr(t, "quals", []) or []
