"""The compiler's intermediate representation: eBPF-shaped operations on virtual registers.

Registers 0..10 are the machine's r0..r10 (r10 the read-only frame pointer); numbers from
``FIRST_VREG`` on are virtual.  The front end writes three-address operations
(``dst = a op b``); instruction selection turns them into the machine's two-address form
(``dst op= b`` with ``dst == a``); the register allocator then maps every virtual register to a
machine register or a stack slot.  Values are 64-bit; ``w32`` operations use the 32-bit
subregisters (and zero the upper half, as the ISA does).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FP = 10
FIRST_VREG = 16
ARG_REGS = (1, 2, 3, 4, 5)
CALLER_SAVED = (0, 1, 2, 3, 4, 5)

COMMUTATIVE = {"add", "mul", "and", "or", "xor"}
# Condition -> the same test with operands swapped, and its negation.
SWAPPED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge",
           "sgt": "slt", "sge": "sle", "slt": "sgt", "sle": "sge"}
NEGATED = {"eq": "ne", "ne": "eq", "gt": "le", "ge": "lt", "lt": "ge", "le": "gt",
           "sgt": "sle", "sge": "slt", "slt": "sge", "sle": "sgt"}


@dataclass(frozen=True, slots=True)
class Imm:
    value: int


@dataclass(slots=True)
class Op:
    """One operation.  Kinds and their fields:

    mov    dst = a                       (a: vreg or Imm of any 64-bit value; w32: low half)
    alu    dst = a <alu> b               (alu: add sub mul div sdiv mod smod or and xor lsh rsh arsh)
    neg    dst = -a
    end    dst = byte-swap of a          (alu: be16/be32/be64/le16/le32/le64)
    ld     dst = *(size *)(a + off)
    st     *(size *)(a + off) = b
    atomic *(size *)(a + off) <alu>= b   (alu: add or and xor; dst set: the fetched old value)
    ldmap  dst = &map sym                (ld_imm64 relocated to the map)
    ldaddr dst = &sym + off              (global variable or string in a data section)
    call   helper imm, or function sym;  reads r1..r<nargs>, writes r0, clobbers r1..r5
    exit   return r0
    jmp    goto targets[0]
    br     if a <alu> b goto targets[0] else targets[1]   (w32: compare the 32-bit halves)
    """
    kind: str
    dst: int | None = None
    # operands: a vreg (int) or an Imm; after register allocation a register number
    a: Any = None
    b: Any = None
    alu: str = ""
    size: int = 8
    w32: bool = False
    off: int = 0
    sym: str = ""
    imm: int = 0
    nargs: int = 0
    targets: tuple = ()
    loc: object = None       # pycparser Coord, for diagnostics

    def uses(self) -> list[int]:
        k = self.kind
        if k == "call":
            return list(ARG_REGS[:self.nargs])
        if k == "exit":
            return [0]
        out = [0] if k == "atomic" and self.alu == "cmpxchg" else []
        for v in (self.a, self.b):
            if isinstance(v, int):
                out.append(v)
        return out

    def defs(self) -> list[int]:
        if self.kind == "call":
            return list(CALLER_SAVED)
        return [self.dst] if self.dst is not None else []

    def is_pure(self) -> bool:
        """No effect besides writing dst (so it may go when dst is dead)."""
        return self.kind in ("mov", "alu", "neg", "end", "ld", "ldmap", "ldaddr")

    def replace_uses(self, mapping: dict[int, Any]) -> None:
        if isinstance(self.a, int) and self.a in mapping:
            self.a = mapping[self.a]
        if isinstance(self.b, int) and self.b in mapping:
            self.b = mapping[self.b]


@dataclass
class Block:
    label: int
    ops: list[Op] = field(default_factory=list)
    depth: int = 0           # loop nesting, weights spill costs

    @property
    def terminator(self) -> Op | None:
        return self.ops[-1] if self.ops and self.ops[-1].kind in ("jmp", "br", "exit") else None

    def successors(self) -> tuple:
        t = self.terminator
        if t is None or t.kind == "exit":
            return ()
        return t.targets


@dataclass
class Function:
    name: str
    section: str
    blocks: list[Block]
    nparams: int = 0
    frame: int = 0           # bytes of stack used below r10 (grows as slots are added)
    is_global: bool = True
    next_vreg: int = FIRST_VREG

    def new_vreg(self) -> int:
        v = self.next_vreg
        self.next_vreg += 1
        return v

    def new_slot(self, size: int, align: int) -> int:
        """A stack slot; returns its offset from r10 (negative)."""
        self.frame = -(-(self.frame + size) // align) * align
        return -self.frame

    def block(self, label: int) -> Block:
        for b in self.blocks:
            if b.label == label:
                return b
        raise KeyError(label)
