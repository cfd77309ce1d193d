"""What ``tracesim run`` prints, in process and from a mount: decoded records, map dumps, the
start-up report, and the polling loop (``tracesim.tools.cmd_run``, ``tracesim.tools.cmd_run_mount``)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from tracesim.filters.bpf.object_run import map_display_name
from tracesim.filters.bpf.runtime import map_commands
from tracesim.filters.bpf.runtime.maps import MAP_TYPE_RINGBUF
from tracesim.filters.bpf.toolchain import btf_values

PROG = "tracesim run"
POLL_S = 0.1                      # how often records are read (real clock, mounts)


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
        image = bytes(image)
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
            per_cpu = value if isinstance(value, list) else [value]
            vals = [sum(col) for col in zip(*(btf_values.slot_values(v, where) for v in per_cpu),
                                            strict=True)]
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


def map_contents(run: Any) -> list[tuple[Any, str, list[tuple[bytes, Any]]]]:
    return [(spec, map_display_name(run.name, spec.name),
             [] if m.map_type == MAP_TYPE_RINGBUF else list(m.items()))
            for spec, m in zip(run.obj.maps, run.maps, strict=True)]


def report_start(messages: list[str], programs: list[Any]) -> bool:
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


def poll_until(duration: float | None, step: Callable[[], None]) -> None:
    end = None if duration is None else time.monotonic() + duration
    while end is None or time.monotonic() < end:
        time.sleep(POLL_S if end is None else max(0.0, min(POLL_S, end - time.monotonic())))
        step()
