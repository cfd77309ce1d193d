"""``tracesim bench rss [--packets N] [--flows N] [--queues Q] [--repeat R] [--json]``.

* Steering rate: packets steered per second by the RSS program (``tools/examples/rss.bpf.c``)
  on the JIT and on the interpreter, and by the software fallback — each over the same ``--packets``
  random flows, with the skbs built beforehand, so the figure is the steering decision alone
  (context build + program run, or the Python algorithm).  Median of ``--repeat`` batches;
  ``spread.packets_per_second`` is their (max-min)/median per path.
* Spread: ``--flows`` (100,000) random flows through the RSS algorithm onto ``--queues`` (4) with
  the table ``i % queues``; ``max_min`` is the busiest queue's load over the idlest's.  The same
  flows through the TUN device's default selection (no program) are reported for comparison.

The program is built with ``tracesim cc`` when its object passes the loader's checks, else with
clang (``object`` says which), and verified when tracesim's verifier accepts it (``verified``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from tracesim.bench.common import spread, spread_line
from tracesim.kernel_model.net.tun import TunDevice, make_skb
from tracesim.tools.cmd_rss import random_frames
from tracesim.tools.rss import rss_software
from tracesim.tools.rss.ebpf_rss import EbpfRss, RssLoadError
from tracesim.tools.rss.rss_software import INDIRECTION_TABLE_SIZE, RssConfig


def _rate(rss: EbpfRss, skbs: list, repeat: int) -> tuple[float, float]:
    """Packets per second (median of ``repeat`` batches) and the batches' spread."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for skb in skbs:
            rss.steer_skb(skb)
        times.append(time.perf_counter() - start)
    return len(skbs) / statistics.median(times), spread(times)


def _load_jit() -> tuple[EbpfRss, bool]:
    """The program on the JIT, built as ``tracesim rss`` builds it; verified when the verifier
    accepts it, else loaded unverified (the figures are about execution speed)."""
    rss = EbpfRss()
    if rss.load(engine="jit"):
        return rss, True
    reason = rss.fallback_reason
    if rss.load(engine="jit", verify=False):
        return rss, False
    raise RssLoadError(f"{reason}; unverified: {rss.fallback_reason}")


def run(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="tracesim bench rss")
    ap.add_argument("--packets", type=int, default=3000)
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--queues", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    table = [i % args.queues for i in range(INDIRECTION_TABLE_SIZE)]
    config = RssConfig()
    key = rss_software.STANDARD_KEY
    skbs = [make_skb(f) for f in random_frames(args.packets, seed=7)]

    rates: dict[str, float] = {}
    spreads: dict[str, float] = {}
    jit, verified = _load_jit()
    interp = EbpfRss()                      # the same object; verification is engine-independent
    if not interp.load(jit.object, engine="interp", verify=False):
        raise RssLoadError(interp.fallback_reason)
    built_by = jit.built_by
    native = EbpfRss()
    if not native.load(jit.object, engine="native", verify=False):
        raise RssLoadError(native.fallback_reason)
    for engine, rss in (("native", native), ("jit", jit), ("interp", interp)):
        rss.set_all(config, table, key)
        rates[engine], spreads[engine] = _rate(rss, skbs, args.repeat)
    software = EbpfRss()
    software.set_all(config, table, key)
    rates["software"], spreads["software"] = _rate(software, skbs, args.repeat)

    # Spread over many flows: the fastest path computes the queues (all paths agree; tested).
    fastest = native
    flows = random_frames(args.flows, seed=11)
    loads = [0] * args.queues
    for frame in flows:
        loads[fastest.steer(frame) % args.queues] += 1
    automq = TunDevice("tun0", numqueues=args.queues)
    for frame in flows:
        automq.xmit(frame)
    default_loads = automq.queue_packets

    result = {
        "object": built_by, "verified": verified, "packets": args.packets,
        "packets_per_second": {k: round(v) for k, v in rates.items()},
        "spread": {"packets_per_second": spreads if args.repeat > 1 else {}},
        "flows": args.flows, "queues": args.queues, "queue_loads": loads,
        "max_min": round(max(loads) / max(min(loads), 1), 4),
        "default_selection_loads": default_loads,
        "default_selection_max_min": round(max(default_loads) / max(min(default_loads), 1), 4),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"rss program built by {built_by}, {'verified' if verified else 'NOT verified'}")
    for name, value in rates.items():
        print(f"  {name:<9} {value:>10,.0f} packets steered/s")
    print(f"  {args.flows:,} random flows on {args.queues} queues: {loads}, "
          f"max/min {result['max_min']}")
    print(f"  default selection (automq), same flows: {default_loads}, "
          f"max/min {result['default_selection_max_min']}")
    print(spread_line(result["spread"]["packets_per_second"]))
    return 0
