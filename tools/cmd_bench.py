"""``tracesim bench NAME [ARGS...]``: run one benchmark module (``bench/<name>.py``), or all.

Each benchmark module exposes ``run(argv: list[str]) -> int`` and parses its own options
(``--json`` among them). The table below maps a name to its module; add yours. Every run goes
through ``tracesim.bench.common.run_with_machine``, which adds the machine (CPU, cores, Python, load at
start and end) to the output; ``tracesim bench compare A.json B.json`` sets two outputs side by
side.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from tracesim.bench import compare
from tracesim.bench.common import run_with_machine

BENCHES = {name: f"tracesim.bench.{name}" for name in
           ("vm", "kernel", "verifier", "cc", "tracefs", "skb", "functions", "rss", "predicate",
            "tracing")}
# One line each for ``tracesim bench --help`` (without importing every benchmark).
SUMMARIES = {"vm": "eBPF interpreter and JIT speed", "kernel": "skb alloc/free cost in the model",
             "verifier": "verifier speed (processed insns/s)",
             "cc": "tracesim cc against clang: program size, compile time",
             "tracefs": "events streamed through a real mount", "skb": "the 2013 RFC's 1M skb "
             "alloc/free benchmark through tracefs files",
             "functions": "the skb loop with the function tracers on, against tracing off",
             "rss": "RSS steering rate",
             "predicate": "predicate filter cost per check", "tracing": "tracing core hot paths"}


def available() -> list[str]:
    """Benchmarks whose module exists (later issues add the rest of the table)."""
    return [name for name, module in BENCHES.items() if importlib.util.find_spec(module)]


def parser() -> argparse.ArgumentParser:
    """The benchmarks as sub-commands (for --help and discovery); each module parses the rest
    of its command line itself, so ``tracesim bench NAME --help`` is that module's help."""
    p = argparse.ArgumentParser(prog="tracesim bench", usage="%(prog)s NAME [ARGS...]",
                                description="Run one benchmark, or all of them in turn.")
    sub = p.add_subparsers(dest="name", metavar="NAME", title="benchmarks")
    for name in available():
        sub.add_parser(name, add_help=False, help=SUMMARIES.get(name, ""))
    sub.add_parser("all", help="every benchmark above, in that order",
                   usage="tracesim bench all [ARGS...]",
                   description="Every benchmark in turn; ARGS (such as --json) go to each.")
    compare.add_arguments(sub.add_parser("compare", prog="tracesim bench compare", help=compare.SUMMARY,
                                         description=compare.DESCRIPTION))
    return p


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        (sys.stdout if argv else sys.stderr).write(parser().format_help())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "all" and ("-h" in rest or "--help" in rest):
        parser().parse_args(["all", "--help"])          # prints the help and exits 0
    if name == "compare":
        return compare.main(rest)
    if name == "all":
        status = 0
        for each in available():
            print(f"== {each}", flush=True)
            status |= run_with_machine(importlib.import_module(BENCHES[each]).run, rest)
        return status
    if name not in available():
        print(f"tracesim bench: unknown benchmark '{name}' (have: {', '.join(available())})",
              file=sys.stderr)
        return 2
    return run_with_machine(importlib.import_module(BENCHES[name]).run, rest)
