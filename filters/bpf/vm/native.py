"""Native tier: eBPF -> LLVM IR -> x86-64 machine code through llvmlite (MCJIT), as the kernel's JIT.

One LLVM function per BPF function (the entry and every bpf-to-bpf callee); registers are i64
allocas that the optimiser promotes to machine registers.  Everything a run shares with Python
lives in one ``env`` array of 64-bit words (``E_*`` below): the run status, the instruction budget,
the region table, the register file at function boundaries and the callback pointer.

Memory: a load or store first tries the stack (fixed range, inline), then the region table (one
``{start, end, host address, writable}`` row per region of the engine's ``Memory``, filled from
Python before a run and after every helper); anything else (a miss, a store to a read-only
region) calls back into Python, where ``Memory`` either performs the access or raises the same
``MemoryFault`` the interpreter raises.  So the table is only a cache: faults, their messages and
the results are those of the interpreter by construction.  Helpers bound to their standard
implementations run in machine code where their state is plain memory (array map lookup and
update, ``bpf_skb_load_bytes*``; see ``native_helpers``); the others (hash maps, probe_read, the
model's kernel clock, ring buffers), atomics and legacy packet loads call back into Python.  The
callback catches everything, records it and sets the status word, which the generated code tests
after each callback and each bpf-to-bpf call, returning at once.

Semantics are RFC 9669 as in ``alu.py``: division by zero gives 0 and modulo by zero the dividend
(LLVM's udiv by zero is undefined: guarded), signed INT_MIN / -1 gives INT_MIN (guarded), shift
amounts are masked, 32-bit operations zero-extend.  The budget is charged per basic block on entry
(a run that would pass it stops with the interpreter's BudgetExceeded error); the call depth limit
is the interpreter's.  Compiled code is cached by IR text, so reloading a program costs no LLVM.
"""
from __future__ import annotations

import ctypes
import hashlib
from collections.abc import Sequence
from typing import Any

from tracesim.filters.bpf.runtime.helpers import StopProgram, VMContext
from tracesim.filters.bpf.runtime.helpers_calls import (
    TailCall,
    calls_helper,
    follow_tail_call,
    tail_call_in_subprog,
)
from tracesim.filters.bpf.runtime.program import DEFAULT_BUDGET, Program
from tracesim.filters.bpf.vm import alu, analysis, isa
from tracesim.filters.bpf.vm.alu import M32, M64
from tracesim.filters.bpf.vm.interp import (
    BudgetExceeded,
    CallDepthExceeded,
    RunResult,
    bind_callbacks,
    bind_run,
    new_memory,
    resolve_ld_imm64,
)
from tracesim.filters.bpf.vm.memory import CTX_BASE, STACK_BASE, STACK_BYTES, STACK_TOP, VMError

# llvmlite is imported on first use, not with this module: it costs ~0.1 s, and every command
# and verifier worker that imports the loader would pay it for a tier most programs never take.
_llvm: Any = None
IMPORT_ERROR: str | None = None          # why the tier is unavailable, once that is known
_tried_import = False


def _binding() -> Any:
    """``llvmlite.binding``, or None (``IMPORT_ERROR`` says why)."""
    global _llvm, IMPORT_ERROR, _tried_import
    if not _tried_import:
        _tried_import = True
        if IMPORT_ERROR is None:
            try:
                import llvmlite.binding as binding
            except ImportError as err:   # pragma: no cover - depends on the platform
                IMPORT_ERROR = str(err)
            else:
                _llvm = binding
    return _llvm

SIZE = {isa.W: 4, isa.H: 2, isa.B: 1, isa.DW: 8}

# env words
E_STATUS, E_BUDGET, E_NREG, E_STACK, E_CALLBACK, E_REGIONS, E_BUDGET_INIT = 0, 1, 2, 3, 4, 5, 6
E_REGS = 8                               # r0..r10
# the skb of this run, for the native skb_load_bytes*: ok flag, data address, length, MAC header
# offset (all ones when unset), network header offset
E_SKB_OK, E_SKB_DATA, E_SKB_LEN, E_SKB_MAC, E_SKB_NET = 19, 20, 21, 22, 23
E_ARGS = 24                              # r2-r5 of the entry (run(args=...))
E_CTX_HOST, E_CTX_LEN, E_CTX_W = 28, 29, 30   # this run's context, tested inline after the stack
# the entry trampoline's words (see _trampoline_ir): the address of bpf_main, whether a run may take
# the trampoline's fast path, the Python fallback entry and finisher (PyObject *), the engine's
# region list (PyObject *, its length tells whether the table is current) and the context object
# of the run under way (PyObject *, 0 outside a trampoline run) for callbacks to adopt
E_MAIN, E_FAST, E_FALLBACK, E_FINISH, E_REGLIST, E_CTX_OBJ = 32, 33, 34, 35, 36, 37
E_MAPBASE = 40                           # + map index: address of an array map's values, once mapped
MAX_REGIONS = 64                         # rows of the region table; more regions take the slow path

# status values
ST_OK, ST_STOP, ST_EXC, ST_BUDGET, ST_DEPTH = 0, 1, 2, 3, 4
ST_TAILRET = 5          # a subprogram's tail call ran its target: return the callback's value
# callback kinds
CB_HELPER, CB_LOAD, CB_STORE, CB_ATOMIC, CB_LDPKT = 0, 1, 2, 3, 4
CB_TAIL_SUB = 5         # bpf_tail_call in a subprogram (see tail_call_in_subprog)
TAIL_CALL = 12

CALLBACK = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64,
                            ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64)
ENTRY = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p)


class NativeUnavailable(RuntimeError):
    """llvmlite cannot be imported (or initialised) on this platform."""


def available() -> bool:
    """Whether the native tier can compile here."""
    return _binding() is not None


# ---------------------------------------------------------------------------------------------
# LLVM: one target machine, compiled modules cached by IR text.

_target: Any = None
_CACHE: dict[str, tuple[Any, int]] = {}
CACHE_SIZE = 256                          # compiled modules kept for reloads of the same program


def _machine() -> Any:
    """A new target machine for the host: each MCJIT engine takes ownership of (and disposes)
    the one it is created with, so they cannot be shared."""
    global _target
    if _binding() is None:
        raise NativeUnavailable(f"llvmlite is not available: {IMPORT_ERROR}")
    if _target is None:
        _llvm.initialize_native_target()
        _llvm.initialize_native_asmprinter()
        _target = _llvm.Target.from_default_triple()
    return _target.create_target_machine(opt=2, jit=True)


def _compile_ir(ir: str) -> tuple[Any, int]:
    """(MCJIT engine, address of ``bpf_main``) for module text ``ir``, cached by its digest."""
    key = hashlib.sha256(ir.encode()).hexdigest()
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    tm = _machine()
    mod = _llvm.parse_assembly(ir)
    mod.verify()
    pto = _llvm.create_pipeline_tuning_options(speed_level=2)
    pb = _llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    engine = _llvm.create_mcjit_compiler(mod, tm)
    engine.finalize_object()
    if len(_CACHE) >= CACHE_SIZE:             # the oldest goes; its programs keep their engine
        del _CACHE[next(iter(_CACHE))]
    hit = _CACHE[key] = (engine, engine.get_function_address("bpf_main"))
    return hit


# ---------------------------------------------------------------------------------------------
# IR generation

