"""``tracesim bench kernel [--iterations N] [--repeat R] [--json]``.

The cost of one ``netdev_alloc_skb(lo, 128); kfree_skb(skb)`` pair in the modelled kernel (the
2013 RFC's benchmark loop, run by ``tracesim.kernel_model.net.skb_bench``), in three configurations:

* ``off``: no tracing at all (every tracepoint and kprobe site costs one attribute check);
* ``tracepoint``: ``skb:kfree_skb`` enabled on the top-level instance, each call recording an
  event into the ring buffer (buffer large enough, overwrite mode);
* ``kprobe``: a raw kprobe with an empty handler on ``__netdev_alloc_skb`` (pt_regs built each
  call), tracing off.

Each figure is the median over ``--repeat`` runs of ns per pair (wall time, clock="real"); its
``spread`` is the (max-min)/median of those runs.
"""
from __future__ import annotations

import json
import statistics
from collections.abc import Callable

from tracesim.bench.common import iteration_args, progress_bar, spread, spread_line
from tracesim.kernel_model.kernel import Kernel
from tracesim.kernel_model.net import skb_bench

CONFIGURATIONS = ("off", "kprobe", "tracepoint")      # in the order ``measure`` runs them


def ns_per_pair(kernel: Kernel, iterations: int, done: Callable[[], None] = lambda: None) -> float:
    usecs = skb_bench.run(kernel, iterations)
    done()
    return usecs * 1000 / iterations


def measure(iterations: int, repeat: int, done: Callable[[], None] = lambda: None) -> dict:
    """The three configurations, ``repeat`` timed runs each; ``done()`` after every run."""
    kernel = Kernel(clock="real")
    skb_bench.run(kernel, min(iterations, 10_000))            # warm the caches and slabs
    offs = [ns_per_pair(kernel, iterations, done) for _ in range(repeat)]
    off = statistics.median(offs)

    probe = kernel.kprobes.register_kprobe("__netdev_alloc_skb", lambda regs: None)
    kprobes = [ns_per_pair(kernel, iterations, done) for _ in range(repeat)]
    kprobe = statistics.median(kprobes)
    kernel.kprobes.unregister_kprobe(probe)

    top = kernel.tracing.top
    top.set_buffer_size_kb(max(1410, iterations * 48 // 1024 + 64))
    event = top.file("skb", "kfree_skb")
    event.set_enabled(True)
    traced = []
    for _ in range(repeat):
        top.clear()
        traced.append(ns_per_pair(kernel, iterations, done))
    event.set_enabled(False)
    tracepoint = statistics.median(traced)
    return {
        "iterations": iterations,
        "repeat": repeat,
        "off_ns_per_pair": round(off, 1),
        "tracepoint_ns_per_pair": round(tracepoint, 1),
        "kprobe_ns_per_pair": round(kprobe, 1),
        "tracepoint_over_off": round(tracepoint / off, 2),
        "kprobe_over_off": round(kprobe / off, 2),
        "spread": {"off_ns_per_pair": spread(offs), "tracepoint_ns_per_pair": spread(traced),
                   "kprobe_ns_per_pair": spread(kprobes)} if repeat > 1 else {},
    }


def run(argv: list[str]) -> int:
    args = iteration_args("tracesim bench kernel", __doc__, argv)
    with progress_bar(len(CONFIGURATIONS) * args.repeat, "run", "kernel bench", args.json) as bar:
        result = measure(args.iterations, args.repeat, lambda: bar.update(1))
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"skb alloc/free pair, {args.iterations} iterations, median of {args.repeat}:")
    print(f"  tracing off          {result['off_ns_per_pair']:9.1f} ns")
    print(f"  skb:kfree_skb on     {result['tracepoint_ns_per_pair']:9.1f} ns "
          f"({result['tracepoint_over_off']:.2f}x)")
    print(f"  kprobe (empty)       {result['kprobe_ns_per_pair']:9.1f} ns "
          f"({result['kprobe_over_off']:.2f}x)")
    print(spread_line(result["spread"]))
    return 0
