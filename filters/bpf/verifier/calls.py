"""Calls and exits: helper calls checked against the helper table, bpf-to-bpf calls, references
released, and ``exit`` (``check_helper_call``, ``check_func_call``, ``check_return_code``).
"""

from typing import Any

from tracesim.filters.bpf.parts import Part
from tracesim.filters.bpf.runtime import helper_table as hp
from tracesim.filters.bpf.runtime.maps import BPF_F_RDONLY_PROG
from tracesim.filters.bpf.verifier import state as st
from tracesim.filters.bpf.verifier.log import Reject
from tracesim.filters.bpf.vm.isa import Insn

MAX_CALL_FRAMES = 8
ENOTSUPP = 524                       # the kernel-internal errno check_get_func_ip returns
TRAMPOLINE_ATTACH = ("fentry", "fexit", "fmod_ret")     # bpf_prog_has_trampoline
FUNC_ARG_HELPERS = (183, 184, 185)   # bpf_get_func_arg, _ret, _arg_cnt
GET_ATTACH_COOKIE = 174
GET_FUNC_IP = 173
S64_MIN, S64_MAX = -(1 << 63), (1 << 63) - 1
MAX_VAR_SIZ = 1 << 29
MAP_KEY_TYPES = (st.PTR_TO_STACK, st.PTR_TO_PACKET, st.PTR_TO_MAP_VALUE)
MAP_KEY_EXPECTED = "fp, pkt, pkt_meta, map_key, map_value"
MEM_TYPES = (st.PTR_TO_STACK, st.PTR_TO_PACKET, st.PTR_TO_MAP_VALUE, st.PTR_TO_MEM)
MEM_EXPECTED = "fp, pkt, pkt_meta, map_key, map_value, mem, ringbuf_mem, buf, trusted_ptr_"


