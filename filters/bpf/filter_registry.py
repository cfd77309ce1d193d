"""The BPF filters of one running system: what the tracefs seam calls, and what ``maps`` lists.

    filters = BpfFilters(kernel, engine="jit")
    filters.install(tree.ctx)          # filter writes of BPF objects now load programs

``install`` plugs two hooks into a tracefs ``TreeContext`` (duck-typed: this module does not
import tracefs): ``bpf_loader(target, data)`` and ``bpf_unloader(file)``. ``set_engine`` picks
JIT or interpreter for programs loaded afterwards, like the kernel's ``net.core.bpf_jit_enable``
(``tracesim ctl DIR bpf-engine jit|interp``; no kernel has a tracefs file for it).

Verification runs in a worker process with the tree's lock released (``verify_pool``): the
model and other control writes go on while a load waits for its verdict.

Failures: the previous filter stays, ``error_log`` gets ``bpf: error: <summary>`` with the
program as the command, the kernel log (``dmesg``) gets ``failed to load bpf -13`` (the RFC's
message) followed by the verifier's log (its last 16 KiB), and the write fails with EACCES.

Maps belong to an object: writing the same object bytes to several event files of one trace
array (or to a subsystem ``filter``) gives its programs the same maps, as one libbpf object
would; they are released when the last of those programs is detached.
"""
from __future__ import annotations

import errno
import hashlib
from dataclasses import dataclass, field
from typing import Any

from tracesim.filters.bpf.event_filter import (
    AttachedFilter,
    BpfFilterError,
    load_event_filter,
    program_sections,
    section_matches,
)
from tracesim.filters.bpf.loader import ENGINE_CHOICES, check_engine
from tracesim.filters.bpf.runtime.maps import BpfMap


@dataclass
class _LoadedObject:
    maps: list[BpfMap]
    files: set = field(default_factory=set)


@dataclass
class MapEntry:
    """A live map: its id (kernel-style, increasing), the map, and where its programs run."""
    id: int
    map: BpfMap
    instance: str
    events: list[str]
    btf: Any = None


