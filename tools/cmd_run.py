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
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filters.bpf import btf_values, map_commands
from filters.bpf import loader as loadermod
from filters.bpf.attach import PERF_EVENT_PERIOD_NS
from filters.bpf.maps import MAP_TYPE_RINGBUF
from filters.bpf.object_run import ObjectError, ObjectRun, object_name

PROG = "tracesim run"
POLL_S = 0.1                      # how often records are read (real clock, mounts)
VIRTUAL_BATCH = 64                # packets between reads (virtual clock)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Load a BPF object, attach its programs "
                                "by section name, print its records and maps.")
    p.add_argument("object", metavar="OBJ.o", help="BPF ELF object (clang -target bpf, tracesim cc)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                   help="set a .rodata/.data/.bss global before load (by its BTF name)")
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


class Printer:
    """Decodes and prints records and map dumps for one object (its BTF, its map specs)."""

    def __init__(self, obj: Any, args: argparse.Namespace, out: Any = None) -> None:
        self.btf, self.specs = obj.btf, obj.maps
        self.json, self.label = args.json, args.hist_label
        self.record_name = args.record_type
        self.out = out or sys.stdout
        self.exclude = btf_values.map_type_ids(self.btf, self.specs)
        self.types: dict[int, int | None] = {}
        if self.record_name:               # refused before anything runs
            btf_values.record_type(self.btf, 0, self.record_name)

    def emit(self, value: Any) -> None:
        text = json.dumps(value) if self.json else str(value)
        self.out.write(text + "\n")
        self.out.flush()

    def record(self, raw: bytes) -> None:
        if len(raw) not in self.types:
            self.types[len(raw)] = btf_values.record_type(self.btf, len(raw), self.record_name,
                                                           self.exclude)
        tid = self.types[len(raw)]
        if tid is None:
            self.emit({"data": raw.hex()} if self.json else map_commands.hex_bytes(raw))
        elif self.json:
            self.emit(btf_values.to_python(self.btf, tid, raw))
        else:
            self.emit(map_commands.decode(self.btf, tid, raw))

    def maps(self, contents: list[tuple[Any, str, list[tuple[bytes, Any]]]]) -> None:
        """Dump ``(spec, display name, [(key, value)])`` per map, ring buffers left out."""
        for spec, name, items in contents:
            if spec.type == MAP_TYPE_RINGBUF or not items and not self.json:
                continue
            if spec.section.startswith((".bss", ".data")):
                self._globals(spec, name, items[0][1] if items else b"")
            elif spec.section.startswith((".rodata", ".kconfig")):
                continue
            elif btf_values.hist_slots(self.btf, spec.value_type):
                self._hists(spec, name, items)
            else:
                self._entries(spec, name, items)

    def _globals(self, spec: Any, name: str, image: Any) -> None:
        image = _summed(image)
        variables = {var: btf_values.to_python(self.btf, tid, image[off:off + size])
                     for var, tid, off, size in (self.btf.datasec(spec.section)
                                                 if self.btf else [])}
        if self.json:
            self.emit({"map": name, "variables": variables})
            return
        self.emit(f"@{spec.section}:")
        for var, tid, off, size in self.btf.datasec(spec.section) if self.btf else []:
            self.emit(f"{var} = {map_commands.decode(self.btf, tid, image[off:off + size])}")

    def _hists(self, spec: Any, name: str, items: list[tuple[bytes, Any]]) -> None:
        where = btf_values.hist_slots(self.btf, spec.value_type)
        for key, value in items:
            vals = btf_values.slot_values(_summed(value), where)
            k = btf_values.to_python(self.btf, spec.key_type, key) if spec.key_type else key.hex()
            if self.json:
                self.emit({"map": name, "key": k, "hist": [
                    {"low": ((1 << (i + 1)) >> 1) - (i == 0), "high": (1 << (i + 1)) - 1,
                     "count": v} for i, v in enumerate(vals)]})
                continue
            lines = btf_values.log2_hist(vals, self.label)
            if not lines:
                continue
            shown = map_commands.decode(self.btf, spec.key_type, key) if spec.key_type \
                else map_commands.hex_bytes(key)
            self.emit(f"@{name}[{shown}]:" if len(items) > 1 else f"@{name}:")
            for line in lines:
                self.emit(line)

    def _entries(self, spec: Any, name: str, items: list[tuple[bytes, Any]]) -> None:
        if self.json:
            def py(tid: int, data: bytes) -> Any:
                return btf_values.to_python(self.btf, tid, data) if tid and self.btf \
                    else data.hex()
            self.emit({"map": name, "entries": [
                {"key": py(spec.key_type, k),
                 "value": [py(spec.value_type, v) for v in value] if isinstance(value, list)
                 else py(spec.value_type, value)} for k, value in items]})
            return
        self.emit(f"@{name}:")

        class Entry:                   # what map_commands.dump_text reads
            btf = self.btf
            map = _StaticMap(spec, items)
        self.out.write(map_commands.dump_text(Entry))


class _StaticMap:
    """Map contents taken earlier (in process or from a mount), as ``dump_text`` reads a map."""

    def __init__(self, spec: Any, items: list[tuple[bytes, Any]]) -> None:
        self.map_type, self.key_type, self.value_type = spec.type, spec.key_type, spec.value_type
        self._items = items

    def items(self) -> list[tuple[bytes, Any]]:
        return self._items


def _summed(value: Any) -> bytes:
    """A per-CPU value as the sum of its CPUs' (u64 words), else the value itself."""
    if not isinstance(value, list):
        return bytes(value)
    width = len(value[0])
    if width % 8:
        return bytes(value[0])
    words = [sum(int.from_bytes(v[i:i + 8], "little") for v in value) & ((1 << 64) - 1)
             for i in range(0, width, 8)]
    return b"".join(w.to_bytes(8, "little") for w in words)


def map_contents(run: ObjectRun) -> list[tuple[Any, str, list[tuple[bytes, Any]]]]:
    from filters.bpf.object_run import map_display_name
    return [(spec, map_display_name(run.name, spec.name),
             [] if m.map_type == MAP_TYPE_RINGBUF else list(m.items()))
            for spec, m in zip(run.obj.maps, run.maps, strict=True)]


# ---------------------------------------------------------------- in process

def run_in_process(args: argparse.Namespace, data: bytes) -> int:
    from tracefs.system import System
    system = System.boot(cpus=args.cpus, seed=args.seed, clock=args.clock)
    kernel = system.kernel
    try:
        workload = kernel.workloads.get(args.workload) if args.workload != "none" else None
    except KeyError as e:
        print(f"{PROG}: {e.args[0]}", file=sys.stderr)
        return 2
    try:
        run = ObjectRun(kernel, kernel.tracing.top, data, name=object_name(args.object),
                        sets=args.sets, engine=args.engine, strict=args.strict)
        printer = Printer(run.obj, args)
    except ObjectError as e:
        print("\n".join(e.lines), file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    failed = _report_start(run.messages, run.programs)
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


def _report_start(messages: list[str], programs: list[Any]) -> bool:
    for line in messages:
        print(line, file=sys.stderr)
    for p in programs:
        if p.state == "attached":
            print(f"Attached prog '{p.name}' ({p.prog_type}) to {p.attach_point}", file=sys.stderr)
        elif p.state == "loaded":
            print(f"Loaded prog '{p.name}' ({p.prog_type}): SEC(\"{p.section}\") is not "
                  "auto-attached", file=sys.stderr)
    print("Tracing... Hit Ctrl-C to end.", file=sys.stderr, flush=True)
    return any(p.state == "failed" for p in programs)


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
    _poll_until(args.duration, drain)


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


def _poll_until(duration: float | None, step: Callable[[], None]) -> None:
    end = None if duration is None else time.monotonic() + duration
    while end is None or time.monotonic() < end:
        time.sleep(POLL_S if end is None else max(0.0, min(POLL_S, end - time.monotonic())))
        step()


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        data = Path(args.object).read_bytes()
    except OSError as e:
        print(f"{PROG}: {args.object}: {e.strerror}", file=sys.stderr)
        return 1
    if args.mount:
        from tools.cmd_run_mount import run_on_mount
        return run_on_mount(args, data)
    return run_in_process(args, data)
