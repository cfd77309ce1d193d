"""``tracesim bench tracefs``: events streamed through a real mount by ``cat trace_pipe``.

A mount (real-time trace clock) runs a traffic workload with events enabled (all by default); ``cat
DIR/trace_pipe`` streams the lines into this process, which counts them. Reported:

* ``events_per_s`` - event lines delivered by cat per second of streaming;
* ``lost_events`` - events overwritten before the reader got them (``CPU:N [LOST M EVENTS]``
  lines): with ``events_per_s`` it says whether the reader keeps up with the workload;
* ``produced_events_per_s`` - events the workload wrote into the ring buffers per second over
  the same window (``per_cpu/cpuN/stats``: entries + overrun + read events);
* ``limited_by`` - ``consumer`` when events were lost or fewer than 95% of those produced
  reached cat (the reader fell behind: a backlog builds up and the latency grows),
  ``producer`` otherwise (the stream carried what the workload produced: the
  workload thread and the reader share one interpreter lock, so the rate is what both together
  sustain, not the reader's capacity - that is ``drain_events_per_s``);
* ``mount_cpu_s``, ``events_per_mount_cpu_s`` - CPU time the mount process (kernel model,
  workload thread, FUSE workers) used over the window, and the events streamed per second of
  it: the rate on one core, whatever else the machine runs (the wall-clock rates drop when other
  processes compete for the CPUs);
* ``drain_events_per_s`` - the same path without a producer competing for the mount process:
  a synchronous ``send`` fills a large buffer, tracing is switched off, and ``cat trace_pipe``
  reads until end of file (what the tree + FUSE + line formatting can deliver at most; target
  >= 200,000);
* ``raw_events_per_s`` - the same full buffer read as binary pages from every CPU's
  ``per_cpu/cpuN/trace_pipe_raw`` (one page per read, non-blocking until empty), the events
  counted by decoding the pages (target >= 1,000,000);
* ``drain_events_per_mount_cpu_s``, ``raw_events_per_mount_cpu_s`` - those events per second
  of the mount process's CPU time over all their runs (as ``events_per_mount_cpu_s``);
* both are measured ``--repeat`` times (more while no ``--repeat`` of them agree within 5 %,
  up to 3 × ``--repeat``): the figure is the median of the runs that agree best, ``spread``
  their (max-min)/median, ``drain_runs``/``raw_runs`` every run; ``targets`` and
  ``targets_met`` compare the two figures with the targets;
* ``latency_ms_median``, ``latency_ms`` (p50/p90/p99/max) - from an event's timestamp to its
  line arriving through cat. The
  mount's ``local`` clock in real mode is CLOCK_MONOTONIC from the kernel's start, so its
  offset to this process's ``perf_counter`` is measured by reading ``per_cpu/cpu0/stats``
  (``now ts``) between two clock reads (best of 20; the error is under the shortest read).
  Every 50th line is sampled.

    tracesim bench tracefs [--seconds S] [--workload NAME] [--events SET_EVENT_TEXT]
                           [--drain-packets N] [--repeat R] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tracesim.bench.common import sample_until_steady, spread_line, steady_figure

ROOT = Path(__file__).resolve().parent.parent
TRACESIM = [sys.executable, "-m", "tracesim.tools.cli"]
LOST = re.compile(rb"^CPU:\d+ \[LOST (\d+) EVENTS\]")
STAMP = re.compile(rb"\] \S+ +(\d+)\.(\d{6}): ")
NOW_TS = re.compile(r"^now ts: +(\d+)\.(\d{6})$", re.M)
SAMPLE_EVERY = 50
TARGETS = {"drain_events_per_s": 200_000, "raw_events_per_s": 1_000_000}


def _tracesim(*args: str) -> None:
    subprocess.run(TRACESIM + list(args), cwd=ROOT, check=True, capture_output=True, text=True)


def clock_offset_us(mnt: Path, tries: int = 20) -> float:
    """perf_counter (µs) minus the mount's trace clock (µs), from the tightest of ``tries``."""
    best = None
    for _ in range(tries):
        t1 = time.perf_counter_ns() / 1000
        text = (mnt / "per_cpu" / "cpu0" / "stats").read_text()
        t2 = time.perf_counter_ns() / 1000
        m = NOW_TS.search(text)
        now = int(m.group(1)) * 1_000_000 + int(m.group(2))
        if best is None or t2 - t1 < best[0]:
            best = (t2 - t1, (t1 + t2) / 2 - now)
    return best[1]


STAT = re.compile(r"^(entries|overrun|read events): (\d+)$", re.M)


def written_events(mnt: Path) -> int:
    """Events written into the top-level buffers so far, over every CPU."""
    total = 0
    for cpu_dir in (mnt / "per_cpu").iterdir():
        total += sum(int(v) for _, v in STAT.findall((cpu_dir / "stats").read_text()))
    return total


