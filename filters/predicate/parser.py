"""The filter parser: trace_events_filter.c's calc_stack(), predicate_parse() and parse_pred().

It is a character-level port rather than a lexer + grammar, because the kernel's error positions,
errno values and quirks come from exactly how it walks the string:

* positions handed to parse_pred() are one past the predicate's first byte (``pos = ptr - str``
  after ``ptr++``), so ``name == 5`` reports column 9 and ``nme == lo`` column 4;
* calc_stack() runs first: unbalanced ``(`` returns -2 (ENOENT), a stray ``)`` -1 (EPERM), an
  unclosed quote -3 (ESRCH); no predicate at all returns -EINVAL with no parse error;
* a predicate that does not start with a field name makes parse_pred() return -1 (EPERM) with no
  parse error (``|||`` reads back as ``Error: (0)``); junk after a predicate is "Too many terms"
  with EPERM;
* a dangling final ``&&``/``||`` is ignored, as the kernel's program builder never processes it.

The result is the kernel's program (prog_entry[]): predicates run in order; when a predicate's
result equals ``when_to_branch`` execution continues at ``target + 1``; index N means TRUE, N+1
FALSE. compile.py turns it into Python.
"""
from __future__ import annotations

import errno as E
from dataclasses import dataclass
from typing import Protocol

from tracesim.filters.predicate import errors as FE
from tracesim.filters.predicate import fields as F
from tracesim.filters.predicate.cpulist import CpulistError, cpulist_parse
from tracesim.filters.predicate.ctype import isalnum, isdigit, isspace
from tracesim.filters.predicate.glob import Pattern, parse_pattern
from tracesim.filters.predicate.kstrtox import kstrtoll, kstrtoul, kstrtoull

# Operators in the kernel's match order ("<=" before "<", ">=" before ">").
OPS = ("~", "!=", "==", "<=", "<", ">=", ">", "&")
MAX_FILTER_STR_VAL = 256
NUM_BUF_SIZE = 24
U64_MASK = (1 << 64) - 1

INVERT = 1
PROCESS_AND = 2
PROCESS_OR = 4

# which filter_pred_* function a predicate runs (enum filter_pred_fn)
FN_NOP = "nop"
FN_EQ = "eq"  # filter_pred_8/16/32/64 (== and !=, unsigned)
FN_CMP = "cmp"  # filter_pred_[su]8..64 (< <= > >= &)
FN_SCALAR_CPUMASK = "scalar_cpumask"  # filter_pred_N_cpumask: numeric field vs CPUS{...}
FN_COMM = "comm"
FN_STRING = "string"
FN_STRLOC = "strloc"
FN_STRRELLOC = "strrelloc"
FN_PCHAR = "pchar"
FN_PCHAR_USER = "pchar_user"
FN_CPU = "cpu"
FN_CPU_CPUMASK = "cpu_cpumask"
FN_CPUMASK = "cpumask"
FN_CPUMASK_CPU = "cpumask_cpu"
FN_FUNCTION = "function"


class SymbolLookup(Protocol):
    """What ``.function`` needs from kallsyms."""

    def lookup_name(self, name: str) -> int:
        """Address of ``name``, 0 when unknown (kallsyms_lookup_name)."""

    def lookup_size_offset(self, addr: int) -> tuple[int, int] | None:
        """(size, offset) of the function containing ``addr`` (kallsyms_lookup_size_offset)."""


@dataclass(frozen=True)
class ParseContext:
    nr_cpu_ids: int = 64
    symbols: SymbolLookup | None = None


@dataclass(frozen=True)
class Predicate:
    """One ``field OP value`` term, resolved to the kernel's predicate function and operands."""

    field: F.Field
    op: str
    fn: str
    negate: bool = False  # pred->not
    val: int = 0  # pred->val as u64
    val2: int = 0  # pred->val2 (.function end address)
    mask: int | None = None  # pred->mask (CPUS{} with two or more CPUs)
    pattern: Pattern | None = None
    ustring: bool = False


@dataclass(frozen=True)
class ProgramEntry:
    predicate: Predicate
    when_to_branch: bool
    target: int


class ParseFailure(Exception):
    """What a kernel parse step returns on failure: -errno and the recorded parse error."""

    def __init__(self, errno: int, lasterr: int = FE.NONE, pos: int = 0) -> None:
        super().__init__(errno, lasterr, pos)
        self.errno = errno
        self.lasterr = lasterr
        self.pos = pos


def _errno_of(ret: int) -> int:
    """The kernel returns small negative numbers that userspace reads as errno values."""
    return -ret


# --- calc_stack -------------------------------------------------------------------------------

_TOO_MANY_CLOSE = -1
_TOO_MANY_OPEN = -2
_MISSING_QUOTE = -3


