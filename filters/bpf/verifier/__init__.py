"""The eBPF verifier: decides, before anything runs, that a program is safe (kernel/bpf/verifier.c).

    res = verify(insns, prog_type="kprobe", ctx=None, maps=[], privileged=True,
                 strict_loops=False, log_level=1, log_size=0)
    res.ok, res.error, res.log, res.insn_processed   (complexity_limit=1_000_000 by default)

Inputs (``Insn`` tuples, ``ContextSpec``, map objects) and the ``VerifierResult`` pickle, so a
worker process can verify (``tracesim.filters.bpf.verifier.pool``).

Modules: ``cfg`` (structure), ``liveness`` (static liveness/precision), ``tnum`` and ``bounds``
(scalar tracking), ``state`` (registers, stack, frames, pruning equivalence), ``check`` (the walk),
``context`` (what each program type's context allows), ``log`` (kernel-format messages).
"""
from __future__ import annotations

import errno as _errno
import gc
from collections.abc import Sequence
from dataclasses import dataclass, field

from tracesim.filters.bpf.verifier import cfg as cfg_mod
from tracesim.filters.bpf.verifier import liveness
from tracesim.filters.bpf.verifier.check import COMPLEXITY_LIMIT_INSNS, Walk, combined_stack_check
from tracesim.filters.bpf.verifier.context import ContextSpec, default_context
from tracesim.filters.bpf.verifier.log import Reject, insn_text
from tracesim.filters.bpf.vm.isa import Insn

PROG_TYPES = ("kprobe", "tracepoint", "socket_filter", "conformance", "raw_tracepoint", "tracing",
              "perf_event")

__all__ = ["verify", "VerifierResult", "ContextSpec", "PROG_TYPES"]


@dataclass
class VerifierResult:
    ok: bool
    log: str
    error: str | None
    insn_processed: int = 0
    max_states_per_insn: int = 0
    total_states: int = 0
    peak_states: int = 0
    stack_depth: list[int] = field(default_factory=list)
    errno: int = _errno.EACCES            # a rejection's BPF_PROG_LOAD errno


def verify(insns: Sequence[Insn], prog_type: str = "kprobe", ctx: ContextSpec | None = None,
           maps: Sequence = (), privileged: bool = True, strict_loops: bool = False,
           log_level: int = 1, complexity_limit: int = COMPLEXITY_LIMIT_INSNS,
           log_size: int = 0, attach: str = "") -> VerifierResult:
    """Verify ``insns`` (one ``Insn`` per 8-byte slot) for a program of ``prog_type``.
    ``complexity_limit``: processed insns before "BPF program is too large" (the kernel's
    BPF_COMPLEXITY_LIMIT_INSNS by default; lower it to bound the time spent on a program).
    ``log_size``: keep only the last ``log_size - 1`` bytes of the log, as the kernel's
    rotating log buffer of that size does (0: the whole log; a rejected loop's log has a line
    per processed insn).  ``attach``: a tracing program's expected attach type as its section
    names it (``fentry``, ``fexit``, ``fmod_ret``, ``tp_btf``; "" when unknown), for the
    helpers only some attach types may call."""
    if prog_type not in PROG_TYPES:
        raise ValueError(f"unknown program type {prog_type!r} (one of {', '.join(PROG_TYPES)})")
    insns = list(insns)
    maps = list(maps)
    ctx = ctx if ctx is not None else default_context(prog_type)
    walk = None
    error_lines: list[str] = []
    reject_errno = _errno.EACCES
    # A walk keeps up to tens of thousands of states alive: cyclic GC passes over them would
    # make it quadratic, and it makes no cycles to collect.  Restored as it was.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        cfg = cfg_mod.build(insns, maps, privileged, strict_loops,
                            masked_shifts=prog_type == "conformance")
        stack_ptr = liveness.stack_offsets(cfg)
        ptrs = liveness.may_pointer(cfg, stack_ptr)
        live, needed = liveness.analyse(cfg, prog_type, stack_ptr=stack_ptr, ptrs=ptrs)
        walk = Walk(cfg, live, needed, prog_type, ctx, maps, privileged, log_level)
        walk.attach = attach
        walk.complexity_limit = complexity_limit
        walk.top_based = liveness.top_based(cfg, stack_ptr)
        walk.reanalyse = lambda decided, seen: liveness.analyse(cfg, prog_type, decided,
                                                                stack_ptr, ptrs, seen)
        walk.run()
        combined_stack_check(cfg, walk.stack_depth)
    except Reject as e:
        error_lines = e.lines
        reject_errno = e.errno
    finally:
        if gc_was_enabled:
            gc.enable()
    ok = not error_lines
    processed = walk.insn_processed if walk else 0
    summary = (f"processed {processed} insns (limit {complexity_limit}) "
               f"max_states_per_insn {walk.max_states_per_insn if walk else 0} "
               f"total_states {walk.total_states if walk else 0} "
               f"peak_states {walk.peak_states if walk else 0} mark_read 0")
    log = ""
    if log_level:
        entries = walk.log if walk is not None and (not ok or log_level >= 2) else []
        log = _render_log(insns, entries, error_lines + [summary], log_size)
    return VerifierResult(ok, log, error_lines[0] if error_lines else None, processed,
                          walk.max_states_per_insn if walk else 0,
                          walk.total_states if walk else 0, walk.peak_states if walk else 0,
                          list(walk.stack_depth) if walk else [], reject_errno)


def insn_line(insns: list[Insn], pc: int) -> str:
    return f"{pc}: {insn_text(insns, pc)}"


def _render_log(insns: list[Insn], entries: list, tail: list[str], log_size: int) -> str:
    """The log text: ``entries`` (lines, or pcs to print as instruction lines, each formatted
    once) then ``tail``; with ``log_size``, only the last ``log_size - 1`` bytes, rendered from
    the end so a million-line log costs only what is kept."""
    text_of: dict[int, str] = {}
    budget = log_size - 1 if log_size > 0 else -1
    out: list[str] = []
    size = 0
    for source in (reversed(tail), reversed(entries)):
        for x in source:
            if isinstance(x, int):
                line = text_of.get(x)
                if line is None:
                    line = text_of[x] = insn_line(insns, x)
            else:
                line = x
            out.append(line)
            size += len(line) + 1
            if 0 <= budget < size:
                text = "\n".join(reversed(out)) + "\n"
                return text[len(text) - budget:]
    return "\n".join(reversed(out)) + "\n"