_PRELUDE = f"""
declare i16 @llvm.bswap.i16(i16)
declare i32 @llvm.bswap.i32(i32)
declare i64 @llvm.bswap.i64(i64)
declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)
declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)
declare void @llvm.memmove.p0.p0.i64(ptr, ptr, i64, i1)

; host address of [addr, addr+size) or null: the stack inline, then the region table
define internal ptr @addr(ptr %env, i64 %a, i64 %size, i1 %write) alwaysinline {{
entry:
  %so = sub i64 %a, {STACK_BASE}
  %slim = sub i64 {STACK_BYTES}, %size
  %instack = icmp ule i64 %so, %slim
  br i1 %instack, label %stack, label %ctx
ctx:
  %co = sub i64 %a, {CTX_BASE}
  %clp = getelementptr i64, ptr %env, i64 {E_CTX_LEN}
  %clen = load i64, ptr %clp
  %cbig = icmp uge i64 %clen, %size
  %clim = sub i64 %clen, %size
  %cin = icmp ule i64 %co, %clim
  %cfits = and i1 %cbig, %cin
  %cwp = getelementptr i64, ptr %env, i64 {E_CTX_W}
  %cw = load i64, ptr %cwp
  %cro = icmp eq i64 %cw, 0
  %cdenied = and i1 %write, %cro
  %cnotdenied = xor i1 %cdenied, 1
  %cok = and i1 %cfits, %cnotdenied
  br i1 %cok, label %inctx, label %table
inctx:
  %chp = getelementptr i64, ptr %env, i64 {E_CTX_HOST}
  %chost = load i64, ptr %chp
  %ch = add i64 %chost, %co
  %cp = inttoptr i64 %ch to ptr
  ret ptr %cp
stack:
  %spp = getelementptr i64, ptr %env, i64 {E_STACK}
  %sbase = load i64, ptr %spp
  %shost = add i64 %sbase, %so
  %sp = inttoptr i64 %shost to ptr
  ret ptr %sp
table:
  %np = getelementptr i64, ptr %env, i64 {E_NREG}
  %n = load i64, ptr %np
  %rtp = getelementptr i64, ptr %env, i64 {E_REGIONS}
  %rti = load i64, ptr %rtp
  %rt = inttoptr i64 %rti to ptr
  br label %loop
loop:
  %i = phi i64 [0, %table], [%inext, %next]
  %more = icmp ult i64 %i, %n
  br i1 %more, label %row, label %miss
row:
  %base = mul i64 %i, 4
  %p0 = getelementptr i64, ptr %rt, i64 %base
  %start = load i64, ptr %p0
  %p1 = getelementptr i64, ptr %p0, i64 1
  %end = load i64, ptr %p1
  %len = sub i64 %end, %start
  %off = sub i64 %a, %start
  %big = icmp uge i64 %len, %size
  %lim = sub i64 %len, %size
  %inr = icmp ule i64 %off, %lim
  %fits = and i1 %big, %inr
  br i1 %fits, label %perm, label %next
perm:
  %p3 = getelementptr i64, ptr %p0, i64 3
  %w = load i64, ptr %p3
  %ro = icmp eq i64 %w, 0
  %denied = and i1 %write, %ro
  br i1 %denied, label %miss, label %hit
hit:
  %p2 = getelementptr i64, ptr %p0, i64 2
  %host = load i64, ptr %p2
  %h = add i64 %host, %off
  %hp = inttoptr i64 %h to ptr
  ret ptr %hp
next:
  %inext = add i64 %i, 1
  br label %loop
miss:
  ret ptr null
}}
"""


# Helpers run natively when the program's table binds them to the standard implementation (array
# map lookup and update, the skb byte loads; the others -- hash maps, probe_read, the kernel clock,
# ring buffers -- call back into Python, as their state lives in Python objects): an
# internal function per helper that returns i1 "handled" and the result through %out; "not
# handled" (an address outside the region table, a map value not mapped yet, no skb) takes the
# Python callback, which then does all of it, faults included.
_SKB_COMMON = f"""
  %okp = getelementptr i64, ptr %env, i64 {E_SKB_OK}
  %ok = load i64, ptr %okp
  %has = icmp ne i64 %ok, 0
  br i1 %has, label %go, label %slow
go:
  %off = and i64 %off0, 4294967295
  %len = and i64 %len0, 4294967295
  %z = icmp eq i64 %len, 0
  br i1 %z, label %nodst, label %finddst
finddst:
  %d = call ptr @addr(ptr %env, i64 %to, i64 %len, i1 1)
  %dn = icmp eq ptr %d, null
  br i1 %dn, label %slow, label %check
nodst:
  br label %check
"""
_SKB_TAIL = f"""
have:
  %endp = add i64 %at, %len
  %slp = getelementptr i64, ptr %env, i64 {E_SKB_LEN}
  %slen = load i64, ptr %slp
  %over = icmp ugt i64 %endp, %slen
  br i1 %over, label %fail, label %copy
copy:
  %dp = getelementptr i64, ptr %env, i64 {E_SKB_DATA}
  %data = load i64, ptr %dp
  %srci = add i64 %data, %at
  %src = inttoptr i64 %srci to ptr
  call void @llvm.memcpy.p0.p0.i64(ptr %dst, ptr %src, i64 %len, i1 false)
  store i64 0, ptr %out
  ret i1 1
fail:
  call void @llvm.memset.p0.i64(ptr %dst, i8 0, i64 %len, i1 false)
  store i64 {-14 & M64}, ptr %out
  ret i1 1
slow:
  ret i1 0
}}
"""
_NATIVE_SKB = {
    # bpf_skb_load_bytes_relative(skb, offset, to, len, start_header)
    68: "define internal i1 @h68(ptr %env, i64 %r1, i64 %off0, i64 %to, i64 %len0, i64 %hdr0, "
        "ptr %out) alwaysinline {\nentry:" + _SKB_COMMON + f"""
check:
  %dst = phi ptr [%d, %finddst], [null, %nodst]
  %hdr = and i64 %hdr0, 4294967295
  %big = icmp ugt i64 %off, 65535
  br i1 %big, label %fail, label %which
which:
  %ismac = icmp eq i64 %hdr, 0
  br i1 %ismac, label %mac, label %notmac
mac:
  %macp = getelementptr i64, ptr %env, i64 {E_SKB_MAC}
  %macv = load i64, ptr %macp
  %nomac = icmp slt i64 %macv, 0
  br i1 %nomac, label %fail, label %base
notmac:
  %isnet = icmp eq i64 %hdr, 1
  br i1 %isnet, label %net, label %fail
net:
  %netp = getelementptr i64, ptr %env, i64 {E_SKB_NET}
  %netv = load i64, ptr %netp
  br label %base
base:
  %start = phi i64 [%macv, %mac], [%netv, %net]
  %at = add i64 %start, %off
  br label %have
""" + _SKB_TAIL,
    # bpf_skb_load_bytes(skb, offset, to, len)
    26: "define internal i1 @h26(ptr %env, i64 %r1, i64 %off0, i64 %to, i64 %len0, i64 %r5, "
        "ptr %out) alwaysinline {\nentry:" + _SKB_COMMON + """
check:
  %dst = phi ptr [%d, %finddst], [null, %nodst]
  %big = icmp ugt i64 %off, 2147483647
  br i1 %big, label %fail, label %at0
at0:
  %at = add i64 %off, 0
  br label %have
""" + _SKB_TAIL,
}


