"""The C type model shared by the modelled kernel and the BPF C compiler.

Headers under ``kernel_model/include/`` are preprocessed with pcpp and parsed with pycparser; this
module turns the declarations into types described as data and lays structs out by the x86-64
SysV ABI (natural alignment, tail padding, bitfields packed into units of their declared type).
``kernel_types()`` gives the kernel's types, so ``skb->dev`` has one offset everywhere.
"""
from __future__ import annotations

import functools
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pcpp import Preprocessor
from pycparser import c_ast, c_parser

INCLUDE_DIR = Path(__file__).resolve().parent / "include"

# GNU extensions the headers may use, mapped away so pycparser sees standard C.
GNU_PRELUDE = """\
#define __attribute__(x)
#define __extension__
#define __inline inline
#define __inline__ inline
#define __restrict restrict
#define __restrict__ restrict
#define __volatile__ volatile
#define __signed__ signed
#define __asm__(x)
#define asm(x)
#define __always_inline inline
#define __x86_64__ 1
#define __LITTLE_ENDIAN__ 1
#define __BYTE_ORDER__ 1234
#define __ORDER_LITTLE_ENDIAN__ 1234
#define __ORDER_BIG_ENDIAN__ 4321
"""


class CTypeError(Exception):
    """A declaration the type model cannot represent (unknown type name, bad array size, ...)."""


# ---------------------------------------------------------------- types as data

@dataclass(frozen=True)
class Void:
    size: int = 1          # GNU C: sizeof(void) == 1, pointer arithmetic on void * steps bytes
    align: int = 1

    def __str__(self) -> str:
        return "void"


@dataclass(frozen=True)
class Int:
    name: str              # canonical C spelling, e.g. "unsigned int"
    size: int
    signed: bool

    @property
    def align(self) -> int:
        return self.size

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Float:
    name: str
    size: int

    @property
    def align(self) -> int:
        return self.size

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Pointer:
    target: CType
    size: int = 8
    align: int = 8

    def __str__(self) -> str:
        return f"{self.target} *"


@dataclass(frozen=True)
class Array:
    elem: CType
    count: int | None      # None: flexible / unknown bound

    @property
    def size(self) -> int:
        return self.elem.size * (self.count or 0)

    @property
    def align(self) -> int:
        return self.elem.align

    def __str__(self) -> str:
        return f"{self.elem}[{'' if self.count is None else self.count}]"


@dataclass(frozen=True)
class Member:
    name: str | None       # None for an anonymous struct/union member or unnamed bitfield
    type: CType
    offset: int            # byte offset of the member (of its storage unit for bitfields)
    bit_offset: int | None = None   # bitfields: bit position inside the storage unit
    bit_size: int | None = None
    # The typedef the declaration names and how many pointer/array declarators sit above it
    # (``__be16 protocol`` -> ("__be16", 0), ``__u32 cb[5]`` -> ("__u32", 1)): for BTF.
    typedef: tuple[str, int] | None = None


@dataclass(eq=False)
class Struct:
    """A struct or union. Mutable only while being completed (forward declarations)."""
    kind: str                        # "struct" or "union"
    tag: str | None
    members: list[Member] = field(default_factory=list)
    size: int = 0
    align: int = 1
    complete: bool = False

    def __str__(self) -> str:
        return f"{self.kind} {self.tag or '<anonymous>'}"

    def field(self, name: str) -> Member:
        """Member by name, looking through anonymous struct/union members (offsets made absolute)."""
        found = self.find(name)
        if found is None:
            raise KeyError(f"{self} has no member named '{name}'")
        return found

    def find(self, name: str) -> Member | None:
        for m in self.members:
            if m.name == name:
                return m
            if m.name is None and isinstance(m.type, Struct):
                inner = m.type.find(name)
                if inner is not None:
                    return Member(inner.name, inner.type, m.offset + inner.offset,
                                  inner.bit_offset, inner.bit_size, inner.typedef)
        return None

    def offsetof(self, path: str) -> int:
        """``offsetof(struct, a.b[2].c)``-style paths."""
        t: CType = self
        off = 0
        for part in path.replace("]", "").replace("[", ".[").split("."):
            if part.startswith("["):
                assert isinstance(t, Array)
                off += int(part[1:], 0) * t.elem.size
                t = t.elem
            else:
                assert isinstance(t, Struct)
                m = t.field(part)
                off += m.offset
                t = m.type
        return off


@dataclass(frozen=True)
class Enum:
    tag: str | None
    values: tuple[tuple[str, int], ...] = ()
    size: int = 4
    signed: bool = False

    @property
    def align(self) -> int:
        return self.size

    def __str__(self) -> str:
        return f"enum {self.tag or '<anonymous>'}"


