"""``tracesim bench NAME [ARGS...]``: run one benchmark module (``bench/<name>.py``), or all.

Each benchmark module exposes ``run(argv: list[str]) -> int`` and parses its own options
(``--json`` among them). The table below maps a name to its module; add yours.
"""
from __future__ import annotations

import importlib
import sys

BENCHES = {
    "kernel": "bench.kernel",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: tracesim bench NAME [ARGS...] | tracesim bench all\n\nbenchmarks: "
              + ", ".join(BENCHES))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "all":
        status = 0
        for each in BENCHES:
            print(f"== {each}", flush=True)
            status |= importlib.import_module(BENCHES[each]).run(rest)
        return status
    if name not in BENCHES:
        print(f"tracesim bench: unknown benchmark '{name}' (have: {', '.join(BENCHES)})",
              file=sys.stderr)
        return 2
    return importlib.import_module(BENCHES[name]).run(rest)
