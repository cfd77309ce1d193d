"""Static register liveness and precision, the facts path pruning relies on.

``live[i]``: bitmask of r0-r9 that some path from insn i may read before writing (Linux 6.18
computes register liveness statically too, in ``compute_live_registers``).  ``needed[i]``: the
registers whose *value* at insn i may reach a safety decision (a decided branch, a pointer offset,
a helper argument, a value stored to the stack, a subprogram's result).  It over-approximates the
kernel's backtracking precision marks: a scalar outside ``needed`` can be treated as "any scalar"
when comparing states.  Stack slots (bits 16..79, slot spi = fp-8*(spi+1)) are needed the same
way, found through a forward analysis of which registers hold stack pointers at known offsets.

Two facts only the walk knows sharpen it, as the kernel's backtracking does for each path: which
conditional jumps a scalar's value decided, and which slots a load through a stack pointer this
analysis cannot place (``TOP``) read at a fixed offset.  Both only grow; the walk recomputes the
masks when they do.  Pointer arithmetic makes both operands needed only where a pointer may take
part, known from a forward may-pointer analysis that also follows spills and fills of the frame's
slots (an offset spilled beside a stack pointer stays a scalar).
"""
from __future__ import annotations

from tracesim.filters.bpf.runtime.helper_table import table_for
from tracesim.filters.bpf.verifier.cfg import Cfg, is_pseudo_call
from tracesim.filters.bpf.vm import isa

R0_R5 = 0x3F
ARGS = 0x3E          # r1-r5
CALLEE_SAVED = 0x3C0  # r6-r9
ALL = 0x7FF
FP = 1 << 10


def _bit(r: int) -> int:
    return 1 << r if r < 10 else 0


_VALUE_MATTERS = ("const_size", "const_size_or_zero", "const_alloc_size_or_zero")


def _helper_args(func_id: int, prog_type: str) -> tuple[int, int]:
    """(registers a helper reads, those whose scalar value is checked: sizes)."""
    proto = table_for(prog_type).get(func_id)
    if proto is None:
        return ARGS, ARGS
    used = sum(1 << (k + 1) for k in range(len(proto.args)))
    sizes = sum(1 << (k + 1) for k, kind in enumerate(proto.args) if kind in _VALUE_MATTERS)
    return used, sizes


TOP = object()          # a stack pointer at an unknown offset (or maybe not a stack pointer)
SLOT_SHIFT = 16
ALL_SLOTS = ((1 << 64) - 1) << SLOT_SHIFT


def slot_bits(lo: int, hi: int) -> int:
    """Mask of the 8-byte stack slots (bit 16 + spi, spi 0 = fp-8) that bytes [lo, hi) touch."""
    lo, hi = max(lo, -512), min(hi, 0)
    if lo >= hi:
        return 0
    first, last = (-hi) // 8, (-lo - 1) // 8
    return (((1 << (last - first + 1)) - 1) << first) << SLOT_SHIFT


def stack_offsets(cfg: Cfg) -> list[tuple]:
    """Forward: per insn, each register's fp offset if it is a stack pointer with a known one,
    ``TOP`` if it may be a stack pointer at an unknown offset, None if it never is."""
    insns, n = cfg.insns, len(cfg.insns)
    for stored in (False, True):
        ins = _offsets_pass(cfg, stored)
        # a stack pointer written to memory may come back from any load: redo, assuming so
        if stored or not any(
                insns[i].opcode & 7 == isa.STX and ins[i] is not None and insns[i].src < 11
                and ins[i][insns[i].src] is not None for i in range(n)):
            break
    return [t if t is not None else tuple([None] * 10 + [0]) for t in ins]


def may_pointer(cfg: Cfg, stack_ptr: list[tuple]) -> list[int]:
    """Forward: bitmask of registers (bits 0-10) and stack slots of the frame (bits 16..79, as in
    ``slot_bits``) that may hold a pointer (any kind) on entry to each insn.  Loads narrower than
    8 bytes and ALU results other than ADD/SUB always give scalars; an 8-byte load from a known
    stack slot gives a pointer only if one may have been spilled there (``stack_ptr`` says which
    registers point into the frame at which offsets)."""
    insns, n = cfg.insns, len(cfg.insns)
    ins = [-1] * n
    for st_ in cfg.subprog_starts:
        ins[st_] = FP | (ARGS if st_ else 2)
    work = list(cfg.subprog_starts)
    while work:
        i = work.pop()
        m = _pointer_transfer(insns[i], ins[i], stack_ptr[i])
        for w in cfg.succ[i]:
            if w < n and (ins[w] == -1 or (ins[w] | m) != ins[w]):
                ins[w] = m if ins[w] == -1 else ins[w] | m
                work.append(w)
    return [m if m != -1 else 0 for m in ins]


