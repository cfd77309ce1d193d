"""Evaluate an event's ``print fmt`` (the kernel's TP_printk after preprocessing) on a record.

The text is what the ``format`` file shows after ``print fmt: ``: a C string literal, then the
arguments as C expressions over ``REC->field``. Supported: ``__get_str``, ``__get_dynamic_array``,
``__print_symbolic``, ``__print_flags``, casts, ``?:``, ``|| && == != < <= > >= | ^ & << >> + - * /
% ! ~``, numbers, strings. Conversions: ``%d %i %u %x %X %o %c %s`` with flags/width/precision
and h/hh/l/ll/L/z/t/j lengths, ``%p`` (6.x: a hashed id — 32 bits of a keyed hash, 16 hex digits
zero padded; NULL prints as zeros), ``%px`` (raw), ``%pS``/``%pB`` (``sym+0xoff/0xsize``),
``%ps`` (``sym``), ``%pK`` (hashed like ``%p``).

The printer is compiled once per event; ``symbols`` passed at print time provides
``hash_ptr(addr) -> int`` and ``lookup(addr) -> (name, offset, size) | None``.
"""
from __future__ import annotations

import functools
import re
from typing import Any, Callable

Value = Any
Expr = Callable[[dict, Any], Value]

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>0[xX][0-9a-fA-F]+[uUlL]*|\d+[uUlL]*)
    | (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<chr>'(?:[^'\\]|\\.)')
    | (?P<arrow>->)
    | (?P<op><<|>>|<=|>=|==|!=|&&|\|\||[-+*/%<>&|^!~?:,(){}])
    | (?P<id>[A-Za-z_][A-Za-z_0-9]*)
    )""", re.X)

_C_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", "0": "\0", "r": "\r"}

_TYPE_WORDS = {"void", "char", "short", "int", "long", "unsigned", "signed", "const", "struct",
               "enum", "bool", "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "size_t",
               "gfp_t", "__u8", "__u16", "__u32", "__u64", "__force"}


def _const(value: Value) -> Expr:
    """A constant expression: folded at compile time (gfp tables are hundreds of constants)."""
    def const(r: dict, s: Any) -> Value:
        return value
    const.value = value            # type: ignore[attr-defined]
    return const


def _is_const(*exprs: Expr) -> bool:
    return all(hasattr(e, "value") for e in exprs)


def _unescape(lit: str) -> str:
    return re.sub(r"\\(.)", lambda m: _C_ESCAPES.get(m.group(1), m.group(1)), lit[1:-1])


def _tokenize(text: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"print fmt: cannot parse at {text[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    """Recursive descent over the tokens, producing closures ``f(rec_values, symbols)``."""

    BINARY = [("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="), ("<", "<=", ">", ">="),
              ("<<", ">>"), ("+", "-"), ("*", "/", "%")]

    def __init__(self, tokens: list[tuple[str, str]], fields: frozenset[str]) -> None:
        self.toks = tokens
        self.i = 0
        self.fields = fields

    def peek(self, k: int = 0) -> tuple[str, str]:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ("eof", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if value is not None and tok[1] != value:
            raise ValueError(f"print fmt: expected {value!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def expr(self) -> Expr:
        cond = self.binary(0)
        if self.peek()[1] != "?":
            return cond
        self.take("?")
        a = self.expr()
        self.take(":")
        b = self.expr()
        if _is_const(cond):
            return a if cond.value else b          # type: ignore[attr-defined]
        return lambda r, s: a(r, s) if cond(r, s) else b(r, s)

    def binary(self, level: int) -> Expr:
        if level == len(self.BINARY):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek()[0] == "op" and self.peek()[1] in self.BINARY[level]:
            op = self.take()[1]
            right = self.binary(level + 1)
            left = _binop(op, left, right)
        return left

    def unary(self) -> Expr:
        kind, tok = self.peek()
        if tok in ("!", "~", "-") and kind == "op":
            self.take()
            inner = self.unary()
            if tok == "!":
                fn: Expr = lambda r, s: int(not inner(r, s))
            elif tok == "~":
                fn = lambda r, s: ~inner(r, s) & 0xFFFFFFFFFFFFFFFF
            else:
                fn = lambda r, s: -inner(r, s)
            return _const(fn({}, None)) if _is_const(inner) else fn
        if tok == "(" and self.peek(1)[0] == "id" and self.peek(1)[1] in _TYPE_WORDS:
            self.take("(")
            words = []
            while self.peek()[1] != ")":
                words.append(self.take()[1])
            self.take(")")
            inner = self.unary()
            return _cast(" ".join(w for w in words if w != "__force"), inner)
        return self.primary()

    def primary(self) -> Expr:
        kind, tok = self.take()
        if kind == "num":
            return _const(int(tok.rstrip("uUlL"), 0))
        if kind == "str":
            text = _unescape(tok)
            while self.peek()[0] == "str":           # "a" "b" concatenation
                text += _unescape(self.take()[1])
            return _const(text)
        if kind == "chr":
            return _const(ord(_unescape(tok)))
        if tok == "(":
            e = self.expr()
            self.take(")")
            return e
        if tok == "{":
            items = [self.expr()]
            while self.peek()[1] == ",":
                self.take(",")
                items.append(self.expr())
            self.take("}")
            if _is_const(*items):
                return _const(tuple(f.value for f in items))    # type: ignore[attr-defined]
            return lambda r, s: tuple(f(r, s) for f in items)
        if kind == "id" and tok == "REC":
            self.take("->")
            name = self.take()[1]
            if name not in self.fields:
                raise ValueError(f"print fmt: unknown field {name!r}")
            return lambda r, s: r[name]
        if kind == "id" and self.peek()[1] == "(":
            return self.call(tok)
        raise ValueError(f"print fmt: unexpected {tok!r}")

    def call(self, fn: str) -> Expr:
        self.take("(")
        if fn in ("__get_str", "__get_dynamic_array", "__get_rel_str"):
            name = self.take()[1]          # a field name, not an expression
            self.take(")")
            if name not in self.fields:
                raise ValueError(f"print fmt: unknown field {name!r}")
            return lambda r, s: r[name]
        args: list[Expr] = []
        if self.peek()[1] != ")":
            args.append(self.expr())
            while self.peek()[1] == ",":
                self.take(",")
                args.append(self.expr())
        self.take(")")
        if fn == "__print_symbolic":
            return _print_symbolic(args[0], args[1:])
        if fn == "__print_flags":
            return _print_flags(args[0], args[1], args[2:])
        raise ValueError(f"print fmt: unsupported function {fn}()")


def _binop(op: str, a: Expr, b: Expr) -> Expr:
    fns: dict[str, Callable[[Any, Any], Any]] = {
        "||": lambda x, y: int(bool(x) or bool(y)), "&&": lambda x, y: int(bool(x) and bool(y)),
        "|": lambda x, y: x | y, "^": lambda x, y: x ^ y, "&": lambda x, y: x & y,
        "==": lambda x, y: int(x == y), "!=": lambda x, y: int(x != y),
        "<": lambda x, y: int(x < y), "<=": lambda x, y: int(x <= y),
        ">": lambda x, y: int(x > y), ">=": lambda x, y: int(x >= y),
        "<<": lambda x, y: (x << y) & 0xFFFFFFFFFFFFFFFF, ">>": lambda x, y: x >> y,
        "+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y,
        "/": lambda x, y: int(x / y) if y else 0, "%": lambda x, y: x % y if y else 0,
    }
    f = fns[op]
    if _is_const(a, b):
        return _const(f(a.value, b.value))         # type: ignore[attr-defined]
    if op == "||":
        return lambda r, s: int(bool(a(r, s)) or bool(b(r, s)))
    if op == "&&":
        return lambda r, s: int(bool(a(r, s)) and bool(b(r, s)))
    return lambda r, s: f(a(r, s), b(r, s))


def _cast(ctype: str, inner: Expr) -> Expr:
    if ctype.endswith("*") or "long" in ctype or ctype in ("u64", "__u64", "size_t"):
        signed = ctype in ("long", "long long", "s64", "signed long")
        bits = 64
    elif "short" in ctype or ctype in ("u16", "s16", "__u16"):
        signed, bits = not ctype.startswith(("unsigned", "u")), 16
    elif "char" in ctype or ctype in ("u8", "s8", "bool", "__u8"):
        signed, bits = ctype in ("signed char", "s8"), 8      # char is unsigned (6.2+)
    else:
        signed, bits = not ctype.startswith(("unsigned", "u", "__u", "gfp_t")), 32
    mask = (1 << bits) - 1

    def cast(r: dict, s: Any) -> Value:
        v = inner(r, s)
        if not isinstance(v, int):
            return v
        v &= mask
        if signed and v >> (bits - 1):
            v -= 1 << bits
        return v
    return _const(cast({}, None)) if _is_const(inner) else cast


def _table(entries: list[Expr]) -> tuple[tuple[int, str], ...]:
    """A ``{ value, "name" }`` table, up to its ``{ 0, NULL }`` end if it has one."""
    if not _is_const(*entries):
        raise ValueError("print fmt: __print_flags/__print_symbolic tables must be constant")
    out = []
    for entry in entries:
        value, name = entry.value                   # type: ignore[attr-defined]
        if not isinstance(name, str):               # NULL: the table ends here
            break
        out.append((value & _ULONG, name))
    return tuple(out)


_ULONG = 0xFFFFFFFFFFFFFFFF
_ERR_PTR_MIN = _ULONG + 1 - 4095            # (unsigned long)-MAX_ERRNO


def _print_symbolic(value: Expr, entries: list[Expr]) -> Expr:
    # trace_print_symbols_seq: the first entry equal to the value, else the value as 0x%lx
    table = _table(entries)

    def sym(r: dict, s: Any) -> str:
        v = value(r, s) & _ULONG
        for n, name in table:
            if n == v:
                return name
        return f"0x{v:x}"
    return sym


def _print_flags(value: Expr, delim: Expr, entries: list[Expr]) -> Expr:
    # trace_print_flags_seq: while bits remain, every entry whose whole mask is set (a zero mask
    # matches too) prints its name and clears its bits; leftover bits print as 0x%lx
    table = _table(entries)

    def flags(r: dict, s: Any) -> str:
        v = value(r, s) & _ULONG
        d = delim(r, s)
        parts = []
        for mask, name in table:
            if not v:
                break
            if v & mask == mask:
                parts.append(name)
                v &= ~mask
        if v:
            parts.append(f"0x{v:x}")
        return d.join(parts)
    return flags


def _split_args(tokens: list[tuple[str, str]]) -> tuple[str, list[list[tuple[str, str]]]]:
    if not tokens or tokens[0][0] != "str":
        raise ValueError("print fmt must start with a string literal")
    fmt = ""
    i = 0
    while i < len(tokens) and tokens[i][0] == "str":
        fmt += _unescape(tokens[i][1])
        i += 1
    args: list[list[tuple[str, str]]] = []
    depth = 0
    for tok in tokens[i:]:
        if tok[1] == "," and depth == 0:
            args.append([])
            continue
        if tok[1] in "({":
            depth += 1
        elif tok[1] in ")}":
            depth -= 1
        args[-1].append(tok)
    return fmt, args


_CONV = re.compile(r"%(?P<flags>[-+ #0]*)(?P<width>\d+|\*)?(?:\.(?P<prec>\d+))?"
                   r"(?P<len>hh|h|ll|l|L|z|t|j)?(?P<conv>[diouxXcsp%])")
_BITS = {"hh": 8, "h": 16, None: 32, "l": 64, "ll": 64, "L": 64, "z": 64, "t": 64, "j": 64}


def _int_piece(spec: str, conv: str, bits: int) -> Callable[[Value, Any], str]:
    mask = (1 << bits) - 1
    pyconv = "d" if conv in "diu" else conv
    pyfmt = "%" + spec + pyconv

    def piece(v: Value, s: Any) -> str:
        v = int(v) & mask
        if conv in "di" and v >> (bits - 1):
            v -= 1 << bits
        return pyfmt % v
    return piece


def _ptr_piece(ext: str, spec: str) -> Callable[[Value, Any], str]:
    def hashed(v: Value, s: Any) -> str:
        # ptr_to_id: NULL and error pointers (IS_ERR_OR_NULL) print as they are
        v &= 0xFFFFFFFFFFFFFFFF
        return f"{v:016x}" if v == 0 or v >= _ERR_PTR_MIN else f"{s.hash_ptr(v):016x}"

    def raw(v: Value, s: Any) -> str:
        return f"{v & 0xFFFFFFFFFFFFFFFF:016x}"

    def sym_off(v: Value, s: Any) -> str:
        hit = s.lookup(v)
        if hit is None:
            return f"0x{v:x}"
        name, off, size = hit
        return f"{name}+0x{off:x}/0x{size:x}"

    def sym(v: Value, s: Any) -> str:
        hit = s.lookup(v)
        return f"0x{v:x}" if hit is None else hit[0]
    fn = {"S": sym_off, "B": sym_off, "s": sym, "x": raw}.get(ext, hashed)
    if spec:
        pyfmt = "%" + spec + "s"
        return lambda v, s: pyfmt % fn(v, s)
    return fn


@functools.lru_cache(maxsize=256)
def _parse(text: str, field_names: frozenset[str]) -> tuple[str, tuple[Expr, ...]]:
    """The format string and the argument expressions (parsed once per text: every Kernel
    declares the same events, and the kmem gfp tables are thousands of tokens)."""
    fmt, arg_tokens = _split_args(_tokenize(text))
    args = []
    for toks in arg_tokens:
        p = _Parser(toks, field_names)
        args.append(p.expr())
        if p.i != len(toks):
            raise ValueError(f"print fmt: trailing tokens in argument {toks!r}")
    return fmt, tuple(args)


def compile_print_fmt(text: str, event: Any) -> Callable[[bytes, Any], str]:
    """A printer (record, symbols) -> text for ``event`` (an object with ``decode`` and ``all_fields``)."""
    fmt, args = _parse(text, frozenset(f.name for f in event.all_fields))
    pieces: list[str | tuple[Callable[[Value, Any], str], int]] = []
    pos = 0
    argi = 0
    for m in _CONV.finditer(fmt):
        pieces.append(fmt[pos:m.start()])
        pos = m.end()
        conv = m.group("conv")
        if conv == "%":
            pieces.append("%")
            continue
        spec = (m.group("flags") or "") + (m.group("width") or "")
        if m.group("prec") is not None:
            spec += "." + m.group("prec")
        if conv == "p":
            ext = fmt[pos] if pos < len(fmt) and fmt[pos] in "SBsxK" else ""
            pos += len(ext)
            fn = _ptr_piece(ext, spec)
        elif conv == "s":
            pyfmt = "%" + spec + "s"
            fn = (lambda pf: lambda v, s: pf % v)(pyfmt)
        elif conv == "c":
            fn = (lambda v, s: chr(v & 0xff))
        else:
            fn = _int_piece(spec, conv, _BITS[m.group("len")])
        pieces.append((fn, argi))
        argi += 1
    pieces.append(fmt[pos:])
    if argi != len(args):
        raise ValueError(f"print fmt: {argi} conversions but {len(args)} arguments")
    plan = [(p, None) if isinstance(p, str) else (p[0], args[p[1]]) for p in pieces if p != ""]
    decode = event.decode

    def printer(record: bytes, symbols: Any) -> str:
        rec = decode(record)
        return "".join(p if e is None else p(e(rec, symbols), symbols) for p, e in plan)
    return printer