class CallChecks(Part):
    """Methods of ``check.Walk`` (mixed into it); they use its state (``self.cur``, ``self.cfg``...)."""

    def _type_check(self, regno: int, reg: st.Reg, allowed, expected: str) -> None:
        if reg.type & st.MAYBE_NULL or reg.type & st.BASE not in allowed:
            raise Reject(f"R{regno} type={st.type_str(reg.type)} expected={expected}")

    def _tracing_proto(self, fid: int, proto: Any) -> Any:
        """tracing_prog_func_proto and check_get_func_ip for the expected attach type: the
        function-argument helpers need a trampoline (fentry, fexit, fmod_ret); the attach
        cookie a trampoline or a tp_btf link; bpf_get_func_ip a trampoline (-ENOTSUPP)."""
        trampoline = self.attach.split(".")[0] in TRAMPOLINE_ATTACH
        if fid in FUNC_ARG_HELPERS and not trampoline:
            return None
        if fid == GET_ATTACH_COOKIE and not trampoline and self.attach != "tp_btf":
            return None
        if fid == GET_FUNC_IP and not trampoline:
            raise Reject(f"func {hp.helper_name(fid)}#{fid} supported only for "
                         "fentry/fexit/fmod_ret programs", err=ENOTSUPP)
        return proto

    def do_helper_call(self, pc: int, insn: Insn) -> bool:
        """Check a helper call; True when it entered a callback (``self.pc`` set)."""
        fid = insn.imm
        if not 0 <= fid < hp.FUNC_MAX_ID:
            raise Reject(f"invalid func unknown#{fid}")
        proto = hp.helper_proto(fid, self.prog_type, self.priv)
        if proto is not None and self.prog_type == "tracing" and self.attach:
            proto = self._tracing_proto(fid, proto)
        if proto is None:
            raise Reject(f"program of this type cannot use helper {hp.helper_name(fid)}#{fid}")
        regs = self.state.cur.regs
        map_ = None
        mem_size = 0
        released = None
        callback = cb_ctx = None
        for k, kind in enumerate(proto.args):
            regno = k + 1
            reg = self.read_reg(regno)
            if kind == hp.ANYTHING:
                if self.is_pointer_value(reg):
                    raise Reject(f"R{regno} leaks addr into helper function")
            elif kind == hp.PERCPU_BTF_ID:
                if reg.type != st.PTR_TO_BTF_ID | st.MEM_PERCPU:
                    raise Reject(f"R{regno} type={st.type_str(reg.type)} expected=percpu_ptr_, "
                                 "percpu_rcu_ptr_, percpu_trusted_ptr_")
                mem_size = self._percpu_size(reg.mem_size)
            elif kind == hp.CONST_MAP_PTR:
                self._type_check(regno, reg, (st.CONST_PTR_TO_MAP,), "map_ptr")
                map_ = reg.map
                m = self.maps[map_]
                if not hp.map_compatible(fid, m.map_type):
                    raise Reject(f"cannot pass map_type {m.map_type} into func "
                                 f"{proto.name}#{fid}")
            elif kind in (hp.MAP_KEY, hp.MAP_VALUE, hp.UNINIT_MAP_VALUE):
                self._type_check(regno, reg, MAP_KEY_TYPES, MAP_KEY_EXPECTED)
                if map_ is None:
                    raise Reject("invalid map_ptr to access map->key")
                m = self.maps[map_]
                size = m.key_size if kind == hp.MAP_KEY else m.value_size
                self.helper_mem_access(regno, reg, size, kind == hp.UNINIT_MAP_VALUE, False)
            elif kind == hp.U64_OUT:
                self._type_check(regno, reg, MEM_TYPES, MEM_EXPECTED)
                self.helper_mem_access(regno, reg, 8, True, False)
            elif kind in (hp.MEM_OR_NULL, hp.UNINIT_MEM_OR_NULL):
                if not _is_null(reg):
                    self._type_check(regno, reg, MEM_TYPES, MEM_EXPECTED)
            elif kind == hp.CONST_STR:
                self._check_const_str(regno, reg)
            elif kind == hp.FUNC:
                if reg.type != st.PTR_TO_FUNC:
                    raise Reject(f"R{regno} type={st.type_str(reg.type)} expected=func")
                callback = reg.mem_size
            elif kind == hp.STACK_OR_NULL:
                if not _is_null(reg):
                    self._type_check(regno, reg, (st.PTR_TO_STACK,), "fp")
                cb_ctx = reg
            elif kind == hp.CTX:
                self._type_check(regno, reg, (st.PTR_TO_CTX,), "ctx")
                if reg.off:
                    raise Reject(f"dereference of modified ctx ptr R{regno} off={reg.off} "
                                 f"disallowed")
            elif kind in (hp.MEM, hp.UNINIT_MEM):
                self._type_check(regno, reg, MEM_TYPES, MEM_EXPECTED)
            elif kind in (hp.CONST_SIZE, hp.CONST_SIZE_OR_ZERO):
                if reg.type != st.SCALAR:
                    raise Reject(f"R{regno} type={st.type_str(reg.type)} expected=scalar")
                zero_ok = kind == hp.CONST_SIZE_OR_ZERO
                if reg.smin < 0:
                    raise Reject(f"R{regno} min value is negative, either use unsigned or "
                                 f"'var &= const'")
                if reg.umin == 0 and not zero_ok:
                    raise Reject(f"R{regno} invalid zero-sized read: "
                                 f"u64=[{reg.umin},{reg.umax}]")
                if reg.umax >= MAX_VAR_SIZ:
                    raise Reject(f"R{regno} unbounded memory access, use 'var &= const' or "
                                 f"'if (var < const)'")
                mem = regs[regno - 1]
                write = proto.args[k - 1] in (hp.UNINIT_MEM, hp.UNINIT_MEM_OR_NULL)
                if _is_null(mem) and proto.args[k - 1] in (hp.MEM_OR_NULL, hp.UNINIT_MEM_OR_NULL):
                    if reg.umax:
                        raise Reject(f"R{regno - 1} type=scalar expected={MEM_EXPECTED}")
                elif reg.umax or not zero_ok:
                    self.helper_mem_access(regno - 1, mem, reg.umax, write, zero_ok)
            elif kind == hp.CONST_ALLOC_SIZE_OR_ZERO:
                if reg.type != st.SCALAR or reg.var[1]:
                    raise Reject(f"R{regno} is not a known constant'")
                mem_size = reg.var[0]
            elif kind == hp.RINGBUF_MEM_RELEASE:
                if reg.type != st.PTR_TO_MEM | st.MEM_RINGBUF or not reg.ref_id:
                    raise Reject(f"R{regno} type={st.type_str(reg.type)} expected=ringbuf_mem")
                if reg.off or reg.var != (0, 0):
                    raise Reject(f"R{regno} must have zero offset when passed to release func "
                                 f"or trusted arg to kfunc")
                released = reg.ref_id
        if released is not None:
            self.release_reference(released)
        if callback is not None:
            self.enter_callback(pc, proto.callback, callback, map_, cb_ctx)
            return True
        for r in range(1, 6):
            regs[r] = st.Reg()
        self.check_write(0)
        if proto.ret == hp.RET_INTEGER:
            regs[0] = st.scalar_unknown()
        elif proto.ret == hp.RET_VOID:
            regs[0] = st.Reg()
        elif proto.ret == hp.RET_MAP_VALUE_OR_NULL and map_ in self.inner_of:
            regs[0] = st.pointer(st.PTR_TO_MAP_VALUE | st.MAYBE_NULL | st.INNER_MAP,
                                 map=self.inner_of[map_], id=self.new_id())
        elif proto.ret == hp.RET_MAP_VALUE_OR_NULL:
            regs[0] = st.pointer(st.PTR_TO_MAP_VALUE | st.MAYBE_NULL, map=map_, id=self.new_id())
        elif proto.ret == hp.RET_PERCPU_MEM_OR_NULL:     # the variable is no struct: memory
            regs[0] = st.pointer(st.PTR_TO_MEM | st.MEM_RDONLY | st.MAYBE_NULL,
                                 mem_size=mem_size, id=self.new_id())
        elif proto.ret == hp.RET_PERCPU_MEM:
            regs[0] = st.pointer(st.PTR_TO_MEM | st.MEM_RDONLY, mem_size=mem_size)
        else:
            self.new_id()           # the or-null id, then replaced by the reference's own
            ref = self.new_id()
            regs[0] = st.pointer(st.PTR_TO_MEM | st.MEM_RINGBUF | st.MAYBE_NULL,
                                 mem_size=mem_size, id=ref, ref_id=ref)
            self.state.refs.append((ref, pc))
        return False

    @staticmethod
    def _percpu_size(btf_id: int) -> int:
        """The size of a per-CPU variable's type (btf_resolve_size)."""
        from tracesim.filters.bpf.verifier.cfg import check_pseudo_btf_id
        return int(check_pseudo_btf_id(btf_id)[2])

    def _check_const_str(self, regno: int, reg: st.Reg) -> None:
        """ARG_PTR_TO_CONST_STR: a constant offset into a read-only map value, NUL inside."""
        self._type_check(regno, reg, (st.PTR_TO_MAP_VALUE,), "map_value")
        m = self.maps[reg.map]
        if not m.flags & BPF_F_RDONLY_PROG:
            raise Reject(f"R{regno} does not point to a readonly map'")
        if reg.var[1]:
            raise Reject(f"R{regno} is not a constant address'")
        off = reg.off + reg.var[0]
        self.helper_mem_access(regno, reg, 1, False, False)
        if b"\0" not in bytes(m.values[off:m.value_size]):
            raise Reject("string is not zero-terminated")

    def enter_callback(self, pc: int, kind: str, target: int, map_: int | None,
                       cb_ctx: st.Reg | None) -> None:
        """push_callback_call for a synchronous callback, called once: the path where the
        helper calls it no time continues after the call; this one enters the callback with
        the arguments the helper gives it (set_loop_callback_state,
        set_map_elem_callback_state) and comes back after the call when it returns."""
        frames = self.state.frames
        if len(frames) >= MAX_CALL_FRAMES:
            raise Reject(f"the call stack of {len(frames) + 1} frames is too deep !")
        caller = frames[-1]
        for r in range(1, 6):
            caller.regs[r] = st.Reg()
        caller.regs[0] = st.scalar_unknown()
        self.push(pc + 1, pc, self.state.copy())          # the helper made no call
        caller.regs[0] = st.Reg()
        callee = st.Frame(len(frames), pc, self.cfg.subprog_of[target])
        ctx = cb_ctx if cb_ctx is not None else st.scalar_const(0)
        if kind == "loop":
            callee.regs[1] = st.scalar_unknown()
            callee.regs[2] = ctx
        else:
            m = self.maps[map_]
            callee.regs[1] = st.pointer(st.CONST_PTR_TO_MAP, map=map_)
            callee.regs[2] = st.pointer(st.PTR_TO_MEM | st.MEM_RDONLY, mem_size=m.key_size)
            callee.regs[3] = st.pointer(st.PTR_TO_MAP_VALUE, map=map_)
            callee.regs[4] = ctx
        frames.append(callee)
        self.pc = target

    def release_reference(self, ref: int) -> None:
        self.state.refs = [(i, at) for i, at in self.state.refs if i != ref]
        for f in self.state.frames:
            for k, r in enumerate(f.regs):
                if r.ref_id == ref:
                    f.regs[k] = st.scalar_unknown() if self.priv else st.Reg()
            for slot, r in list(f.spills.items()):
                if r.ref_id == ref:
                    f.spills[slot] = st.scalar_unknown()

    # --- calls and exits -------------------------------------------------------------------------
    def do_subprog_call(self, pc: int, insn: Insn) -> None:
        frames = self.state.frames
        if len(frames) >= MAX_CALL_FRAMES:
            raise Reject(f"the call stack of {len(frames) + 1} frames is too deep !")
        target = pc + insn.imm + 1
        caller = frames[-1]
        callee = st.Frame(len(frames), pc, self.cfg.subprog_of[target])
        for r in range(1, 6):
            callee.regs[r] = caller.regs[r]
        for r in range(0, 6):
            caller.regs[r] = st.Reg()
        frames.append(callee)
        self.pc = target

    def do_exit(self, pc: int) -> bool:
        frames = self.state.frames
        r0 = self.read_reg(0)
        if len(frames) > 1:
            callee = frames[-1]
            if r0.type == st.PTR_TO_STACK and r0.frameno == callee.frameno:
                raise Reject("cannot return stack pointer to the caller frame")
            frames.pop()
            caller = frames[-1]
            if self.insns[callee.callsite].src == 0:       # a callback returns to its helper
                _check_callback_return(r0)
                r0 = st.scalar_unknown()
            caller.regs[0] = r0
            self.pc = callee.callsite + 1
            return False
        if self.state.refs:
            ref, at = self.state.refs[0]
            raise Reject(f"Unreleased reference id={ref} alloc_insn={at}")
        if self.is_pointer_value(r0):
            raise Reject("R0 leaks addr as return value")
        return True


def _is_null(reg: st.Reg) -> bool:
    return reg.type == st.SCALAR and reg.var == (0, 0)


def _check_callback_return(r0: st.Reg) -> None:
    """A bpf_loop / for_each_map_elem callback returns 0 (go on) or 1 (stop)."""
    if r0.type != st.SCALAR:
        raise Reject("R0 not a scalar value")
    if r0.smin < 0 or r0.smax > 1:
        known = (f" smin={r0.smin}" if r0.smin > S64_MIN else "") + \
            (f" smax={r0.smax}" if r0.smax < S64_MAX else "")
        raise Reject(f"At callback return the register R0 has{known or ' unknown scalar value'}"
                     f" should have been in [0, 1]")