def mount_pid(mnt: Path) -> int | None:
    """The process serving the mount on ``mnt`` (``tracesim mount DIR``), from /proc."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"mount" in args and str(mnt).encode() in args:
            return int(proc.name)
    return None


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process (0 when unknown)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drain_rate(mnt: Path, events: str, packets: int,
               cpu: Callable[[], float] = lambda: 0.0) -> tuple[int, float, float]:
    """Fill the buffer with ``packets`` received packets, then time cat draining it: (lines,
    seconds, ``cpu()`` seconds of the mount process meanwhile)."""
    from tracesim.tools.ctl_socket import request
    (mnt / "buffer_size_kb").write_text("32768\n")
    (mnt / "set_event").write_text(events + "\n")
    status, text = request(str(mnt), ["send", "eth0", "--len", "64", "--count", str(packets)])
    if status:
        raise SystemExit(f"tracesim bench tracefs: {text.strip()}")
    (mnt / "tracing_on").write_text("0\n")          # trace_pipe ends once drained
    cpu0, start = cpu(), time.perf_counter()
    out = subprocess.run(["cat", str(mnt / "trace_pipe")], capture_output=True, check=True).stdout
    elapsed, used = time.perf_counter() - start, cpu() - cpu0
    lines = out.count(b"\n")
    (mnt / "trace").write_text("")                  # O_TRUNC: clear
    (mnt / "buffer_size_kb").write_text("1410\n")
    (mnt / "tracing_on").write_text("1\n")
    return lines, elapsed, used


def raw_drain_rate(mnt: Path, events: str, packets: int,
                   cpu: Callable[[], float] = lambda: 0.0) -> tuple[int, float, float]:
    """Fill the buffer with ``packets`` received packets, then time reading every CPU's
    ``trace_pipe_raw`` (non-blocking, one 4096-byte page per read) until it is empty; the
    events counted by decoding the pages. (events, seconds, mount CPU seconds)"""
    from tracesim.kernel_model.trace.ring_buffer import PAGE_SIZE, decode_page
    from tracesim.tools.ctl_socket import request
    (mnt / "buffer_size_kb").write_text("32768\n")
    (mnt / "set_event").write_text(events + "\n")
    status, text = request(str(mnt), ["send", "eth0", "--len", "64", "--count", str(packets)])
    if status:
        raise SystemExit(f"tracesim bench tracefs: {text.strip()}")
    (mnt / "tracing_on").write_text("0\n")
    pages: list[bytes] = []
    cpu0, start = cpu(), time.perf_counter()
    for cpu_dir in sorted((mnt / "per_cpu").iterdir()):
        fd = os.open(cpu_dir / "trace_pipe_raw", os.O_RDONLY | os.O_NONBLOCK)
        try:
            while True:
                try:
                    page = os.read(fd, PAGE_SIZE)
                except BlockingIOError:
                    break
                if not page:
                    break
                pages.append(page)
        finally:
            os.close(fd)
    elapsed, used = time.perf_counter() - start, cpu() - cpu0
    count = sum(len(decode_page(page)[3]) for page in pages)
    (mnt / "trace").write_text("")
    (mnt / "buffer_size_kb").write_text("1410\n")
    (mnt / "tracing_on").write_text("1\n")
    return count, elapsed, used


def _per_cpu_second(runs: list[tuple[int, float, float]]) -> int | None:
    """Events of every run per second of the mount process's CPU time over them."""
    used = sum(cpu for _, _, cpu in runs)
    return round(sum(n for n, _, _ in runs) / used) if used > 0 else None


def percentiles(values: list[float]) -> dict[str, float] | None:
    """p50, p90, p99 and max of sorted ``values`` (ms, 3 decimals)."""
    if not values:
        return None
    pick = {"p50": 0.50, "p90": 0.90, "p99": 0.99}
    out = {k: round(values[min(len(values) - 1, int(q * len(values)))], 3) for k, q in pick.items()}
    out["max"] = round(values[-1], 3)
    return out


