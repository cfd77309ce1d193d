"""``tracesim bench tracing [--json] [-n N] [--repeat R]``: the cost of the tracing core's hot paths.

Per operation, in µs (real-time clock, one instance), the median of ``--repeat`` measurements
(``spread`` their (max-min)/median):
* ``tracepoint_record``: ``net:netif_receive_skb`` fired and written (a ``__data_loc`` string);
* ``tracepoint_record_fixed``: ``skb:consume_skb`` (fixed-size record);
* ``kprobe_prog_drop``: a kprobe hit whose BPF seam returns 0 (the program's cost only);
* ``kprobe_record``: a kprobe hit recorded (pt_regs → record → ring buffer);
* ``disabled_check``: the call site's ``if tp.enabled`` with tracing off.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace

from tracesim.bench.common import spread, spread_line
from tracesim.kernel_model.kernel import Kernel


def _per_op(n: int, fn: Callable[[], None], repeat: int, spreads: dict[str, float], key: str) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - start) / n * 1e6)
    spreads[key] = spread(samples)
    return statistics.median(samples)


def measure(n: int, repeat: int = 1, spreads: dict[str, float] | None = None) -> dict[str, float]:
    """µs per operation, median of ``repeat``; each figure's spread goes into ``spreads``."""
    spreads = {} if spreads is None else spreads
    kernel = Kernel(clock="real")
    tr = kernel.tracing
    skb = SimpleNamespace(addr=0xffff888000001000, len=128, dev=SimpleNamespace(name="lo"))
    out: dict[str, float] = {}
    rx = tr.event("net", "netif_receive_skb")

    def disabled() -> None:
        if rx.enabled:
            rx.fire(skb)
    out["disabled_check"] = _per_op(n, disabled, repeat, spreads, "disabled_check")
    tr.top.file("net", "netif_receive_skb").set_enabled(True)
    out["tracepoint_record"] = _per_op(n, lambda: rx.fire(skb), repeat, spreads, "tracepoint_record")
    consume = tr.event("skb", "consume_skb")
    tr.top.file("skb", "consume_skb").set_enabled(True)
    out["tracepoint_record_fixed"] = _per_op(n, lambda: consume.fire(skb, 0), repeat, spreads,
                                             "tracepoint_record_fixed")
    tr.kprobes.write("p:bench __netif_receive_skb")
    f = tr.top.file("kprobes", "bench")
    f.set_prog(lambda ctx: 0)
    f.set_enabled(True)
    site = kernel.kprobes.site("__netif_receive_skb")

    def body(s: object) -> int:
        return 0
    out["kprobe_prog_drop"] = _per_op(n, lambda: site.call(body, skb), repeat, spreads, "kprobe_prog_drop")
    f.set_prog(None)
    out["kprobe_record"] = _per_op(n, lambda: site.call(body, skb), repeat, spreads, "kprobe_record")
    return out


def run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tracesim bench tracing")
    p.add_argument("--json", action="store_true")
    p.add_argument("-n", type=int, default=200_000, help="operations per measurement")
    p.add_argument("--repeat", type=int, default=3, help="measurements per figure (median)")
    args = p.parse_args(argv)
    if args.n <= 0 or args.repeat <= 0:
        p.error("-n and --repeat must be positive")
    spreads: dict[str, float] = {}
    res = measure(args.n, args.repeat, spreads)
    spreads = spreads if args.repeat > 1 else {}
    if args.json:
        print(json.dumps({"unit": "us/op", "n": args.n, "repeat": args.repeat,
                          **{k: round(v, 3) for k, v in res.items()}, "spread": spreads}))
    else:
        for k, v in res.items():
            print(f"{k:<26} {v:8.3f} us/op")
        print(spread_line(spreads))
    return 0
