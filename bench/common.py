"""What several benchmarks share: the ``--iterations/--repeat/--json`` command line."""
from __future__ import annotations

import argparse


def iteration_args(prog: str, doc: str, argv: list[str],
                   iterations: int = 200_000, repeat: int = 3) -> argparse.Namespace:
    """Parse ``[--iterations N] [--repeat R] [--json]``; the description is the doc's 3rd line."""
    ap = argparse.ArgumentParser(prog=prog, description=doc.split("\n")[2])
    ap.add_argument("--iterations", type=int, default=iterations)
    ap.add_argument("--repeat", type=int, default=repeat)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.iterations <= 0 or args.repeat <= 0:
        ap.error("--iterations and --repeat must be positive")
    return args