def _array_lookup_ir(maps: Sequence[Any], eligible: list[int], handle: Any) -> str:
    """``@h1``: bpf_map_lookup_elem on the program's plain array maps (key: a u32 index)."""
    cases = " ".join(f"i64 {alu.s64(handle(i))}, label %m{i}" for i in eligible)
    out = ["define internal i1 @h1(ptr %env, i64 %r1, i64 %r2, i64 %r3, i64 %r4, i64 %r5, "
           "ptr %out) alwaysinline {", "entry:", f"  switch i64 %r1, label %slow [ {cases} ]"]
    for i in eligible:
        m = maps[i]
        out += [f"m{i}:", f"  %k{i} = call ptr @addr(ptr %env, i64 %r2, i64 4, i1 0)",
                f"  %kn{i} = icmp eq ptr %k{i}, null", f"  br i1 %kn{i}, label %slow, label %mk{i}",
                f"mk{i}:", f"  %x{i} = load i32, ptr %k{i}, align 1",
                f"  %i{i} = zext i32 %x{i} to i64", f"  %in{i} = icmp ult i64 %i{i}, {m.max_entries}",
                f"  br i1 %in{i}, label %mb{i}, label %none",
                f"mb{i}:", f"  %bp{i} = getelementptr i64, ptr %env, i64 {E_MAPBASE + i}",
                f"  %b{i} = load i64, ptr %bp{i}", f"  %nb{i} = icmp eq i64 %b{i}, 0",
                f"  br i1 %nb{i}, label %slow, label %mr{i}",
                f"mr{i}:", f"  %o{i} = mul i64 %i{i}, {m.value_size}", f"  %a{i} = add i64 %b{i}, %o{i}",
                f"  store i64 %a{i}, ptr %out", "  ret i1 1"]
    out += ["none:", "  store i64 0, ptr %out", "  ret i1 1", "slow:", "  ret i1 0", "}"]
    return "\n".join(out)


def _array_update_ir(maps: Sequence[Any], eligible: list[int], handle: Any) -> str:
    """``@h2``: bpf_map_update_elem on the program's plain array maps: the flag and index
    checks of ``ArrayMap.update`` (EEXIST, EINVAL, E2BIG, in that order), then the copy."""
    cases = " ".join(f"i64 {alu.s64(handle(i))}, label %m{i}" for i in eligible)
    out = ["define internal i1 @h2(ptr %env, i64 %r1, i64 %r2, i64 %r3, i64 %r4, i64 %r5, "
           "ptr %out) alwaysinline {", "entry:", f"  switch i64 %r1, label %slow [ {cases} ]"]
    for i in eligible:
        vs = maps[i].value_size
        out += [f"m{i}:", f"  %k{i} = call ptr @addr(ptr %env, i64 %r2, i64 4, i1 0)",
                f"  %v{i} = call ptr @addr(ptr %env, i64 %r3, i64 {vs}, i1 0)",
                f"  %kn{i} = icmp eq ptr %k{i}, null", f"  %vn{i} = icmp eq ptr %v{i}, null",
                f"  %n{i} = or i1 %kn{i}, %vn{i}", f"  br i1 %n{i}, label %slow, label %f{i}",
                f"f{i}:", f"  switch i64 %r4, label %einval [ i64 0, label %ok{i} "
                f"i64 2, label %ok{i} i64 1, label %eexist ]",
                f"ok{i}:", f"  %x{i} = load i32, ptr %k{i}, align 1",
                f"  %i{i} = zext i32 %x{i} to i64", f"  %in{i} = icmp ult i64 %i{i}, {maps[i].max_entries}",
                f"  br i1 %in{i}, label %mb{i}, label %e2big",
                f"mb{i}:", f"  %bp{i} = getelementptr i64, ptr %env, i64 {E_MAPBASE + i}",
                f"  %b{i} = load i64, ptr %bp{i}", f"  %o{i} = mul i64 %i{i}, {vs}",
                f"  %a{i} = add i64 %b{i}, %o{i}", f"  %nb{i} = icmp eq i64 %b{i}, 0",
                f"  br i1 %nb{i}, label %slow, label %mw{i}",
                f"mw{i}:", f"  %d{i} = call ptr @addr(ptr %env, i64 %a{i}, i64 {vs}, i1 1)",
                f"  %dn{i} = icmp eq ptr %d{i}, null", f"  br i1 %dn{i}, label %slow, label %mc{i}",
                f"mc{i}:", f"  call void @llvm.memmove.p0.p0.i64(ptr %d{i}, ptr %v{i}, i64 {vs}, i1 false)",
                "  store i64 0, ptr %out", "  ret i1 1"]
    for label, err in (("eexist", 17), ("einval", 22), ("e2big", 7)):
        out += [f"{label}:", f"  store i64 {-err & M64}, ptr %out", "  ret i1 1"]
    out += ["slow:", "  ret i1 0", "}"]
    return "\n".join(out)


def native_helpers(program: Program) -> tuple[dict[int, str], list[int]]:
    """(helper id -> IR of its native version, indices of the array maps ``@h1`` serves) for
    the helpers ``program`` binds to their standard implementations."""
    from tracesim.filters.bpf.runtime import helpers_maps, helpers_skb
    from tracesim.filters.bpf.runtime.maps import MAP_TYPE_ARRAY

    h = program.helpers
    called = {i.imm for i in program.insns if i.opcode == isa.OP_CALL and i.src == 0}
    out: dict[int, str] = {}
    if 68 in called and h.get(68) is helpers_skb.skb_load_bytes_relative:
        out[68] = _NATIVE_SKB[68]
    if 26 in called and h.get(26) is helpers_skb.skb_load_bytes:
        out[26] = _NATIVE_SKB[26]
    eligible = [i for i, m in enumerate(program.maps)
                if getattr(m, "map_type", None) == MAP_TYPE_ARRAY and not m.percpu
                and m.key_size == 4]
    if 1 in called and h.get(1) is helpers_maps.map_lookup_elem and eligible:
        out[1] = _array_lookup_ir(program.maps, eligible, program.map_handle)
    if 2 in called and h.get(2) is helpers_maps.map_update_elem and eligible:
        out[2] = _array_update_ir(program.maps, eligible, program.map_handle)
    return out, eligible


