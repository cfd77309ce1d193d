"""Nodes of the tree: directories and files with tracefs' modes, link counts and times.

A directory lists its children either from a fixed dict or from a function called at each
lookup (``events/`` grows when a kprobe is defined; ``instances/`` when one is made), so the tree
never caches something the kernel model has changed. A file is a mode plus an ``opener`` that
makes a fresh :class:`~tracesim.tracefs.handles.Handle` (the per-open state) for each open.
"""
from __future__ import annotations

import errno
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from tracesim.tracefs.errors import FsError

if TYPE_CHECKING:
    from tracesim.tracefs.handles import Handle

# Modes as a 6.18 tracefs shows them (ls_root / ls_sub captures).
MODE_ROOT = 0o700
MODE_DIR = 0o750          # tracefs_create_dir: per_cpu, cpuN, options, instances, instances/NAME
MODE_EVENTS_DIR = 0o755   # eventfs: events/ and everything below
MODE_RW = 0o640           # TRACE_MODE_WRITE
MODE_RO = 0o440           # TRACE_MODE_READ
MODE_WO = 0o200           # free_buffer
MODE_MARKER = 0o220       # trace_marker, trace_marker_raw
NAME_MAX = 255            # simple_lookup refuses longer names with ENAMETOOLONG


@dataclass
class Attr:
    """What ``stat`` shows for a node: every tracefs file has size 0."""

    mode: int
    nlink: int
    mtime: float


class File:
    """A regular file: its mode and how to open it (``opener(flags) -> Handle``)."""

    def __init__(self, mode: int, opener: Callable[[int], Handle]) -> None:
        self.mode = mode
        self.opener = opener
        self.mtime = time.time()

    def attr(self) -> Attr:
        return Attr(stat.S_IFREG | self.mode, 1, self.mtime)


Children = Union[Mapping[str, "Node"], Callable[[], Mapping[str, "Node"]]]  # noqa: UP007 - forward ref


@dataclass
class DirOps:
    """What ``mkdir``/``rmdir`` inside a directory do (only ``instances/`` has them)."""

    mkdir: Callable[[str], None]
    rmdir: Callable[[str], None]


class Dir:
    """A directory. ``children`` is a dict, or a function returning the current dict.

    ``eventfs`` directories (``events/`` and below) report a link count of 1 as 6.18's eventfs
    does; the others report 2 + the number of subdirectories, like any tracefs directory.
    """

    def __init__(self, mode: int, children: Children | None = None, *, eventfs: bool = False,
                 ops: DirOps | None = None) -> None:
        self.mode = mode
        self._children: Children = children if children is not None else {}
        self.eventfs = eventfs
        self.ops = ops
        self.mtime = time.time()

    def entries(self) -> Mapping[str, Node]:
        children = self._children
        return children() if callable(children) else children

    def lookup(self, name: str) -> Node:
        node = self.entries().get(name)
        if node is None:
            self.check_name(name)
            raise FsError(errno.ENOENT)
        return node

    def check_name(self, name: str) -> None:
        """tracefs directories look names up with simple_lookup, which refuses a name longer
        than NAME_MAX bytes (eventfs's own lookup just finds nothing: ENOENT)."""
        if not self.eventfs and len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise FsError(errno.ENAMETOOLONG)

    def attr(self) -> Attr:
        if self.eventfs:
            nlink = 1
        else:
            nlink = 2 + sum(1 for n in self.entries().values() if isinstance(n, Dir))
        return Attr(stat.S_IFDIR | self.mode, nlink, self.mtime)


Node = Union[File, Dir]  # noqa: UP007 - named by the string forward refs above
