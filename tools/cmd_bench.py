"""``tracesim bench NAME [ARGS...]``: run one benchmark module (``bench/<name>.py``), or all.

Each benchmark module exposes ``run(argv: list[str]) -> int`` and parses its own options
(``--json`` among them). The table below maps a name to its module; add yours.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys

BENCHES = {"vm": "bench.vm", "kernel": "bench.kernel", "verifier": "bench.verifier",
           "cc": "bench.cc", "tracefs": "bench.tracefs", "skb": "bench.skb", "rss": "bench.rss",
           "predicate": "bench.predicate", "tracing": "bench.tracing"}


def available() -> list[str]:
    """Benchmarks whose module exists (later issues add the rest of the table)."""
    return [name for name, module in BENCHES.items() if importlib.util.find_spec(module)]


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: tracesim bench NAME [ARGS...] | tracesim bench all\n\nbenchmarks: "
              + ", ".join(available()))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "all":
        status = 0
        for each in available():
            print(f"== {each}", flush=True)
            status |= importlib.import_module(BENCHES[each]).run(rest)
        return status
    if name not in available():
        print(f"tracesim bench: unknown benchmark '{name}' (have: {', '.join(available())})",
              file=sys.stderr)
        return 2
    return importlib.import_module(BENCHES[name]).run(rest)
