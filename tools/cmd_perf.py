"""``tracesim perf stat -e SYS:EV [-e ...] --mount DIR [--duration S]``: count the model's
tracepoints as ``perf stat -e`` counts the host's (host perf cannot: its perf_event_open goes to
the host kernel, and a mount refuses it the events' ``format`` files).  The mount counts every
hit while the command runs (``--duration`` or Ctrl-C) and prints perf's layout."""
from __future__ import annotations

import argparse
import sys
import time

from tracesim.tools.ctl_socket import CtlError, request


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracesim perf", description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("stat",))
    p.add_argument("-e", "--event", dest="events", action="append", required=True,
                   metavar="SYS:EV[,SYS:EV...]", help="tracepoints to count")
    p.add_argument("-a", "--all-cpus", action="store_true", help="system wide (always)")
    p.add_argument("--mount", "-m", required=True, metavar="DIR", help="the tracesim mount")
    p.add_argument("--duration", type=float, metavar="S", help="seconds (default: Ctrl-C)")
    return p


def stat_text(counts: str, elapsed: float) -> str:
    """perf stat's output for ``NAME COUNT`` lines over ``elapsed`` seconds."""
    rows = [line.rsplit(" ", 1) for line in counts.splitlines()]
    body = "".join(f"{count:>18}      {name:<67}\n" for name, count in rows)
    return (f"\n Performance counter stats for 'system wide':\n\n{body}\n"
            f"{elapsed:>18.9f} seconds time elapsed\n\n")


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    events = [e for group in args.events for e in group.split(",") if e]
    try:
        status, text = request(args.mount, ["perf-stat", "start", *events])
        if status:
            sys.stderr.write(text)
            return 1
        started = time.monotonic()
        try:
            time.sleep(args.duration if args.duration is not None else 1e9)
        except KeyboardInterrupt:
            pass
        status, counts = request(args.mount, ["perf-stat", "stop", text.strip()])
    except CtlError as exc:
        print(f"tracesim perf: {exc}", file=sys.stderr)
        return 1
    if status:
        sys.stderr.write(counts)
        return 1
    sys.stderr.write(stat_text(counts, time.monotonic() - started))
    return 0
