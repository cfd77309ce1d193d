"""Function commands: ``<glob>:<command>[:param]`` written to ``set_ftrace_filter``
(kernel/trace/ftrace.c ftrace_process_regex, trace_functions.c and trace_events.c probes).

Commands: ``traceon``, ``traceoff``, ``stacktrace``, ``dump``, ``cpudump``, ``snapshot``
(trace.c: the snapshot buffer is allocated when the command is set, each hit swaps it with the
live buffer) with an optional ``:count``, and ``enable_event:<system>:<event>[:count]`` /
``disable_event:...``. They run when the function is hit whatever the current tracer (they
register their own ftrace ops), in the trace array the file belongs to. ``!<glob>:<command>``
removes them (a count is ignored); ``:mod:<module>`` (``<glob>:mod:<module>``) selects the
functions of a module. The notrace file takes ``:mod:`` only. Counts fall only when the
command changed something (traceon, traceoff, enable_event, disable_event) or ran
(stacktrace, dump, cpudump, snapshot).

Listing (``cat set_ftrace_filter`` after the filter's functions): ``FUNC:CMD:unlimited`` or
``FUNC:CMD:count=N``; events as ``FUNC:enable_event:SYS:EVENT:...`` (ftrace_probe_print,
event_enable_print).
"""
from __future__ import annotations

import errno
import fnmatch
from typing import Any

from tracesim.kernel_model.trace.errlog import os_error
from tracesim.kernel_model.trace.printk import KERN_EMERG
from tracesim.kernel_model.trace.triggers import _soft_get, _soft_put

COMMANDS = ("traceon", "traceoff", "stacktrace", "dump", "cpudump", "enable_event",
            "disable_event", "snapshot")
DUMP_RULE = "---------------------------------"


class FunctionProbe:
    """One command on one function."""

    def __init__(self, func: str, cmd: str, count: int, target: Any = None) -> None:
        self.func = func
        self.cmd = cmd
        self.count = count            # -1: unlimited
        self.target = target          # EventFile for enable_event / disable_event

    def key(self) -> tuple[str, str, Any]:
        return (self.func, self.cmd if self.target is None else "event", self.target)

    def text(self) -> str:
        name = self.cmd
        if self.target is not None:
            ev = self.target.event
            name = f"{self.cmd}:{ev.system}:{ev.name}"
        count = ":unlimited" if self.count == -1 else f":count={self.count}"
        return f"{self.func}:{name}{count}\n"

    def release(self) -> None:
        """The probe goes: its event leaves soft mode when it was the last user."""
        if self.target is not None:
            _soft_put(self.target)

    def hit(self, array: Any, cpu_id: int, stack_of: Any) -> None:
        if self.count == 0:
            return
        cmd = self.cmd
        if cmd in ("traceon", "traceoff"):
            on = cmd == "traceon"
            if array.tracing_on == on:
                return
            array.set_tracing_on(on)
        elif cmd in ("enable_event", "disable_event"):
            on = cmd == "enable_event"
            target = self.target
            if on == (not target.soft_disabled):
                return
            target.soft_disabled = not on
            array.tracing.update_event(target.event)
        elif cmd == "stacktrace":
            stack_of(self)
        elif cmd == "snapshot":
            array.take_snapshot()
        else:
            dump(array, cpu_id if cmd == "cpudump" else None)
        if self.count != -1:
            self.count -= 1


def dump(array: Any, cpu: int | None) -> None:
    """ftrace_dump: tracing off, then the buffer (one CPU's for cpudump) consumed to the
    console."""
    from tracesim.kernel_model.trace.output import format_lines
    array.set_tracing_on(False)
    printk = array.tracing.kernel.printk.printk
    printk("Dumping ftrace buffer:", KERN_EMERG)
    printk(DUMP_RULE, KERN_EMERG)
    count = 0
    while batch := array.buffer.consume_batch(cpu, 256):
        for line in format_lines(array, batch).splitlines():
            printk(line, KERN_EMERG)
            count += 1
    printk("   (ftrace buffer empty)" if not count else DUMP_RULE, KERN_EMERG)


def parse_count(text: str | None) -> int:
    """``:count`` (kstrtoul, base 0); none or empty: unlimited."""
    if not text:
        return -1
    try:
        value = int(text, 0)
    except ValueError:
        raise os_error(errno.EINVAL) from None
    if value < 0:
        raise os_error(errno.EINVAL)
    return value


def run_command(state: Any, functions: list[str], glob: str, cmd: str, param: str | None,
                enable: bool) -> list[str] | None:
    """A ``glob:cmd[:param]`` word for ``set_ftrace_filter`` (enable) or ``set_ftrace_notrace``.
    Returns the functions ``:mod:`` selects (for the caller's hash), None for a probe
    command, which is applied to ``state`` here."""
    if cmd == "mod":
        return mod_functions(state, functions, glob, param, enable)
    if cmd not in COMMANDS or not enable:
        raise os_error(errno.EINVAL)
    remove = glob.startswith("!")
    glob = glob[1:] if remove else glob
    target = None
    if cmd in ("enable_event", "disable_event"):
        system, _, rest = (param or "").partition(":")
        if not rest:
            raise os_error(errno.EINVAL)
        event, _, param = rest.partition(":")
        target = state.array.files.get((system, event))
        if target is None:
            raise os_error(errno.EINVAL)
    names = [n for n in functions if fnmatch.fnmatchcase(n, glob)]
    if remove:
        state.remove_probes(names, cmd, target)
        return None
    if not names:
        raise os_error(errno.EINVAL)
    count = parse_count(param.partition(":")[0] if param else None)
    if cmd == "snapshot":
        state.array.alloc_snapshot()      # tracing_arm_snapshot
    probes = [FunctionProbe(name, cmd, count, target) for name in names]
    if target is not None:
        for _ in probes:                  # each probe holds the event in soft mode
            _soft_get(target)
    state.add_probes(probes)
    return None


def mod_functions(state: Any, functions: list[str], glob: str, module: str | None,
                  enable: bool = True) -> list[str]:
    """``[glob]:mod:<module>``: the module's functions matching glob (all when empty). When
    none match, the word is kept for a module not loaded yet (cache_mod) and listed as
    ``glob:mod:module``; ``!glob:mod:module`` drops such a kept word."""
    if not module:
        raise os_error(errno.EINVAL)
    remove = glob.startswith("!")
    pattern = (glob[1:] if remove else glob) or "*"
    kallsyms = state.array.tracing.kernel.kallsyms
    of_module = {s.name for s in kallsyms if s.module == module}
    hits = [n for n in functions if n in of_module and fnmatch.fnmatchcase(n, pattern)]
    if not hits:
        cache_mod(state, glob, module, enable, loaded=bool(of_module))
        return []
    return ["!" + n for n in hits] if remove else hits


def cache_mod(state: Any, glob: str, module: str, enable: bool, loaded: bool) -> None:
    """Keep ``glob:mod:module`` for when the module loads (newest first), or with ``!glob``
    forget the kept words of that module naming glob (``!*``: all of them); EINVAL when
    nothing was forgotten, or when the module is loaded and glob matched none of its
    functions."""
    kept = state.mod_cache[enable]
    if glob.startswith("!"):
        func = glob[1:]
        gone = [m for m in kept if m[1] == module and (func == "*" or m[0] == func)]
        if not gone:
            raise os_error(errno.EINVAL)
        kept[:] = [m for m in kept if m not in gone]
        return
    if loaded:
        raise os_error(errno.EINVAL)
    kept.insert(0, (glob, module))
