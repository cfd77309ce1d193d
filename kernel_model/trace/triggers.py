"""Event triggers (kernel/trace/trace_events_trigger.c): traceon, traceoff, snapshot, stacktrace,
enable_event, disable_event, enable_hist, disable_hist — each with ``[:count]`` and
``[if FILTER]``; ``!cmd`` removes — and ``hist`` (kernel_model/hist.py parses those).

``set_trigger(file, text)`` is a write to ``events/<sys>/<event>/trigger``; ``trigger_text(file)``
what reading it shows (the ``# Available triggers`` header when there are none, else one line
per trigger as ``event_trigger_print`` formats it: ``traceoff:count=3 if len > 10``). Triggers
are kept newest first, the order the kernel both runs and lists them in.

Rules as trace_events_trigger.c has them: two triggers clash when they are of one trigger type
(``traceon`` and ``traceoff`` share one, as do ``enable_event`` and ``disable_event`` on one target
event), so adding either while the other is set is EEXIST, and ``!traceoff`` removes a
``traceon``. Removing a trigger that is not set succeeds silently (event_trigger_parse and
event_enable_trigger_parse return 0 after unregistering, whether or not anything matched).
Opening with O_TRUNC clears only hist triggers (``truncate_hist``; hist_unreg_all), so ``>``
leaves the others in place. Hist triggers go to the tail of the list (hist_trigger_enable:
list_add_tail_rcu), the others to its head.
Errors: ``OSError`` with EINVAL (unknown command, bad count, bad filter, unknown target
event), EEXIST (a trigger of the same type is set); removing one that is not there succeeds.
"""
from __future__ import annotations

import errno
from typing import Any

from tracesim.kernel_model.trace import hist
from tracesim.kernel_model.trace.call_stack import event_stack, hold_stacks
from tracesim.kernel_model.trace.emit import write_entry

# the commands in registration order (register_trigger_cmds), as the empty file lists them
COMMANDS = ("traceon", "traceoff", "snapshot", "stacktrace", "enable_event", "disable_event",
            "enable_hist", "disable_hist", "hist")
AVAILABLE_TEXT = "# Available triggers:\n# " + " ".join(COMMANDS) + "\n"
# enum event_trigger_type: the commands that share one type exclude each other on an event
TRIGGER_TYPE = {"traceon": "TRACE_ONOFF", "traceoff": "TRACE_ONOFF", "stacktrace": "STACKTRACE",
                "snapshot": "SNAPSHOT", "enable_event": "EVENT_ENABLE",
                "disable_event": "EVENT_ENABLE", "enable_hist": "HIST_ENABLE",
                "disable_hist": "HIST_ENABLE"}
TARGETED = ("enable_event", "disable_event", "enable_hist", "disable_hist")


class Trigger:
    """One trigger attached to an event file."""

    needs_record = False          # EVENT_CMD_FL_NEEDS_REC: only hist triggers read the record

    def __init__(self, cmd: str, count: int, flt: Any, filter_text: str | None,
                 target: Any = None) -> None:
        self.cmd = cmd
        self.count = count                # -1: unlimited
        self.filter = flt
        self.filter_text = filter_text
        self.target = target              # EventFile for enable_event/disable_event

    def same(self, other: Any) -> bool:
        return (other.cmd in TRIGGER_TYPE and TRIGGER_TYPE[self.cmd] == TRIGGER_TYPE[other.cmd]
                and self.target is other.target)

    def text(self) -> str:
        name = self.cmd
        if self.target is not None:
            ev = self.target.event
            name = f"{self.cmd}:{ev.system}:{ev.name}"
        count = ":unlimited" if self.count == -1 else f":count={self.count}"
        cond = f" if {self.filter_text}" if self.filter_text is not None else ""
        return f"{name}{count}{cond}\n"

    def fire(self, file: Any, record: bytes | None) -> None:
        """Run the trigger for one hit on ``file`` (record None: unconditional call)."""
        if self.count == 0:
            return
        array = file.array
        if self.cmd in ("traceon", "traceoff"):
            want = self.cmd == "traceon"
            if array.tracing_on == want:        # no state change: count untouched
                return
            self._spend()
            array.set_tracing_on(want)
        elif self.cmd == "stacktrace":
            self._spend()
            record_stack(array, file.event)
        elif self.cmd == "snapshot":
            self._spend()
            array.take_snapshot()
        elif self.cmd in ("enable_hist", "disable_hist"):
            self._spend()
            hist.set_paused(self.target, self.cmd == "disable_hist")
        else:
            target = self.target
            enable = self.cmd == "enable_event"
            if enable == (not target.soft_disabled):
                return
            self._spend()
            target.soft_disabled = not enable
            array.tracing.update_event(target.event)

    def _spend(self) -> None:
        if self.count != -1:
            self.count -= 1


def record_stack(array: Any, event: Any) -> None:
    """Write a kernel_stack entry: the tracepoint's frames, then the modelled call chain."""
    tracing = array.tracing
    ev = tracing.events[("ftrace", "kernel_stack")]
    cpu = tracing.this_cpu()
    write_entry(array, ev, ev.assign(event_stack(tracing, event, cpu)), cpu)


