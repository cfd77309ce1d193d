"""The trace clocks of Linux 6.18 (`trace_clock` lists them), over one time base.

The time base counts nanoseconds since the modelled boot. Two modes:

* ``virtual`` (tests, default): deterministic. Time moves only when the model says so —
  ``advance(ns)`` (the workload's gaps between packets, a ping's interval) — plus a fixed
  ``tick_ns`` each time a clock is read, so two events never share a timestamp and the same
  sequence of operations always gives the same timestamps.
* ``real`` (benchmarks, mounts): ``time.perf_counter_ns()`` since the kernel was created.

Each clock is a function of the base, the way the kernel derives them:

| name     | kernel source               | unit here                  | in_ns |
| -------- | --------------------------- | -------------------------- | ----- |
| local    | trace_clock_local           | base ns                    | yes   |
| global   | trace_clock_global          | base ns                    | yes   |
| counter  | trace_clock_counter         | +1 per read (atomic count) | no    |
| uptime   | trace_clock_jiffies         | clock_t ticks (USER_HZ 100)| no    |
| perf     | trace_clock                 | base ns                    | yes   |
| mono     | ktime_get_mono_fast_ns      | base ns                    | yes   |
| mono_raw | ktime_get_raw_fast_ns       | base ns                    | yes   |
| boot     | ktime_get_boot_fast_ns      | base ns (never suspended)  | yes   |
| tai      | ktime_get_tai_fast_ns       | base + boot epoch + 37 s   | yes   |
| x86-tsc  | rdtsc                       | cycles at TSC_KHZ          | no    |

``in_ns`` is the kernel's flag: clocks not in ns print their raw value instead of
``secs.usecs`` in the trace.
"""
from __future__ import annotations

import time
from collections.abc import Callable

CLOCK_NAMES = ("local", "global", "counter", "uptime", "perf", "mono", "mono_raw", "boot",
               "tai", "x86-tsc")
CLOCKS_IN_NS = frozenset({"local", "global", "perf", "mono", "mono_raw", "boot", "tai"})
DEFAULT_CLOCK = "local"

USER_HZ = 100                    # clock_t ticks per second (jiffies_64_to_clock_t)
TSC_KHZ = 2_000_000              # a 2 GHz TSC: x86-tsc counts 2 cycles per ns
TAI_OFFSET_NS = 37_000_000_000   # TAI - UTC since 2017
# The virtual machine "booted" at 2025-12-01T00:00:00Z, so tai reads like a real epoch time.
BOOT_EPOCH_NS = 1_764_547_200_000_000_000
DEFAULT_TICK_NS = 250            # virtual ns that one clock read costs


class Clock:
    """The time base plus the named trace clocks derived from it."""

    def __init__(self, mode: str = "virtual", tick_ns: int = DEFAULT_TICK_NS,
                 start_ns: int = 0) -> None:
        if mode not in ("virtual", "real"):
            raise ValueError(f"clock mode must be 'virtual' or 'real', not {mode!r}")
        self.mode = mode
        self.tick_ns = tick_ns
        self.virtual_ns = start_ns
        self._counter = 0
        self._real_origin = time.perf_counter_ns() - start_ns
        self.base_ns: Callable[[], int] = (self._virtual_base if mode == "virtual"
                                           else self._real_base)
        self._readers: dict[str, Callable[[], int]] = {
            "local": self.base_ns,
            "global": self.base_ns,
            "counter": self._read_counter,
            "uptime": self._read_uptime,
            "perf": self.base_ns,
            "mono": self.base_ns,
            "mono_raw": self.base_ns,
            "boot": self.base_ns,
            "tai": self._read_tai,
            "x86-tsc": self._read_tsc,
        }

    # -- the time base
    def _virtual_base(self) -> int:
        now = self.virtual_ns
        self.virtual_ns = now + self.tick_ns
        return now

    def _real_base(self) -> int:
        return time.perf_counter_ns() - self._real_origin

    def advance(self, ns: int) -> None:
        """Let ``ns`` nanoseconds pass. Virtual mode moves time; real mode lets it pass by itself."""
        if ns < 0:
            raise ValueError("time does not run backwards")
        if self.mode == "virtual":
            self.virtual_ns += ns

    def peek_ns(self) -> int:
        """The base time without the cost of a read (virtual mode does not tick)."""
        return self.virtual_ns if self.mode == "virtual" else self._real_base()

    # -- derived clocks
    def _read_counter(self) -> int:
        self._counter += 1
        return self._counter

    def _read_uptime(self) -> int:
        return self.base_ns() * USER_HZ // 1_000_000_000

    def _read_tai(self) -> int:
        return self.base_ns() + BOOT_EPOCH_NS + TAI_OFFSET_NS

    def _read_tsc(self) -> int:
        return self.base_ns() * TSC_KHZ // 1_000_000

    # -- the API tracing uses
    def reader(self, name: str = DEFAULT_CLOCK) -> Callable[[], int]:
        """A zero-argument function returning the named clock's current value (cache it)."""
        try:
            return self._readers[name]
        except KeyError:
            raise ValueError(f"unknown trace clock {name!r}") from None

    def now_ns(self, name: str = DEFAULT_CLOCK) -> int:
        """The named clock's current value (ns for clocks in ``CLOCKS_IN_NS``, else raw units)."""
        return self.reader(name)()

    @staticmethod
    def in_ns(name: str) -> bool:
        """Whether the clock counts nanoseconds (the kernel's ``in_ns`` flag)."""
        if name not in CLOCK_NAMES:
            raise ValueError(f"unknown trace clock {name!r}")
        return name in CLOCKS_IN_NS


def trace_clock_line(selected: str) -> str:
    """The text of the ``trace_clock`` file with ``selected`` in brackets."""
    return " ".join(f"[{n}]" if n == selected else n for n in CLOCK_NAMES) + "\n"
