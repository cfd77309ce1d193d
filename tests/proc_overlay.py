"""A stand-in for the host's ``/proc/sys/kernel`` holding the model's sysctl.

The ftrace selftests switch the stack tracer with ``echo 1 > /proc/sys/kernel/stack_tracer_enabled``,
a path no mount of the model can provide. ``python tests/proc_sys_overlay.py DIR MOUNT`` serves
on DIR (over FUSE, until unmounted) every entry of the host's ``/proc/sys/kernel`` as it is
(reads and writes go to the real files), plus ``stack_tracer_enabled``, whose reads and writes
are the model's ``sysctl kernel.stack_tracer_enabled`` on the tracesim mount MOUNT (its control
socket), done before the write returns. A test bind-mounts DIR over ``/proc/sys/kernel`` in a
private mount namespace (``unshare -m``) and runs the selftests there, so the host's own
``/proc`` is untouched.
"""
from __future__ import annotations

import errno
import os
import stat
import sys
import threading
from typing import Any

import fuse
from tracesim.tools.ctl_socket import request

REAL = "/proc/sys/kernel"
NAME = "stack_tracer_enabled"
KEY = "kernel.stack_tracer_enabled"


class Overlay(fuse.Operations):
    def __init__(self, mount: str) -> None:
        self.mount = mount
        self._mutex = threading.Lock()
        self.fds: dict[int, int] = {}        # fh -> real fd (0: the sysctl)
        self.next_fh = 1

    @staticmethod
    def _real(path: str) -> str:
        return REAL + path if path != "/" else REAL

    def _sysctl(self, value: str | None = None) -> str:
        arg = KEY if value is None else f"{KEY}={value}"
        status, text = request(self.mount, ["sysctl", arg])
        if status:
            raise fuse.FuseOSError(errno.EINVAL)
        return text.rsplit("=", 1)[-1].strip() + "\n"

    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        if path == "/" + NAME:
            return {"st_mode": stat.S_IFREG | 0o644, "st_nlink": 1, "st_size": 0}
        try:
            st = os.lstat(self._real(path))
        except OSError as exc:
            raise fuse.FuseOSError(exc.errno or errno.EIO) from None
        return {key: getattr(st, key) for key in (
            "st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime", "st_mtime",
            "st_ctime")}

    def readdir(self, path: str, fh: Any) -> list[str]:
        try:
            names = os.listdir(self._real(path))
        except OSError as exc:
            raise fuse.FuseOSError(exc.errno or errno.EIO) from None
        extra = [NAME] if path == "/" and NAME not in names else []
        return [".", "..", *names, *extra]

    def open(self, path: str, fi: Any) -> int:
        if path == "/" + NAME:
            fd = 0
        else:
            try:
                fd = os.open(self._real(path), fi.flags & ~os.O_CREAT)
            except OSError as exc:
                raise fuse.FuseOSError(exc.errno or errno.EIO) from None
        with self._mutex:
            fi.fh = self.next_fh
            self.next_fh += 1
            self.fds[fi.fh] = fd
        fi.direct_io = 1
        return 0

    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        fd = self.fds[fi.fh]
        if not fd:
            return self._sysctl().encode()[offset:offset + size]
        try:
            return os.pread(fd, size, offset)
        except OSError as exc:
            raise fuse.FuseOSError(exc.errno or errno.EIO) from None

    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        fd = self.fds[fi.fh]
        if not fd:
            self._sysctl(data.decode().strip())
            return len(data)
        try:
            return os.write(fd, data)
        except OSError as exc:
            raise fuse.FuseOSError(exc.errno or errno.EIO) from None

    def truncate(self, path: str, length: int, fh: Any = None) -> None:
        return None                          # proc files ignore O_TRUNC

    def release(self, path: str, fi: Any) -> None:
        with self._mutex:
            fd = self.fds.pop(fi.fh, 0)
        if fd:
            os.close(fd)


def main() -> None:
    target, mount = sys.argv[1], sys.argv[2]
    fuse.FUSE(Overlay(mount), target, raw_fi=True, foreground=True, nothreads=False,
              fsname="proc_sys_overlay", atomic_o_trunc=True, entry_timeout=0,
              attr_timeout=0, negative_timeout=0)


if __name__ == "__main__":
    main()
