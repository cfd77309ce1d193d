"""JIT: translate a Program into Python source, compiled once into functions (cached per program).

Each BPF function (the entry and every bpf-to-bpf callee) becomes one Python function whose
registers are locals.  Values stay canonical (0 <= v < 2**64) and a mask is emitted only where the
value could leave that range: a small forward dataflow tracks, per register, either "context + k",
"frame pointer + k", "context/frame pointer + something" or an upper bound on its bit width.
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
(store, call, exit, jump back), so nothing visible happens past the budget.
"""
from __future__ import annotations

import re
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from filters.bpf import alu, isa
from filters.bpf.alu import M32, M64
from filters.bpf.helpers import StopProgram, VMContext
from filters.bpf.helpers_calls import calls_helper, with_tail_calls
from filters.bpf.interp import (
    BudgetExceeded,
    CallDepthExceeded,
    bind_callbacks,
    bind_run,
    new_memory,
    resolve_ld_imm64,
    run_to_result,
)
from filters.bpf.memory import (
    CTX_BASE,
    STACK_BASE,
    STACK_BYTES,
    STACK_TOP,
    UNPACK,
    MemoryFault,
    VMError,
)
from filters.bpf.program import DEFAULT_BUDGET, Program, ProgramError

SIZE = {isa.W: 4, isa.H: 2, isa.B: 1, isa.DW: 8}
S64, S32 = 1 << 63, 1 << 31
_BITOPS = {"or": "|", "and": "&", "xor": "^"}
MAX_NEST = 40          # deepest fall-through nesting before blocks get a guard instead

# Abstract register values: ("ctx", k) / ("fp", k) / ("w", bits): value < 2**bits, and
# ("ctx+", 0) / ("fp+", 0): the context / frame pointer plus an unknown amount (loads through
# those test for their region inline before taking the generic path).
UNKNOWN = ("w", 64)
BASE_OF = {"ctx": "ctx", "ctx+": "ctx", "fp": "fp", "fp+": "fp"}


# Plain arithmetic on registers and constants (no calls, no memory, nothing that can raise), in
# a register assignment "rA = E" / "rA op= E", or in a jump's condition "if E:" / "if not (E):".
_PLAIN = r"(?:[r\d\s()&|^~<>+*%-]|M64|//)+"
_ASSIGN = re.compile(rf"(r\d+) (<<|>>|//|[-+*&|^%])?= ({_PLAIN})")
_COND = re.compile(r"if ((?:[r\d\s()&|^~<>=!+*%-]|M64|not )+):")


def _plain(reg: str, m: re.Match) -> str:
    """The right side of an _ASSIGN match as a plain assignment's ("rA op= E" -> "rA op E")."""
    if not m[2]:
        return m[3]
    return f"{reg} {m[2]} {m[3]}" if re.fullmatch(r"r\d|\d+", m[3]) else f"{reg} {m[2]} ({m[3]})"


def _bits(v: int) -> int:
    return v.bit_length()


def _width(a) -> int:
    return a[1] if a[0] == "w" else 64


# ---------------------------------------------------------------------------------------------
# Program structure

def _functions(insns: Sequence[isa.Insn]) -> list[tuple[int, int]]:
    """(start, end) of the entry function and every bpf-to-bpf callee."""
    starts = {0}
    for pc, insn in enumerate(insns):
        if insn.opcode == isa.OP_CALL and insn.src == isa.PSEUDO_CALL:
            starts.add(pc + insn.imm + 1)
    ordered = sorted(starts)
    return [(s, ordered[i + 1] if i + 1 < len(ordered) else len(insns)) for i, s in enumerate(ordered)]


def _slots(insns, start: int, end: int):
    """Instruction indexes of [start, end), skipping LD_IMM64 second slots."""
    pc = start
    while pc < end:
        yield pc
        pc += 2 if insns[pc].opcode == isa.LD_IMM64 else 1