class _Fn:
    """IR text of one BPF function ``[start, end)``."""

    def __init__(self, gen: _Gen, start: int, end: int) -> None:
        self.gen, self.insns, self.start, self.end = gen, gen.insns, start, end
        self.lines: list[str] = []
        self.tmp = 0

    def t(self) -> str:
        self.tmp += 1
        return f"%t{self.tmp}"

    def e(self, text: str) -> None:
        self.lines.append("  " + text)

    def label(self, name: str) -> None:
        self.lines.append(f"{name}:")

    def get(self, r: int) -> str:
        v = self.t()
        self.e(f"{v} = load i64, ptr %r{r}")
        return v

    def put(self, r: int, v: str) -> None:
        self.e(f"store i64 {v}, ptr %r{r}")

    def env(self, word: int) -> str:
        p = self.t()
        self.e(f"{p} = getelementptr i64, ptr %env, i64 {word}")
        return p

    def check_status(self) -> None:
        """Return at once if a callback or callee set the status word."""
        s, c, ok = self.t(), self.t(), self.gen.new_label()
        self.e(f"{s} = load volatile i64, ptr %status")
        self.e(f"{c} = icmp ne i64 {s}, 0")
        self.e(f"br i1 {c}, label %bail, label %{ok}")
        self.label(ok)

    def callback(self, kind: int, *args: str) -> str:
        args = tuple(args) + ("0",) * (6 - len(args))
        v = self.t()
        self.e(f"{v} = call i64 %cb(i64 {kind}, " + ", ".join(f"i64 {a}" for a in args) + ")")
        self.check_status()
        return v

    # -- generation ---------------------------------------------------------------------------
    def generate(self) -> list[str]:
        insns, start, end = self.insns, self.start, self.end
        slots = analysis.slots(insns, start, end)
        blocks = analysis.blocks(insns, start, end)
        self.lines.append(f"define internal i64 @f{start}(ptr %env, i64 %depth) {{")
        self.label("entry")
        for r in range(isa.NUM_REGS):
            self.e(f"%r{r} = alloca i64")
        self.e("%n = alloca i64")
        self.e("%hres = alloca i64")
        self.e(f"%status = getelementptr i64, ptr %env, i64 {E_STATUS}")
        self.e(f"%budgetp = getelementptr i64, ptr %env, i64 {E_BUDGET}")
        self.e(f"%cbp = getelementptr i64, ptr %env, i64 {E_CALLBACK}")
        self.e("%cbi = load i64, ptr %cbp")
        self.e("%cb = inttoptr i64 %cbi to ptr")
        if start == 0:
            # a run starts here: status clear, the full budget, r1 = context, r2-r5 = the
            # arguments, r10 = the outermost frame, the rest 0 (no stores from Python needed)
            self.e(f"store i64 {ST_OK}, ptr %status")
            p = self.env(E_BUDGET_INIT)
            self.e(f"%bud0 = load i64, ptr {p}")
            for r in range(isa.NUM_REGS):
                if 2 <= r <= 5:
                    v = self.t()
                    self.e(f"{v} = load i64, ptr " + self.env(E_ARGS + r - 2))
                else:
                    v = {1: str(CTX_BASE), 10: str(STACK_TOP)}.get(r, "0")
                self.put(r, v)
        else:
            self.e("%bud0 = load i64, ptr %budgetp")
            for r in range(isa.NUM_REGS):
                p = self.env(E_REGS + r)
                v = self.t()
                self.e(f"{v} = load i64, ptr {p}")
                self.put(r, v)
        self.e("store i64 %bud0, ptr %n")
        self.e(f"br label %b{start}")
        for b, bend in blocks:
            self.block(b, [pc for pc in slots if b <= pc < bend], bend)
        self.label("bail")
        self.e("%nb = load i64, ptr %n")
        self.e("store i64 %nb, ptr %budgetp")
        self.e("ret i64 0")
        self.lines.append("}")
        return self.lines

    def block(self, b: int, pcs: list[int], bend: int) -> None:
        self.label(f"b{b}")
        n, n2, c, ok = self.t(), self.t(), self.t(), self.gen.new_label()
        self.e(f"{n} = load i64, ptr %n")
        self.e(f"{n2} = sub i64 {n}, {len(pcs)}")
        self.e(f"store i64 {n2}, ptr %n")
        self.e(f"{c} = icmp slt i64 {n2}, 0")
        self.e(f"br i1 {c}, label %budget, label %{ok}")
        self.label(ok)
        terminated = False
        for pc in pcs:
            terminated = self.insn(pc, self.insns[pc])
        if not terminated:
            self.e(f"br label %b{bend}")

    # -- instructions -------------------------------------------------------------------------
    def insn(self, pc: int, i: isa.Insn) -> bool:
        """Emit one instruction; True when it ended the block."""
        cls = i.opcode & 7
        if cls in (isa.ALU, isa.ALU64):
            self.alu(i)
            return False
        if cls in (isa.JMP, isa.JMP32):
            return self.jump(pc, i)
        if cls == isa.LD:
            self.ld(pc, i)
            return False
        self.mem(i)
        return False

    def operand(self, i: isa.Insn, wide: bool) -> str:
        if i.opcode & isa.X:
            return self.get(i.src)
        return str(alu.s64(i.imm & M64) if wide else i.imm & M32)

    def alu(self, i: isa.Insn) -> None:
        wide = i.opcode & 7 == isa.ALU64
        d = i.dst
        if i.opcode & 0xF0 == isa.END:
            bits = i.imm
            a = self.get(d)
            if i.opcode & 7 == isa.ALU and i.opcode & 0x08 == isa.TO_LE:
                if bits == 64:
                    return
                t, z = self.t(), self.t()
                self.e(f"{t} = trunc i64 {a} to i{bits}")
                self.e(f"{z} = zext i{bits} {t} to i64")
                self.put(d, z)
                return
            if bits == 64:
                v = self.t()
                self.e(f"{v} = call i64 @llvm.bswap.i64(i64 {a})")
                self.put(d, v)
                return
            t, s, z = self.t(), self.t(), self.t()
            self.e(f"{t} = trunc i64 {a} to i{bits}")
            self.e(f"{s} = call i{bits} @llvm.bswap.i{bits}(i{bits} {t})")
            self.e(f"{z} = zext i{bits} {s} to i64")
            self.put(d, z)
            return
        name = alu.alu_name(i)
        ty = "i64" if wide else "i32"
        bits = 64 if wide else 32
        src = self.operand(i, wide)
        if name == "mov" and wide:
            self.put(d, src)
            return
        if name.startswith("movsx"):
            k = int(name[5:])
            t, s = self.t(), self.t()
            self.e(f"{t} = trunc i64 {src} to i{k}")
            self.e(f"{s} = sext i{k} {t} to {ty}")
            self.put(d, self.widen(s, wide))
            return
        if wide:
            a, b = self.get(d), src
        else:
            b = self.narrow(src) if i.opcode & isa.X else src
            a = self.narrow(self.get(d)) if name != "mov" else "0"
        v = self.t()
        simple = {"add": "add", "sub": "sub", "mul": "mul", "or": "or", "and": "and", "xor": "xor"}
        if name in simple:
            self.e(f"{v} = {simple[name]} {ty} {a}, {b}")
        elif name == "mov":
            v = b
        elif name == "neg":
            self.e(f"{v} = sub {ty} 0, {a}")
        elif name in ("lsh", "rsh", "arsh"):
            m = self.t()
            self.e(f"{m} = and {ty} {b}, {bits - 1}")
            op = {"lsh": "shl", "rsh": "lshr", "arsh": "ashr"}[name]
            self.e(f"{v} = {op} {ty} {a}, {m}")
        else:                                # div, mod, sdiv, smod
            z, one, safe, q = self.t(), self.t(), self.t(), self.t()
            self.e(f"{z} = icmp eq {ty} {b}, 0")
            if name in ("sdiv", "smod"):
                m1, bad = self.t(), self.t()
                self.e(f"{m1} = icmp eq {ty} {b}, -1")
                self.e(f"{bad} = or i1 {z}, {m1}")
                self.e(f"{safe} = select i1 {bad}, {ty} 1, {ty} {b}")
                op = "sdiv" if name == "sdiv" else "srem"
                self.e(f"{q} = {op} {ty} {a}, {safe}")
                # b == -1: quotient -a (wraps for INT_MIN), remainder 0
                alt, r1 = self.t(), self.t()
                self.e(f"{alt} = " + (f"sub {ty} 0, {a}" if name == "sdiv" else f"add {ty} 0, 0"))
                self.e(f"{r1} = select i1 {m1}, {ty} {alt}, {ty} {q}")
                q = r1
            else:
                self.e(f"{one} = select i1 {z}, {ty} 1, {ty} {b}")
                op = "udiv" if name == "div" else "urem"
                self.e(f"{q} = {op} {ty} {a}, {one}")
            zero_result = "0" if name in ("div", "sdiv") else a
            self.e(f"{v} = select i1 {z}, {ty} {zero_result}, {ty} {q}")
        self.put(d, self.widen(v, wide))

    def narrow(self, v: str) -> str:
        if not v.startswith("%"):
            return str(int(v) & M32)
        t = self.t()
        self.e(f"{t} = trunc i64 {v} to i32")
        return t

    def widen(self, v: str, wide: bool) -> str:
        if wide:
            return v
        if not v.startswith("%"):
            return str(int(v) & M32)
        t = self.t()
        self.e(f"{t} = zext i32 {v} to i64")
        return t

    def jump(self, pc: int, i: isa.Insn) -> bool:
        op, cls = i.opcode & 0xF0, i.opcode & 7
        if op == isa.JA:
            self.e(f"br label %b{isa.jump_target(pc, i)}")
            return True
        if op == isa.EXIT:
            self.leave()
            return True
        if op == isa.CALL:
            self.call(pc, i)
            return False
        wide = cls == isa.JMP
        ty = "i64" if wide else "i32"
        a = self.get(i.dst)
        b = self.operand(i, wide)
        if not wide:
            a = self.narrow(a)
            if i.opcode & isa.X:
                b = self.narrow(b)
            else:
                b = str(alu.s32(int(b)))
        c = self.t()
        if op == isa.JSET:
            x = self.t()
            self.e(f"{x} = and {ty} {a}, {b}")
            self.e(f"{c} = icmp ne {ty} {x}, 0")
        else:
            pred = {isa.JEQ: "eq", isa.JNE: "ne", isa.JGT: "ugt", isa.JGE: "uge", isa.JLT: "ult",
                    isa.JLE: "ule", isa.JSGT: "sgt", isa.JSGE: "sge", isa.JSLT: "slt",
                    isa.JSLE: "sle"}[op]
            self.e(f"{c} = icmp {pred} {ty} {a}, {b}")
        self.e(f"br i1 {c}, label %b{pc + i.off + 1}, label %b{pc + 1}")
        return True

    def leave(self) -> None:
        """Exit: the register file goes back to env (the caller reloads r0-r5, the wrapper
        reads all of them)."""
        last = isa.NUM_REGS if self.start == 0 else 10
        for r in range(last):
            v = self.get(r)
            self.e(f"store i64 {v}, ptr " + self.env(E_REGS + r))
        n = self.t()
        self.e(f"{n} = load i64, ptr %n")
        self.e(f"store i64 {n}, ptr %budgetp")
        r0 = self.get(0)
        self.e(f"ret i64 {r0}")

    def call(self, pc: int, i: isa.Insn) -> None:
        if i.src == isa.PSEUDO_CALL:
            target = pc + i.imm + 1
            deep, ok = self.t(), self.gen.new_label()
            self.e(f"{deep} = icmp sge i64 %depth, {isa.MAX_CALL_DEPTH - 1}")
            self.e(f"br i1 {deep}, label %depth_err, label %{ok}")
            self.gen.needs_depth.add(self.start)
            self.label(ok)
            for r in range(10):
                v = self.get(r)
                self.e(f"store i64 {v}, ptr " + self.env(E_REGS + r))
            fp, fp2 = self.get(10), self.t()
            self.e(f"{fp2} = sub i64 {fp}, {isa.STACK_SIZE}")
            self.e(f"store i64 {fp2}, ptr " + self.env(E_REGS + 10))
            n = self.t()
            self.e(f"{n} = load i64, ptr %n")
            self.e(f"store i64 {n}, ptr %budgetp")
            d1 = self.t()
            self.e(f"{d1} = add i64 %depth, 1")
            self.e(f"call i64 @f{target}(ptr %env, i64 {d1})")
            n2 = self.t()
            self.e(f"{n2} = load i64, ptr %budgetp")
            self.e(f"store i64 {n2}, ptr %n")
            self.check_status()
            for r in range(6):
                v = self.t()
                self.e(f"{v} = load i64, ptr " + self.env(E_REGS + r))
                self.put(r, v)
            return
        hid = self.get(i.dst) if i.opcode & isa.X else str(i.imm)     # callx: id in dst
        args = [self.get(r) for r in range(1, 6)]
        if not i.opcode & isa.X and i.imm == TAIL_CALL and self.start != 0:
            self.tail_call_in_subprog(args)
            return
        if i.opcode & isa.X or i.imm not in self.gen.native:
            self.put(0, self.callback(CB_HELPER, hid, *args))
            return
        handled = self.t()
        self.e(f"{handled} = call i1 @h{i.imm}(ptr %env, " + ", ".join(f"i64 {a}" for a in args)
               + ", ptr %hres)")
        fast, slow, join = self.gen.new_label(), self.gen.new_label(), self.gen.new_label()
        self.e(f"br i1 {handled}, label %{fast}, label %{slow}")
        self.label(fast)
        v1 = self.t()
        self.e(f"{v1} = load i64, ptr %hres")
        self.e(f"br label %{join}")
        self.label(slow)
        v2 = self.callback(CB_HELPER, hid, *args)
        end = self.current_label()
        self.e(f"br label %{join}")
        self.label(join)
        v = self.t()
        self.e(f"{v} = phi i64 [{v1}, %{fast}], [{v2}, %{end}]")
        self.put(0, v)

    def tail_call_in_subprog(self, args: list[str]) -> None:
        """bpf_tail_call in a subprogram: when the callback ran the target (status
        ST_TAILRET), the target's r0 is this function's return value."""
        v, s, c = self.t(), self.t(), self.t()
        done, went_on = self.gen.new_label(), self.gen.new_label()
        self.e(f"{v} = call i64 %cb(i64 {CB_TAIL_SUB}, i64 {TAIL_CALL}, "
               + ", ".join(f"i64 {a}" for a in args) + ")")
        self.e(f"{s} = load volatile i64, ptr %status")
        self.e(f"{c} = icmp eq i64 {s}, {ST_TAILRET}")
        self.e(f"br i1 {c}, label %{done}, label %{went_on}")
        self.label(done)
        self.e(f"store i64 {ST_OK}, ptr %status")
        self.put(0, v)
        self.leave()
        self.label(went_on)
        self.check_status()
        self.put(0, v)

    def ld(self, pc: int, i: isa.Insn) -> None:
        if i.opcode == isa.LD_IMM64:
            value = self.gen.ld_imm64(pc)
            self.put(i.dst, str(alu.s64(value)))
            return
        size = SIZE[i.opcode & 0x18]
        if i.opcode & 0xE0 == isa.IND:
            s, off = self.get(i.src), self.t()
            self.e(f"{off} = add i64 {s}, {alu.s64(i.imm & M64)}")
        else:
            off = str(alu.s64(i.imm & M64))
        self.put(0, self.callback(CB_LDPKT, off, str(size)))

    def address(self, base: int, off: int) -> str:
        a = self.t()
        self.e(f"{a} = add i64 {self.get(base)}, {off}")
        return a

    def host(self, addr: str, size: int, write: bool) -> tuple[str, str, str]:
        """(pointer, fast label, slow label): branch on the region lookup."""
        p, isnull = self.t(), self.t()
        fast, slow = self.gen.new_label(), self.gen.new_label()
        self.e(f"{p} = call ptr @addr(ptr %env, i64 {addr}, i64 {size}, i1 {int(write)})")
        self.e(f"{isnull} = icmp eq ptr {p}, null")
        self.e(f"br i1 {isnull}, label %{slow}, label %{fast}")
        return p, fast, slow

    def mem(self, i: isa.Insn) -> None:
        cls, mode = i.opcode & 7, i.opcode & 0xE0
        size = SIZE[i.opcode & 0x18]
        ity = f"i{size * 8}"
        if cls == isa.LDX:
            addr = self.address(i.src, i.off)
            p, fast, slow = self.host(addr, size, False)
            join = self.gen.new_label()
            ext = "sext" if mode == isa.MEMSX else "zext"
            self.label(fast)
            tp, raw, v1 = self.t(), self.t(), self.t()
            self.e(f"{tp} = bitcast ptr {p} to ptr")
            self.e(f"{raw} = load {ity}, ptr {tp}, align 1")
            if size == 8:
                v1 = raw
            else:
                self.e(f"{v1} = {ext} {ity} {raw} to i64")
            self.e(f"br label %{join}")
            self.label(slow)
            v2 = self.callback(CB_LOAD, addr, str(size))
            if mode == isa.MEMSX:
                t, v3 = self.t(), self.t()
                self.e(f"{t} = trunc i64 {v2} to {ity}")
                self.e(f"{v3} = sext {ity} {t} to i64")
                v2 = v3
            end_label = self.current_label()
            self.e(f"br label %{join}")
            self.label(join)
            v = self.t()
            self.e(f"{v} = phi i64 [{v1}, %{fast}], [{v2}, %{end_label}]")
            self.put(i.dst, v)
            return
        if cls == isa.ST:
            value = str(alu.s64(i.imm & M64))
        elif mode == isa.MEM:
            value = self.get(i.src)
        else:
            self.atomic(i, size)
            return
        addr = self.address(i.dst, i.off)
        p, fast, slow = self.host(addr, size, True)
        join = self.gen.new_label()
        self.label(fast)
        tp, tv = self.t(), self.t()
        self.e(f"{tp} = bitcast ptr {p} to ptr")
        self.e(f"{tv} = trunc i64 {value} to {ity}" if size < 8 else f"{tv} = add i64 {value}, 0")
        self.e(f"store {ity} {tv}, ptr {tp}, align 1")
        self.e(f"br label %{join}")
        self.label(slow)
        self.callback(CB_STORE, addr, str(size), value)
        self.e(f"br label %{join}")
        self.label(join)

    def current_label(self) -> str:
        for line in reversed(self.lines):
            if line.endswith(":") and not line.startswith(" "):
                return line[:-1]
        raise AssertionError("no label")

    def atomic(self, i: isa.Insn, size: int) -> None:
        addr = self.address(i.dst, i.off)
        old = self.callback(CB_ATOMIC, addr, str(size), str(i.imm), self.get(i.src), self.get(0))
        if i.imm == isa.CMPXCHG:
            self.put(0, old)
        elif i.imm & isa.FETCH:
            self.put(i.src, old)


