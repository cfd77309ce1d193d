"""Helpers that run other BPF code: ``bpf_tail_call`` (12) into a ``PROG_ARRAY``, and the callback
helpers ``bpf_loop`` (181) and ``bpf_for_each_map_elem`` (164) (kernel/bpf/core.c, helpers.c,
bpf_iter.c).

Tail calls.  A successful ``bpf_tail_call`` never returns: the helper raises ``TailCall`` and the
engine that ran the program (every engine, through ``follow_tail_call``) runs the target on the
same context, whose return value is the run's.  A chain makes at most ``MAX_TAIL_CALL_CNT``
tail calls; as in the kernel's interpreter the count also grows on an attempt at an empty slot.
The count lives in the running engine's ``VMContext`` (``tail_calls``), reset at the start of
each run by engines whose program calls the helper; the target starts from ``tail_start``.
A tail call from a bpf-to-bpf subprogram replaces that subprogram only, as the x86-64 JIT does
(it reuses the subprogram's frame): the target runs at once (``tail_call_in_subprog``) and its
r0 is what the subprogram returns to its caller, which goes on; the chain's count carries on
too (the JIT passes the counter through the frames).  The engine's own state (its stack, and
what the engine keeps of the run) is kept across the target's run, which may be the same
program re-entered.

Callbacks.  ``r2 = callback ll`` (LD_IMM64 with src ``PSEUDO_FUNC``) loads a function handle:
``FUNC_HANDLE_BASE``, the callback's first instruction and the deepest frame the function
loading it may run in (``program.function_depth``).  The helper runs the callback through
``vm.call_function`` (the reference interpreter on the engine's own memory, see
``interp.bind_callbacks``) with its frame just below that deepest frame, so the callback reads
and writes the caller's stack through its context pointer as in the kernel.  The callbacks
of one helper call share the engines' instruction budget (the kernel has none: 8M loops of a
callback would stall the model for minutes), so a run that exceeds it fails like any other.
"""
from __future__ import annotations

import errno
from typing import Any

from tracesim.filters.bpf.runtime.helpers import VMContext
from tracesim.filters.bpf.runtime.helpers_maps import M64, _map, _neg, current_cpu
from tracesim.filters.bpf.runtime.maps import MAP_TYPE_PROG_ARRAY
from tracesim.filters.bpf.vm.memory import STACK_TOP, VMError

MAX_TAIL_CALL_CNT = 33
BPF_MAX_LOOPS = 8 * 1024 * 1024
FUNC_HANDLE_BASE = 0xFFFF_FFFF_C000_0000     # in the kernel's text range, as a function address
FRAME = 512


class TailCall(Exception):
    """Raised by bpf_tail_call: run ``target`` (an engine) next, on the same context.
    ``final``: the chain's tail-call count once the target has run."""

    def __init__(self, target: Any, count: int, env: Any, packet: Any) -> None:
        super().__init__("tail call")
        self.target, self.count, self.env, self.packet = target, count, env, packet
        self.final = count


def follow_tail_call(tc: TailCall, ctx: Any) -> int:
    """The rest of a run after a tail call: the target engine on ``ctx`` (its own tail calls
    are followed by its own entry, so a chain recurses at most MAX_TAIL_CALL_CNT deep).
    The count the chain ends with is left in ``tc.final``."""
    target = tc.target
    target.vm.tail_start = tc.count
    target.vm.tail_calls = tc.count
    try:
        return target(ctx, env=tc.env, packet=tc.packet)
    finally:
        tc.final = target.vm.tail_calls


def tail_call_in_subprog(tc: TailCall, ctx: Any, vm: VMContext, stack: bytearray,
                         save: Any = None, restore: Any = None) -> int:
    """A tail call made in a bpf-to-bpf subprogram of the engine whose ``vm`` and ``stack``
    are given: the target runs now, on ``ctx``; its r0 is the subprogram's return value.
    The engine's stack (and what ``save()`` returns, given back to ``restore``) is kept
    across the target's run; the engine's count becomes the chain's."""
    kept = bytes(stack)
    state = save() if save is not None else None
    try:
        r0 = follow_tail_call(tc, ctx)
    finally:
        stack[:] = kept
        if restore is not None:
            restore(state)
    vm.tail_calls = tc.final
    return r0


