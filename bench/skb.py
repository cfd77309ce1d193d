"""``tracesim bench skb``: the 2013 RFC's 1M skb alloc/free measurement, through tracefs files.

    tracesim bench skb [--iterations N] [--repeat R] [--clock cpu|wall] [--json] [--plot FILE.png]
                       [--mount DIR]

Driven the way a user would drive it: writes to ``kprobe_events``, ``enable`` and ``filter``,
and through the control channel the BPF engine switch (``bpf-engine``) and the benchmark module
(``skb-bench``, which logs ``1M skb alloc/free <usecs> (usecs)`` to dmesg).  By default on an in-process tree
(``tracesim.tracefs.system.System``, real clock); ``--mount DIR`` drives a running ``tracesim mount``
with the same file writes and ``tracesim ctl`` requests.

The module times its loop with ``--clock``: ``cpu`` (default) is the CPU time of the thread that
runs it, the model's cost even on a machine busy with other work; ``wall`` is elapsed time, as
the RFC's ``do_gettimeofday`` (fine on an idle machine, noisy on a shared one).

Phases (the sequence runs ``--repeat`` times, so a slow moment of the machine touches every
phase alike; each phase's figure is its median; the table and the JSON's ``spread`` show each
phase's spread, the table also the two target ratios taken within each repeat):

1. ``off``        no tracing
2. ``enabled``    kprobe event on ``__netdev_alloc_skb`` with ``name=+280(%di):string``, enabled
3. ``predicate``  plus the text filter ``name == "eth5"`` (the record is built and tested off the
                  ring buffer, as the kernel's ``trace_buffered_event``; none passes)
4. ``bpf_jit``    ``eth5_filter.o`` instead (JIT): runs before anything is reserved
5. ``bpf_interp`` the same program on the interpreter (``bpf-engine interp``, loaded again)
6. ``off_again``  the event disabled and the filter removed
"""
from __future__ import annotations

import argparse
import gc
import json
import re
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracesim.bench.common import MAX_ROUNDS_FACTOR, progress_bar, steady, steady_figure

PHASES = ("off", "enabled", "predicate", "bpf_jit", "bpf_interp", "off_again")
RFC_USECS = {"off": 145179, "enabled": 240419, "predicate": 302552, "bpf_jit": 199463,
             "off_again": 144919}
PROBE = "skb_alloc"
# dev->name: offsetof(struct net_device, name) is 0x118 on 6.18 x86-64
PROBE_DEF = f"p:{PROBE} __netdev_alloc_skb name=+280(%di):string"
EVENT_DIR = f"events/kprobes/{PROBE}"
PREDICATE = 'name == "eth5"'
EXAMPLE = Path(__file__).resolve().parent.parent / "tools" / "examples" / "eth5_filter.c"
LOG_LINE = re.compile(r"skb alloc/free (\d+) \(usecs\)")


# ---------------------------------------------------------------------------------------------
# Two ways to reach the files: the in-process tree, or a mount

class InProcess:
    """A fresh System on the real clock; files through the tree's shell-like helpers."""

    def __init__(self, cpus: int = 2) -> None:
        from tracesim.tracefs.system import System
        self.system = System.boot(cpus=cpus, seed=1, clock="real")
        self.where = "in-process tree"

    def write(self, path: str, data: str | bytes, append: bool = False) -> None:
        self.system.tree.echo("/" + path, data, append=append, newline=isinstance(data, str))

    def read(self, path: str) -> str:
        return self.system.tree.read_text("/" + path)

    def control(self, argv: list[str]) -> tuple[int, str]:
        if argv[0] == "skb-bench":
            gc.collect()           # every phase starts with the same collector state
        return self.system.control(argv)

    def close(self) -> None:
        self.system.shutdown()


