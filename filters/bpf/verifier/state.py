"""Abstract machine state: registers, stack slots, call frames, and when two states are equivalent.

Mirrors ``struct bpf_reg_state`` / ``bpf_func_state`` / ``bpf_verifier_state`` and the pruning
checks ``regsafe``/``stacksafe``/``states_equal`` of kernel/bpf/verifier.c.  Liveness and precision
come from the static analysis in ``liveness.py``: a register that is not live is ignored, a scalar
that is not *needed* (its value never reaches a safety decision) matches any other scalar.
"""
from __future__ import annotations

from collections.abc import Collection

from tracesim.filters.bpf.verifier import bounds, tnum

# Register types (enum bpf_reg_type), plus flag bits as the kernel composes them.
NOT_INIT, SCALAR, PTR_TO_CTX, CONST_PTR_TO_MAP, PTR_TO_MAP_VALUE, PTR_TO_STACK, PTR_TO_PACKET, \
    PTR_TO_PACKET_END, PTR_TO_MEM, PTR_TO_SOCK_COMMON, PTR_TO_FUNC, PTR_TO_BTF_ID = range(12)
MAYBE_NULL = 0x100
MEM_RINGBUF = 0x200
MEM_RDONLY = 0x400
INNER_MAP = 0x800          # a map-of-maps lookup's result: CONST_PTR_TO_MAP once not NULL
MEM_PERCPU = 0x1000        # PTR_TO_BTF_ID of a per-CPU variable (its BTF id in ``mem_size``)
BASE = 0xFF

_BASE_NAMES = {NOT_INIT: "?", SCALAR: "scalar", PTR_TO_CTX: "ctx", CONST_PTR_TO_MAP: "map_ptr",
               PTR_TO_MAP_VALUE: "map_value", PTR_TO_STACK: "fp", PTR_TO_PACKET: "pkt",
               PTR_TO_PACKET_END: "pkt_end", PTR_TO_MEM: "mem", PTR_TO_SOCK_COMMON: "sock_common",
               PTR_TO_FUNC: "func", PTR_TO_BTF_ID: "ptr_"}


def type_str(t: int) -> str:
    """The kernel's ``reg_type_str``: ``map_value_or_null``, ``ringbuf_mem``, ``rdonly_mem``..."""
    prefix = ("rdonly_" if t & MEM_RDONLY else "") + ("ringbuf_" if t & MEM_RINGBUF else "") + \
        ("percpu_" if t & MEM_PERCPU else "")
    null = ("or_null_" if t & BASE == PTR_TO_BTF_ID else "_or_null") if t & MAYBE_NULL else ""
    return prefix + _BASE_NAMES[t & BASE] + null


# Stack byte kinds (enum bpf_stack_slot_type) and their letters in the log.
STACK_INVALID, STACK_SPILL, STACK_MISC, STACK_ZERO = 0, 1, 2, 3
SLOT_CHAR = "?rm0"
STACK_SIZE = 512


class Reg:
    """One register (or spilled register) of the abstract machine.  Once stored in a frame it is
    a value shared by the states copied from that frame: change a ``copy()``, never the stored
    object."""
    __slots__ = ("type", "off", "var", "smin", "smax", "umin", "umax", "s32min", "s32max",
                 "u32min", "u32max", "id", "ref_id", "map", "mem_size", "frameno", "fk")

    type: int
    off: int
    var: tnum.Tnum            # the known bits (value, mask)
    smin: int
    smax: int
    umin: int
    umax: int
    s32min: int
    s32max: int
    u32min: int
    u32max: int
    id: int
    ref_id: int
    map: int | None           # the map a map pointer points to, by its key in the program's maps
    mem_size: int
    frameno: int
    fk: int | None

    def __init__(self, type_: int = NOT_INIT) -> None:
        self.fk = None      # reg_fk(self), computed when a fingerprint first needs it
        self.type = type_
        self.off = 0
        self.id = 0
        self.ref_id = 0
        self.map = None
        self.mem_size = 0
        self.frameno = 0
        bounds.mark_unknown(self) if type_ == SCALAR else bounds.mark_const(self, 0)

    def copy(self) -> Reg:
        r = Reg.__new__(Reg)
        r.fk = None
        r.type, r.off, r.var = self.type, self.off, self.var
        r.smin, r.smax, r.umin, r.umax = self.smin, self.smax, self.umin, self.umax
        r.s32min, r.s32max, r.u32min, r.u32max = self.s32min, self.s32max, self.u32min, self.u32max
        r.id, r.ref_id, r.map, r.mem_size, r.frameno = (self.id, self.ref_id, self.map,
                                                         self.mem_size, self.frameno)
        return r

    def is_ptr(self) -> bool:
        return self.type > SCALAR

    def is_const(self) -> bool:
        return self.type == SCALAR and self.var[1] == 0


