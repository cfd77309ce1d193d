"""The main walk (do_check): abstract interpretation of every path, instruction by instruction.

One ``Walk`` verifies one program.  Paths are explored depth first; at prune points the current
state is compared with states already proven safe there (``state.states_equal``) and the path stops
when one covers it.  Loops are explored iteration by iteration until the state repeats exactly
(``infinite loop detected``) or the complexity limit is hit.
"""
from __future__ import annotations

import operator
from typing import Any

from tracesim.filters.bpf.verifier import bounds, tnum
from tracesim.filters.bpf.verifier import state as st
from tracesim.filters.bpf.verifier.access import MAX_VAR_OFF, AccessChecks
from tracesim.filters.bpf.verifier.bounds import S64_MIN, U32
from tracesim.filters.bpf.verifier.branches import BranchChecks
from tracesim.filters.bpf.verifier.calls import CallChecks
from tracesim.filters.bpf.verifier.cfg import Cfg, is_pseudo_func
from tracesim.filters.bpf.verifier.context import ContextSpec
from tracesim.filters.bpf.verifier.liveness import ALL_SLOTS
from tracesim.filters.bpf.verifier.log import Reject, annotate, fmt_frame, fmt_state, insn_text
from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.analysis import is_pseudo_call
from tracesim.filters.bpf.vm.isa import Insn

COMPLEXITY_LIMIT_INSNS = 1_000_000
COMPLEXITY_LIMIT_JMP_SEQ = 8192
# Checkpoints in progress at one insn before loop iterations get them only every 20 jumps or
# 100 insns.  Below this, each iteration keeps its own: the branches it leaves behind prune
# against them as soon as they are explored (nested loops over unknown offsets need that).
LOOP_STATES_PER_INSN = 64

ALU_STRING = {isa.ADD: "+=", isa.SUB: "-=", isa.MUL: "*=", isa.DIV: "/=", isa.OR: "|=",
              isa.AND: "&=", isa.LSH: "<<=", isa.RSH: ">>=", isa.NEG: "neg", isa.MOD: "%=",
              isa.XOR: "^=", isa.MOV: "=", isa.ARSH: "s>>=", isa.END: "endian"}


