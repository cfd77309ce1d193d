"""Memory access: loads, stores and atomics through every pointer type, the stack, the context
and the buffers helpers read or write (``check_mem_access``, ``check_stack_*`` in verifier.c).
"""


from tracesim.filters.bpf.parts import Part
from tracesim.filters.bpf.verifier import bounds, tnum
from tracesim.filters.bpf.verifier import state as st
from tracesim.filters.bpf.verifier.bounds import S64_MIN
from tracesim.filters.bpf.verifier.context import SCALAR as CTX_SCALAR
from tracesim.filters.bpf.verifier.liveness import slot_bits
from tracesim.filters.bpf.verifier.log import Reject
from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.isa import Insn

MAX_VAR_OFF = 1 << 29


class AccessChecks(Part):
    """Methods of ``check.Walk`` (mixed into it); they use its state (``self.cur``, ``self.cfg``...)."""

    # --- memory ------------------------------------------------------------------------------------
    def do_load(self, insn: Insn) -> None:
        base = self.read_reg(insn.src)
        self.check_write(insn.dst)
        size = isa.SIZE_BYTES[insn.opcode & 0x18]
        sx = insn.opcode & 0xE0 == isa.MEMSX
        val = self.mem_access(insn.src, base, insn.off, size, write=False, value=None, sx=sx)
        self.set_reg(insn.dst, val)

    def do_store(self, insn: Insn, value_regno: int | None) -> None:
        size = isa.SIZE_BYTES[insn.opcode & 0x18]
        if value_regno is not None:
            value = self.read_reg(value_regno)
        else:
            value = st.scalar_const(insn.imm)
        base = self.read_reg(insn.dst)
        if value_regno is None and base.type & st.BASE == st.PTR_TO_CTX:
            raise Reject(f"BPF_ST stores into R{insn.dst} {st.type_str(base.type)} is not allowed")
        self.mem_access(insn.dst, base, insn.off, size, write=True, value=value,
                        value_regno=value_regno)

    def do_atomic(self, insn: Insn) -> None:
        size = isa.SIZE_BYTES[insn.opcode & 0x18]
        if size not in (4, 8):
            raise Reject("invalid atomic operand size")
        src = self.read_reg(insn.src)
        base = self.read_reg(insn.dst)
        if insn.imm == isa.CMPXCHG:
            r0 = self.read_reg(0)
            if self.is_pointer_value(r0):
                raise Reject("R0 leaks addr into mem")
        if self.is_pointer_value(src):
            raise Reject(f"R{insn.src} leaks addr into mem")
        if base.type & st.BASE in (st.PTR_TO_CTX, st.PTR_TO_PACKET, st.PTR_TO_SOCK_COMMON):
            raise Reject(f"BPF_ATOMIC stores into R{insn.dst} {st.type_str(base.type)} "
                         f"is not allowed")
        loaded = self.mem_access(insn.dst, base, insn.off, size, write=False, value=None)
        self.mem_access(insn.dst, base, insn.off, size, write=True, value=st.scalar_unknown())
        if insn.imm == isa.CMPXCHG:
            self.set_reg(0, loaded)
            self.scratched.add(0)
        elif insn.imm & isa.FETCH:
            if self.is_pointer_value(loaded):
                raise Reject(f"R{insn.src} leaks addr into mem")
            self.check_write(insn.src)
            self.set_reg(insn.src, loaded)

    def mem_access(self, regno: int, reg: st.Reg, off: int, size: int, write: bool,
                   value: st.Reg | None, sx: bool = False,
                   value_regno: int | None = None) -> st.Reg:
        """check_mem_access: returns the loaded value (reads) or the stored one (writes)."""
        t = reg.type
        base = t & st.BASE
        if t & st.MAYBE_NULL or base in (st.SCALAR, st.NOT_INIT, st.CONST_PTR_TO_MAP,
                                           st.PTR_TO_PACKET_END, st.PTR_TO_SOCK_COMMON):
            raise Reject(f"R{regno} invalid mem access '{st.type_str(t)}'")
        if write and value is not None and value.type > st.SCALAR and not self.priv:
            where = {st.PTR_TO_MAP_VALUE: "map", st.PTR_TO_CTX: "ctx"}.get(base, "mem")
            if base != st.PTR_TO_STACK:
                raise Reject(f"R{value_regno} leaks addr into {where}")
        if base == st.PTR_TO_STACK:
            self.check_stack_alignment(reg, off, size)
            if write:
                self.stack_write(regno, reg, off, size, value, value_regno)
                return value
            return self.stack_read(regno, reg, off, size, sx)
        if base == st.PTR_TO_CTX:
            return self.ctx_access(regno, reg, off, size, write, sx)
        if base == st.PTR_TO_MAP_VALUE:
            m = self.maps[reg.map]
            self.mem_region_access(regno, reg, off, size, m.value_size, "map value")
            return value if write else self.loaded_scalar(size, sx)
        if base == st.PTR_TO_MEM:
            if write and t & st.MEM_RDONLY:
                raise Reject(f"R{regno} cannot write into {st.type_str(t)}")
            self.mem_region_access(regno, reg, off, size, reg.mem_size, "memory")
            return value if write else self.loaded_scalar(size, sx)
        if base == st.PTR_TO_BTF_ID and t & st.MEM_PERCPU and not t & st.MAYBE_NULL:
            from tracesim.filters.bpf.verifier.cfg import check_pseudo_btf_id
            tname = check_pseudo_btf_id(reg.mem_size)[1]
            raise Reject(f"R{regno} is ptr_{tname} access percpu memory: off={reg.off + off}")
        raise Reject(f"R{regno} invalid mem access '{st.type_str(t)}'")

    @staticmethod
    def loaded_scalar(size: int, sx: bool) -> st.Reg:
        r = st.scalar_unknown()
        if size < 8:
            if sx:
                half = 1 << (size * 8 - 1)
                bounds.mark_signed_range(r, -half, half - 1)
            else:
                bounds.mark_unsigned_max(r, (1 << (size * 8)) - 1)
        return r

    def mem_region_access(self, regno: int, reg: st.Reg, off: int, size: int, mem_size: int,
                          what: str, zero_size_ok: bool = False) -> None:
        """check_mem_region_access: [reg + off, +size) inside [0, mem_size) for every value."""
        off += reg.off

        def fail_fixed(o: int) -> str:
            if what == "map value":
                return f"invalid access to map value, value_size={mem_size} off={o} size={size}"
            return f"invalid access to memory, mem_size={mem_size} off={o} size={size}"

        def bad(o: int) -> bool:
            return o < 0 or (size == 0 and not zero_size_ok) or o + size > mem_size
        if reg.smin < 0 and (reg.smin == S64_MIN or reg.smin + off < 0
                             or not -(1 << 31) <= off + reg.smin < (1 << 31)):
            raise Reject(f"R{regno} min value is negative, either use unsigned index or do a "
                         f"if (index >=0) check.")
        if bad(reg.smin + off):
            raise Reject(fail_fixed(reg.smin + off),
                         f"R{regno} min value is outside of the allowed memory range")
        if reg.umax >= MAX_VAR_OFF:
            raise Reject(f"R{regno} unbounded memory access, make sure to bounds check any "
                         f"such access")
        if bad(reg.umax + off):
            raise Reject(fail_fixed(reg.umax + off),
                         f"R{regno} max value is outside of the allowed memory range")

    def ctx_access(self, regno: int, reg: st.Reg, off: int, size: int, write: bool,
                   sx: bool) -> st.Reg:
        if reg.off:
            raise Reject(f"dereference of modified ctx ptr R{regno} off={reg.off} disallowed")
        if reg.var != (0, 0):
            raise Reject(f"variable ctx access var_off={tnum.tstr(reg.var)} disallowed")
        kind = self.ctx.check(off, size, write)
        if kind is None:
            raise Reject(f"invalid bpf_context access off={off} size={size}")
        if write:
            return st.scalar_unknown()
        if kind == CTX_SCALAR:
            return self.loaded_scalar(size, sx)
        return st.pointer(st.PTR_TO_SOCK_COMMON | st.MAYBE_NULL, id=self.new_id())

    # --- stack -----------------------------------------------------------------------------------
    def check_stack_alignment(self, reg: st.Reg, off: int, size: int) -> None:
        total = tnum.add(reg.var, tnum.const(reg.off + off))
        if not tnum.is_aligned(total, size):
            raise Reject(f"misaligned stack access off {tnum.tstr(reg.var)}+{reg.off}+{off} "
                         f"size {size}")

    def _stack_range(self, regno: int, reg: st.Reg, off: int, size: int, what: str):
        """check_stack_access_within_bounds: the lowest and highest byte offsets touched."""
        if reg.var[1] == 0:
            lo = bounds.s64(reg.var[0]) + reg.off + off
            hi = lo + size
        else:
            lo = reg.smin + reg.off + off
            hi = reg.smax + reg.off + off + size
        if lo < -st.STACK_SIZE or hi > 0 or size <= 0 and what != " indirect access to":
            if reg.var[1] == 0:
                raise Reject(f"invalid{what} stack R{regno} off={off + reg.off} size={size}")
            raise Reject(f"invalid variable-offset{what} stack R{regno} "
                         f"var_off={tnum.tstr(reg.var)} off={off + reg.off} size={size}")
        frame = self.state.frames[reg.frameno]
        sp = frame.subprog
        self.stack_depth[sp] = max(self.stack_depth[sp], -lo)
        return frame, lo, hi

    @staticmethod
    def _scrub_slot(frame: st.Frame, slot: int, buf: bytearray | None = None) -> None:
        """A spilled register is partly overwritten: its remaining bytes become misc (in
        ``buf`` when the caller is rewriting the frame's stack bytes, else in the frame)."""
        if slot in frame.spills:
            del frame.spills[slot]
            b = slot * 8
            if buf is not None:
                buf[b:b + 8] = buf[b:b + 8].replace(b"\x01", b"\x02")
            else:
                stack = frame.stack
                frame.stack = stack[:b] + stack[b:b + 8].replace(b"\x01", b"\x02") + stack[b + 8:]

    def stack_write(self, regno: int, reg: st.Reg, off: int, size: int, value: st.Reg | None,
                    value_regno: int | None) -> None:
        frame, lo, hi = self._stack_range(regno, reg, off, size, " write to")
        stack = frame.stack
        if reg.var[1] == 0:
            b = st.STACK_SIZE + lo
            slot = b // 8
            self.scratched_slots.add(63 - slot)
            if value is not None and value.type > st.SCALAR and size != 8:
                raise Reject("invalid size of register spill")
            if value is not None and value.type == st.PTR_TO_STACK and frame is not self.state.cur:
                # it would outlive the callee's frame it may point into
                raise Reject("cannot spill pointers to stack into stack frame of the caller")
            old = frame.spills.get(slot)
            if (not self.priv and old is not None and old.type != st.SCALAR and size != 8):
                raise Reject("attempt to corrupt spilled pointer on stack")
            spill = value is not None and size == 8 and (value.type > st.SCALAR or (
                self.priv and not (value.is_const() and value.var[0] == 0 and value_regno is None)))
            if spill:
                frame.spills[slot] = value
                frame.stack = stack[:b] + b"\x01" * 8 + stack[b + 8:]
                return
            self._scrub_slot(frame, slot)
            if b // 8 != (b + size - 1) // 8:
                self._scrub_slot(frame, (b + size - 1) // 8)
            zero = value is not None and value.is_const() and value.var[0] == 0
            stack = frame.stack
            frame.stack = stack[:b] + (b"\x03" if zero else b"\x02") * size + stack[b + size:]
            return
        # variable offset: every byte that may be written loses what it held
        zero = value is not None and value.is_const() and value.var[0] == 0
        buf = bytearray(stack)
        for b in range(st.STACK_SIZE + lo, st.STACK_SIZE + hi):
            slot = b // 8
            if slot in frame.spills:
                if not self.priv and frame.spills[slot].type != st.SCALAR:
                    raise Reject(f"spilled ptr in range of var-offset stack write; "
                                 f"insn {self.pc}, ptr off: {slot * 8 - st.STACK_SIZE}")
                self._scrub_slot(frame, slot, buf)
            if buf[b] == st.STACK_INVALID and not self.priv:
                raise Reject(f"uninit stack in range of var-offset write prohibited for !root; "
                             f"insn {self.pc}, off: {b - st.STACK_SIZE}")
            if not (zero and buf[b] == st.STACK_ZERO):
                buf[b] = st.STACK_MISC
        frame.stack = bytes(buf)

    def stack_read(self, regno: int, reg: st.Reg, off: int, size: int, sx: bool) -> st.Reg:
        frame, lo, hi = self._stack_range(regno, reg, off, size, " read from")
        stack = frame.stack
        if reg.var[1] == 0:
            if self.pc in self.top_based and frame is self.state.cur:
                self._load_seen(lo, hi)
            b = st.STACK_SIZE + lo
            slot = b // 8
            self.scratched_slots.add(63 - slot)
            if stack[b] == st.STACK_SPILL:
                spilled = frame.spills[slot]
                if size == 8:
                    return spilled
                if spilled.type != st.SCALAR:
                    raise Reject("invalid size of register fill")
                if spilled.is_const() and b % 8 == 0 and not sx:
                    return st.scalar_const(spilled.var[0] & ((1 << (size * 8)) - 1))
                return self.loaded_scalar(size, sx)
            all_zero = True
            for i in range(size):
                k = stack[b + i]
                if k == st.STACK_ZERO:
                    continue
                all_zero = False
                if k == st.STACK_MISC or (k == st.STACK_INVALID and self.priv):
                    continue
                if k == st.STACK_SPILL:
                    raise Reject("invalid size of register fill")
                raise Reject(f"invalid read from stack off {lo}+{i} size {size}")
            return st.scalar_const(0) if all_zero else self.loaded_scalar(size, sx)
        self._check_stack_initialized(regno, reg, frame, lo, hi, size, " read from")
        return self.loaded_scalar(size, sx)

    def _load_seen(self, lo: int, hi: int) -> None:
        """A load the static analysis could not place reads these bytes of its own frame: the
        slots' values now flow into the loaded register (recompute ``needed`` if new)."""
        bits = slot_bits(lo, hi)
        seen = self.loads_seen.get(self.pc, 0)
        if bits & ~seen:
            self.loads_seen[self.pc] = seen | bits
            self._reanalyse()

    def _check_stack_initialized(self, regno, reg, frame, lo, hi, size, what) -> None:
        stack = frame.stack
        for b in range(st.STACK_SIZE + lo, st.STACK_SIZE + hi):
            k = stack[b]
            if k in (st.STACK_MISC, st.STACK_ZERO):
                continue
            if k == st.STACK_SPILL:
                spilled = frame.spills[b // 8]
                if spilled.type == st.SCALAR or self.priv:
                    continue
            elif self.priv:
                continue
            if reg.var[1] == 0:
                raise Reject(f"invalid indirect read from stack R{regno} off {lo}+"
                             f"{b - st.STACK_SIZE - lo} size {size}")
            raise Reject(f"invalid variable-offset{what} stack R{regno} "
                         f"var_off={tnum.tstr(reg.var)} size={size}")

    # --- helpers and memory passed to them ----------------------------------------------------------
    def helper_mem_access(self, regno: int, reg: st.Reg, size: int, write: bool,
                          zero_size_ok: bool) -> None:
        base = reg.type & st.BASE
        if base == st.PTR_TO_STACK:
            if size == 0 and zero_size_ok:
                return
            frame, lo, hi = self._stack_range(regno, reg, 0, size, " indirect access to")
            if write:
                buf = bytearray(frame.stack)
                for b in range(st.STACK_SIZE + lo, st.STACK_SIZE + hi):
                    self._scrub_slot(frame, b // 8, buf)
                if reg.var[1] == 0:
                    buf[st.STACK_SIZE + lo:st.STACK_SIZE + hi] = b"\x02" * (hi - lo)
                else:
                    for b in range(st.STACK_SIZE + lo, st.STACK_SIZE + hi):
                        if buf[b] != st.STACK_INVALID or self.priv:
                            buf[b] = st.STACK_MISC
                frame.stack = bytes(buf)
            else:
                self._check_stack_initialized(regno, reg, frame, lo, hi, size,
                                              " indirect access to")
                for b in range(st.STACK_SIZE + lo, st.STACK_SIZE + hi):
                    sp = frame.spills.get(b // 8)
                    if sp is not None and sp.type != st.SCALAR:
                        self._scrub_slot(frame, b // 8)
            return
        if base == st.PTR_TO_MAP_VALUE:
            self.mem_region_access(regno, reg, 0, size, self.maps[reg.map].value_size,
                                   "map value", zero_size_ok)
            return
        if base == st.PTR_TO_MEM:
            if write and reg.type & st.MEM_RDONLY:
                raise Reject(f"R{regno} cannot write into {st.type_str(reg.type)}")
            self.mem_region_access(regno, reg, 0, size, reg.mem_size, "memory", zero_size_ok)
            return
        raise Reject(f"R{regno} invalid mem access '{st.type_str(reg.type)}'")
