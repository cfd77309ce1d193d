"""``tracesim check PROG [--type kprobe|tracepoint:SYS/EV|socket] [--log-level N]``.

Verifies a BPF program offline, the 2013 RFC's ``trace_filter_check``: prints ``OK`` (and, from
log level 2, the log) when the verifier accepts it, else the verifier log; exit status 0/1.
PROG is an ELF object (``tracesim cc`` / ``clang -target bpf``; ``--section`` picks a program),
raw instruction bytes (``.bin``), or LLVM BPF assembler text.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

from filters.bpf import isa


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracesim check", description=__doc__.split("\n\n")[1])
    p.add_argument("prog", help="ELF object, raw .bin instructions, or assembler text")
    p.add_argument("--type", default="kprobe",
                   help="kprobe (default), tracepoint:SYS/EV, socket, or conformance[:SIZE]")
    p.add_argument("--log-level", type=int, default=1, choices=(0, 1, 2))
    p.add_argument("--section", help="program (section or function name) of an ELF object")
    p.add_argument("--unprivileged", action="store_true",
                   help="verify as a loader without CAP_BPF/CAP_PERFMON")
    p.add_argument("--strict-loops", action="store_true", help="reject every back-edge")
    return p


def _load(path: Path, section: str | None):
    """(insns, maps) from an ELF object, raw bytes or assembler text."""
    data = path.read_bytes()
    if data[:4] == b"\x7fELF":
        from filters.bpf.elf import load_object
        obj = load_object(data)
        prog = obj.program(section)
        maps = [SimpleNamespace(map_type=m.type, key_size=m.key_size, value_size=m.value_size,
                                max_entries=m.max_entries, name=m.name) for m in obj.maps]
        return prog.insns, maps
    if path.suffix == ".bin":
        return isa.decode(data), []
    from filters.bpf.asm import assemble
    return assemble(data.decode()), []


def _context(type_arg: str):
    """(prog_type, ContextSpec or None) for a --type value."""
    from filters.bpf.verifier import ContextSpec
    if type_arg == "kprobe":
        return "kprobe", None
    if type_arg in ("socket", "socket_filter"):
        return "socket_filter", None
    if type_arg.startswith("conformance"):
        size = int(type_arg.partition(":")[2] or 0)
        return "conformance", ContextSpec.memory(size)
    if type_arg.startswith("tracepoint:"):
        system, _, name = type_arg.split(":", 1)[1].partition("/")
        from kernel_model.kernel import Kernel
        event = Kernel(cpus=1, clock="virtual").tracing.event(system, name)
        fields = [(f.name, f.offset, f.size) for f in event.all_fields]
        return "tracepoint", ContextSpec.tracepoint(fields, event.struct_size)
    raise ValueError(f"unknown --type {type_arg!r}")


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from filters.bpf.verifier import verify
    try:
        prog_type, ctx = _context(args.type)
        insns, maps = _load(Path(args.prog), args.section)
    except (OSError, ValueError, KeyError) as e:
        print(f"tracesim check: {e}", file=sys.stderr)
        return 2
    res = verify(insns, prog_type=prog_type, ctx=ctx, maps=maps,
                 privileged=not args.unprivileged, strict_loops=args.strict_loops,
                 log_level=args.log_level)
    if res.ok:
        if args.log_level >= 2:
            sys.stdout.write(res.log)
        print("OK")
        return 0
    sys.stdout.write(res.log or (res.error or "rejected") + "\n")
    return 1