class Walk(AccessChecks, CallChecks, BranchChecks):
    def __init__(self, cfg: Cfg, live: list[int], needed: list[int], prog_type: str,
                 ctx: ContextSpec, maps: list, privileged: bool, log_level: int) -> None:
        self.cfg = cfg
        self.prev_pc = -1
        self.insns: list[Insn] = cfg.insns
        self.live = live
        self.needed = needed
        self.prog_type = prog_type
        self.attach = ""               # a tracing program's expected attach type (verify())
        self.ctx = ctx
        # a map of maps' inner template gets an index after the program's maps
        self.maps = list(maps)
        self.inner_of: dict[int, int] = {}
        for i, m in enumerate(maps):
            inner = getattr(m, "inner", None)
            if inner is not None:
                self.inner_of[i] = len(self.maps)
                self.maps.append(inner)
        self.priv = privileged
        self.log_level = log_level
        self.log: list = []              # str lines, or int pcs to print as instruction lines
        self.id_gen = 0
        self.explored: dict[int, list[st.VState]] = {}
        self.on_path: dict[int, dict[int, list[st.VState]]] = {}   # by fingerprint
        self.decided: set[int] = set()      # conditional jumps seen decided by a scalar value
        self.reanalyse = lambda decided, seen: (live, needed)
        self.top_based: frozenset[int] = frozenset()    # loads through unplaced stack pointers
        self.loads_seen: dict[int, int] = {}      # of those, the slots read at a fixed offset
        self.pending: dict[int, int] = {}     # states per insn with paths still in progress
        self._mask1: dict[int, tuple] = {}    # pc -> (masks, live regs) of one-frame states
        self.stack: list = []
        self.complexity_limit = COMPLEXITY_LIMIT_INSNS
        self.insn_processed = 0
        self.jmps_processed = 0
        self.prev_jmps = 0
        self.prev_insns = 0
        self.total_states = 0
        self.cur_states = 0
        self.peak_states = 0
        self.max_states_per_insn = 0
        self.stack_depth = [0] * len(cfg.subprog_starts)
        self.scratched: set[int] = set()
        self.scratched_slots: set[int] = set()
        self.state: st.VState
        self.pc = 0

    # --- driver ------------------------------------------------------------------------------
    def new_id(self) -> int:
        self.id_gen += 1
        return self.id_gen

    def initial_state(self) -> st.VState:
        f = st.Frame(0, -1, 0)
        if self.ctx.is_memory:
            f.regs[1] = st.pointer(st.PTR_TO_MEM, mem_size=self.ctx.size)
            f.regs[2] = st.scalar_const(self.ctx.size)
        else:
            f.regs[1] = st.pointer(st.PTR_TO_CTX)
        return st.VState([f])

    def run(self) -> None:
        if self.log_level >= 2:
            for k, s in enumerate(self.cfg.subprog_starts):
                self.log.append(f"func#{k} @{s}")
        self.state = self.initial_state()
        self.state.branches = 1
        self.pc = 0
        self.scratched = {1, 2, 10} if self.ctx.is_memory else {1, 10}
        if self.log_level >= 2:
            self._run_verbose()
        else:
            self._run_fast()

    def _run_verbose(self) -> None:
        """The walk with the level-2 log: every state change printed next to its insn."""
        print_state = False
        while True:
            self.insn_processed += 1
            if self.insn_processed > self.complexity_limit:
                raise Reject(f"BPF program is too large. Processed {self.insn_processed} insn")
            pc = self.pc
            if pc in self.cfg.prune_points and self.is_state_visited(pc):
                self.log.append(f"{pc}: safe")
                if not self.pop():
                    return
                print_state = True
                continue
            if print_state:
                self.log.append(f"from {self.prev_pc} to {pc}:" + fmt_state(self.state,
                                                                             self.maps))
            elif self.scratched:
                self.log.append(f"{pc}:" + self._scratched_text())
            print_state = False
            self.scratched = set()
            self.scratched_slots = set()
            self.log.append(pc)
            self.prev_pc = pc
            ended = self.step(pc)
            if (self.scratched or self.scratched_slots) and not ended:
                line = f"{pc}: " + insn_text(self.insns, pc)
                self.log[-1] = annotate(line, self._scratched_text())
                self.scratched = set()
                self.scratched_slots = set()
            if ended:
                if not self.pop():
                    return
                print_state = True

    def _run_fast(self) -> None:
        """The walk at log level 0 or 1 (the loader's): ``step`` and ``is_state_visited`` with
        their most frequent cases done inline, from locals.

        * Scalar ALU, moves and jumps run from a pre-decoded table (``_decode``), with the
          results ``step`` gives them but without its calls and the checks that cannot fail
          there; anything else goes to ``step``.  Constant results are new registers made
          directly (``state.make_const``): stored registers are never changed in place.
        * At a prune point where states of the current path are pending and nothing else can
          happen (one frame, no explored state to prune against, no checkpoint due), only the
          exact-repeat lookup of ``is_state_visited`` is needed: it is done here (the
          fingerprint as ``state.fingerprint`` computes it), and the method is called for
          everything else.
        ``pc``, the processed counts and the current registers live in locals, written back
        before any call that reads them."""
        table = _decode(self.insns)
        prune = self.cfg.prune_points
        log = self.log
        logging = self.log_level == 1
        limit = self.complexity_limit
        decided = self.decided
        explored = self.explored
        pending = self.pending
        on_path = self.on_path
        mask1 = self._mask1
        loop_states = LOOP_STATES_PER_INSN
        reg_fk = st.reg_fk
        make_const = st.make_const
        alu = bounds.alu
        SCALAR = st.SCALAR
        NOT_INIT = st.NOT_INIT
        n = self.insn_processed
        jmps = self.jmps_processed
        prev_jmps, prev_insns = self.prev_jmps, self.prev_insns
        pc = self.pc
        cur = self.state
        regs = cur.frames[-1].regs
        while True:
            n += 1
            if n > limit:
                self.insn_processed = n
                raise Reject(f"BPF program is too large. Processed {n} insn")
            if pc in prune:
                pend = pending.get(pc)
                sj = jmps - prev_jmps
                si = n - prev_insns
                if pend:
                    quick = False
                    if (sj < 2 or si < 8 or pend >= loop_states and sj < 20 and si < 100) \
                            and not explored.get(pc):
                        m = mask1.get(pc)
                        frames = cur.frames
                        if m is not None and len(frames) == 1:
                            f = frames[0]
                            fregs = f.regs
                            live = m[1]
                            if len(live) == 1 and not f.spills:
                                r = fregs[live[0]]
                                k = r.fk
                                fp = hash((len(cur.refs), f.callsite, f.stack,
                                           k if k is not None else reg_fk(r)))
                            else:
                                out = [len(cur.refs), f.callsite, f.stack]
                                for i in live:
                                    r = fregs[i]
                                    k = r.fk
                                    out.append(k if k is not None else reg_fk(r))
                                if f.spills:
                                    out.append(st.spills_digest(f.spills))
                                fp = hash(tuple(out))
                            quick = on_path[pc].get(fp) is None
                else:
                    quick = (sj < 2 or si < 8) and not explored.get(pc)
                if not quick:
                    self.insn_processed = n
                    self.jmps_processed = jmps
                    self.pc = pc
                    visited = self.is_state_visited(pc)
                    prev_jmps, prev_insns = self.prev_jmps, self.prev_insns
                    if visited:
                        if logging:
                            log.append(f"{pc}: safe")
                        if not self.pop():
                            return
                        pc = self.pc
                        cur = self.state
                        regs = cur.frames[-1].regs
                        continue
            if logging:
                log.append(pc)
            e = table[pc]
            kind = e[0]
            if kind == _F_ALU:
                _, d, s, k, op, is64, signed, mask = e
                dst = regs[d]
                src = k if s < 0 else regs[s]
                if dst.type == SCALAR and src.type == SCALAR:
                    if dst.var[1] or src.var[1]:
                        dst = dst.copy()
                        dst.id = 0
                        alu(dst, src, op, is64, signed)
                        regs[d] = dst
                    elif op == _ADD:
                        regs[d] = make_const((dst.var[0] + src.var[0]) & mask)
                    else:
                        regs[d] = make_const(_fold(op, dst.var[0], src.var[0], is64, signed))
                    pc += 1
                    continue
            elif kind == _F_JCOND:
                _, d, s, k, cmp, mask, flip, target = e
                a = regs[d]
                b = k if s < 0 else regs[s]
                if a.type == SCALAR and b.type == SCALAR:
                    jmps += 1
                    if not a.var[1] and not b.var[1] and pc in decided:
                        pc = target if cmp((a.var[0] & mask) ^ flip, (b.var[0] & mask) ^ flip) \
                            else pc + 1
                        continue
                    self.insn_processed = n
                    self.jmps_processed = jmps
                    self.pc = pc
                    insn = self.insns[pc]
                    if self._scalar_branch(pc, insn, insn.opcode & 0xF0,
                                           insn.opcode & 7 == isa.JMP32, target, pc + 1):
                        if not self.pop():
                            return
                    pc = self.pc
                    cur = self.state
                    regs = cur.frames[-1].regs
                    continue
            elif kind == _F_MOVK:
                regs[e[1]] = e[2]
                pc += 1
                continue
            elif kind == _F_MOVX:
                src = regs[e[2]]
                t = src.type
                if t != SCALAR and t != NOT_INIT or t == SCALAR and (src.id or not src.var[1]):
                    regs[e[1]] = src
                    pc += 1
                    continue
            elif kind == _F_JA:
                jmps += 1
                pc = e[1]
                continue
            self.insn_processed = n
            self.jmps_processed = jmps
            self.pc = pc
            self.prev_pc = pc
            ended = self.step(pc)
            jmps = self.jmps_processed
            if ended and not self.pop():
                return
            pc = self.pc
            cur = self.state
            regs = cur.frames[-1].regs

    def _scratched_text(self) -> str:
        f = self.state.cur
        slots = self.scratched_slots if self.log_level >= 2 else set()
        return fmt_frame(f, self.maps, self.scratched, slots)

    def pop(self) -> bool:
        """The current path is done: release its branch counts and resume a pushed one."""
        s = self.state.parent
        while s is not None:
            s.branches -= 1
            if s.branches:
                break
            # every path through s is proven safe: it may now prune others
            self.pending[s.insn] -= 1
            self.on_path[s.insn][s.fp].remove(s)
            self.explored.setdefault(s.insn, []).append(s)
            s = s.parent
        if not self.stack:
            return False
        state, pc, prev, log_pos = self.stack.pop()
        if self.log_level == 1:
            del self.log[log_pos:]
        self.state, self.pc, self.prev_pc = state, pc, prev
        return True

    def push(self, pc: int, prev: int, state: st.VState) -> None:
        if state.parent is not None:
            state.parent.branches += 1
        self.stack.append((state, pc, prev, len(self.log)))
        if len(self.stack) > COMPLEXITY_LIMIT_JMP_SEQ:
            raise Reject(f"The sequence of {len(self.stack)} jumps is too complex.")

    def _reanalyse(self) -> None:
        """Liveness again, after ``decided`` or ``loads_seen`` grew (masks cached from the old
        one go)."""
        self.live, self.needed = self.reanalyse(frozenset(self.decided), self.loads_seen)
        self._mask1.clear()

    # --- pruning --------------------------------------------------------------------------------
    def _masks(self, cur: st.VState, pc: int) -> tuple[tuple[int, int], ...]:
        """(live, needed) of each frame of ``cur`` at ``pc``: a caller frame resumes after its
        call with r6-r9 and every stack slot of its own."""
        frames = cur.frames
        out = []
        for depth in range(len(frames) - 1):
            after = frames[depth + 1].callsite + 1
            out.append((self.live[after] & 0x3C0, (self.needed[after] & 0x3C0) | ALL_SLOTS))
        out.append((self.live[pc], self.needed[pc]))
        return tuple(out)

    def is_state_visited(self, pc: int) -> bool:
        sls = self.explored.get(pc)
        pending = self.pending.get(pc, 0)
        since_jmps = self.jmps_processed - self.prev_jmps
        since_insns = self.insn_processed - self.prev_insns
        add = since_jmps >= 2 and since_insns >= 8
        if not (sls or pending or add):
            return False
        cur = self.state
        if len(cur.frames) == 1:
            m = self._mask1.get(pc)
            if m is None:
                live = self.live[pc]
                m = self._mask1[pc] = (((live, self.needed[pc]),), st.LIVE_REGS[live & 0x3FF])
            masks = m[0]
        else:
            masks = self._masks(cur, pc)
        cur_fp = None
        if pending:
            # a state of the current path repeats exactly: a loop that makes no progress
            cur_fp = st.fingerprint(cur, masks)
            same = self.on_path[pc].get(cur_fp)
            if same:
                for sl in same:
                    if st.states_equal(sl, cur, masks, True, self.priv):
                        raise Reject(f"infinite loop detected at insn {pc}",
                                     "cur state:" + fmt_state(cur, self.maps),
                                     "old state:" + fmt_state(sl, self.maps))
            if pending >= LOOP_STATES_PER_INSN and since_jmps < 20 and since_insns < 100:
                # a long loop: checkpoints of every iteration would only cost memory (the
                # kernel always spaces them so inside loops)
                add = False
        kept = 0
        if sls:
            keep = []
            pruned = False
            for sl in sls:
                if pruned:
                    keep.append(sl)
                    continue
                if st.states_equal(sl, cur, masks, False, self.priv):
                    sl.hits += 1
                    pruned = True
                    keep.append(sl)
                    continue
                sl.misses += 1
                if sl.misses > sl.hits * 3 + 3 and len(sls) > 4:
                    self.cur_states -= 1     # rarely useful: forget it (kernel's miss heuristic)
                    continue
                keep.append(sl)
            self.explored[pc] = keep
            if pruned:
                return True
            kept = len(keep)
        if not add:
            return False
        new = cur.copy()
        new.branches = 1
        new.insn = pc
        new.fp = cur_fp if cur_fp is not None else st.fingerprint(cur, masks)
        self.on_path.setdefault(pc, {}).setdefault(new.fp, []).append(new)
        new.parent = cur.parent
        cur.parent = new
        self.pending[pc] = pending + 1
        self.total_states += 1
        self.cur_states += 1
        self.peak_states = max(self.peak_states, self.cur_states)
        self.max_states_per_insn = max(self.max_states_per_insn, kept + pending + 1)
        self.prev_jmps = self.jmps_processed
        self.prev_insns = self.insn_processed
        return False

    # --- registers --------------------------------------------------------------------------
    def read_reg(self, regno: int) -> st.Reg:
        if regno > 10:
            raise Reject(f"R{regno} is invalid")
        r = self.state.cur.regs[regno]
        self.scratched.add(regno)
        if r.type == st.NOT_INIT:
            raise Reject(f"R{regno} !read_ok")
        return r

    def check_write(self, regno: int) -> None:
        if regno > 10:
            raise Reject(f"R{regno} is invalid")
        if regno == 10:
            raise Reject("frame pointer is read only")
        self.scratched.add(regno)

    def set_reg(self, regno: int, r: st.Reg) -> None:
        self.state.cur.regs[regno] = r

    def is_pointer_value(self, r: st.Reg) -> bool:
        """A pointer whose value must not leak: only unprivileged loaders care."""
        return not self.priv and r.type > st.SCALAR

    # --- one instruction -------------------------------------------------------------------------
    def step(self, pc: int) -> bool:
        """Execute insn ``pc`` on the current state; True when the path ended."""
        insn = self.insns[pc]
        cls = insn.opcode & 7
        if cls in (isa.ALU, isa.ALU64):
            self.do_alu(insn)
            self.pc = pc + 1
        elif cls == isa.LDX:
            self.do_load(insn)
            self.pc = pc + 1
        elif cls == isa.STX:
            if insn.opcode & 0xE0 == isa.ATOMIC:
                self.do_atomic(insn)
            else:
                self.do_store(insn, insn.src)
            self.pc = pc + 1
        elif cls == isa.ST:
            self.do_store(insn, None)
            self.pc = pc + 1
        elif cls == isa.LD:
            if insn.opcode == isa.LD_IMM64:
                self.do_ld_imm64(insn, self.insns[pc + 1])
                self.pc = pc + 2
            else:
                self.do_ld_abs(insn)
                self.pc = pc + 1
        else:
            self.jmps_processed += 1
            code = insn.opcode & 0xF0
            if code == isa.EXIT:
                return self.do_exit(pc)
            if code == isa.CALL:
                if is_pseudo_call(insn):
                    self.do_subprog_call(pc, insn)
                elif not self.do_helper_call(pc, insn):     # True: a callback was entered
                    self.pc = pc + 1
            elif code == isa.JA:
                self.pc = isa.jump_target(pc, insn)
            else:
                return self.do_cond_jmp(pc, insn)
        return False

    # --- ALU ---------------------------------------------------------------------------------------
    def do_alu(self, insn: Insn) -> None:
        is64 = insn.opcode & 7 == isa.ALU64
        code = insn.opcode & 0xF0
        x = insn.opcode & isa.X
        regs = self.state.cur.regs
        d = insn.dst
        if code in (isa.NEG, isa.END):
            dst = self.read_reg(d)
            self.check_write(d)
            if dst.type != st.SCALAR:
                if self.is_pointer_value(dst):
                    raise Reject(f"R{d} pointer arithmetic prohibited")
                dst = st.scalar_unknown()
            else:
                dst = dst.copy()
            dst.id = 0
            if code == isa.NEG:
                bounds.neg(dst, is64)
            else:
                bounds.byteswap(dst, insn.imm, bool(x), is64)
            regs[d] = dst
            return
        if code == isa.MOV:
            if x:
                src = self.read_reg(insn.src)
                self.check_write(d)
                if insn.off == 0 and is64:
                    if src.type == st.SCALAR and not src.id and src.var[1]:
                        src = src.copy()
                        src.id = self.new_id()
                        regs[insn.src] = src
                    regs[d] = src
                    return
                if src.type != st.SCALAR:
                    if self.is_pointer_value(src):
                        raise Reject(f"R{insn.src} sign-extension part of pointer" if insn.off
                                     else f"R{insn.src} partial copy of pointer")
                    r = st.scalar_unknown()
                    if not is64:
                        bounds.zext(r)
                    regs[d] = r
                    return
                r = st.scalar_unknown()
                if insn.off:
                    bounds.movsx(r, src, insn.off, is64)
                else:
                    bounds.copy_scalar(r, src)
                    bounds.zext(r)
                regs[d] = r
                return
            self.check_write(d)
            regs[d] = st.scalar_const(insn.imm if is64 else insn.imm & U32)
            return
        dst = self.read_reg(d)
        if x:
            src = self.read_reg(insn.src)
        else:
            src = st.scalar_const(insn.imm)
        self.check_write(d)
        if dst.type != st.SCALAR or src.type != st.SCALAR:
            regs[d] = self.pointer_alu(insn, dst, src, code, is64)
            return
        dst = dst.copy()
        dst.id = 0
        bounds.alu(dst, src, code, is64, signed_divmod=insn.off == 1)
        regs[d] = dst

    def pointer_alu(self, insn: Insn, dst: st.Reg, src: st.Reg, code: int, is64: bool) -> st.Reg:
        d = insn.dst
        if dst.type != st.SCALAR and src.type != st.SCALAR:
            if code == isa.SUB and self.priv:
                return st.scalar_unknown()
            raise Reject(f"R{d} pointer {ALU_STRING[code]} pointer prohibited")
        if not is64:
            if code == isa.SUB and self.priv:
                return st.scalar_unknown()
            raise Reject(f"R{d} 32-bit pointer arithmetic prohibited")
        if dst.type == st.SCALAR:
            if code == isa.SUB:
                raise Reject(f"R{d} tried to subtract pointer from scalar")
            ptr, off = src, dst
        else:
            ptr, off = dst, src
        tname = st.type_str(ptr.type)
        if ptr.type & st.MAYBE_NULL:
            raise Reject(f"R{d} pointer arithmetic on {tname} prohibited, null-check it first")
        base = ptr.type & st.BASE
        if base in (st.CONST_PTR_TO_MAP, st.PTR_TO_PACKET_END, st.PTR_TO_SOCK_COMMON,
                    st.PTR_TO_FUNC):
            raise Reject(f"R{d} pointer arithmetic on {tname} prohibited")
        if code in (isa.AND, isa.OR, isa.XOR):
            raise Reject(f"R{d} bitwise operator {ALU_STRING[code]} on pointer prohibited")
        if code not in (isa.ADD, isa.SUB):
            raise Reject(f"R{d} pointer arithmetic with {ALU_STRING[code]} operator prohibited")
        if code == isa.SUB and base == st.PTR_TO_STACK and not off.is_const():
            raise Reject(f"R{d} subtraction from stack pointer prohibited")
        known = off.var[1] == 0
        val = bounds.s64(off.var[0])
        if known and not -MAX_VAR_OFF < val < MAX_VAR_OFF:
            raise Reject(f"math between {tname} pointer and {val} is not allowed")
        if off.smin == S64_MIN:
            raise Reject(f"math between {tname} pointer and register with unbounded min value "
                         f"is not allowed")
        if not -MAX_VAR_OFF < off.smin < MAX_VAR_OFF:
            raise Reject(f"value {off.smin} makes {tname} pointer be out of bounds")
        res = ptr.copy()
        if known:
            res.off = ptr.off + val if code == isa.ADD else ptr.off - val
            if not -MAX_VAR_OFF < res.off < MAX_VAR_OFF:
                raise Reject(f"{tname} pointer offset {res.off} is not allowed")
        else:
            tmp = ptr.copy()
            bounds.alu(tmp, off, code, True)
            res.var = tmp.var
            bounds.copy_scalar(res, tmp)
        if not self.priv:
            self.unpriv_ptr_checks(d, res)
        return res

    def unpriv_ptr_checks(self, d: int, r: st.Reg) -> None:
        base = r.type & st.BASE
        if base == st.PTR_TO_STACK:
            if r.var[1]:
                raise Reject(f"R{d} variable stack access prohibited for !root, "
                             f"var_off={tnum.tstr(r.var)} off={r.off}")
            if not -st.STACK_SIZE <= r.off + bounds.s64(r.var[0]) < 0:
                raise Reject(f"R{d} stack pointer arithmetic goes out of range, prohibited for "
                             f"!root; off={r.off}")
        elif base == st.PTR_TO_MAP_VALUE:
            vs = self.maps[r.map].value_size
            if r.smin + r.off < 0 or r.umax + r.off > vs:
                raise Reject(f"R{d} pointer arithmetic of map value goes out of range, "
                             f"prohibited for !root")

    # --- LD_IMM64 and legacy packet loads ----------------------------------------------------------
    def do_ld_imm64(self, insn: Insn, second: Insn) -> None:
        self.check_write(insn.dst)
        if insn.src == 0:
            self.set_reg(insn.dst, st.scalar_const(isa.imm64(insn, second)))
        elif insn.src == isa.PSEUDO_MAP_FD:
            self.set_reg(insn.dst, st.pointer(st.CONST_PTR_TO_MAP, map=insn.imm))
        elif insn.src == isa.PSEUDO_FUNC:      # a callback: mem_size holds its first insn
            self.set_reg(insn.dst, st.pointer(st.PTR_TO_FUNC, mem_size=self.pc + insn.imm + 1))
        elif insn.src == isa.PSEUDO_BTF_ID:    # a per-CPU variable: mem_size holds its BTF id
            self.set_reg(insn.dst, st.pointer(st.PTR_TO_BTF_ID | st.MEM_PERCPU,
                                              mem_size=insn.imm))
        else:
            self.set_reg(insn.dst, st.pointer(st.PTR_TO_MAP_VALUE, map=insn.imm,
                                              off=second.imm & 0xFFFFFFFF))

    def do_ld_abs(self, insn: Insn) -> None:
        if self.prog_type != "socket_filter":
            raise Reject("BPF_LD_[ABS|IND] instructions not allowed for this program type")
        r6 = self.read_reg(6)
        if insn.opcode & 0xE0 == isa.IND:
            self.read_reg(insn.src)
        if r6.type != st.PTR_TO_CTX:
            raise Reject("at the time of BPF_LD_ABS|IND R6 != pointer to skb")
        if self.state.refs:
            raise Reject("BPF_LD_[ABS|IND] would lead to reference leak")
        regs = self.state.cur.regs
        for r in range(1, 6):
            regs[r] = st.Reg()
        self.check_write(0)
        regs[0] = st.scalar_unknown()