def with_tail_calls(entry: Any, vm: VMContext) -> Any:
    """``entry(ctx, *args) -> r0`` (a JIT's generated function) starting each run's tail-call
    count and following a tail call."""
    def run(ctx: Any, *args: int) -> int:
        vm.tail_calls, vm.tail_start = vm.tail_start, 0
        try:
            return entry(ctx, *args)
        except TailCall as tc:
            r0 = follow_tail_call(tc, ctx)
            vm.tail_calls = tc.final
            return r0
    return run


def calls_helper(program: Any, helper_id: int) -> bool:
    """Whether ``program`` has a call to helper ``helper_id``."""
    return any(i.opcode == 0x85 and i.src == 0 and i.imm == helper_id for i in program.insns)


def tail_call(vm: VMContext, r1: int, r2: int, r3: int, *_: int) -> int:
    m = _map(vm, r2)
    if m.map_type != MAP_TYPE_PROG_ARRAY:
        raise VMError(f"map {m.name} is not a program array")
    index = r3 & 0xFFFF_FFFF
    if index >= m.max_entries or vm.tail_calls >= MAX_TAIL_CALL_CNT:
        return _neg(errno.ENOENT)
    vm.tail_calls += 1
    prog = m.slots.get(index)
    if prog is None:
        return _neg(errno.ENOENT)
    raise TailCall(prog.runner, vm.tail_calls, vm.env, vm.packet)


# ---------------------------------------------------------------- callbacks

def func_handle(target: int, caller_depth: int) -> int:
    """The value ``ld_imm64 PSEUDO_FUNC`` loads for a callback at insn ``target``, loaded in a
    function that runs at most ``caller_depth`` frames deep."""
    return FUNC_HANDLE_BASE + (target << 4) + caller_depth


def _callback(vm: VMContext, handle: int) -> tuple[int, int]:
    """(first insn, r10) of the callback a function handle names."""
    rel = handle - FUNC_HANDLE_BASE
    if not 0 <= rel < 1 << 24:
        raise VMError(f"{handle:#x} is not a callback function")
    return rel >> 4, STACK_TOP - (rel & 0xF) * FRAME


def loop(vm: VMContext, r1: int, r2: int, r3: int, r4: int, *_: int) -> int:
    """bpf_loop(nr_loops, callback_fn, callback_ctx, flags): callback(i, ctx) for i < nr_loops
    until it returns non-zero; the number of calls made."""
    if r4:
        return _neg(errno.EINVAL)
    if r1 > BPF_MAX_LOOPS:
        return _neg(errno.E2BIG)
    target, fp = _callback(vm, r2)
    call = vm.call_function
    vm.callback_insns = 0
    for i in range(r1):
        if call(target, (i, r3), fp):
            return i + 1
    return r1


def for_each_map_elem(vm: VMContext, r1: int, r2: int, r3: int, r4: int, *_: int) -> int:
    """bpf_for_each_map_elem(map, callback_fn, callback_ctx, flags): callback(map, &key,
    &value, ctx) for each element (arrays: every index) until it returns non-zero; the number
    of elements visited."""
    if r4:
        return _neg(errno.EINVAL)
    m = _map(vm, r1)
    target, fp = _callback(vm, r2)
    call = vm.call_function
    vm.callback_insns = 0
    key_buf = bytearray(m.key_size)
    key_addr = vm.mem.address_of(key_buf, writable=False, name="callback key")
    values = vm.mem.address_of(m.values, name=m.name)
    cpu = current_cpu(vm)
    n = 0
    try:
        for key in list(m.keys()):
            off = m.lookup_offset(key, cpu)
            if off is None:
                continue
            key_buf[:] = key
            n += 1
            if call(target, (r1, key_addr, values + off, r3), fp):
                break
    finally:
        vm.mem.unmap(vm.mem.find(key_addr, max(1, m.key_size)))
    return n & M64
