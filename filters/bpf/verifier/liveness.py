"""Static register liveness and precision, the facts path pruning relies on.

``live[i]``: bitmask of r0-r9 that some path from insn i may read before writing (Linux 6.18
computes register liveness statically too, in ``compute_live_registers``).  ``needed[i]``: the
registers whose *value* at insn i may reach a safety decision (a decided branch, a pointer offset,
a helper argument, a value stored to the stack, a subprogram's result).  It over-approximates the
kernel's backtracking precision marks: a scalar outside ``needed`` can be treated as "any scalar"
when comparing states.  Stack slots are always compared precisely.
"""
from __future__ import annotations

from filters.bpf import isa
from filters.bpf.helper_protos import CONFORMANCE_PROTOS, PROTOS
from filters.bpf.verifier.cfg import Cfg, is_pseudo_call

R0_R5 = 0x3F
ARGS = 0x3E          # r1-r5
CALLEE_SAVED = 0x3C0  # r6-r9
ALL = 0x3FF
FP = 1 << 10


def _bit(r: int) -> int:
    return 1 << r if r < 10 else 0


def _helper_args(func_id: int, prog_type: str) -> int:
    proto = (CONFORMANCE_PROTOS if prog_type == "conformance" else PROTOS).get(func_id)
    if proto is None:
        return ARGS
    return sum(1 << (k + 1) for k in range(len(proto.args)))


def may_stack(cfg: Cfg) -> list[int]:
    """Forward: registers (bit 10 = r10) that may hold a stack pointer on entry to each insn."""
    insns, n = cfg.insns, len(cfg.insns)
    inn = [0] * n
    stored_stack = False
    for _ in range(2):   # second round once we know whether stack pointers are spilled anywhere
        inn = [-1] * n
        for s in cfg.subprog_starts:
            inn[s] = FP | (ARGS if s else 0)
        work = list(cfg.subprog_starts)
        while work:
            i = work.pop()
            m = inn[i]
            insn = insns[i]
            out = _stack_transfer(insn, m, stored_stack)
            if insn.opcode & 7 == isa.STX and (m >> insn.src) & 1:
                stored_stack = True
            for w in cfg.succ[i]:
                if w < n and (inn[w] == -1 or (inn[w] | out) != inn[w]):
                    inn[w] = out if inn[w] == -1 else inn[w] | out
                    work.append(w)
        if not stored_stack:
            break
    return [m if m != -1 else 0 for m in inn]


def _stack_transfer(insn, m: int, stored_stack: bool) -> int:
    op, cls = insn.opcode, insn.opcode & 7
    d, s = insn.dst, insn.src
    if cls in (isa.ALU, isa.ALU64):
        code = op & 0xF0
        if cls == isa.ALU64 and code == isa.MOV and op & isa.X and insn.off == 0:
            return (m & ~(1 << d)) | (((m >> s) & 1) << d)
        if cls == isa.ALU64 and code in (isa.ADD, isa.SUB):
            if op & isa.X and (m >> s) & 1:
                return m | (1 << d)
            return m
        return m & ~(1 << d)
    if cls == isa.LDX:
        return (m | (1 << d)) if stored_stack else (m & ~(1 << d))
    if cls == isa.LD:
        return m & ~(1 << d) if op == isa.LD_IMM64 else m & ~R0_R5
    if op == isa.OP_CALL:
        return (m & ~R0_R5) | (1 if is_pseudo_call(insn) else 0)
    if cls == isa.STX and op & 0xE0 == isa.ATOMIC:
        if insn.imm == isa.CMPXCHG:
            return m & ~1
        if insn.imm & isa.FETCH:
            return m & ~(1 << s)
    return m


def analyse(cfg: Cfg, prog_type: str, decided: frozenset[int] = frozenset(),
            stack_ptr: list[int] | None = None) -> tuple[list[int], list[int]]:
    """(live, needed) bitmasks on entry to every insn.

    ``decided``: conditional jumps the walk has seen decided by a scalar's value (only one branch
    explored).  Their operands are needed: another value could take the unexplored branch.  The
    operands of other jumps are needed only when one of them is needed afterwards (the comparison
    refines both).  The walk recomputes this whenever ``decided`` grows, before pruning again.
    """
    insns, n = cfg.insns, len(cfg.insns)
    if stack_ptr is None:
        stack_ptr = may_stack(cfg)
    live = [0] * n
    needed = [0] * n
    preds: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for w in cfg.succ[i]:
            if w < n:
                preds[w].append(i)
    work = set(range(n))
    order = list(range(n - 1, -1, -1))
    while work:
        for i in order:
            if i not in work:
                continue
            work.discard(i)
            if i in cfg.second_half:
                continue
            lo = nd = 0
            for w in cfg.succ[i]:
                if w < n:
                    lo |= live[w]
                    nd |= needed[w]
            new_l, new_n = _transfer(insns[i], lo, nd, stack_ptr[i], cfg.subprog_of[i], prog_type,
                                     i in decided)
            if new_l != live[i] or new_n != needed[i]:
                live[i], needed[i] = new_l, new_n
                work.update(preds[i])
    return live, needed


def _transfer(insn, lo: int, no: int, stack_ptr: int, subprog: int, prog_type: str,
              decided: bool = False):
    """Backward transfer: (live out, needed out) -> (live in, needed in)."""
    op, cls = insn.opcode, insn.opcode & 7
    d, s = insn.dst, insn.src
    bd, bs = _bit(d), _bit(s)
    if cls in (isa.ALU, isa.ALU64):
        code = op & 0xF0
        x = op & isa.X
        if code == isa.MOV:
            li = lo & ~bd
            ni = no & ~bd
            if x:
                li |= bs
                if no & bd or lo & bd:
                    ni |= bs
            return li, ni
        uses = bd | (bs if x else 0)
        li = lo | uses
        ni = no
        if no & bd:
            ni |= uses
        if cls == isa.ALU64 and code in (isa.ADD, isa.SUB) and x and lo & bd:
            ni |= uses          # the result may be a pointer whose bounds come from the scalar
        return li, ni
    if cls == isa.LDX:
        return (lo & ~bd) | bs, no & ~bd
    if cls == isa.ST:
        return lo | bd, no
    if cls == isa.STX:
        li = lo | bd | bs
        ni = no
        base_may_be_stack = (stack_ptr >> d) & 1
        if op & 0xE0 == isa.ATOMIC:
            if insn.imm == isa.CMPXCHG:
                li = (lo & ~1) | bd | bs | 1
                ni = no & ~1
                if base_may_be_stack:
                    ni |= bs | 1
                return li, ni
            if insn.imm & isa.FETCH:
                ni = no & ~bs
        if base_may_be_stack:
            ni |= bs
        return li, ni
    if cls == isa.LD:
        if op == isa.LD_IMM64:
            return lo & ~bd, no & ~bd
        uses = _bit(6) | (bs if op & 0xE0 == isa.IND else 0)
        return (lo & ~R0_R5) | uses, no & ~R0_R5
    # JMP / JMP32
    code = op & 0xF0
    if code == isa.EXIT:
        return 1, (1 if subprog else 0)
    if code == isa.CALL:
        args = ARGS if is_pseudo_call(insn) else _helper_args(insn.imm, prog_type)
        return (lo & ~R0_R5) | args, (no & ~R0_R5) | args
    if code == isa.JA:
        return lo, no
    uses = bd | (bs if op & isa.X else 0)
    if decided or no & uses:
        return lo | uses, no | uses
    return lo | uses, no