def scalar_const(v: int) -> Reg:
    r = Reg(SCALAR)
    bounds.mark_const(r, v)
    return r


_CONSTS: dict[int, Reg] = {}       # value (mod 2**64) -> a shared constant scalar
_CONSTS_MAX = 1 << 16


def const_reg(v: int) -> Reg:
    """A constant scalar with no id, shared: the walk's fast paths store it without a copy
    (stored registers are never changed in place).  Never change the returned object."""
    v &= bounds.U64
    r = _CONSTS.get(v)
    if r is None:
        if len(_CONSTS) >= _CONSTS_MAX:
            _CONSTS.clear()
        r = _CONSTS[v] = make_const(v)
    return r


def make_const(v: int) -> Reg:
    """A new constant scalar of value ``v`` (0 <= v < 2**64), as ``scalar_const`` makes it but
    without its calls: the walk makes one per constant-folded ALU insn."""
    r = Reg.__new__(Reg)
    r.type, r.off, r.id, r.ref_id, r.map, r.mem_size, r.frameno = SCALAR, 0, 0, 0, None, 0, 0
    r.var = var = (v, 0)      # what bounds.mark_const sets, inline: this runs per new constant
    r.fk = hash(var)          # as reg_fk computes it for a constant
    r.umin = r.umax = v
    r.smin = r.smax = v - (1 << 64) if v >> 63 else v
    v &= 0xFFFFFFFF
    r.u32min = r.u32max = v
    r.s32min = r.s32max = v - (1 << 32) if v >> 31 else v
    return r


def scalar_unknown() -> Reg:
    return Reg(SCALAR)


def pointer(type_: int, **fields) -> Reg:
    r = Reg(type_)
    for k, v in fields.items():
        setattr(r, k, v)
    return r


class Frame:
    """One call frame: r0-r10, 512 stack bytes (kinds), spilled registers by slot index.
    ``stack`` is immutable ``bytes``, replaced on every write: copies of a frame share it, and
    its hash (fingerprints) is computed once."""
    __slots__ = ("regs", "stack", "spills", "callsite", "frameno", "subprog")

    def __init__(self, frameno: int, callsite: int, subprog: int) -> None:
        self.regs = [Reg() for _ in range(11)]
        self.regs[10] = pointer(PTR_TO_STACK, frameno=frameno)
        self.stack = bytes(STACK_SIZE)
        self.spills: dict[int, Reg] = {}
        self.callsite = callsite
        self.frameno = frameno
        self.subprog = subprog

    def copy(self) -> Frame:
        """Registers are values, never changed in place once stored (the walk copies one before
        refining it), so the copies share them."""
        f = Frame.__new__(Frame)
        f.regs = self.regs[:]
        f.stack = self.stack
        f.spills = self.spills.copy()
        f.callsite, f.frameno, f.subprog = self.callsite, self.frameno, self.subprog
        return f


class VState:
    """The whole verifier state of one path: frames, held references, pruning bookkeeping."""
    __slots__ = ("frames", "refs", "parent", "branches", "insn", "hits", "misses", "fp",
                 "linked_key", "linked_ids")

    def __init__(self, frames: list[Frame]) -> None:
        self.frames = frames
        self.refs: list[tuple[int, int]] = []   # (ref id, insn that acquired it)
        self.parent: VState | None = None
        self.branches = 0
        self.insn = 0
        self.hits = 0
        self.misses = 0
        self.fp: int | None = None
        self.linked_key: tuple[tuple[int, int], ...] | None = None  # what ``linked_ids`` is for
        self.linked_ids: set[int] = set()

    @property
    def cur(self) -> Frame:
        return self.frames[-1]

    def copy(self) -> VState:
        s = VState([f.copy() for f in self.frames])
        s.refs = list(self.refs)
        s.parent = self.parent
        return s


def reg_fk(r: Reg) -> int:
    """The hash of what ``regs_exact`` compares (ids aside), cached on the register: equal
    registers get equal hashes.  A constant scalar's value decides its bounds."""
    var = r.var
    if r.type == SCALAR and not var[1]:
        k = hash(var)
    else:
        k = hash((r.type, r.off, var, r.smin, r.smax, r.umin, r.umax, r.s32min, r.s32max,
                  r.u32min, r.u32max, r.map, r.mem_size, r.frameno))
    r.fk = k
    return k