def calc_stack(buf: str, length: int) -> tuple[int, int]:
    """(max paren depth, predicate count) or ParseFailure, as calc_stack() + process_preds()."""
    is_pred = False
    nr_preds = 0
    opened = 1
    max_open = 1
    last_quote = 0
    quote = ""
    i = 0
    while i < length:
        ch = buf[i]
        if isspace(ch):
            i += 1
            continue
        if quote:
            if ch == quote:
                quote = ""
            i += 1
            continue
        if ch in ("'", '"'):
            quote = ch
            last_quote = i
        elif ch in ("|", "&"):
            if buf[i + 1] == ch:
                is_pred = False
                i += 1
                continue
        elif ch == "(":
            is_pred = False
            opened += 1
            max_open = max(max_open, opened)
            i += 1
            continue
        elif ch == ")":
            is_pred = False
            if opened == 1:
                raise ParseFailure(_errno_of(_TOO_MANY_CLOSE), FE.TOO_MANY_CLOSE, i)
            opened -= 1
            i += 1
            continue
        if not is_pred:
            nr_preds += 1
            is_pred = True
        i += 1
    if quote:
        raise ParseFailure(_errno_of(_MISSING_QUOTE), FE.MISSING_QUOTE, last_quote)
    if opened != 1:
        level = opened
        i -= 1
        while i > 0:  # find the bad open, scanning back (index 0 is never inspected)
            ch = buf[i]
            if quote:
                if ch == quote:
                    quote = ""
            elif ch == "(":
                if level == opened:
                    raise ParseFailure(_errno_of(_TOO_MANY_OPEN), FE.TOO_MANY_OPEN, i)
                level -= 1
            elif ch == ")":
                level += 1
            elif ch in ("'", '"'):
                quote = ch
            i -= 1
        raise ParseFailure(_errno_of(_TOO_MANY_OPEN), FE.TOO_MANY_OPEN, 0)
    if not nr_preds:
        raise ParseFailure(E.EINVAL)
    return max_open, nr_preds


# --- parse_pred -------------------------------------------------------------------------------


def _select_comparison_fn(op: str, size: int) -> str:
    if size not in (1, 2, 4, 8):
        return FN_NOP
    return FN_EQ if op in ("==", "!=") else FN_CMP


def parse_pred(
    buf: str, base: int, pos: int, table: F.FieldTable, ctx: ParseContext
) -> tuple[int, Predicate]:
    """(bytes consumed from ``base``, predicate) or ParseFailure; errors at ``pos + i``."""
    i = 0
    while isspace(buf[base + i]):
        i += 1
    start = i
    while isalnum(buf[base + i]) or buf[base + i] == "_":
        i += 1
    if i == start:
        raise ParseFailure(_errno_of(-1))
    field = table.find(buf[base + start : base + i])
    if field is None:
        raise ParseFailure(E.EINVAL, FE.FIELD_NOT_FOUND, pos + i)

    def fail(lasterr: int, at: int) -> ParseFailure:
        return ParseFailure(E.EINVAL, lasterr, at)

    ustring = buf.startswith(".ustring", base + i)
    if ustring:
        i += len(".ustring")
    function = buf.startswith(".function", base + i)
    if function:
        i += len(".function")
    while isspace(buf[base + i]):
        i += 1
    op = next((o for o in OPS if buf.startswith(o, base + i)), None)
    if op is None:
        raise fail(FE.INVALID_OP, pos + i)
    i += len(op)
    while isspace(buf[base + i]):
        i += 1
    start = i
    ch = buf[base + i]

    if function:
        return _parse_function_value(buf, base, pos, i, field, op, ctx)

    if buf.startswith("CPUS", base + i):
        return _parse_cpumask_value(buf, base, pos, i, field, op, ctx)

    if ch in ("'", '"'):
        negate = op == "!="
        if op not in ("!=", "~", "=="):
            raise fail(FE.ILLEGAL_FIELD_OP, pos + i)
        if not field.is_string:
            raise fail(FE.EXPECT_DIGIT, pos + i)
        i += 1
        while buf[base + i] != "\0" and buf[base + i] != ch:
            i += 1
        if buf[base + i] == "\0":
            raise fail(FE.MISSING_QUOTE, pos + i)
        start += 1
        if i - start >= MAX_FILTER_STR_VAL:
            raise fail(FE.OPERAND_TOO_LONG, pos + i)
        value = buf[base + start : base + i].encode("latin-1")
        pattern = parse_pattern(value, op == "~", negate)
        fn = {
            F.COMM: FN_COMM,
            F.STATIC_STRING: FN_STRING,
            F.DYN_STRING: FN_STRLOC,
            F.RDYN_STRING: FN_STRRELLOC,
        }.get(field.filter_type, FN_PCHAR_USER if ustring else FN_PCHAR)
        return i + 1, Predicate(field, op, fn, pattern.inverted, pattern=pattern, ustring=ustring)

    if isdigit(ch) or ch == "-":
        if field.is_string:
            raise fail(FE.EXPECT_STRING, pos + i)
        if op == "~":
            raise fail(FE.ILLEGAL_FIELD_OP, pos + i)
        if ch == "-":
            i += 1
        while isalnum(buf[base + i]):
            i += 1
        if i - start >= NUM_BUF_SIZE:
            raise fail(FE.OPERAND_TOO_LONG, pos + i)
        digits = buf[base + start : base + i]
        val = kstrtoll(digits) if field.is_signed else kstrtoull(digits)
        if val is None:
            raise fail(FE.ILLEGAL_INTVAL, pos + start)
        if field.filter_type == F.CPU:
            return i, Predicate(field, op, FN_CPU, val=val & U64_MASK)
        fn = _select_comparison_fn(op, field.size)
        return i, Predicate(field, op, fn, negate=op == "!=", val=val & U64_MASK)

    raise fail(FE.INVALID_VALUE, pos + i)


