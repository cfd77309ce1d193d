"""The verifier log in the kernel's words: rejections, instruction lines, register states.

``Reject`` carries the message lines of a rejection (the first is the one-line reason).  The
``fmt_*`` functions print states as ``print_verifier_state`` does in Linux 6.18:
``R1=ctx() R2=fp-8 R3=scalar(smin=smin32=0,smax=umax=smax32=umax32=255,var_off=(0x0; 0xff))``.
"""
from __future__ import annotations

import errno
from typing import Any

from tracesim.filters.bpf.verifier import state as st
from tracesim.filters.bpf.verifier import tnum
from tracesim.filters.bpf.verifier.bounds import S32_MAX, S32_MIN, S64_MAX, S64_MIN, U32, U64
from tracesim.filters.bpf.vm.isa import Insn

LOG_ALIGNMENT = 40
LOG_MIN_ALIGNMENT = 8


class Reject(Exception):
    """The program is unsafe (or malformed); ``lines`` are the log lines explaining why."""

    def __init__(self, *lines: str, err: int = errno.EACCES) -> None:
        super().__init__(lines[0])
        self.lines = list(lines)
        self.errno = err          # what BPF_PROG_LOAD returns (EACCES unless the check says)


def _unum(v: int) -> str:
    return str(v) if v <= 0xFFFF else f"{v:#x}"


def _snum(v: int) -> str:
    return str(v) if -32768 <= v <= 32767 else f"{v & U64:#x}"


def _ranges(r: st.Reg) -> list[str]:
    def s32v(v: int) -> int:
        return v if -32768 <= v <= 32767 else v & U32
    items: list[list[Any]] = [["smin", r.smin, r.smin == S64_MIN], ["smax", r.smax, r.smax == S64_MAX],
             ["umin", r.umin, r.umin == 0], ["umax", r.umax, r.umax == U64],
             ["smin32", s32v(r.s32min), r.s32min == S32_MIN],
             ["smax32", s32v(r.s32max), r.s32max == S32_MAX],
             ["umin32", r.u32min, r.u32min == 0], ["umax32", r.u32max, r.u32max == U32]]
    out: list[str] = []
    for i, (name, val, omit) in enumerate(items):
        if omit:
            continue
        neg1 = name[0] == "s" and val < 0
        text = name + "="
        for j in range(i + 2, len(items), 2):
            n2, v2, o2 = items[j]
            if o2 or v2 != val or ((n2[0] == "s" and v2 < 0) != neg1):
                continue
            items[j][2] = True
            text += n2 + "="
        out.append(text + (_snum(val) if name[0] == "s" else _unum(val)))
    return out


def fmt_reg(r: st.Reg, frameno: int, maps) -> str:
    t = r.type
    if t == st.SCALAR and r.var[1] == 0:
        return _snum(_as_s64(r.var[0]))
    name = st.type_str(t)
    if t == st.PTR_TO_STACK:
        if r.frameno != frameno:
            name += f"[{r.frameno}]"
        if r.var[1] == 0:
            return name + _snum(_as_s64(r.var[0]) + r.off)
    parts = []
    if r.id:
        parts.append(f"id={r.id}")
    if r.ref_id:
        parts.append(f"ref_obj_id={r.ref_id}")
    if t != st.SCALAR and r.off:
        parts.append(f"off={r.off}")
    if t & st.BASE in (st.CONST_PTR_TO_MAP, st.PTR_TO_MAP_VALUE) and r.map is not None:
        m = maps[r.map]
        parts.append(f"map={m.name}")
        parts.append(f"ks={m.key_size},vs={m.value_size}")
    if t & st.BASE == st.PTR_TO_MEM and not t & st.MEM_RINGBUF:
        parts.append(f"sz={r.mem_size}")
    if r.var[1] == 0:
        if r.var[0]:
            parts.append(f"imm={r.var[0]:x}")
    else:
        parts.extend(_ranges(r))
        if not tnum.is_unknown(r.var):
            parts.append("var_off=" + tnum.tstr(r.var))
    return f"{name}({','.join(parts)})"


def _as_s64(v: int) -> int:
    v &= U64
    return v - (1 << 64) if v >> 63 else v


def fmt_frame(f: st.Frame, maps, regs=None, slots=None) -> str:
    """`` R1=ctx() R10=fp0 fp-8=mmmmmmmm``; ``regs``/``slots`` limit it to scratched ones."""
    out = [f" frame{f.frameno}:" if f.frameno else ""]
    for i, r in enumerate(f.regs):
        if r.type == st.NOT_INIT or (regs is not None and i not in regs):
            continue
        out.append(f" R{i}={fmt_reg(r, f.frameno, maps)}")
    for spi in range(st.STACK_SIZE // 8):
        base = st.STACK_SIZE - (spi + 1) * 8        # lowest byte index of the slot
        if slots is not None and spi not in slots:
            continue
        kinds = f.stack[base:base + 8]
        if not any(kinds):
            continue
        chars = "".join(st.SLOT_CHAR[kinds[7 - j]] for j in range(8))
        if kinds[7] == st.STACK_SPILL:
            chars = chars.split("r", 1)[0]
            out.append(f" fp{-(spi + 1) * 8}={chars}{fmt_reg(f.spills[base // 8], f.frameno, maps)}")
        else:
            out.append(f" fp{-(spi + 1) * 8}={chars}")
    return "".join(out)


def fmt_state(s: st.VState, maps) -> str:
    text = "".join(fmt_frame(f, maps) for f in s.frames)
    if s.refs:
        text += " refs=" + ",".join(str(i) for i, _ in s.refs)
    return text


def insn_text(insns: list[Insn], pc: int) -> str:
    """``(b7) r0 = 0x0``: the opcode in hex, then the VM room's disassembly of the insn."""
    from tracesim.filters.bpf.toolchain import disasm  # the disassembler is only needed to print logs
    insn = insns[pc]
    nxt = insns[pc + 1] if pc + 1 < len(insns) else None
    try:
        text = disasm.format_insn(insn, nxt)
    except (KeyError, IndexError, ValueError):
        text = "<unknown>"
    return f"({insn.opcode:02x}) {text}"


def annotate(line: str, state_text: str) -> str:
    """Append ``; R0=0`` to an instruction line at the kernel's alignment column."""
    pos = len(line) + 1
    width = -(-max(pos, LOG_MIN_ALIGNMENT) // LOG_ALIGNMENT) * LOG_ALIGNMENT - pos - 1
    return line + " " * max(width, 1) + ";" + state_text
