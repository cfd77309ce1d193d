"""``tracesim bench functions``: the skb benchmark module with the function tracers on.

    tracesim bench functions [--iterations N] [--repeat R] [--clock cpu|wall] [--json]
                             [--mount DIR]

Issue 19's performance line: ``function`` on every modelled function keeps the 2013 RFC's skb
alloc/free loop within 3× of tracing off. Driven as a user would (``current_tracer``, then the
``skb-bench`` module through the control channel, on an in-process tree or a running mount);
the phases run in order, ``--repeat`` times over (more while no ``--repeat`` runs of a phase
agree within 5 %), and each figure is the median of the runs that agree best:

1. ``off``             ``current_tracer`` ``nop``
2. ``function``        ``function`` on every modelled function (no filter)
3. ``function_graph``  ``function_graph``, likewise
4. ``off_again``       ``nop`` again (the machine's noise: same state as ``off``)

Before the timed runs a short run with ``function`` counts the entries one alloc/free pair
writes (``per_cpu/cpuN/stats``: entries + overrun), so the JSON also gives the cost of one
function entry (``ns_per_entry``: (function - off) per pair / entries per pair).
"""
from __future__ import annotations

import argparse
import json
import re
from typing import Any

from tracesim.bench.common import MAX_ROUNDS_FACTOR, progress_bar, steady, steady_figure
from tracesim.bench.skb import InProcess, Mounted, run_module

PHASES = ("off", "function", "function_graph", "off_again")
TRACERS = {"off": "nop", "function": "function", "function_graph": "function_graph",
           "off_again": "nop"}
TARGET = {"function": 3.0}          # issue 19: function within 3x of tracing off
COUNT_PAIRS = 100
_STAT = re.compile(r"^(entries|overrun): (\d+)$", re.M)


def entries_per_pair(fs: Any, ncpus: int) -> float:
    """Function entries one alloc/free pair writes (a short run with ``function``)."""
    fs.write("current_tracer", "function")
    fs.write("trace", "")
    run_module(fs, COUNT_PAIRS)
    total = 0
    for cpu in range(ncpus):
        total += sum(int(v) for _, v in _STAT.findall(fs.read(f"per_cpu/cpu{cpu}/stats")))
    fs.write("current_tracer", "nop")
    return total / COUNT_PAIRS


def cpu_count(fs: Any) -> int:
    n = 0
    while True:
        try:
            fs.read(f"per_cpu/cpu{n}/stats")
        except OSError:
            return n
        n += 1


def measure_runs(fs: Any, iterations: int, repeat: int, clock: str = "cpu",
                 max_rounds: int | None = None,
                 progress: Any = lambda phase: None) -> dict[str, list[int]]:
    """Every run's usecs, per phase (see the module docstring)."""
    cap = max(max_rounds or MAX_ROUNDS_FACTOR * repeat, repeat)
    times: dict[str, list[int]] = {p: [] for p in PHASES}
    try:
        fs.write("current_tracer", "nop")
        run_module(fs, min(iterations, 20_000), clock)      # warm up slabs and caches
        while len(times["off"]) < repeat or (
                len(times["off"]) < cap and not all(steady(v, repeat) for v in times.values())):
            for phase in PHASES:
                fs.write("current_tracer", TRACERS[phase])
                times[phase].append(run_module(fs, iterations, clock)[0])
                progress(phase)
    finally:
        fs.write("current_tracer", "nop")
    return times


def run(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="tracesim bench functions",
                                 description="The skb alloc/free module with the function "
                                             "tracers on, against tracing off.")
    ap.add_argument("--iterations", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--max-repeat", type=int, metavar="N",
                    help=f"at most N sequences (default {MAX_ROUNDS_FACTOR} x --repeat)")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--mount", metavar="DIR", help="drive a running tracesim mount")
    args = ap.parse_args(argv)
    if args.iterations <= 0 or args.repeat <= 0 or (args.max_repeat or 1) <= 0:
        ap.error("--iterations, --repeat and --max-repeat must be positive")
    fs: Any = Mounted(args.mount) if args.mount else InProcess()
    total = len(PHASES) * args.repeat
    with progress_bar(total, "phase", "functions bench", args.json) as bar:
        try:
            per_pair = entries_per_pair(fs, cpu_count(fs))
            runs = measure_runs(fs, args.iterations, args.repeat, args.clock,
                                args.max_repeat, lambda phase: bar.update(1))
        finally:
            fs.close()
    figures = {p: steady_figure(v, args.repeat) for p, v in runs.items()}
    usecs = {p: figures[p][0] for p in PHASES}
    off = usecs["off"] or 1
    ratios = {p: round(usecs[p] / off, 3) for p in PHASES}
    ns_pair = {p: round(usecs[p] * 1000 / args.iterations, 1) for p in PHASES}
    ns_entry = round((ns_pair["function"] - ns_pair["off"]) / per_pair, 1) if per_pair else None
    met = {p: ratios[p] <= limit for p, limit in TARGET.items()}
    if args.json:
        print(json.dumps({
            "phases": usecs, "iterations": args.iterations, "clock": args.clock,
            "spread": {p: figures[p][1] for p in PHASES} if args.repeat > 1 else {},
            "rounds": len(runs["off"]), "ns_per_iteration": ns_pair, "ratios": ratios,
            "entries_per_pair": per_pair, "ns_per_entry": ns_entry,
            "targets": TARGET, "targets_met": met}))
        return 0
    print(f"skb alloc/free with the function tracers ({fs.where}; {args.clock} time; "
          f"{args.iterations} pairs per run, {len(runs['off'])} sequence(s)):")
    print(f"{'phase':<15} {'usecs':>10} {'ratio':>6} {'ns/pair':>9}   spread")
    for p in PHASES:
        print(f"{p:<15} {usecs[p]:>10.0f} {ratios[p]:>6.2f} {ns_pair[p]:>9.0f}   "
              f"{figures[p][1]:6.1%}")
    print(f"{per_pair:g} function entries per pair; {ns_entry} ns per entry")
    print(f"function/off = {ratios['function']:.2f} (target <= {TARGET['function']:g}): "
          + ("met" if met["function"] else "not met"))
    return 0
