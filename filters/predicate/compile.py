"""Compile a parsed filter program into one generated Python function.

The kernel runs its prog_entry[] with jumps: ``if (pred == when_to_branch) i = target``. Every jump
goes forward, so the generated code is straight-line: a jump to TRUE/FALSE is a ``return``, and a
jump into the middle sets ``skip`` to the landing index; entries that some jump can pass over are
guarded by ``if skip <= k``. Numeric fields are read with precompiled ``struct.unpack_from`` at
fixed offsets; string predicates call small closures built from the kernel's matchers.

The generated function is ``match(r, cpu, comm) -> bool`` with ``r`` the record bytes
(bytes, bytearray or memoryview; little-endian), ``cpu`` the CPU it was recorded on and ``comm``
the current task's name.
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tracesim.filters.predicate import errors as FE
from tracesim.filters.predicate import fields as F
from tracesim.filters.predicate import parser as P
from tracesim.filters.predicate.ctype import from_kernel_chars, strip_trailing, strstrip, to_kernel_chars
from tracesim.filters.predicate.errors import FilterError
from tracesim.filters.predicate.glob import MATCH_FRONT, MATCH_FULL, make_matcher

TASK_COMM_LEN = 16
USTRING_BUF_SIZE = 1024

StringReader = Callable[[int], "bytes | None"]
MatchFn = Callable[[Any, int, str], bool]

_UNPACK = {
    (size, signed): struct.Struct("<" + (code.lower() if signed else code)).unpack_from
    for size, code in ((1, "B"), (2, "H"), (4, "I"), (8, "Q"))
    for signed in (False, True)
}
_CMP_OPS = {"<": "<", "<=": "<=", ">": ">", ">=": ">="}


class CompiledFilter:
    """A filter ready to run: ``match(record, cpu, comm) -> bool``.

    ``text`` is what ``cat filter`` shows while it is active (the written string, trailing
    whitespace dropped), ``fields_used`` the field names it reads, ``program`` the kernel-style
    program it was built from and ``source`` the generated Python.
    """

    __slots__ = ("text", "match", "fields_used", "program", "source")

    def __init__(
        self,
        text: str,
        match: MatchFn,
        fields_used: tuple[str, ...],
        program: tuple[P.ProgramEntry, ...],
        source: str,
    ) -> None:
        self.text = text
        self.match = match
        self.fields_used = fields_used
        self.program = program
        self.source = source

    def __repr__(self) -> str:
        return f"CompiledFilter({self.text!r})"


def _to_signed(value: int, size: int) -> int:
    bits = size * 8
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


class _Codegen:
    """Collects the constants the generated source refers to by name."""

    def __init__(self, nr_cpu_ids: int, read_string: StringReader | None,
                 read_user_string: StringReader | None) -> None:
        self.namespace: dict[str, Any] = {}
        self.nr_cpu_ids = nr_cpu_ids
        self.read_string = read_string
        self.read_user_string = read_user_string

    def const(self, value: Any, hint: str) -> str:
        name = f"_{hint}{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def reader(self, size: int, signed: bool) -> str:
        name = f"_{'s' if signed else 'u'}{size * 8}"
        self.namespace[name] = _UNPACK[(size, signed)]
        return name

    def read(self, field: F.Field, signed: bool) -> str:
        return f"{self.reader(field.size, signed)}(r, {field.offset})[0]"

    def expr(self, pred: P.Predicate) -> str:
        """A Python expression (bool) for one predicate; names r, cpu, comm are in scope."""
        handler = getattr(self, f"_pred_{pred.fn}")
        return handler(pred)

    # numeric fields ----------------------------------------------------------------------

    def _pred_nop(self, pred: P.Predicate) -> str:
        return "False"

    def _pred_eq(self, pred: P.Predicate) -> str:
        field = pred.field
        val = pred.val & ((1 << (field.size * 8)) - 1)
        return f"({self.read(field, False)} {'!=' if pred.negate else '=='} {val})"

    def _pred_cmp(self, pred: P.Predicate) -> str:
        field = pred.field
        if pred.op == "&":
            val = pred.val & ((1 << (field.size * 8)) - 1)
            return f"(({self.read(field, False)} & {val}) != 0)"
        if field.is_signed:
            val = _to_signed(pred.val, field.size)
        else:
            val = pred.val & ((1 << (field.size * 8)) - 1)
        return f"({self.read(field, field.is_signed)} {_CMP_OPS[pred.op]} {val})"

    def _pred_cpu(self, pred: P.Predicate) -> str:
        if pred.op not in ("==", "!=", "<", "<=", ">", ">="):
            return "False"
        return f"(cpu {pred.op} {_to_signed(pred.val, 4)})"

    def _pred_scalar_cpumask(self, pred: P.Predicate) -> str:
        # filter_pred_N_cpumask: a CPU number >= nr_cpu_ids never matches; a mask of two or
        # more CPUs is never "equal" to one CPU, so == is false and != true.
        value = self.read(pred.field, False)
        if pred.op == "==":
            return "False"
        in_range = f"{value} < {self.nr_cpu_ids}"
        if pred.op == "!=":
            return f"({in_range})"
        return f"({in_range} and ({self.const(pred.mask, 'mask')} >> {value}) & 1 == 1)"

    def _pred_cpu_cpumask(self, pred: P.Predicate) -> str:
        if pred.op == "==":
            return "False"
        if pred.op == "!=":
            return "True"
        return f"(({self.const(pred.mask, 'mask')} >> cpu) & 1 == 1)"

    def _record_cpumask(self, pred: P.Predicate) -> Callable[[Any], int]:
        offset = pred.field.offset
        u32 = _UNPACK[(4, False)]
        limit = (1 << self.nr_cpu_ids) - 1

        def read_mask(r: Any) -> int:
            item = u32(r, offset)[0]
            loc = item & 0xFFFF
            return int.from_bytes(bytes(r[loc : loc + (item >> 16)]), "little") & limit

        return read_mask

    def _pred_cpumask(self, pred: P.Predicate) -> str:
        return self._cpumask_test(pred, pred.mask)

    def _pred_cpumask_cpu(self, pred: P.Predicate) -> str:
        return self._cpumask_test(pred, 1 << pred.val)

    def _cpumask_test(self, pred: P.Predicate, cmp: int) -> str:
        """The record's cpumask against ``cmp`` (a mask, or the one bit of ``CPUS{n}``)."""
        read_mask = self._record_cpumask(pred)
        op = pred.op

        def cpumask(r: Any) -> bool:
            mask = read_mask(r)
            if op == "==":
                return mask == cmp
            if op == "!=":
                return mask != cmp
            return bool(mask & cmp)

        return f"{self.const(cpumask, 'cpumask')}(r)"

    def _pred_function(self, pred: P.Predicate) -> str:
        inside = f"({pred.val} <= {self.read(pred.field, False)} < {pred.val2})"
        return inside if pred.op == "==" else f"(not {inside})"

    # strings -------------------------------------------------------------------------------

    def _string_call(self, pred: P.Predicate, body: Callable[..., bool], arg: str) -> str:
        return f"{self.const(body, pred.fn)}({arg})"

    def _pred_string(self, pred: P.Predicate) -> str:
        start, size = pred.field.offset, pred.field.size
        if size == 0:
            # a char[] of size 0 (ftrace:print's buf): the string runs to its NUL
            # (regex_match_*: a length of 0 means a NUL-terminated string)
            match0 = make_matcher(pred.pattern)
            inverted0 = pred.negate

            def open_string(r: Any) -> bool:
                return match0(bytes(r[start:]), 0) != inverted0

            return self._string_call(pred, open_string, "r")
        fast = _fixed_place_matcher(pred, start, size)
        if fast is not None:
            return self._string_call(pred, fast, "r")
        match = make_matcher(pred.pattern)
        inverted = pred.negate

        def string(r: Any) -> bool:
            return match(bytes(r[start : start + size]), size) != inverted

        return self._string_call(pred, string, "r")

    def _pred_strloc(self, pred: P.Predicate) -> str:
        return self._dynamic_string(pred, relative=False)

    def _pred_strrelloc(self, pred: P.Predicate) -> str:
        return self._dynamic_string(pred, relative=True)

    def _dynamic_string(self, pred: P.Predicate, relative: bool) -> str:
        match = make_matcher(pred.pattern)
        inverted = pred.negate
        offset = pred.field.offset
        base = offset + 4 if relative else 0
        u32 = _UNPACK[(4, False)]
        pat = pred.pattern.text
        plen = len(pat)

        def dynamic_string(r: Any) -> bool:
            item = u32(r, offset)[0]
            loc = base + (item & 0xFFFF)
            length = item >> 16
            data = bytes(r[loc : loc + length] if length else r[loc:])
            return match(data, length) != inverted

        # Fast paths for the common == and "abc*" cases, comparing in place (same results as
        # the generic matchers: strncmp over the pattern stops at the string's NUL).
        def dynamic_full(r: Any) -> bool:
            item = u32(r, offset)[0]
            length = item >> 16
            loc = base + (item & 0xFFFF)
            if length > plen and loc + plen < len(r):
                return (r[loc + plen] == 0 and r[loc : loc + plen] == pat) != inverted
            if length and loc + length <= len(r):
                return (r[loc : loc + length] == pat[:length]) != inverted
            return dynamic_string(r)

        def dynamic_front(r: Any) -> bool:
            item = u32(r, offset)[0]
            length = item >> 16
            if length and length < plen:
                return inverted
            loc = base + (item & 0xFFFF)
            return (r[loc : loc + plen] == pat) != inverted

        body = {MATCH_FULL: dynamic_full, MATCH_FRONT: dynamic_front}.get(
            pred.pattern.kind, dynamic_string)
        return self._string_call(pred, body, "r")

    def _pred_pchar(self, pred: P.Predicate) -> str:
        return self._pointer_string(pred, self.read_string)

    def _pred_pchar_user(self, pred: P.Predicate) -> str:
        return self._pointer_string(pred, self.read_user_string)

    def _pointer_string(self, pred: P.Predicate, read: StringReader | None) -> str:
        if read is None:  # nothing to read through: the kernel's copy fails, no match
            return "False"
        match = make_matcher(pred.pattern)
        inverted = pred.negate
        offset = pred.field.offset
        u64 = _UNPACK[(8, False)]

        def pointer_string(r: Any) -> bool:
            raw = read(u64(r, offset)[0])
            if raw is None:
                return False
            nul = raw.find(b"\0")
            text = (raw if nul < 0 else raw[:nul])[: USTRING_BUF_SIZE - 1]
            return match(text + b"\0", len(text) + 1) != inverted

        return self._string_call(pred, pointer_string, "r")

    def _pred_comm(self, pred: P.Predicate) -> str:
        match = make_matcher(pred.pattern)
        inverted = pred.negate

        def comm_match(comm: str) -> bool:
            raw = comm.encode("utf-8", "surrogateescape")[: TASK_COMM_LEN - 1]
            return match(raw.ljust(TASK_COMM_LEN, b"\0"), TASK_COMM_LEN) != inverted

        return self._string_call(pred, comm_match, "comm")


