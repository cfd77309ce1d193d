"""What several benchmarks share: the ``--iterations/--repeat/--json`` command line, and the
progress bar long runs show on a terminal."""
from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

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
