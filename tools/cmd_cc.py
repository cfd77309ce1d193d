"""``tracesim cc prog.c -o prog.o [-I DIR] [-D NAME[=VAL]] [-O0|-O2] [-S]``: compile restricted C
to an eBPF ELF object (``-S``: print the assembly instead)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tracesim.filters.bpf.compiler import CompileError, compile_file
from tracesim.filters.bpf.toolchain.disasm import disassemble


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracesim cc", description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="C source file")
    p.add_argument("-o", dest="output", help="output file (default: SOURCE with .o, or stdout "
                                             "with -S)")
    p.add_argument("-I", dest="include", action="append", default=[], metavar="DIR",
                   help="add DIR to the include path")
    p.add_argument("-D", dest="define", action="append", default=[], metavar="NAME[=VAL]",
                   help="define a macro")
    p.add_argument("-O0", dest="opt", action="store_const", const=0, help="no optimisation")
    p.add_argument("-O2", dest="opt", action="store_const", const=2, help="optimise (default)")
    p.add_argument("-S", dest="asm", action="store_true", help="print assembly, no object")
    p.set_defaults(opt=2)
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(_split_attached(argv))
    try:
        obj = compile_file(args.source, args.include, args.define, args.opt)
    except CompileError as e:
        print(e.render(), file=sys.stderr)
        print("1 error generated.", file=sys.stderr)
        return 1
    if args.asm:
        text = assembly(obj)
        if args.output and args.output != "-":
            Path(args.output).write_text(text)
        else:
            sys.stdout.write(text)
        return 0
    out = args.output or str(Path(args.source).with_suffix(".o").name)
    Path(out).write_bytes(obj.elf)
    return 0


def assembly(obj) -> str:
    """Sections and functions with their instructions in the disassembler's syntax."""
    lines = []
    for section, functions in obj.sections().items():
        lines.append(f'\t.section\t"{section}"')
        for fn in functions:
            if fn.is_global:
                lines.append(f"\t.globl\t{fn.name}")
            lines.append(f"{fn.name}:")
            lines += [f"\t{text}" for text in disassemble(fn.insns)]
        lines.append("")
    if obj.license:
        lines.append(f'\t.section\t"license"\n\t.asciz\t"{obj.license}"')
    return "\n".join(lines) + "\n"


def _split_attached(argv: list[str]) -> list[str]:
    """Accept ``-Idir`` and ``-DNAME=1`` as compilers do."""
    out = []
    for a in argv:
        if len(a) > 2 and a[:2] in ("-I", "-D") and not a.startswith("--"):
            out += [a[:2], a[2:]]
        else:
            out.append(a)
    return out
