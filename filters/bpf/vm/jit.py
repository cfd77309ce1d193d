"""JIT: translate a Program into Python source, compiled once into functions (cached per program).

Each BPF function (the entry and every bpf-to-bpf callee) becomes one Python function whose
registers are locals.  Values stay canonical (0 <= v < 2**64) and a mask is emitted only where the
value could leave that range: a small forward dataflow tracks, per register, either "context + k",
"frame pointer + k", "context/frame pointer + something" or an upper bound on its bit width;
a conditional jump that bounds a register from above (``i < 8``, ``i s<= n`` on a value known to
be non-negative) narrows its width on the edge where the bound holds, so loop counters, indexes
and stack addresses lose their masks and signed compares of non-negative values are plain ones.
Loads and stores whose base is provably the context or the frame pointer at an in-bounds constant
offset read the context buffer / the stack bytearray directly; those off the context or frame
pointer at an unknown offset test the region inline; every other access goes through the memory
interface (so it faults cleanly).  Consecutive plain-arithmetic lines are fused when a register's
value has one reader and is dead after it (a backward liveness pass says which).

Control flow: blocks are emitted in order; ``t`` is the next block to run and block k is guarded
by ``if t <= k`` (only blocks that are jump targets need a guard: the others are nested in the
fall-through path of their predecessor).  Each loop (the blocks from a backward jump's target to
its last source) is its own ``while True`` holding only its blocks: a jump back is ``continue``,
a jump out is ``break`` followed by a small dispatch in the enclosing loop.  Functions with loops
(and programs with calls) count executed instructions per block against the budget, in a local
``n``: a block that only changes registers leaves the test to the next one that can do more
(store, call, exit, jump back), so nothing visible happens past the budget.  The jump back of an
innermost counted loop (``rX += c`` once per trip, ``if rX < K goto head``, K <= 4096) is not
a test either: the loop ends within K trips and the next block that can do more tests.
"""
from __future__ import annotations

import re
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tracesim.filters.bpf.runtime.helpers import StopProgram, VMContext
from tracesim.filters.bpf.runtime.helpers_calls import (
    TailCall,
    calls_helper,
    tail_call_in_subprog,
    with_tail_calls,
)
from tracesim.filters.bpf.runtime.program import DEFAULT_BUDGET, Program, ProgramError
from tracesim.filters.bpf.vm import alu, analysis, isa
from tracesim.filters.bpf.vm.alu import M32, M64
from tracesim.filters.bpf.vm.analysis import ALL_REGS, slots
from tracesim.filters.bpf.vm.interp import (
    BudgetExceeded,
    CallDepthExceeded,
    bind_callbacks,
    bind_run,
    new_memory,
    resolve_ld_imm64,
    run_to_result,
)
from tracesim.filters.bpf.vm.memory import (
    CTX_BASE,
    STACK_BASE,
    STACK_BYTES,
    STACK_TOP,
    UNPACK,
    MemoryFault,
    VMError,
)

SIZE = {isa.W: 4, isa.H: 2, isa.B: 1, isa.DW: 8}
TAIL_CALL = 12                          # bpf_tail_call
S64, S32 = 1 << 63, 1 << 31
_BITOPS = {"or": "|", "and": "&", "xor": "^"}
MAX_NEST = 40          # deepest fall-through nesting before blocks get a guard instead

# Abstract register values: ("ctx", k) / ("fp", k) / ("w", bits): value < 2**bits, and
# ("ctx+", 0) / ("fp+", 0): the context / frame pointer plus an unknown amount (loads through
# those test for their region inline before taking the generic path).
UNKNOWN = ("w", 64)
BASE_OF = {"ctx": "ctx", "ctx+": "ctx", "fp": "fp", "fp+": "fp"}


# Fusion works on expressions whose register reads are marked: ``_reg(n)`` is a slot ("\0n\0")
# that renders as ``rn`` (``_render``), so forwarding a value into the next instruction replaces
# the slots of one register, never text that merely looks like it.  Only plain arithmetic (no
# calls, no memory, nothing that raises) is fused: evaluating it later changes nothing.


def _reg(n: int) -> str:
    return f"\0{n}\0"


def _render(text: str) -> str:
    parts = text.split("\0")
    parts[1::2] = [f"r{n}" for n in parts[1::2]]
    return "".join(parts)


def _reads(expr: str, reg: int) -> int:
    """How many times ``expr`` reads register ``reg``."""
    return expr.split("\0")[1::2].count(str(reg))


def _substitute(expr: str, reg: int, value: str) -> str:
    """``expr`` with every read of ``reg`` replaced by the expression ``value``."""
    parts = expr.split("\0")
    inner = value if _atom(value) else f"({value})"
    return "".join(inner if i % 2 and part == str(reg) else f"\0{part}\0" if i % 2 else part
                   for i, part in enumerate(parts))


def _atom(expr: str) -> bool:
    """A single register or a decimal constant (needs no parentheses)."""
    return expr.isdigit() or (expr.startswith("\0") and expr.endswith("\0") and expr.count("\0") == 2)


# ``(A << k) >> k`` is A for any Python int A: what a sign extension of a value known to be
# non-negative leaves after the masks are gone (A an atom or a parenthesized group without
# parentheses inside; the whole a parenthesized group or the whole expression).
_UNSHIFT = re.compile(r"(?:^|(?<=\())\((\([^()]*\)|\0\d+\0|\d+) << (\d+)\) >> (\d+)(?=\)|$)")


def _unshift(expr: str) -> str:
    while True:
        new = _UNSHIFT.sub(lambda m: m[1] if m[2] == m[3] else m[0], expr)
        if new == expr:
            return expr
        expr = new


def _bits(v: int) -> int:
    return v.bit_length()


def _span(a) -> tuple[int, int] | None:
    """(lowest, highest) value a register known as the context or frame pointer + k can hold:
    the context is at CTX_BASE, the frame pointer within the stack (a callee's is below its
    caller's)."""
    if a[0] == "ctx":
        return CTX_BASE + a[1], CTX_BASE + a[1]
    if a[0] == "fp":
        return STACK_BASE + a[1], STACK_TOP + a[1]
    return None


def _width(a) -> int:
    """Bits the register's value fits in (64: unknown)."""
    if a[0] == "w":
        return a[1]
    span = _span(a)
    return _bits(span[1]) if span is not None and span[0] >= 0 and span[1] < S64 else 64


def _stays(a, delta: int) -> bool:
    """Does the context/frame pointer + k in ``a`` plus ``delta`` stay in 0 .. 2**63 - 1?"""
    span = _span(a)
    return span is not None and span[0] + delta >= 0 and span[1] + delta < S64


# ---------------------------------------------------------------------------------------------
# Program structure

def _blocks(insns: Sequence[isa.Insn], start: int, end: int) -> list[tuple[int, int]]:
    try:
        return analysis.blocks(insns, start, end)
    except analysis.JumpOutsideFunction as e:
        raise ProgramError(e.pc, insns[e.pc], "jump leaves its function") from None


# ---------------------------------------------------------------------------------------------
# Dataflow: abstract register values at each block entry

def _plus(a) -> tuple | None:
    """("ctx+", 0) / ("fp+", 0) for a value based on the context / frame pointer, else None."""
    base = BASE_OF.get(a[0])
    return (base + "+", 0) if base else None