def _parse_function_value(
    buf: str, base: int, pos: int, i: int, field: F.Field, op: str, ctx: ParseContext
) -> tuple[int, Predicate]:
    """``field.function == name|0xaddr``: the value is matched by the function's address range."""
    start = i
    if field.size != 8:  # sizeof(long)
        raise ParseFailure(E.EINVAL, FE.ILLEGAL_FIELD_OP, pos + i)
    if op not in ("!=", "=="):
        raise ParseFailure(E.EINVAL, FE.INVALID_OP, pos + i)
    symbols = ctx.symbols
    if isdigit(buf[base + i]):
        while isalnum(buf[base + i]):
            i += 1
        if i - start >= NUM_BUF_SIZE:
            raise ParseFailure(E.EINVAL, FE.OPERAND_TOO_LONG, pos + i)
        ip = kstrtoul(buf[base + start : base + i])
        if ip is None:
            raise ParseFailure(E.EINVAL, FE.INVALID_VALUE, pos + i)
    else:
        while buf[base + i] != "\0" and not isspace(buf[base + i]):
            i += 1
        name = buf[base + start : base + i]
        ip = symbols.lookup_name(name) if symbols is not None else 0
        if not ip:
            raise ParseFailure(E.EINVAL, FE.NO_FUNCTION, pos + i)
    found = symbols.lookup_size_offset(ip) if symbols is not None else None
    if not found:
        raise ParseFailure(E.EINVAL, FE.NO_FUNCTION, pos + i)
    size, offset = found
    low = (ip - offset) & U64_MASK
    return i, Predicate(field, op, FN_FUNCTION, val=low, val2=(low + size) & U64_MASK)


def _parse_cpumask_value(
    buf: str, base: int, pos: int, i: int, field: F.Field, op: str, ctx: ParseContext
) -> tuple[int, Predicate]:
    """``field OP CPUS{list}`` for cpumask, CPU and plain numeric fields (6.x)."""
    if field.filter_type not in (F.CPUMASK, F.CPU, F.OTHER):
        raise ParseFailure(E.EINVAL, FE.ILLEGAL_FIELD_OP, pos + i)
    if op not in ("==", "!=", "&"):
        raise ParseFailure(E.EINVAL, FE.ILLEGAL_FIELD_OP, pos + i)
    i += len("CPUS")
    brace = buf[base + i]
    i += 1
    if brace != "{":
        raise ParseFailure(E.EINVAL, FE.MISSING_BRACE_OPEN, pos + i)
    maskstart = i
    while buf[base + i] not in ("\0", "}"):
        i += 1
    if buf[base + i] != "}":
        raise ParseFailure(E.EINVAL, FE.MISSING_BRACE_CLOSE, pos + i)
    if maskstart == i:
        raise ParseFailure(E.EINVAL, FE.INVALID_CPULIST, pos + i)
    try:
        mask = cpulist_parse(buf[base + maskstart : base + i], ctx.nr_cpu_ids)
    except CpulistError:
        raise ParseFailure(E.EINVAL, FE.INVALID_CPULIST, pos + i) from None
    i += 1
    if mask.bit_count() == 1:  # a one-CPU mask is treated as a scalar
        cpu = mask.bit_length() - 1
        if field.filter_type == F.CPUMASK:
            return i, Predicate(field, op, FN_CPUMASK_CPU, val=cpu)
        if op == "&":
            op = "=="
        if field.filter_type == F.CPU:
            return i, Predicate(field, op, FN_CPU, val=cpu)
        fn = _select_comparison_fn(op, field.size)
        return i, Predicate(field, op, fn, negate=op == "!=", val=cpu)
    if field.filter_type == F.CPUMASK:
        return i, Predicate(field, op, FN_CPUMASK, mask=mask)
    if field.filter_type == F.CPU:
        return i, Predicate(field, op, FN_CPU_CPUMASK, mask=mask)
    fn = FN_SCALAR_CPUMASK if field.size in (1, 2, 4, 8) else FN_NOP
    return i, Predicate(field, op, fn, mask=mask)


