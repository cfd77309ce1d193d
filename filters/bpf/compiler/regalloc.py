"""Register allocation over r0..r9: interference graph, move coalescing, priority colouring with
hints, and spilling to 8-byte stack slots when a value finds no register.

Machine registers take part as pre-coloured nodes: a call defines r0..r5, so every value live
across a call interferes with them and ends up in r6..r9 (or on the stack).  Moves between nodes
that do not interfere are coalesced, which is what puts arguments straight into r1..r5 and results
straight from r0.
"""
from __future__ import annotations

from tracesim.filters.bpf.compiler.ir import FIRST_VREG, FP, Function, Op
from tracesim.filters.bpf.compiler.opt import liveness

ALLOCATABLE = (1, 2, 3, 4, 5, 0, 6, 7, 8, 9)


class RegisterAllocationError(Exception):
    pass


def allocate(fn: Function) -> None:
    for _ in range(64):
        spilled = try_allocate(fn)
        if not spilled:
            return
        spill(fn, spilled)
    raise RegisterAllocationError(f"function '{fn.name}': register allocation did not converge")


def try_allocate(fn: Function) -> list[int]:
    """Colour every virtual register; rewrite the function and return [] on success, else the
    registers to spill."""
    adj: dict[int, set[int]] = {}
    moves: list[tuple[int, int, int]] = []     # (weight, a, b)
    weight: dict[int, int] = {}

    def node(x: int) -> set[int]:
        s = adj.get(x)
        if s is None:
            s = adj[x] = set()
        return s

    def edge(x: int, y: int) -> None:
        if x == y or (x < FIRST_VREG and y < FIRST_VREG):
            return
        node(x).add(y)
        node(y).add(x)

    live_out = liveness(fn)
    for b in fn.blocks:
        w = 10 ** min(b.depth, 4)
        live = {x for x in live_out[b.label] if x != FP}
        for op in reversed(b.ops):
            defs = [d for d in op.defs() if d != FP]
            uses = [u for u in op.uses() if u != FP]
            for x in defs + uses:
                node(x)
                weight[x] = weight.get(x, 0) + w
            if op.kind == "mov" and isinstance(op.a, int) and op.a != FP:
                live.discard(op.a)
                moves.append((w, op.dst, op.a))
            for d in defs:
                for x in live:
                    edge(d, x)
            live.difference_update(defs)
            live.update(uses)
    # Coalesce (aggressively, heaviest moves first): union-find over nodes.
    alias: dict[int, int] = {}

    def find(x: int) -> int:
        while x in alias:
            x = alias[x]
        return x

    for _, src, dst in sorted(moves, key=lambda m: -m[0]):
        x, y = find(src), find(dst)
        if x == y or (x < FIRST_VREG and y < FIRST_VREG) or y in adj.get(x, ()):
            continue
        if x >= FIRST_VREG and y < FIRST_VREG:
            x, y = y, x                            # keep the machine register as representative
        if y < FIRST_VREG:
            continue
        # merge y into x
        alias[y] = x
        for n in adj.pop(y, set()):
            adj[n].discard(y)
            if n != x:
                edge(x, n)
        weight[x] = weight.get(x, 0) + weight.pop(y, 0)
    color: dict[int, int] = {r: r for r in range(FIRST_VREG) if r in adj or r < 10}
    hints: dict[int, set[int]] = {}
    for _, src, dst in moves:
        x, y = find(src), find(dst)
        if x != y:
            hints.setdefault(x, set()).add(y)
            hints.setdefault(y, set()).add(x)
    vregs = sorted((v for v in adj if v >= FIRST_VREG),
                   key=lambda v: (-weight.get(v, 0) / (1 + len(adj[v])), v))
    spills: list[int] = []
    for v in vregs:
        taken = {color[n] for n in adj[v] if n in color}
        free = [r for r in ALLOCATABLE if r not in taken]
        if not free:
            spills.append(v)
            continue
        preferred = [color[h] for h in hints.get(v, ()) if h in color and color[h] in free]
        color[v] = preferred[0] if preferred else free[0]
    if spills:
        # Spill the cheapest among those that failed (one at a time keeps spill code small).
        return [min(spills, key=lambda v: weight.get(v, 0))]
    for b in fn.blocks:
        out = []
        for op in b.ops:
            for field in ("dst", "a", "b"):
                x = getattr(op, field)
                if isinstance(x, int) and x >= FIRST_VREG:
                    setattr(op, field, color[find(x)])
            if op.kind == "mov" and op.a == op.dst and not op.w32:
                continue
            out.append(op)
        b.ops = out
    return []


def spill(fn: Function, regs: list[int]) -> None:
    for v in regs:
        slot = fn.new_slot(8, 8)
        for b in fn.blocks:
            out: list[Op] = []
            for op in b.ops:
                uses_v = v in op.uses() or (isinstance(op.a, int) and op.a == v) or \
                    (isinstance(op.b, int) and op.b == v)
                defs_v = op.dst == v
                t = fn.new_vreg() if uses_v or defs_v else None
                if uses_v:
                    out.append(Op("ld", dst=t, a=FP, off=slot, size=8))
                    op.replace_uses({v: t})
                if defs_v:
                    op.dst = t
                out.append(op)
                if defs_v:
                    out.append(Op("st", a=FP, off=slot, b=t, size=8))
            b.ops = out