def _join(a, b):
    if a == b:
        return a
    if a[0] == "w" and b[0] == "w":
        return ("w", max(a[1], b[1]))
    if _plus(a) is not None and _plus(a) == _plus(b):
        return _plus(a)
    return UNKNOWN


def _transfer(insn: isa.Insn, state: list) -> None:
    """Update ``state`` (abstract r0..r10) for one instruction."""
    op, cls = insn.opcode, insn.opcode & 7
    d, s = insn.dst, insn.src
    if cls in (isa.ALU, isa.ALU64):
        code, x = op & 0xF0, op & isa.X
        if cls == isa.ALU:
            # the operands are the low 32 bits: below 2**aw and 2**bw
            aw = min(32, _width(state[d]))
            bw = min(32, _width(state[s])) if x else _bits(insn.imm & M32)
            w = 32
            if code == isa.AND and not x:
                w = min(aw, bw)
            elif code == isa.MOV and not x and not insn.off:
                w = bw
            elif code == isa.RSH and not x:
                w = max(0, aw - (insn.imm & 31))
            elif code in (isa.AND, isa.MOV) and x and not insn.off:
                w = min(bw, aw if code == isa.AND else 32)
            elif code == isa.END:             # le16/le32/be16/be32 truncate; be64, le64 do not
                w = insn.imm if insn.imm < 64 else 64
            elif code == isa.ADD:
                w = min(32, max(aw, bw) + 1)
            elif code in (isa.OR, isa.XOR):
                w = max(aw, bw)
            elif code == isa.LSH and not x:
                w = min(32, aw + (insn.imm & 31))
            elif code == isa.MUL:
                w = min(32, aw + bw)
            elif code in (isa.DIV, isa.MOD) and not insn.off:
                w = aw                        # at most the dividend (or 0)
            state[d] = ("w", w)
            return
        a = state[d]
        b = state[s] if x else ("w", _bits(insn.imm & M64))
        imm = insn.imm
        if code == isa.MOV:
            state[d] = (state[s] if not insn.off else UNKNOWN) if x else b
        elif code == isa.ADD and not x and a[0] in ("ctx", "fp"):
            state[d] = (a[0], a[1] + imm)
        elif code == isa.SUB and not x and a[0] in ("ctx", "fp"):
            state[d] = (a[0], a[1] - imm)
        elif code in (isa.ADD, isa.SUB) and _plus(a) and b[0] == "w":
            state[d] = _plus(a)
        elif code == isa.ADD and a[0] == "w" and _plus(b):
            state[d] = _plus(b)
        elif a[0] != "w" or b[0] != "w":
            state[d] = UNKNOWN
        elif code == isa.ADD and imm >= 0:
            state[d] = ("w", min(64, max(a[1], b[1]) + 1))
        elif code == isa.MUL and (x or imm >= 0):
            state[d] = ("w", min(64, a[1] + b[1]))
        elif code == isa.AND:
            state[d] = ("w", min(a[1], b[1]))
        elif code in (isa.OR, isa.XOR):
            state[d] = ("w", max(a[1], b[1]))
        elif code == isa.RSH and not x:
            state[d] = ("w", max(0, a[1] - (imm & 63)))
        elif code == isa.LSH and not x:
            state[d] = ("w", min(64, a[1] + (imm & 63)))
        elif code in (isa.DIV, isa.MOD) and not insn.off:
            # both leave at most the dividend; a remainder is also below a non-zero divisor
            # (modulo by a register that may be zero keeps the dividend)
            state[d] = ("w", min(a[1], b[1])) if code == isa.MOD and not x and imm else a
        elif code == isa.ARSH and a[1] < 64:
            state[d] = ("w", max(0, a[1] - (imm & 63))) if not x else a
        elif code == isa.END and insn.imm < 64 and cls == isa.ALU64:
            state[d] = ("w", insn.imm)
        else:
            state[d] = UNKNOWN
        return
    if cls == isa.LDX:
        state[d] = ("w", SIZE[op & 0x18] * 8) if op & 0xE0 == isa.MEM else UNKNOWN
    elif cls == isa.LD:
        if op == isa.LD_IMM64:
            state[d] = UNKNOWN
        else:
            state[0] = ("w", SIZE[op & 0x18] * 8)
    elif cls == isa.STX and op & 0xE0 == isa.ATOMIC and insn.imm & isa.FETCH:
        state[0 if insn.imm == isa.CMPXCHG else s] = UNKNOWN
    elif op == isa.OP_CALL or op == isa.JMP | isa.CALL | isa.X:
        state[0] = UNKNOWN
        if insn.src == isa.PSEUDO_CALL:
            for r in range(1, 6):
                state[r] = UNKNOWN


def _nonneg(a, wide: bool) -> bool:
    """Is the compared value (all 64 bits, or the low 32 of a value below 2**32) non-negative
    as a signed number?"""
    return _width(a) <= (63 if wide else 31)


def _compared(insn: isa.Insn, state: list) -> tuple[int, int] | None:
    """(the register a conditional jump compares, the largest value it has when the jump is
    taken), from a comparison against a constant or a register of known width: None when the
    jump says nothing useful (or about values the widths do not describe)."""
    op, wide = insn.opcode & 0xF0, insn.opcode & 7 == isa.JMP
    d = insn.dst
    a = state[d]
    if a[0] != "w" or not wide and a[1] > 32:
        return None
    if insn.opcode & isa.X:
        b = state[insn.src]
        if b[0] != "w" or not wide and b[1] > 32:
            return None
        if op == isa.JLT or op == isa.JSLT and _nonneg(a, wide) and _nonneg(b, wide):
            return d, (1 << b[1]) - 2 if b[1] else -1
        if op == isa.JLE or op == isa.JSLE and _nonneg(a, wide) and _nonneg(b, wide):
            return d, (1 << b[1]) - 1
        return None
    k = insn.imm & (M64 if wide else M32)
    sign = S64 if wide else S32
    if op in (isa.JSLT, isa.JSLE):
        if not _nonneg(a, wide) or k >= sign:
            return None
        op = isa.JLT if op == isa.JSLT else isa.JLE
    if op == isa.JLT:
        return d, k - 1
    if op in (isa.JLE, isa.JEQ):
        return d, k
    return None


def _refine(insn: isa.Insn, state: list, taken: bool) -> list:
    """The register state along one edge of a conditional jump: a comparison that bounds a
    register from above narrows its width on the edge where the bound holds."""
    op = insn.opcode & 0xF0
    inverse = {isa.JGT: isa.JLE, isa.JGE: isa.JLT, isa.JNE: isa.JEQ,
               isa.JSGT: isa.JSLE, isa.JSGE: isa.JSLT}
    if not taken:
        if op not in inverse or insn.opcode & isa.X:
            return list(state)
        insn = isa.Insn(insn.opcode & 0x0F | inverse[op], insn.dst, insn.src, insn.off, insn.imm)
    found = _compared(insn, state)
    if found is None:
        return list(state)
    reg, top = found
    out = list(state)
    if top < 0:
        return out                             # the edge is never taken: keep it simple
    out[reg] = ("w", min(_width(out[reg]), _bits(top)))
    return out


