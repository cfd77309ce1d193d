"""``tracesim bench cc [--json]``: per example program, instruction count (slots) from
``tracesim cc -O2`` and from ``clang -O2 -target bpf`` (when installed), their ratio, and compile
time (median of ``--repeat``; ``spread`` is their (max-min)/median).  Targets: ratio <= 1.25 on
every program, compile time < 0.5 s per example."""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tracesim.bench.common import spread, spread_line
from tracesim.filters.bpf.compiler import compile_file
from tracesim.filters.bpf.toolchain import elf

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "tools" / "examples"
NAMES = ["filter_ex1", "filter_ex2", "eth5_filter", "kprobe_kfree_skb_len", "latency_map"]
INCLUDES = ["-I", str(ROOT / "kernel_model" / "include"), "-I",
            str(ROOT / "filters" / "bpf" / "include")]
TARGET_RATIO, TARGET_SECONDS = 1.25, 0.5


def clang_counts(source: Path) -> dict[str, int] | None:
    clang = shutil.which("clang")
    if clang is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "x.o"
        subprocess.run([clang, "-O2", "-g", "-target", "bpf", *INCLUDES, "-c", str(source),
                        "-o", str(out)], check=True)
        obj = elf.load_object(out.read_bytes())
    return {p.name: len(p.insns) for p in obj.programs}


def measure(name: str, repeat: int, spreads: dict[str, float]) -> dict:
    """One example's sizes and median compile time; the times' spread goes to ``spreads``."""
    source = EXAMPLES / f"{name}.c"
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        compiled = compile_file(source)
        times.append(time.perf_counter() - t0)
    spreads[f"examples.{name}.compile_s"] = spread(times)
    ours = {p.name: len(p.insns) for p in elf.load_object(compiled.elf).programs}
    theirs = clang_counts(source)
    programs = {}
    for prog, n in ours.items():
        row = {"tracesim": n, "clang": None, "ratio": None}
        if theirs and prog in theirs:
            row["clang"] = theirs[prog]
            row["ratio"] = round(n / theirs[prog], 3)
        programs[prog] = row
    return {"programs": programs, "compile_s": round(statistics.median(times), 4),
            "compile_s_first": round(times[0], 4)}


def run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tracesim bench cc")
    p.add_argument("--json", action="store_true")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    spreads: dict[str, float] = {}
    results = {name: measure(name, max(args.repeat, 1), spreads) for name in NAMES}
    ratios = [r["ratio"] for res in results.values() for r in res["programs"].values()
              if r["ratio"] is not None]
    summary = {"examples": results,
               "max_ratio": max(ratios) if ratios else None,
               "max_compile_s": max(r["compile_s"] for r in results.values()),
               "targets": {"ratio": TARGET_RATIO, "compile_s": TARGET_SECONDS},
               "spread": spreads if args.repeat > 1 else {}}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{'example':<22} {'program':<18} {'tracesim':>8} {'clang':>6} {'ratio':>6} "
              f"{'compile s':>9}")
        for name, res in results.items():
            for prog, r in res["programs"].items():
                print(f"{name:<22} {prog:<18} {r['tracesim']:>8} {r['clang'] or '-':>6} "
                      f"{r['ratio'] or '-':>6} {res['compile_s']:>9.3f}")
        print(f"max ratio {summary['max_ratio']} (target <= {TARGET_RATIO}), max compile time "
              f"{summary['max_compile_s']:.3f} s (target < {TARGET_SECONDS})")
        print(spread_line(summary["spread"]))
    ok = (summary["max_ratio"] is None or summary["max_ratio"] <= TARGET_RATIO) and \
        summary["max_compile_s"] < TARGET_SECONDS
    return 0 if ok else 1
