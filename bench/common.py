"""What several benchmarks share: the ``--iterations/--repeat/--json`` command line, the
progress bar long runs show on a terminal, the machine a run was measured on, and the spread
of repeated measurements: a bench that repeats runs until ``--repeat`` of its runs agree within
5 % (``sample_until_steady``, at most ``MAX_ROUNDS_FACTOR × --repeat`` runs) and reports the
runs it took and the spread of those it kept, or the spread it reached at the cap."""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from typing import Any

from tqdm import tqdm

TICK_S = 1.0      # how often the bar's clock moves while one long step runs


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


@contextmanager
def progress_bar(total: int, unit: str, desc: str, json_output: bool = False) -> Iterator[tqdm]:
    """A bar of ``total`` steps on stderr, erased when done; a silent no-op bar when stderr is
    not a terminal or the output is JSON, so logs and pipes get only the results.

    The steps of a benchmark are long (one skb phase is ~17 s), so a thread redraws the bar
    every ``TICK_S`` to keep its elapsed time moving; the redraw is far too rare to show in a
    measurement."""
    show = not json_output and sys.stderr.isatty()
    bar = tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, leave=False,
               disable=not show, dynamic_ncols=True)
    stop = threading.Event()
    ticker = None
    if show:
        def tick() -> None:
            while not stop.wait(TICK_S):
                bar.refresh()
        ticker = threading.Thread(target=tick, name="progress-tick", daemon=True)
        ticker.start()
    try:
        yield bar
    finally:
        stop.set()
        if ticker is not None:
            ticker.join()
        bar.close()


def _cpu_model() -> str:
    """The ``model name`` line of /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def load_average() -> list[float] | None:
    """The 1/5/15-minute load average, or None where the platform has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info() -> dict[str, Any]:
    """What a benchmark figure depends on besides the code: CPU, cores, Python, current load.
    ``run_with_machine`` adds the load at the end of the run as ``load_avg_end``."""
    return {"cpu_model": _cpu_model(), "cores": os.cpu_count() or 0,
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "load_avg_start": load_average()}


def machine_line(machine: dict[str, Any]) -> str:
    """One text line for the end of a benchmark's table."""
    def load(values: list[float] | None) -> str:
        return " ".join(f"{x:.2f}" for x in values) if values else "n/a"
    return (f"machine: {machine.get('cpu_model')}, {machine.get('cores')} cores, "
            f"{machine.get('implementation', 'Python')} {machine.get('python')}, "
            f"load {load(machine.get('load_avg_start'))} at start, "
            f"{load(machine.get('load_avg_end'))} at end")


def run_with_machine(run: Callable[[list[str]], int], argv: list[str]) -> int:
    """Run one benchmark's ``run(argv)`` and report the machine with its result.

    With ``--json`` the benchmark's stdout is held and its one JSON document gets a ``machine``
    key (so the output stays one document that ``bench compare`` can read); text output streams
    as it did and ends with a ``machine:`` line. A JSON output that is not one object is
    passed through untouched rather than lost."""
    machine = machine_info()
    # argparse also takes an unambiguous prefix (--js) for --json
    wants_json = any(len(a) >= 3 and "--json".startswith(a) for a in argv)
    if not wants_json or "-h" in argv or "--help" in argv:
        status = run(argv)
        machine["load_avg_end"] = load_average()
        if "-h" not in argv and "--help" not in argv:
            print(machine_line(machine), flush=True)
        return status
    held = io.StringIO()
    with redirect_stdout(held):
        status = run(argv)
    machine["load_avg_end"] = load_average()
    text = held.getvalue()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        sys.stdout.write(text)
        return status
    doc["machine"] = machine
    # keep the benchmark's own layout: indented if it printed on several lines
    print(json.dumps(doc, indent=2 if text.strip().count("\n") else None), flush=True)
    return status


def spread(values: Sequence[float]) -> float:
    """(max - min) / median of repeated measurements: 0.05 means they agree within 5 %."""
    mid = statistics.median(values)
    return round((max(values) - min(values)) / mid, 4) if mid else 0.0


SPREAD_OK = 0.05      # repeated runs agreeing within 5 % are a figure to trust
MAX_ROUNDS_FACTOR = 3  # a bench repeating until steady stops at 3 × --repeat runs


def tightest(values: Sequence[float], k: int) -> list[float]:
    """The ``k`` values that lie closest together (the window of sorted values with the
    smallest spread): a run slowed by the machine's other work falls outside it."""
    ordered = sorted(values)
    if len(ordered) <= k:
        return ordered
    best = min(range(len(ordered) - k + 1),
               key=lambda i: (ordered[i + k - 1] - ordered[i]) / (ordered[i + k // 2] or 1))
    return ordered[best:best + k]


def steady(values: Sequence[float], k: int) -> bool:
    """Whether ``k`` of the runs agree within ``SPREAD_OK``."""
    return k <= 1 or spread(tightest(values, k)) < SPREAD_OK


def sample_until_steady(sample: Callable[[], float], repeat: int,
                        max_rounds: int | None = None) -> list[float]:
    """``repeat`` samples, then more while no ``repeat`` of them agree within 5 %, up to
    ``max_rounds`` (default ``MAX_ROUNDS_FACTOR × repeat``); every sample taken."""
    cap = max_rounds or MAX_ROUNDS_FACTOR * repeat
    values = [sample() for _ in range(repeat)]
    while len(values) < cap and not steady(values, repeat):
        values.append(sample())
    return values


def steady_figure(values: Sequence[float], k: int) -> tuple[float, float]:
    """(median, spread) of the ``k`` runs that agree best."""
    kept = tightest(values, k)
    return statistics.median(kept), spread(kept)


def spread_line(spreads: dict[str, float]) -> str:
    """One text line on the largest spread, flagged when it is above ``SPREAD_OK``."""
    if not spreads:
        return "spread: one run each (use --repeat for the spread)"
    name = max(spreads, key=lambda k: spreads[k])
    worst = spreads[name]
    verdict = ("within 5 %" if worst < SPREAD_OK
               else "over 5 %: rerun on a quieter machine or with more --repeat")
    return f"spread (max-min)/median: largest {worst:.1%} ({name}), {verdict}"
