"""What a helper implementation is, and what it sees of the running engine.

A helper is ``fn(vm, r1, r2, r3, r4, r5) -> int``: ``vm`` is the engine's ``VMContext`` (its
memory, the program, the caller's per-run ``env``, the packet), the result goes to r0 (taken modulo
2**64).  To end the whole program early a helper raises ``StopProgram(r0)``; to fail it raises a
``VMError``.  Which helper each id is, its prototype and who may call it is the one table in
``runtime.helper_table``; a program carries an id -> callable map made from it (or its own
copy: tests and the conformance runner pass ``helpers=``), and engines bind those callables
when a program is loaded/compiled, so a call costs one Python call.
"""
from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from tracesim.filters.bpf.vm.isa import HELPER_IDS

Helper = Callable[..., int]


class StopProgram(Exception):
    """Raised by a helper to end the program at once with r0 = ``value``."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value


class VMContext:
    """What a helper sees of the running engine."""
    __slots__ = ("program", "mem", "env", "packet", "tail_calls", "tail_start", "call_function",
                 "callback_insns")

    def __init__(self, program: Any, mem: Any) -> None:
        self.program = program
        self.mem = mem
        self.env: Any = None          # whatever the caller passed to run(env=...)
        self.packet: bytes | bytearray | None = None
        self.tail_calls = 0           # bpf_tail_call's count in this run (helpers_calls)
        self.tail_start = 0           # the count the next run starts from (a tail call's target)
        # call_function(pc, args, fp) -> r0: runs a BPF function of the program for helpers
        # that call back (bpf_loop); engines set it (interp.bind_callbacks)
        self.call_function: Any = None
        self.callback_insns = 0       # instructions the callbacks of a helper call ran


def helper_id(name_or_id: int | str) -> int:
    if isinstance(name_or_id, int):
        return name_or_id
    return HELPER_IDS[name_or_id.removeprefix("bpf_")]


def register(name_or_id: int | str, fn: Helper | None = None, *,
             table: MutableMapping[int, Helper]):
    """Put ``fn`` under a helper id or name in ``table`` (a caller's own id -> callable map,
    e.g. a copy from ``helper_table.implementations()``); usable as a decorator."""
    target = table
    hid = helper_id(name_or_id)

    def add(f: Helper) -> Helper:
        target[hid] = f
        return f

    return add(fn) if fn is not None else add


def unregister(name_or_id: int | str, *, table: MutableMapping[int, Helper]) -> None:
    table.pop(helper_id(name_or_id), None)
