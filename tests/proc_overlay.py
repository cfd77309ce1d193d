"""The model's files outside tracefs, served where a test puts them over the host's.

The ftrace selftests read kernel files no mount of the model provides: the stack tracer's
``/proc/sys/kernel/stack_tracer_enabled``, ``/proc/kallsyms`` (a probe at a function's address,
a data symbol), ``/proc/version``, ``/proc/sys/debug/kprobes-optimization`` and debugfs's
``kprobes/list``. ``python tests/proc_overlay.py DIR MOUNT`` serves on DIR (over FUSE, until
unmounted) one entry per path in ``BINDS``, each the model's, read and written through the
control socket of the tracesim mount MOUNT (``cat PATH``, ``sysctl NAME=VALUE``, done before the
write returns):

* ``sys_kernel``, ``sys_debug``: the host's ``/proc/sys/kernel`` and ``/proc/sys/debug`` as they
  are (reads and writes go to the real files), plus the model's sysctl files in them;
* ``debugfs``: the model's debugfs: ``kprobes/list``, ``kprobes/blacklist``, ``kprobes/enabled``;
* ``kallsyms``, ``version``: the model's ``/proc/kallsyms`` and ``/proc/version``.

A test bind-mounts each entry over its path in a private mount namespace (``unshare -m``,
``mount_commands``) and runs the selftests there, so the host's own ``/proc`` is untouched.
"""
from __future__ import annotations

import errno
import os
import shlex
import stat
import sys
import threading
from typing import Any

import fuse
from tracesim.tools.ctl_socket import request

# the served entry -> the host path a test binds it over
BINDS: dict[str, str] = {
    "sys_kernel": "/proc/sys/kernel",
    "sys_debug": "/proc/sys/debug",
    "debugfs": "/sys/kernel/debug",
    "kallsyms": "/proc/kallsyms",
    "version": "/proc/version",
}
# directories that show a host directory with the model's sysctl files added: entry -> (host
# directory, {file: sysctl key})
MIXED: dict[str, tuple[str, dict[str, str]]] = {
    "sys_kernel": ("/proc/sys/kernel", {"stack_tracer_enabled": "kernel.stack_tracer_enabled"}),
    "sys_debug": ("/proc/sys/debug", {"kprobes-optimization": "debug.kprobes-optimization"}),
}
# the model's read-only files: served path -> the model's path (``cat``)
MODEL_FILES: dict[str, str] = {
    "/kallsyms": "/proc/kallsyms",
    "/version": "/proc/version",
    "/debugfs/kprobes/list": "/sys/kernel/debug/kprobes/list",
    "/debugfs/kprobes/blacklist": "/sys/kernel/debug/kprobes/blacklist",
    "/debugfs/kprobes/enabled": "/sys/kernel/debug/kprobes/enabled",
}
MODEL_DIRS = ("/", "/debugfs", "/debugfs/kprobes")


def mount_commands(where: str) -> str:
    """The shell commands that bind the entries served on ``where`` over the host's paths
    (each only where that path exists)."""
    return " && ".join(
        f"{{ [ ! -e {shlex.quote(target)} ] || mount --bind {shlex.quote(where + '/' + name)} "
        f"{shlex.quote(target)}; }}" for name, target in BINDS.items())


