"""``tracesim bench tracing [--json] [-n N]``: the cost of the tracing core's hot paths.

Per operation, in µs (real-time clock, one instance):
* ``tracepoint_record``: ``net:netif_receive_skb`` fired and written (a ``__data_loc`` string);
* ``tracepoint_record_fixed``: ``skb:consume_skb`` (fixed-size record);
* ``kprobe_prog_drop``: a kprobe hit whose BPF seam returns 0 (the program's cost only);
* ``kprobe_record``: a kprobe hit recorded (pt_regs → record → ring buffer);
* ``disabled_check``: the call site's ``if tp.enabled`` with tracing off.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from types import SimpleNamespace

from kernel_model.kernel import Kernel


def _per_op(n: int, fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def measure(n: int) -> dict[str, float]:
    kernel = Kernel(clock="real")
    tr = kernel.tracing
    skb = SimpleNamespace(addr=0xffff888000001000, len=128, dev=SimpleNamespace(name="lo"))
    out: dict[str, float] = {}
    rx = tr.event("net", "netif_receive_skb")

    def disabled() -> None:
        if rx.enabled:
            rx.fire(skb)
    out["disabled_check"] = _per_op(n, disabled)
    tr.top.file("net", "netif_receive_skb").set_enabled(True)
    out["tracepoint_record"] = _per_op(n, lambda: rx.fire(skb))
    consume = tr.event("skb", "consume_skb")
    tr.top.file("skb", "consume_skb").set_enabled(True)
    out["tracepoint_record_fixed"] = _per_op(n, lambda: consume.fire(skb, 0))
    tr.kprobes.write("p:bench __netif_receive_skb")
    f = tr.top.file("kprobes", "bench")
    f.set_prog(lambda ctx: 0)
    f.set_enabled(True)
    site = kernel.kprobes.site("__netif_receive_skb")

    def body(s: object) -> int:
        return 0
    out["kprobe_prog_drop"] = _per_op(n, lambda: site.call(body, skb))
    f.set_prog(None)
    out["kprobe_record"] = _per_op(n, lambda: site.call(body, skb))
    return out


def run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tracesim bench tracing")
    p.add_argument("--json", action="store_true")
    p.add_argument("-n", type=int, default=200_000, help="operations per measurement")
    args = p.parse_args(argv)
    res = measure(args.n)
    if args.json:
        print(json.dumps({"unit": "us/op", "n": args.n, **{k: round(v, 3) for k, v in res.items()}}))
    else:
        for k, v in res.items():
            print(f"{k:<26} {v:8.3f} us/op")
    return 0
