"""Final code: blocks laid out with fall-throughs, branches fused with their comparisons into
conditional jumps, operations encoded as ``Insn`` slots, relocations recorded."""
from __future__ import annotations

from dataclasses import dataclass, field

from tracesim.filters.bpf.compiler.ir import NEGATED, Function, Imm, Op
from tracesim.filters.bpf.compiler.opt import fits_imm, s32, s64
from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.isa import Insn

ALU_CODES = {"add": isa.ADD, "sub": isa.SUB, "mul": isa.MUL, "div": isa.DIV, "sdiv": isa.DIV,
             "mod": isa.MOD, "smod": isa.MOD, "or": isa.OR, "and": isa.AND, "lsh": isa.LSH,
             "rsh": isa.RSH, "arsh": isa.ARSH, "xor": isa.XOR}
JMP_CODES = {"eq": isa.JEQ, "ne": isa.JNE, "gt": isa.JGT, "ge": isa.JGE, "lt": isa.JLT,
             "le": isa.JLE, "sgt": isa.JSGT, "sge": isa.JSGE, "slt": isa.JSLT, "sle": isa.JSLE,
             "set": isa.JSET}
SIZE_CODES = {1: isa.B, 2: isa.H, 4: isa.W, 8: isa.DW}
ATOMIC_CODES = {"add": isa.ATOMIC_ADD, "or": isa.ATOMIC_OR, "and": isa.ATOMIC_AND,
                "xor": isa.ATOMIC_XOR, "xchg": isa.XCHG, "cmpxchg": isa.CMPXCHG}


@dataclass
class MachineCode:
    name: str
    section: str
    insns: list[Insn] = field(default_factory=list)
    relocs: list[tuple[int, str]] = field(default_factory=list)     # (slot, symbol) R_BPF_64_64
    calls: list[tuple[int, str]] = field(default_factory=list)      # (slot, callee)
    is_global: bool = True


def emit(fn: Function) -> MachineCode:
    out = MachineCode(fn.name, fn.section, is_global=fn.is_global)
    order = [b.label for b in fn.blocks]
    start: dict[int, int] = {}
    fixups: list[tuple[int, int]] = []              # (slot of jump, target label)
    for i, b in enumerate(fn.blocks):
        start[b.label] = len(out.insns)
        nxt = order[i + 1] if i + 1 < len(order) else None
        for op in b.ops:
            if op.kind == "jmp":
                if op.targets[0] != nxt:
                    fixups.append((len(out.insns), op.targets[0]))
                    out.insns.append(Insn(isa.OP_JA))
            elif op.kind == "br":
                t, f = op.targets
                cond = op.alu
                if t == nxt:                        # fall into the true arm: test the opposite
                    cond, t, f = NEGATED[cond], f, t
                fixups.append((len(out.insns), t))
                out.insns.append(branch(op, cond))
                if f != nxt:
                    fixups.append((len(out.insns), f))
                    out.insns.append(Insn(isa.OP_JA))
            else:
                encode(op, out)
    for slot, label in fixups:
        off = start[label] - slot - 1
        if not -32768 <= off <= 32767:
            raise OverflowError(f"function '{fn.name}': jump of {off} slots does not fit")
        out.insns[slot] = out.insns[slot]._replace(off=off)
    return out


def branch(op: Op, cond: str) -> Insn:
    cls = isa.JMP32 if op.w32 else isa.JMP
    if isinstance(op.b, Imm):
        imm = s32(op.b.value) if op.w32 else s64(op.b.value)
        return Insn(cls | JMP_CODES[cond] | isa.K, op.a, 0, 0, imm)
    return Insn(cls | JMP_CODES[cond] | isa.X, op.a, op.b, 0, 0)


def encode(op: Op, out: MachineCode) -> None:
    k = op.kind
    ins = out.insns
    cls = isa.ALU if op.w32 else isa.ALU64
    if k == "mov":
        if isinstance(op.a, Imm):
            v = op.a.value
            if op.w32:
                ins.append(Insn(isa.ALU | isa.MOV | isa.K, op.dst, 0, 0, s32(v)))
            elif fits_imm(v, False):
                ins.append(Insn(isa.ALU64 | isa.MOV | isa.K, op.dst, 0, 0, s64(v)))
            else:
                ins.extend(isa.ld_imm64(op.dst, v))
        else:
            ins.append(Insn(cls | isa.MOV | isa.X, op.dst, op.a, 0, 0))
    elif k == "alu":
        assert op.a == op.dst, op
        off = 1 if op.alu in ("sdiv", "smod") else 0
        code = ALU_CODES[op.alu]
        if isinstance(op.b, Imm):
            imm = s32(op.b.value) if op.w32 else s64(op.b.value)
            ins.append(Insn(cls | code | isa.K, op.dst, 0, off, imm))
        else:
            ins.append(Insn(cls | code | isa.X, op.dst, op.b, off, 0))
    elif k == "neg":
        ins.append(Insn(cls | isa.NEG, op.dst, 0, 0, 0))
    elif k == "end":
        bits = int(op.alu[2:])
        order = isa.TO_BE if op.alu.startswith("be") else isa.TO_LE
        ins.append(Insn(isa.ALU | isa.END | order, op.dst, 0, 0, bits))
    elif k == "ld":
        ins.append(Insn(isa.LDX | isa.MEM | SIZE_CODES[op.size], op.dst, op.a, op.off, 0))
    elif k == "st":
        ins.append(Insn(isa.STX | isa.MEM | SIZE_CODES[op.size], op.a, op.b, op.off, 0))
    elif k == "atomic":
        imm = ATOMIC_CODES[op.alu] | (isa.FETCH if op.dst is not None else 0)
        ins.append(Insn(isa.STX | isa.ATOMIC | SIZE_CODES[op.size], op.a, op.b, op.off, imm))
    elif k == "ldmap":
        out.relocs.append((len(ins), op.sym))
        ins.extend(isa.ld_imm64(op.dst, 0))
    elif k == "ldaddr":
        out.relocs.append((len(ins), op.sym))
        ins.extend(isa.ld_imm64(op.dst, op.off))
    elif k == "call":
        if op.sym:
            out.calls.append((len(ins), op.sym))
            ins.append(Insn(isa.OP_CALL, 0, isa.PSEUDO_CALL, 0, -1))
        else:
            ins.append(Insn(isa.OP_CALL, 0, 0, 0, op.imm))
    elif k == "exit":
        ins.append(Insn(isa.OP_EXIT))
    else:
        raise ValueError(f"cannot encode {op}")
