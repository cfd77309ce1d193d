"""Conditional jumps: branch taken or not, both sides refined, NULL checks on pointers
(``check_cond_jmp_op``, ``is_branch_taken``, ``mark_ptr_or_null_regs``).
"""


from tracesim.filters.bpf.parts import Part
from tracesim.filters.bpf.verifier import bounds
from tracesim.filters.bpf.verifier import state as st
from tracesim.filters.bpf.verifier.bounds import U32
from tracesim.filters.bpf.verifier.log import Reject
from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.isa import Insn


class BranchChecks(Part):
    """Methods of ``check.Walk`` (mixed into it); they use its state (``self.cur``, ``self.cfg``...)."""

    # --- conditional jumps -------------------------------------------------------------------------
    def do_cond_jmp(self, pc: int, insn: Insn) -> bool:
        code = insn.opcode & 0xF0
        is32 = insn.opcode & 7 == isa.JMP32
        x = insn.opcode & isa.X
        dst = self.read_reg(insn.dst)
        if x:
            src = self.read_reg(insn.src)
            if self.is_pointer_value(src):
                raise Reject(f"R{insn.src} pointer comparison prohibited")
        else:
            src = st.scalar_const(insn.imm & U32 if is32 else insn.imm)
        target = isa.jump_target(pc, insn)
        fall = pc + 1
        if dst.type == st.SCALAR and src.type == st.SCALAR:
            return self._scalar_branch(pc, insn, code, is32, target, fall)
        # a pointer takes part
        zero = src.type == st.SCALAR and src.var == (0, 0)
        if (not is32 and zero and code in (isa.JEQ, isa.JNE) and dst.type & st.MAYBE_NULL):
            other = self.state.copy()
            self.push(target, pc, other)
            # taken branch: JEQ -> null, JNE -> not null; fall-through the reverse
            self._mark_null(other, dst.id, is_null=code == isa.JEQ)
            self._mark_null(self.state, dst.id, is_null=code == isa.JNE)
            self.pc = fall
            return False
        if self.is_pointer_value(dst):
            raise Reject(f"R{insn.dst} pointer comparison prohibited")
        if (zero and not is32 and code in (isa.JEQ, isa.JNE) and dst.type > st.SCALAR
                and not dst.type & st.MAYBE_NULL):
            # a valid pointer is never NULL
            self.pc = fall if code == isa.JEQ else target
            return False
        self.push(target, pc, self.state.copy())
        self.pc = fall
        return False

    def _mark_null(self, state: st.VState, id_: int, is_null: bool) -> None:
        ref = 0
        for f in state.frames:
            for regs in (f.regs, f.spills):
                for k in (range(len(regs)) if isinstance(regs, list) else list(regs)):
                    r = regs[k]
                    if r.id != id_ or not r.type & st.MAYBE_NULL:
                        continue
                    if is_null:
                        ref = ref or r.ref_id
                        regs[k] = st.scalar_const(0)
                    else:
                        r = r.copy()
                        r.type &= ~st.MAYBE_NULL
                        if r.type & st.INNER_MAP:      # the inner map itself
                            r.type = st.CONST_PTR_TO_MAP
                        r.id = 0
                        regs[k] = r
        if is_null and ref:
            state.refs = [(i, at) for i, at in state.refs if i != ref]

    def _scalar_branch(self, pc, insn, code, is32, target, fall) -> bool:
        regs = self.state.cur.regs
        d, s = insn.dst, insn.src
        x = insn.opcode & isa.X
        a = regs[d]
        b = regs[s] if x else st.scalar_const(insn.imm & U32 if is32 else insn.imm)
        taken = bounds.branch_taken(a, b, code, is32)
        if taken != -1 and pc not in self.decided:
            self.decided.add(pc)
            self._reanalyse()
        if taken == 1:
            self.pc = target
            return False
        if taken == 0:
            self.pc = fall
            return False
        other = self.state.copy()
        ok_taken = self._refine(other, d, s if x else None, b, code, is32)
        ok_fall = self._refine(self.state, d, s if x else None, b, bounds.NEGATE[code], is32)
        if ok_taken:
            self.push(target, pc, other)
        if ok_fall:
            self.pc = fall
            return False
        return True

    def _refine(self, state: st.VState, d: int, s: int | None, imm_reg: st.Reg, op: int,
                is32: bool) -> bool:
        regs = state.cur.regs
        a = regs[d].copy()
        b = regs[s].copy() if s is not None else imm_reg.copy()
        if not bounds.refine(a, b, op, is32):
            return False
        regs[d] = a
        if s is not None:
            regs[s] = b
        for r, regno in ((a, d), (b, s)):
            if regno is not None and r.id:
                self._sync_linked(state, r)
        return True

    @staticmethod
    def _sync_linked(state: st.VState, src: st.Reg) -> None:
        for f in state.frames:
            for k, r in enumerate(f.regs):
                if r is not src and r.type == st.SCALAR and r.id == src.id:
                    f.regs[k] = src
            for slot, r in list(f.spills.items()):
                if r.type == st.SCALAR and r.id == src.id:
                    f.spills[slot] = src
