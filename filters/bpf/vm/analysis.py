"""The structure of a program, over its decoded instructions: functions, basic blocks, loops and
register liveness.

One analysis for every consumer: the Python JIT and the native JIT lay out their code by these
blocks and loops, the JIT forwards values by the liveness, and the verifier finds subprograms with
the same rule. All of them read ``isa.Insn`` lists (``isa.decode``), the one decoded view of the
bytes. An LD_IMM64 takes two slots; its second slot is never a block leader nor an instruction.
"""
from __future__ import annotations

from collections.abc import Sequence

from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.isa import Insn

Block = tuple[int, int]                 # [start, end) in instruction slots
ALL_REGS = frozenset(range(isa.NUM_REGS))
_CALLER_SAVED_ARGS = frozenset({1, 2, 3, 4, 5})


class JumpOutsideFunction(ValueError):
    """A jump whose target is outside the function holding it (bpf-to-bpf calls are the only way
    into another function)."""

    def __init__(self, pc: int, target: int) -> None:
        super().__init__(f"insn {pc}: jump to {target} leaves its function")
        self.pc, self.target = pc, target


def is_pseudo_call(insn: Insn) -> bool:
    """A bpf-to-bpf call (``call`` with src = BPF_PSEUDO_CALL): imm is the callee's offset."""
    return insn.opcode == isa.OP_CALL and insn.src == isa.PSEUDO_CALL


def function_starts(insns: Sequence[Insn]) -> list[int]:
    """The first slot of the entry function and of every bpf-to-bpf callee, in order."""
    starts = {0}
    for pc, insn in enumerate(insns):
        if is_pseudo_call(insn):
            starts.add(pc + insn.imm + 1)
    return sorted(starts)


def functions(insns: Sequence[Insn]) -> list[Block]:
    """(start, end) of the entry function and every callee: each runs to the next one's start."""
    starts = function_starts(insns)
    ends = starts[1:] + [len(insns)]
    return list(zip(starts, ends, strict=True))


def slots(insns: Sequence[Insn], start: int, end: int) -> list[int]:
    """The instruction indexes of [start, end), without LD_IMM64 second slots."""
    out, pc = [], start
    while pc < end:
        out.append(pc)
        pc += 2 if insns[pc].opcode == isa.LD_IMM64 else 1
    return out


def ends_block(insn: Insn) -> bool:
    """A jump (conditional or not) or an exit: the next slot starts a block."""
    return isa.is_jump(insn) or insn.opcode == isa.OP_EXIT


def falls_through(insn: Insn) -> bool:
    """Whether control can go on to the next slot after ``insn``."""
    return insn.opcode not in (isa.OP_JA, isa.OP_JA32, isa.OP_EXIT)


def blocks(insns: Sequence[Insn], start: int, end: int) -> list[Block]:
    """The basic blocks of the function [start, end): leaders are its start, every jump target
    and every slot after a jump or an exit. Raises ``JumpOutsideFunction``."""
    leaders = {start}
    for pc in slots(insns, start, end):
        insn = insns[pc]
        if isa.is_jump(insn):
            target = isa.jump_target(pc, insn)
            if not start <= target < end:
                raise JumpOutsideFunction(pc, target)
            leaders.add(target)
        if ends_block(insn):
            leaders.add(pc + 1)
    ordered = sorted(x for x in leaders if x < end)
    return list(zip(ordered, ordered[1:] + [end], strict=True))


def successors(insns: Sequence[Insn], blocks_: Sequence[Block]) -> list[list[int]]:
    """For each block (by index), the indexes of the blocks control can go to next."""
    index = {b[0]: i for i, b in enumerate(blocks_)}
    out = []
    for i, (start, end) in enumerate(blocks_):
        pc = slots(insns, start, end)[-1]
        last = insns[pc]
        nxt = [index[isa.jump_target(pc, last)]] if isa.is_jump(last) else []
        if falls_through(last) and i + 1 < len(blocks_):
            nxt.append(i + 1)
        out.append(nxt)
    return out


def loop_heads(insns: Sequence[Insn], blocks_: Sequence[Block]) -> dict[int, int]:
    """Loops by their back edges: head block -> the last block jumping back to it (a jump to
    a block at or before its own)."""
    heads: dict[int, int] = {}
    for i, succs in enumerate(successors(insns, blocks_)):
        for t in succs:
            if t <= i:
                heads[t] = max(i, heads.get(t, i))
    return heads


def reg_uses_defs(insn: Insn, exit_uses: frozenset[int]) -> tuple[frozenset[int], frozenset[int]]:
    """(registers read, registers written) by one instruction. ``exit`` reads ``exit_uses`` (r0
    for the entry function; what a callee hands back for a callee); anything not understood
    reads every register, which is always safe for liveness."""
    op, d, s = insn.opcode, insn.dst, insn.src
    cls = op & 7
    x = op & isa.X
    if cls in (isa.ALU, isa.ALU64):
        mov = op & 0xF0 == isa.MOV
        return frozenset(({s} if x else set()) | (set() if mov else {d})), frozenset({d})
    if cls == isa.LDX:
        return frozenset({s}), frozenset({d})
    if cls == isa.ST:
        return frozenset({d}), frozenset()
    if cls == isa.STX:
        if op & 0xE0 == isa.ATOMIC and insn.imm & isa.FETCH:
            if insn.imm == isa.CMPXCHG:                  # compares with r0, leaves the old value there
                return frozenset({d, s, 0}), frozenset({0})
            return frozenset({d, s}), frozenset({s})
        return frozenset({d, s}), frozenset()
    if cls == isa.LD:
        if op == isa.LD_IMM64:
            return frozenset(), frozenset({d})
        return frozenset({s} if op & 0xE0 == isa.IND else ()), frozenset({0})
    if op == isa.OP_EXIT:
        return exit_uses, frozenset()
    if is_pseudo_call(insn):
        return ALL_REGS, frozenset(range(6))          # the callee starts with every register
    if op in (isa.OP_CALL, isa.JMP | isa.CALL | isa.X):
        return _CALLER_SAVED_ARGS | ({d} if x else frozenset()), frozenset({0})
    if isa.is_jump(insn):
        if op in (isa.OP_JA, isa.OP_JA32):
            return frozenset(), frozenset()
        return frozenset({d} | ({s} if x else set())), frozenset()
    return ALL_REGS, frozenset()


def reg_liveness(insns: Sequence[Insn], blocks_: Sequence[Block],
                 exit_uses: frozenset[int]) -> dict[int, frozenset[int]]:
    """The registers live after each instruction (by pc): read later before being written."""
    code = [[(pc, *reg_uses_defs(insns[pc], exit_uses)) for pc in slots(insns, *b)]
            for b in blocks_]
    succs = successors(insns, blocks_)
    live_in: list[frozenset[int]] = [frozenset()] * len(blocks_)
    changed = True
    while changed:
        changed = False
        for i in reversed(range(len(blocks_))):
            live = frozenset().union(*(live_in[j] for j in succs[i]))
            for _, uses, defs in reversed(code[i]):
                live = (live - defs) | uses
            if live != live_in[i]:
                live_in[i], changed = live, True
    after: dict[int, frozenset[int]] = {}
    for i, body in enumerate(code):
        live = frozenset().union(*(live_in[j] for j in succs[i]))
        for pc, uses, defs in reversed(body):
            after[pc] = live
            live = (live - defs) | uses
    return after