class _Gen:
    def __init__(self, program: Program, mem: Any) -> None:
        self.program, self.insns, self.mem = program, program.insns, mem
        self.labels = 0
        self.needs_depth: set[int] = set()
        self.native, self.array_maps = native_helpers(program)

    def new_label(self) -> str:
        self.labels += 1
        return f"L{self.labels}"

    def ld_imm64(self, pc: int) -> int:
        return resolve_ld_imm64(self.program, self.mem, self.insns[pc], self.insns[pc + 1], pc)

    def generate(self) -> str:
        out = [_PRELUDE, *self.native.values()]
        for start, end in analysis.functions(self.insns):
            lines = _Fn(self, start, end).generate()
            # error exits shared by the function's blocks
            tail = ["budget:", f"  store i64 {ST_BUDGET}, ptr %status", "  ret i64 0"]
            if start in self.needs_depth:
                tail += ["depth_err:", f"  store i64 {ST_DEPTH}, ptr %status", "  ret i64 0"]
            out.extend(lines[:-1] + tail + ["}"])
        out.append("define i64 @bpf_main(ptr %env) {\nentry:\n"
                   "  %r = call i64 @f0(ptr %env, i64 0)\n  ret i64 %r\n}\n")
        return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# The engine

class NativeProgram:
    """A program compiled to machine code.  ``__call__`` raises VMError like the other engines;
    ``run`` returns a RunResult and never raises for program errors.  ``regs`` holds the register
    file after a run that finished normally."""

    def __init__(self, program: Program, *, budget: int = DEFAULT_BUDGET) -> None:
        self.program = program
        self.budget = budget
        self.mem, self.stack, self._ctx_region = new_memory(program)
        self.vm = VMContext(program, self.mem)
        bind_callbacks(self.vm)
        self._tail = calls_helper(program, 12)
        gen = _Gen(program, self.mem)
        self.source = gen.generate()
        self._engine, addr = _compile_ir(self.source)
        self._entry = ENTRY(addr)
        self._env = (ctypes.c_uint64 * (E_MAPBASE + len(program.maps)))()
        self._native_skb = 68 in gen.native or 26 in gen.native
        # id(values) -> map index, for the array maps the native lookup serves
        self._map_values = {id(program.maps[i].values): i for i in gen.array_maps}
        self._table = (ctypes.c_uint64 * (4 * MAX_REGIONS))()
        self._rows: list[tuple] = []           # per row: (region, buf, end, writable, export)
        self._stack_export = (ctypes.c_char * len(self.stack)).from_buffer(self.stack)
        self._callback = CALLBACK(self._on_callback)
        env = self._env
        env[E_STACK] = ctypes.addressof(self._stack_export)
        env[E_REGIONS] = ctypes.addressof(self._table)
        env[E_CALLBACK] = ctypes.cast(self._callback, ctypes.c_void_p).value
        env[E_BUDGET_INIT] = budget
        self._env_addr = ctypes.addressof(env)
        self._locked = False
        self._args = False                    # E_ARGS holds a run's arguments
        self._pending: BaseException | None = None
        self._stop = 0
        self._helpers = program.helpers
        self.entry = self._python_entry = self._make_entry()
        self._fast_ok = not (self._native_skb or self._tail)
        trampoline = _trampoline_address()
        if trampoline is not None:
            self._finisher = self._finish     # kept alive: env holds only its address
            env[E_MAIN], env[E_FAST] = addr, int(self._fast_ok)
            env[E_FALLBACK], env[E_FINISH] = id(self._python_entry), id(self._finisher)
            env[E_REGLIST] = id(self.mem.regions)
            self._method = _MethodDef(b"bpf_entry", trampoline, METH_O, None)
            self.entry = _builtin(self._method, env)

    def _make_entry(self) -> Any:
        """``entry(ctx) -> r0``: a run on a bytes context with the env and packet of the last
        ``__call__`` (as ``JitProgram.entry``, for callers that bind those once); VMError on a
        fault.  Other contexts take ``__call__``."""
        e, region, rows, regions = self._env, self._ctx_region, self._rows, self.mem.regions
        call, addr, data = self._entry, self._env_addr, _BYTES_DATA

        def entry(ctx: bytes) -> int:
            if type(ctx) is not bytes or self._args or self._native_skb or self._tail:
                return self(ctx, env=self.vm.env, packet=self.vm.packet)
            region.buf, region.end, region.writable = ctx, CTX_BASE + len(ctx), False
            e[E_CTX_HOST] = id(ctx) + data
            e[E_CTX_LEN] = len(ctx)
            e[E_CTX_W] = 0
            if len(rows) != len(regions):
                self._sync()
            r0 = call(addr)
            status = e[E_STATUS]
            return r0 if status == ST_OK else self._finish(status)
        return entry

    # -- region table -----------------------------------------------------------------------------
    def _bind_row(self, k: int) -> None:
        """Row ``k`` of the region table from ``mem.regions[k]`` (re-exported when its buffer,
        size or writability changed)."""
        region: Any = self.mem.regions[k]
        rows = self._rows
        if region is self._ctx_region:        # the context is served by the E_CTX_* words
            region = _NO_REGION
        if k < len(rows):
            row = rows[k]
            if row[0] is region and row[1] is region.buf and row[2] == region.end \
                    and row[3] == region.writable:
                return
        export, host = _export(region.buf)
        row = (region, region.buf, region.end, region.writable, export)
        if k < len(rows):
            rows[k] = row
        else:
            rows.append(row)
        if host is not None and not isinstance(region.buf, bytes):
            self._locked = True               # a bytearray export forbids resizing: release it
        index = self._map_values.get(id(region.buf))
        if index is not None and self.program.maps[index].values is region.buf:
            self._env[E_MAPBASE + index] = region.start
        table, base = self._table, 4 * k
        if host is None:                      # not addressable from native code: slow path
            table[base], table[base + 1] = 0, 0
        else:
            table[base], table[base + 1] = region.start, region.end
        table[base + 2], table[base + 3] = host or 0, int(region.writable)

    def _sync(self) -> None:
        """Bring the whole region table in line with ``mem.regions``."""
        n = min(len(self.mem.regions), MAX_REGIONS)
        del self._rows[n:]
        for k in range(n):
            self._bind_row(k)
        self._env[E_NREG] = n

    def _release(self) -> None:
        """Drop the exports of the per-run buffers (context, packet), so their owners may resize
        them between runs."""
        rows, table = self._rows, self._table
        for k in (2,):
            if k < len(rows) and rows[k][1] is not None and not isinstance(rows[k][1], bytes):
                rows[k] = (rows[k][0], None, 0, False, None)
                table[4 * k], table[4 * k + 1] = 0, 0
        self._locked = False

    # -- callbacks --------------------------------------------------------------------------------
    def _adopt_context(self, obj: int) -> None:
        """A trampoline run leaves the context's region to the first callback that needs it."""
        ctx = ctypes.cast(obj, ctypes.py_object).value
        region = self._ctx_region
        region.buf, region.end, region.writable = ctx, CTX_BASE + len(ctx), False
        self._env[E_CTX_OBJ] = 0

    def _on_callback(self, kind: int, a: int, b: int, c: int, d: int, e: int, f: int) -> int:
        try:
            obj = self._env[E_CTX_OBJ]
            if obj:
                self._adopt_context(obj)
            if kind == CB_LOAD:
                return self.mem.load(a, b)
            if kind == CB_STORE:
                self.mem.store(a, b, c)
                return 0
            if kind == CB_TAIL_SUB:
                return self._tail_call_in_subprog(b, c, d, e, f)
            if kind == CB_HELPER:
                fn = self._helpers.get(a)
                if fn is None:
                    raise VMError(f"callx: unknown helper {a}")
                value = fn(self.vm, b, c, d, e, f) & M64
                self._sync()
                return value
            if kind == CB_ATOMIC:
                mem, size = self.mem, b
                old = mem.load(a, size)
                if c == isa.CMPXCHG:
                    if old == e & (M64 if size == 8 else M32):
                        mem.store(a, size, d)
                else:
                    mem.store(a, size, alu.atomic(c, old, d, M64 if size == 8 else M32))
                return old
            if kind == CB_LDPKT:
                off = alu.s32(a)
                data = self.vm.packet
                if data is None or off < 0 or off + b > len(data):
                    raise StopProgram(0)
                return int.from_bytes(data[off:off + b], "big")
            raise AssertionError(f"unknown callback {kind}")
        except StopProgram as stop:
            self._stop = stop.value & M64
            self._env[E_STATUS] = ST_STOP
        except BaseException as err:      # noqa: BLE001 - re-raised by __call__ after the run
            self._pending = err
            self._env[E_STATUS] = ST_EXC
        return 0

    def _tail_call_in_subprog(self, *args: int) -> int:
        try:
            value = self._helpers[TAIL_CALL](self.vm, *args) & M64
        except TailCall as tc:
            value = tail_call_in_subprog(tc, self._ctx_region.buf, self.vm, self.stack,
                                         self._save_run, self._restore_run) & M64
            self._env[E_STATUS] = ST_TAILRET
        self._sync()
        return value

    def _save_run(self) -> tuple:
        """What a run keeps outside the stack (the target may be this program again)."""
        return (bytes(self._env), bytes(self._table), list(self._rows), self._locked,
                self._args)

    def _restore_run(self, state: tuple) -> None:
        env, table, rows, self._locked, self._args = state
        ctypes.memmove(self._env, env, len(env))
        ctypes.memmove(self._table, table, len(table))
        self._rows[:] = rows

    # -- running ----------------------------------------------------------------------------------
    def __call__(self, ctx=b"", *, env: Any = None, packet: Any = None,
                 args: Sequence[int] = ()) -> int:
        vm, ctx_region, e = self.vm, self._ctx_region, self._env
        vm.env = env
        if self._tail:
            vm.tail_calls, vm.tail_start = vm.tail_start, 0
        if packet is not None or vm.packet is not None:
            bind_run(self.mem, ctx_region, vm, ctx, env, packet, self.program.ctx_writable)
        # bind_run's context rebind, inline: this is the per-call overhead of the tier
        ctx_region.buf, ctx_region.end = ctx, CTX_BASE + len(ctx)
        if type(ctx) is bytes:
            ctx_region.writable = False
            # single stores: a slice assignment to a ctypes array costs twenty times more
            e[E_CTX_HOST], e[E_CTX_LEN], e[E_CTX_W] = id(ctx) + _BYTES_DATA, len(ctx), 0
        else:
            ctx_region.writable = writable = self.program.ctx_writable and not isinstance(ctx, bytes)
            if type(ctx) is bytearray and _BYTEARRAY_START is not None:
                host = _c_void_p.from_address(id(ctx) + _BYTEARRAY_START).value or 0
                e[E_CTX_HOST], e[E_CTX_LEN], e[E_CTX_W] = host, len(ctx), writable
            else:                              # not addressable: every access takes the slow path
                e[E_CTX_LEN] = 0
        if args or self._args:
            e[E_ARGS:E_ARGS + 4] = [v & M64 for v in args] + [0] * (4 - len(args))  # type: ignore[assignment]  # ints fill a ctypes array
            self._args = bool(args)
            e[E_FAST] = int(self._fast_ok and not self._args)  # the trampoline passes no arguments
        if self._native_skb:
            data = getattr(env, "data", None)
            if type(data) is bytes and hasattr(env, "network_header") and hasattr(env, "mac_header"):
                mac = env.mac_header
                e[E_SKB_OK], e[E_SKB_DATA], e[E_SKB_LEN] = 1, id(data) + _BYTES_DATA, len(data)
                e[E_SKB_MAC], e[E_SKB_NET] = M64 if mac is None else mac, env.network_header
            else:
                e[E_SKB_OK] = 0
        rows, regions = self._rows, self.mem.regions
        if len(rows) != len(regions):
            self._sync()
        elif regions[2].buf is not rows[2][1]:
            self._bind_row(2)                 # the packet
        r0 = self._entry(self._env_addr)
        if self._locked:
            self._release()
        status = e[E_STATUS]
        if status == ST_OK:
            return r0
        return self._finish(status)

    def _finish(self, status: int) -> int:
        """The result of a run that set the status word (or the error it raises)."""
        if status == ST_STOP:
            return self._stop
        if status == ST_EXC:
            err, self._pending = self._pending, None
            if isinstance(err, TailCall):
                r0 = follow_tail_call(err, self._ctx_region.buf)
                self.vm.tail_calls = err.final
                return r0
            raise err
        if status == ST_BUDGET:
            raise BudgetExceeded(f"instruction budget of {self.budget} exceeded")
        raise CallDepthExceeded(f"call depth exceeds {isa.MAX_CALL_DEPTH} frames")

    @property
    def regs(self) -> list[int]:
        """r0-r10 after the last run that finished normally."""
        return list(self._env[E_REGS:E_REGS + isa.NUM_REGS])

    def run(self, ctx=b"", *, env: Any = None, packet: Any = None,
            args: Sequence[int] = ()) -> RunResult:
        try:
            return RunResult(self(ctx, env=env, packet=packet, args=args))
        except VMError as err:
            return RunResult(0, str(err))