def _fixed_place_matcher(pred: P.Predicate, start: int, size: int) -> Callable[[Any], bool] | None:
    """In-place == and "abc*" tests for a char[size] array at ``start`` (None: use the generic)."""
    pat = pred.pattern.text
    plen = len(pat)
    inverted = pred.negate
    if pred.pattern.kind == MATCH_FULL:
        if size > plen:
            end = start + plen

            def fixed_full(r: Any) -> bool:
                return (r[end] == 0 and r[start:end] == pat) != inverted

            return fixed_full
        head = pat[:size]

        def fixed_full_clipped(r: Any) -> bool:
            return (r[start : start + size] == head) != inverted

        return fixed_full_clipped
    if pred.pattern.kind == MATCH_FRONT:
        if size < plen:
            return lambda r: inverted
        end = start + plen

        def fixed_front(r: Any) -> bool:
            return (r[start:end] == pat) != inverted

        return fixed_front
    return None


def generate_source(program: Sequence[P.ProgramEntry], gen: _Codegen) -> str:
    """Straight-line Python for the kernel program (see the module docstring)."""
    n = len(program)
    spans = [(k, entry.target + 1) for k, entry in enumerate(program) if entry.target + 1 < n]
    lines = ["def match(r, cpu, comm):"]
    if spans:
        lines.append("    skip = 0")
    for k, entry in enumerate(program):
        guarded = any(src < k < land for src, land in spans)
        indent = "        " if guarded else "    "
        if guarded:
            lines.append(f"    if skip <= {k}:")
        landing = entry.target + 1
        if landing == n:
            action = "return True"
        elif landing == n + 1:
            action = "return False"
        else:
            action = f"skip = {landing}"
        test = gen.expr(entry.predicate)
        cond = test if entry.when_to_branch else f"not {test}"
        lines.append(f"{indent}if {cond}:")
        lines.append(f"{indent}    {action}")
    lines.append("    return True")
    return "\n".join(lines) + "\n"


