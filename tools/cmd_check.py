"""``tracesim check PROG [--type kprobe|tracepoint:SYS/EV|socket] [--log-level N]``.

Loads a BPF program offline through the same loader a ``filter`` write uses (the 2013 RFC's
``trace_filter_check``), without running it: prints ``OK`` (and, from log level 2, the verifier
log) when it loads, else the verifier log or the loader's message; exit status 0/1 (2: bad
arguments or unreadable file).  PROG is an ELF object (``tracesim cc`` / ``clang -target bpf``;
``--section`` picks a program), raw instruction bytes (``.bin``), or LLVM BPF assembler text.

An ELF program's type comes from its section name as libbpf finds it (``kprobe/...``,
``tracepoint/<sys>/<event>`` with that event's record as context, ``socket``, ...); ``--type``
overrides it.  Raw instructions and assembler text are checked as ``--type`` (default kprobe).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tracesim.filters.bpf import loader
from tracesim.filters.bpf.attach import BTF_TARGET_KINDS, check_load_target
from tracesim.filters.bpf.verifier import ContextSpec
from tracesim.filters.bpf.vm import isa


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracesim check", description=__doc__.split("\n\n")[1])
    p.add_argument("prog", help="ELF object, raw .bin instructions, or assembler text")
    p.add_argument("--type", default=None,
                   help="kprobe, tracepoint:SYS/EV, socket, or conformance[:SIZE] (default: "
                        "from the ELF section name; kprobe for other input)")
    p.add_argument("--log-level", type=int, default=1, choices=(0, 1, 2))
    p.add_argument("--section", help="program (section or function name) of an ELF object")
    p.add_argument("--unprivileged", action="store_true",
                   help="verify as a loader without CAP_BPF/CAP_PERFMON")
    p.add_argument("--strict-loops", action="store_true", help="reject every back-edge")
    return p


def _event(system: str, name: str) -> Any:
    """The tracepoint ``system:name`` of a fresh modelled kernel (its record is the context)."""
    from tracesim.kernel_model.kernel import Kernel
    return Kernel(cpus=1, clock="virtual").tracing.event(system, name)


def _type_arg(type_arg: str) -> tuple[str, Any, ContextSpec | None]:
    """(prog_type, tracepoint event or None, explicit context or None) for a --type value."""
    if type_arg == "kprobe":
        return "kprobe", None, None
    if type_arg in ("socket", "socket_filter"):
        return "socket_filter", None, None
    if type_arg.startswith("conformance"):
        size = int(type_arg.partition(":")[2] or 0)
        return "conformance", None, ContextSpec.memory(size)
    if type_arg.startswith("tracepoint:"):
        system, _, name = type_arg.split(":", 1)[1].partition("/")
        return "tracepoint", _event(system, name), None
    raise ValueError(f"unknown --type {type_arg!r}")


def _load(args: argparse.Namespace, verify_kw: dict) -> loader.LoadedProgram:
    """Load PROG as the mount would (raises ``loader.LoadError``; OSError, ValueError, KeyError
    for bad arguments)."""
    path = Path(args.prog)
    data = path.read_bytes()
    prog_type, event, ctx = _type_arg(args.type) if args.type else (None, None, None)
    if data[:4] == b"\x7fELF":
        obj = loader.open_object(data)
        spec = obj.program(args.section)          # ElfLoadError (ValueError): bad argument
        if prog_type is None:
            prog_type = loader.prog_type_of(spec.name, spec.section)
            target = loader.tracepoint_target(spec.section) if prog_type == "tracepoint" else None
            event = _event(*target) if target else None
        if spec.section.partition("/")[0] in BTF_TARGET_KINDS:    # the target, as run does
            from tracesim.kernel_model.kernel import Kernel
            check_load_target(Kernel(cpus=1, clock="virtual"), spec.name, spec.section)
        if ctx is not None:
            return loader.load(spec.insns, prog_type=prog_type, name=spec.name,
                               section=spec.section, maps=loader.create_maps(obj.maps), ctx=ctx,
                               license=obj.license, **verify_kw)
        return loader.load_object_program(obj, spec, prog_type=prog_type, event=event,
                                          **verify_kw)
    if path.suffix == ".bin":
        insns = isa.decode(data)
    else:
        from tracesim.filters.bpf.toolchain.asm import assemble
        insns = assemble(data.decode())
    prog_type = prog_type or "kprobe"
    if ctx is None:
        ctx, _ = loader.context_for(prog_type, event)
    return loader.load(insns, prog_type=prog_type, ctx=ctx, **verify_kw)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    verify_kw = dict(engine=None, privileged=not args.unprivileged,
                     strict_loops=args.strict_loops, log_level=args.log_level)
    try:
        loaded = _load(args, verify_kw)
    except loader.LoadError as e:
        sys.stdout.write(e.log)
        return 1
    except (OSError, ValueError, KeyError) as e:
        print(f"tracesim check: {e}", file=sys.stderr)
        return 2
    if args.log_level >= 2:
        sys.stdout.write(loaded.log)
    print("OK")
    return 0
