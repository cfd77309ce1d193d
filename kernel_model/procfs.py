"""The model's files outside tracefs that tracing users read: ``/proc/version``,
``/proc/kallsyms``, ``/proc/sys/debug/kprobes-optimization`` and debugfs's ``kprobes/``
(``list``, ``blacklist``, ``enabled``).

The control channel serves them (``cat PATH``; ``sysctl debug.kprobes-optimization[=0|1]``),
so a tool or a test can put the model's files where a program reads the kernel's (the ftrace
selftests' private mount namespace binds them over the host's paths).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tracesim.kernel_model.kprobes import KPROBE_BLACKLIST
from tracesim.kernel_model.proc_kallsyms import kallsyms_text
from tracesim.kernel_model.version import proc_version

OPTIMIZATION_KEY = "debug.kprobes-optimization"


def _blacklist(kernel: Any) -> str:
    """``kprobes/blacklist`` (kprobe_blacklist_seq_show): ``0x%px-0x%px\\t%ps`` per function
    of the blacklist kallsyms has, in address order."""
    syms = kernel.kallsyms
    found = sorted(s for s in (syms.symbol(n) for n in KPROBE_BLACKLIST if n in syms) if s.size)
    return "".join(f"0x{s.addr:016x}-0x{s.addr + s.size:016x}\t{s.name}\n" for s in found)


FILES: dict[str, Callable[[Any], str]] = {
    "/proc/version": lambda kernel: proc_version(),
    "/proc/kallsyms": lambda kernel: kallsyms_text(kernel.kallsyms),
    "/proc/sys/debug/kprobes-optimization":
        lambda kernel: f"{int(kernel.kprobes.optimization)}\n",
    "/sys/kernel/debug/kprobes/list": lambda kernel: kernel.kprobes.list_text(),
    "/sys/kernel/debug/kprobes/blacklist": _blacklist,
    "/sys/kernel/debug/kprobes/enabled": lambda kernel: "1\n",
}


def cat_command(kernel: Any, args: list[str]) -> tuple[int, str]:
    """``cat PATH``: the text of one of ``FILES``."""
    if len(args) != 1:
        return 2, "usage: cat PATH\n"
    make = FILES.get(args[0])
    if make is None:
        return 1, f"cat: {args[0]}: No such file or directory\n"
    with kernel.lock:
        return 0, make(kernel)


def sysctl_command(kernel: Any, args: list[str]) -> tuple[int, str]:
    """``sysctl debug.kprobes-optimization[=0|1]`` (proc_kprobes_optimization_handler: an
    int from 0 to 1; switching it optimizes or unoptimizes every probe)."""
    name, eq, value = args[0].partition("=")
    if len(args) != 1 or name != OPTIMIZATION_KEY:
        return 2, f"usage: sysctl {OPTIMIZATION_KEY}[=0|1]\n"
    if not eq:
        return 0, f"{name} = {int(kernel.kprobes.optimization)}\n"
    try:
        on = int(value.strip(), 0)
    except ValueError:
        on = -1
    if on not in (0, 1):
        return 1, f"sysctl: setting key \"{name}\": Invalid argument\n"
    with kernel.lock:
        kernel.kprobes.optimization = bool(on)
    return 0, f"{name} = {on}\n"