@dataclass(frozen=True)
class Func:
    ret: CType
    params: tuple[CType, ...]
    variadic: bool = False
    size: int = 1
    align: int = 1

    def __str__(self) -> str:
        return f"{self.ret} (*)({', '.join(map(str, self.params))})"


CType = Void | Int | Float | Pointer | Array | Struct | Enum | Func

# The base types by every spelling C allows (order of specifiers does not matter).
_BASE: dict[tuple[str, ...], CType] = {
    ("char",): Int("char", 1, True),
    ("char", "signed"): Int("signed char", 1, True),
    ("unsigned", "char"): Int("unsigned char", 1, False),
    ("short",): Int("short", 2, True),
    ("unsigned", "short"): Int("unsigned short", 2, False),
    ("int",): Int("int", 4, True),
    ("unsigned",): Int("unsigned int", 4, False),
    ("long",): Int("long", 8, True),
    ("unsigned", "long"): Int("unsigned long", 8, False),
    ("long", "long"): Int("long long", 8, True),
    ("unsigned", "long", "long"): Int("unsigned long long", 8, False),
    ("_Bool",): Int("_Bool", 1, False),
    ("float",): Float("float", 4),
    ("double",): Float("double", 8),
    ("long", "double"): Float("long double", 16),
    ("void",): Void(),
}


def base_type(names: Iterable[str]) -> CType:
    """The type of an IdentifierType's names (``['unsigned', 'long', 'int']``)."""
    words = [n for n in names if n != "int" or len(list(names)) == 1]
    words = [w for w in words]
    if "signed" in words and len(words) > 1 and sorted(words) != ["char", "signed"]:
        words.remove("signed")      # signed char stays its own type, as in C
    elif words == ["signed"]:
        words = ["int"]
    key = tuple(sorted(words, key=lambda w: (w != "unsigned", w)))
    if not key:
        key = ("int",)
    t = _BASE.get(key)
    if t is None:
        raise CTypeError(f"unknown base type '{' '.join(names)}'")
    return t


def strip(t: CType) -> CType:
    """Enums behave as their underlying integer type in arithmetic."""
    if isinstance(t, Enum):
        return Int("unsigned int" if not t.signed else "int", t.size, t.signed)
    return t


# ---------------------------------------------------------------- layout

