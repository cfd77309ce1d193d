"""ftrace predicate filters as Linux 6.18 parses and runs them (kernel/trace/trace_events_filter.c).

    from tracesim.filters.predicate import compile_filter, FilterError
    flt = compile_filter('name == "lo" && len > 10', fields)
    flt.match(record, cpu, comm)      # -> bool
    flt.text, flt.fields_used
    err.filter_file_text(), err.error_log_entry("  280.846481")   # on FilterError
"""
from __future__ import annotations

from tracesim.filters.predicate.compile import (
    CompiledFilter,
    compile_filter,
    compile_subsystem_filter,
    is_clear_request,
)
from tracesim.filters.predicate.errors import ERROR_TEXTS, FilterError
from tracesim.filters.predicate.fields import FieldLike
from tracesim.filters.predicate.parser import SymbolLookup

__all__ = [
    "CompiledFilter",
    "ERROR_TEXTS",
    "FieldLike",
    "FilterError",
    "SymbolLookup",
    "compile_filter",
    "compile_subsystem_filter",
    "is_clear_request",
]
