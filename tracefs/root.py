"""The whole tree: the top-level trace array's files, the global files, and ``instances/``.

    tree = build_tree(kernel)              # kernel_model.kernel.Kernel
    tree.cat("/trace"); tree.echo("/events/net/netif_receive_skb/enable", "1")

Global files (only at the top): README, available_events, the function lists, kprobe_events,
kprobe_profile, dynamic_events, uprobe_events/uprobe_profile, printk_formats, saved_cmdlines,
saved_cmdlines_size, saved_tgids, tracing_thresh and instances/.
"""
from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from tracefs.context import TreeContext
from tracefs.errors import FsError, kernel_call
from tracefs.handles import seq_opener
from tracefs.instance import InstanceFiles
from tracefs.nodes import MODE_DIR, MODE_RO, MODE_ROOT, MODE_RW, Dir, DirOps, File, Node
from tracefs.parse import kstrtoul_from_user
from tracefs.readme import README
from tracefs.tree import Tree

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
    thresh = {"value": 0}

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
        thresh["value"] = kstrtoul_from_user(text)

    def set_cmdlines_size(text: str) -> None:
        tracing.set_saved_cmdlines_size(kstrtoul_from_user(text))

    def uprobe_write(text: str) -> None:
        for line in _command_lines(text):
            _uprobe_command(tracing.top, line)

    return {
        "README": _seq(ctx, MODE_RO, lambda: README),
        "available_events": _seq(ctx, MODE_RO,
                                 lambda: "".join(e + "\n" for e in tracing.available_events())),
        "available_filter_functions": _seq(ctx, MODE_RO, functions_text),
        "available_filter_functions_addrs": _seq(ctx, MODE_RO, functions_addrs_text),
        "dyn_ftrace_total_info": _seq(ctx, MODE_RO, dyn_ftrace_text),
        "enabled_functions": _seq(ctx, MODE_RO, lambda: ""),
        "touched_functions": _seq(ctx, MODE_RO, lambda: ""),
        "kprobe_events": _seq(ctx, MODE_RW, kprobes.text,
                              lambda t: kprobes.write(t, False),
                              lambda: kprobes.write("", True)),
        "kprobe_profile": _seq(ctx, MODE_RO, kprobes.profile_text),
        "dynamic_events": _seq(ctx, MODE_RW, _dynamic_text(kprobes, tracing.synth),
                               lambda t: _dynamic_write(tracing, t),
                               lambda: _dynamic_clear(tracing)),
        "synthetic_events": _seq(ctx, MODE_RW, tracing.synth.text,
                                 lambda t: tracing.synth.write(t, False),
                                 lambda: tracing.synth.write("", True)),
        "uprobe_events": _seq(ctx, MODE_RW, lambda: "", uprobe_write, lambda: None),
        "uprobe_profile": _seq(ctx, MODE_RO, lambda: ""),
        "printk_formats": _seq(ctx, MODE_RO, tracing.printk_formats_text),
        "saved_cmdlines": _seq(ctx, MODE_RO, tracing.saved_cmdlines_text),
        "saved_cmdlines_size": _seq(ctx, MODE_RW, lambda: f"{tracing.saved_cmdlines_size}\n",
                                    set_cmdlines_size),
        "saved_tgids": _seq(ctx, MODE_RO, tracing.saved_tgids_text),
        "tracing_thresh": _seq(ctx, MODE_RW, lambda: f"{thresh['value']}\n", set_thresh),
    }


UPROBE_MAX_ARGS = 128        # MAX_TRACE_ARGS


def _command_lines(text: str) -> list[str]:
    """trace_parse_run_command: one command a line, ``#`` starts a comment; a NUL byte cuts
    the buffer short of the write's end, which the kernel refuses as a line too long."""
    if "\0" in text:
        raise FsError(errno.EINVAL)
    return [line.split("#", 1)[0] for line in text.split("\n")]


def _uprobe_command(top: Any, line: str) -> None:
    """One ``uprobe_events`` command (create_or_delete_trace_uprobe), checked in the kernel's
    order: malformed lines are EINVAL (its -ECANCELED), a removal finds no probe (ENOENT),
    and a well-formed ``p|r[:[GRP/]EVENT] PATH:OFFSET ...`` names a file the modelled
    machine does not have (ENOENT, "File not found" in error_log): there is no user space."""
    argv = line.split()
    if not argv:
        return
    if line.startswith("-"):                      # dyn_event_release
        head = argv[0]
        name = head[2:] if head.startswith("-:") else None
        if name is None or ("/" not in name and not name):
            raise FsError(errno.EINVAL)
        raise FsError(errno.ENOENT)
    if argv[0][0] not in "pr" or len(argv) < 2 or "/" not in argv[1]:
        raise FsError(errno.EINVAL)
    if len(argv) - 2 > UPROBE_MAX_ARGS:
        raise FsError(errno.E2BIG)
    _path, colon, offset = argv[1].rpartition(":")
    if not colon or not offset[:1].isdigit():
        raise FsError(errno.EINVAL)
    top.log_error("trace_uprobe", " ".join(argv), "File not found", len(argv[0]) + 1)
    raise FsError(errno.ENOENT)


def _dynamic_text(kprobes: Any, synth: Any) -> Callable[[], str]:
    """dynamic_events lists every dynamic event: the kprobe events, then synthetic events."""
    probes = getattr(kprobes, "dynamic_text", kprobes.text)
    return lambda: probes() + synth.dynamic_text()


def _is_synth_line(line: str) -> bool:
    head = line.split(None, 1)[0] if line.split() else ""
    return head.startswith("s:") or head.startswith("-:synthetic/")


def _dynamic_write(tracing: Any, text: str) -> None:
    """Each line goes to its kind: ``s:``/``-:synthetic/`` to synthetic events, the rest to
    the probe events."""
    for line in text.split("\n"):
        cmd = line.split("#", 1)[0].strip()
        if cmd and _is_synth_line(cmd):
            tracing.synth.dynamic_command(cmd)
        elif cmd:
            tracing.kprobes.write(cmd, False)


def _dynamic_clear(tracing: Any) -> None:
    tracing.kprobes.write("", True)
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
