"""The benchmark module of the 2013 "tracing filters with BPF" RFC, as a loadable-module model.

The RFC's module did, at insmod time::

    dev = init_net.loopback_dev;
    do_gettimeofday(&start);
    for (i = 0; i < 1000000; i++) { skb = netdev_alloc_skb(dev, 128); kfree_skb(skb); }
    do_gettimeofday(&end);
    printk("1M skb alloc/free %lld (usecs)\\n", ...);

Here the loop runs the model's ``netdev_alloc_skb``/``kfree_skb`` (with every tracepoint and
kprobe site they contain) in the context of an ``insmod`` task on the current CPU, and the time
is wall-clock time (``time.perf_counter_ns``) whatever the trace clock mode, because what is
measured is the cost of the model itself; ``clock="cpu"`` times the loop with the CPU time of
the thread running it instead (``time.thread_time_ns``: the same cost without the time other
processes of a busy machine take). The log line goes to printk. The Python collector runs
once before the loop (not timed), so each load starts from the same heap state.

The count is said the way a module with an ``iterations`` parameter would print it with integer
arithmetic: a multiple of a million as ``<n/10^6>M`` (1,000,000 → ``1M``, 3,000,000 → ``3M``),
else a multiple of a thousand as ``<n/1000>K`` (10,000 → ``10K``, 1,500,000 → ``1500K``),
else the plain number (``1234 skb alloc/free ...``).
"""
from __future__ import annotations

import gc
import time
from typing import TYPE_CHECKING

from tracesim.kernel_model.net.core import SKB_DROP_REASON_NOT_SPECIFIED

if TYPE_CHECKING:
    from tracesim.kernel_model.kernel import Kernel

DEFAULT_ITERATIONS = 1_000_000
DEFAULT_DEVICE = "lo"
SKB_SIZE = 128
KFREE_SKB_RET_OFFSET = 0x4d     # where, inside skb_bench_run, kfree_skb returns to
CLOCKS = {"wall": time.perf_counter_ns, "cpu": time.thread_time_ns}


def count_text(n: int) -> str:
    """How the module says the iteration count (see the module docstring)."""
    if n > 0 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n > 0 and n % 1000 == 0:
        return f"{n // 1000}K"
    return str(n)


def log_line(n: int, usecs: int) -> str:
    return f"{count_text(n)} skb alloc/free {usecs} (usecs)"


def run(kernel: Kernel, iterations: int = DEFAULT_ITERATIONS, dev: str = DEFAULT_DEVICE,
        clock: str = "wall") -> int:
    """Load the module: run the loop, log the line, return the elapsed microseconds (of
    ``CLOCKS[clock]``)."""
    if iterations < 0:
        raise ValueError("iterations must be >= 0")
    now = CLOCKS[clock]
    net = kernel.net
    device = net.device(dev)
    location = kernel.kallsyms.addr("skb_bench_run") + KFREE_SKB_RET_OFFSET
    alloc, free = net.netdev_alloc_skb, net.kfree_skb
    reason = SKB_DROP_REASON_NOT_SPECIFIED
    # every load starts from the same collector state, whoever loads it (the in-process bench
    # or a mount's control socket): a young generation left full by the previous commands
    # (a filter compiled, a program loaded) would be collected inside the timed loop
    gc.collect()
    with kernel.machine.running(kernel.user_task("insmod")), kernel.kprobes.frame("skb_bench_run"):
        start = now()
        for _ in range(iterations):
            free(alloc(device, SKB_SIZE), reason, location)
        usecs = (now() - start) // 1000
        kernel.printk.printk(log_line(iterations, usecs))
    return usecs
