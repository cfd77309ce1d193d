"""Compile an event's ``print fmt`` (the kernel's TP_printk after preprocessing) to a printer.

The text is what the ``format`` file shows after ``print fmt: ``: a C string literal, then the
arguments as C expressions over ``REC->field``. Supported: ``__get_str``, ``__get_dynamic_array``,
``__print_symbolic``, ``__print_flags``, casts, ``?:``, ``|| && == != < <= > >= | ^ & << >> + - * /
% ! ~``, numbers, strings. Conversions: ``%d %i %u %x %X %o %c %s`` with flags/width/precision
and h/hh/l/ll/L/z/t/j lengths, ``%p`` (6.x: a hashed id — 32 bits of a keyed hash, 16 hex digits
zero padded; NULL prints as zeros), ``%px`` (raw), ``%pS``/``%pB`` (``sym+0xoff/0xsize``),
``%ps`` (``sym``), ``%pK`` (hashed like ``%p``), ``%pI4``/``%pI6``/``%pI6c`` (an address
from a ``__u8`` array field), ``%pISpc`` (a ``struct sockaddr_in``/``_in6`` held in a ``__u8``
array: address and port, IPv6 compressed in brackets). As vsnprintf does, every letter and digit
after ``%p`` belongs to the pointer's extension. Identifiers the format names without a
TRACE_DEFINE_ENUM (``{ TCP_ESTABLISHED, "TCP_ESTABLISHED" }``) take their values from the event's
``print_constants``.

Every event's printer is generated Python source, compiled once: one ``unpack_from`` of the
record's fixed part with the event's struct format binds the fields the format uses, and one
``%`` operation builds the text. C semantics are kept where Python differs: constant
subexpressions (the gfp tables are thousands of tokens) are folded at compile time, casts and
conversions truncate and sign-extend to their C width unless the field's own type already fits,
and ``__print_flags``/``__print_symbolic`` become table look-ups (flag texts memoised per value).

``symbols`` passed at print time provides ``hash_ptr(addr) -> int`` and
``lookup(addr) -> (name, offset, size) | None``.
"""
from __future__ import annotations

import functools
import re
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# what a printer reads a record from: the ring buffer page's bytes, or a view of them
Buffer = bytes | bytearray | memoryview

Value = Any

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

_ULONG = 0xFFFFFFFFFFFFFFFF
_ERR_PTR_MIN = _ULONG + 1 - 4095            # (unsigned long)-MAX_ERRNO
_MEMO_MAX = 4096                             # texts remembered per flag table, data_loc strings
_PTR_MEMO_MAX = 65536                        # %p/%pS texts remembered per Symbols


@dataclass(frozen=True)
class _Code:
    """A compiled subexpression: Python source, its kind (``int``/``str``/``any``), the folded
    value of a constant, and for integers whose range is known (fields) their C width."""

    src: str
    typ: str = "any"
    const: bool = False
    value: Any = None
    bits: int = 0
    signed: bool = False


def _const(value: Value) -> _Code:
    typ = "int" if isinstance(value, int) else "str" if isinstance(value, str) else "any"
    return _Code(repr(value), typ, True, value)


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


def _fits(bits: int, signed: bool, to_bits: int, to_signed: bool) -> bool:
    """Whether every value of a (bits, signed) integer is unchanged by a (to_bits, to_signed)
    conversion (bits 0: unknown range)."""
    if not bits:
        return False
    if to_signed:
        return bits <= to_bits if signed else bits < to_bits
    return not signed and bits <= to_bits


def _convert(code: _Code, bits: int, signed: bool) -> _Code:
    """C's conversion of an integer to a (bits, signed) type: truncate, then sign-extend."""
    if code.typ == "str":
        return code
    mask = (1 << bits) - 1
    sign = 1 << (bits - 1)
    if code.const:
        v = code.value
        if not isinstance(v, int):
            return code
        v &= mask
        return _Code(repr(v - (v & sign) * 2 if signed else v), "int", True,
                     v - (v & sign) * 2 if signed else v, bits, signed)
    if code.typ == "int" and _fits(code.bits, code.signed, bits, signed):
        return _Code(code.src, "int", bits=bits, signed=signed)
    x = code.src if code.typ == "int" else f"int({code.src})"
    src = f"((({x}) & {mask:#x}) ^ {sign:#x}) - {sign:#x}" if signed else f"(({x}) & {mask:#x})"
    return _Code(f"({src})" if signed else src, "int", bits=bits, signed=signed)


