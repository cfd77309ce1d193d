"""What every probe event shares (kernel/trace/trace_probe.c, trace_probe.h): the error table
and its caret rule, event names, fetch arguments and their types. The event and its printing
are trace_probe_event.py; the BTF prototypes arguments are typed with, probe_btf.py.

The kinds (``trace_kprobe.py``, ``trace_fprobe.py``, ``trace_eprobe.py``) parse their own head
(``p:GRP/EV SYM``) and hand each argument to ``parse_arg`` with a ``ParseContext`` saying where
the probe sits (function entry or exit, a tracepoint, an event), as the kernel's TPARG_FL_*
flags do. A refusal raises ``ProbeError(key, index, offset)``: ``index`` is the argv word, the
caret column is Σ(len(argv[j]) + 1, j < index) + offset (``__trace_probe_log_err``), and an index
past the last word puts the caret one past the end of the command.

The fetch program of an argument is compiled to Python closures ``fetch(src, cpu)``, where
``src`` is the probe's pt_regs (``PtRegs`` / tracepoint arguments) or, for an event probe, the
attached event's decoded record. The kernel's 16-instruction budget (FETCH_INSN_MAX) is counted
as it counts it, so a too deep dereference fails where the kernel's does.
"""
from __future__ import annotations

import errno
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tracesim.kernel_model.c_types import Pointer, Struct
from tracesim.kernel_model.kprobes import PT_REGS_NAMES, reg_value
from tracesim.kernel_model.trace.event import TraceEvent
from tracesim.kernel_model.trace.probe_btf import btf_fetch_type, ctype_of, is_string_type

if TYPE_CHECKING:
    pass

MAX_EVENT_NAME_LEN = 64
MAX_ARG_NAME_LEN = 32
MAX_ARGSTR_LEN = 63
MAX_ARRAY_LEN = 64
MAX_TRACE_ARGS = 128
MAX_STRING_SIZE = 4096
FETCH_INSN_MAX = 16
PARAM_MAX_STACK = 16384 // 8          # THREAD_SIZE / sizeof(unsigned long) on x86-64