class Mounted:
    """A running ``tracesim mount``: plain file I/O and the control socket."""

    def __init__(self, mountpoint: str) -> None:
        self.root = Path(mountpoint)
        self.where = f"mount {mountpoint}"
        if not (self.root / "events").is_dir():
            raise SystemExit(f"tracesim bench skb: {mountpoint} is not a tracesim mount")

    def write(self, path: str, data: str | bytes, append: bool = False) -> None:
        raw = (data + "\n").encode() if isinstance(data, str) else data
        with open(self.root / path, "ab" if append else "wb", buffering=0) as f:
            for i in range(0, len(raw), 4096):       # as cat writes it: in pieces
                f.write(raw[i:i + 4096])

    def read(self, path: str) -> str:
        return (self.root / path).read_text(errors="replace")

    def control(self, argv: list[str]) -> tuple[int, str]:
        from tracesim.tools.ctl_socket import request
        return request(str(self.root), argv)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------

def filter_object() -> bytes:
    """eth5_filter.o, compiled by tracesim's compiler."""
    from tracesim.filters.bpf.compiler.driver import compile_file
    return compile_file(EXAMPLE).elf


def set_engine(fs: Any, engine: str) -> None:
    """``tracesim ctl DIR bpf-engine ENGINE``: the engine for programs loaded afterwards."""
    status, text = fs.control(["bpf-engine", engine])
    if status:
        raise SystemExit(f"tracesim bench skb: bpf-engine failed: {text.strip()}")


def run_module(fs: Any, iterations: int, clock: str = "cpu") -> tuple[int, str]:
    """Load the benchmark module once: (usecs, the dmesg line)."""
    status, text = fs.control(["skb-bench", str(iterations), "--clock", clock])
    found = LOG_LINE.search(text)
    if status or not found:
        raise SystemExit(f"tracesim bench skb: skb-bench failed: {text.strip()}")
    return int(found.group(1)), text.strip()


def measure_runs(fs: Any, iterations: int, repeat: int,
                 progress: Callable[[str], None] = lambda phase: None,
                 log: Callable[[str], None] = lambda line: None,
                 clock: str = "cpu", max_rounds: int | None = None) -> dict[str, list[int]]:
    """Run the six phases in order, ``repeat`` times over, and again while some phase has
    no ``repeat`` runs agreeing within 5 % (``max_rounds`` sequences at most, default
    ``MAX_ROUNDS_FACTOR × repeat``); every run's usecs, per phase.

    ``off`` and ``off_again`` are the same state (event defined, disabled, no filter: the probe
    site's one flag test), so their ratio shows only the machine's noise."""
    cap = max(max_rounds or MAX_ROUNDS_FACTOR * repeat, repeat)
    obj = filter_object()
    fs.write("kprobe_events", PROBE_DEF, append=True)
    fs.write("buffer_size_kb", "1410")
    times: dict[str, list[int]] = {name: [] for name in PHASES}

    def phase(name: str) -> None:
        usecs, line = run_module(fs, iterations, clock)
        log(f"[{name:>10}] {line}")
        times[name].append(usecs)
        progress(name)

    try:
        run_module(fs, min(iterations, 20_000), clock)     # warm up slabs and caches
        while len(times["off"]) < repeat or (
                len(times["off"]) < cap and not all(steady(v, repeat) for v in times.values())):
            phase("off")
            fs.write(f"{EVENT_DIR}/enable", "1")
            phase("enabled")
            fs.write(f"{EVENT_DIR}/filter", PREDICATE)
            phase("predicate")
            fs.write(f"{EVENT_DIR}/filter", "0")
            set_engine(fs, "jit")
            fs.write(f"{EVENT_DIR}/filter", obj)
            phase("bpf_jit")
            set_engine(fs, "interp")
            fs.write(f"{EVENT_DIR}/filter", obj)
            phase("bpf_interp")
            set_engine(fs, "jit")
            fs.write(f"{EVENT_DIR}/enable", "0")
            fs.write(f"{EVENT_DIR}/filter", "0")
            phase("off_again")
    finally:
        set_engine(fs, "jit")
        fs.write(f"{EVENT_DIR}/enable", "0")
        fs.write(f"{EVENT_DIR}/filter", "0")
        fs.write("kprobe_events", f"-:{PROBE}", append=True)
    return times


def measure(fs: Any, iterations: int, repeat: int,
            progress: Callable[[str], None] = lambda phase: None,
            log: Callable[[str], None] = lambda line: None,
            clock: str = "cpu") -> dict[str, float]:
    """Each phase's median over the ``repeat`` runs that agree best (see ``measure_runs``)."""
    runs = measure_runs(fs, iterations, repeat, progress, log, clock)
    return {name: steady_figure(values, repeat)[0] for name, values in runs.items()}


