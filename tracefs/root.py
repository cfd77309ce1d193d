"""The whole tree: the top-level trace array's files, the global files, and ``instances/``.

    tree = build_tree(kernel)              # tracesim.kernel_model.kernel.Kernel
    tree.cat("/trace"); tree.echo("/events/net/netif_receive_skb/enable", "1")

Global files (only at the top): README, available_events, the function lists, kprobe_events,
kprobe_profile, dynamic_events, printk_formats, saved_cmdlines,
saved_cmdlines_size, saved_tgids, tracing_thresh and instances/.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tracesim.kernel_model.trace.ftrace_profile import function_profile
from tracesim.kernel_model.trace.functions import enabled_functions_text
from tracesim.kernel_model.trace.stack_tracer import stack_tracer
from tracesim.tracefs.context import TreeContext
from tracesim.tracefs.errors import kernel_call
from tracesim.tracefs.handles import seq_opener
from tracesim.tracefs.instance import InstanceFiles
from tracesim.tracefs.lists import FunctionFilter
from tracesim.tracefs.nodes import MODE_DIR, MODE_RO, MODE_ROOT, MODE_RW, Dir, DirOps, File, Node
from tracesim.tracefs.parse import kstrtoul_from_user
from tracesim.tracefs.readme import README
from tracesim.tracefs.tree import Tree

DYN_FTRACE_RECORD = 16            # bytes per dyn_ftrace record


class TracefsTree(Tree):
    """A tree over a modelled kernel; ``ctx`` carries the kernel and the BPF hooks."""

    def __init__(self, root: Dir, ctx: TreeContext, top: InstanceFiles) -> None:
        super().__init__(root)
        self.ctx = ctx
        self.top = top


def build_tree(kernel: Any) -> TracefsTree:
    ctx = TreeContext(kernel)
    top = InstanceFiles(ctx, ctx.tracing.top)
    nodes = top.nodes()
    nodes.update(_global_files(ctx))
    nodes["instances"] = _instances_dir(ctx)
    return TracefsTree(Dir(MODE_ROOT, nodes), ctx, top)


def _seq(ctx: TreeContext, mode: int, show: Callable[[], str] | None,
         store: Callable[[str], Any] | None = None,
         on_trunc: Callable[[], None] | None = None) -> File:
    return File(mode, seq_opener(show, store, on_trunc, ctx.lock))


def _global_files(ctx: TreeContext) -> dict[str, Node]:
    tracing = ctx.tracing
    kprobes = tracing.kprobes
    dynevents = tracing.dynevents

    def functions_text() -> str:
        return "".join(f"{s.name} [{s.module}]\n" if s.module else f"{s.name}\n"
                       for s in ctx.traceable_symbols())

    def functions_addrs_text() -> str:
        return "".join(f"{s.addr:x} {s.name}" + (f" [{s.module}]\n" if s.module else "\n")
                       for s in ctx.traceable_symbols())

    def dyn_ftrace_text() -> str:
        count = len(ctx.traceable_symbols())
        per_page = 4096 // DYN_FTRACE_RECORD
        return f"{count} pages:{-(-count // per_page)} groups: 1\n"

    def set_thresh(text: str) -> None:
        value = kstrtoul_from_user(text)       # tracing_nsecs_write: µs in, ns kept
        with ctx.lock:
            tracing.tracing_thresh = value * 1000

    def set_cmdlines_size(text: str) -> None:
        tracing.set_saved_cmdlines_size(kstrtoul_from_user(text))

    return {
        "README": _seq(ctx, MODE_RO, lambda: README),
        "available_events": _seq(ctx, MODE_RO,
                                 lambda: "".join(e + "\n" for e in tracing.available_events())),
        "available_filter_functions": _seq(ctx, MODE_RO, functions_text),
        "available_filter_functions_addrs": _seq(ctx, MODE_RO, functions_addrs_text),
        "dyn_ftrace_total_info": _seq(ctx, MODE_RO, dyn_ftrace_text),
        "enabled_functions": _seq(ctx, MODE_RO, lambda: enabled_functions_text(tracing)),
        "touched_functions": _seq(ctx, MODE_RO, lambda: ""),
        "kprobe_events": _seq(ctx, MODE_RW, kprobes.text,
                              lambda t: kprobes.write(t, False),
                              lambda: kprobes.write("", True)),
        "kprobe_profile": _seq(ctx, MODE_RO, kprobes.profile_text),
        "dynamic_events": _seq(ctx, MODE_RW, lambda: dynevents.text() + tracing.synth.dynamic_text(),
                               lambda t: _dynamic_write(tracing, t),
                               lambda: _dynamic_clear(tracing)),
        "synthetic_events": _seq(ctx, MODE_RW, tracing.synth.text,
                                 lambda t: tracing.synth.write(t, False),
                                 lambda: tracing.synth.write("", True)),
        "printk_formats": _seq(ctx, MODE_RO, tracing.printk_formats_text),
        "saved_cmdlines": _seq(ctx, MODE_RO, tracing.saved_cmdlines_text),
        "saved_cmdlines_size": _seq(ctx, MODE_RW, lambda: f"{tracing.saved_cmdlines_size}\n",
                                    set_cmdlines_size),
        "saved_tgids": _seq(ctx, MODE_RO, tracing.saved_tgids_text),
        "tracing_thresh": _seq(ctx, MODE_RW,
                               lambda: f"{getattr(tracing, 'tracing_thresh', 0) // 1000}\n",
                               set_thresh),
        **_profiler_and_stack_files(ctx),
    }


def _profiler_and_stack_files(ctx: TreeContext) -> dict[str, Node]:
    """function_profile_enabled, trace_stat/function<cpu>, and the stack tracer's files."""
    tracing = ctx.tracing
    profile = function_profile(tracing)
    stack = stack_tracer(tracing)

    def set_profile(text: str) -> None:
        value = kstrtoul_from_user(text)    # ftrace_profile_write: any non-zero enables
        with ctx.lock:
            profile.set_enabled(bool(value))

    def set_max_size(text: str) -> None:
        value = kstrtoul_from_user(text)
        with ctx.lock:
            stack.set_max_size(value)

    stack_filter = FunctionFilter(ctx.traceable_functions, "#### all functions enabled ####\n",
                                  stack.set_filter)
    return {
        "function_profile_enabled": _seq(ctx, MODE_RW, lambda: f"{int(profile.enabled)}\n",
                                         set_profile),
        "trace_stat": Dir(MODE_DIR, {f"function{cpu}": _seq(ctx, MODE_RO,
                                                             lambda cpu=cpu: profile.text(cpu))
                                     for cpu in range(ctx.ncpus)}),
        "stack_trace": _seq(ctx, MODE_RO, stack.text),
        "stack_max_size": _seq(ctx, MODE_RW, lambda: f"{stack.max_size}\n", set_max_size),
        "stack_trace_filter": File(MODE_RW, stack_filter.open),
    }