def _dataflow(insns, blocks, entry_state: list) -> dict[int, list]:
    index = {b[0]: i for i, b in enumerate(blocks)}
    states: dict[int, list] = {blocks[0][0]: list(entry_state)}
    work = [blocks[0][0]]
    while work:
        start = work.pop()
        end = blocks[index[start]][1]
        state = list(states[start])
        succs = []
        for pc in slots(insns, start, end):
            insn = insns[pc]
            if isa.is_jump(insn):
                if insn.opcode in (isa.OP_JA, isa.OP_JA32):
                    succs.append((isa.jump_target(pc, insn), state))
                    break
                succs.append((isa.jump_target(pc, insn), _refine(insn, state, True)))
                state = _refine(insn, state, False)
            elif insn.opcode == isa.OP_EXIT:
                break
            _transfer(insn, state)
        else:
            if end in index:
                succs.append((end, state))
        for succ, edge in succs:
            old = states.get(succ)
            new = list(edge) if old is None else [_join(a, b) for a, b in zip(old, edge, strict=False)]
            if new != old:
                states[succ] = new
                work.append(succ)
    return states


# ---------------------------------------------------------------------------------------------
# Loops: the backward jumps to block t span the blocks [t, s], s the last block jumping back to t.
# Spans that cross are merged until any two are nested or disjoint; each is emitted as one
# ``while True`` whose guard cascade holds only its own blocks, so a jump back costs a few guards,
# not a walk down the whole function.  (Verified code from clang or tracesim cc is reducible and
# lays each loop out contiguously, so spans are its natural loops; anything else still runs
# correctly, merged into fewer, larger loops.)

MAX_UNTESTED_TRIPS = 4096   # a loop whose jump back skips the budget test ends within this many
MAX_LOOP_NEST = 16     # Python allows 20 nested loop/try blocks in one function
MAX_INDENT = 80        # and 100 indentation levels: deeper fall-throughs get a guard instead


@dataclass(eq=False)
class _Loop:
    first: int                     # block indexes
    last: int
    parent: _Loop | None
    items: list = field(default_factory=list)     # block indexes and nested loops, in order
    header_guard: bool = False     # can control arrive at the top with t past the first block?
    entered_mid: bool = False      # does a jump from outside enter past the first block?
    exits: set = field(default_factory=set)       # blocks control may go to when leaving

    def holds(self, b: int) -> bool:
        return self.first <= b <= self.last


def _loop_spans(spans) -> list[tuple[int, int]]:
    """Merge crossing (first, last) spans until every two are nested or disjoint."""
    done: list[tuple[int, int]] = []
    stack: list[tuple[int, int]] = []            # open spans, each inside the one below it
    for first, last in sorted(set(spans), key=lambda s: (s[0], -s[1])):
        while stack and stack[-1][1] < first:
            done.append(stack.pop())
        while stack and stack[-1][1] < last:     # starts inside the top one, ends after it
            first = stack.pop()[0]
        if not stack or stack[-1] != (first, last):
            stack.append((first, last))
    return done + stack


def _loop_tree(nblocks: int, spans) -> tuple[list, list]:
    """Top-level items (block indexes and _Loops) and the innermost loop of every block.  Spans
    nested deeper than MAX_LOOP_NEST stay part of their enclosing loop."""
    top: list = []
    innermost: list = [None] * nblocks
    opening = sorted(spans, key=lambda s: (s[0], -s[1]))
    stack: list[_Loop] = []
    k = 0
    for b in range(nblocks):
        while stack and stack[-1].last < b:
            stack.pop()
        while k < len(opening) and opening[k][0] == b:
            first, last = opening[k]
            k += 1
            if len(stack) < MAX_LOOP_NEST:
                loop = _Loop(first, last, stack[-1] if stack else None)
                (stack[-1].items if stack else top).append(loop)
                stack.append(loop)
        (stack[-1].items if stack else top).append(b)
        innermost[b] = stack[-1] if stack else None
    return top, innermost


def _common(loop: _Loop | None, b: int) -> _Loop | None:
    """The innermost loop holding ``loop`` (or being it) that also holds block b."""
    while loop is not None and not loop.holds(b):
        loop = loop.parent
    return loop


def _walk(items):
    for item in items:
        if isinstance(item, _Loop):
            yield item
            yield from _walk(item.items)


# ---------------------------------------------------------------------------------------------
# Code generation