def combined_stack_check(cfg: Cfg, depths: list[int]) -> None:
    """check_max_stack_depth: frames of a call chain (callbacks' frames too) share 512 bytes,
    each rounded up to 32; a subprogram that tail-calls may be reached only while its callers'
    frames take less than 256 bytes (a tail call frees its own frame, not its callers')."""
    insns = cfg.insns
    calls: dict[int, list[int]] = {k: [] for k in range(len(cfg.subprog_starts))}
    tail_calling: set[int] = set()
    for i, insn in enumerate(insns):
        if i in cfg.second_half:
            continue
        if is_pseudo_call(insn) or is_pseudo_func(insn):     # a callee's or a callback's frame
            calls[cfg.subprog_of[i]].append(cfg.subprog_of[i + insn.imm + 1])
        elif insn.opcode == isa.OP_CALL and insn.src == 0 and insn.imm == TAIL_CALL_ID:
            tail_calling.add(cfg.subprog_of[i])

    def rounded(k: int) -> int:
        return -(-max(depths[k], 1) // 32) * 32

    # (subprogram, the depth of the frames before it, frames so far, the chain)
    stack: list[tuple[int, int, int, tuple[int, ...]]] = [(0, 0, 1, (0,))]
    while stack:
        k, before, nframes, chain = stack.pop()
        if k and k in tail_calling and before >= TAIL_CALL_STACK_LIMIT:
            raise Reject(f"tail_calls are not allowed when call stack of previous frames is "
                         f"{before} bytes. Too large")
        total = before + rounded(k)
        if total > st.STACK_SIZE:
            raise Reject(f"combined stack size of {nframes} calls is {total}. Too large")
        for callee in reversed(calls[k]):                # in instruction order
            if callee in chain:
                continue
            stack.append((callee, total, nframes + 1, chain + (callee,)))


TAIL_CALL_ID = 12                    # bpf_tail_call
TAIL_CALL_STACK_LIMIT = 256          # 33 tail calls then take at most 8 KiB of stack


# --- the fast path's pre-decoded instructions (Walk._run_fast) -----------------------------------
_F_SLOW, _F_MOVK, _F_MOVX, _F_ALU, _F_JCOND, _F_JA = range(6)
_ADD = isa.ADD
_FOLD_OPS = {isa.ADD: operator.add, isa.SUB: operator.sub, isa.MUL: operator.mul,
             isa.AND: operator.and_, isa.OR: operator.or_, isa.XOR: operator.xor}
_SHIFT_OPS = (isa.LSH, isa.RSH, isa.ARSH)
_CMP_OPS = {isa.JEQ: operator.eq, isa.JNE: operator.ne, isa.JGT: operator.gt,
            isa.JGE: operator.ge, isa.JLT: operator.lt, isa.JLE: operator.le,
            isa.JSGT: operator.gt, isa.JSGE: operator.ge, isa.JSLT: operator.lt,
            isa.JSLE: operator.le, isa.JSET: operator.and_}
_SIGNED_CMP = (isa.JSGT, isa.JSGE, isa.JSLT, isa.JSLE)


def _fold(op: int, a: int, b: int, is64: bool, signed: bool) -> int:
    """``a op b`` on two constants, as ``bounds.alu`` computes it."""
    f = _FOLD_OPS.get(op)
    if f is not None:
        return f(a, b) & (bounds.U64 if is64 else U32)
    bits = 64 if is64 else 32
    if op in _SHIFT_OPS:
        return bounds.shift_const(op, a, b, bits)
    return bounds.const_result(op, a, b, bits, signed)


def _decode(insns: list[Insn]) -> list[tuple]:
    """One tuple per slot for the fast path; ``(_F_SLOW,)`` leaves the insn to ``Walk.step``.
    Only instructions whose every check is visible here are decoded: register numbers in range,
    no write to r10; the operands' types are checked when the insn runs."""
    slow: tuple[Any, ...] = (_F_SLOW,)
    out: list[tuple] = []
    for pc, insn in enumerate(insns):
        op = insn.opcode
        cls = op & 7
        code = op & 0xF0
        x = op & isa.X
        d, s = insn.dst, insn.src
        entry = slow
        if cls in (isa.ALU, isa.ALU64) and d < 10 and (not x or s <= 10):
            is64 = cls == isa.ALU64
            if code == isa.MOV:
                if not x:
                    entry = (_F_MOVK, d, st.const_reg(insn.imm if is64 else insn.imm & U32))
                elif is64 and insn.off == 0:
                    entry = (_F_MOVX, d, s)
            elif code in _FOLD_OPS or code in _SHIFT_OPS or code in (isa.DIV, isa.MOD):
                k = None if x else st.const_reg(insn.imm)
                entry = (_F_ALU, d, s if x else -1, k, code, is64, insn.off == 1,
                         bounds.U64 if is64 else U32)
        elif cls in (isa.JMP, isa.JMP32) and code in _CMP_OPS and d <= 10 and (not x or s <= 10):
            is32 = cls == isa.JMP32
            k = None if x else st.const_reg(insn.imm & U32 if is32 else insn.imm)
            flip = (1 << 31 if is32 else 1 << 63) if code in _SIGNED_CMP else 0
            entry = (_F_JCOND, d, s if x else -1, k, _CMP_OPS[code],
                     U32 if is32 else bounds.U64, flip, isa.jump_target(pc, insn))
        elif op == isa.OP_JA:
            entry = (_F_JA, isa.jump_target(pc, insn))
        out.append(entry)
    return out
