"""Optimisations on the three-address IR: CFG clean-up (constant branches, jump threading,
unreachable blocks, block merging), constant and copy propagation with folding, address folding
into load/store offsets, and dead-code elimination."""
from __future__ import annotations

from tracesim.filters.bpf.compiler.ir import FIRST_VREG, FP, SWAPPED, Function, Imm, Op
from tracesim.filters.bpf.compiler.values import eval_cmp

MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1


def s64(v: int) -> int:
    v &= MASK64
    return v - (1 << 64) if v >> 63 else v


def s32(v: int) -> int:
    v &= MASK32
    return v - (1 << 32) if v >> 31 else v


def fits_imm(value: int, w32: bool) -> bool:
    """Whether an immediate operand can encode ``value`` (sign-extended s32 for 64-bit ops)."""
    return True if w32 else -(1 << 31) <= s64(value) < (1 << 31)


def optimise(fn: Function) -> None:
    for _ in range(8):
        changed = simplify_cfg(fn)
        changed |= propagate(fn)
        changed |= narrow_compares(fn)
        changed |= drop_zero_extensions(fn)
        changed |= fold_addresses(fn)
        changed |= dce(fn)
        if not changed:
            break


# ---------------------------------------------------------------- CFG

def simplify_cfg(fn: Function) -> bool:
    changed = False
    by_label = {b.label: b for b in fn.blocks}
    for b in fn.blocks:
        t = b.terminator
        if t is None:                      # a block left open: it can only be unreachable junk
            b.ops.append(Op("exit"))
            t = b.ops[-1]
        if t.kind == "br":
            if isinstance(t.a, Imm) and isinstance(t.b, Imm):
                a, bv = t.a.value, t.b.value
                a, bv = (a & MASK32, bv & MASK32) if t.w32 else (a & MASK64, bv & MASK64)
                if t.alu.startswith("s"):
                    a, bv = (s32(a), s32(bv)) if t.w32 else (s64(a), s64(bv))
                b.ops[-1] = Op("jmp", targets=(t.targets[0] if eval_cmp(t.alu, a, bv)
                                               else t.targets[1],))
                changed = True
            elif t.targets[0] == t.targets[1]:
                b.ops[-1] = Op("jmp", targets=(t.targets[0],))
                changed = True
    # Jump threading: a target that only jumps on is skipped.
    def final(label: int) -> int:
        seen = set()
        while label not in seen:
            seen.add(label)
            blk = by_label[label]
            if len(blk.ops) == 1 and blk.ops[0].kind == "jmp":
                label = blk.ops[0].targets[0]
            else:
                break
        return label
    for b in fn.blocks:
        t = b.terminator
        if t is not None and t.kind in ("jmp", "br"):
            new = tuple(final(x) for x in t.targets)
            if new != t.targets:
                t.targets = new
                changed = True
    # Unreachable blocks.
    reach, stack = set(), [fn.blocks[0].label]
    while stack:
        lab = stack.pop()
        if lab in reach:
            continue
        reach.add(lab)
        stack.extend(by_label[lab].successors())
    if len(reach) != len(fn.blocks):
        fn.blocks = [b for b in fn.blocks if b.label in reach]
        changed = True
    # Merge a block into its only predecessor when that one jumps straight to it.
    preds = predecessors(fn)
    merged = True
    while merged:
        merged = False
        for b in fn.blocks:
            t = b.terminator
            if t is None or t.kind != "jmp":
                continue
            nxt = by_label[t.targets[0]]
            if nxt is b or nxt is fn.blocks[0] or len(preds[nxt.label]) != 1:
                continue
            b.ops[-1:] = nxt.ops
            for s in nxt.successors():
                preds[s] = [b.label if p == nxt.label else p for p in preds[s]]
            fn.blocks.remove(nxt)
            merged = changed = True
            break
    return changed


def predecessors(fn: Function) -> dict[int, list[int]]:
    preds: dict[int, list[int]] = {b.label: [] for b in fn.blocks}
    for b in fn.blocks:
        for s in b.successors():
            preds[s].append(b.label)
    return preds


# ---------------------------------------------------------------- propagation and folding

def def_counts(fn: Function) -> tuple[dict[int, int], dict[int, Op]]:
    counts: dict[int, int] = {}
    single: dict[int, Op] = {}
    for b in fn.blocks:
        for op in b.ops:
            for d in op.defs():
                counts[d] = counts.get(d, 0) + 1
                single[d] = op
    return counts, single