class _Gen:
    def __init__(self, program: Program, jit: JitProgram, budget: int, capture_regs: bool):
        self.program, self.insns, self.jit = program, program.insns, jit
        self.capture = capture_regs
        self.lines: list[str | None] = []        # None: a line dropped after the fact
        self.env: dict[str, Any] = {}
        self.funcs = analysis.functions(self.insns)
        self.has_calls = len(self.funcs) > 1
        self.budget = budget
        self.dead: set[int] = set()              # registers not read after the current insn
        self.plain: dict[int, tuple[str, int, str]] = {}  # line -> (indent, dst, expr): fusable

    # -- helpers for names in the generated module's globals --------------------------------------
    def const(self, name: str, value: Any) -> str:
        self.env[name] = value
        return name

    def emit(self, depth: int, text: str) -> None:
        """A line that takes no part in fusion (it may still end a fused run)."""
        self.lines.append("    " * depth + text)

    def dead_after(self, pc: int) -> set[int]:
        live = self.live_after[pc]
        return {r for r in range(isa.NUM_REGS) if r not in live}

    def assign(self, depth: int, dst: int, op: str, rhs: str, plain: bool) -> None:
        """``rD op= rhs`` (op "": ``rD = rhs``), rhs with register slots. A plain one may absorb
        the plain assignment before it and be absorbed by the next line."""
        if not plain:
            return self.emit(depth, _render(f"r{dst} {op}= {rhs}" if op else f"r{dst} = {rhs}"))
        whole = f"{_reg(dst)} {op} {rhs if _atom(rhs) else f'({rhs})'}" if op else rhs
        self.fused_line(depth, whole, dst, f"r{dst} {op}= {_render(rhs)}" if op else None)

    def test(self, depth: int, cond: str, negate: bool = False) -> None:
        """``if cond:`` (``if not (cond):``), cond with register slots: always plain.  A test
        of one operand against zero (``x == 0``, negated, or ``x != 0``) is the operand's truth."""
        if cond.endswith((" == 0", " != 0")) and negate == cond.endswith(" == 0"):
            cond, negate = cond[:-5], False
        self.fused_line(depth, f"not ({cond})" if negate else cond, None, None)

    def fused_line(self, depth: int, expr: str, dst: int | None, as_is: str | None) -> None:
        """Emit ``rD = expr`` (dst) or ``if expr:`` (dst None), first folding in the plain
        assignments just before it, in the same block: ``rA = E1`` followed by a line that
        reads rA once becomes that line with E1 in place of rA, when the line writes rA itself
        or rA is dead after it (``self.dead``); followed by one that does not read rA, that
        line alone.  Saves a store and a load per forwarded value.  ``as_is``: the text to use
        when nothing was folded in (an augmented assignment)."""
        indent = "    " * depth
        lines, plain = self.lines, self.plain
        while lines and lines[-1] is not None and (prev := plain.get(len(lines) - 1)) is not None:
            prev_indent, reg, value = prev
            uses = _reads(expr, reg)
            if prev_indent != indent or uses > 1 or (dst != reg and reg not in self.dead) \
                    or len(value) + len(expr) > 240:
                break
            if uses:
                expr = _substitute(expr, reg, value)
            lines.pop()
            del plain[len(lines)]
            as_is = None
        expr = _unshift(expr)
        if dst is None:
            lines.append(f"{indent}if {_render(expr)}:")
            return
        plain[len(lines)] = (indent, dst, expr)
        lines.append(indent + (as_is if as_is is not None else f"r{dst} = {_render(expr)}"))

    # -- functions -------------------------------------------------------------------------------
    def generate(self) -> str:
        for start, end in self.funcs:
            self.function(start, end)
        return "\n".join(line for line in self.lines if line is not None) + "\n"

    def function(self, start: int, end: int) -> None:
        insns = self.insns
        blocks = self.blocks = _blocks(insns, start, end)
        self.block_at = {b[0]: i for i, b in enumerate(blocks)}
        jumps = []                                   # (pc, source block, target block)
        for i, (bstart, bend) in enumerate(blocks):
            for pc in slots(insns, bstart, bend):
                if isa.is_jump(insns[pc]):
                    jumps.append((pc, i, self.block_at[isa.jump_target(pc, insns[pc])]))
        heads = analysis.loop_heads(insns, blocks)   # loop head -> last block jumping back
        top, self.innermost = _loop_tree(len(blocks), _loop_spans(heads.items()))
        self.analyse_loops(top, jumps)
        looped = any(loop is not None for loop in self.innermost)
        self.counting = looped or self.has_calls or len(insns) > self.budget
        self.main = main = start == 0
        if main:
            entry = [("w", 0), ("ctx", 0), UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN] + [("w", 0)] * 4 + [("fp", 0)]
            self.emit(0, "def _f0(ctx, r2=0, r3=0, r4=0, r5=0):")
            init_at = len(self.lines)
            self.emit(1, "")                     # register set-up, filled in below
            if self.counting:
                self.emit(1, f"n = {self.budget}")
            self.fp = str(STACK_TOP)
            self.sb = None
            body = 2
            self.emit(1, "try:")
        else:
            entry = [UNKNOWN] * 10 + [("fp", 0)]
            # The callee starts with the caller's registers (as in the interpreter); only r6-r9
            # and r10 are restored for the caller, r0-r5 come back as the callee left them.
            # ``n`` is the instruction budget left, handed down and back.
            self.emit(0, f"def _f{start}(r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, fp, depth, n):")
            self.emit(1, f"if depth > {isa.MAX_CALL_DEPTH}: raise _Depth('call depth exceeds "
                         f"{isa.MAX_CALL_DEPTH} frames')")
            self.emit(1, f"r10 = fp; sb = fp - {STACK_BASE}")
            self.fp, self.sb = "fp", "sb"
            body = 1
        self.states = _dataflow(insns, blocks, entry)
        self.bounded = self.bounded_back_edges(top)
        exit_uses = (ALL_REGS if self.capture else frozenset({0})) if main else frozenset(range(6))
        self.live_after = analysis.reg_liveness(insns, blocks, exit_uses)
        self.targets = {blocks[t][0] for _, _, t in jumps}
        self.jumps_to = Counter(blocks[t][0] for _, _, t in jumps)
        self.t_sets: list[tuple[int, int]] = []     # (line, value) of every "t = value"
        self.resets: dict[_Loop, list[int]] = {}    # lines "t = first block" before a continue
        t_init = len(self.lines)
        self.emit(body, f"t = {start}")
        self.sequence(top, body, None)
        if not any(line is not None and re.search(r"\bt [<>]", line)
                   for line in self.lines[t_init + 1:]):
            self.lines[t_init] = None                # no guard reads t
        if main:
            self.lines[init_at] = "    " + self.main_setup(
                "\n".join(line for line in self.lines[init_at + 1:] if line is not None))
            self.emit(1, "except _Stop as stop:")
            self.emit(2, "return stop.value & M64")
            self.emit(1, "except (IndexError, _StructError):")
            self.emit(2, "raise _Fault(0, 0, False, 'context shorter than the program expects')")
        self.emit(0, "")

    def bounded_back_edges(self, top: list) -> set[int]:
        """The jumps back that need no budget test: the only jump back to the first block of
        their loop, conditional on ``rX < K`` (or ``<=``, signed ones on values known to be
        non-negative), where rX is written once in the loop, by an ``rX += c`` (c > 0, no
        wrap) in the jumping block before the jump, K at most MAX_UNTESTED_TRIPS and no loop
        inside.  Every
        iteration that goes round adds c to rX and rX stays at most K, so the loop ends soon:
        the next block that does something visible tests the budget, as after a block that only
        changes registers."""
        insns, blocks = self.insns, self.blocks
        found = set()
        for loop in _walk(top):
            if any(isinstance(item, _Loop) for item in loop.items):
                continue                  # innermost loops only: untested trips do not multiply
            head = blocks[loop.first][0]
            back = [pc for b in range(loop.first, loop.last + 1) if blocks[b][0] in self.states
                    for pc in slots(insns, *blocks[b])
                    if isa.is_jump(insns[pc]) and isa.jump_target(pc, insns[pc]) == head]
            if len(back) != 1:
                continue
            pc_j = back[0]
            jump = insns[pc_j]
            if jump.opcode in (isa.OP_JA, isa.OP_JA32):
                continue
            latch = next(b for b in blocks if b[0] <= pc_j < b[1])
            state = list(self.states[latch[0]])
            step = None                 # (pc of the last write to rX, the state before it)
            for pc in slots(insns, latch[0], pc_j):
                if jump.dst in self.writes(insns[pc]):
                    step = (pc, list(state))
                _transfer(insns[pc], state)
            bound = _compared(jump, state)
            if bound is None or bound[0] != jump.dst or bound[1] > MAX_UNTESTED_TRIPS \
                    or step is None:
                continue
            reg = jump.dst
            pc_i, before = step
            inc = insns[pc_i]
            if inc.opcode not in (isa.ALU64 | isa.ADD | isa.K, isa.ALU | isa.ADD | isa.K) \
                    or inc.imm <= 0:
                continue
            limit = 63 if inc.opcode & 7 == isa.ALU64 else 32
            if before[reg][0] != "w" or max(_width(before[reg]), _bits(inc.imm)) + 1 > limit:
                continue
            writers = [pc for b in range(loop.first, loop.last + 1)
                       for pc in slots(insns, *blocks[b]) if reg in self.writes(insns[pc])]
            if writers == [pc_i]:
                found.add(pc_j)
        return found

    @staticmethod
    def writes(insn: isa.Insn) -> frozenset[int]:
        """The registers an instruction may change (a helper call: r0 only, as generated)."""
        return analysis.reg_uses_defs(insn, frozenset())[1]

    def analyse_loops(self, top: list, jumps: list) -> None:
        """Per loop: whether its first block needs a guard, and where control goes on leaving."""
        blocks, insns = self.blocks, self.insns
        for loop in _walk(top):
            # Control reaches the top of the loop's cascade on entry (from outside, or a
            # jump into the loop from outside) and on every jump back inside it.
            loop.entered_mid = any(loop.holds(t) and t != loop.first and not loop.holds(i)
                                   for _, i, t in jumps)
            loop.header_guard = loop.entered_mid or any(
                t != loop.first and t <= i and _common(self.innermost[i], t) is loop
                for _, i, t in jumps)
            loop.exits = {t for _, i, t in jumps if loop.holds(i) and not loop.holds(t)}
            last_pc = list(slots(insns, *blocks[loop.last]))[-1]
            if insns[last_pc].opcode not in (isa.OP_JA, isa.OP_JA32, isa.OP_EXIT) \
                    and loop.last + 1 < len(blocks):
                loop.exits.add(loop.last + 1)

    def sets_t_on_leaving(self, loop: _Loop) -> bool:
        """Must falling out of the loop's last block set t?  Yes when the code after the loop
        (its own, or that of an enclosing loop it ends with) reads t to send control on."""
        while loop is not None:
            if any(self.dispatch(loop)):
                return True
            outer = loop.parent
            if outer is None or outer.items[-1] is not loop:
                return False
            loop = outer
        return False

    @staticmethod
    def dispatch(loop: _Loop) -> tuple[bool, bool, bool]:
        """What the enclosing loop does after ``loop`` exits: (jump back inside it: continue,
        leave it backwards: break, leave it forwards: break)."""
        outer = loop.parent
        if outer is None:
            return False, False, False
        back = any(outer.first <= t < loop.first for t in loop.exits)
        below = any(t < outer.first for t in loop.exits)
        beyond = any(t > outer.last for t in loop.exits) and outer.items[-1] is not loop
        return back, below, beyond

    @staticmethod
    def main_setup(body: str) -> str:
        """Initial values of the entry function's registers (and ce, the end of the context
        region), only for those its code reads
        (the r2-r5 arguments default to 0 in its signature)."""
        initial = {"r0": "0", "r1": str(CTX_BASE), "r6": "0", "r7": "0", "r8": "0", "r9": "0",
                   "r10": str(STACK_TOP), "ce": f"{CTX_BASE} + len(ctx)"}
        used = [f"{name} = {value}" for name, value in initial.items()
                if re.search(rf"\b{name}\b", body)]
        return "; ".join(used) or "pass"

    # -- control flow ----------------------------------------------------------------------------
    # ``t`` is the block to run next, block k runs under ``if t <= k`` when something can jump
    # past it (a block reached only by falling through is nested in its predecessor instead).
    # Between jumps ``t`` stays at or below the running block, so guards pass.  A forward jump
    # sets t and falls down the cascade; a jump back inside the innermost loop is ``continue``;
    # a jump out of it is ``break`` and the enclosing loop's code after the ``while`` sends it
    # on (continue, break again, or on down its own cascade).

    def sequence(self, items: list, depth: int, loop: _Loop | None) -> None:
        blocks = self.blocks
        cur, nested = depth, 0
        carry = 0                  # instructions of untested blocks the next block counts
        k = 0
        while k < len(items):
            item = items[k]
            if isinstance(item, _Loop):
                self.loop(item, depth, k == 0)
                cur, nested = depth, 0
                k += 1
                continue
            bstart = blocks[item][0]
            if bstart not in self.states:           # unreachable
                k += 1
                continue
            if bstart in self.targets or nested == 0:
                cur, nested = depth, 0
                if k > 0 or loop is not None and loop.header_guard:
                    self.emit(cur, f"if t <= {bstart}:")
                    cur += 1
            nxt = items[k + 1] if k + 1 < len(items) else None
            then = self.then_block(item, nxt)
            if then is not None:
                self.targets.discard(blocks[then][1])   # entered only in sequence now
                k += 1
                nxt = items[k + 1] if k + 1 < len(items) else None
            nests = isinstance(nxt, int) and blocks[nxt][0] not in self.targets \
                and nested < MAX_NEST and cur < MAX_INDENT
            falls, open_else, carry = self.block(item, cur, then, carry, nests)
            k += 1
            if falls and nests:
                if open_else:                # the successor runs when the jump is not taken
                    self.emit(cur, "else:")
                    cur += 1
                nested += 1
                continue
            if falls and nxt is None and loop is not None and self.sets_t_on_leaving(loop):
                self.set_t(cur, blocks[loop.last][1])   # falls out of the loop: say where
            nested = 0

    def loop(self, loop: _Loop, depth: int, first: bool) -> None:
        blocks = self.blocks
        outer = loop.parent
        if not first or outer is not None and outer.header_guard:
            self.emit(depth, f"if t <= {blocks[loop.last][0]}:")
            depth += 1
        self.emit(depth, "while True:")
        begin = len(self.lines)
        self.resets[loop] = []
        self.sequence(loop.items, depth + 1, loop)
        self.emit(depth + 1, "break")
        self.drop_resets(loop, begin)
        back, below, beyond = self.dispatch(loop)
        head = blocks[loop.first][0]
        if back and below:
            self.emit(depth, f"if t < {head}:")
            self.emit(depth + 1, f"if t < {blocks[outer.first][0]}: break")
            self.emit(depth + 1, "continue")
        elif back or below:
            self.emit(depth, f"if t < {head}: {'continue' if back else 'break'}")
        if beyond:
            self.emit(depth, f"if t > {blocks[outer.last][0]}: break")

    def drop_resets(self, loop: _Loop, begin: int) -> None:
        """A jump back to the loop's first block need not set t when t cannot be past that block:
        nothing inside the loop sets it there and no jump from outside enters past it."""
        first, last = self.blocks[loop.first][0], self.blocks[loop.last][0]
        if loop.entered_mid or any(line >= begin and first < value <= last
                                   for line, value in self.t_sets):
            return
        dropped = set(self.resets[loop])
        for line in dropped:
            self.lines[line] = None
        self.t_sets = [(line, value) for line, value in self.t_sets if line not in dropped]

    def set_t(self, depth: int, value: int) -> int:
        self.t_sets.append((len(self.lines), value))
        self.emit(depth, f"t = {value}")
        return len(self.lines) - 1

    def then_block(self, i: int, nxt) -> int | None:
        """Block i+1 when block i ends with "if cond goto T" that only skips it (an if-then):
        it has no other way in, no jumps of its own, and T has no other jump to it."""
        if isinstance(nxt, _Loop) or nxt != i + 1:
            return None
        start, end = self.blocks[i]
        pcs = list(slots(self.insns, start, end))
        last = self.insns[pcs[-1]]
        if not isa.is_jump(last) or last.opcode in (isa.OP_JA, isa.OP_JA32):
            return None
        then_start, then_end = self.blocks[nxt]
        if isa.jump_target(pcs[-1], last) != then_end or then_start in self.targets:
            return None
        if self.jumps_to[then_end] != 1 or then_start not in self.states:
            return None
        tail = self.insns[list(slots(self.insns, then_start, then_end))[-1]]
        if isa.is_jump(tail) or tail.opcode == isa.OP_EXIT:
            return None
        return nxt

    def block(self, i: int, depth: int, then: int | None = None, carry: int = 0,
              nests: bool = False) -> tuple[bool, bool, int]:
        """Emit block i; returns (falls through, the fall-through path needs an ``else:``, count
        left for the next block).  ``then``: the block the final conditional jump skips, emitted
        under ``if not cond``.  ``carry``: instructions of the untested blocks before this one;
        ``nests``: the next block follows this one only (so an untested block whose every path
        leads there can leave its count to it)."""
        start, end = self.blocks[i]
        state = list(self.states[start])
        pcs = list(slots(self.insns, start, end))
        if self.counting:
            count = carry + len(pcs)
            tested = self.checks_budget(pcs, state)
            last = self.insns[pcs[-1]]
            straight = then is not None or not isa.is_jump(last) and last.opcode != isa.OP_EXIT
            if not tested and nests and straight:
                carry = count
            else:
                self.emit(depth, f"n -= {count}")
                if tested:
                    self.emit(depth, "if n < 0: raise _Budget")
                carry = 0
        for pc in pcs:
            insn = self.insns[pc]
            if isa.is_jump(insn) and then is not None:
                self.dead = self.dead_after(pc)
                self.test(depth, self.condition(insn, state), negate=True)
                self.dead = set()
                self.block(then, depth + 1)
                return True, False, carry
            if isa.is_jump(insn):
                self.dead = self.dead_after(pc)
                return self.jump(pc, i, insn, state, depth) + (0,)
            if insn.opcode == isa.OP_EXIT:
                self.exit(depth)
                return False, False, 0
            self.dead = self.dead_after(pc)
            self.insn(pc, insn, state, depth)
            self.dead = set()
            _transfer(insn, state)
        return True, False, carry

    def checks_budget(self, pcs: list[int], state: list) -> bool:
        """Does this block test the budget before running?  Every block counts its instructions,
        but one that only changes registers (ALU, constants, stack reads at known offsets,
        forward jumps) leaves the test to the next block that can do more: a store, a call, a
        load that may fault, an exit, or a jump back.  Running such a block past the budget
        changes nothing anyone can see (registers are reported only on exit), and every path
        reaches a tested block before it ends or loops."""
        state = list(state)
        for pc in pcs:
            insn = self.insns[pc]
            cls = insn.opcode & 7
            if isa.is_jump(insn):
                return isa.jump_target(pc, insn) <= pc and pc not in self.bounded
            if cls == isa.LDX and insn.opcode & 0xE0 in (isa.MEM, isa.MEMSX):
                base = state[insn.src]
                k = base[1] + insn.off if base[0] == "fp" else 1
                if not -isa.STACK_SIZE <= k <= -SIZE[insn.opcode & 0x18]:
                    return True
            elif cls not in (isa.ALU, isa.ALU64) and insn.opcode != isa.LD_IMM64:
                return True                       # a store, call, exit or packet load
            _transfer(insn, state)
        return False

    def exit(self, depth: int) -> None:
        if not self.main:
            self.emit(depth, "return r0, r1, r2, r3, r4, r5, n")
            return
        if self.capture:
            self.emit(depth, f"_regs[:] = (r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, {STACK_TOP})")
        self.emit(depth, "return r0")

    def goto(self, target: int, pc: int, i: int, depth: int) -> bool:
        """Emit a jump from block i; True when the path ends here (continue or break)."""
        loop = self.innermost[i]
        t = self.block_at[target]
        if loop is not None and not loop.holds(t):
            self.set_t(depth, target)
            self.emit(depth, "break")
            return True
        if target <= pc:                          # back inside the innermost loop
            line = self.set_t(depth, target)
            if t == loop.first:
                self.resets[loop].append(line)
            self.emit(depth, "continue")
            return True
        self.set_t(depth, target)
        return False

    def jump(self, pc: int, i: int, insn: isa.Insn, state: list, depth: int) -> tuple[bool, bool]:
        target = isa.jump_target(pc, insn)
        if insn.opcode in (isa.OP_JA, isa.OP_JA32):
            self.goto(target, pc, i, depth)
            return False, False
        self.test(depth, self.condition(insn, state))
        self.dead = set()
        return True, not self.goto(target, pc, i, depth + 1)

    def condition(self, insn: isa.Insn, state: list) -> str:
        op, wide = insn.opcode & 0xF0, insn.opcode & 7 == isa.JMP
        x = insn.opcode & isa.X
        mask = M64 if wide else M32
        sign = S64 if wide else S32

        def operand(r: int) -> str:
            return _reg(r) if wide or _width(state[r]) <= 32 else f"({_reg(r)} & {M32})"
        a = operand(insn.dst)
        if op == isa.JSET:
            return f"{a} & {operand(insn.src) if x else insn.imm & mask}"
        sym = {isa.JEQ: "==", isa.JNE: "!=", isa.JGT: ">", isa.JGE: ">=", isa.JLT: "<",
               isa.JLE: "<=", isa.JSGT: ">", isa.JSGE: ">=", isa.JSLT: "<", isa.JSLE: "<="}[op]
        if op in (isa.JSGT, isa.JSGE, isa.JSLT, isa.JSLE):
            # both sides non-negative as signed numbers: the unsigned comparison is the same
            if _nonneg(state[insn.dst], wide) and (
                    _nonneg(state[insn.src], wide) if x else insn.imm & mask < sign):
                return f"{a} {sym} {operand(insn.src) if x else insn.imm & mask}"
            b = f"({operand(insn.src)} ^ {sign})" if x else str((insn.imm & mask) ^ sign)
            return f"({a} ^ {sign}) {sym} {b}"
        return f"{a} {sym} {operand(insn.src) if x else insn.imm & mask}"

    # -- straight-line instructions ----------------------------------------------------------------
    def insn(self, pc: int, insn: isa.Insn, state: list, depth: int) -> None:
        cls = insn.opcode & 7
        e = lambda text: self.emit(depth, text)        # noqa: E731
        if cls in (isa.ALU64, isa.ALU):
            op, rhs, plain = (self.alu64 if cls == isa.ALU64 else self.alu32)(insn, state)
            if op is None:                                 # a statement of its own
                return e(_render(rhs))
            return self.assign(depth, insn.dst, op, rhs, plain)
        if cls == isa.LD:
            if insn.opcode == isa.LD_IMM64:
                value = resolve_ld_imm64(self.program, self.jit.mem, insn, self.insns[pc + 1], pc)
                return self.assign(depth, insn.dst, "", str(value), True)
            size = SIZE[insn.opcode & 0x18]
            off = f"r{insn.src} + {insn.imm}" if insn.opcode & 0xE0 == isa.IND else str(insn.imm)
            return e(f"r0 = _ldpkt({off}, {size})")
        if cls in (isa.LDX, isa.ST, isa.STX):
            return self.memory(insn, state, e)
        if insn.opcode == isa.OP_CALL:
            if insn.src == isa.PSEUDO_CALL:
                target = pc + insn.imm + 1
                depth_arg = "2" if self.main else "depth + 1"
                return e(f"r0, r1, r2, r3, r4, r5, n = _f{target}(r0, r1, r2, r3, r4, r5, r6, r7, "
                         f"r8, r9, {self.fp} - {isa.STACK_SIZE}, {depth_arg}, n)")
            fn = self.const(f"_h{insn.imm}", self.program.helpers[insn.imm])
            if insn.imm == TAIL_CALL and not self.main:
                # in a subprogram the target replaces it: its r0 is the subprogram's
                e("try:")
                self.emit(depth + 1, f"r0 = {fn}(_vm, r1, r2, r3, r4, r5) & M64")
                e("except _TailCall as _tc:")
                self.emit(depth + 1, "return _tail_sub(_tc), r1, r2, r3, r4, r5, n")
                return None
            return e(f"r0 = {fn}(_vm, r1, r2, r3, r4, r5) & M64")
        # callx: helper id in a register
        return e(f"r0 = _callx(r{insn.dst}, r1, r2, r3, r4, r5)")

    # An ALU instruction is (op, rhs, plain): ``rD op= rhs`` (op "": ``rD = rhs``; None: rhs is a
    # whole statement), rhs with register slots; plain: arithmetic only, fusion may move it.
    def alu64(self, insn: isa.Insn, state: list) -> tuple[str | None, str, bool]:
        code, x, d = insn.opcode & 0xF0, insn.opcode & isa.X, insn.dst
        a = state[d]
        rd = _reg(d)
        if code == isa.END:
            if insn.imm == 16:
                return "", f"({rd} & 0xFF) << 8 | ({rd} >> 8 & 0xFF)", True
            return "", f"_bswap({rd}, {insn.imm})", False
        if code == isa.NEG:
            return "", f"-{rd} & M64", True
        name = alu.alu_name(insn)
        if x:
            b, bw = _reg(insn.src), _width(state[insn.src])
        else:
            val = insn.imm & M64
            b, bw = str(val), _bits(val)
        aw = _width(a)
        if name == "mov":
            return "", b, True
        if name == "add":
            if not x and _stays(a, insn.imm):
                return ("+", str(insn.imm), True) if insn.imm >= 0 else ("-", str(-insn.imm), True)
            if not x and insn.imm < 0:
                return "", f"({rd} - {-insn.imm}) & M64", True
            return ("+", b, True) if max(aw, bw) < 64 else ("", f"({rd} + {b}) & M64", True)
        if name == "sub":
            if not x and _stays(a, -insn.imm):
                return ("-", str(insn.imm), True) if insn.imm >= 0 else ("+", str(-insn.imm), True)
            return "", f"({rd} - {b}) & M64", True
        if name == "mul":
            return ("*", b, True) if aw + bw <= 64 else ("", f"({rd} * {b}) & M64", True)
        if name in ("or", "and", "xor"):
            return _BITOPS[name], b, True
        if name == "lsh":
            if not x:
                k = insn.imm & 63
                return ("<<", str(k), True) if aw + k <= 64 else ("", f"({rd} << {k}) & M64", True)
            return "", f"({rd} << ({b} & 63)) & M64", True
        if name == "rsh":
            return (">>", str(insn.imm & 63), True) if not x else (">>", f"{b} & 63", True)
        if name == "arsh":
            by = str(insn.imm & 63) if not x else f"({b} & 63)"
            if aw < 64:
                return ">>", by, True
            return "", f"((({rd} ^ {S64}) - {S64}) >> {by}) & M64", True
        if name == "div":
            if not x:
                return ("//", b, True) if insn.imm & M64 else ("", "0", True)
            return "", f"{rd} // {b} if {b} else 0", False
        if name == "mod":
            if not x:
                return ("%", b, True) if insn.imm & M64 else (None, "pass", False)
            return None, f"if {b}: {rd} %= {b}", False
        fn = self.const(f"_alu64_{name}", alu.ALU64[name])
        return "", f"{fn}({rd}, {b})", False

    def alu32(self, insn: isa.Insn, state: list) -> tuple[str | None, str, bool]:
        code, x, d = insn.opcode & 0xF0, insn.opcode & isa.X, insn.dst
        rd = _reg(d)
        if code == isa.END:
            if insn.opcode & isa.X == isa.TO_LE:
                return ("&", str((1 << insn.imm) - 1), True) if insn.imm < 64 else (None, "pass", False)
            if insn.imm == 16:
                return "", f"({rd} & 0xFF) << 8 | ({rd} >> 8 & 0xFF)", True
            return "", f"_bswap({rd}, {insn.imm})", False
        a = rd if _width(state[d]) <= 32 else f"({rd} & {M32})"
        if x:
            b = _reg(insn.src) if _width(state[insn.src]) <= 32 else f"({_reg(insn.src)} & {M32})"
        else:
            b = str(insn.imm & M32)
        if code == isa.NEG:
            return "", f"-{a} & {M32}", True
        name = alu.alu_name(insn)
        if name == "mov":
            return ("", b, True) if b != rd else (None, "pass", False)
        aw = min(32, _width(state[d]))
        if name in ("add", "sub", "mul"):
            sym = {"add": "+", "sub": "-", "mul": "*"}[name]
            bw = min(32, _width(state[insn.src])) if x else _bits(insn.imm & M32)
            if name == "add" and max(aw, bw) < 32 or name == "mul" and aw + bw <= 32:
                return "", f"{a} {sym} {b}", True
            return "", f"({a} {sym} {b}) & {M32}", True
        if name in ("or", "and", "xor"):
            return "", f"{a} {_BITOPS[name]} {b}", True
        if not x and name in ("lsh", "rsh", "arsh"):    # constant shift count
            k = insn.imm & 31
            if name == "lsh":
                return ("", f"{a} << {k}", True) if aw + k <= 32 else ("", f"({a} << {k}) & {M32}", True)
            if name == "rsh" or aw < 32:                   # sign bit clear: arsh is rsh
                return "", f"{a} >> {k}", True
            return "", f"((({a} ^ {S32}) - {S32}) >> {k}) & {M32}", True
        if name == "lsh":
            return "", f"({a} << ({b} & 31)) & {M32}", True
        if name == "rsh":
            return "", f"{a} >> ({b} & 31)", True
        if name == "arsh":
            return "", f"((({a} ^ {S32}) - {S32}) >> ({b} & 31)) & {M32}", True
        if name == "div":
            return "", f"{a} // {b} if {b} else 0", False
        if name == "mod":
            return "", f"{a} % {b} if {b} else {a}", False
        fn = self.const(f"_alu32_{name}", alu.ALU32[name])
        return "", f"{fn}({rd}, {b})", False

    def memory(self, insn: isa.Insn, state: list, e) -> None:
        op, cls = insn.opcode, insn.opcode & 7
        size = SIZE[op & 0x18]
        mode = op & 0xE0
        base_reg = insn.src if cls == isa.LDX else insn.dst
        base = state[base_reg]
        addr = f"(r{base_reg} + {insn.off}) & M64" if insn.off else f"r{base_reg}"
        direct = None                         # (buffer name, index expression)
        # A pointer somewhere off the frame pointer: test for the stack inline, the generic
        # path (which faults cleanly) otherwise.  The unmasked sum is in range only when the
        # masked one is.
        near = f"r{base_reg} + {insn.off}" if insn.off else f"r{base_reg}"
        on_stack = f"{STACK_BASE} <= {near} <= {STACK_TOP - size}"
        at = f"{near} - {STACK_BASE}"
        if base[0] == "ctx" and self.program.ctx_size is not None and cls == isa.LDX:
            k = base[1] + insn.off
            if 0 <= k and k + size <= self.program.ctx_size:
                direct = ("ctx", str(k))
        elif base[0] == "fp":
            k = base[1] + insn.off
            if -isa.STACK_SIZE <= k and k + size <= 0:
                direct = ("_stack", str(STACK_BYTES + k) if self.sb is None else f"sb + {k}")
        if cls == isa.LDX:
            rd = f"r{insn.dst}"
            if direct:
                buf, idx = direct
                value = f"{buf}[{idx}]" if size == 1 else f"_u{size * 8}({buf}, {idx})[0]"
            elif base[0] == "fp+":
                read = f"_stack[{at}]" if size == 1 else f"_u{size * 8}(_stack, {at})[0]"
                value = f"({read} if {on_stack} else _load({addr}, {size}))"
            elif base[0] == "ctx+" and self.main:
                # The context region ends where this run's buffer does (ce, set on entry).
                at = f"{near} - {CTX_BASE}"
                read = f"ctx[{at}]" if size == 1 else f"_u{size * 8}(ctx, {at})[0]"
                inside = f"{CTX_BASE} <= {near} <= ce - {size}"
                value = f"({read} if {inside} else _load({addr}, {size}))"
            else:
                value = f"_load({addr}, {size})"
            if mode == isa.MEMSX:
                bits = size * 8
                value = f"((({value}) ^ {1 << (bits - 1)}) - {1 << (bits - 1)}) & M64"
            return e(f"{rd} = {value}")
        if cls == isa.ST or mode == isa.MEM:
            mask = (1 << (8 * size)) - 1
            if cls == isa.ST:
                value = str(insn.imm & mask)
            else:
                value = f"r{insn.src}" if _width(state[insn.src]) <= 8 * size else f"r{insn.src} & {mask}"
            if direct:
                buf, idx = direct
                if size == 1:
                    return e(f"{buf}[{idx}] = {value}")
                return e(f"_p{size * 8}({buf}, {idx}, {value})")
            if base[0] == "fp+":
                write = f"_stack[{at}] = {value}" if size == 1 \
                    else f"_p{size * 8}(_stack, {at}, {value})"
                e(f"if {on_stack}: {write}")
                return e(f"else: _store({addr}, {size}, {value})")
            return e(f"_store({addr}, {size}, {value})")
        # atomics always take the generic path
        s = insn.src
        if insn.imm == isa.CMPXCHG:
            return e(f"r0 = _cmpxchg({addr}, {size}, r0, r{s})")
        if insn.imm & isa.FETCH:
            return e(f"r{s} = _atomic({addr}, {size}, {insn.imm}, r{s})")
        return e(f"_atomic({addr}, {size}, {insn.imm}, r{s})")