# the register numbers set in each 10-bit liveness mask
LIVE_REGS = tuple(tuple(i for i in range(10) if (m >> i) & 1) for m in range(1 << 10))


def fingerprint(s: VState, masks: tuple[tuple[int, int], ...]) -> int:
    """A digest of what an exact comparison looks at (ids aside): equal states have equal
    fingerprints, so it indexes the states a loop may repeat (different states may share one:
    the index only narrows what ``states_equal`` compares)."""
    frames = s.frames
    if len(frames) == 1:            # the common case, without the loop over frames
        f = frames[0]
        regs = f.regs
        out = [len(s.refs), f.callsite, f.stack]    # stack: bytes, its hash computed once
        for i in LIVE_REGS[masks[0][0] & 0x3FF]:
            r = regs[i]
            k = r.fk
            out.append(k if k is not None else reg_fk(r))
        if f.spills:
            out.append(spills_digest(f.spills))
        return hash(tuple(out))
    out = [len(s.refs)]
    for depth, f in enumerate(frames):
        regs = f.regs
        out.append(f.callsite)
        out.append(f.stack)
        for i in LIVE_REGS[masks[depth][0] & 0x3FF]:
            r = regs[i]
            k = r.fk
            out.append(k if k is not None else reg_fk(r))
        if f.spills:
            out.append(spills_digest(f.spills))
    return hash(tuple(out))


def spills_digest(spills: dict[int, Reg]) -> int:
    """Order-free (dict order depends on the path)."""
    return sum(hash((k, v.type, v.off, v.var, v.umin, v.umax, v.smin, v.smax))
               for k, v in spills.items())


# --- equivalence ---------------------------------------------------------------------------------

class IdMap:
    """A one-to-one correspondence between the ids of an old and a current state."""
    __slots__ = ("fwd", "rev", "tmp")

    def __init__(self) -> None:
        self.fwd: dict[int, int] = {}
        self.rev: dict[int, int] = {}
        self.tmp = 1 << 40

    def check(self, old: int, cur: int) -> bool:
        if not old and not cur:
            return True
        if not old:
            old = self._fresh()
        if not cur:
            cur = self._fresh()
        f = self.fwd.get(old)
        if f is None:
            if cur in self.rev:
                return False
            self.fwd[old] = cur
            self.rev[cur] = old
            return True
        return f == cur

    def _fresh(self) -> int:
        self.tmp += 1
        return self.tmp


def _range_within(old: Reg, cur: Reg) -> bool:
    return (old.umin <= cur.umin and cur.umax <= old.umax and old.smin <= cur.smin
            and cur.smax <= old.smax and old.u32min <= cur.u32min and cur.u32max <= old.u32max
            and old.s32min <= cur.s32min and cur.s32max <= old.s32max)


def regsafe(old: Reg, cur: Reg, needed: bool, idmap: IdMap, exact: bool,
            linked: Collection[int] = frozenset()) -> bool:
    """May a path from a state with ``cur`` be pruned because one with ``old`` was safe?"""
    if exact:
        return regs_exact(old, cur, idmap)
    if old.type == NOT_INIT:
        return True
    if cur.type == NOT_INIT:
        return False
    if old.type == SCALAR:
        if cur.type != SCALAR:
            return False
        if not needed and old.id not in linked:
            return True     # scalars linked to a needed one stay precise: comparing one refines all
        return (_range_within(old, cur) and tnum.contains(old.var, cur.var)
                and idmap.check(old.id, cur.id))
    if old.type != cur.type or old.off != cur.off:
        return False
    if old.map is not cur.map or old.mem_size != cur.mem_size or old.frameno != cur.frameno:
        return False
    if not (_range_within(old, cur) and tnum.contains(old.var, cur.var)):
        return False
    return idmap.check(old.id, cur.id) and idmap.check(old.ref_id, cur.ref_id)


def regs_exact(old: Reg, cur: Reg, idmap: IdMap) -> bool:
    if old.type != cur.type:
        return False
    if old.type == NOT_INIT:
        return True
    return (old.off == cur.off and old.var == cur.var and old.smin == cur.smin
            and old.smax == cur.smax and old.umin == cur.umin and old.umax == cur.umax
            and old.s32min == cur.s32min and old.s32max == cur.s32max
            and old.u32min == cur.u32min and old.u32max == cur.u32max and old.map is cur.map
            and old.mem_size == cur.mem_size and old.frameno == cur.frameno
            and idmap.check(old.id, cur.id) and idmap.check(old.ref_id, cur.ref_id))


