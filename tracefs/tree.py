"""The in-process filesystem: path lookup and the file operations every client goes through.

The FUSE adapter calls these methods one to one; tests and the demo call them directly (with
the ``cat``/``echo`` helpers below mimicking the shell), so both see the same semantics.
"""
from __future__ import annotations

import errno
import os
import time

from tracesim.tracefs.errors import FsError
from tracesim.tracefs.handles import Handle, truncating
from tracesim.tracefs.nodes import Attr, Dir, Node


class Tree:
    """A tracefs tree rooted at ``root``."""

    def __init__(self, root: Dir) -> None:
        self.root = root

    # -- lookup --------------------------------------------------------------------------------
    def resolve(self, path: str) -> Node:
        node: Node = self.root
        for part in path.split("/"):
            if not part or part == ".":
                continue
            if not isinstance(node, Dir):
                raise FsError(errno.ENOTDIR)
            node = node.lookup(part)
        return node

    def _parent(self, path: str) -> tuple[Dir, str]:
        head, _, name = path.rstrip("/").rpartition("/")
        parent = self.resolve(head)
        if not isinstance(parent, Dir):
            raise FsError(errno.ENOTDIR)
        if not name:
            raise FsError(errno.EEXIST)
        return parent, name

    # -- operations ----------------------------------------------------------------------------
    def getattr(self, path: str) -> Attr:
        return self.resolve(path).attr()

    def readdir(self, path: str) -> list[str]:
        node = self.resolve(path)
        if not isinstance(node, Dir):
            raise FsError(errno.ENOTDIR)
        return sorted(node.entries())

    def open(self, path: str, flags: int) -> Handle:
        node = self.resolve(path)
        if isinstance(node, Dir):
            raise FsError(errno.EISDIR)
        handle = node.opener(flags)
        if truncating(flags):
            node.mtime = time.time()   # the VFS truncates on O_TRUNC, which stamps mtime
        return handle

    def create(self, path: str) -> Handle:
        """tracefs has no ``create``: new files cannot be made (the VFS says EACCES)."""
        parent, name = self._parent(path)
        parent.check_name(name)
        raise FsError(errno.EACCES)

    def truncate(self, path: str) -> None:
        """truncate(2)/ftruncate(2): tracefs_setattr is simple_setattr on a size-0 inode, so
        nothing changes but the times - not even on ``trace``, whose buffer only an open with
        O_TRUNC clears (tracing_open)."""
        node = self.resolve(path)
        if isinstance(node, Dir):
            raise FsError(errno.EISDIR)
        node.mtime = time.time()

    # unlink, rename, link, symlink, mknod: tracefs directories have none of these inode
    # operations, so the VFS answers EPERM (vfs_unlink & co.) once its name checks pass.
    def unlink(self, path: str) -> None:
        node = self.resolve(path)          # ENOENT first; unlink of a directory is EISDIR
        if isinstance(node, Dir):
            raise FsError(errno.EISDIR)
        raise FsError(errno.EPERM)

    def rename(self, old: str, new: str) -> None:
        self.resolve(old)
        parent, name = self._parent(new)
        parent.check_name(name)
        raise FsError(errno.EPERM)

    def link(self, path: str) -> None:
        """A new name ``path`` for an existing file (link(2), symlink(2), mknod(2))."""
        parent, name = self._parent(path)
        parent.check_name(name)
        if name in parent.entries():
            raise FsError(errno.EEXIST)
        raise FsError(errno.EPERM)

    def mkdir(self, path: str) -> None:
        parent, name = self._parent(path)
        parent.check_name(name)
        if name in parent.entries():
            raise FsError(errno.EEXIST)
        if parent.ops is None:
            raise FsError(errno.EPERM)
        parent.ops.mkdir(name)

    def rmdir(self, path: str) -> None:
        parent, name = self._parent(path)
        node = parent.lookup(name)
        if not isinstance(node, Dir):
            raise FsError(errno.ENOTDIR)
        if parent.ops is None:
            raise FsError(errno.EPERM)
        parent.ops.rmdir(name)

    # -- shell-like helpers (in-process use and tests) -----------------------------------------
    def cat(self, path: str, *, nonblock: bool = False, chunk: int = 131072,
            limit: int | None = None) -> bytes:
        """Read a file to its end like ``cat`` (``limit`` stops after that many bytes).

        With ``nonblock``, a consuming file that runs dry ends the read (EAGAIN only when
        there was nothing at all)."""
        handle = self.open(path, os.O_RDONLY | (os.O_NONBLOCK if nonblock else 0))
        out = bytearray()
        try:
            while limit is None or len(out) < limit:
                try:
                    data = handle.read(chunk, len(out))
                except FsError as err:
                    if err.errno == errno.EAGAIN and out:
                        break
                    raise
                if not data:
                    break
                out += data
        finally:
            handle.release()
        return bytes(out)

    def read_text(self, path: str) -> str:
        return self.cat(path).decode("utf-8", "surrogateescape")

    def echo(self, path: str, text: str | bytes, *, append: bool = False,
             newline: bool = True) -> None:
        """``echo TEXT > path`` (or ``>>`` with ``append``): written as stdio does (a short write
        is followed by another with the rest, as the kernel's word-at-a-time files expect),
        then closed."""
        data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
        if newline:
            data += b"\n"
        flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
        handle = self.open(path, flags)
        try:
            done = 0
            while done < len(data):
                taken = handle.write(data[done:], done)
                if taken <= 0:
                    break
                done += taken
            handle.flush()
        finally:
            handle.release()