def _export(buf: Any) -> tuple[Any, int | None]:
    """(object keeping the export alive, host address) of a buffer, or (None, None)."""
    if len(buf) == 0:
        return None, None
    if isinstance(buf, bytes):            # immutable: its data sits at a fixed offset in it
        return buf, id(buf) + _BYTES_DATA
    try:
        export = (ctypes.c_char * len(buf)).from_buffer(buf)
    except (TypeError, ValueError, BufferError):
        return None, None                     # read-only or odd buffer: the Python path serves it
    return export, ctypes.addressof(export)


class _NoRegion:
    """Stands for the context in the region table (served inline instead)."""
    start = end = 0
    buf = b""
    writable = False


_NO_REGION = _NoRegion()
_c_void_p = ctypes.c_void_p


def _bytearray_start_offset() -> int | None:
    """Where a bytearray keeps the address of its data (CPython's ob_start), checked against
    the buffer protocol's answer; None when the layout is not the expected one."""
    probe = bytearray(b"-tracesim")
    del probe[:1]                         # data no longer at the allocation's start
    export = (ctypes.c_char * len(probe)).from_buffer(probe)
    want = ctypes.addressof(export)
    del export
    for off in range(16, 64, 8):
        if ctypes.c_void_p.from_address(id(probe) + off).value == want:
            return off
    return None


