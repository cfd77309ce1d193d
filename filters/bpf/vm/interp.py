"""The reference interpreter: every RFC 9669 instruction, one small closure per slot.

Each slot is pre-decoded into a closure that updates the register list and returns the index of
the next slot; the run loop is ``for _ in range(budget): pc = code[pc]()``.  Semantics come from
``alu.py``; all memory goes through ``memory.Memory``.  ``exit`` of the outermost frame raises
``_Exit`` to leave the loop.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from tracesim.filters.bpf.runtime.helpers import StopProgram, VMContext
from tracesim.filters.bpf.runtime.helpers_calls import (
    TailCall,
    calls_helper,
    follow_tail_call,
    func_handle,
    tail_call_in_subprog,
)
from tracesim.filters.bpf.runtime.program import DEFAULT_BUDGET, Program, function_depth
from tracesim.filters.bpf.vm import alu, isa
from tracesim.filters.bpf.vm.alu import M32, M64
from tracesim.filters.bpf.vm.memory import (
    CTX_BASE,
    PACKET_BASE,
    STACK_BASE,
    STACK_BYTES,
    STACK_TOP,
    Memory,
    VMError,
)

SIZE = {isa.W: 4, isa.H: 2, isa.B: 1, isa.DW: 8}
TAIL_CALL = 12                          # bpf_tail_call


class BudgetExceeded(VMError):
    pass


class CallDepthExceeded(VMError):
    pass


class RunResult(NamedTuple):
    """r0 of a finished run, or the error that stopped it (``value`` is then 0)."""
    value: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def run_to_result(engine: Callable[..., int], ctx=b"", *, env: Any = None, packet: Any = None,
                  args: Sequence[int] = ()) -> RunResult:
    """``engine(...)`` as a RunResult: every engine's ``run``, which never raises for program
    errors (the engine's ``__call__`` raises VMError)."""
    try:
        return RunResult(engine(ctx, env=env, packet=packet, args=args))
    except VMError as err:
        return RunResult(0, str(err))


class _Exit(Exception):
    pass


def resolve_ld_imm64(program: Program, mem: Memory, insn: isa.Insn, second: isa.Insn,
                     pc: int = 0) -> int:
    """The 64-bit value the LD_IMM64 at ``pc`` loads, resolving map pseudo sources through
    Program.maps and a callback (``PSEUDO_FUNC``) to its function handle."""
    src = insn.src
    if src == 0:
        return isa.imm64(insn, second)
    if src == isa.PSEUDO_FUNC:
        return func_handle(pc + insn.imm + 1, function_depth(program, pc))
    if src in (isa.PSEUDO_MAP_FD, isa.PSEUDO_MAP_IDX):
        return program.map_handle(insn.imm)
    if src == isa.PSEUDO_BTF_ID:          # a per-CPU variable: its symbol (a per-CPU offset)
        from tracesim.kernel_model.model_btf import percpu_btf_vars
        var = percpu_btf_vars().get(insn.imm)
        return var[0].offset if var is not None else 0
    buf = program.maps[insn.imm].direct_value()
    base = mem.address_of(buf, writable=True, name=f"map{insn.imm}")
    return (base + (second.imm & M32)) & M64


def new_memory(program: Program) -> tuple[Memory, bytearray, Any]:
    """The address space of one engine: stack (all frames), context, packet (in that order)."""
    mem = Memory()
    stack = bytearray(STACK_BYTES)
    mem.map("stack", stack, writable=True, start=STACK_BASE)
    ctx_region = mem.map("context", b"", writable=False, start=CTX_BASE)
    mem.map("packet", b"", writable=False, start=PACKET_BASE)
    return mem, stack, ctx_region


def bind_callbacks(vm: VMContext) -> None:
    """Give ``vm`` (another engine's) a ``call_function`` for callback helpers: an interpreter
    sharing its memory, built on the first callback."""
    def first_call(pc: int, args: Sequence[int], fp: int) -> int:
        vm.call_function = Interpreter(vm.program, shared=vm).call_function
        return vm.call_function(pc, args, fp)
    vm.call_function = first_call


def bind_run(mem: Memory, ctx_region: Any, vm: VMContext, ctx, env: Any, packet: Any,
             ctx_writable: bool) -> None:
    """Point the context (and packet) regions at this run's buffers."""
    ctx_region.rebind(ctx, ctx_writable)
    vm.env = env
    if packet is not None or vm.packet is not None:
        vm.packet = packet
        mem.regions[2].rebind(b"" if packet is None else packet, True)


class Interpreter:
    """Runs a Program.  ``run`` never raises for program errors; ``__call__`` raises VMError."""

    def __init__(self, program: Program, *, budget: int = DEFAULT_BUDGET,
                 shared: VMContext | None = None) -> None:
        """``shared``: run in another engine's memory and context (bpf_loop callbacks, through
        ``call_function``) instead of an address space of its own."""
        self.program = program
        self.budget = budget
        if shared is None:
            self.mem, self.stack, self._ctx_region = new_memory(program)
            self.vm = VMContext(program, self.mem)
            self.vm.call_function = self.call_function
        else:
            self.mem, self.vm = shared.mem, shared
            self.stack, self._ctx_region = self.mem.regions[0].buf, self.mem.regions[1]
        self.regs = [0] * isa.NUM_REGS
        self.frames: list[tuple] = []
        self.executed = 0
        self.tail_calls = calls_helper(program, 12)
        self.code = self._build()

    # -- running ---------------------------------------------------------------------------------
    def _start(self, ctx, env: Any, packet: Any, args: Sequence[int]) -> None:
        bind_run(self.mem, self._ctx_region, self.vm, ctx, env, packet, self.program.ctx_writable)
        R = self.regs
        for i in range(isa.NUM_REGS):
            R[i] = 0
        R[1] = CTX_BASE
        for i, v in enumerate(args):
            R[2 + i] = v & M64
        R[10] = STACK_TOP
        self.frames.clear()

    def __call__(self, ctx=b"", *, env: Any = None, packet: Any = None,
                 args: Sequence[int] = ()) -> int:
        self._start(ctx, env, packet, args)
        if not self.tail_calls:
            return self._execute(0)
        vm = self.vm
        vm.tail_calls, vm.tail_start = vm.tail_start, 0
        try:
            return self._execute(0)
        except TailCall as tc:
            r0 = follow_tail_call(tc, ctx)
            vm.tail_calls = tc.final
            return r0

    def _execute(self, pc: int, budget: int | None = None) -> int:
        """Run from slot ``pc`` until the outermost frame exits (at most ``budget``
        instructions, default ``self.budget``): r0."""
        code = self.code
        budget = self.budget if budget is None else budget
        n = -1
        try:
            for n in range(budget):  # noqa: B007 - n counts insns for the except below
                pc = code[pc]()
        except _Exit:
            self.executed = n + 1
            return self.regs[0]
        except StopProgram as stop:
            self.executed = n + 1
            return stop.value & M64
        self.executed = budget
        raise BudgetExceeded(f"instruction budget of {self.budget} exceeded")

    def call_function(self, pc: int, args: Sequence[int], fp: int) -> int:
        """Call the BPF function at insn ``pc`` with r1.. = ``args`` and its frame at ``fp``
        (a callback, from a helper running in the engine this interpreter shares): its r0.
        The registers of a call in progress (a callback calling bpf_loop) are kept.  The
        callbacks of one helper call share the instruction budget (``vm.callback_insns``)."""
        vm = self.vm
        left = self.budget - vm.callback_insns
        if left <= 0:
            raise BudgetExceeded(f"instruction budget of {self.budget} exceeded in callbacks")
        R = self.regs
        saved, frames = R[:], self.frames[:]
        for i in range(isa.NUM_REGS):
            R[i] = 0
        for i, v in enumerate(args):
            R[1 + i] = v & M64
        R[10] = fp
        self.frames.clear()
        self.executed = 0
        try:
            return self._execute(pc, left)
        finally:
            vm.callback_insns += self.executed
            R[:] = saved
            self.frames[:] = frames

    run = run_to_result

    # -- decoding --------------------------------------------------------------------------------
    def _build(self) -> list[Callable[[], int]]:
        insns = self.program.insns
        code: list[Callable[[], int]] = []
        pc = 0
        while pc < len(insns):
            code.append(self._decode(pc, insns[pc]))
            if insns[pc].opcode == isa.LD_IMM64:
                code.append(_second_slot)       # never executed: the first slot skips it
                pc += 1
            pc += 1
        return code

    def _decode(self, pc: int, insn: isa.Insn) -> Callable[[], int]:
        cls = insn.opcode & 7
        if cls in (isa.ALU, isa.ALU64):
            return self._alu(pc, insn)
        if cls in (isa.JMP, isa.JMP32):
            return self._jmp(pc, insn)
        if cls == isa.LD:
            return self._ld(pc, insn)
        return self._mem(pc, insn)

    def _alu(self, pc: int, insn: isa.Insn) -> Callable[[], int]:
        R, d, s, nxt = self.regs, insn.dst, insn.src, pc + 1
        wide = insn.opcode & 7 == isa.ALU64
        use_x = insn.opcode & isa.X
        if insn.opcode & 0xF0 == isa.END:
            def end():
                R[d] = alu.endian(insn, R[d])
                return nxt
            return end
        name = alu.alu_name(insn)
        f = (alu.ALU64 if wide else alu.ALU32)[name]
        if use_x:
            # Fast paths for the most common register forms; the table covers the rest.
            if wide and name == "mov":
                def mov_x():
                    R[d] = R[s]
                    return nxt
                return mov_x
            if wide and name == "add":
                def add_x():
                    R[d] = (R[d] + R[s]) & M64
                    return nxt
                return add_x
            if wide and name == "xor":
                def xor_x():
                    R[d] ^= R[s]
                    return nxt
                return xor_x

            def alu_x():
                R[d] = f(R[d], R[s])
                return nxt
            return alu_x
        imm = insn.imm & (M64 if wide else M32)
        if wide and name == "mov":
            def mov_k():
                R[d] = imm
                return nxt
            return mov_k
        if wide and name == "add":
            def add_k():
                R[d] = (R[d] + imm) & M64
                return nxt
            return add_k
        if wide and name == "and":
            def and_k():
                R[d] &= imm
                return nxt
            return and_k
        if wide and name in ("lsh", "rsh"):
            sh = imm & 63
            if name == "rsh":
                def rsh_k():
                    R[d] >>= sh
                    return nxt
                return rsh_k

            def lsh_k():
                R[d] = (R[d] << sh) & M64
                return nxt
            return lsh_k

        def alu_k():
            R[d] = f(R[d], imm)
            return nxt
        return alu_k

    def _jmp(self, pc: int, insn: isa.Insn) -> Callable[[], int]:
        R, d, s, nxt = self.regs, insn.dst, insn.src, pc + 1
        op, cls = insn.opcode & 0xF0, insn.opcode & 7
        if op == isa.JA:
            target = isa.jump_target(pc, insn)
            return lambda: target
        if op == isa.EXIT:
            return self._exit_insn()
        if op == isa.CALL:
            return self._call(pc, insn)
        target = pc + insn.off + 1
        if cls == isa.JMP:
            cond = alu.JUMP64[op]
            if insn.opcode & isa.X:
                return lambda: target if cond(R[d], R[s]) else nxt
            imm = insn.imm & M64
            if op == isa.JEQ:
                return lambda: target if R[d] == imm else nxt
            if op == isa.JNE:
                return lambda: target if R[d] != imm else nxt
            return lambda: target if cond(R[d], imm) else nxt
        cond = alu.JUMP32[op]
        if insn.opcode & isa.X:
            return lambda: target if cond(R[d] & M32, R[s] & M32) else nxt
        imm = insn.imm & M32
        return lambda: target if cond(R[d] & M32, imm) else nxt

    def _exit_insn(self) -> Callable[[], int]:
        R, frames = self.regs, self.frames

        def exit_():
            if not frames:
                raise _Exit
            ret, R[6], R[7], R[8], R[9], R[10] = frames.pop()
            return ret
        return exit_

    def _call(self, pc: int, insn: isa.Insn) -> Callable[[], int]:
        R, frames, nxt = self.regs, self.frames, pc + 1
        if insn.src == isa.PSEUDO_CALL:
            target = pc + insn.imm + 1

            def call_local():
                if len(frames) + 1 >= isa.MAX_CALL_DEPTH:
                    raise CallDepthExceeded(f"call depth exceeds {isa.MAX_CALL_DEPTH} frames")
                frames.append((nxt, R[6], R[7], R[8], R[9], R[10]))
                R[10] -= isa.STACK_SIZE
                return target
            return call_local
        helpers, vm = self.program.helpers, self.vm
        if insn.opcode & isa.X:
            d = insn.dst

            def callx():
                fn = helpers.get(R[d])
                if fn is None:
                    raise VMError(f"callx: unknown helper {R[d]}")
                R[0] = fn(vm, R[1], R[2], R[3], R[4], R[5]) & M64
                return nxt
            return callx
        fn = helpers[insn.imm]
        if insn.imm == TAIL_CALL:
            return self._tail_call_insn(fn, nxt)

        def call_helper():
            R[0] = fn(vm, R[1], R[2], R[3], R[4], R[5]) & M64
            return nxt
        return call_helper

    def _tail_call_insn(self, fn: Callable[..., int], nxt: int) -> Callable[[], int]:
        """bpf_tail_call: in the outermost frame the TailCall ends the run (``__call__``
        follows it); in a subprogram the target replaces the subprogram, whose caller gets the
        target's r0 and goes on."""
        R, frames, vm, ctx_region = self.regs, self.frames, self.vm, self._ctx_region

        def save() -> tuple:
            return R[:], frames[:], self.executed

        def restore(state: tuple) -> None:
            R[:], frames[:], self.executed = state

        def call_tail():
            try:
                R[0] = fn(vm, R[1], R[2], R[3], R[4], R[5]) & M64
            except TailCall as tc:
                if not frames:
                    raise
                r0 = tail_call_in_subprog(tc, ctx_region.buf, vm, self.stack, save, restore)
                R[0] = r0 & M64
                ret, R[6], R[7], R[8], R[9], R[10] = frames.pop()     # the subprogram's exit
                return ret
            return nxt
        return call_tail

    def _ld(self, pc: int, insn: isa.Insn) -> Callable[[], int]:
        R, d, after = self.regs, insn.dst, pc + 2
        if insn.opcode == isa.LD_IMM64:
            value = resolve_ld_imm64(self.program, self.mem, insn, self.program.insns[pc + 1], pc)

            def ld_imm64():
                R[d] = value
                return after
            return ld_imm64
        # Legacy packet loads: big-endian value of the packet at imm (+ src); outside the packet
        # the program ends with r0 = 0, as in the kernel.
        size, imm, s, nxt, vm = SIZE[insn.opcode & 0x18], insn.imm, insn.src, pc + 1, self.vm
        indirect = insn.opcode & 0xE0 == isa.IND

        def ld_packet():
            off = alu.s32((R[s] if indirect else 0) + imm)
            data = vm.packet
            if data is None or off < 0 or off + size > len(data):
                raise StopProgram(0)
            R[0] = int.from_bytes(data[off:off + size], "big")
            return nxt
        return ld_packet

    def _mem(self, pc: int, insn: isa.Insn) -> Callable[[], int]:
        R, d, s, off, nxt, mem = self.regs, insn.dst, insn.src, insn.off, pc + 1, self.mem
        cls, mode = insn.opcode & 7, insn.opcode & 0xE0
        size = SIZE[insn.opcode & 0x18]
        load, store = mem.load, mem.store
        if cls == isa.LDX:
            if mode == isa.MEMSX:
                bits = size * 8

                def ldx_sx():
                    R[d] = alu.sext(load((R[s] + off) & M64, size), bits) & M64
                    return nxt
                return ldx_sx

            def ldx():
                R[d] = load((R[s] + off) & M64, size)
                return nxt
            return ldx
        if cls == isa.ST:
            imm = insn.imm & M64

            def st():
                store((R[d] + off) & M64, size, imm)
                return nxt
            return st
        if mode == isa.MEM:
            def stx():
                store((R[d] + off) & M64, size, R[s])
                return nxt
            return stx
        return self._atomic(insn, size, nxt)

    def _atomic(self, insn: isa.Insn, size: int, nxt: int) -> Callable[[], int]:
        R, d, s, off, op, mem = self.regs, insn.dst, insn.src, insn.off, insn.imm, self.mem
        mask = M64 if size == 8 else M32

        if op == isa.CMPXCHG:
            def cmpxchg():
                addr = (R[d] + off) & M64
                old = mem.load(addr, size)
                if old == R[0] & mask:
                    mem.store(addr, size, R[s])
                R[0] = old
                return nxt
            return cmpxchg
        fetch = op & isa.FETCH

        def atomic():
            addr = (R[d] + off) & M64
            old = mem.load(addr, size)
            mem.store(addr, size, alu.atomic(op, old, R[s], mask))
            if fetch:
                R[s] = old
            return nxt
        return atomic


def _second_slot() -> int:
    raise AssertionError("second slot of LD_IMM64 executed")


