"""Which field a filter names, and what kind of value it holds (filter_assign_type, 6.x).

Lookup order is trace_find_event_field(): the event's own fields, then the generic pseudo
fields (CPU, cpu, common_cpu, COMM, comm, stacktrace, STACKTRACE), then the common fields.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# filter types (enum in include/linux/trace_events.h; names, not numbers, are what we need)
OTHER = "other"
STATIC_STRING = "static_string"  # char[N]
DYN_STRING = "dyn_string"  # __data_loc char[]
RDYN_STRING = "rdyn_string"  # __rel_loc char[]
PTR_STRING = "ptr_string"  # char * / const char *
CPUMASK = "cpumask"  # __data_loc cpumask_t
COMM = "comm"
CPU = "cpu"
STACKTRACE = "stacktrace"

STRING_TYPES = frozenset({STATIC_STRING, DYN_STRING, RDYN_STRING, PTR_STRING, COMM})
COMMON_FIELD_NAMES = frozenset({"common_type", "common_flags", "common_preempt_count", "common_pid"})


class FieldLike(Protocol):
    """A field as the ``format`` file describes it; arrays carry ``[N]`` on the type."""

    # read-only: an implementation may narrow them (a Field's is_signed is a bool)
    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def offset(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def is_signed(self) -> bool | int: ...


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    offset: int
    size: int
    is_signed: bool
    filter_type: str

    @property
    def is_string(self) -> bool:
        return self.filter_type in STRING_TYPES


def filter_assign_type(type_text: str) -> str:
    if "__data_loc" in type_text:
        if "char" in type_text:
            return DYN_STRING
        if "cpumask_t" in type_text:
            return CPUMASK
    if "__rel_loc" in type_text and "char" in type_text:
        return RDYN_STRING
    if "[" in type_text and "char" in type_text:
        return STATIC_STRING
    if type_text in ("char *", "const char *"):
        return PTR_STRING
    return OTHER


GENERIC_FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("CPU", "int", 0, 0, True, CPU),
        Field("cpu", "int", 0, 0, True, CPU),
        Field("common_cpu", "int", 0, 0, True, CPU),
        Field("COMM", "char *", 0, 0, False, COMM),
        Field("comm", "char *", 0, 0, False, COMM),
        Field("stacktrace", "char *", 0, 0, False, STACKTRACE),
        Field("STACKTRACE", "char *", 0, 0, False, STACKTRACE),
    )
}


def to_field(field: FieldLike) -> Field:
    return Field(
        field.name,
        field.type,
        int(field.offset),
        int(field.size),
        bool(field.is_signed),
        filter_assign_type(field.type),
    )


class FieldTable:
    """The fields one event offers to its filter, searched in the kernel's order."""

    def __init__(self, fields: Sequence[FieldLike]) -> None:
        own: dict[str, Field] = {}
        common: dict[str, Field] = {}
        for raw in fields:
            field = to_field(raw)
            (common if field.name in COMMON_FIELD_NAMES else own)[field.name] = field
        self._own = own
        self._common = common

    def find(self, name: str) -> Field | None:
        return self._own.get(name) or GENERIC_FIELDS.get(name) or self._common.get(name)