def _blocks(insns, start: int, end: int) -> list[tuple[int, int]]:
    leaders = {start}
    for pc in _slots(insns, start, end):
        insn = insns[pc]
        if isa.is_jump(insn):
            target = isa.jump_target(pc, insn)
            if not start <= target < end:
                raise ProgramError(pc, insn, "jump leaves its function")
            leaders.add(target)
            leaders.add(pc + 1)
        elif insn.opcode == isa.OP_EXIT:
            leaders.add(pc + 1)
    ordered = sorted(x for x in leaders if x < end)
    return [(s, ordered[i + 1] if i + 1 < len(ordered) else end) for i, s in enumerate(ordered)]


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
            w = 32
            if code == isa.AND and not x:
                w = min(32, _bits(insn.imm & M32))
            elif code == isa.MOV and not x and not insn.off:
                w = _bits(insn.imm & M32)
            elif code == isa.RSH and not x:
                w = 32 - (insn.imm & 31)
            elif code in (isa.AND, isa.MOV) and x and not insn.off:
                w = min(32, _width(state[s]), _width(state[d]) if code == isa.AND else 64)
            elif code == isa.END:             # le16/le32/be16/be32 truncate; be64, le64 do not
                w = insn.imm if insn.imm < 64 else 64
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


ALL_REGS = frozenset(range(isa.NUM_REGS))


def _uses_defs(insn: isa.Insn, exit_uses: frozenset) -> tuple[frozenset, frozenset]:
    """Registers one instruction reads and writes (reads over-approximated where unsure)."""
    op, cls, d, s = insn.opcode, insn.opcode & 7, insn.dst, insn.src
    x = op & isa.X
    if cls in (isa.ALU, isa.ALU64):
        mov = op & 0xF0 == isa.MOV
        uses = ({s} if x else set()) | (set() if mov else {d})
        return frozenset(uses), frozenset({d})
    if cls == isa.LDX:
        return frozenset({s}), frozenset({d})
    if cls == isa.ST:
        return frozenset({d}), frozenset()
    if cls == isa.STX:
        if op & 0xE0 == isa.ATOMIC and insn.imm & isa.FETCH:
            if insn.imm == isa.CMPXCHG:
                return frozenset({d, s, 0}), frozenset({0})
            return frozenset({d, s}), frozenset({s})
        return frozenset({d, s}), frozenset()
    if cls == isa.LD:
        if op == isa.LD_IMM64:
            return frozenset(), frozenset({d})
        return frozenset({s} if op & 0xE0 == isa.IND else ()), frozenset({0})
    if op == isa.OP_EXIT:
        return exit_uses, frozenset()
    if op == isa.OP_CALL and insn.src == isa.PSEUDO_CALL:
        return ALL_REGS, frozenset(range(6))       # the callee starts with every register
    if op in (isa.OP_CALL, isa.JMP | isa.CALL | isa.X):
        return frozenset({1, 2, 3, 4, 5} | ({d} if x else set())), frozenset({0})
    if isa.is_jump(insn):
        return frozenset({d} | ({s} if x else set())) if op not in (isa.OP_JA, isa.OP_JA32) \
            else frozenset(), frozenset()
    return ALL_REGS, frozenset()


def _liveness(insns, blocks, exit_uses: frozenset) -> dict[int, frozenset]:
    """Registers live after each instruction (by pc): read later before being written."""
    index = {b[0]: i for i, b in enumerate(blocks)}
    code = [[(pc, insns[pc], *_uses_defs(insns[pc], exit_uses)) for pc in _slots(insns, *b)]
            for b in blocks]
    succs = []
    for i, body in enumerate(code):
        pc, last = body[-1][0], body[-1][1]
        nxt = [index[isa.jump_target(pc, last)]] if isa.is_jump(last) else []
        if last.opcode not in (isa.OP_JA, isa.OP_JA32, isa.OP_EXIT) and i + 1 < len(blocks):
            nxt.append(i + 1)
        succs.append(nxt)
    live_in = [frozenset()] * len(blocks)
    changed = True
    while changed:
        changed = False
        for i in reversed(range(len(blocks))):
            live = frozenset().union(*(live_in[j] for j in succs[i]))
            for _, _, uses, defs in reversed(code[i]):
                live = (live - defs) | uses
            if live != live_in[i]:
                live_in[i], changed = live, True
    after: dict[int, frozenset] = {}
    for i, body in enumerate(code):
        live = frozenset().union(*(live_in[j] for j in succs[i]))
        for pc, _, uses, defs in reversed(body):
            after[pc] = live
            live = (live - defs) | uses
    return after