class _Parser:
    """Recursive descent over the tokens, producing :class:`_Code` with constants folded.

    ``helpers`` collects the objects generated code refers to (tables, flag printers)."""

    BINARY = [("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="), ("<", "<=", ">", ">="),
              ("<<", ">>"), ("+", "-"), ("*", "/", "%")]

    def __init__(self, tokens: list[tuple[str, str]], fields: dict[str, Any],
                 helpers: dict[str, Any], used: set[str],
                 constants: dict[str, int] | None = None) -> None:
        self.constants = constants or {}
        self.toks = tokens
        self.i = 0
        self.fields = fields
        self.helpers = helpers
        self.used = used

    def peek(self, k: int = 0) -> tuple[str, str]:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ("eof", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if value is not None and tok[1] != value:
            raise ValueError(f"print fmt: expected {value!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def helper(self, obj: Any) -> str:
        name = f"_h{len(self.helpers)}"
        self.helpers[name] = obj
        return name

    def expr(self) -> _Code:
        cond = self.binary(0)
        if self.peek()[1] != "?":
            return cond
        self.take("?")
        a = self.expr()
        self.take(":")
        b = self.expr()
        if cond.const:
            return a if cond.value else b
        typ = a.typ if a.typ == b.typ else "any"
        return _Code(f"({a.src} if {cond.src} else {b.src})", typ)

    def binary(self, level: int) -> _Code:
        if level == len(self.BINARY):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek()[0] == "op" and self.peek()[1] in self.BINARY[level]:
            op = self.take()[1]
            right = self.binary(level + 1)
            left = _binop(op, left, right)
        return left

    def unary(self) -> _Code:
        kind, tok = self.peek()
        if tok in ("!", "~", "-") and kind == "op":
            self.take()
            inner = self.unary()
            if inner.const:
                v = inner.value
                return _const(int(not v) if tok == "!" else ~v & _ULONG if tok == "~" else -v)
            if tok == "!":
                return _Code(f"(0 if {inner.src} else 1)", "int")
            if tok == "~":
                return _Code(f"(~{inner.src} & {_ULONG:#x})", "int")
            return _Code(f"(-{inner.src})", "int")
        if tok == "(" and self.peek(1)[0] == "id" and self.peek(1)[1] in _TYPE_WORDS:
            self.take("(")
            words = []
            while self.peek()[1] != ")":
                words.append(self.take()[1])
            self.take(")")
            inner = self.unary()
            return _convert(inner, *_cast_type(" ".join(w for w in words if w != "__force")))
        return self.primary()

    def field(self, name: str) -> _Code:
        f = self.fields.get(name)
        if f is None:
            raise ValueError(f"print fmt: unknown field {name!r}")
        self.used.add(name)
        kind = _field_kind(f)
        if kind == "int":
            return _Code(f"f_{name}", "int", bits=8 * f.size, signed=f.is_signed)
        return _Code(f"f_{name}", "str" if kind in ("str", "flex") else "any")

    def primary(self) -> _Code:
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
            if all(i.const for i in items):
                return _const(tuple(i.value for i in items))
            return _Code("(" + ", ".join(i.src for i in items) + ",)", "any")
        if kind == "id" and tok == "REC":
            self.take("->")
            return self.field(self.take()[1])
        if kind == "id" and self.peek()[1] == "(":
            return self.call(tok)
        if kind == "id" and tok in self.constants:
            return _const(self.constants[tok])
        raise ValueError(f"print fmt: unexpected {tok!r}")

    def call(self, fn: str) -> _Code:
        self.take("(")
        if fn in ("__get_str", "__get_dynamic_array", "__get_rel_str"):
            name = self.take()[1]          # a field name, not an expression
            self.take(")")
            return self.field(name)
        args: list[_Code] = []
        if self.peek()[1] != ")":
            args.append(self.expr())
            while self.peek()[1] == ",":
                self.take(",")
                args.append(self.expr())
        self.take(")")
        if fn == "__print_symbolic":
            fn_name = self.helper(_print_symbolic(_table(args[1:])))
            return _Code(f"{fn_name}({args[0].src})", "str")
        if fn == "__print_flags":
            fn_name = self.helper(_print_flags(_table(args[2:])))
            return _Code(f"{fn_name}({args[0].src}, {args[1].src})", "str")
        raise ValueError(f"print fmt: unsupported function {fn}()")


_FOLD: dict[str, Callable[[Any, Any], Any]] = {
    "||": lambda x, y: int(bool(x) or bool(y)), "&&": lambda x, y: int(bool(x) and bool(y)),
    "|": lambda x, y: x | y, "^": lambda x, y: x ^ y, "&": lambda x, y: x & y,
    "==": lambda x, y: int(x == y), "!=": lambda x, y: int(x != y),
    "<": lambda x, y: int(x < y), "<=": lambda x, y: int(x <= y),
    ">": lambda x, y: int(x > y), ">=": lambda x, y: int(x >= y),
    "<<": lambda x, y: (x << y) & _ULONG, ">>": lambda x, y: x >> y,
    "+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y,
    "/": lambda x, y: int(x / y) if y else 0, "%": lambda x, y: x % y if y else 0,
}


def _binop(op: str, a: _Code, b: _Code) -> _Code:
    if a.const and b.const:
        return _const(_FOLD[op](a.value, b.value))
    if op in ("||", "&&"):
        if a.const:            # 1 && x, 0 || x: the truth of x
            if bool(a.value) == (op == "&&"):
                return _Code(f"(1 if {b.src} else 0)", "int")
            return _const(int(op == "||"))
        word = "or" if op == "||" else "and"
        return _Code(f"(1 if {a.src} {word} {b.src} else 0)", "int")
    if op in ("==", "!=", "<", "<=", ">", ">="):
        return _Code(f"(1 if {a.src} {op} {b.src} else 0)", "int")
    if op == "<<":
        return _Code(f"(({a.src} << {b.src}) & {_ULONG:#x})", "int")
    if op in ("/", "%"):
        return _Code(f"{'_div' if op == '/' else '_mod'}({a.src}, {b.src})", "int")
    return _Code(f"({a.src} {op} {b.src})", "int")


def _cast_type(ctype: str) -> tuple[int, bool]:
    """(bits, signed) of a cast's C type on x86-64 (char is unsigned since 6.2)."""
    if ctype.endswith("*") or "long" in ctype or ctype in ("u64", "__u64", "size_t"):
        return 64, ctype in ("long", "long long", "s64", "signed long")
    if "short" in ctype or ctype in ("u16", "s16", "__u16"):
        return 16, not ctype.startswith(("unsigned", "u"))
    if "char" in ctype or ctype in ("u8", "s8", "bool", "__u8"):
        return 8, ctype in ("signed char", "s8")
    return 32, not ctype.startswith(("unsigned", "u", "__u", "gfp_t"))


def _field_kind(f: Any) -> str:
    """``int`` (scalar), ``str`` (__data_loc string or char array), ``flex`` (trailing char[]),
    ``bytes`` (another array)."""
    if f.type.startswith("__data_loc"):
        return "str"
    if f.type.endswith("[]"):
        return "flex"
    if f.type.endswith("]"):
        return "str" if f.type.startswith("char") else "bytes"
    return "int"


def _table(entries: list[_Code]) -> tuple[tuple[int, str], ...]:
    """A ``{ value, "name" }`` table, up to its ``{ 0, NULL }`` end if it has one."""
    if not all(e.const for e in entries):
        raise ValueError("print fmt: __print_flags/__print_symbolic tables must be constant")
    out = []
    for entry in entries:
        value, name = entry.value
        if not isinstance(name, str):               # NULL: the table ends here
            break
        out.append((value & _ULONG, name))
    return tuple(out)


def _print_symbolic(table: tuple[tuple[int, str], ...]) -> Callable[[int], str]:
    # trace_print_symbols_seq: the first entry equal to the value, else the value as 0x%lx
    names: dict[int, str] = {}
    for n, name in table:
        names.setdefault(n, name)

    def sym(v: int) -> str:
        v &= _ULONG
        name = names.get(v)
        return f"0x{v:x}" if name is None else name
    return sym


def _print_flags(table: tuple[tuple[int, str], ...]) -> Callable[[int, str], str]:
    # trace_print_flags_seq: while bits remain, every entry whose whole mask is set (a zero mask
    # matches too) prints its name and clears its bits; leftover bits print as 0x%lx
    memo: dict[tuple[int, str], str] = {}

    def flags(v: int, delim: str) -> str:
        v &= _ULONG
        text = memo.get((v, delim))
        if text is not None:
            return text
        key = (v, delim)
        parts = []
        for mask, name in table:
            if not v:
                break
            if v & mask == mask:
                parts.append(name)
                v &= ~mask
        if v:
            parts.append(f"0x{v:x}")
        text = delim.join(parts)
        if len(memo) < _MEMO_MAX:
            memo[key] = text
        return text
    return flags


def _ptr_hashed(v: int, s: Any) -> str:
    # ptr_to_id: NULL and error pointers (IS_ERR_OR_NULL) print as they are
    v &= _ULONG
    return "%016x" % (v if v == 0 or v >= _ERR_PTR_MIN else s.hash_ptr(v))


def _ptr_sym_off(v: int, s: Any) -> str:
    hit = s.lookup(v)
    if hit is None:
        return f"0x{v:x}"
    name, off, size = hit
    return f"{name}+0x{off:x}/0x{size:x}"


def _ptr_hashed_memo(v: int, s: Any) -> str:
    """``_ptr_hashed``, the text remembered in ``s.ptr_texts`` (what context printers look up
    first: the same skb and slab addresses print on line after line)."""
    memo = s.ptr_texts           # first: ``hash_raw`` switched later replaces the memo
    text = _ptr_hashed(v, s)
    if len(memo) < _PTR_MEMO_MAX:
        memo[v] = text
    return text


def _ptr_sym_off_memo(v: int, s: Any) -> str:
    """``_ptr_sym_off``, the text remembered in ``s.sym_texts`` (call sites repeat)."""
    text = _ptr_sym_off(v, s)
    memo = s.sym_texts
    if len(memo) < _PTR_MEMO_MAX:
        memo[v] = text
    return text


def _ptr_sym(v: int, s: Any) -> str:
    hit = s.lookup(v)
    return f"0x{v:x}" if hit is None else hit[0]


def _ip4(raw: Any) -> str:
    return ".".join(str(b) for b in bytes(raw)[:4])


def _ip6(raw: Any, compressed: bool) -> str:
    """ip6_string / ip6_compressed_string: words in lowercase hex; compressed drops the
    leading zeros, folds the longest run (of two words or more, the first such) into ``::``
    and prints a v4-mapped or ISATAP address's last 32 bits dotted."""
    raw = bytes(raw)[:16].ljust(16, b"\0")
    words = [raw[i] << 8 | raw[i + 1] for i in range(0, 16, 2)]
    if not compressed:
        return ":".join(f"{w:04x}" for w in words)
    use_v4 = words[:5] == [0] * 5 and words[5] == 0xffff or \
        (words[4] | 0x0200) == 0x0200 and words[5] == 0x5efe
    count = 6 if use_v4 else 8
    best_at, best_len, i = -1, 1, 0
    while i < count:
        j = i
        while j < count and words[j] == 0:
            j += 1
        if j - i > best_len:
            best_at, best_len = i, j - i
        i = j + 1
    out, need_colon, i = "", False, 0
    while i < count:
        if i == best_at:
            out += "::" if (need_colon or i == 0) else ":"
            need_colon = False
            i += best_len
            continue
        out += (":" if need_colon else "") + f"{words[i]:x}"
        need_colon = True
        i += 1
    if use_v4:
        out += (":" if need_colon else "") + _ip4(raw[12:])
    return out


def _sockaddr(raw: Any, ext: str) -> str:
    """``%pIS<flags>``: a sockaddr_in (``addr:port`` with ``p``) or sockaddr_in6 (``[addr]:port``
    with ``p``; ``c`` compresses; ``f`` adds ``/flowinfo``, ``s`` ``%scope``)."""
    raw = bytes(raw).ljust(28, b"\0")
    family = raw[0] | raw[1] << 8
    port = raw[2] << 8 | raw[3]
    if family == 2:
        return _ip4(raw[4:8]) + (f":{port}" if "p" in ext else "")
    if family != 10:
        return "(einval)"
    addr = _ip6(raw[8:24], "c" in ext)
    text = f"[{addr}]:{port}" if "p" in ext else addr
    if "f" in ext:
        text += "/" + "%x" % (int.from_bytes(raw[4:8], "big") & 0xfffff)
    if "s" in ext:
        text += "%" + str(int.from_bytes(raw[24:28], "little"))
    return text


def _ptr_ip(ext: str) -> Callable[[Any, Any], str]:
    """The printer of an ``%pI``/``%pi`` extension over an array field."""
    if ext.startswith(("IS", "iS")):
        return lambda raw, s: _sockaddr(raw, ext[2:])
    if ext[1:2] == "4":
        return lambda raw, s: _ip4(raw)
    compressed = ext[2:3] == "c"
    return lambda raw, s: _ip6(raw, compressed)


def _div(x: int, y: int) -> int:
    return int(x / y) if y else 0


def _mod(x: int, y: int) -> int:
    return x % y if y else 0


def _cstr(raw: Any) -> str:
    raw = bytes(raw)
    nul = raw.find(b"\0")
    return (raw if nul < 0 else raw[:nul]).decode("utf-8", "replace")


_STR_MEMO: dict[bytes, str] = {}


def _data_loc_str(record: Any, loc: int) -> str:
    """A ``__data_loc`` string; decoded texts are remembered (device and cache names repeat)."""
    off = loc & 0xffff
    raw = record[off:off + (loc >> 16)]
    if type(raw) is not bytes:
        raw = bytes(raw)
    text = _STR_MEMO.get(raw)
    if text is None:
        text = _cstr(raw)
        if len(_STR_MEMO) < _MEMO_MAX:
            _STR_MEMO[raw] = text
    return text


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
_PTR_HELPERS = {"S": "_ptr_sym_off", "B": "_ptr_sym_off", "s": "_ptr_sym"}


# The memo each pointer helper has in a context printer (see ``context_printer``): the local
# name it is bound to and the Symbols attribute holding it.
_PTR_MEMOS = {"_ptr_hashed": ("_hp", "ptr_texts"), "_ptr_sym_off": ("_sp", "sym_texts")}


def _conversion(m: re.Match, ext: str, arg: _Code, memo: bool = False) -> tuple[str, str]:
    """One C conversion as (Python % directive, argument source); with ``memo`` a hashed or
    symbolic pointer's text is looked up in the printing Symbols' memo first."""
    conv = m.group("conv")
    spec = (m.group("flags") or "") + (m.group("width") or "")
    if m.group("prec") is not None:
        spec += "." + m.group("prec")
    if conv == "p":
        if ext == "x":
            value = _convert(arg, 64, False).src
            return ("%016x", value) if not spec else (f"%{spec}s", f"('%016x' % {value})")
        if ext[:1] in ("I", "i"):
            if arg.typ == "int":
                raise ValueError(f"print fmt: %p{ext} needs an address array field")
            return f"%{spec}s", f"_ptr_ip_{ext}({arg.src}, s)"
        fn = _PTR_HELPERS.get(ext[:1], "_ptr_hashed")
        if memo and fn in _PTR_MEMOS:
            return f"%{spec}s", f"({_PTR_MEMOS[fn][0]}.get({arg.src}) or {fn}_memo({arg.src}, s))"
        return f"%{spec}s", f"{fn}({arg.src}, s)"
    if conv == "s":
        return f"%{spec}s", arg.src
    if conv == "c":
        return f"%{spec}c", f"({arg.src} & 0xff)"
    converted = _convert(arg, _BITS[m.group("len")], conv in "di")
    return f"%{spec}{'d' if conv in 'diu' else conv}", converted.src


def _plan(fmt: str, args: Sequence[_Code], memo: bool = False) -> tuple[str, list[str]]:
    """The Python format string and the argument sources of a C format and its arguments."""
    out: list[str] = []
    srcs: list[str] = []
    pos = 0
    argi = 0
    for m in _CONV.finditer(fmt):
        out.append(fmt[pos:m.start()].replace("%", "%%"))
        pos = m.end()
        if m.group("conv") == "%":
            out.append("%%")
            continue
        ext = ""
        if m.group("conv") == "p":
            while pos < len(fmt) and fmt[pos].isalnum():     # vsnprintf skips them all
                ext += fmt[pos]
                pos += 1
        if argi >= len(args):
            raise ValueError(f"print fmt: more conversions than the {len(args)} arguments")
        directive, src = _conversion(m, ext, args[argi], memo)
        out.append(directive)
        srcs.append(src)
        argi += 1
    out.append(fmt[pos:].replace("%", "%%"))
    if argi != len(args):
        raise ValueError(f"print fmt: {argi} conversions but {len(args)} arguments")
    return "".join(out), srcs


@functools.lru_cache(maxsize=256)
def _build(text: str, fields: tuple[Any, ...], fixed_format: str, prefix: str,
           suffix: str, constants: tuple[tuple[str, int], ...] = ()) -> Callable[[Buffer, Any], str]:
    """Generate and compile the printer (cached: every Kernel declares the same events)."""
    printer = _generate(text, fields, fixed_format, prefix, suffix, constants, context=False)
    printer.build_args = (  # type: ignore[attr-defined]
        text, fields, fixed_format, prefix, suffix, constants)
    return printer


def _generate(text: str, fields: tuple[Any, ...], fixed_format: str, prefix: str,
              suffix: str, constants: tuple[tuple[str, int], ...],
              context: bool) -> Callable[..., str]:
    """The printer's source, compiled: ``printer(rec, s)``, or with ``context`` the whole trace
    line ``printer(rec, s, head, ts)`` (see :func:`context_printer`)."""
    fmt, arg_tokens = _split_args(_tokenize(text))
    by_name = {f.name: f for f in fields}
    helpers: dict[str, Any] = {}
    used: set[str] = set()
    args = []
    for toks in arg_tokens:
        p = _Parser(toks, by_name, helpers, used, dict(constants))
        args.append(p.expr())
        if p.i != len(toks):
            raise ValueError(f"print fmt: trailing tokens in argument {toks!r}")
    pyfmt, srcs = _plan(fmt, args, memo=context)
    pyfmt = prefix.replace("%", "%%") + pyfmt + suffix.replace("%", "%%")
    body = []
    if context:
        # ``head`` is comm-pid [cpu] flags and a space; then `` %5lu.%06lu: `` of the
        # timestamp rounded to the microsecond (ns2usecs), as output.format_lines prints them
        pyfmt = "%s%5d.%06d: " + pyfmt
        srcs = ["head", "_us // 1000000", "_us % 1000000", *srcs]
        body.append("    _us = (ts + 500) // 1000")
        for fn, (local, attr) in _PTR_MEMOS.items():
            if any(f"{fn}_memo(" in src for src in srcs):
                body.append(f"    {local} = s.{attr}")
    if used:
        # the fixed part unpacks to every field but a trailing flexible array, in order
        names = [f"f_{f.name}" if f.name in used else "_" for f in fields
                 if _field_kind(f) != "flex"]
        body.append(f"    {', '.join(names)}, = _unpack(rec, 0)")
        for f in fields:
            if f.name not in used:
                continue
            kind = _field_kind(f)
            if f.type.startswith("__data_loc") and context:
                # the memo first, the record being bytes (what the readers hand out)
                body.append(f"    _o = f_{f.name} & 0xffff")
                body.append(f"    f_{f.name} = _strs.get(rec[_o:_o + (f_{f.name} >> 16)]) "
                            f"or _data_loc_str(rec, f_{f.name})")
            elif f.type.startswith("__data_loc"):
                body.append(f"    f_{f.name} = _data_loc_str(rec, f_{f.name})")
            elif kind == "str":
                body.append(f"    f_{f.name} = _cstr(f_{f.name})")
            elif kind == "flex":
                body.append(f"    f_{f.name} = _cstr(rec[{f.offset}:])")
    if srcs:
        body.append(f"    return {pyfmt!r} % ({', '.join(srcs)},)")
    else:
        body.append(f"    return {(pyfmt % ())!r}")
    params = "rec, s, head, ts" if context else "rec, s"
    source = f"def printer({params}):\n" + "\n".join(body) + "\n"
    namespace: dict[str, Any] = {
        "_unpack": struct.Struct(fixed_format).unpack_from, "_cstr": _cstr,
        "_data_loc_str": _data_loc_str, "_ptr_hashed": _ptr_hashed,
        "_ptr_sym_off": _ptr_sym_off, "_ptr_sym": _ptr_sym, "_div": _div, "_mod": _mod,
        "_ptr_hashed_memo": _ptr_hashed_memo, "_ptr_sym_off_memo": _ptr_sym_off_memo,
        "_strs": _STR_MEMO,
        **helpers,
        **{f"_ptr_ip_{ext}": _ptr_ip(ext) for ext in re.findall(r"_ptr_ip_(\w+)\(", source)},
    }
    kind = "context " if context else ""
    exec(compile(source, f"<print fmt {kind}{prefix or text[:40]}>", "exec"), namespace)
    printer = namespace["printer"]
    printer.source = source                    # for tests and for reading what was generated
    return printer


_context_lock = threading.Lock()


def context_printer(printer: Callable[[Buffer, Any], str]) -> Callable[..., str] | None:
    """For a printer made by :func:`compile_print_fmt`: the same text as a whole trace line in
    the default layout, ``line(rec, symbols, head, ts) == head + "%5lu.%06lu: " + printer(rec,
    symbols)`` (``ts`` in ns, rounded to the microsecond), generated once and kept on the
    printer. It looks hashed (``%p``) and symbolic (``%pS``) pointer texts up in
    ``symbols.ptr_texts``/``symbols.sym_texts`` first (a :class:`~tracesim.kernel_model.trace.
    symbols.Symbols` keeps them), and ``__data_loc`` strings in the decoded-string memo, so
    the record must be ``bytes``. None for printers written by hand."""
    line = getattr(printer, "context", None)
    if line is not None:
        return line
    args = getattr(printer, "build_args", None)
    if args is None:
        return None
    with _context_lock:
        line = getattr(printer, "context", None)
        if line is None:
            text, fields, fixed_format, prefix, suffix, constants = args
            line = _generate(text, fields, fixed_format, prefix, suffix, constants, True)
            printer.context = line          # type: ignore[attr-defined]
    return line


def compile_print_fmt(text: str, event: Any, prefix: str = "",
                      suffix: str = "") -> Callable[[Buffer, Any], str]:
    """A printer (record, symbols) -> ``prefix`` + text + ``suffix`` for ``event`` (an object with
    ``all_fields`` and ``fixed_format``, the struct format of its record's fixed part, and
    optionally ``print_constants``, the values of identifiers the format names)."""
    constants = tuple(sorted(getattr(event, "print_constants", {}).items()))
    return _build(text, tuple(event.all_fields), event.fixed_format, prefix, suffix, constants)
