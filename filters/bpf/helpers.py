"""Helper registry: Linux helper id (uapi ``enum bpf_func_id``) -> Python callable.

A helper is ``fn(vm, r1, r2, r3, r4, r5) -> int``: ``vm`` is the engine's ``VMContext`` (its
memory, the program, the caller's per-run ``env``, the packet), the result goes to r0 (taken modulo
2**64).  To end the whole program early a helper raises ``StopProgram(r0)``; to fail it raises a
``VMError``.  The kernel model fills the global table; a program may carry its own table instead
(the conformance runner does, for its helper 5 "unwind").  Engines bind helpers when a program is
loaded/compiled, so a call costs one Python call.
"""
from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from filters.bpf.isa import HELPER_IDS

Helper = Callable[..., int]

HELPERS: dict[int, Helper] = {}


class StopProgram(Exception):
    """Raised by a helper to end the program at once with r0 = ``value``."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value


class VMContext:
    """What a helper sees of the running engine."""
    __slots__ = ("program", "mem", "env", "packet")

    def __init__(self, program: Any, mem: Any) -> None:
        self.program = program
        self.mem = mem
        self.env: Any = None          # whatever the caller passed to run(env=...)
        self.packet: bytes | bytearray | None = None


def helper_id(name_or_id: int | str) -> int:
    if isinstance(name_or_id, int):
        return name_or_id
    return HELPER_IDS[name_or_id.removeprefix("bpf_")]


def register(name_or_id: int | str, fn: Helper | None = None, *,
             table: MutableMapping[int, Helper] | None = None):
    """Register ``fn`` under a helper id or name; usable as a decorator.  ``table`` defaults to
    the global ``HELPERS``."""
    target = HELPERS if table is None else table
    hid = helper_id(name_or_id)

    def add(f: Helper) -> Helper:
        target[hid] = f
        return f

    return add(fn) if fn is not None else add


def unregister(name_or_id: int | str, *, table: MutableMapping[int, Helper] | None = None) -> None:
    (HELPERS if table is None else table).pop(helper_id(name_or_id), None)
