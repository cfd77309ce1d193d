"""`tracesim conformance DIR [--engine interp|jit|native|all]`: run the eBPF conformance suite
(``all``, or its older name ``both``: every engine)."""
from __future__ import annotations

import argparse
from pathlib import Path

from tracesim.filters.bpf.vm.conformance import ENGINES, run_dir


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracesim conformance",
                                description="run every *.data file of a bpf_conformance "
                                            "directory on the VM")
    p.add_argument("directory", type=Path)
    p.add_argument("--engine", choices=(*ENGINES, "all", "both"), default="all")
    p.add_argument("-q", "--quiet", action="store_true", help="print only failures")
    return p


def main(argv: list[str]) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if not args.directory.is_dir():
        ap.error(f"{args.directory}: not a directory")
    engines = ENGINES if args.engine in ("all", "both") else (args.engine,)
    passed = failed = 0
    for name, engine, ok, detail in run_dir(args.directory, engines):
        if ok:
            passed += 1
        else:
            failed += 1
        if not ok or not args.quiet:
            print(f"{'PASS' if ok else 'FAIL'} {engine:<6} {name}: {detail}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1
