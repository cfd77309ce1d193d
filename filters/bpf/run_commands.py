"""Control-channel commands behind ``tracesim run --mount DIR`` and ``tracesim prog``, run in the
mount process (``tracesim.tracefs.system.System.control``):

    bpf-run load NAME BASE64 [--strict] [--set NAME=VALUE]...   load and attach an object
                 [--cookie PROG=VALUE]...
    bpf-run poll ID                                              its new ring/perf records
    bpf-run stop ID                                              detach it; its maps' contents
    prog list                                                    every program (bpftool style)
    prog detach RUN                                              what ``bpf-run stop`` does, for
                                                                 a run whose client went away

``bpf-run`` answers JSON (the client decodes records and maps with the object's BTF, which it
has); ``prog list`` answers text.  ``run(filters, argv, lock) -> (status, text)`` as
``map_commands``: 0 success, 1 a failed operation, 2 a usage error.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import json
from typing import Any

from tracesim.filters.bpf.event_filter import pool_verifier
from tracesim.filters.bpf.loader import GPL_COMPATIBLE
from tracesim.filters.bpf.object_run import ObjectError, ObjectRun
from tracesim.filters.bpf.runtime.maps import MAP_TYPE_RINGBUF

COMMANDS = ("bpf-run", "prog")
USAGE = ("usage: bpf-run load NAME BASE64 [--strict] [--set NAME=VALUE]... "
         "[--cookie PROG=VALUE]... | bpf-run poll ID | "
         "bpf-run stop ID | prog list | prog detach RUN\n")


def run(filters: Any, argv: list[str], lock: Any = None) -> tuple[int, str]:
    lock = lock if lock is not None else contextlib.nullcontext()
    if argv[:2] in (["prog", "list"], ["prog", "show"]) and len(argv) == 2:
        with lock:
            return 0, prog_list_text(filters)
    if argv[:2] == ["bpf-run", "load"] and len(argv) >= 4:
        return _load(filters, argv[2], argv[3], argv[4:], lock)
    if argv[:2] == ["prog", "detach"] and len(argv) == 3:
        argv = ["bpf-run", "stop", argv[2]]
    if argv[:2] in (["bpf-run", "poll"], ["bpf-run", "stop"]) and len(argv) == 3:
        try:
            run_id = int(argv[2])
        except ValueError:
            return 2, USAGE
        with lock:
            if run_id not in filters.runs:
                return 1, f"bpf-run: no object loaded as {argv[2]}\n"
            if argv[1] == "poll":
                return 0, json.dumps({"records": _drain(filters.runs[run_id])})
            obj_run = filters.remove_run(run_id)
            return 0, json.dumps({"records": _drain(obj_run), "maps": map_items(obj_run)})
    return 2, USAGE


def _load(filters: Any, name: str, encoded: str, options: list[str],
          lock: Any) -> tuple[int, str]:
    sets, cookies, strict = [], [], False
    words = iter(options)
    for word in words:
        if word == "--strict":
            strict = True
        elif word == "--set":
            sets.append(next(words, ""))
        elif word == "--cookie":
            cookies.append(next(words, ""))
        else:
            return 2, USAGE
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return 2, "bpf-run load: the object is not valid base64\n"
    kernel = filters.kernel
    with lock:
        try:
            obj_run = ObjectRun(kernel, kernel.tracing.top, data, name=name, sets=sets,
                                engine=filters.engine, strict=strict, cookies=cookies,
                                verify_with=pool_verifier(getattr(filters, "_lock", None)))
        except ObjectError as e:
            return 1, "".join(line + "\n" for line in e.lines)
        run_id = filters.add_run(obj_run)
    programs = [[p.name, p.state, p.prog_type, p.attach_point] for p in obj_run.programs]
    return 0, json.dumps({"id": run_id, "messages": obj_run.messages, "programs": programs})


def _drain(obj_run: ObjectRun) -> list[str]:
    obj_run.tick()
    return [raw.hex() for _, raw in obj_run.drain()]


def map_items(obj_run: ObjectRun) -> list[list[Any]]:
    """Each map's elements as hex: ``[[key, value or [value per CPU]], ...]`` per map."""
    out = []
    for m in obj_run.maps:
        items = [] if m.map_type == MAP_TYPE_RINGBUF else list(m.items())
        out.append([[k.hex(), [x.hex() for x in v] if isinstance(v, list) else v.hex()]
                    for k, v in items])
    return out


def prog_list_text(filters: Any) -> str:
    """``bpftool prog list``'s layout: id, type, name, tag, license, the stats, then where it
    is attached and its size and maps."""
    lines = []
    for prog_id, p in filters.programs():
        stats = f"  run_time_ns {p.stats.run_time_ns} run_cnt {p.stats.runs}" \
            if p.stats.runs else ""
        gpl = "  gpl" if _run_of(filters, p).obj.license in GPL_COMPATIBLE else ""
        lines.append(f"{prog_id}: {p.prog_type}  name {p.name}  tag {p.tag}{gpl}{stats}")
        lines.append(f"\tattach {p.attach_point}  engine {p.engine}  run {_run_id(filters, p)}")
        run_maps = [filters.map_id(m) for m in _run_of(filters, p).maps if m.name in p.map_names]
        map_ids = f"  map_ids {','.join(str(i) for i in run_maps)}" if run_maps else ""
        lines.append(f"\txlated {p.insns * 8}B{map_ids}")
    for file, attached in filters.attached():
        runs = f"  run_cnt {attached.stats.runs}" if attached.stats.runs else ""
        lines.append(f"-: {attached.prog_type}  name {attached.name}{runs}")
        lines.append(f"\tattach filter {file.event.system}:{file.event.name}  engine "
                     f"{attached.engine}")
    return "".join(line + "\n" for line in lines) or "no BPF programs are loaded\n"


def _run_of(filters: Any, prog: Any) -> Any:
    return filters.runs[_run_id(filters, prog)]


def _run_id(filters: Any, prog: Any) -> int:
    return next(i for i, r in filters.runs.items() if prog in r.programs)