def propagate(fn: Function) -> bool:
    changed = False
    counts, defs = def_counts(fn)
    consts: dict[int, tuple[int, bool]] = {}     # vreg -> (value image, defined by a 32-bit mov)
    copies: dict[int, int] = {}
    for v, n in counts.items():
        if n != 1 or v < FIRST_VREG:
            continue
        op = defs[v]
        if op.kind == "mov" and isinstance(op.a, Imm):
            consts[v] = ((op.a.value & MASK32) if op.w32 else (op.a.value & MASK64), op.w32)
        elif op.kind == "mov" and isinstance(op.a, int) and not op.w32 and \
                (op.a == FP or (op.a >= FIRST_VREG and counts.get(op.a) == 1)):
            copies[v] = op.a
    for b in fn.blocks:
        for op in b.ops:
            for field in ("a", "b"):
                x = getattr(op, field)
                while isinstance(x, int) and x in copies:
                    x = copies[x]
                    setattr(op, field, x)
                    changed = True
            changed |= use_constants(op, consts)
            folded = fold(op)
            if folded is not None:
                b.ops[b.ops.index(op)] = folded
                changed = True
    return changed


def use_constants(op: Op, consts: dict[int, tuple[int, bool]]) -> bool:
    """Put known constants into operand positions that take an immediate."""
    k = op.kind
    changed = False
    if k == "mov" and isinstance(op.a, int) and op.a in consts:
        value, _ = consts[op.a]
        op.a = Imm(value & MASK32 if op.w32 else value)
        return True
    if k in ("alu", "br"):
        if k == "br" and isinstance(op.a, int) and op.a in consts and not isinstance(op.b, Imm):
            op.a, op.b, op.alu = op.b, op.a, SWAPPED[op.alu]
        if isinstance(op.b, int) and op.b in consts and fits_imm(consts[op.b][0], op.w32):
            op.b = Imm(consts[op.b][0])
            changed = True
        if isinstance(op.a, int) and op.a in consts and isinstance(op.b, Imm):
            op.a = Imm(consts[op.a][0])
            changed = True
        if k == "alu" and isinstance(op.a, int) and op.a in consts and op.alu in \
                ("add", "mul", "and", "or", "xor") and isinstance(op.b, int) and \
                fits_imm(consts[op.a][0], op.w32):
            op.a, op.b = op.b, Imm(consts[op.a][0])
            changed = True
    return changed


def fold(op: Op) -> Op | None:
    """A constant result for an operation whose operands are all constants; identities."""
    if op.kind == "alu" and isinstance(op.b, Imm):
        b = op.b.value
        if isinstance(op.a, Imm):
            value = alu_eval(op.alu, op.a.value, b, op.w32)
            return Op("mov", dst=op.dst, a=Imm(value), w32=op.w32 and value <= MASK32)
        bb = b & (MASK32 if op.w32 else MASK64)
        if (op.alu in ("add", "sub", "or", "xor", "lsh", "rsh", "arsh") and bb == 0) or \
                (op.alu in ("mul", "div", "sdiv") and bb == 1):
            return Op("mov", dst=op.dst, a=op.a, w32=op.w32)
        if op.alu in ("mul", "and") and bb == 0:
            return Op("mov", dst=op.dst, a=Imm(0), w32=op.w32)
    if op.kind == "neg" and isinstance(op.a, Imm):
        value = (-op.a.value) & (MASK32 if op.w32 else MASK64)
        return Op("mov", dst=op.dst, a=Imm(value), w32=op.w32)
    return None