_BYTEARRAY_START = _bytearray_start_offset()


def _bytes_data_offset() -> int:
    """Where a bytes object's data starts, from its address (CPython's PyBytesObject);
    checked by reading the data back."""
    probe = b"tracesim-probe"
    off = ctypes.cast(ctypes.c_char_p(probe), ctypes.c_void_p).value - id(probe)
    if not 0 < off < 256 or ctypes.string_at(id(probe) + off, len(probe)) != probe:
        raise ImportError("unexpected bytes object layout")   # not CPython: no native tier
    return off


try:
    _BYTES_DATA = _bytes_data_offset()
except ImportError as _layout:           # pragma: no cover - only off CPython
    IMPORT_ERROR, _BYTES_DATA = str(_layout), 0


# ---------------------------------------------------------------------------------------------
# The entry trampoline: ``NativeProgram.entry`` as a CPython builtin.
#
# Calling machine code through a ctypes prototype costs more than a short program's whole run
# (argument conversion, the GIL released and retaken, a Python function around it).  The
# trampoline is a METH_O builtin written in IR, bound to the program's env array: for a bytes
# context while the region table is current it fills the context words, calls the program's
# ``bpf_main`` and returns r0 as an int.  Anything else (another context type, run arguments,
# tail calls, a stale table, a run that ended with a status) goes to the Python entry or to
# ``_finish``, so results and errors are the Python path's by construction.  It relies on
# CPython's object layouts (type at +8, size at +16, bytes data, ctypes' buffer pointer), each
# checked at first use; where one is not as expected the Python entry stays.

