"""``tracesim run OBJ.o``: open a BPF object, load and attach every program by its section name
(as a libbpf skeleton's ``open_and_load`` + ``attach``), print its ring/perf buffer records and,
on exit (Ctrl-C or ``--duration``), its maps.

In process (default) the model runs here: ``--workload W`` drives it for ``--duration S``
seconds (``--clock virtual``: S seconds of model time, stepped synchronously, deterministic;
``real``: wall time, the workload on its thread).  ``--mount DIR`` loads the object into a
running mount instead (over its control socket) and reads the records from there.

Records are decoded by a BTF struct of the object (``--record-type NAME``, or the one struct of
the record's size that is not a map type; otherwise hex); ``--json`` prints one JSON object per
record and per dumped map.  Load and attach failures print libbpf's lines on stderr and the
other programs run (``--strict``: any failure ends the run, status 1).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracesim.filters.bpf import loader as loadermod
from tracesim.filters.bpf.attach import PERF_EVENT_PERIOD_NS
from tracesim.filters.bpf.object_run import ObjectError, ObjectRun, object_name
from tracesim.tools.run_output import PROG, Printer, map_contents, poll_until, report_start

VIRTUAL_BATCH = 64                # packets between reads (virtual clock)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Load a BPF object, attach its programs "
                                "by section name, print its records and maps.")
    p.add_argument("object", metavar="OBJ.o", help="BPF ELF object (clang -target bpf, tracesim cc)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                   help="set a .rodata/.data/.bss global before load (by its BTF name)")
    p.add_argument("--cookie", dest="cookies", action="append", default=[],
                   metavar="PROG=VALUE",
                   help="attach PROG with this bpf_cookie (PROG:SYMBOL=VALUE: one symbol's of "
                        "a kprobe.multi program)")
    p.add_argument("--workload", default="none", help="traffic to run in process (default none)")
    p.add_argument("--duration", type=float, metavar="S",
                   help="seconds to run (default: until Ctrl-C)")
    p.add_argument("--clock", choices=("real", "virtual"), default="real",
                   help="in process: wall time (default) or deterministic model time")
    p.add_argument("--cpus", type=int, default=2, help="in process: simulated CPUs (default 2)")
    p.add_argument("--seed", type=int, default=1, help="in process: seed (default 1)")
    p.add_argument("--mount", metavar="DIR", help="load into the running mount at DIR instead")
    p.add_argument("--json", action="store_true", help="JSON lines: one object per record / map")
    p.add_argument("--record-type", metavar="NAME", help="struct to decode records with")
    p.add_argument("--hist-label", default="value", metavar="LABEL",
                   help="unit printed over log2 histograms (default value)")
    p.add_argument("--strict", action="store_true", help="any load or attach failure is fatal")
    p.add_argument("--engine", choices=loadermod.ENGINE_CHOICES, default="auto",
                   help="how programs run (default auto)")
    return p


# ---------------------------------------------------------------- in process

def run_in_process(args: argparse.Namespace, data: bytes) -> int:
    from tracesim.tracefs.system import System
    system = System.boot(cpus=args.cpus, seed=args.seed, clock=args.clock)
    kernel = system.kernel
    try:
        workload = kernel.workloads.get(args.workload) if args.workload != "none" else None
    except KeyError as e:
        print(f"{PROG}: {e.args[0]}", file=sys.stderr)
        return 2
    try:
        run = ObjectRun(kernel, kernel.tracing.top, data, name=object_name(args.object),
                        sets=args.sets, engine=args.engine, strict=args.strict,
                        cookies=args.cookies)
        printer = Printer(run.obj, args)
    except ObjectError as e:
        print("\n".join(e.lines), file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    failed = report_start(run.messages, run.programs)
    try:
        _drive(kernel, workload, args, run, printer)
    except KeyboardInterrupt:
        pass
    finally:
        system.shutdown()
        with kernel.lock:
            run.detach()
            for _, raw in run.drain():
                printer.record(raw)
            printer.maps(map_contents(run))
    return 1 if failed and args.strict else 0


def _drive(kernel: Any, workload: Any, args: argparse.Namespace, run: ObjectRun,
           printer: Printer) -> None:
    def drain() -> None:
        with kernel.lock:
            run.tick()
            records = run.drain()
        for _, raw in records:
            printer.record(raw)

    if args.clock == "virtual":
        if args.duration is None:
            raise SystemExit(f"{PROG}: --clock virtual needs --duration")
        _step_virtual(kernel, workload, args.duration, drain)
        return
    if workload is not None:
        workload.start()
    poll_until(args.duration, drain)


def _step_virtual(kernel: Any, workload: Any, duration: float, drain: Callable[[], None]) -> None:
    """``duration`` seconds of model time: the workload's packets for that long (rate x
    duration), delivered in batches with the records read between them; without a workload
    the clock moves a perf period at a time."""
    if workload is None:
        for _ in range(max(1, round(duration * 1e9 / PERF_EVENT_PERIOD_NS))):
            kernel.clock.advance(PERF_EVENT_PERIOD_NS)
            drain()
        return
    left = round(workload.spec.rate * duration)
    while left > 0:
        batch = min(VIRTUAL_BATCH, left)
        workload.step(batch)
        left -= batch
        drain()


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        data = Path(args.object).read_bytes()
    except OSError as e:
        print(f"{PROG}: {args.object}: {e.strerror}", file=sys.stderr)
        return 1
    try:
        if args.mount:
            from tracesim.tools.cmd_run_mount import run_on_mount
            return run_on_mount(args, data)
        return run_in_process(args, data)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:      # a bug of the model or of a helper: one line, no traceback
        print(f"{PROG}: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
