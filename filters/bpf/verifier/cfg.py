"""Structure checks before any abstract interpretation (resolve_pseudo_ldimm64, check_subprogs,
check_cfg and the reserved-field checks of kernel/bpf/verifier.c).

Produces a ``Cfg``: subprogram boundaries, successors, prune points and loop headers.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass, field

from tracesim.filters.bpf.verifier.log import Reject
from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.analysis import is_pseudo_call
from tracesim.filters.bpf.vm.isa import Insn

MAX_INSNS = 1_000_000        # BPF_COMPLEXITY_LIMIT_INSNS: also the privileged size limit
MAX_INSNS_UNPRIV = 4096      # BPF_MAXINSNS
BPF_MAP_TYPE_ARRAY = 2


def _valid_opcodes() -> frozenset[int]:
    ops = set()
    for cls in (isa.ALU, isa.ALU64):
        for op in (isa.ADD, isa.SUB, isa.MUL, isa.DIV, isa.OR, isa.AND, isa.LSH, isa.RSH,
                   isa.MOD, isa.XOR, isa.MOV, isa.ARSH):
            ops.add(cls | op | isa.K)
            ops.add(cls | op | isa.X)
        ops.add(cls | isa.NEG)
    ops.update({isa.ALU | isa.END | isa.TO_LE, isa.ALU | isa.END | isa.TO_BE,
                isa.ALU64 | isa.END | isa.TO_LE})
    for cls in (isa.JMP, isa.JMP32):
        for op in isa.CONDITIONAL_JUMPS:
            ops.add(cls | op | isa.K)
            ops.add(cls | op | isa.X)
        ops.add(cls | isa.JA)
    ops.update({isa.OP_CALL, isa.OP_EXIT, isa.LD_IMM64})
    for size in (isa.B, isa.H, isa.W):
        ops.add(isa.LD | isa.ABS | size)
        ops.add(isa.LD | isa.IND | size)
        ops.add(isa.LDX | isa.MEMSX | size)
    for size in (isa.B, isa.H, isa.W, isa.DW):
        ops.update({isa.LDX | isa.MEM | size, isa.ST | isa.MEM | size, isa.STX | isa.MEM | size})
    ops.update({isa.STX | isa.ATOMIC | isa.W, isa.STX | isa.ATOMIC | isa.DW})
    return frozenset(ops)


VALID_OPCODES = _valid_opcodes()
ATOMIC_OPS = {isa.ATOMIC_ADD, isa.ATOMIC_OR, isa.ATOMIC_AND, isa.ATOMIC_XOR,
              isa.ATOMIC_ADD | isa.FETCH, isa.ATOMIC_OR | isa.FETCH, isa.ATOMIC_AND | isa.FETCH,
              isa.ATOMIC_XOR | isa.FETCH, isa.XCHG, isa.CMPXCHG}


@dataclass
class Cfg:
    insns: list[Insn]
    subprog_starts: list[int]               # sorted; subprog k is [starts[k], starts[k+1])
    subprog_of: list[int]                   # insn -> subprog index
    succ: list[tuple[int, ...]]             # intra-procedural successors (a call falls through)
    prune_points: set[int] = field(default_factory=set)
    loop_headers: set[int] = field(default_factory=set)
    second_half: set[int] = field(default_factory=set)   # second slots of LD_IMM64


def is_pseudo_func(insn: Insn) -> bool:
    """``ld_imm64 rX, callback``: the address of a subprogram a helper calls back."""
    return insn.opcode == isa.LD_IMM64 and insn.src == isa.PSEUDO_FUNC


def build(insns: list[Insn], maps: list, privileged: bool, strict_loops: bool,
          masked_shifts: bool = False) -> Cfg:
    """``masked_shifts``: immediate shift counts >= the width are allowed (RFC 9669 masks them;
    the kernel refuses them with "invalid shift"), as the conformance model needs."""
    n = len(insns)
    limit = MAX_INSNS if privileged else MAX_INSNS_UNPRIV
    if n == 0 or n > limit:
        raise Reject(f"program of {n} insns is not loadable (E2BIG: 1 to {limit} insns)")
    second = _resolve_ldimm64(insns, maps)
    starts = _subprogs(insns, second, privileged)
    subprog_of = [0] * n
    for k, s in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else n
        for i in range(s, end):
            subprog_of[i] = k
    succ = _check_subprogs(insns, starts, second)
    cfg = Cfg(insns, starts, subprog_of, succ, second_half=second)
    _dfs(cfg, privileged and not strict_loops)
    for i, insn in enumerate(insns):
        if i not in second:
            check_reserved(insn, masked_shifts)
    return cfg


def _resolve_ldimm64(insns: list[Insn], maps: list) -> set[int]:
    second = set()
    i, n = 0, len(insns)
    while i < n:
        insn = insns[i]
        if insn.opcode & 7 == isa.LDX and (((insn.opcode & 0xE0) not in (isa.MEM, isa.MEMSX))
                                           or insn.imm != 0):
            raise Reject("BPF_LDX uses reserved fields")
        if insn.opcode == isa.LD_IMM64:
            if i == n - 1 or insns[i + 1].opcode or insns[i + 1].dst or insns[i + 1].src \
                    or insns[i + 1].off or insn.off:
                raise Reject("invalid bpf_ld_imm64 insn")
            if insn.src == isa.PSEUDO_MAP_FD or insn.src == isa.PSEUDO_MAP_VALUE:
                if not 0 <= insn.imm < len(maps):
                    raise Reject(f"fd {insn.imm} is not pointing to valid bpf_map")
                m = maps[insn.imm]
                if insn.src == isa.PSEUDO_MAP_VALUE:
                    off = insns[i + 1].imm & 0xFFFFFFFF
                    if m.map_type != BPF_MAP_TYPE_ARRAY:
                        raise Reject("no direct value access support for this map type")
                    if m.max_entries != 1 or off >= m.value_size:
                        raise Reject(f"invalid access to map value pointer, "
                                     f"value_size={m.value_size} off={off}")
            elif insn.src == isa.PSEUDO_FUNC:
                if not 0 <= i + insn.imm + 1 < n:
                    raise Reject("call to invalid destination")
            elif insn.src == isa.PSEUDO_BTF_ID:
                check_pseudo_btf_id(insn.imm)
            elif insn.src != 0:
                raise Reject("unrecognized bpf_ld_imm64 insn")
            second.add(i + 1)
            i += 2
            continue
        if insn.opcode not in VALID_OPCODES:
            raise Reject(f"unknown opcode {insn.opcode:02x}")
        i += 1
    return second


def _subprogs(insns: list[Insn], second: set[int], privileged: bool) -> list[int]:
    starts = {0}
    for i, insn in enumerate(insns):
        if i in second or not (is_pseudo_call(insn) or is_pseudo_func(insn)):
            continue
        if not privileged:
            raise Reject("loading/calling other bpf or kernel functions are allowed for "
                         "CAP_BPF and CAP_SYS_ADMIN")
        target = i + insn.imm + 1
        if not 0 <= target < len(insns):
            raise Reject("call to invalid destination")
        starts.add(target)
    return sorted(starts)


def _check_subprogs(insns, starts, second) -> list[tuple[int, ...]]:
    n = len(insns)
    succ: list[tuple[int, ...]] = [()] * n
    bounds = list(zip(starts, starts[1:] + [n], strict=False))
    for lo, hi in bounds:
        for i in range(lo, hi):
            if i in second:
                continue
            insn = insns[i]
            cls, op = insn.opcode & 7, insn.opcode & 0xF0
            if insn.opcode == isa.LD_IMM64:
                succ[i] = (i + 2,)
            elif cls in (isa.JMP, isa.JMP32) and op == isa.EXIT:
                succ[i] = ()
            elif cls in (isa.JMP, isa.JMP32) and op != isa.CALL:
                target = isa.jump_target(i, insn)
                if not lo <= target < hi:
                    raise Reject(f"jump out of range from insn {i} to {target}")
                succ[i] = (target,) if op == isa.JA else (i + 1, target)
            else:
                succ[i] = (i + 1,)
        last = insns[hi - 1]
        if hi - 1 in second or last.opcode not in (isa.OP_EXIT, isa.OP_JA, isa.OP_JA32):
            raise Reject("last insn is not an exit or jmp")
    return succ


def _dfs(cfg: Cfg, allow_loops: bool) -> None:
    """check_cfg: every insn reachable, no jump into an LD_IMM64, back-edges only if allowed."""
    insns, n = cfg.insns, len(cfg.insns)
    second, succ, prune = cfg.second_half, cfg.succ, cfg.prune_points
    # each insn's edges in the order the walk takes them: successors, then a call's target
    nexts: list[tuple[int, ...]] = [()] * n
    for t, insn in enumerate(insns):
        if t in second:
            continue
        if is_pseudo_call(insn) or is_pseudo_func(insn):
            nexts[t] = succ[t] + (t + insn.imm + 1,)
        else:
            nexts[t] = succ[t]
    state = bytearray(n)           # 0 new, 1 on the DFS stack, 2 explored
    pos = [0] * n                  # the next edge of each insn on the stack
    for start in cfg.subprog_starts:
        prune.add(start)
    stack = [0]
    state[0] = 1
    while stack:
        t = stack[-1]
        k = pos[t]
        nx = nexts[t]
        if k < len(nx):
            pos[t] = k + 1
            w = nx[k]
            if state[w] == 1:
                if not allow_loops:
                    raise Reject(f"back-edge from insn {t} to {w}")
                cfg.loop_headers.add(w)
                prune.add(w)
            elif state[w] == 0:
                state[w] = 1
                stack.append(w)
            continue
        state[t] = 2
        stack.pop()
    jmp_classes = (isa.JMP, isa.JMP32)
    for i, insn in enumerate(insns):
        op = insn.opcode
        if op & 7 in jmp_classes:
            code = op & 0xF0
            if code in isa.CONDITIONAL_JUMPS or op in (isa.OP_JA, isa.OP_JA32):
                if i in second:
                    continue
                prune.update(succ[i])
                if code in isa.CONDITIONAL_JUMPS:
                    prune.add(i)
            elif op == isa.OP_CALL and i not in second:
                prune.add(i + 1)
    i = 0
    while i < n:
        if state[i] != 2:
            raise Reject(f"unreachable insn {i}")
        if insns[i].opcode == isa.LD_IMM64:
            if state[i + 1]:
                raise Reject(f"jump into the middle of ldimm64 insn {i}")
            i += 2
            continue
        i += 1


def check_reserved(insn: Insn, masked_shifts: bool = False) -> None:
    """The per-class reserved-field checks of do_check (kernel texts)."""
    op, cls = insn.opcode, insn.opcode & 7
    code = op & 0xF0
    x = op & isa.X
    if cls in (isa.ALU, isa.ALU64):
        if code == isa.NEG:
            if x or insn.src or insn.off or insn.imm:
                raise Reject("BPF_NEG uses reserved fields")
        elif code == isa.END:
            if insn.off or insn.src or insn.imm not in (16, 32, 64) or (cls == isa.ALU64 and x):
                raise Reject("BPF_END uses reserved fields")
        elif code == isa.MOV:
            if x:
                allowed = (0, 8, 16) if cls == isa.ALU else (0, 8, 16, 32)
                if insn.off not in allowed or insn.imm:
                    raise Reject("BPF_MOV uses reserved fields")
            elif insn.src or insn.off:
                raise Reject("BPF_MOV uses reserved fields")
        else:
            bad_off = insn.off not in (0, 1) or (insn.off == 1 and code not in (isa.DIV, isa.MOD))
            if (x and (insn.imm or bad_off)) or (not x and (insn.src or bad_off)):
                raise Reject("BPF_ALU uses reserved fields")
            if not x and code in (isa.DIV, isa.MOD) and insn.imm == 0:
                raise Reject("div by zero")
            if not x and code in (isa.LSH, isa.RSH, isa.ARSH) and not masked_shifts:
                bits = 64 if cls == isa.ALU64 else 32
                if not 0 <= insn.imm < bits:
                    raise Reject(f"invalid shift {insn.imm}")
    elif cls == isa.STX:
        if op & 0xE0 == isa.ATOMIC:
            if insn.imm not in ATOMIC_OPS:
                raise Reject(f"BPF_ATOMIC uses invalid atomic opcode {insn.imm & 0xFF:02x}")
        elif insn.imm:
            raise Reject("BPF_STX uses reserved fields")
    elif cls == isa.ST:
        if insn.src:
            raise Reject("BPF_ST uses reserved fields")
    elif cls == isa.LD and op != isa.LD_IMM64:
        mode = op & 0xE0
        if insn.dst or insn.off or (mode == isa.ABS and insn.src):
            raise Reject("BPF_LD_[ABS|IND] uses reserved fields")
    elif cls in (isa.JMP, isa.JMP32):
        if code == isa.JA:
            if x or insn.src or insn.dst or (cls == isa.JMP and insn.imm) \
                    or (cls == isa.JMP32 and insn.off):
                raise Reject("BPF_JA uses reserved fields")
        elif code == isa.CALL:
            if x or insn.off or insn.src not in (0, isa.PSEUDO_CALL) or insn.dst \
                    or cls == isa.JMP32:
                raise Reject("BPF_CALL uses reserved fields")
        elif code == isa.EXIT:
            if x or insn.imm or insn.src or insn.dst or cls == isa.JMP32:
                raise Reject("BPF_EXIT uses reserved fields")
        elif (x and insn.imm) or (not x and insn.src):
            raise Reject("BPF_JMP/JMP32 uses reserved fields")


def check_pseudo_btf_id(btf_id: int) -> tuple:
    """check_pseudo_btf_id: ``ld_imm64 rX, btf_id`` names a VAR of the kernel's BTF (the
    model's: its per-CPU variables); (variable, type name, type size)."""
    from tracesim.kernel_model.model_btf import model_btf, percpu_btf_vars
    var = percpu_btf_vars().get(btf_id)
    if var is not None:
        return var
    btf = model_btf()
    if not 0 < btf_id < len(btf.types):
        raise Reject(f"ldimm64 insn specifies invalid btf_id {btf_id}.", err=errno.ENOENT)
    raise Reject(f"pseudo btf_id {btf_id} in ldimm64 isn't KIND_VAR or KIND_FUNC",
                 err=errno.EINVAL)