def _slot_needed(needed: int, slot: int) -> bool:
    """``slot`` counts 8-byte slots from the bottom of the frame; masks count them from fp-8."""
    return bool((needed >> (16 + 63 - slot)) & 1)


def stacksafe(old: Frame, cur: Frame, idmap: IdMap, exact: bool, privileged: bool,
              needed: int = -1, linked: frozenset | set | tuple = frozenset()) -> bool:
    ostack, cstack = old.stack, cur.stack
    if ostack != cstack:
        if exact:
            return False
        diff = int.from_bytes(ostack, "little") ^ int.from_bytes(cstack, "little")
        while diff:
            slot = ((diff & -diff).bit_length() - 1) >> 6       # the lowest slot that differs
            diff &= ~(0xFFFFFFFFFFFFFFFF << (slot << 6))
            if not _slot_safe(old, cur, slot, privileged, needed, linked):
                return False
    cspills = cur.spills
    for slot, oreg in old.spills.items():
        creg = cspills.get(slot)
        if creg is None:
            if exact:
                return False
            continue            # checked byte by byte above
        if creg is oreg and not oreg.id and not oreg.ref_id:
            continue            # the same value
        precise = exact or oreg.id in linked or _slot_needed(needed, slot)
        if not regsafe(oreg, creg, bool(precise), idmap, exact, linked):
            return False
    if exact and cspills.keys() != old.spills.keys():
        return False
    return True


def _slot_safe(old: Frame, cur: Frame, slot: int, privileged: bool, needed: int,
               linked) -> bool:
    """The bytes of one 8-byte slot that differ: does what ``cur`` holds there fit ``old``?"""
    ostack, cstack = old.stack, cur.stack
    precise = _slot_needed(needed, slot)
    csp = cur.spills.get(slot)
    cur_scalar_spill = csp is not None and csp.type == SCALAR
    osp = old.spills.get(slot)
    # a spilled scalar whose value never matters
    old_free_spill = (osp is not None and osp.type == SCALAR and osp.id not in linked
                      and not precise)
    for i in range(slot * 8, slot * 8 + 8):
        o = ostack[i]
        c = cstack[i]
        if o == c or o == STACK_INVALID:
            continue
        # byte i of cur reads back as some scalar (or, privileged, as an unknown one)
        scalar = cur_scalar_spill if c == STACK_SPILL else (c != STACK_INVALID or privileged)
        if o == STACK_MISC:
            if scalar:
                continue
        elif o == STACK_ZERO:
            if scalar and not precise:
                continue        # known zeros whose value never matters
            if c == STACK_SPILL and cur_scalar_spill and csp.var == (0, 0):
                continue
        elif o == STACK_SPILL and old_free_spill and scalar:
            continue
        return False
    return True


def linked_ids(old: VState, masks: tuple[tuple[int, int], ...]) -> set[int]:
    """Ids of the needed scalars of ``old``: every scalar sharing one is needed too (comparing
    one refines all).  Cached on the state for the masks it was computed with."""
    if old.linked_key == masks:
        return old.linked_ids
    linked = set()
    for depth, of in enumerate(old.frames):
        live, needed = masks[depth]
        for i in range(10):
            r = of.regs[i]
            if r.id and ((live & needed) >> i) & 1 and r.type == SCALAR:
                linked.add(r.id)
        for slot, r in of.spills.items():
            if r.id and r.type == SCALAR and _slot_needed(needed, slot):
                linked.add(r.id)
    old.linked_key, old.linked_ids = masks, linked
    return linked


def states_equal(old: VState, cur: VState, masks: tuple[tuple[int, int], ...], exact: bool,
                 privileged: bool) -> bool:
    """``masks``: (live, needed) bitmasks of each frame, outermost first."""
    if len(old.frames) != len(cur.frames):
        return False
    idmap = IdMap()
    linked = () if exact else linked_ids(old, masks)
    for depth, (of, cf) in enumerate(zip(old.frames, cur.frames, strict=False)):
        if of.callsite != cf.callsite:
            return False
        live, needed = masks[depth]
        oregs, cregs = of.regs, cf.regs
        for i in range(10):
            if not (live >> i) & 1:
                continue
            o, c = oregs[i], cregs[i]
            if o is c and not o.id and not o.ref_id:
                continue            # the same value
            if not regsafe(o, c, bool((needed >> i) & 1), idmap, exact, linked):
                return False
        if not stacksafe(of, cf, idmap, exact, privileged, needed, linked):
            return False
    if len(old.refs) != len(cur.refs):
        return False
    for (oid, _), (cid, _) in zip(old.refs, cur.refs, strict=False):
        if not idmap.check(oid, cid):
            return False
    return True