class Overlay(fuse.Operations):
    def __init__(self, mount: str) -> None:
        self.mount = mount
        self._mutex = threading.Lock()
        self.handles: dict[int, Any] = {}    # fh -> real fd (int), sysctl key or model text
        self.next_fh = 1

    def _where(self, path: str) -> tuple[str, str | None, str | None]:
        """("real", host path, None), ("sysctl", None, key), ("model", None, model path),
        ("dir", None, None), or raises ENOENT."""
        if path in MODEL_DIRS:
            return "dir", None, None
        if path in MODEL_FILES:
            return "model", None, MODEL_FILES[path]
        top, _, rest = path[1:].partition("/")
        if top in MIXED:
            real, keys = MIXED[top]
            if rest in keys:
                return "sysctl", None, keys[rest]
            return "real", real + ("/" + rest if rest else ""), None
        raise fuse.FuseOSError(errno.ENOENT)

    def _ctl(self, argv: list[str]) -> str:
        status, text = request(self.mount, argv)
        if status:
            raise fuse.FuseOSError(errno.EINVAL)
        return text

    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        kind, real, _ = self._where(path)
        if kind == "dir":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}
        if kind == "model":
            return {"st_mode": stat.S_IFREG | 0o444, "st_nlink": 1, "st_size": 0}
        if kind == "sysctl":
            return {"st_mode": stat.S_IFREG | 0o644, "st_nlink": 1, "st_size": 0}
        try:
            st = os.lstat(real)                  # type: ignore[arg-type]
        except OSError as exc:
            raise fuse.FuseOSError(exc.errno or errno.EIO) from None
        return {key: getattr(st, key) for key in (
            "st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime", "st_mtime",
            "st_ctime")}

    def readdir(self, path: str, fh: Any) -> list[str]:
        kind, real, _ = self._where(path)
        if kind == "dir":
            prefix = path.rstrip("/") + "/"
            names = {p[len(prefix):].split("/")[0] for p in (*MODEL_FILES, *MODEL_DIRS)
                     if p.startswith(prefix) and len(p) > len(prefix)}
            if path == "/":
                names |= set(MIXED)
            return [".", "..", *sorted(names)]
        try:
            names = os.listdir(real)             # type: ignore[arg-type]
        except OSError as exc:
            raise fuse.FuseOSError(exc.errno or errno.EIO) from None
        top, _, rest = path[1:].partition("/")
        extra = [n for n in MIXED[top][1] if n not in names] if not rest else []
        return [".", "..", *names, *extra]

    def open(self, path: str, fi: Any) -> int:
        kind, real, key = self._where(path)
        handle: Any
        if kind == "model":
            if fi.flags & (os.O_WRONLY | os.O_RDWR):
                raise fuse.FuseOSError(errno.EACCES)
            handle = self._ctl(["cat", key]).encode()      # type: ignore[list-item]
        elif kind == "sysctl":
            handle = key
        elif kind == "real":
            try:
                handle = os.open(real, fi.flags & ~os.O_CREAT)   # type: ignore[arg-type]
            except OSError as exc:
                raise fuse.FuseOSError(exc.errno or errno.EIO) from None
        else:
            raise fuse.FuseOSError(errno.EISDIR)
        with self._mutex:
            fi.fh = self.next_fh
            self.next_fh += 1
            self.handles[fi.fh] = handle
        fi.direct_io = 1
        return 0

    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        handle = self.handles[fi.fh]
        if isinstance(handle, bytes):
            return handle[offset:offset + size]
        if isinstance(handle, str):
            text = self._ctl(["sysctl", handle])
            return (text.rsplit("=", 1)[-1].strip() + "\n").encode()[offset:offset + size]
        try:
            return os.pread(handle, size, offset)
        except OSError as exc:
            raise fuse.FuseOSError(exc.errno or errno.EIO) from None

    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        handle = self.handles[fi.fh]
        if isinstance(handle, str):
            self._ctl(["sysctl", f"{handle}={data.decode().strip()}"])
            return len(data)
        if isinstance(handle, bytes):
            raise fuse.FuseOSError(errno.EBADF)
        try:
            return os.write(handle, data)
        except OSError as exc:
            raise fuse.FuseOSError(exc.errno or errno.EIO) from None

    def truncate(self, path: str, length: int, fh: Any = None) -> None:
        return None                          # proc files ignore O_TRUNC

    def release(self, path: str, fi: Any) -> None:
        with self._mutex:
            handle = self.handles.pop(fi.fh, None)
        if isinstance(handle, int):
            os.close(handle)


def main() -> None:
    target, mount = sys.argv[1], sys.argv[2]
    fuse.FUSE(Overlay(mount), target, raw_fi=True, foreground=True, nothreads=False,
              fsname="proc_overlay", atomic_o_trunc=True, entry_timeout=0,
              attr_timeout=0, negative_timeout=0)


if __name__ == "__main__":
    main()