# trace_probe.h ERRORS, in the kernel's order (6.18)
ERR_TEXT: dict[str, str] = {
    "FILE_NOT_FOUND": "Failed to find the given file",
    "NO_REGULAR_FILE": "Not a regular file",
    "BAD_REFCNT": "Invalid reference counter offset",
    "REFCNT_OPEN_BRACE": "Reference counter brace is not closed",
    "BAD_REFCNT_SUFFIX": "Reference counter has wrong suffix",
    "BAD_UPROBE_OFFS": "Invalid uprobe offset",
    "BAD_MAXACT_TYPE": "Maxactive is only for function exit",
    "BAD_MAXACT": "Invalid maxactive number",
    "MAXACT_TOO_BIG": "Maxactive is too big",
    "BAD_PROBE_ADDR": "Invalid probed address or symbol",
    "NON_UNIQ_SYMBOL": "The symbol is not unique",
    "BAD_RETPROBE": "Retprobe address must be an function entry",
    "NO_TRACEPOINT": "Tracepoint is not found",
    "BAD_TP_NAME": "Invalid character in tracepoint name",
    "BAD_ADDR_SUFFIX": "Invalid probed address suffix",
    "NO_GROUP_NAME": "Group name is not specified",
    "GROUP_TOO_LONG": "Group name is too long",
    "BAD_GROUP_NAME": "Group name must follow the same rules as C identifiers",
    "NO_EVENT_NAME": "Event name is not specified",
    "EVENT_TOO_LONG": "Event name is too long",
    "BAD_EVENT_NAME": "Event name must follow the same rules as C identifiers",
    "EVENT_EXIST": "Given group/event name is already used by another event",
    "RETVAL_ON_PROBE": "$retval is not available on probe",
    "NO_RETVAL": "This function returns 'void' type",
    "BAD_STACK_NUM": "Invalid stack number",
    "BAD_ARG_NUM": "Invalid argument number",
    "BAD_VAR": "Invalid $-valiable specified",
    "BAD_REG_NAME": "Invalid register name",
    "BAD_MEM_ADDR": "Invalid memory address",
    "BAD_IMM": "Invalid immediate value",
    "IMMSTR_NO_CLOSE": "String is not closed with '\"'",
    "FILE_ON_KPROBE": "File offset is not available with kprobe",
    "BAD_FILE_OFFS": "Invalid file offset value",
    "SYM_ON_UPROBE": "Symbol is not available with uprobe",
    "TOO_MANY_OPS": "Dereference is too much nested",
    "DEREF_NEED_BRACE": "Dereference needs a brace",
    "BAD_DEREF_OFFS": "Invalid dereference offset",
    "DEREF_OPEN_BRACE": "Dereference brace is not closed",
    "COMM_CANT_DEREF": "$comm can not be dereferenced",
    "BAD_FETCH_ARG": "Invalid fetch argument",
    "ARRAY_NO_CLOSE": "Array is not closed",
    "BAD_ARRAY_SUFFIX": "Array has wrong suffix",
    "BAD_ARRAY_NUM": "Invalid array size",
    "ARRAY_TOO_BIG": "Array number is too big",
    "BAD_TYPE": "Unknown type is specified",
    "BAD_STRING": "String accepts only memory argument",
    "BAD_SYMSTRING": "Symbol String doesn't accept data/userdata",
    "BAD_BITFIELD": "Invalid bitfield",
    "ARG_NAME_TOO_LONG": "Argument name is too long",
    "NO_ARG_NAME": "Argument name is not specified",
    "BAD_ARG_NAME": "Argument name must follow the same rules as C identifiers",
    "USED_ARG_NAME": "This argument name is already used",
    "ARG_TOO_LONG": "Argument expression is too long",
    "NO_ARG_BODY": "No argument expression",
    "BAD_INSN_BNDRY": "Probe point is not an instruction boundary",
    "FAIL_REG_PROBE": "Failed to register probe event",
    "DIFF_PROBE_TYPE": "Probe type is different from existing probe",
    "DIFF_ARG_TYPE": "Argument type or name is different from existing probe",
    "SAME_PROBE": "There is already the exact same probe event",
    "NO_EVENT_INFO": "This requires both group and event name to attach",
    "BAD_ATTACH_EVENT": "Attached event does not exist",
    "BAD_ATTACH_ARG": "Attached event does not have this field",
    "NO_EP_FILTER": "No filter rule after 'if'",
    "NOSUP_BTFARG": "BTF is not available or not supported",
    "NO_BTFARG": "This variable is not found at this probe point",
    "NO_BTF_ENTRY": "No BTF entry for this probe point",
    "BAD_VAR_ARGS": "$arg* must be an independent parameter without name etc.",
    "NOFENTRY_ARGS": "$arg* can be used only on function entry or exit",
    "DOUBLE_ARGS": "$arg* can be used only once in the parameters",
    "ARGS_2LONG": "$arg* failed because the argument list is too long",
    "ARGIDX_2BIG": "$argN index is too big",
    "NO_PTR_STRCT": "This is not a pointer to union/structure.",
    "NOSUP_DAT_ARG": "Non pointer structure/union argument is not supported.",
    "BAD_HYPHEN": "Failed to parse single hyphen. Forgot '>'?",
    "NO_BTF_FIELD": "This field is not found.",
    "BAD_BTF_TID": "Failed to get BTF type info.",
    "BAD_TYPE4STR": "This type does not fit for string.",
    "NEED_STRING_TYPE": "$comm and immediate-string only accepts string type",
    "TOO_MANY_ARGS": "Too many arguments are specified",
    "TOO_MANY_EARGS": "Too many entry arguments specified",
}

RESERVED_FIELD_NAMES = ("common_type", "common_flags", "common_preempt_count", "common_pid",
                        "common_tgid", "__probe_ip", "__probe_ret_ip", "__probe_func")

_PAD_PREFIX = "__pad_at_"      # the model's struct padding members (not BTF members)
_REG_INDEX = {n: i for i, n in enumerate(PT_REGS_NAMES)}
_ARG_REGS = ("di", "si", "dx", "cx", "r8", "r9")
_GOOD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ProbeError(Exception):
    """A refused definition: the error key, the argv index and the offset inside that word."""

    def __init__(self, key: str, index: int, offset: int = 0, code: int = errno.EINVAL) -> None:
        super().__init__(key)
        self.key, self.index, self.offset, self.code = key, index, offset, code


class CommandError(OSError):
    """What a write of a probe command fails with: errno, the kernel's message, caret column."""

    def __init__(self, code: int, message: str, pos: int = 0, command: str = "") -> None:
        super().__init__(code, message)
        self.message = message
        self.pos = pos
        self.command = command


def log_refusal(array: Any, location: str, argv: Sequence[str], e: ProbeError) -> CommandError:
    """__trace_probe_log_err: log ``e`` to ``array``'s error_log; the exception to raise."""
    command = " ".join(argv)
    if e.index >= len(argv):
        pos = len(command) + 1
    else:
        pos = sum(len(a) + 1 for a in argv[:e.index]) + e.offset
    message = ERR_TEXT[e.key]
    array.log_error(location, command, message, pos)
    return CommandError(e.code, message, pos, command)


def is_good_name(name: str) -> bool:
    return bool(_GOOD_NAME.match(name))