def _is_synth_line(line: str) -> bool:
    head = line.split(None, 1)[0] if line.split() else ""
    return head.startswith(("s:", "!s:", "-:synthetic/"))


def _dynamic_write(tracing: Any, text: str) -> None:
    """Each line goes to its kind: ``s:``/``-:synthetic/`` to synthetic events, the rest to
    the probe events (dynamic_events.py parses and routes those)."""
    for line in text.split("\n"):
        cmd = line.split("#", 1)[0].strip()
        if cmd and _is_synth_line(cmd):
            tracing.synth.dynamic_command(cmd)
        elif cmd:
            tracing.dynevents.write(cmd, False)


def _dynamic_clear(tracing: Any) -> None:
    tracing.dynevents.write("", True)
    tracing.synth.write("", True)


def _instances_dir(ctx: TreeContext) -> Dir:
    tracing = ctx.tracing
    built: dict[str, tuple[Any, Dir]] = {}

    def entries() -> dict[str, Node]:
        out: dict[str, Node] = {}
        for name in tracing.instance_names():
            array = tracing.instance(name)
            cached = built.get(name)
            if cached is None or cached[0] is not array:
                cached = (array, Dir(MODE_DIR, InstanceFiles(ctx, array).nodes()))
                built[name] = cached
            out[name] = cached[1]
        return out

    def mkdir(name: str) -> None:
        with ctx.lock:
            kernel_call(tracing.create_instance)(name)

    def rmdir(name: str) -> None:
        with ctx.lock:
            kernel_call(tracing.remove_instance)(name)
            built.pop(name, None)

    return Dir(MODE_DIR, entries, ops=DirOps(mkdir, rmdir))
