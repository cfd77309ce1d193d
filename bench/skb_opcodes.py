"""The skb benchmark's phases counted in Python bytecodes instead of time.

    python -m tracesim.bench.skb_opcodes [--pairs N] [--json]

On a machine shared with other work the timed phases of ``tracesim bench skb`` move by 10-30 %
between runs; the number of bytecodes the interpreter executes per alloc/free pair does not
(``sys.settrace`` with opcode events, on the in-process tree). It leaves out what runs in C
(struct packing, locks, clock reads), so it is a guide to the Python work of each phase, not a
substitute for the timed ratios.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tracesim.bench.skb import EVENT_DIR, PREDICATE, PROBE_DEF, InProcess, filter_object, set_engine

PHASES = ("off", "enabled", "predicate", "bpf_jit")


def count_opcodes(run: Any, pairs: int) -> tuple[float, float]:
    """(bytecodes, Python calls) per call of ``run``, over ``pairs`` calls."""
    counts = [0, 0]

    def trace(frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        counts[event == "call"] += event in ("opcode", "call")
        return trace
    old = sys.gettrace()
    sys.settrace(trace)
    try:
        for _ in range(pairs):
            run()
    finally:
        sys.settrace(old)
    return counts[0] / pairs, counts[1] / pairs


def measure(pairs: int) -> dict[str, dict[str, float]]:
    fs = InProcess()
    obj = filter_object()
    kernel = fs.system.kernel
    net, dev = kernel.net, kernel.net.device("lo")

    def pair() -> None:
        net.kfree_skb(net.netdev_alloc_skb(dev, 128), 2, 0)
    steps = {"off": [], "enabled": [(f"{EVENT_DIR}/enable", "1")],
             "predicate": [(f"{EVENT_DIR}/filter", PREDICATE)],
             "bpf_jit": [(f"{EVENT_DIR}/filter", "0"), (f"{EVENT_DIR}/filter", obj)]}
    out = {}
    try:
        fs.write("kprobe_events", PROBE_DEF, append=True)
        set_engine(fs, "jit")
        with kernel.machine.running(kernel.user_task("insmod")):
            for _ in range(pairs):          # warm the slabs
                pair()
            for phase in PHASES:
                for path, data in steps[phase]:
                    fs.write(path, data)
                ops, calls = count_opcodes(pair, pairs)
                out[phase] = {"opcodes": ops, "calls": calls}
    finally:
        fs.close()
    for phase in PHASES:
        out[phase]["ratio"] = round(out[phase]["opcodes"] / out["off"]["opcodes"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tracesim.bench.skb_opcodes")
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = measure(max(args.pairs, 1))
    if args.json:
        print(json.dumps(result))
    else:
        for phase, r in result.items():
            print(f"{phase:<10} {r['opcodes']:8.1f} bytecodes {r['calls']:5.1f} calls per pair"
                  f"  ({r['ratio']:.2f} x off)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
