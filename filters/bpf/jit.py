"""JIT: translate a Program into Python source, compiled once into functions (cached per program).

Each BPF function (the entry and every bpf-to-bpf callee) becomes one Python function whose
registers are locals.  Values stay canonical (0 <= v < 2**64) and a mask is emitted only where the
value could leave that range: a small forward dataflow tracks, per register, either "context + k",
"frame pointer + k" or an upper bound on its bit width.  Loads and stores whose base is provably the
context or the frame pointer at an in-bounds constant offset read the context buffer / the stack
bytearray directly; every other access goes through ``memory.Memory`` (so it faults cleanly).

Control flow: blocks are emitted in order; ``t`` is the next block to run and block k is guarded
by ``if t <= k`` (only blocks that are jump targets need a guard: the others are nested in the
fall-through path of their predecessor).  Functions with a backward jump wrap this in
``while True`` and jump back with ``continue``; those (and programs with calls) count executed
instructions per block against the budget, exactly like the interpreter.
"""
from __future__ import annotations

import re
import struct
from collections import Counter
from typing import Any, Sequence

from filters.bpf import alu, isa
from filters.bpf.alu import M32, M64
from filters.bpf.helpers import StopProgram, VMContext
from filters.bpf.interp import (BudgetExceeded, CallDepthExceeded, RunResult, bind_run,
                                new_memory, resolve_ld_imm64)
from filters.bpf.memory import CTX_BASE, STACK_BASE, STACK_BYTES, STACK_TOP, MemoryFault, VMError
from filters.bpf.program import DEFAULT_BUDGET, Program, ProgramError

SIZE = {isa.W: 4, isa.H: 2, isa.B: 1, isa.DW: 8}
S64, S32 = 1 << 63, 1 << 31
_BITOPS = {"or": "|", "and": "&", "xor": "^"}
MAX_NEST = 40          # deepest fall-through nesting before blocks get a guard instead

# Abstract register values: ("ctx", k) / ("fp", k) / ("w", bits): value < 2**bits.
UNKNOWN = ("w", 64)


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

def _join(a, b):
    if a == b:
        return a
    if a[0] == "w" and b[0] == "w":
        return ("w", max(a[1], b[1]))
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
            state[d] = a if code == isa.DIV else ("w", min(a[1], b[1]) if imm or x else a[1])
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
            new = list(state) if old is None else [_join(a, b) for a, b in zip(old, state)]
            if new != old:
                states[succ] = new
                work.append(succ)
    return states


# ---------------------------------------------------------------------------------------------
# Code generation

