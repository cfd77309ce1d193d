"""Load-time checks of a BPF program and the ``Program`` record both engines run.

``check_program`` rejects what no engine can run: unknown opcodes, reserved fields that RFC 9669
says must be zero (``check_reserved``), a broken LD_IMM64 pair, jumps out of the program or into
the middle of an LD_IMM64, writes to the read-only r10, unknown helpers and maps, and a last
instruction that could fall off the end.  It is not the verifier (no types, no bounds): the engines
stay safe through the memory interface instead.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracesim.filters.bpf.runtime.helper_table import TABLE, implementations
from tracesim.filters.bpf.runtime.helpers import Helper
from tracesim.filters.bpf.runtime.helpers_maps import MAP_HANDLE_BASE, MAP_HANDLE_STRIDE, map_from_handle
from tracesim.filters.bpf.toolchain.disasm import format_insn
from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.analysis import is_pseudo_call
from tracesim.filters.bpf.vm.isa import Insn

__all__ = ["Program", "ProgramError", "load_program", "check_program", "check_reserved",
           "map_from_handle", "DEFAULT_BUDGET"]

DEFAULT_BUDGET = 1_000_000   # instructions one run may execute


class ProgramError(ValueError):
    """A program no engine may load; names the instruction index, its text and the field."""

    def __init__(self, index: int, insn: Insn | None, problem: str, next_insn: Insn | None = None):
        self.index, self.insn, self.problem = index, insn, problem
        text = format_insn(insn, next_insn) if insn is not None else ""
        where = f"insn {index} ({text})" if insn is not None else f"insn {index}"
        super().__init__(f"{where}: {problem}")


@dataclass
class Program:
    """A checked program.  ``ctx_size``: bytes of context every run passes (lets the JIT read
    in-bounds context fields directly); ``ctx_writable``: whether the program may store to it."""
    insns: tuple[Insn, ...]
    maps: list = field(default_factory=list)
    helpers: Mapping[int, Helper] = field(default_factory=implementations)
    name: str = ""
    ctx_size: int | None = None
    ctx_writable: bool = False
    jit_cache: dict = field(default_factory=dict, repr=False, compare=False)
    inner_maps: list = field(default_factory=list, repr=False, compare=False)   # see
    # helpers_maps.inner_map_handle: maps a lookup in a map of maps handed to the program

    def map_handle(self, index: int) -> int:
        return MAP_HANDLE_BASE + index * MAP_HANDLE_STRIDE


def load_program(insns: Sequence[Insn], *, maps: Sequence[Any] = (),
                 helpers: Mapping[int, Helper] | None = None, name: str = "",
                 ctx_size: int | None = None, ctx_writable: bool = False) -> Program:
    """Check ``insns`` and wrap them in a ``Program``; raises ``ProgramError``.  ``helpers``:
    the id -> callable map to run with (default: a copy of every helper of ``helper_table``)."""
    helpers = implementations() if helpers is None else helpers
    insns = tuple(Insn(*i) for i in insns)
    check_program(insns, helpers=helpers, maps=maps)
    return Program(insns, list(maps), helpers, name, ctx_size, ctx_writable)


def function_depth(program: Program, pc: int) -> int:
    """The deepest call frame (1: the entry's) the function holding insn ``pc`` may run in: a
    bpf-to-bpf call and a callback loaded with ``ld_imm64 PSEUDO_FUNC`` each add one frame
    below their caller.  Cached on the program."""
    depths = program.jit_cache.get("function_depths")
    if depths is None:
        depths = program.jit_cache["function_depths"] = _function_depths(program.insns)
    starts = sorted(depths)
    return depths[max(s for s in starts if s <= pc)]


def _function_depths(insns: Sequence[Insn]) -> dict[int, int]:
    edges: list[tuple[int, int]] = []          # (insn of the call or load, first insn of callee)
    for pc, i in enumerate(insns):
        if i.opcode == isa.OP_CALL and i.src == isa.PSEUDO_CALL or \
                i.opcode == isa.LD_IMM64 and i.src == isa.PSEUDO_FUNC:
            edges.append((pc, pc + i.imm + 1))
    starts = sorted({0} | {t for _, t in edges})
    depth = {s: 1 if s == 0 else 0 for s in starts}
    for _ in range(isa.MAX_CALL_DEPTH):        # longest path in the (acyclic) call graph
        for pc, target in edges:
            caller = max(s for s in starts if s <= pc)
            if depth[caller]:
                depth[target] = min(max(depth[target], depth[caller] + 1), isa.MAX_CALL_DEPTH)
    return {s: d or 1 for s, d in depth.items()}


# ---------------------------------------------------------------------------------------------
# Field rules.  For each valid opcode: which of dst/src/off/imm must be zero, or the set of values
# allowed.  None = any value.

ANY = None


def _rules(insn: Insn) -> dict[str, Any] | None:
    """Allowed values per field for this opcode; None for an unknown opcode."""
    op, cls = insn.opcode, insn.opcode & 7
    code, x = op & 0xF0, op & isa.X
    if cls in (isa.ALU, isa.ALU64):
        if code == isa.END:
            if cls == isa.ALU64 and x:
                return None
            return {"src": 0, "off": 0, "imm": {16, 32, 64}}
        if code == isa.NEG:
            return None if x else {"src": 0, "off": 0, "imm": 0}
        if code not in isa.ALU_OP_NAMES:
            return None
        offs: Any = 0
        if code in (isa.DIV, isa.MOD):
            offs = {0, 1}
        elif code == isa.MOV and x:
            offs = {0, 8, 16, 32} if cls == isa.ALU64 else {0, 8, 16}
        return {"src": ANY, "off": offs, "imm": 0} if x else {"src": 0, "off": offs, "imm": ANY}
    if cls in (isa.JMP, isa.JMP32):
        if code == isa.JA:
            if x:
                return None
            return {"dst": 0, "src": 0, "imm": 0} if cls == isa.JMP else {"dst": 0, "src": 0, "off": 0}
        if code == isa.CALL:
            if cls != isa.JMP:
                return None
            if x:   # callx: helper id in the dst register (the conformance suite's encoding)
                return {"src": 0, "off": 0, "imm": 0}
            return {"dst": 0, "off": 0, "src": {isa.PSEUDO_CALL, 0}}
        if code == isa.EXIT:
            return None if cls != isa.JMP or x else {"dst": 0, "src": 0, "off": 0, "imm": 0}
        if code not in isa.CONDITIONAL_JUMPS:
            return None
        return {"imm": 0} if x else {"src": 0}
    size, mode = op & 0x18, op & 0xE0
    if cls == isa.LD:
        if op == isa.LD_IMM64:
            return {"off": 0, "src": {0, isa.PSEUDO_MAP_FD, isa.PSEUDO_MAP_VALUE, isa.PSEUDO_FUNC,
                                      isa.PSEUDO_BTF_ID,
                                      isa.PSEUDO_MAP_IDX, isa.PSEUDO_MAP_IDX_VALUE}}
        if mode == isa.ABS and size != isa.DW:
            return {"dst": 0, "src": 0, "off": 0}
        if mode == isa.IND and size != isa.DW:
            return {"dst": 0, "off": 0}
        return None
    if cls == isa.LDX:
        if mode == isa.MEM or (mode == isa.MEMSX and size != isa.DW):
            return {"imm": 0}
        return None
    if cls == isa.ST:
        return {"src": 0} if mode == isa.MEM else None
    if mode == isa.MEM:
        return {"imm": 0}
    if mode == isa.ATOMIC and size in (isa.W, isa.DW):
        ops = {isa.ATOMIC_ADD, isa.ATOMIC_OR, isa.ATOMIC_AND, isa.ATOMIC_XOR}
        return {"imm": ops | {o | isa.FETCH for o in ops} | {isa.XCHG, isa.CMPXCHG}}
    return None


def check_reserved(insns: Sequence[Insn]) -> None:
    """Every field RFC 9669 reserves (must be zero) or restricts, for every instruction;
    unknown opcodes and broken LD_IMM64 pairs.  Raises ``ProgramError``."""
    pc = 0
    while pc < len(insns):
        insn = insns[pc]
        rules = _rules(insn)
        if rules is None:
            raise ProgramError(pc, insn, f"unknown opcode {insn.opcode:#04x}")
        for name, allowed in rules.items():
            value = getattr(insn, name)
            if allowed == 0 and value != 0:
                raise ProgramError(pc, insn, f"reserved field '{name}' must be 0 (is {value})")
            if isinstance(allowed, set) and value not in allowed:
                raise ProgramError(pc, insn, f"invalid '{name}' value {value}")
        if insn.opcode == isa.LD_IMM64:
            if pc + 1 >= len(insns):
                raise ProgramError(pc, insn, "LD_IMM64 is missing its second slot")
            second = insns[pc + 1]
            for name in ("opcode", "dst", "src", "off"):
                if getattr(second, name):
                    raise ProgramError(pc + 1, second,
                                       f"second slot of LD_IMM64: reserved field '{name}' must be 0")
            pc += 2
            continue
        pc += 1


def _writes_dst(insn: Insn) -> bool:
    cls = insn.opcode & 7
    return cls in (isa.ALU, isa.ALU64, isa.LDX) or insn.opcode == isa.LD_IMM64


def check_program(insns: Sequence[Insn], *, helpers: Mapping[int, Helper] | None = None,
                  maps: Sequence[Any] = ()) -> None:
    """All load-time checks; raises ``ProgramError``."""
    if not insns:
        raise ProgramError(0, None, "empty program")
    check_reserved(insns)
    known: Mapping[int, Any] = TABLE if helpers is None else helpers
    n = len(insns)
    second_slots = set()
    pc = 0
    while pc < n:
        if insns[pc].opcode == isa.LD_IMM64:
            second_slots.add(pc + 1)
            pc += 1
        pc += 1
    pc = 0
    while pc < n:
        insn = insns[pc]
        nxt = insns[pc + 1] if insn.opcode == isa.LD_IMM64 else None
        if insn.dst > isa.R10 or insn.src > isa.R10:
            raise ProgramError(pc, insn, f"invalid register r{max(insn.dst, insn.src)}")
        if insn.dst == isa.R10 and _writes_dst(insn):
            raise ProgramError(pc, insn, "frame pointer r10 is read only")
        if isa.is_jump(insn) or is_pseudo_call(insn):
            target = pc + insn.imm + 1 if insn.opcode == isa.OP_CALL else isa.jump_target(pc, insn)
            if not 0 <= target < n:
                raise ProgramError(pc, insn, f"jump out of range to {target}")
            if target in second_slots:
                raise ProgramError(pc, insn, f"jump into the middle of LD_IMM64 at {target - 1}")
        if insn.opcode == isa.OP_CALL and insn.src == 0 and insn.imm not in known:
            raise ProgramError(pc, insn, f"unknown helper {insn.imm}")
        if nxt is not None and insn.src == isa.PSEUDO_FUNC:
            if not 0 <= pc + insn.imm + 1 < n or pc + insn.imm + 1 in second_slots:
                raise ProgramError(pc, insn, f"callback out of range at {pc + insn.imm + 1}", nxt)
        elif nxt is not None and insn.src and insn.src != isa.PSEUDO_BTF_ID:
            if not 0 <= insn.imm < len(maps):
                raise ProgramError(pc, insn, f"map index {insn.imm} out of range ({len(maps)} maps)", nxt)
            if insn.src in (isa.PSEUDO_MAP_VALUE, isa.PSEUDO_MAP_IDX_VALUE) and \
                    not hasattr(maps[insn.imm], "direct_value"):
                raise ProgramError(pc, insn, "map has no direct value (needs direct_value())", nxt)
        pc += 2 if nxt is not None else 1
    if n - 1 in second_slots or insns[-1].opcode not in (isa.OP_EXIT, isa.OP_JA, isa.OP_JA32):
        raise ProgramError(n - 1, insns[-1], "last instruction must be exit or goto "
                                             "(execution would fall off the end)")