# The 2013 RFC's shape (issue #20): each row's ratio to ``off`` at most this, and the BPF
# program's overhead at most this share of the predicate's
RFC_SHAPE = {"enabled": 1.66, "predicate": 2.08, "bpf_jit": 1.37, "off_again": 1.02}
OVERHEAD_SHAPE = 0.25


def target_ratios(results: dict[str, float]) -> tuple[float, float]:
    """``off_again/off`` and ``(bpf_jit-off)/(predicate-off)``."""
    off = results["off"] or 1
    pred = results["predicate"] - off
    return results["off_again"] / off, (results["bpf_jit"] - off) / pred if pred else float("nan")


def shape(results: dict[str, float]) -> dict[str, Any]:
    """Each phase's ratio to ``off``, the BPF/predicate overhead ratio, and whether every one
    is at or under the RFC's shape (``RFC_SHAPE``, ``OVERHEAD_SHAPE``)."""
    off = results["off"] or 1
    ratios = {p: round(results[p] / off, 3) for p in PHASES}
    overhead = round(target_ratios(results)[1], 3)
    met = {p: ratios[p] <= limit for p, limit in RFC_SHAPE.items()}
    met["bpf_over_predicate_overhead"] = overhead <= OVERHEAD_SHAPE
    return {"ratios": ratios, "bpf_over_predicate_overhead": overhead, "targets_met": met,
            "all_targets_met": all(met.values())}


def table(results: dict[str, float], iterations: int,
          runs: dict[str, list[int]] | None = None, repeat: int = 1) -> str:
    """The phases (median usecs, ratio to ``off``, the RFC's), the target ratios; with ``runs``
    each phase's spread (max-min over the median of the ``repeat`` runs kept) and the target
    ratios within each sequence."""
    off = results["off"] or 1
    lines = [f"{'phase':<11} {'usecs':>10} {'ratio':>6}   RFC 2013 (usecs, ratio)  target"
             + ("   spread" if runs else "")]
    for name in PHASES:
        rfc = RFC_USECS.get(name)
        ref = f"{rfc:>8} {rfc / RFC_USECS['off']:5.2f}" if rfc else f"{'-':>8} {'-':>5}"
        limit = RFC_SHAPE.get(name)
        ref += f"   <= {limit:4.2f}" if limit else "          "
        spread = ""
        if runs:
            spread = f"   {steady_figure(runs[name], repeat)[1]:6.1%}"
        lines.append(f"{name:<11} {results[name]:>10.0f} {results[name] / off:>6.2f}   {ref}{spread}")
    again, jit = target_ratios(results)
    lines.append("")
    lines.append(f"off_again/off = {again:.3f} (target <= {RFC_SHAPE['off_again']}); "
                 f"(bpf_jit-off)/(predicate-off) = {jit:.3f} (target <= {OVERHEAD_SHAPE}; "
                 "RFC 0.34)")
    if runs and len(runs["off"]) > 1:
        each = [target_ratios({p: runs[p][i] for p in PHASES}) for i in range(len(runs["off"]))]
        lines.append("within each repeat: off_again/off "
                     + " ".join(f"{a:.3f}" for a, _ in each)
                     + "; (bpf_jit-off)/(predicate-off) " + " ".join(f"{j:.3f}" for _, j in each))
    lines.append(f"{iterations} alloc/free pairs per run; per pair: " + ", ".join(
        f"{n} {results[n] * 1000 / iterations:.0f} ns" for n in PHASES))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# --plot

COLOURS = ((90, 90, 90), (70, 130, 180), (205, 92, 92), (60, 179, 113), (218, 165, 32),
           (150, 150, 150))