def _dataflow(insns, blocks, entry_state: list) -> dict[int, list]:
    index = {b[0]: i for i, b in enumerate(blocks)}
    states: dict[int, list] = {blocks[0][0]: list(entry_state)}
    work = [blocks[0][0]]
    while work:
        start = work.pop()
        end = blocks[index[start]][1]
        state = list(states[start])
        succs = []
        for pc in _slots(insns, start, end):
            insn = insns[pc]
            if isa.is_jump(insn):
                succs.append(isa.jump_target(pc, insn))
                if insn.opcode in (isa.OP_JA, isa.OP_JA32):
                    break
            elif insn.opcode == isa.OP_EXIT:
                break
            _transfer(insn, state)
        else:
            if end in index:
                succs.append(end)
        for succ in succs:
            old = states.get(succ)
            new = list(state) if old is None else [_join(a, b) for a, b in zip(old, state, strict=False)]
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
        self.funcs = _functions(self.insns)
        self.has_calls = len(self.funcs) > 1
        self.budget = budget
        self.dead: set[str] = set()              # registers not read after the current insn

    # -- helpers for names in the generated module's globals --------------------------------------
    def const(self, name: str, value: Any) -> str:
        self.env[name] = value
        return name

    def emit(self, depth: int, text: str) -> None:
        indent = "    " * depth
        while (fused := self.fuse(indent, text)) is not None:
            self.lines.pop()                  # the previous line went into this one
            text = fused
        self.lines.append(indent + text)

    def dead_after(self, pc: int) -> set[str]:
        live = self.live_after[pc]
        return {f"r{r}" for r in range(isa.NUM_REGS) if r not in live}

    def fuse(self, indent: str, text: str) -> str | None:
        """``rA = E1`` followed, in the same block, by a line that reads rA once: one line with
        E1 in place of rA, when that line writes rA itself or rA is dead after it (the line
        being emitted is for an instruction after which ``self.dead`` registers are not read);
        followed by one that does not read rA: that line alone.  Both sides must be plain
        arithmetic (_PLAIN: no calls, no memory, nothing that raises), so evaluating E1 later
        changes nothing.  Saves a store and a load per forwarded value."""
        prev = self.lines[-1] if self.lines else None
        if prev is None or not prev.startswith(indent) or prev[len(indent):len(indent) + 1] == " ":
            return None
        old = _ASSIGN.fullmatch(prev[len(indent):])
        if old is None:
            return None
        reg = old[1]
        new = _ASSIGN.fullmatch(text)
        if new is not None:
            head, rhs, tail = f"{new[1]} = ", _plain(new[1], new), ""
            overwrites = new[1] == reg
        elif (cond := _COND.fullmatch(text)) is not None:
            head, rhs, tail, overwrites = "if ", cond[1], ":", False
        else:
            return None
        uses = len(re.findall(rf"\b{reg}\b", rhs))
        old_rhs = _plain(reg, old)
        if uses > 1 or not overwrites and reg not in self.dead or len(old_rhs) + len(rhs) > 240:
            return None
        if uses == 0:
            return head + rhs + tail
        inner = old_rhs if re.fullmatch(r"r\d+|\d+", old_rhs) else f"({old_rhs})"
        return head + re.sub(rf"\b{reg}\b", inner, rhs) + tail

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
            for pc in _slots(insns, bstart, bend):
                if isa.is_jump(insns[pc]):
                    jumps.append((pc, i, self.block_at[isa.jump_target(pc, insns[pc])]))
        heads: dict[int, int] = {}                   # loop head -> last block jumping back
        for _, i, t in jumps:
            if t <= i:
                heads[t] = max(i, heads.get(t, i))
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
        exit_uses = (ALL_REGS if self.capture else frozenset({0})) if main else frozenset(range(6))
        self.live_after = _liveness(insns, blocks, exit_uses)
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
            last_pc = list(_slots(insns, *blocks[loop.last]))[-1]
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
        pcs = list(_slots(self.insns, start, end))
        last = self.insns[pcs[-1]]
        if not isa.is_jump(last) or last.opcode in (isa.OP_JA, isa.OP_JA32):
            return None
        then_start, then_end = self.blocks[nxt]
        if isa.jump_target(pcs[-1], last) != then_end or then_start in self.targets:
            return None
        if self.jumps_to[then_end] != 1 or then_start not in self.states:
            return None
        tail = self.insns[list(_slots(self.insns, then_start, then_end))[-1]]
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
        pcs = list(_slots(self.insns, start, end))
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
                self.emit(depth, f"if not ({self.condition(insn, state)}):")
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
                return isa.jump_target(pc, insn) <= pc
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
        self.emit(depth, f"if {self.condition(insn, state)}:")
        self.dead = set()
        return True, not self.goto(target, pc, i, depth + 1)

    def condition(self, insn: isa.Insn, state: list) -> str:
        op, wide = insn.opcode & 0xF0, insn.opcode & 7 == isa.JMP
        x = insn.opcode & isa.X
        mask = M64 if wide else M32
        sign = S64 if wide else S32

        def operand(r: int) -> str:
            return f"r{r}" if wide or _width(state[r]) <= 32 else f"(r{r} & {M32})"
        a = operand(insn.dst)
        if op == isa.JSET:
            return f"{a} & {operand(insn.src) if x else insn.imm & mask}"
        sym = {isa.JEQ: "==", isa.JNE: "!=", isa.JGT: ">", isa.JGE: ">=", isa.JLT: "<",
               isa.JLE: "<=", isa.JSGT: ">", isa.JSGE: ">=", isa.JSLT: "<", isa.JSLE: "<="}[op]
        if op in (isa.JSGT, isa.JSGE, isa.JSLT, isa.JSLE):
            b = f"({operand(insn.src)} ^ {sign})" if x else str((insn.imm & mask) ^ sign)
            return f"({a} ^ {sign}) {sym} {b}"
        return f"{a} {sym} {operand(insn.src) if x else insn.imm & mask}"

    # -- straight-line instructions ----------------------------------------------------------------
    def insn(self, pc: int, insn: isa.Insn, state: list, depth: int) -> None:
        cls = insn.opcode & 7
        e = lambda text: self.emit(depth, text)        # noqa: E731
        if cls == isa.ALU64:
            return e(self.alu64(insn, state))
        if cls == isa.ALU:
            return e(self.alu32(insn, state))
        if cls == isa.LD:
            if insn.opcode == isa.LD_IMM64:
                value = resolve_ld_imm64(self.program, self.jit.mem, insn, self.insns[pc + 1], pc)
                return e(f"r{insn.dst} = {value}")
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
            return e(f"r0 = {fn}(_vm, r1, r2, r3, r4, r5) & M64")
        # callx: helper id in a register
        return e(f"r0 = _callx(r{insn.dst}, r1, r2, r3, r4, r5)")

    def alu64(self, insn: isa.Insn, state: list) -> str:
        code, x, d = insn.opcode & 0xF0, insn.opcode & isa.X, insn.dst
        a = state[d]
        rd = f"r{d}"
        if code == isa.END:
            if insn.imm == 16:
                return f"{rd} = ({rd} & 0xFF) << 8 | ({rd} >> 8 & 0xFF)"
            return f"{rd} = _bswap({rd}, {insn.imm})"
        if code == isa.NEG:
            return f"{rd} = -{rd} & M64"
        name = alu.alu_name(insn)
        if x:
            b, bw = f"r{insn.src}", _width(state[insn.src])
        else:
            val = insn.imm & M64
            b, bw = str(val), _bits(val)
        aw = _width(a)
        if name == "mov":
            return f"{rd} = {b}"
        if name == "add":
            if not x and a[0] in ("ctx", "fp") and 0 <= a[1] + insn.imm < (1 << 40):
                return f"{rd} += {insn.imm}" if insn.imm >= 0 else f"{rd} -= {-insn.imm}"
            if not x and insn.imm < 0:
                return f"{rd} = ({rd} - {-insn.imm}) & M64"
            return f"{rd} += {b}" if max(aw, bw) < 64 else f"{rd} = ({rd} + {b}) & M64"
        if name == "sub":
            if not x and a[0] in ("ctx", "fp") and 0 <= a[1] - insn.imm < (1 << 40):
                return f"{rd} -= {insn.imm}" if insn.imm >= 0 else f"{rd} += {-insn.imm}"
            return f"{rd} = ({rd} - {b}) & M64"
        if name == "mul":
            return f"{rd} *= {b}" if aw + bw <= 64 else f"{rd} = ({rd} * {b}) & M64"
        if name in ("or", "and", "xor"):
            return f"{rd} {_BITOPS[name]}= {b}"
        if name == "lsh":
            if not x:
                k = insn.imm & 63
                return f"{rd} <<= {k}" if aw + k <= 64 else f"{rd} = ({rd} << {k}) & M64"
            return f"{rd} = ({rd} << ({b} & 63)) & M64"
        if name == "rsh":
            return f"{rd} >>= {insn.imm & 63}" if not x else f"{rd} >>= {b} & 63"
        if name == "arsh":
            k = str(insn.imm & 63) if not x else f"({b} & 63)"
            if aw < 64:
                return f"{rd} >>= {k}"
            return f"{rd} = ((({rd} ^ {S64}) - {S64}) >> {k}) & M64"
        if name == "div":
            if not x:
                return f"{rd} //= {b}" if insn.imm & M64 else f"{rd} = 0"
            return f"{rd} = {rd} // {b} if {b} else 0"
        if name == "mod":
            if not x:
                return f"{rd} %= {b}" if insn.imm & M64 else "pass"
            return f"if {b}: {rd} %= {b}"
        fn = self.const(f"_alu64_{name}", alu.ALU64[name])
        return f"{rd} = {fn}({rd}, {b})"

    def alu32(self, insn: isa.Insn, state: list) -> str:
        code, x, d = insn.opcode & 0xF0, insn.opcode & isa.X, insn.dst
        rd = f"r{d}"
        if code == isa.END:
            if insn.opcode & isa.X == isa.TO_LE:
                return f"{rd} &= {(1 << insn.imm) - 1}" if insn.imm < 64 else "pass"
            if insn.imm == 16:
                return f"{rd} = ({rd} & 0xFF) << 8 | ({rd} >> 8 & 0xFF)"
            return f"{rd} = _bswap({rd}, {insn.imm})"
        a = rd if _width(state[d]) <= 32 else f"({rd} & {M32})"
        if x:
            b = f"r{insn.src}" if _width(state[insn.src]) <= 32 else f"(r{insn.src} & {M32})"
        else:
            b = str(insn.imm & M32)
        if code == isa.NEG:
            return f"{rd} = -{a} & {M32}"
        name = alu.alu_name(insn)
        if name == "mov":
            return f"{rd} = {b}" if b != rd else "pass"
        aw = min(32, _width(state[d]))
        if name in ("add", "sub", "mul"):
            sym = {"add": "+", "sub": "-", "mul": "*"}[name]
            if name == "add" and not x and max(aw, _bits(insn.imm & M32)) < 32:
                return f"{rd} = {a} + {b}"
            return f"{rd} = ({a} {sym} {b}) & {M32}"
        if name in ("or", "and", "xor"):
            return f"{rd} = {a} {_BITOPS[name]} {b}"
        if not x and name in ("lsh", "rsh", "arsh"):    # constant shift count
            k = insn.imm & 31
            if name == "lsh":
                return f"{rd} = {a} << {k}" if aw + k <= 32 else f"{rd} = ({a} << {k}) & {M32}"
            if name == "rsh" or aw < 32:                   # sign bit clear: arsh is rsh
                return f"{rd} = {a} >> {k}"
            return f"{rd} = ((({a} ^ {S32}) - {S32}) >> {k}) & {M32}"
        if name == "lsh":
            return f"{rd} = ({a} << ({b} & 31)) & {M32}"
        if name == "rsh":
            return f"{rd} = {a} >> ({b} & 31)"
        if name == "arsh":
            return f"{rd} = ((({a} ^ {S32}) - {S32}) >> ({b} & 31)) & {M32}"
        if name == "div":
            return f"{rd} = {a} // {b} if {b} else 0"
        if name == "mod":
            return f"{rd} = {a} % {b} if {b} else {a}"
        fn = self.const(f"_alu32_{name}", alu.ALU32[name])
        return f"{rd} = {fn}({rd}, {b})"

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

        def callx(hid: int, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
            fn = helpers.get(hid)
            if fn is None:
                raise VMError(f"callx: unknown helper {hid}")
            return fn(vm, r1, r2, r3, r4, r5) & M64

        return {
            "M64": M64, "_stack": self.stack, "_regs": self.regs, "_vm": vm,
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