# --- predicate_parse --------------------------------------------------------------------------


def _update_preds(target: dict[int, int], wtb: dict[int, int], n: int, invert: int) -> None:
    """update_preds(): link entry ``n``'s pending operand to the label of ``n``."""
    t = target[n]
    s = target.get(t, 0)
    wtb[t] = invert
    target[t] = n
    target[n] = s


def predicate_parse(
    buf: str, nr_parens: int, nr_preds: int, table: F.FieldTable, ctx: ParseContext
) -> tuple[ProgramEntry, ...]:
    """The kernel's three-pass program builder; ``buf`` is the text plus NUL padding."""
    nr_preds += 2  # for TRUE and FALSE
    stack = [0]  # op_stack: invert bit | PROCESS_AND | PROCESS_OR per paren level
    preds: list[Predicate] = []
    inverts: list[int] = []
    # prog[].target / when_to_branch; index -1 is where the C code would scribble before the
    # array on malformed input — it only ever leads to the -EINVAL sanity check below.
    target: dict[int, int] = {-1: 0}
    wtb: dict[int, int] = {-1: 0}
    invert = 0
    ret = -E.ENOMEM
    n = 0
    ptr = 0
    done = False
    while not done and buf[ptr] != "\0":
        nxt = ptr
        ptr += 1
        ch = buf[nxt]
        if isspace(ch):
            continue
        if ch == "(":
            if len(stack) - 1 > nr_parens:
                raise ParseFailure(E.EINVAL)
            stack.append(invert)
            continue
        if ch == "!" and buf[nxt + 1] not in ("=", "~"):
            invert ^= 1
            continue
        if n >= nr_preds:
            raise ParseFailure(_errno_of(ret), FE.TOO_MANY_PREDS, nxt)
        inverts.append(invert)
        target[n] = n - 1
        wtb[n] = 0
        used, pred = parse_pred(buf, nxt, ptr, table, ctx)
        preds.append(pred)
        ptr = nxt + used
        n += 1
        ret = -1
        while True:
            nxt = ptr
            ptr += 1
            ch = buf[nxt]
            if isspace(ch):
                continue
            if ch in ("&", "|"):
                if buf[nxt + 1] != ch:  # only "&&" and "||"
                    raise ParseFailure(_errno_of(ret), FE.TOO_MANY_PREDS, nxt)
                ptr += 1
            elif ch not in (")", "\0"):
                raise ParseFailure(_errno_of(ret), FE.TOO_MANY_PREDS, nxt)
            invert = stack[-1] & INVERT
            if stack[-1] & PROCESS_AND:
                _update_preds(target, wtb, n - 1, invert)
                stack[-1] &= ~PROCESS_AND
            if ch == "&":
                stack[-1] |= PROCESS_AND
                break
            if stack[-1] & PROCESS_OR:
                _update_preds(target, wtb, n - 1, invert ^ 1)
                stack[-1] &= ~PROCESS_OR
            if ch == "|":
                stack[-1] |= PROCESS_OR
                break
            if ch == "\0":
                done = True
                break
            if len(stack) == 1:
                raise ParseFailure(_errno_of(ret), FE.TOO_MANY_CLOSE, ptr)
            stack.pop()
    if len(stack) != 1:
        raise ParseFailure(_errno_of(ret), FE.TOO_MANY_OPEN, ptr)
    if not n:
        raise ParseFailure(E.EINVAL, FE.NO_FILTER, ptr)

    target[n] = 1  # TRUE
    target[n + 1] = 0  # FALSE
    wtb[n] = wtb[n + 1] = 0
    target[n - 1] = n
    wtb[n - 1] = 0
    for i in range(n - 2, -1, -1):  # second pass: jump straight to the final label
        t = target[i]
        if wtb[i] == wtb.get(t, 0):
            target[i] = target.get(t, 0)
    program = []
    for i in range(n):  # third pass: fold the inverts into when_to_branch
        if target[i] <= i:  # the kernel's WARN_ON: the program must move forward
            raise ParseFailure(E.EINVAL)
        program.append(ProgramEntry(preds[i], bool(inverts[i] ^ wtb[i]), target[i]))
    return tuple(program)


def parse(text: str, table: F.FieldTable, ctx: ParseContext) -> tuple[ProgramEntry, ...]:
    """process_preds() on ``text`` (one char per byte); raises ParseFailure."""
    buf = text + "\0\0"
    nr_parens, nr_preds = calc_stack(buf, len(text))
    return predicate_parse(buf, nr_parens, nr_preds, table, ctx)