def run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tracesim bench tracefs")
    p.add_argument("--seconds", type=float, default=5.0, help="streaming time (default 5)")
    p.add_argument("--workload", default="flood", help="traffic workload (default flood)")
    p.add_argument("--events", default="*:*",
                   help="what to write to set_event (default '*:*', every event)")
    p.add_argument("--drain-packets", type=int, default=10000,
                   help="packets received before the drain measurement (default 10000)")
    p.add_argument("--repeat", type=int, default=3,
                   help="drain and raw measurements to agree (default 3)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.repeat <= 0:
        p.error("--repeat must be positive")
    from tracesim.tools.ctl_socket import request

    counts = {"events": 0, "lost": 0}
    samples: list[tuple[float, int]] = []       # (arrival µs, event timestamp µs)
    with tempfile.TemporaryDirectory(prefix="tracesim-bench-") as tmp:
        mnt = Path(tmp) / "tracefs"
        mnt.mkdir()
        _tracesim("mount", str(mnt), "--clock", "real")
        cat = None
        try:
            offset = clock_offset_us(mnt)
            server = mount_pid(mnt)
            drains: list[tuple[int, float, float]] = []
            raws: list[tuple[int, float, float]] = []

            def mount_cpu() -> float:
                return cpu_seconds(server)

            def drain_sample() -> float:
                drains.append(drain_rate(mnt, args.events, args.drain_packets, mount_cpu))
                return drains[-1][0] / drains[-1][1]

            def raw_sample() -> float:
                raws.append(raw_drain_rate(mnt, args.events, args.drain_packets, mount_cpu))
                return raws[-1][0] / raws[-1][1] if raws[-1][1] else 0.0
            drain_rates = sample_until_steady(drain_sample, args.repeat)
            raw_rates = sample_until_steady(raw_sample, args.repeat)
            (mnt / "set_event").write_text(args.events + "\n")
            cat = subprocess.Popen(["cat", str(mnt / "trace_pipe")], stdout=subprocess.PIPE)

            def consume() -> None:
                for line in cat.stdout:  # type: ignore[union-attr]
                    if line.startswith(b"CPU:"):
                        m = LOST.match(line)
                        if m:
                            counts["lost"] += int(m.group(1))
                        continue
                    counts["events"] += 1
                    if counts["events"] % SAMPLE_EVERY == 0:
                        m = STAMP.search(line)
                        if m:
                            samples.append((time.perf_counter_ns() / 1000,
                                            int(m.group(1)) * 1_000_000 + int(m.group(2))))
            reader = threading.Thread(target=consume, daemon=True)
            reader.start()
            status, text = request(str(mnt), ["workload", "start", args.workload])
            if status:
                raise SystemExit(f"tracesim bench tracefs: {text.strip()}")
            time.sleep(0.5)                       # let the stream reach its steady state
            first_sample = len(samples)
            events0, lost0, start = counts["events"], counts["lost"], time.perf_counter()
            written0, cpu0 = written_events(mnt), cpu_seconds(server)
            time.sleep(args.seconds)
            written, cpu = written_events(mnt) - written0, cpu_seconds(server) - cpu0
            elapsed = time.perf_counter() - start
            events, lost = counts["events"] - events0, counts["lost"] - lost0
            window = samples[first_sample:]
        finally:
            if cat is not None:
                cat.terminate()
                cat.wait(10)
            _tracesim("umount", str(mnt))       # the mount process stops the workload
    latencies = sorted((arrival - (stamp + offset)) / 1000 for arrival, stamp in window)
    drain_figure, drain_spread = steady_figure(drain_rates, args.repeat)
    raw_figure, raw_spread = steady_figure(raw_rates, args.repeat)
    figures = {"drain_events_per_s": round(drain_figure), "raw_events_per_s": round(raw_figure)}
    result = {
        "events_per_s": round(events / elapsed),
        "lost_events": lost,
        "produced_events_per_s": round(written / elapsed),
        "limited_by": "consumer" if lost or events < 0.95 * written else "producer",
        "mount_cpu_s": round(cpu, 2),
        "events_per_mount_cpu_s": round(events / cpu) if cpu else None,
        **figures,
        "drain_events": drains[-1][0], "raw_drain_events": raws[-1][0],
        "drain_runs": [round(r) for r in drain_rates], "raw_runs": [round(r) for r in raw_rates],
        "spread": {"drain_events_per_s": drain_spread, "raw_events_per_s": raw_spread},
        # what the mount process spent: the rate on one core whatever else the machine runs
        "drain_events_per_mount_cpu_s": _per_cpu_second(drains),
        "raw_events_per_mount_cpu_s": _per_cpu_second(raws),
        "targets": TARGETS,
        "targets_met": {k: figures[k] >= v for k, v in TARGETS.items()},
        "latency_ms_median": round(statistics.median(latencies), 3) if latencies else None,
        "latency_ms": percentiles(latencies),
        "latency_samples": len(latencies),
        "seconds": round(elapsed, 2), "workload": args.workload, "events": args.events,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"trace_pipe through FUSE: {result['events_per_s']:,} events/s streamed by cat "
              f"({lost:,} lost, {result['produced_events_per_s']:,}/s produced: "
              f"{result['limited_by']}-limited; {result['events_per_mount_cpu_s']:,} per CPU "
              f"second of the mount process); draining a full buffer "
              f"{result['drain_events_per_s']:,} "
              f"events/s; per_cpu trace_pipe_raw {result['raw_events_per_s']:,} events/s; "
              f"event->line latency ms {result['latency_ms']} "
              f"({len(latencies)} samples, workload {args.workload}, {elapsed:.1f} s)")
        print(spread_line(result["spread"]))
    return 0