def layout(s: Struct, decls: list[tuple]) -> None:
    """Lay out ``decls`` (name, type, bit width or None[, typedef as in ``Member``]) into ``s``
    by the x86-64 SysV rules."""
    members: list[Member] = []
    align = 1
    if s.kind == "union":
        size = 0
        for name, t, bits, *spelled in decls:
            tdef = spelled[0] if spelled else None
            members.append(Member(name, t, 0, 0 if bits is not None else None, bits, tdef))
            if bits is None or name is not None:
                align = max(align, t.align)
            size = max(size, t.size if bits is None else (bits + 7) // 8)
    else:
        bitpos = 0  # in bits from the start of the struct
        for name, t, bits, *spelled in decls:
            tdef = spelled[0] if spelled else None
            if bits is None:
                off = -(-bitpos // 8)
                off = -(-off // t.align) * t.align
                members.append(Member(name, t, off, typedef=tdef))
                bitpos = (off + t.size) * 8
                align = max(align, t.align)
                continue
            unit = t.size * 8
            if bits == 0:                       # zero width: next unit of this type
                bitpos = -(-bitpos // unit) * unit
                continue
            if bitpos // unit != (bitpos + bits - 1) // unit:
                bitpos = -(-bitpos // unit) * unit   # does not fit in the current unit
            unit_start = (bitpos // unit) * unit
            members.append(Member(name, t, unit_start // 8, bitpos - unit_start, bits, tdef))
            bitpos += bits
            if name is not None:
                align = max(align, t.align)
        size = -(-bitpos // 8)
    s.members = members
    s.align = align
    s.size = -(-size // align) * align
    s.complete = True


# ---------------------------------------------------------------- building types from the AST

class TypeEnv:
    """Typedefs, tagged types and enum constants declared by a translation unit."""

    def __init__(self) -> None:
        self.typedefs: dict[str, CType] = {}
        self.structs: dict[str, Struct] = {}
        self.unions: dict[str, Struct] = {}
        self.enums: dict[str, Enum] = {}
        self.enum_consts: dict[str, int] = {}
        self.globals: dict[str, CType] = {}   # non-typedef declarations at file scope
        # typedef name -> (the typedef its declaration names, declarator depth), as Member.typedef
        self.typedef_of: dict[str, tuple[str, int]] = {}

    # -- lookup
    def struct(self, tag: str) -> Struct:
        s = self.structs.get(tag)
        if s is None or not s.complete:
            raise KeyError(f"struct {tag} is not defined")
        return s

    def union(self, tag: str) -> Struct:
        u = self.unions.get(tag)
        if u is None or not u.complete:
            raise KeyError(f"union {tag} is not defined")
        return u

    def parse_type(self, spelling: str) -> CType:
        ast = parse_c(f"typedef {spelling} __tracesim_t;", "<type>", typedefs=self.typedefs)
        return self.type_of(ast.ext[0].type)

    # -- declarations
    def add(self, ast: c_ast.FileAST) -> None:
        for node in ast.ext:
            if isinstance(node, c_ast.Typedef):
                self.typedefs[node.name] = self.type_of(node.type)
                spelled = self.typedef_spelled(node.type)
                if spelled is not None:
                    self.typedef_of[node.name] = spelled
            elif isinstance(node, c_ast.Decl):
                t = self.type_of(node.type)
                if node.name:
                    self.globals[node.name] = t
            elif isinstance(node, c_ast.FuncDef):
                self.globals[node.decl.name] = self.type_of(node.decl.type)

    def type_of(self, node: c_ast.Node) -> CType:
        if isinstance(node, c_ast.Typename):
            return self.type_of(node.type)
        if isinstance(node, c_ast.TypeDecl):
            return self.type_of(node.type)
        if isinstance(node, c_ast.IdentifierType):
            if len(node.names) == 1 and node.names[0] in self.typedefs:
                return self.typedefs[node.names[0]]
            return base_type(node.names)
        if isinstance(node, c_ast.PtrDecl):
            return Pointer(self.type_of(node.type))
        if isinstance(node, c_ast.ArrayDecl):
            elem = self.type_of(node.type)
            count = None if node.dim is None else self.const_value(node.dim)
            if count is not None and count < 0:
                raise CTypeError(f"array size is negative ({count})")
            return Array(elem, count)
        if isinstance(node, c_ast.FuncDecl):
            ret = self.type_of(node.type)
            params: list[CType] = []
            variadic = False
            for p in (node.args.params if node.args else []):
                if isinstance(p, c_ast.EllipsisParam):
                    variadic = True
                    continue
                pt = self.type_of(p.type)
                if isinstance(pt, Void):
                    continue
                if isinstance(pt, Array):
                    pt = Pointer(pt.elem)
                params.append(pt)
            return Func(ret, tuple(params), variadic)
        if isinstance(node, (c_ast.Struct, c_ast.Union)):
            return self._tagged(node)
        if isinstance(node, c_ast.Enum):
            return self._enum(node)
        raise CTypeError(f"cannot build a type from {type(node).__name__}")

    def _tagged(self, node: c_ast.Struct | c_ast.Union) -> Struct:
        kind = "union" if isinstance(node, c_ast.Union) else "struct"
        table = self.unions if kind == "union" else self.structs
        s = table.get(node.name) if node.name else None
        if s is None:
            s = Struct(kind, node.name)
            if node.name:
                table[node.name] = s
        if node.decls is not None:
            if s.complete:
                if s.members:  # a second definition of the same tag: keep the first
                    return s
            decls = []
            for d in node.decls:
                t = self.type_of(d.type)
                bits = None if d.bitsize is None else self.const_value(d.bitsize)
                decls.append((d.name, t, bits, self.typedef_spelled(d.type)))
            layout(s, decls)
        return s

    def typedef_spelled(self, node: c_ast.Node) -> tuple[str, int] | None:
        """(typedef name, declarator depth) when a declaration's type is spelled with a typedef."""
        depth = 0
        while isinstance(node, (c_ast.PtrDecl, c_ast.ArrayDecl)):
            node, depth = node.type, depth + 1
        if isinstance(node, c_ast.TypeDecl) and isinstance(node.type, c_ast.IdentifierType):
            names = node.type.names
            if len(names) == 1 and names[0] in self.typedefs:
                return names[0], depth
        return None

    def _enum(self, node: c_ast.Enum) -> Enum:
        if node.values is None:
            return self.enums.get(node.name) or Enum(node.name)
        values = []
        nxt = 0
        for e in node.values.enumerators:
            v = nxt if e.value is None else self.const_value(e.value)
            self.enum_consts[e.name] = v
            values.append((e.name, v))
            nxt = v + 1
        lo = min((v for _, v in values), default=0)
        hi = max((v for _, v in values), default=0)
        size = 4 if lo >= -(1 << 31) and hi < (1 << 32) else 8
        en = Enum(node.name, tuple(values), size, lo < 0)
        if node.name:
            self.enums[node.name] = en
        return en

    def const_value(self, node: c_ast.Node) -> int:
        """Evaluate an integer constant expression (array sizes, enum values, bit widths)."""
        if isinstance(node, c_ast.Constant):
            return parse_int_literal(node.value) if node.type != "char" else char_value(node.value)
        if isinstance(node, c_ast.ID):
            if node.name in self.enum_consts:
                return self.enum_consts[node.name]
            raise CTypeError(f"'{node.name}' is not a constant")
        if isinstance(node, c_ast.UnaryOp):
            if node.op == "sizeof":
                return self.type_of(node.expr).size if isinstance(node.expr, c_ast.Typename) \
                    else self.const_value(node.expr)
            v = self.const_value(node.expr)
            return {"-": -v, "+": v, "~": ~v, "!": int(not v)}[node.op]
        if isinstance(node, c_ast.BinaryOp):
            a, b = self.const_value(node.left), self.const_value(node.right)
            ops = {"+": a + b, "-": a - b, "*": a * b, "<<": a << b if b >= 0 else 0,
                   ">>": a >> b if b >= 0 else 0, "&": a & b, "|": a | b, "^": a ^ b,
                   "<": int(a < b), ">": int(a > b), "<=": int(a <= b), ">=": int(a >= b),
                   "==": int(a == b), "!=": int(a != b), "&&": int(bool(a and b)),
                   "||": int(bool(a or b))}
            if node.op in ("/", "%"):
                if b == 0:
                    raise CTypeError("division by zero in a constant expression")
                q = abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1)
                return q if node.op == "/" else a - q * b
            return ops[node.op]
        if isinstance(node, c_ast.TernaryOp):
            return self.const_value(node.iftrue if self.const_value(node.cond)
                                    else node.iffalse)
        if isinstance(node, c_ast.Cast):
            v = self.const_value(node.expr)
            t = strip(self.type_of(node.to_type))
            if isinstance(t, Int):
                v &= (1 << (8 * t.size)) - 1
                if t.signed and v >> (8 * t.size - 1):
                    v -= 1 << (8 * t.size)
            return v
        raise CTypeError(f"not an integer constant expression ({type(node).__name__})")


def parse_int_literal(text: str) -> int:
    t = text.rstrip("uUlL")
    if t.lower().startswith("0x"):
        return int(t, 16)
    if t.lower().startswith("0b"):
        return int(t, 2)
    if len(t) > 1 and t.startswith("0"):
        return int(t, 8)
    return int(t)


def char_value(text: str) -> int:
    """Value of a character constant such as ``'a'`` or ``'\\n'``."""
    body = text[1:-1]
    if body.startswith("\\"):
        esc = {"n": 10, "t": 9, "r": 13, "0": 0, "\\": 92, "'": 39, '"': 34, "a": 7, "b": 8,
               "f": 12, "v": 11}
        if body[1] == "x":
            return int(body[2:], 16)
        if body[1].isdigit():
            return int(body[1:], 8)
        return esc[body[1]]
    return ord(body)


# ---------------------------------------------------------------- preprocess and parse

def preprocess(source: str, filename: str = "<source>", include_dirs: Iterable[Path | str] = (),
               defines: Iterable[str] = (), prelude: str = GNU_PRELUDE) -> str:
    """Run the C preprocessor (pcpp) and return text for pycparser (with #line markers)."""
    pp = Preprocessor()
    pp.line_directive = "#line"
    pp.compress = 2   # drop blank lines
    for d in include_dirs:
        pp.add_path(str(d))
    for d in defines:
        name, _, value = d.partition("=")
        pp.define(f"{name} {value or '1'}")
    errors: list[str] = []
    pp.on_error = lambda file, line, msg: errors.append(f"{file}:{line}: error: {msg}")
    pp.parse(prelude, "<prelude>")
    out = io.StringIO()
    pp.write(out)
    pp.parse(source, filename)
    out = io.StringIO()
    pp.write(out)
    if errors:
        raise CTypeError("\n".join(errors))
    return out.getvalue()


def parse_c(text: str, filename: str = "<source>", typedefs: dict | None = None) -> c_ast.FileAST:
    """Parse preprocessed C. ``typedefs`` seeds names already known as types."""
    parser = c_parser.CParser()
    if typedefs:
        prefix = "".join(f"typedef int {name};\n" for name in typedefs)
        ast = parser.parse(prefix + text, filename)
        ast.ext = ast.ext[len(typedefs):]
        return ast
    return parser.parse(text, filename)


@functools.cache
def kernel_types() -> TypeEnv:
    """The modelled kernel's types, from ``include/tracesim/kernel.h`` (parsed once)."""
    header = INCLUDE_DIR / "tracesim" / "kernel.h"
    text = preprocess(header.read_text(), str(header), [INCLUDE_DIR])
    env = TypeEnv()
    env.add(parse_c(text, str(header)))
    return env