class _Gen:
    def __init__(self, program: Program, jit: "JitProgram", budget: int, capture_regs: bool):
        self.program, self.insns, self.jit = program, program.insns, jit
        self.capture = capture_regs
        self.lines: list[str] = []
        self.env: dict[str, Any] = {}
        self.funcs = _functions(self.insns)
        self.has_calls = len(self.funcs) > 1
        self.budget = budget

    # -- helpers for names in the generated module's globals --------------------------------------
    def const(self, name: str, value: Any) -> str:
        self.env[name] = value
        return name

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    # -- functions -------------------------------------------------------------------------------
    def generate(self) -> str:
        for start, end in self.funcs:
            self.function(start, end)
        return "\n".join(self.lines) + "\n"

    def function(self, start: int, end: int) -> None:
        insns = self.insns
        blocks = _blocks(insns, start, end)
        main = start == 0
        looped = any(isa.is_jump(insns[pc]) and isa.jump_target(pc, insns[pc]) <= pc
                     for pc in _slots(insns, start, end))
        self.counting = looped or self.has_calls
        self.main = main
        if main:
            entry = [("w", 0), ("ctx", 0), UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN] + [("w", 0)] * 4 + [("fp", 0)]
            self.emit(0, "def _f0(ctx, r2=0, r3=0, r4=0, r5=0):")
            init_at = len(self.lines)
            self.emit(1, "")                     # register set-up, filled in below
            if self.counting:
                self.emit(1, f"_n[0] = {self.budget}")
            self.fp = str(STACK_TOP)
            self.sb = None
            body = 2
            self.emit(1, "try:")
        else:
            entry = [UNKNOWN] * 10 + [("fp", 0)]
            # The callee starts with the caller's registers (as in the interpreter); only r6-r9
            # and r10 are restored for the caller, r0-r5 come back as the callee left them.
            self.emit(0, f"def _f{start}(r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, fp, depth):")
            self.emit(1, f"if depth > {isa.MAX_CALL_DEPTH}: raise _Depth('call depth exceeds "
                         f"{isa.MAX_CALL_DEPTH} frames')")
            self.emit(1, f"r10 = fp; sb = fp - {STACK_BASE}")
            self.fp, self.sb = "fp", "sb"
            body = 1
        self.states = _dataflow(insns, blocks, entry)
        targets = {isa.jump_target(pc, insns[pc]) for pc in _slots(insns, start, end)
                   if isa.is_jump(insns[pc])}
        if looped or len(blocks) > 1 and targets - {start}:
            self.emit(body, f"t = {start}")
        if looped:
            self.emit(body, "while True:")
            body += 1
        jumps_to = Counter(isa.jump_target(pc, insns[pc]) for pc in _slots(insns, start, end)
                           if isa.is_jump(insns[pc]))
        depth = body
        nested = 0
        inlined: set[int] = set()
        for i, (bstart, bend) in enumerate(blocks):
            if bstart not in self.states or bstart in inlined:
                continue                                   # unreachable, or emitted as a "then"
            if bstart in targets or nested == 0:
                # Top level: every block but a loop-free function's entry runs only if t <= it.
                depth, nested = body, 0
                if bstart != start or looped:
                    self.emit(depth, f"if t <= {bstart}:")
                    depth += 1
            then = self.then_block(blocks, i, targets, jumps_to)
            if then is not None:
                inlined.add(then[0])
                targets = targets - {then[1]}          # entered only in sequence now
            falls, conditional = self.block(bstart, bend, depth, then)
            if then is not None:
                i += 1
            nxt = blocks[i + 1][0] if i + 1 < len(blocks) else None
            if falls and nxt is not None and nxt not in targets and nested < MAX_NEST:
                if conditional:                  # the successor runs when the jump is not taken
                    self.emit(depth, "else:")
                    depth += 1
                nested += 1
                continue
            nested = 0
        if main:
            self.lines[init_at] = "    " + self.main_setup("\n".join(self.lines[init_at + 1:]))
            self.emit(1, "except _Stop as stop:")
            self.emit(2, "return stop.value & M64")
            self.emit(1, "except (IndexError, _StructError):")
            self.emit(2, "raise _Fault(0, 0, False, 'context shorter than the program expects')")
        self.emit(0, "")

    @staticmethod
    def main_setup(body: str) -> str:
        """Initial values of the entry function's registers, only for those its code reads
        (the r2-r5 arguments default to 0 in its signature)."""
        initial = {"r0": "0", "r1": str(CTX_BASE), "r6": "0", "r7": "0", "r8": "0", "r9": "0",
                   "r10": str(STACK_TOP)}
        used = [f"{name} = {value}" for name, value in initial.items()
                if re.search(rf"\b{name}\b", body)]
        return "; ".join(used) or "pass"

    def then_block(self, blocks, i: int, targets: set, jumps_to: Counter) -> tuple[int, int] | None:
        """Block i+1 when block i ends with "if cond goto T" that only skips it (an if-then):
        it has no other way in, no jumps of its own, and T has no other jump to it."""
        if i + 1 >= len(blocks):
            return None
        start, end = blocks[i]
        pcs = list(_slots(self.insns, start, end))
        last = self.insns[pcs[-1]]
        if not isa.is_jump(last) or last.opcode in (isa.OP_JA, isa.OP_JA32):
            return None
        then_start, then_end = blocks[i + 1]
        if isa.jump_target(pcs[-1], last) != then_end or then_start in targets:
            return None
        if jumps_to[then_end] != 1 or then_start not in self.states:
            return None
        tail = self.insns[list(_slots(self.insns, then_start, then_end))[-1]]
        if isa.is_jump(tail) or tail.opcode == isa.OP_EXIT:
            return None
        return then_start, then_end

    def block(self, start: int, end: int, depth: int,
              then: tuple[int, int] | None = None) -> tuple[bool, bool]:
        """Emit one block; returns (falls through, ends with a conditional jump).  ``then``: the
        block the final conditional jump skips, emitted under ``if not cond``."""
        state = list(self.states[start])
        pcs = list(_slots(self.insns, start, end))
        if self.counting:
            self.emit(depth, f"_n[0] -= {len(pcs)}")
            self.emit(depth, "if _n[0] < 0: raise _Budget")
        for pc in pcs:
            insn = self.insns[pc]
            if isa.is_jump(insn) and then is not None:
                self.emit(depth, f"if not ({self.condition(insn, state)}):")
                self.block(then[0], then[1], depth + 1)
                return True, False
            if isa.is_jump(insn):
                return self.jump(pc, insn, state, depth)
            if insn.opcode == isa.OP_EXIT:
                self.exit(depth)
                return False, False
            self.insn(pc, insn, state, depth)
            _transfer(insn, state)
        return True, False

    def exit(self, depth: int) -> None:
        if not self.main:
            self.emit(depth, "return r0, r1, r2, r3, r4, r5")
            return
        if self.capture:
            self.emit(depth, f"_regs[:] = (r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, {STACK_TOP})")
        self.emit(depth, "return r0")

    def goto(self, target: int, pc: int, depth: int) -> None:
        self.emit(depth, f"t = {target}")
        if target <= pc:
            self.emit(depth, "continue")

    def jump(self, pc: int, insn: isa.Insn, state: list, depth: int) -> tuple[bool, bool]:
        target = isa.jump_target(pc, insn)
        if insn.opcode in (isa.OP_JA, isa.OP_JA32):
            self.goto(target, pc, depth)
            return False, False
        self.emit(depth, f"if {self.condition(insn, state)}:")
        self.goto(target, pc, depth + 1)
        return True, True

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
                value = resolve_ld_imm64(self.program, self.jit.mem, insn, self.insns[pc + 1])
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
                return e(f"r0, r1, r2, r3, r4, r5 = _f{target}(r0, r1, r2, r3, r4, r5, r6, r7, "
                         f"r8, r9, {self.fp} - {isa.STACK_SIZE}, {depth_arg})")
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
            return f"{rd} = {b}"
        if name in ("add", "sub", "mul"):
            sym = {"add": "+", "sub": "-", "mul": "*"}[name]
            return f"{rd} = ({a} {sym} {b}) & {M32}"
        if name in ("or", "and", "xor"):
            return f"{rd} = {a} {_BITOPS[name]} {b}"
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
        self.regs = [0] * isa.NUM_REGS
        gen = _Gen(program, self, budget, capture_regs)
        self.source = gen.generate()
        env = self._globals()
        env.update(gen.env)
        exec(compile(self.source, f"<bpf-jit {program.name or 'program'}>", "exec"), env)
        self.functions = {name: fn for name, fn in env.items() if name.startswith("_f")}
        self.entry = env["_f0"]

    def _globals(self) -> dict[str, Any]:
        mem, vm, helpers = self.mem, self.vm, self.program.helpers

        def ldpkt(off: int, size: int) -> int:
            off = alu.s32(off)
            data = vm.packet
            if data is None or off < 0 or off + size > len(data):
                raise StopProgram(0)
            return int.from_bytes(data[off:off + size], "big")

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
            "M64": M64, "_n": [0], "_stack": self.stack, "_regs": self.regs, "_vm": vm,
            "_load": mem.load, "_store": mem.store, "_atomic": atomic, "_cmpxchg": cmpxchg,
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

    def run(self, ctx=b"", *, env: Any = None, packet: Any = None,
            args: Sequence[int] = ()) -> RunResult:
        try:
            return RunResult(self(ctx, env=env, packet=packet, args=args))
        except VMError as err:
            return RunResult(0, str(err))


def compile_program(program: Program, *, budget: int = DEFAULT_BUDGET,
                    capture_regs: bool = False) -> JitProgram:
    """The JitProgram for ``program`` (compiled on first use, then cached on the Program)."""
    key = (budget, capture_regs)
    cached = program.jit_cache.get(key)
    if cached is None:
        cached = program.jit_cache[key] = JitProgram(program, budget=budget, capture_regs=capture_regs)
    return cached