def plot(results: dict[str, float], path: str) -> str:
    """Bar chart of the phases: matplotlib when installed, else a plain PNG of bars."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        write_bar_png(path, [results[p] for p in PHASES])
        legend = ", ".join(f"{p} rgb{c}" for p, c in zip(PHASES, COLOURS, strict=False))
        return (f"matplotlib is not installed: wrote a plain bar chart without text to {path} "
                f"(left to right: {legend})")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(PHASES, [results[p] for p in PHASES],
           color=[tuple(c / 255 for c in col) for col in COLOURS])
    ax.set_ylabel("usecs per run")
    ax.set_title("skb alloc/free with tracing (tracesim)")
    fig.tight_layout()
    fig.savefig(path)
    return f"wrote {path}"


def write_bar_png(path: str, values: list[float], width: int = 480, height: int = 240) -> None:
    top = max(values) or 1
    slot = width // len(values)
    rows = []
    for y in range(height):
        row = bytearray(b"\0")                       # filter type 0
        for x in range(width):
            i = min(x // slot, len(values) - 1)
            bar = int(values[i] / top * (height - 10))
            inside = slot // 8 <= x % slot < slot - slot // 8 and height - y <= bar
            row += bytes(COLOURS[i]) if inside else b"\xff\xff\xff"
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))
    Path(path).write_bytes(png)


# ---------------------------------------------------------------------------------------------

def run(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="tracesim bench skb",
                                 description="The 2013 RFC's skb alloc/free benchmark through "
                                             "tracefs files.")
    ap.add_argument("--iterations", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs of the phase sequence whose median is each figure; more run "
                         "while no REPEAT runs of a phase agree within 5 %%")
    ap.add_argument("--max-repeat", type=int, metavar="N",
                    help=f"at most N sequences (default {MAX_ROUNDS_FACTOR} x --repeat)")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="what the module times its loop with: the CPU time of its thread "
                         "(default) or elapsed time")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--plot", metavar="FILE.png")
    ap.add_argument("--mount", metavar="DIR", help="drive a running tracesim mount")
    args = ap.parse_args(argv)
    if args.iterations <= 0 or args.repeat <= 0 or (args.max_repeat or 1) <= 0:
        ap.error("--iterations, --repeat and --max-repeat must be positive")
    fs: Any = Mounted(args.mount) if args.mount else InProcess()
    total = len(PHASES) * args.repeat
    lines: list[str] = []
    with progress_bar(total, "phase", "skb bench", args.json) as bar:
        bar.set_postfix_str(PHASES[0])

        def progress(phase: str) -> None:
            bar.update(1)
            if bar.n < total:       # name the phase that runs now
                bar.set_postfix_str(PHASES[bar.n % len(PHASES)])

        try:
            runs = measure_runs(fs, args.iterations, args.repeat, progress, lines.append,
                                args.clock, args.max_repeat)
        finally:
            fs.close()
    figures = {name: steady_figure(values, args.repeat) for name, values in runs.items()}
    results = {name: figures[name][0] for name in PHASES}
    rounds = len(runs["off"])
    cap = max(args.max_repeat or MAX_ROUNDS_FACTOR * args.repeat, args.repeat)
    if args.json:
        doc: dict[str, Any] = {
            "phases": results, "iterations": args.iterations,
            "spread": {p: figures[p][1] for p in PHASES} if args.repeat > 1 else {}}
        if args.repeat > 1:
            doc["rounds"] = {"run": rounds, "max": cap, "kept": args.repeat,
                             "steady": all(steady(v, args.repeat) for v in runs.values())}
        doc["ns_per_iteration"] = {p: round(results[p] * 1000 / args.iterations, 1)
                                   for p in PHASES}
        doc.update(shape(results))
        print(json.dumps(doc))
    else:
        print(f"skb alloc/free through tracefs ({fs.where}; {args.clock} time):")
        for line in lines:
            print(line)
        print()
        print(table(results, args.iterations, runs, args.repeat))
        if args.repeat > 1:
            steady_now = all(steady(v, args.repeat) for v in runs.values())
            print(f"{rounds} sequence(s) run (at most {cap}); each figure is the median of the "
                  f"{args.repeat} runs that agree best"
                  + ("" if steady_now else "; some phase never had them within 5 %"))
        verdict = shape(results)
        print("RFC shape: " + ("every row at or under the RFC's ratio" if verdict["all_targets_met"]
                               else "over on " + ", ".join(k for k, ok in
                                                           verdict["targets_met"].items()
                                                           if not ok)))
    if args.plot:
        print(plot(results, args.plot), file=sys.stderr if args.json else sys.stdout)
    return 0