# ---------------------------------------------------------------------------------------------

class JitProgram:
    """A compiled program.  ``entry(ctx) -> int`` is the raw generated function (fastest: raises
    VMError on a fault, needs ``len(ctx) >= program.ctx_size``); ``__call__`` also binds env/packet
    and the context region; ``run`` returns a RunResult and never raises for program errors."""

    def __init__(self, program: Program, *, budget: int = DEFAULT_BUDGET, capture_regs: bool = False):
        self.program = program
        self.budget = budget
        self.mem, self.stack, self._ctx_region = new_memory(program)
        self.vm = VMContext(program, self.mem)
        bind_callbacks(self.vm)
        self.regs = [0] * isa.NUM_REGS
        gen = _Gen(program, self, budget, capture_regs)
        self.source = gen.generate()
        env = self._globals()
        env.update(gen.env)
        exec(compile(self.source, f"<bpf-jit {program.name or 'program'}>", "exec"), env)
        self.functions = {name: fn for name, fn in env.items() if name.startswith("_f")}
        self.entry = env["_f0"]
        if calls_helper(program, 12):
            self.entry = with_tail_calls(self.entry, self.vm)

    def _globals(self) -> dict[str, Any]:
        mem, vm, helpers = self.mem, self.vm, self.program.helpers

        def ldpkt(off: int, size: int) -> int:
            off = alu.s32(off)
            data = vm.packet
            if data is None or off < 0 or off + size > len(data):
                raise StopProgram(0)
            return int.from_bytes(data[off:off + size], "big")

        regions, hit = mem.regions, [0]

        def load(addr: int, size: int) -> int:
            """Memory.load, trying first the region the previous generic load hit (regions are
            disjoint, so the one holding the range is the one the scan would find)."""
            try:
                region = regions[hit[0]]
            except IndexError:                # a region was unmapped since
                region = regions[0]
            if not (region.start <= addr and addr + size <= region.end):
                for i, region in enumerate(regions):
                    if region.start <= addr and addr + size <= region.end:
                        hit[0] = i
                        break
                else:
                    return mem.load(addr, size)           # faults
            off = addr - region.start
            return region.buf[off] if size == 1 else UNPACK[size](region.buf, off)[0]

        def atomic(addr: int, size: int, op: int, src: int) -> int:
            old = mem.load(addr, size)
            mem.store(addr, size, alu.atomic(op, old, src, M64 if size == 8 else M32))
            return old

        def cmpxchg(addr: int, size: int, r0: int, src: int) -> int:
            old = mem.load(addr, size)
            if old == r0 & (M64 if size == 8 else M32):
                mem.store(addr, size, src)
            return old

        ctx_region, stack = self._ctx_region, self.stack

        def tail_sub(tc: TailCall) -> int:
            return tail_call_in_subprog(tc, ctx_region.buf, vm, stack) & M64

        def callx(hid: int, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
            fn = helpers.get(hid)
            if fn is None:
                raise VMError(f"callx: unknown helper {hid}")
            return fn(vm, r1, r2, r3, r4, r5) & M64

        return {
            "M64": M64, "_stack": self.stack, "_regs": self.regs, "_vm": vm,
            "_TailCall": TailCall, "_tail_sub": tail_sub,
            "_load": load, "_store": mem.store, "_atomic": atomic, "_cmpxchg": cmpxchg,
            "_callx": callx, "_ldpkt": ldpkt, "_bswap": alu.bswap,
            "_u16": struct.Struct("<H").unpack_from, "_u32": struct.Struct("<I").unpack_from,
            "_u64": struct.Struct("<Q").unpack_from, "_p16": struct.Struct("<H").pack_into,
            "_p32": struct.Struct("<I").pack_into, "_p64": struct.Struct("<Q").pack_into,
            "_Stop": StopProgram, "_Fault": MemoryFault, "_StructError": struct.error,
            "_Budget": BudgetExceeded(f"instruction budget of {self.budget} exceeded"),
            "_Depth": CallDepthExceeded,
        }

    def __call__(self, ctx=b"", *, env: Any = None, packet: Any = None,
                 args: Sequence[int] = ()) -> int:
        bind_run(self.mem, self._ctx_region, self.vm, ctx, env, packet, self.program.ctx_writable)
        return self.entry(ctx, *(a & M64 for a in args))

    run = run_to_result


def compile_program(program: Program, *, budget: int = DEFAULT_BUDGET,
                    capture_regs: bool = False) -> JitProgram:
    """The JitProgram for ``program`` (compiled on first use, then cached on the Program)."""
    key = (budget, capture_regs)
    cached = program.jit_cache.get(key)
    if cached is None:
        cached = program.jit_cache[key] = JitProgram(program, budget=budget, capture_regs=capture_regs)
    return cached