METH_O = 0x0008


class _MethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p),
                ("ml_flags", ctypes.c_int), ("ml_doc", ctypes.c_char_p)]


_trampoline: Any = None                   # (engine, address) once built; False if unavailable


def _ctypes_buffer_offset() -> int | None:
    """Where a ctypes array keeps the address of its buffer, from its object address."""
    probe = (ctypes.c_uint64 * 2)()
    for off in range(16, 64, 8):
        if ctypes.c_void_p.from_address(id(probe) + off).value == ctypes.addressof(probe):
            return off
    return None


def _layout_ok() -> bool:
    size = ctypes.c_ssize_t.from_address
    kind = ctypes.c_void_p.from_address
    data, items = b"tracesim", [1, 2, 3]
    return (size(id(data) + 16).value == len(data) and size(id(items) + 16).value == len(items)
            and kind(id(data) + 8).value == id(bytes) and _BYTES_DATA > 0)


def _api(name: str) -> int:
    return ctypes.cast(getattr(ctypes.pythonapi, name), ctypes.c_void_p).value or 0


def _trampoline_ir(buffer_off: int) -> str:
    pylong, call1, decref = (_api("PyLong_FromUnsignedLongLong"), _api("PyObject_CallOneArg"),
                             _api("Py_DecRef"))

    def word(name: str, index: int) -> str:
        return f"  %{name}p = getelementptr i64, ptr %env, i64 {index}\n"
    return f"""
define ptr @bpf_entry(ptr %self, ptr %arg) {{
entry:
  %envpp = getelementptr i8, ptr %self, i64 {buffer_off}
  %env = load ptr, ptr %envpp
{word("fast", E_FAST)}  %fast = load i64, ptr %fastp
  %typep = getelementptr i8, ptr %arg, i64 8
  %type = load i64, ptr %typep
  %isbytes = icmp eq i64 %type, {id(bytes)}
  %allowed = icmp ne i64 %fast, 0
  %ok1 = and i1 %isbytes, %allowed
{word("rl", E_REGLIST)}  %rl = load ptr, ptr %rlp
  %rszp = getelementptr i8, ptr %rl, i64 16
  %rsz = load i64, ptr %rszp
{word("nreg", E_NREG)}  %nreg = load i64, ptr %nregp
  %current = icmp eq i64 %rsz, %nreg
  %ok = and i1 %ok1, %current
  br i1 %ok, label %run, label %slow
run:
{word("obj", E_CTX_OBJ)}  store ptr %arg, ptr %objp
{word("host", E_CTX_HOST)}  %data = getelementptr i8, ptr %arg, i64 {_BYTES_DATA}
  %datai = ptrtoint ptr %data to i64
  store i64 %datai, ptr %hostp
  %lenp = getelementptr i8, ptr %arg, i64 16
  %len = load i64, ptr %lenp
{word("clen", E_CTX_LEN)}  store i64 %len, ptr %clenp
{word("cw", E_CTX_W)}  store i64 0, ptr %cwp
{word("main", E_MAIN)}  %main = load ptr, ptr %mainp
  %r0 = call i64 %main(ptr %env)
  store ptr null, ptr %objp
{word("status", E_STATUS)}  %status = load i64, ptr %statusp
  %good = icmp eq i64 %status, {ST_OK}
  br i1 %good, label %done, label %finish
done:
  %pylong = inttoptr i64 {pylong} to ptr
  %out = call ptr %pylong(i64 %r0)
  ret ptr %out
finish:
  %pylong2 = inttoptr i64 {pylong} to ptr
  %code = call ptr %pylong2(i64 %status)
  %nocode = icmp eq ptr %code, null
  br i1 %nocode, label %fail, label %callfin
callfin:
{word("fin", E_FINISH)}  %fin = load ptr, ptr %finp
  %call1 = inttoptr i64 {call1} to ptr
  %res = call ptr %call1(ptr %fin, ptr %code)
  %decref = inttoptr i64 {decref} to ptr
  call void %decref(ptr %code)
  ret ptr %res
fail:
  ret ptr null
slow:
{word("fb", E_FALLBACK)}  %fb = load ptr, ptr %fbp
  %call2 = inttoptr i64 {call1} to ptr
  %res2 = call ptr %call2(ptr %fb, ptr %arg)
  ret ptr %res2
}}
"""


def _trampoline_address() -> int | None:
    """The trampoline's machine code (built once), or None where it cannot be used."""
    global _trampoline
    if _trampoline is None:
        _trampoline = False
        offset = _ctypes_buffer_offset()
        if offset is not None and _layout_ok() and _binding() is not None:
            tm = _machine()
            mod = _llvm.parse_assembly(_trampoline_ir(offset))
            mod.verify()
            engine = _llvm.create_mcjit_compiler(mod, tm)
            engine.finalize_object()
            _trampoline = (engine, engine.get_function_address("bpf_entry"))
    return _trampoline[1] if _trampoline else None


def _builtin(method: _MethodDef, bound: Any) -> Any:
    """A builtin function object calling ``method`` with ``bound`` as its self."""
    new = ctypes.pythonapi.PyCFunction_NewEx
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.c_void_p, ctypes.py_object, ctypes.py_object]
    return new(ctypes.addressof(method), bound, None)


def compile_native(program: Program, *, budget: int = DEFAULT_BUDGET) -> NativeProgram:
    """The NativeProgram for ``program`` (built on first use, then cached on the Program);
    ``NativeUnavailable`` without llvmlite."""
    if _binding() is None:
        raise NativeUnavailable(f"llvmlite is not available: {IMPORT_ERROR}")
    key = ("native", budget)
    cached = program.jit_cache.get(key)
    if cached is None:
        cached = program.jit_cache[key] = NativeProgram(program, budget=budget)
    return cached