def _pointer_transfer(insn, m: int, offsets: tuple) -> int:
    op, cls, d, s_ = insn.opcode, insn.opcode & 7, insn.dst, insn.src
    bd = 1 << d if d < 11 else 0
    if cls in (isa.ALU, isa.ALU64):
        code = op & 0xF0
        if cls == isa.ALU64 and code == isa.MOV and op & isa.X and insn.off == 0:
            return (m & ~bd) | (bd if (m >> s_) & 1 else 0)
        if cls == isa.ALU64 and code in (isa.ADD, isa.SUB):
            return m | bd if op & isa.X and (m >> s_) & 1 else m
        return m & ~bd
    if cls in (isa.LDX, isa.ST, isa.STX):
        size = isa.SIZE_BYTES[op & 0x18]
        k = offsets[s_ if cls == isa.LDX else d]
        known = k is not None and k is not TOP
        touched = slot_bits(k + insn.off, k + insn.off + size) if known else 0
        whole = known and size == 8 and (k + insn.off) % 8 == 0
        if cls == isa.LDX:
            if size != 8:
                return m & ~bd
            return (m | bd) if not whole or m & touched else m & ~bd
        if cls == isa.STX and op & 0xE0 == isa.ATOMIC:
            # the memory keeps scalars; what is fetched may be what was there
            if insn.imm == isa.CMPXCHG:
                return m | 1
            return m | (1 << s_) if insn.imm & isa.FETCH else m
        value_ptr = cls == isa.STX and (m >> s_) & 1
        if value_ptr:
            return m | (touched if known else (ALL_SLOTS if k is TOP else 0))
        return m & ~touched if whole else m      # a partial write leaves what may be there
    if cls == isa.LD:
        if op == isa.LD_IMM64:
            return (m | bd) if insn.src else (m & ~bd)
        return m & ~R0_R5
    if op == isa.OP_CALL:
        m = (m & ~R0_R5) | 1
        if is_pseudo_call(insn) and any(offsets[r] is not None for r in range(1, 6)):
            m |= ALL_SLOTS      # the callee may spill pointers into this frame
        return m
    return m


def top_based(cfg: Cfg, stack_ptr: list[tuple]) -> frozenset[int]:
    """Loads whose base register may be a stack pointer at an offset this analysis cannot tell."""
    return frozenset(i for i, insn in enumerate(cfg.insns)
                     if insn.opcode & 7 == isa.LDX and insn.src < 11
                     and stack_ptr[i][insn.src] is TOP)


def _offsets_pass(cfg: Cfg, stored: bool) -> list:
    insns, n = cfg.insns, len(cfg.insns)
    ins: list[tuple | None] = [None] * n
    for st_ in cfg.subprog_starts:
        ins[st_] = tuple([TOP if (st_ and 1 <= r <= 5) else None for r in range(10)] + [0])
    work = list(cfg.subprog_starts)
    while work:
        i = work.pop()
        out = _offset_transfer(insns[i], list(ins[i]), stored)
        for w in cfg.succ[i]:
            if w >= n:
                continue
            old = ins[w]
            new = out if old is None else tuple(
                a if a == b else (TOP if (a is not None or b is not None) else None)
                for a, b in zip(old, out, strict=False))
            if new != old:
                ins[w] = new
                work.append(w)
    return ins


def _offset_transfer(insn, o: list, stored: bool) -> tuple:
    op, cls = insn.opcode, insn.opcode & 7
    d, s = insn.dst, insn.src
    if cls in (isa.ALU, isa.ALU64) and d < 10:
        code = op & 0xF0
        if cls == isa.ALU64 and code == isa.MOV and op & isa.X and insn.off == 0:
            o[d] = o[s] if s <= 10 else None
        elif cls == isa.ALU64 and code in (isa.ADD, isa.SUB) and o[d] is not None:
            if op & isa.X:
                o[d] = TOP
            elif o[d] is not TOP:
                o[d] = o[d] + insn.imm if code == isa.ADD else o[d] - insn.imm
        elif cls == isa.ALU64 and code == isa.ADD and op & isa.X and s <= 10 and o[s] is not None:
            o[d] = TOP
        else:
            o[d] = None
    elif cls == isa.LDX and d < 10:
        # only an 8-byte fill can give back a spilled stack pointer
        o[d] = TOP if stored and op & 0x18 == isa.DW else None
    elif cls == isa.LD:
        for r in ((d,) if op == isa.LD_IMM64 else range(6)):
            if r < 10:
                o[r] = None
    elif op == isa.OP_CALL:
        for r in range(6):
            o[r] = None
        if is_pseudo_call(insn):
            o[0] = TOP
    elif cls == isa.STX and op & 0xE0 == isa.ATOMIC:
        if insn.imm == isa.CMPXCHG:
            o[0] = None
        elif insn.imm & isa.FETCH and s < 10:
            o[s] = None
    return tuple(o)


