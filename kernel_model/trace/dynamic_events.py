"""``dynamic_events`` (kernel/trace/trace_dynevent.c): one list of every probe event, the
commands that create and remove them, and which kind parses which command.

Each kind (kprobes, fprobes/tprobes, eprobes) has ``location`` (its error_log subsystem) and
``create(argv) -> event | None``; None is the kernel's -ECANCELED ("not mine"), and when no kind
takes a command the write is EINVAL with nothing logged. A ``ProbeError`` from a kind is logged
to the writing trace array's error_log with the kernel's caret column. Removal
(``-:[GRP/]EVENT [ARGS]``, dyn_event_release) matches by group, name and, when given, the
arguments; O_TRUNC removes every event of the file's kinds, EBUSY when one is in use.
"""
from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from typing import Any

from tracesim.kernel_model.trace.eprobe import EprobeEvent, EprobeEvents
from tracesim.kernel_model.trace.fprobe import FprobeEvents
from tracesim.kernel_model.trace.probe import CommandError, ProbeError, log_refusal
from tracesim.kernel_model.trace.probe_event import ProbeEvent


class DynamicEvents:
    """Every dynamic event of one kernel, in creation order."""

    def __init__(self, tracing: Any) -> None:
        self.tracing = tracing
        self.events: list[ProbeEvent] = []
        self.kinds: tuple[Any, ...] = (tracing.kprobes, FprobeEvents(tracing),
                                       EprobeEvents(tracing))

    def text(self, kinds: Sequence[Any] | None = None) -> str:
        return "".join(ev.definition() for ev in self.events
                       if kinds is None or ev.owner in kinds)

    def write(self, text: str, truncate: bool = False, array: Any = None,
              kinds: Sequence[Any] | None = None) -> None:
        """trace_parse_run_command: one command a line, ``#`` starts a comment."""
        if "\0" in text:
            raise CommandError(errno.EINVAL, "Invalid argument")
        if truncate:
            self.clear(kinds)
        for line in text.split("\n"):
            line = line.split("#", 1)[0].strip()
            if line:
                self.command(line, array, kinds)

    def clear(self, kinds: Sequence[Any] | None = None) -> None:
        """dyn_events_release_all: EBUSY (and nothing removed) if any is in use."""
        mine = [ev for ev in self.events if kinds is None or ev.owner in kinds]
        if any(self.busy(ev) for ev in mine):
            raise CommandError(errno.EBUSY, "Device or resource busy")
        for ev in reversed(mine):
            self.remove(ev)

    def command(self, line: str, array: Any = None,
                kinds: Sequence[Any] | None = None) -> ProbeEvent | None:
        argv = line.split()
        if argv[0][0] == "-" or argv[0][0] == "!" and kinds is None:   # create_dyn_event
            self._release(argv, kinds)
            return None
        for kind in kinds or self.kinds:
            try:
                ev = kind.create(argv)
            except ProbeError as e:
                raise log_refusal(array or self.tracing.top, kind.location, argv, e) from None
            if ev is not None:
                return ev
        raise CommandError(errno.EINVAL, "Invalid argument")

    def add(self, ev: ProbeEvent, same_kind: Callable[[ProbeEvent], bool]) -> None:
        """register_trace_*: a name in use by an event of another type is DIFF_PROBE_TYPE when
        it is a probe of this kind and EVENT_EXIST otherwise; the same name and arguments
        again is SAME_PROBE, other arguments DIFF_ARG_TYPE (the argument's index)."""
        key = (ev.system, ev.name)
        old = next((o for o in self.events if (o.system, o.name) == key), None)
        if old is not None:
            if old.owner is not ev.owner or isinstance(ev, EprobeEvent):
                # another kind's event, or an event probe (trace_probe_register_event_call)
                raise ProbeError("EVENT_EXIST", 0, 0, errno.EEXIST)
            if not same_kind(old):
                raise ProbeError("DIFF_PROBE_TYPE", 0, 0, errno.EEXIST)
            diff = ev.same_args(old)
            if diff:
                raise ProbeError("DIFF_ARG_TYPE", diff + 1, 0, errno.EEXIST)
            same_place = getattr(old, "same_place", None)
            if same_place is None or same_place(ev):
                raise ProbeError("SAME_PROBE", 0, 0, errno.EEXIST)
            old.append(ev)                               # type: ignore[attr-defined]
            self.events.append(ev)
            return
        if key in self.tracing.events:
            raise ProbeError("EVENT_EXIST", 0, 0, errno.EEXIST)
        self.tracing.register_event(ev)
        self.events.append(ev)
        self._create_dirs(ev)

    def _create_dirs(self, ev: ProbeEvent) -> None:
        """event_create_dir in each trace array: ``eventfs_create_dir(name, parent, entries,
        size, data)`` for the system's directory when it is new, then for the event's, the
        name being the kstrdup'd string in kernel memory (a probe there reads it). Only run
        while something probes the function."""
        kernel = self.tracing.kernel
        site = kernel.kprobes.site("eventfs_create_dir")
        if not site.active:
            return
        slab, mem = kernel.slab, kernel.mem
        new_system = not any(e is not ev and e.system == ev.system
                             for e in self.tracing.events.values())
        names = ([ev.system] if new_system else []) + [ev.name]
        for _ in self.tracing.arrays():
            for name in names:
                raw = name.encode() + b"\0"
                addr = slab.kmalloc(len(raw))
                mem.write(addr, raw)
                site.call(_eventfs_dir, addr, 0, 0, 0, 0)
                slab.kfree(addr)

    def remove(self, ev: ProbeEvent) -> None:
        primary = getattr(ev, "primary", None)
        if primary is not None:                          # an appended probe: unlink it
            primary.siblings.remove(ev)
            self.events.remove(ev)
            ev.enabled, ev.sinks = False, ()
            ev.on_enabled_changed()                      # type: ignore[attr-defined]
            return
        for sibling in list(getattr(ev, "siblings", ())):
            self.remove(sibling)
        detach = getattr(ev, "detach", None)
        self.tracing.unregister_event(ev)
        self.events.remove(ev)
        if detach is not None:
            detach()

    def busy(self, ev: ProbeEvent) -> bool:
        """trace_probe_is_enabled / an event probe attached to it: the event cannot go."""
        ev = getattr(ev, "primary", None) or ev
        key = (ev.system, ev.name)
        if getattr(ev, "attached", ()) or getattr(ev, "probes", ()):
            return True
        if any(getattr(o, "target", None) is ev for o in self.events):
            return True                  # an event probe holds a reference (trace_event_get_ref)
        return any(ta.files[key].active or ta.files[key].filter is not None
                   for ta in self.tracing.arrays() if key in ta.files)

    def _release(self, argv: list[str], kinds: Sequence[Any] | None) -> None:
        """dyn_event_release: ``-:[GRP/]EVENT [NAME=ARG ...]`` (or ``!X:[GRP/]EVENT``)."""
        head = argv[0]
        colon = 1 if head[0] == "-" else head.find(":")
        if colon < 0 or head[colon:colon + 1] != ":":
            raise CommandError(errno.EINVAL, "Invalid argument")
        spec = head[colon + 1:]
        group: str | None = None
        if "/" in spec:
            group, spec = spec.split("/", 1)
        elif not spec:
            raise CommandError(errno.EINVAL, "Invalid argument")
        hits = [ev for ev in self.events
                if (kinds is None or ev.owner in kinds)
                and spec in ("", ev.name) and group in (None, ev.system)
                and _command_match(ev, argv[1:])]
        if not hits:
            raise CommandError(errno.ENOENT, "No such file or directory")
        for ev in hits:
            if ev not in self.events:                    # went with its event's first probe
                continue
            if self.busy(ev):
                raise CommandError(errno.EBUSY, "Device or resource busy")
            kept = [p for p in getattr(ev, "siblings", ()) if p not in hits]
            if kept:
                self._unlink_first(ev, kept[0])
            else:
                self.remove(ev)

    def _unlink_first(self, ev: Any, heir: Any) -> None:
        """trace_probe_unlink of an event's first probe while others stay: the event (its
        files, its id) lives on with the next probe's point (the arguments are the same)."""
        ev.symbol, ev.offset, ev.address_text = heir.symbol, heir.offset, heir.address_text
        ev.nhit, ev.missed_base = heir.nhit, heir.nmissed
        self.remove(heir)


def _eventfs_dir(name: int, parent: int, entries: int, size: int, data: int) -> int:
    return 0                    # the eventfs_inode is the tree's own (tracefs/)


def _command_match(ev: ProbeEvent, args: list[str]) -> bool:
    """The kind's match_command_head: with arguments after the name, the first is the probe
    point as the definition shows it (``SYM[+OFFS]``, an address, the fprobe's symbol without
    ``%return``, the tracepoint, or the event probe's ``SYS.EVENT``/``SYS/EVENT``); the rest
    are the event's arguments."""
    if not args:
        return True
    place = ev.definition().split()[1]
    if isinstance(ev, EprobeEvent):
        places = {place, place.replace(".", "/", 1)}
    else:
        places = {place.removesuffix("%return")}
    return args[0] in places and _args_match(ev, args[1:])


def _args_match(ev: ProbeEvent, args: list[str]) -> bool:
    """trace_probe_match_command_args: each given ``NAME=ARG`` is the event's argument there."""
    if len(args) > len(ev.args):
        return False
    return all(f"{a.name}={a.comm}" == text for a, text in zip(ev.args, args, strict=False))