def trigger_text(file: Any) -> str:
    if not file.triggers:
        return AVAILABLE_TEXT
    return "".join(t.text() for t in file.triggers)


def _compile(file: Any, text: str) -> Any:
    from tracesim.filters.predicate import FilterError, compile_filter
    try:
        return compile_filter(text, file.event.all_fields)
    except FilterError as e:
        raise OSError(e.errno, str(e)) from None


def _parse_count(text: str) -> int:
    try:
        n = int(text, 0) if text else -1
    except ValueError:
        raise OSError(errno.EINVAL, "bad count") from None
    if n < -1:
        raise OSError(errno.EINVAL, "bad count")
    return n


def set_trigger(file: Any, text: str) -> None:
    """One write to a ``trigger`` file (the whole buffer is one command)."""
    text = text.strip()
    remove = text.startswith("!")
    body = text[1:] if remove else text
    cond_text = None
    if " if " in f" {body} " and body.split(None, 1)[0] != "if":
        head, _, cond_text = body.partition(" if ")
        cond_text = cond_text.strip() or None
        body = head
    if body.split(":", 1)[0].strip() == "hist":
        _hist_command(file, text)
        return
    parts = body.strip().split(":")
    cmd = parts[0].strip()
    if cmd not in COMMANDS:
        raise OSError(errno.EINVAL, f"unknown trigger {cmd!r}")
    target = None
    if cmd in TARGETED:
        if len(parts) < 3:
            raise OSError(errno.EINVAL, "enable_event:SYSTEM:EVENT expected")
        try:
            target = file.array.file(parts[1], parts[2])
        except OSError:
            raise OSError(errno.EINVAL, "no such event") from None
        count_text = parts[3] if len(parts) > 3 else ""
    else:
        count_text = parts[1] if len(parts) > 1 else ""
    new = Trigger(cmd, -1, None, None, target)
    if remove:             # event_trigger_parse: removing a trigger that is not there is 0
        for t in file.triggers:
            if t.same(new):
                _detach(file, t)
                break
        return
    new.count = _parse_count(count_text.strip())
    if cond_text is not None:
        new.filter = _compile(file, cond_text)
        new.filter_text = cond_text
    if any(t.same(new) for t in file.triggers):
        raise OSError(errno.EEXIST, "trigger exists")
    if target is not None:              # event_enable_trigger_parse (enable_hist too):
        _soft_get(target)               # the target goes into soft mode
    if cmd == "snapshot":
        file.array.alloc_snapshot()     # register_snapshot_trigger arms the snapshot buffer
    _attach(file, new, tail=False)


def _attach(file: Any, trig: Any, tail: bool) -> None:
    if not file.triggers:               # trace_event_trigger_enable_disable: the first trigger
        _soft_get(file)                 # puts the event itself in soft mode (enable reads 0*)
    if tail:
        file.triggers.append(trig)
    else:
        file.triggers.insert(0, trig)   # register_trigger: list_add_rcu, newest first
    if _needs_stack(trig):
        hold_stacks(file.array.tracing, True)
    file.array.tracing.update_event(file.event)


def _needs_stack(trig: Any) -> bool:
    """The trigger records call stacks (stacktrace, a hist keyed on or saving one)."""
    return trig.cmd == "stacktrace" or bool(getattr(trig, "has_stack", False))


def _hist_command(file: Any, text: str) -> None:
    _apply(hist.command(file, text))


def _apply(ops: list[tuple[str, Any]]) -> None:
    """Add or remove hist triggers, each on its own event file (a trigger's field-variable
    hists live on the events it reads)."""
    for op, trig in ops:
        if op == "add":
            _attach(trig.file, trig, tail=True)
        elif trig in trig.file.triggers:
            _detach(trig.file, trig)


def truncate_hist(file: Any) -> None:
    """O_TRUNC on a trigger file: hist_unreg_all."""
    _apply(hist.removable_on_truncate(file))


def _soft_get(file: Any) -> None:
    """One more soft-mode user of ``file`` (__ftrace_event_enable_disable with soft_disable)."""
    if file.soft_refs == 0:
        file.soft_disabled = not file.enabled
    file.soft_refs += 1
    file.array.tracing.update_event(file.event)


def _soft_put(file: Any) -> None:
    file.soft_refs -= 1
    if file.soft_refs == 0:
        file.enabled = not file.soft_disabled
        file.soft_disabled = False
    file.array.tracing.update_event(file.event)


def _detach(file: Any, trig: Trigger) -> None:
    file.triggers.remove(trig)
    if _needs_stack(trig):
        hold_stacks(file.array.tracing, False)
    if trig.target is not None:
        _soft_put(trig.target)
    if not file.triggers:
        _soft_put(file)
    file.array.tracing.update_event(file.event)


def clear_triggers(file: Any) -> None:
    """Remove every trigger of ``file`` (instance removal)."""
    for t in list(file.triggers):
        _detach(file, t)