def analyse(cfg: Cfg, prog_type: str, decided: frozenset[int] = frozenset(),
            stack_ptr: list | None = None, ptrs: list[int] | None = None,
            loads_seen: dict[int, int] | None = None) -> tuple[list[int], list[int]]:
    """(live, needed) bitmasks on entry to every insn.

    ``decided``: conditional jumps the walk has seen decided by a scalar's value (only one branch
    explored).  Their operands are needed: another value could take the unexplored branch.  The
    operands of other jumps are needed only when one of them is needed afterwards (the comparison
    refines both).  ``loads_seen``: for loads through a stack pointer this analysis cannot place
    (``TOP``), the slots the walk has seen them read at a fixed offset; a variable-offset read gives
    an unknown scalar whatever the slots hold, so only those slots' values can reach the loaded
    register.  The walk recomputes this whenever ``decided`` or ``loads_seen`` grows, before
    pruning again: a state proven safe has had every load of its paths seen by then.
    """
    insns, n = cfg.insns, len(cfg.insns)
    if stack_ptr is None:
        stack_ptr = stack_offsets(cfg)
    if ptrs is None:
        ptrs = may_pointer(cfg, stack_ptr)
    if loads_seen is None:
        loads_seen = {}
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
                                     i in decided, ptrs[i], loads_seen.get(i, 0))
            if new_l != live[i] or new_n != needed[i]:
                live[i], needed[i] = new_l, new_n
                work.update(preds[i])
    return live, needed


def _transfer(insn, lo: int, no: int, stack_ptr: tuple, subprog: int, prog_type: str,
              decided: bool = False, ptrs: int = ALL, seen: int = 0):
    """Backward transfer: (live out, needed out) -> (live in, needed in).  ``seen``: for a load
    through a ``TOP`` stack pointer, the slots it was seen reading at a fixed offset."""
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
                if no & bd:
                    ni |= bs
            return li, ni
        uses = bd | (bs if x else 0)
        li = lo | uses
        ni = no
        if no & bd:
            ni |= uses
        if (cls == isa.ALU64 and code in (isa.ADD, isa.SUB) and x and lo & bd
                and ptrs & (bd | bs)):
            ni |= uses          # the result may be a pointer whose bounds come from the scalar
        return li, ni
    if cls in (isa.LDX, isa.ST, isa.STX):
        base = s if cls == isa.LDX else d
        size = isa.SIZE_BYTES[op & 0x18]
        k = stack_ptr[base] if base < 11 else None
        if k is None:
            touched = 0
        elif k is TOP:
            touched = seen if cls == isa.LDX else ALL_SLOTS
        else:
            touched = slot_bits(k + insn.off, k + insn.off + size)
        whole = k is not None and k is not TOP and size == 8 and (k + insn.off) % 8 == 0
        if cls == isa.LDX:
            ni = no & ~bd
            if no & bd:
                ni |= touched       # the loaded value comes from these slots
            return (lo & ~bd) | bs, ni
        if cls == isa.ST:
            return lo | bd, (no & ~touched) if whole else no
        li = lo | bd | bs
        ni = no
        if op & 0xE0 == isa.ATOMIC:
            fetched = 1 if insn.imm == isa.CMPXCHG else (bs if insn.imm & isa.FETCH else 0)
            if insn.imm == isa.CMPXCHG:
                li |= 1
            ni = no & ~fetched
            if no & fetched:
                ni |= touched
            if no & touched:
                ni |= bs | (1 if insn.imm == isa.CMPXCHG else 0)
            return li, ni
        if no & touched:
            ni |= bs            # the stored value is read back where it matters
        if whole:
            ni &= ~touched
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
        pseudo = is_pseudo_call(insn)
        args, valued = (ARGS, ARGS) if pseudo else _helper_args(insn.imm, prog_type)
        ni = (no & ~R0_R5) | valued
        if pseudo and any(stack_ptr[r] is not None for r in range(1, 6)):
            ni |= ALL_SLOTS     # the callee may read this frame's stack through its arguments
        return (lo & ~R0_R5) | args, ni
    if code == isa.JA:
        return lo, no
    uses = bd | (bs if op & isa.X else 0)
    if decided or no & uses:
        return lo | uses, no | uses
    return lo | uses, no