class BpfFilters:
    """Attached BPF filters of one kernel, by event file."""

    def __init__(self, kernel: Any, engine: str = "jit") -> None:
        check_engine(engine)
        self.kernel = kernel
        self.engine = engine
        self._by_file: dict[Any, tuple[AttachedFilter, tuple[str, bytes]]] = {}
        self._objects: dict[tuple[str, bytes], _LoadedObject] = {}
        self._map_ids: dict[int, int] = {}          # id(map) -> map id
        self._btf: dict[int, Any] = {}              # id(map) -> the object's BTF
        self._next_map_id = 1
        self._lock: Any = None        # the tree's lock, released while a load verifies
        self.runs: dict[int, Any] = {}               # run id -> ObjectRun (``tracesim run``)
        self._next_run_id = 1
        self._prog_ids: dict[int, int] = {}          # id(program) -> prog id
        self._next_prog_id = 1

    # -- hooks --------------------------------------------------------------------------------
    def install(self, ctx: Any) -> None:
        self._lock = getattr(ctx, "lock", None)
        ctx.bpf_loader = self.load
        ctx.bpf_unloader = self.unload

    def set_engine(self, engine: str) -> None:
        if engine not in ENGINE_CHOICES:
            raise OSError(errno.EINVAL, f"unknown BPF engine {engine!r}")
        self.engine = engine

    def load(self, target: Any, data: bytes) -> None:
        """Load ``data`` on every file of ``target`` (one event, or a subsystem's events)."""
        array = target.array
        key = (array.name, hashlib.sha256(data).digest())
        shared = self._objects.get(key)
        loaded: list[tuple[Any, AttachedFilter]] = []
        failures: list[BpfFilterError] = []
        maps = shared.maps if shared is not None else None
        for file in _files_for(target.files, data):
            try:
                attached = load_event_filter(data, file.event, kernel=self.kernel, ta=array,
                                             engine=self.engine, maps=maps, unlock=self._lock)
                now = self._objects.get(key)
                if maps is None and now is not None:
                    # another load registered this object while ours verified (unlocked):
                    # its maps are the object's (a rare race: verified again, locked)
                    attached = load_event_filter(data, file.event, kernel=self.kernel, ta=array,
                                                 engine=self.engine, maps=now.maps)
            except BpfFilterError as e:
                failures.append(e)
                continue
            maps = attached.maps
            loaded.append((file, attached))
        if not loaded:              # a subsystem write succeeds if any of its events took it
            self._report(array, failures[0])
            raise failures[0]
        obj = self._objects.setdefault(key, _LoadedObject(maps or []))
        btf = loaded[0][1].btf
        for m in obj.maps:
            if id(m) not in self._map_ids:
                self._map_ids[id(m)] = self._next_map_id
                self._btf[id(m)] = btf
                self._next_map_id += 1
        for file, attached in loaded:
            previous = self._by_file.get(file)
            if previous is None or previous[1] != key:
                # unloading the file's own object (the same bytes written again) would free the
                # maps the new program was just given, and drop them from ``maps``
                self.unload(file)
            self._by_file[file] = (attached, key)
            obj.files.add(file)
            file.set_prog(attached.prog)

    def unload(self, file: Any) -> None:
        """Detach the program of ``file`` (``echo 0 > filter``); its object's maps go with the
        last program using them."""
        entry = self._by_file.pop(file, None)
        if file.prog is not None:
            file.set_prog(None)
        if entry is None:
            return
        _, key = entry
        obj = self._objects.get(key)
        if obj is None:
            return
        obj.files.discard(file)
        if not obj.files:
            del self._objects[key]
            for m in obj.maps:
                self._map_ids.pop(id(m), None)
                self._btf.pop(id(m), None)

    def _report(self, array: Any, err: BpfFilterError) -> None:
        array.log_error("bpf", err.command, err.summary, 0)
        printk = self.kernel.printk.printk
        printk(f"failed to load bpf {-err.errno}")
        for line in err.log.splitlines():
            printk(line)

    # -- what the user asks -------------------------------------------------------------------
    def attached(self) -> list[tuple[Any, AttachedFilter]]:
        """(event file, filter) for every attached program."""
        return [(file, a) for file, (a, _) in self._by_file.items()]

    def filter_of(self, file: Any) -> AttachedFilter | None:
        entry = self._by_file.get(file)
        return entry[0] if entry else None

    def add_run(self, run: Any) -> int:
        """Register an object ``tracesim run`` loaded here: its maps and programs get ids."""
        run_id = self._next_run_id
        self._next_run_id += 1
        self.runs[run_id] = run
        for m in run.maps:
            self._map_ids[id(m)] = self._next_map_id
            self._btf[id(m)] = run.obj.btf
            self._next_map_id += 1
        for p in run.programs:
            if p.state != "failed":
                self._prog_ids[id(p)] = self._next_prog_id
                self._next_prog_id += 1
        return run_id

    def remove_run(self, run_id: int) -> Any:
        """Detach and forget run ``run_id`` (KeyError if there is none); returns it."""
        run = self.runs.pop(run_id)
        run.detach()
        for m in run.maps:
            self._map_ids.pop(id(m), None)
            self._btf.pop(id(m), None)
        for p in run.programs:
            self._prog_ids.pop(id(p), None)
        return run

    def programs(self) -> list[tuple[int, Any]]:
        """(prog id, ProgramRun) of every program loaded by ``tracesim run`` objects here."""
        return sorted(((self._prog_ids[id(p)], p) for run in self.runs.values()
                       for p in run.programs if id(p) in self._prog_ids), key=lambda t: t[0])

    def map_id(self, m: BpfMap) -> int:
        return self._map_ids.get(id(m), 0)

    def maps(self) -> list[MapEntry]:
        out = []
        for key, obj in self._objects.items():
            events = sorted(f"{f.event.system}:{f.event.name}" for f in obj.files)
            for m in obj.maps:
                out.append(MapEntry(self._map_ids[id(m)], m, key[0], events,
                                    self._btf.get(id(m))))
        for run_id, run in self.runs.items():
            points = [p.attach_point for p in run.programs if p.link is not None]
            for m in run.maps:
                out.append(MapEntry(self._map_ids[id(m)], m, f"(run {run_id})", points,
                                    self._btf.get(id(m))))
        return sorted(out, key=lambda e: e.id)



def _files_for(files: list, data: bytes) -> list:
    """A subsystem write goes to the events the object's sections name, when it names any of
    them; otherwise to every event of the subsystem (each verified for its own record)."""
    if len(files) < 2:
        return files
    sections = program_sections(data)
    named = [f for f in files if any(section_matches(s, f.event) for s in sections)]
    return named or files
