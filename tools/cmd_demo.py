"""`tracesim demo`: for now, run an example BPF filter on the VM (later issues grow the story).

The example is the 2013 RFC's filter reduced to its core: a 4-byte device-name compare on an
event context.  The demo prints the program's disassembly and its result on two contexts with the
interpreter and the JIT.
"""
from __future__ import annotations

import argparse

from bench.vm import DEVNAME_SOURCE
from filters.bpf.asm import assemble
from filters.bpf.disasm import disassemble
from filters.bpf.interp import Interpreter
from filters.bpf.jit import compile_program
from filters.bpf.program import load_program


def _ctx(name: bytes) -> bytes:
    return bytes(8) + name.ljust(16, b"\0")


def main(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="tracesim demo", description=__doc__.splitlines()[0]).parse_args(argv)
    program = load_program(assemble(DEVNAME_SOURCE), name="devname", ctx_size=24)
    print('filter: keep the event when the first 4 bytes of the device name are "eth5"\n')
    for pc, line in enumerate(disassemble(program.insns)):
        print(f"{pc:4}: {line}")
    print()
    interp, jit = Interpreter(program), compile_program(program)
    for name in (b"eth5", b"lo"):
        ctx = _ctx(name)
        a, b = interp.run(ctx), jit.run(ctx)
        print(f"dev {name.decode():<5} interpreter r0 = {a.value}  jit r0 = {b.value}  "
              f"({interp.executed} instructions)")
    return 0