def alu_eval(alu: str, a: int, b: int, w32: bool) -> int:
    """RFC 9669 semantics of an ALU operation on constants (the register image)."""
    bits = 32 if w32 else 64
    mask = (1 << bits) - 1
    a, b = a & mask, b & mask
    sa, sb = (s32(a), s32(b)) if w32 else (s64(a), s64(b))
    if alu == "add":
        r = a + b
    elif alu == "sub":
        r = a - b
    elif alu == "mul":
        r = a * b
    elif alu == "div":
        r = a // b if b else 0
    elif alu == "mod":
        r = a % b if b else a
    elif alu == "sdiv":
        r = (abs(sa) // abs(sb)) * (1 if (sa < 0) == (sb < 0) else -1) if sb else 0
    elif alu == "smod":
        r = sa - sb * ((abs(sa) // abs(sb)) * (1 if (sa < 0) == (sb < 0) else -1)) if sb else a
    elif alu == "or":
        r = a | b
    elif alu == "and":
        r = a & b
    elif alu == "xor":
        r = a ^ b
    elif alu == "lsh":
        r = a << (b & (bits - 1))
    elif alu == "rsh":
        r = a >> (b & (bits - 1))
    elif alu == "arsh":
        r = sa >> (b & (bits - 1))
    else:
        raise ValueError(alu)
    return r & mask


def drop_zero_extensions(fn: Function) -> bool:
    """``w = w`` copies of values whose upper half is already zero become plain copies (which
    the register allocator can then remove)."""
    defs: dict[int, list[Op]] = {}
    for b in fn.blocks:
        for op in b.ops:
            for d in op.defs():
                defs.setdefault(d, []).append(op)
    clean: dict[int, bool] = {}

    def is_clean(v: int, seen: frozenset = frozenset()) -> bool:
        if v < FIRST_VREG:
            return False
        if v in clean:
            return clean[v]
        if v in seen:
            return True                    # a cycle of copies adds no dirty bits
        ok = True
        for op in defs.get(v, []):
            if op.kind == "ld" and op.size <= 4 or op.w32 and op.kind in ("alu", "neg", "mov"):
                continue
            if op.kind == "mov" and isinstance(op.a, Imm) and 0 <= op.a.value <= MASK32:
                continue
            if op.kind == "mov" and isinstance(op.a, int) and is_clean(op.a, seen | {v}):
                continue
            ok = False
            break
        if not seen:
            clean[v] = ok
        return ok

    changed = False
    for b in fn.blocks:
        for op in b.ops:
            if op.kind == "mov" and op.w32 and isinstance(op.a, int) and is_clean(op.a):
                op.w32 = False
                changed = True
    return changed


def narrow_compares(fn: Function) -> bool:
    """``sext(x) == k`` tests ``x == k`` on the zero-extended load when ``k`` fits the narrow
    type: a sign extension by shifts (``w <<= n; w s>>= n``) of an n-bit load goes away."""
    changed = False
    counts, defs = def_counts(fn)

    def single(v: object) -> Op | None:
        return defs[v] if isinstance(v, int) and v >= FIRST_VREG and counts.get(v) == 1 else None

    for b in fn.blocks:
        t = b.terminator
        if t is None or t.kind != "br" or t.alu not in ("eq", "ne") or not t.w32 or \
                not isinstance(t.b, Imm):
            continue
        sar = single(t.a)
        if sar is None or sar.kind != "alu" or sar.alu != "arsh" or not sar.w32 or \
                not isinstance(sar.b, Imm):
            continue
        shl = single(sar.a)
        n = sar.b.value
        if shl is None or shl.kind != "alu" or shl.alu != "lsh" or not shl.w32 or \
                shl.b != Imm(n):
            continue
        load = single(shl.a)
        bits = 32 - n
        if load is None or load.kind != "ld" or load.size * 8 != bits:
            continue
        k = s32(t.b.value)
        low = k & ((1 << bits) - 1)
        if low - ((low >> (bits - 1)) << bits) != k:      # k is outside the narrow type
            b.ops[-1] = Op("jmp", targets=(t.targets[1] if t.alu == "eq" else t.targets[0],))
        else:
            t.a, t.b = shl.a, Imm(low)
        changed = True
    return changed


# ---------------------------------------------------------------- addresses

def fold_addresses(fn: Function) -> bool:
    """``t = p + k; *(t + off)`` becomes ``*(p + off + k)`` when ``t`` has one definition."""
    changed = False
    counts, defs = def_counts(fn)
    for b in fn.blocks:
        for op in b.ops:
            if op.kind not in ("ld", "st", "atomic") or not isinstance(op.a, int):
                continue
            base = op.a
            while base >= FIRST_VREG and counts.get(base) == 1:
                d = defs[base]
                if d.kind == "alu" and d.alu == "add" and not d.w32 and isinstance(d.b, Imm) \
                        and isinstance(d.a, int) and (d.a == FP or
                                                      (d.a >= FIRST_VREG and counts.get(d.a) == 1)):
                    off = op.off + s64(d.b.value)
                    if not -32768 <= off <= 32767:
                        break
                    op.a, op.off, base = d.a, off, d.a
                    changed = True
                else:
                    break
    return changed


# ---------------------------------------------------------------- dead code

def liveness(fn: Function) -> dict[int, set[int]]:
    """Live-out sets per block label."""
    use: dict[int, set[int]] = {}
    kill: dict[int, set[int]] = {}
    for b in fn.blocks:
        u, k = set(), set()
        for op in b.ops:
            for x in op.uses():
                if x not in k:
                    u.add(x)
            k.update(op.defs())
        use[b.label], kill[b.label] = u, k
    live_in: dict[int, set[int]] = {b.label: set() for b in fn.blocks}
    live_out: dict[int, set[int]] = {b.label: set() for b in fn.blocks}
    changed = True
    while changed:
        changed = False
        for b in reversed(fn.blocks):
            out = set()
            for s in b.successors():
                out |= live_in[s]
            inn = use[b.label] | (out - kill[b.label])
            if out != live_out[b.label] or inn != live_in[b.label]:
                live_out[b.label], live_in[b.label] = out, inn
                changed = True
    return live_out


def dce(fn: Function) -> bool:
    changed = False
    while True:
        live_out = liveness(fn)
        removed = False
        for b in fn.blocks:
            live = set(live_out[b.label])
            keep: list[Op] = []
            for op in reversed(b.ops):
                d = op.dst
                if op.is_pure() and d is not None and d not in live and d != FP:
                    removed = True
                    continue
                if op.kind == "mov" and isinstance(op.a, int) and op.a == d and not op.w32:
                    removed = True
                    continue
                if op.kind == "atomic" and d is not None and d not in live and \
                        op.alu not in ("cmpxchg", "xchg"):
                    op.dst = None                 # nobody reads the fetched value
                live -= set(op.defs())
                live |= set(op.uses())
                keep.append(op)
            b.ops = keep[::-1]
        if not removed:
            return changed
        changed = True


