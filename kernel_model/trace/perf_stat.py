"""``perf stat -e SYS:EV`` for the model's tracepoints, counted where they fire.

Host perf cannot count model events (its perf_event_open goes to the host kernel), so a mount
counts them itself: each session registers a counting probe on every event it names
(``Tracing.register_probe``, as perf's tracepoint PMU hooks the tracepoint: every hit counts,
whatever tracefs enables) until it is stopped.

    perf-stat start EV [EV ...]     a session id; EV is SYS:NAME (tracepoint:SYS:NAME too)
    perf-stat stop ID               the counts, one ``NAME COUNT`` line per event; the probes go

``run(kernel, argv) -> (status, text)``: 0 success, 1 a failed operation, 2 a usage error.
"""
from __future__ import annotations

from typing import Any

USAGE = "usage: perf-stat start SYS:EVENT... | perf-stat stop ID\n"


def _sessions(kernel: Any) -> dict[int, list[tuple[Any, Any, list[int]]]]:
    return kernel.__dict__.setdefault("perf_stat_sessions", {})


def run(kernel: Any, argv: list[str]) -> tuple[int, str]:
    if len(argv) >= 3 and argv[:2] == ["perf-stat", "start"]:
        return _start(kernel, argv[2:])
    if len(argv) == 3 and argv[:2] == ["perf-stat", "stop"] and argv[2].isdigit():
        with kernel.lock:
            session = _sessions(kernel).pop(int(argv[2]), None)
            if session is None:
                return 1, f"perf-stat: no session {argv[2]}\n"
            for ev, probe, _ in session:
                kernel.tracing.unregister_probe(ev, probe)
        return 0, "".join(f"{ev.full_name} {count[0]}\n" for ev, _, count in session)
    return 2, USAGE


def _start(kernel: Any, names: list[str]) -> tuple[int, str]:
    events = []
    for name in names:
        system, _, event = name.removeprefix("tracepoint:").partition(":")
        ev = kernel.tracing.events.get((system, event))
        if ev is None or system == "ftrace" or hasattr(ev, "symbol"):
            return 1, (f"event syntax error: '{name}'\n{' ' * 21}\\___ unknown tracepoint\n")
        events.append(ev)
    session = []
    with kernel.lock:
        for ev in events:
            count = [0]

            def probe(args: tuple, count: list[int] = count) -> None:
                count[0] += 1
            kernel.tracing.register_probe(ev, probe)
            session.append((ev, probe, count))
        sessions = _sessions(kernel)
        sid = max(sessions, default=0) + 1
        sessions[sid] = session
    return 0, f"{sid}\n"
