"""Named, seeded traffic generators: packets arriving on the NICs, received in softirq on each CPU.

A workload is a ``WorkloadSpec`` (rate, devices, mix) plus a ``random.Random`` seeded from the
kernel's seed and the workload's name, so the same seed gives the same packets in the same order
on the same CPUs with the same virtual timestamps. Frames come from a pool built at creation
(``POOL_SIZE`` per workload) so generating traffic costs little beyond the kernel work itself.

``step(n)`` delivers n packets synchronously: packet i goes to CPU i mod ncpus, arrives on its
device's queue for that CPU (hardirq → NET_RX softirq → NAPI poll → netif_receive_skb ...), and
virtual time advances by the inter-packet gap (1/rate). ``start()`` runs ``step`` batches on a
background thread at the configured rate in wall time (for mounts), holding ``kernel.lock`` for
each batch; ``stop()`` ends it.

| name     | what                                                                      |
| -------- | ------------------------------------------------------------------------- |
| net      | eth0+eth5, 64–1500 B, 20% IPv6, 70% TCP / 30% UDP, 10% to closed ports      |
| eth0     | eth0 only, the same mix                                                   |
| udp-small| every NIC, 64–128 B UDP over IPv4, all to the listening port              |
| flood    | every NIC, 64 B UDP at 100,000 packets/s                                   |
| forkexec | no packets: a shell forking and exec'ing commands, 50/s (forkexec.py)      |
"""
from __future__ import annotations

import random
import threading
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kernel_model.net import DISCARD_PORT, packet_frame

if TYPE_CHECKING:
    from kernel_model.kernel import Kernel

POOL_SIZE = 256
BATCH = 64
CLOSED_PORT = 7777


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    rate: int = 10_000                     # packets per second, all CPUs together
    devices: tuple[str, ...] = ()          # empty: every NIC (not lo)
    min_len: int = 64                      # skb len at netif_receive_skb (the IP packet)
    max_len: int = 1500
    ipv6: float = 0.2
    tcp: float = 0.7
    closed: float = 0.1                    # fraction sent to a port nobody listens on


WORKLOADS = {
    "net": WorkloadSpec("net", devices=("eth0", "eth5")),
    "eth0": WorkloadSpec("eth0", devices=("eth0",)),
    "udp-small": WorkloadSpec("udp-small", min_len=64, max_len=128, ipv6=0.0, tcp=0.0, closed=0.0),
    "flood": WorkloadSpec("flood", rate=100_000, min_len=64, max_len=64, ipv6=0.0, tcp=0.0,
                          closed=0.0),
}


class Workload:
    """One running (or stopped) workload over a kernel."""

    def __init__(self, kernel: Kernel, spec: WorkloadSpec) -> None:
        self.kernel = kernel
        self.spec = spec
        self.rng = random.Random(kernel.seed * 1_000_003 + zlib.crc32(spec.name.encode()))
        names = spec.devices or tuple(n for n, d in kernel.net.devices.items() if not d.loopback)
        missing = [n for n in names if n not in kernel.net.devices]
        if missing:
            raise KeyError(f"workload {spec.name}: no such device: {', '.join(missing)}")
        self.devices = [kernel.net.devices[n] for n in names]
        self.pool = [self._frame(i) for i in range(POOL_SIZE)]
        self.sent = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def _frame(self, i: int) -> tuple:
        rng, spec = self.rng, self.spec
        dev = self.devices[i % len(self.devices)]
        v6 = rng.random() < spec.ipv6
        proto = "tcp" if rng.random() < spec.tcp else "udp"
        least = (40 if v6 else 20) + (20 if proto == "tcp" else 8)
        length = max(least, rng.randint(spec.min_len, min(spec.max_len, dev.mtu)))
        port = CLOSED_PORT if rng.random() < spec.closed else DISCARD_PORT
        sport = rng.randint(1024, 65535)
        return dev, packet_frame(dev, proto, length, seq=i, v6=v6, dport=port, sport=sport)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def step(self, n: int = 1) -> None:
        """Deliver ``n`` packets now (the caller holds ``kernel.lock`` if threads are about)."""
        k = self.kernel
        m = k.machine
        receive, advance, set_cpu = k.net.receive, k.clock.advance, m.set_cpu
        gap = 1_000_000_000 // max(self.spec.rate, 1)
        pick, pool, ncpus = self.rng.randrange, self.pool, m.nr_cpus
        home = m.this_cpu().id
        try:
            for _ in range(n):
                dev, frame = pool[pick(POOL_SIZE)]
                set_cpu(self.sent % ncpus)
                receive(dev, frame)
                self.sent += 1
                advance(gap)
        finally:
            set_cpu(home)          # the thread of execution returns where it was

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"workload-{self.spec.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        period = BATCH / max(self.spec.rate, 1)
        next_at = time.monotonic()
        while not self._stop.is_set():
            with self.kernel.lock:
                self.step(BATCH)
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()      # behind: do not try to catch up in a burst


def _forkexec(kernel: Kernel) -> Any:
    from kernel_model.forkexec import ForkExecWorkload
    return ForkExecWorkload(kernel)


# forkexec: a shell forking and exec'ing short commands (kernel_model/forkexec.py)
TASK_WORKLOADS = {"forkexec": _forkexec}


class Workloads:
    """The named workloads of one kernel: ``get``, ``start``, ``stop``, ``running``."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._made: dict[str, Workload] = {}

    def names(self) -> list[str]:
        return [*WORKLOADS, *TASK_WORKLOADS]

    def get(self, name: str) -> Workload:
        if name in TASK_WORKLOADS:                # workloads of tasks, not packets
            made = self._made.get(name)
            if made is None:
                made = self._made[name] = TASK_WORKLOADS[name](self.kernel)
            return made
        if name not in WORKLOADS:
            raise KeyError(f"no workload {name!r} (have: {', '.join(WORKLOADS)})")
        made = self._made.get(name)
        if made is None:
            made = self._made[name] = Workload(self.kernel, WORKLOADS[name])
        return made

    def start(self, name: str) -> Workload:
        w = self.get(name)
        w.start()
        return w

    def stop(self, name: str) -> Workload:
        w = self.get(name)
        w.stop()
        return w

    def stop_all(self) -> None:
        for w in self._made.values():
            w.stop()

    def running(self) -> list[str]:
        return [n for n, w in self._made.items() if w.running]