def sanitize_event_name(name: str) -> str:
    """sanitize_event_name: every non-identifier character becomes ``_`` (a leading digit too)."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return "_" + out if out[:1].isdigit() else out


def parse_event_name(text: str, offset: int,
                     index: int = 0) -> tuple[str | None, str | None]:
    """traceprobe_parse_event_name: ``[GROUP/|GROUP.]EVENT`` → (group or None, event or None).

    ``GROUP/`` alone names no event (the kind's default name is used)."""
    cut = text.find("/")
    if cut < 0:
        cut = text.find(".")
    group = None
    event = text
    if cut >= 0:
        if cut == 0:
            raise ProbeError("NO_GROUP_NAME", index, offset)
        if cut + 1 > MAX_EVENT_NAME_LEN:
            raise ProbeError("GROUP_TOO_LONG", index, offset)
        group = text[:cut]
        if not is_good_name(group):
            raise ProbeError("BAD_GROUP_NAME", index, offset)
        event = text[cut + 1:]
        offset += cut + 1
    if not event:
        if cut >= 0:
            return group, None
        raise ProbeError("NO_EVENT_NAME", index, offset)
    if len(event) > MAX_EVENT_NAME_LEN:
        raise ProbeError("EVENT_TOO_LONG", index, offset)
    if not is_good_name(event):
        raise ProbeError("BAD_EVENT_NAME", index, offset)
    return group, event


# -- types: name → (size, signed, field type, print format)
FETCH_TYPES: dict[str, tuple[int, bool, str, str]] = {
    "string": (4, False, "__data_loc char[]", '\\"%s\\"'),
    "ustring": (4, False, "__data_loc char[]", '\\"%s\\"'),
    "symstr": (4, False, "__data_loc char[]", '\\"%s\\"'),
    "u8": (1, False, "u8", "%u"), "u16": (2, False, "u16", "%u"),
    "u32": (4, False, "u32", "%u"), "u64": (8, False, "u64", "%Lu"),
    "s8": (1, True, "s8", "%d"), "s16": (2, True, "s16", "%d"),
    "s32": (4, True, "s32", "%d"), "s64": (8, True, "s64", "%Ld"),
    "x8": (1, False, "u8", "0x%x"), "x16": (2, False, "u16", "0x%x"),
    "x32": (4, False, "u32", "0x%x"), "x64": (8, False, "u64", "0x%Lx"),
    "char": (1, False, "u8", "'%c'"),
    "symbol": (8, False, "u64", "%pS"),
}
STRING_TYPES = ("string", "ustring", "symstr")
DEFAULT_TYPE = "x64"


def find_fetch_type(name: str | None) -> str | None:
    """find_fetch_type: the type a ``:TYPE`` names; ``bW@O/S`` is the uS container type."""
    if name is None:
        return DEFAULT_TYPE
    if name.startswith("b"):
        size = name.partition("/")[2]
        if not size:
            return None
        try:
            bits = int(size, 0)
        except ValueError:
            return None
        return {8: "u8", 16: "u16", 32: "u32", 64: "u64"}.get(bits)
    return name if name in FETCH_TYPES else None


# -- parsing arguments
@dataclass
class ParseContext:
    """traceprobe_parse_context: where the probe sits and what it can name."""

    kernel: Any
    entry: bool = False            # TPARG_FL_FENTRY: at a function's entry
    ret: bool = False              # TPARG_FL_RETURN: at a function's exit
    fprobe: bool = False           # TPARG_FL_FPROBE: no registers
    tpoint: bool = False           # TPARG_FL_TPOINT: a tracepoint's arguments
    event: TraceEvent | None = None   # TPARG_FL_TEVENT: the attached event (eprobes)
    funcname: str | None = None
    params: tuple[tuple[str, str], ...] | None = None    # BTF parameters (type, name)
    ret_type: str | None = None
    offset: int = 0
    insn: int = 0                  # the fetch instruction being filled (FETCH_INSN_MAX)
    missing_symbol: bool = False   # an ``@SYM`` kallsyms does not know

    def at_function(self) -> bool:
        return self.entry or self.ret


Fetch = Callable[[Any, Any], Any]


@dataclass
class ProbeArg:
    """One fetch argument: name, its text as written (``comm``), type, count, fetch."""

    name: str
    comm: str
    type_name: str
    fetch: Fetch
    count: int = 0
    bitfield: tuple[int, int, int] | None = None      # (width, offset, container bits)
    field_type: str = field(init=False)

    def __post_init__(self) -> None:
        base = FETCH_TYPES[self.type_name][2]
        self.field_type = f"{base}[{self.count}]" if self.count else base

    @property
    def is_string(self) -> bool:
        return self.type_name in STRING_TYPES

    def print_format(self) -> str:
        fmt = FETCH_TYPES[self.type_name][3]
        if self.count:
            return "{" + ",".join([fmt] * self.count) + "}"
        return fmt

    def rec_args(self) -> str:
        pattern = ", __get_str({})" if self.is_string else ", REC->{}"
        if self.count:
            return "".join(pattern.format(f"{self.name}[{j}]") for j in range(self.count))
        return pattern.format(self.name)


def expand_meta_args(argv: list[str], ctx: ParseContext, base: int = 2) -> list[str]:
    """traceprobe_expand_meta_args: ``$arg*`` → every parameter's name, ``$argN[:T]`` → the
    Nth parameter's name when the function has BTF; other arguments stay as written."""
    star = -1
    found = False
    for i, a in enumerate(argv):
        if not a.startswith("$arg"):
            continue
        if not ctx.at_function():
            raise ProbeError("NOFENTRY_ARGS", i + base)
        if a[4:5].isdigit():
            found = True
            continue
        if a[4:5] != "*":
            raise ProbeError("BAD_VAR", i + base)
        if star >= 0:
            raise ProbeError("DOUBLE_ARGS", i + base)
        star, found = i, True
    if not found:
        return argv
    if ctx.params is None:
        if star >= 0:
            raise ProbeError("NOSUP_BTFARG", star + base)
        return argv
    out: list[str] = []
    for i, a in enumerate(argv):
        if i == star:
            out += [name for _, name in ctx.params]
        elif a.startswith("$arg"):
            m = re.match(r"^\$arg(\d+)(.*)$", a)
            if m is None or m.group(2)[:1] not in ("", ":"):
                raise ProbeError("BAD_VAR", i + base)
            n = int(m.group(1))
            if not n:
                raise ProbeError("BAD_ARG_NUM", i + base)
            if n > len(ctx.params):
                raise ProbeError("NO_BTFARG", i + base)
            out.append(ctx.params[n - 1][1] + m.group(2))
        else:
            out.append(a)
    return out


# offsetof(struct dentry, d_name.name) and offsetof(struct file, f_path.dentry) in 6.18 x86-64
DENTRY_NAME_OFFSET = 40
FILE_DENTRY_OFFSET = 72


def expand_dentry_args(argv: list[str]) -> list[str]:
    """traceprobe_expand_dentry_args: ``[NAME=]VAL:%pd`` is the name of the dentry VAL points
    to, ``:%pD`` the name of a struct file's dentry; both become ``:string`` dereferences (and
    are listed so)."""
    out = []
    for a in argv:
        if a.endswith((":%pd", ":%pD")):
            name, eq, val = a[:-4].rpartition("=")
            inner = val if a[-1] == "d" else f"+{FILE_DENTRY_OFFSET}({val})"
            a = f"{name}{eq}+0(+{DENTRY_NAME_OFFSET}({inner})):string"
        out.append(a)
    return out


def parse_args(words: list[str], ctx: ParseContext) -> list[ProbeArg]:
    """The arguments of a kprobe or fprobe (argv[2:]): ``$arg*``/``$argN`` and ``%pd`` expanded,
    at most MAX_TRACE_ARGS, each parsed; an ``@SYM`` kallsyms lacks fails the registration."""
    args = expand_meta_args(words, ctx)
    if len(args) > MAX_TRACE_ARGS:
        raise ProbeError("TOO_MANY_ARGS", 2, 0, errno.E2BIG)
    parsed: list[ProbeArg] = []
    for i, text in enumerate(expand_dentry_args(args)):
        parsed.append(parse_arg(text, i + 2, i + 1, ctx, parsed))
    if ctx.missing_symbol:
        raise ProbeError("BAD_PROBE_ADDR", 1, 0, errno.ENOENT)
    return parsed


def parse_arg(text: str, index: int, nth: int, ctx: ParseContext,
              previous: Sequence[ProbeArg]) -> ProbeArg:
    """traceprobe_parse_probe_arg: ``[NAME=]FETCHARG[:TYPE]`` (``nth`` counts from 1)."""
    body_at = text.find("=")
    if body_at >= 0:
        if body_at > MAX_ARG_NAME_LEN:
            raise ProbeError("ARG_NAME_TOO_LONG", index)
        if body_at == 0:
            raise ProbeError("NO_ARG_NAME", index)
        name, body = text[:body_at], text[body_at + 1:]
        ctx.offset = body_at + 1
    else:
        guess = text.split(":", 1)[0]
        name = guess if is_good_name(guess) else f"arg{nth}"
        body = text
        ctx.offset = 0
    if not is_good_name(name):
        raise ProbeError("BAD_ARG_NAME", index)
    if name in RESERVED_FIELD_NAMES or any(p.name == name for p in previous):
        raise ProbeError("USED_ARG_NAME", index)
    return _parse_body(body, name, index, ctx)


def _parse_body(arg: str, name: str, index: int, ctx: ParseContext) -> ProbeArg:
    """traceprobe_parse_probe_arg_body: length, ``:TYPE[N]``, the fetch, the store checks."""
    base = ctx.offset
    if len(arg) > MAX_ARGSTR_LEN:
        raise ProbeError("ARG_TOO_LONG", index, base)
    if not arg:
        raise ProbeError("NO_ARG_BODY", index, base)
    expr, colon, tname = arg.partition(":")
    t_at = len(expr) + 1 if colon else 0          # offset of the type inside the argument
    type_text: str | None = tname if colon else None
    count = 0
    if type_text is not None and "[" in type_text:
        type_text, _, rest = type_text.partition("[")
        num_at = t_at + len(type_text) + 1
        close = rest.find("]")
        if close < 0:
            raise ProbeError("ARRAY_NO_CLOSE", index, base + num_at + len(rest))
        if close != len(rest) - 1:
            raise ProbeError("BAD_ARRAY_SUFFIX", index, base + num_at + close + 1)
        count = _kstrtouint(rest[:close])
        if not count:
            raise ProbeError("BAD_ARRAY_NUM", index, base + num_at)
        if count > MAX_ARRAY_LEN:
            raise ProbeError("ARRAY_TOO_BIG", index, base + num_at)
    if ctx.event is None and (expr in ("$comm", "$COMM") or expr.startswith('\\"')):
        if count or (type_text is not None and type_text != "string"):
            raise ProbeError("NEED_STRING_TYPE", index, base + t_at)
        type_name: str | None = "string"
    else:
        type_name = find_fetch_type(type_text)
    if type_name is None:
        raise ProbeError("BAD_TYPE", index, base + t_at)
    ctx.insn = 0
    op, fetch, btf_type = _parse_fetch(expr, index, ctx)
    if type_text is None and btf_type is not None:
        type_name = btf_fetch_type(btf_type) or type_name
    if type_name in ("string", "ustring") and btf_type is not None:
        if not is_string_type(btf_type):
            raise ProbeError("BAD_TYPE4STR", index, base)
        if op == "DEREF" and isinstance(btf_type, Pointer):   # a char * member: its value
            fetch = _read_sized(ctx.kernel.mem, fetch, 8)
        op = "DEREF"
    store = _store(op, type_name, count, index, base + t_at, base, ctx)
    bitfield = None
    if type_text is not None and type_text.startswith("b"):
        bitfield = _bitfield(type_text, type_name)
        ctx.insn += 1
        if bitfield is None or ctx.insn >= FETCH_INSN_MAX - 1:
            raise ProbeError("BAD_BITFIELD", index, base + t_at)
    if count:
        if store not in ("ST_MEM", "ST_STRING"):
            raise ProbeError("BAD_STRING", index, base + t_at)
        if type_name in STRING_TYPES:      # an array of string pointers: not modelled
            raise ProbeError("BAD_STRING", index, base + t_at)
        _next_insn(ctx, index, base)
    mem = ctx.kernel.mem
    fetch = _finish_fetch(fetch, store, type_name, count, bitfield, mem, ctx.kernel)
    return ProbeArg(name, arg, type_name, fetch, count, bitfield)


def kstrtoul(text: str) -> int | None:
    """kstrtoul(text, 0): a whole unsigned number in C notation (0x hex, 0 octal), else None."""
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
        return int(text, 16)
    if re.fullmatch(r"0[0-7]*", text):
        return int(text, 8)
    if re.fullmatch(r"[1-9][0-9]*", text):
        return int(text)
    return None


def _kstrtouint(text: str) -> int:
    v = kstrtoul(text)
    return v if v is not None and v < 1 << 32 else 0


def _next_insn(ctx: ParseContext, index: int, offset: int) -> None:
    ctx.insn += 1
    if ctx.insn >= FETCH_INSN_MAX - 1:
        raise ProbeError("TOO_MANY_OPS", index, offset)


def _store(op: str, type_name: str, count: int, index: int, t_off: int, base: int,
           ctx: ParseContext) -> str:
    """The store instruction after the fetch (ST_STRING, ST_MEM, ST_RAW ...)."""
    if type_name in STRING_TYPES:
        if type_name == "symstr":
            if op not in ("REG", "STACK", "RETVAL", "ARG", "DEREF", "TP_ARG"):
                raise ProbeError("BAD_SYMSTRING", index, t_off)
        elif op not in ("DEREF", "IMM", "COMM", "DATA", "TP_ARG"):
            raise ProbeError("BAD_STRING", index, t_off)
        if type_name == "symstr" or op in ("IMM", "COMM", "DATA", "TP_ARG") or count:
            _next_insn(ctx, index, base)
        return "ST_STRING"
    if op == "DEREF":
        return "ST_MEM"
    _next_insn(ctx, index, base)
    return "ST_RAW"


def _bitfield(text: str, container: str) -> tuple[int, int, int] | None:
    m = re.match(r"^b(\d+|0x[0-9a-fA-F]+)@(\d+|0x[0-9a-fA-F]+)/", text)
    if m is None:
        return None
    width, offset = int(m.group(1), 0), int(m.group(2), 0)
    bits = FETCH_TYPES[container][0] * 8
    if width == 0 or width + offset > bits:
        return None
    return width, offset, bits


def _parse_fetch(arg: str, index: int, ctx: ParseContext) -> tuple[str, Fetch, Any]:
    """parse_probe_arg: (the last op, fetch → value or address, BTF type of a named value)."""
    head = arg[:1]
    if head == "$":
        return _parse_var(arg[1:], index, ctx)
    if head == "%":
        if ctx.event is not None or ctx.fprobe or ctx.tpoint:
            raise ProbeError("BAD_VAR", index, ctx.offset)
        reg = _REG_INDEX.get(arg[1:])
        if reg is None:
            raise ProbeError("BAD_REG_NAME", index, ctx.offset)
        return "REG", lambda src, cpu: src.values[reg], None
    if head == "@":
        return _parse_memory(arg, index, ctx)
    if head in ("+", "-"):
        return _parse_deref(arg, index, ctx)
    if head == "\\":
        if arg[1:2] == '"':
            text = arg[2:]
            if not text or text[-1] != '"':
                raise ProbeError("IMMSTR_NO_CLOSE", index, ctx.offset + 2 + len(text))
            data = text[:-1].encode()
            return "DATA", lambda src, cpu: data, None
        imm = _immediate(arg[1:])
        if imm is None:
            raise ProbeError("BAD_IMM", index, ctx.offset + 1)
        return "IMM", lambda src, cpu: imm, None
    if head.isalpha() or head == "_":
        if not ctx.at_function() or ctx.event is not None:
            raise ProbeError("NOSUP_BTFARG", index, ctx.offset)
        return _parse_btf_arg(arg, index, ctx)
    raise ProbeError("BAD_FETCH_ARG", index, ctx.offset)


def _immediate(text: str) -> int | None:
    try:
        if text[:1].isdigit():
            v = int(text, 0)
        elif text[:1] in "+-":
            v = int(text[1:], 0) * (-1 if text[0] == "-" else 1)
        else:
            return None
    except ValueError:
        return None
    return v & 0xFFFFFFFFFFFFFFFF


def _parse_var(var: str, index: int, ctx: ParseContext) -> tuple[str, Fetch, Any]:
    """parse_probe_vars: ``$retval``, ``$stack[N]``, ``$comm``, ``$argN``, event fields."""
    offs = ctx.offset
    if ctx.event is not None:
        f = next((f for f in ctx.event.fields if f.name == var), None)
        if f is not None:
            return "TP_ARG", lambda src, cpu: src[var], None
        if var in ("comm", "COMM"):
            return "COMM", lambda src, cpu: cpu.task.comm.encode(), None
        raise ProbeError("BAD_ATTACH_ARG", index, offs)
    if var == "retval" or var.startswith(("retval->", "retval.", "retval-")):
        if not ctx.ret:
            raise ProbeError("RETVAL_ON_PROBE", index, offs)
        if ctx.ret_type == "void":
            raise ProbeError("NO_RETVAL", index, offs)
        ax = _REG_INDEX["ax"]
        ret_type = ctype_of(ctx.ret_type) if ctx.ret_type else None
        fetch: Fetch = lambda src, cpu: src.values[ax]      # noqa: E731
        if var == "retval":
            return "RETVAL", fetch, ret_type
        ctx.offset += len("$retval")
        return _btf_fields(fetch, ret_type, var[6:], index, ctx)
    if var.startswith("stack"):
        rest = var[5:]
        if not rest:
            sp = _REG_INDEX["sp"]
            return "STACKP", lambda src, cpu: src.values[sp], None
        if not rest.isdigit():
            raise ProbeError("BAD_VAR", index, offs)
        if int(rest) > PARAM_MAX_STACK:
            raise ProbeError("BAD_STACK_NUM", index, offs)
        return "STACK", _stack_nth(ctx.kernel.mem, int(rest)), None
    if var in ("comm", "COMM"):
        return "COMM", lambda src, cpu: cpu.task.comm.encode(), None
    if var.startswith("arg") and ctx.at_function():
        rest = var[3:]
        if rest == "*":
            raise ProbeError("BAD_VAR_ARGS", index, offs)
        if not rest.isdigit():
            raise ProbeError("BAD_VAR", index, offs)
        n = int(rest)
        if not n or n > PARAM_MAX_STACK:
            raise ProbeError("BAD_ARG_NUM", index, offs)
        return "ARG", _nth_arg(ctx, n), None
    raise ProbeError("BAD_VAR", index, offs)


def _nth_arg(ctx: ParseContext, n: int) -> Fetch:
    """regs_get_kernel_argument (x86-64: di si dx cx r8 r9, then the stack); a tracepoint
    probe's arguments are the tracepoint's own."""
    if ctx.tpoint:
        return lambda src, cpu: reg_value(src[n - 1]) if n <= len(src) else 0
    if n <= len(_ARG_REGS):
        reg = _REG_INDEX[_ARG_REGS[n - 1]]
        return lambda src, cpu: src.values[reg]
    return _stack_nth(ctx.kernel.mem, n - len(_ARG_REGS))


def _parse_btf_arg(arg: str, index: int, ctx: ParseContext) -> tuple[str, Fetch, Any]:
    """parse_btf_arg: a parameter named in the function's (or tracepoint's) BTF prototype,
    then its members: ``name->field[.field]...``."""
    cut = re.search(r"[.-]", arg)
    name = arg[:cut.start()] if cut else arg
    if ctx.params is None:
        raise ProbeError("NO_BTF_ENTRY", index, ctx.offset)
    for i, (spelling, pname) in enumerate(ctx.params):
        if pname == name:
            fetch = _nth_arg(ctx, i + 1)
            ctype = ctype_of(spelling)
            if cut is None:
                return "ARG", fetch, ctype
            ctx.offset += len(name)
            return _btf_fields(fetch, ctype, arg[len(name):], index, ctx)
    raise ProbeError("NO_BTFARG", index, ctx.offset)


def _btf_fields(fetch: Fetch, ctype: Any, chain: str, index: int,
                ctx: ParseContext) -> tuple[str, Fetch, Any]:
    """parse_btf_field: each ``->`` (or a first ``.``) goes through a struct pointer and each
    ``.`` into a member; every pointer crossed is one more dereference instruction."""
    mem = ctx.kernel.mem
    pos = 0                                   # in ``chain``, which starts at a separator
    first = True
    while pos < len(chain):
        step = _separator(chain, pos, index, ctx)
        if step is None:
            break
        pos += step
        ctx.offset += step
        if not isinstance(ctype, Pointer):
            raise ProbeError("NO_PTR_STRCT", index, ctx.offset)
        if not first:                         # the previous member's value: read it
            fetch = _read_sized(mem, fetch, 8)
        first = False
        ctype = ctype.target
        off = 0
        while True:                           # member, then ``.member`` ...
            m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", chain[pos:])
            field = m.group(0) if m else ""
            member = ctype.find(field) if isinstance(ctype, Struct) and field and \
                not field.startswith(_PAD_PREFIX) else None
            if member is None:
                raise ProbeError("NO_BTF_FIELD", index, ctx.offset)
            off += member.offset
            ctype = member.type
            pos += len(field)
            ctx.offset += len(field)
            if chain[pos:pos + 1] != ".":
                break
            pos += 1
            ctx.offset += 1
        _next_insn(ctx, index, ctx.offset)
        fetch = _offset_fetch(fetch, off)
        if pos < len(chain) and chain[pos] != "-":
            break
    return "DEREF", fetch, ctype


def _offset_fetch(fetch: Fetch, off: int) -> Fetch:
    return lambda src, cpu: _add(fetch(src, cpu), off)


def _separator(chain: str, pos: int, index: int, ctx: ParseContext) -> int | None:
    """split_next_field: ``->`` (2) or ``.`` (1); a lone ``-`` is BAD_HYPHEN."""
    if chain.startswith("->", pos):
        return 2
    if chain.startswith(".", pos):
        return 1
    if chain.startswith("-", pos):
        raise ProbeError("BAD_HYPHEN", index, ctx.offset)
    return None


def _parse_memory(arg: str, index: int, ctx: ParseContext) -> tuple[str, Fetch, str | None]:
    """``@ADDR``, ``@SYM[+|-OFFS]`` (``@+OFFS`` is a uprobe file offset)."""
    offs = ctx.offset
    if arg[1:2].isdigit():
        try:
            addr = int(arg[1:], 0)
        except ValueError:
            raise ProbeError("BAD_MEM_ADDR", index, offs) from None
    elif arg[1:2] == "+":
        raise ProbeError("FILE_ON_KPROBE", index, offs)
    else:
        m = re.match(r"^([^+-]*)(?:([+-])(.*))?$", arg[1:])
        assert m is not None
        sym, sign, off = m.group(1), m.group(2) or "", m.group(3) or ""
        base = ctx.kernel.kallsyms.address_of(sym)
        try:
            delta = int(sign + off, 0) if sign else 0
        except ValueError:
            raise ProbeError("BAD_MEM_ADDR", index, offs) from None
        if base is None:
            # traceprobe_update_arg fails when the probe registers: ENOENT, BAD_PROBE_ADDR
            ctx.missing_symbol = True
            base = 0
        addr = base + delta
        _next_insn(ctx, index, offs)
    _next_insn(ctx, index, offs)
    return "DEREF", lambda src, cpu: addr, None


def _parse_deref(arg: str, index: int, ctx: ParseContext) -> tuple[str, Fetch, str | None]:
    """``+|-[u]OFFS(FETCHARG)``: the offset, the braces, the inner fetch, one more insn."""
    sign = arg[0]
    text = arg[1:]
    user = text[:1] == "u"           # FETCH_OP_UDEREF: the address is read as user memory
    if user:
        text = text[1:]
    open_at = text.find("(")
    if open_at < 0:
        raise ProbeError("DEREF_NEED_BRACE", index, ctx.offset)
    try:
        off = int(sign + text[:open_at], 0) if text[:open_at] else None
    except ValueError:
        off = None
    if off is None:
        raise ProbeError("BAD_DEREF_OFFS", index, ctx.offset)
    ctx.offset += len(arg) - len(text) + open_at + 1
    inner_text = text[open_at + 1:]
    close = inner_text.rfind(")")
    if close < 0:
        raise ProbeError("DEREF_OPEN_BRACE", index, ctx.offset + len(inner_text))
    here = ctx.offset
    op, inner, _ = _parse_fetch(inner_text[:close], index, ctx)
    ctx.offset = here
    if op in ("COMM", "DATA"):
        raise ProbeError("COMM_CANT_DEREF", index, here)
    _next_insn(ctx, index, here)
    if op == "DEREF":
        inner = _read_sized(ctx.kernel.mem, inner, 8)

    def deref(src: Any, cpu: Any, f: Fetch = inner) -> int | None:
        return _add(f(src, cpu), off)
    deref.user = user                # type: ignore[attr-defined]
    return "DEREF", deref, None


def _add(v: int | None, off: int) -> int | None:
    return None if v is None else (v + off) & 0xFFFFFFFFFFFFFFFF


def _is_user(fetch: Fetch) -> bool:
    """Whether ``fetch`` is a ``+uOFFS(...)`` address, which is read as user memory."""
    return getattr(fetch, "user", False)


def _read_sized(mem: Any, addr_fetch: Fetch, size: int) -> Fetch:
    """probe_mem_read (user memory below TASK_SIZE, kernel memory above), or
    probe_mem_read_user for a ``+u`` dereference."""
    read = mem.probe_read_user if _is_user(addr_fetch) else mem.probe_mem_read

    def fetch(src: Any, cpu: Any) -> int | None:
        addr = addr_fetch(src, cpu)
        if addr is None:
            return None
        err, raw = read(addr, size)
        return None if err else int.from_bytes(raw, "little")
    return fetch


def _stack_nth(mem: Any, n: int) -> Fetch:
    sp = _REG_INDEX["sp"]
    return _read_sized(mem, lambda src, cpu: src.values[sp] + 8 * n, 8)


def _finish_fetch(fetch: Fetch, store: str, type_name: str, count: int,
                  bitfield: tuple[int, int, int] | None, mem: Any, kernel: Any) -> Fetch:
    """The value stored in the record: an int, bytes (a string), or a tuple (an array)."""
    size = FETCH_TYPES[type_name][0]
    if type_name == "symstr":
        return _symstr_fetch(fetch, kernel)
    if type_name in STRING_TYPES:
        return _string_fetch(fetch, mem, type_name == "ustring" or _is_user(fetch))
    if count:
        read = mem.probe_read_user if _is_user(fetch) else mem.probe_mem_read

        def array(src: Any, cpu: Any) -> tuple | None:
            addr = fetch(src, cpu)
            if addr is None:
                return None
            err, raw = read(addr, size * count)
            if err:
                return None
            return tuple(int.from_bytes(raw[i:i + size], "little") for i in range(0, len(raw), size))
        return array
    if store == "ST_MEM":
        fetch = _read_sized(mem, fetch, size)
    if bitfield is not None:
        width, offset, _ = bitfield
        mask = (1 << width) - 1
        inner = fetch
        return lambda src, cpu: None if (v := inner(src, cpu)) is None else (v >> offset) & mask
    return fetch


def _string_fetch(fetch: Fetch, mem: Any, user: bool) -> Fetch:
    """FETCH_OP_ST_STRING (a user string below TASK_SIZE, else a kernel one) or, for
    ``:ustring`` and a ``+u`` address, FETCH_OP_ST_USTRING (user memory only: a kernel
    address faults)."""
    read_str = mem.probe_read_user_str if user else mem.probe_mem_read_str

    def string(src: Any, cpu: Any) -> bytes | None:
        v = fetch(src, cpu)
        if v is None or isinstance(v, bytes):
            return v
        if isinstance(v, str):
            return v.encode()
        n, raw = read_str(v, MAX_STRING_SIZE)
        return None if n < 0 else raw.split(b"\0", 1)[0]
    return string


def _symstr_fetch(fetch: Fetch, kernel: Any) -> Fetch:
    def symstr(src: Any, cpu: Any) -> bytes | None:
        v = fetch(src, cpu)
        return None if v is None else symbol_text(v, kernel.kallsyms, True).encode()
    return symstr


def symbol_text(addr: int, symbols: Any, offset: bool) -> str:
    """%pS (with ``+off/size``) or %ps of an address; a miss prints the hex value."""
    if not addr:
        return "0"
    hit = symbols.lookup(addr)
    if hit is None:
        return f"0x{addr:x}"
    name, off, size = hit
    return f"{name}+0x{off:x}/0x{size:x}" if offset else name
