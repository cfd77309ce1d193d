"""The filter error table (trace_events_filter.c ERRORS) and how a failed write reads back.

After a failed write the event's ``filter`` file shows (append_filter_err + print_event_filter)::

    <expr>
    <pos spaces>^
    parse_error: <text>
    <empty line>

or, when the parser stopped without recording an error (pos None here)::

    <expr>
    Error: (0)
    <empty line>

and ``error_log`` gets an entry (tracing_log_err, location "event filter parse error") whose
caret sits 11 + pos columns in (11 = len("  Command: ")), the raw position, not clamped.
"""
from __future__ import annotations

# Index = the kernel's FILT_ERR_* value; order matters (6.x, with the cpumask additions).
ERROR_TEXTS: tuple[str, ...] = (
    "No error",
    "Invalid operator",
    "Too many '('",
    "Too few '('",
    "Missing matching quote",
    "Missing '{'",
    "Missing '}'",
    "Operand too long",
    "Expecting string field",
    "Expecting numeric field",
    "Illegal operation for field type",
    "Field not found",
    "Illegal integer value",
    "Couldn't find or set field in one of a subsystem's events",
    "Too many terms in predicate expression",
    "Meaningless filter expression",
    "Invalid cpulist",
    "Only 'ip' field is supported for function trace",
    "Invalid value (did you forget quotes)?",
    "Function not found",
    "Error",
    "No filter found",
)

NONE = 0
INVALID_OP = 1
TOO_MANY_OPEN = 2
TOO_MANY_CLOSE = 3
MISSING_QUOTE = 4
MISSING_BRACE_OPEN = 5
MISSING_BRACE_CLOSE = 6
OPERAND_TOO_LONG = 7
EXPECT_STRING = 8
EXPECT_DIGIT = 9
ILLEGAL_FIELD_OP = 10
FIELD_NOT_FOUND = 11
ILLEGAL_INTVAL = 12
BAD_SUBSYS_FILTER = 13
TOO_MANY_PREDS = 14
INVALID_FILTER = 15
INVALID_CPULIST = 16
IP_FIELD_ONLY = 17
INVALID_VALUE = 18
NO_FUNCTION = 19
ERRNO = 20
NO_FILTER = 21

ERROR_LOG_LOCATION = "event filter parse error"
_COMMAND_PREFIX = "  Command: "


class FilterError(Exception):
    """A filter the kernel refuses: the write fails with ``-errno``.

    ``message`` is the parse error text, ``pos`` its byte position in ``text`` (None when the
    kernel recorded no parse error and shows ``Error: (0)``), ``text`` the expression as stored
    (trailing whitespace dropped).
    """

    def __init__(self, errno: int, message: str, pos: int | None, text: str) -> None:
        super().__init__(errno, message, pos, text)
        self.errno = errno
        self.message = message
        self.pos = pos
        self.text = text

    def __str__(self) -> str:
        where = "" if self.pos is None else f" at {self.pos}"
        return f"{self.message}{where} (errno {self.errno}) in {self.text!r}"

    def filter_file_text(self) -> str:
        """Exactly what ``cat filter`` shows after the failed write."""
        if self.pos is None:
            return f"{self.text}\nError: (0)\n\n"
        width = len(self.text.encode("utf-8", "surrogateescape"))
        return f"{self.text}\n{' ' * min(self.pos, width)}^\nparse_error: {self.message}\n\n"

    def error_log_entry(self, timestamp: str) -> str:
        """The ``error_log`` lines for this failure; ``timestamp`` like ``"  280.846481"``."""
        message = ERROR_TEXTS[ERRNO] if self.pos is None else self.message
        pos = 0 if self.pos is None else self.pos
        return (
            f"[{timestamp}] {ERROR_LOG_LOCATION}: error: {message}\n"
            f"{_COMMAND_PREFIX}{self.text}\n"
            f"{' ' * (len(_COMMAND_PREFIX) + pos)}^\n"
        )