def _fields_used(program: Sequence[P.ProgramEntry]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for entry in program:
        seen.setdefault(entry.predicate.field.name, None)
    return tuple(seen)


def is_clear_request(text: str) -> bool:
    """Writing ``0`` (whitespace around it allowed) removes the filter instead of setting one."""
    return strstrip(to_kernel_chars(text)) == "0"


def compile_filter(
    text: str,
    fields: Sequence[F.FieldLike],
    *,
    read_string: StringReader | None = None,
    read_user_string: StringReader | None = None,
    symbols: P.SymbolLookup | None = None,
    nr_cpu_ids: int = 64,
) -> CompiledFilter:
    """Parse and compile ``text`` (as written to an event's ``filter``) for an event's ``fields``.

    Raises FilterError exactly where the kernel refuses the write. ``read_string(addr)`` /
    ``read_user_string(addr)`` give the bytes behind ``char *`` fields (plain / ``.ustring``),
    ``symbols`` resolves ``.function`` values, ``nr_cpu_ids`` bounds ``CPUS{...}`` lists. The
    caller handles ``"0"`` (see is_clear_request) before calling this.
    """
    chars = strip_trailing(to_kernel_chars(text))
    shown = from_kernel_chars(chars)
    table = F.FieldTable(fields)
    ctx = P.ParseContext(nr_cpu_ids=nr_cpu_ids, symbols=symbols)
    try:
        program = P.parse(chars, table, ctx)
    except P.ParseFailure as failure:
        if failure.lasterr == FE.NONE:
            raise FilterError(failure.errno, FE.ERROR_TEXTS[FE.ERRNO], None, shown) from None
        raise FilterError(
            failure.errno, FE.ERROR_TEXTS[failure.lasterr], failure.pos, shown
        ) from None
    gen = _Codegen(nr_cpu_ids, read_string, read_user_string)
    source = generate_source(program, gen)
    namespace = dict(gen.namespace)
    exec(compile(source, f"<filter {shown!r}>", "exec"), namespace)  # noqa: S102 - our own codegen
    return CompiledFilter(shown, namespace["match"], _fields_used(program), program, source)


def compile_subsystem_filter(
    text: str,
    events: Mapping[str, Sequence[F.FieldLike]],
    **options: Any,
) -> dict[str, CompiledFilter | FilterError]:
    """A filter written to ``events/<sys>/filter``, applied to each event of the subsystem.

    As process_system_preds() in 6.x: every event gets the result of compiling ``text`` against
    its own fields; where that fails the event's filter becomes an error whose text is "Couldn't
    find or set field in one of a subsystem's events" at position 0 (each such failure also logs
    an ``error_log`` entry), and the event keeps no active filter. The write itself succeeds
    whenever the subsystem has at least one event — even if every event failed — and the
    subsystem ``filter`` file then shows its default message. (A subsystem with no events makes
    the kernel return -ENODEV before parsing; callers handle that.)
    """
    results: dict[str, CompiledFilter | FilterError] = {}
    for name, fields in events.items():
        try:
            results[name] = compile_filter(text, fields, **options)
        except FilterError as err:
            results[name] = FilterError(
                err.errno, FE.ERROR_TEXTS[FE.BAD_SUBSYS_FILTER], 0, err.text
            )
    return results
