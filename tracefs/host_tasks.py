"""The mount's callers as tasks of the model (``tracesim mount --host-tasks``, the default).

Each FUSE request carries the calling process's pid (``fuse_get_context``). The first request of
a pid makes a model task with that pid and the process's comm (``/proc/PID/comm``); when its
parent (``/proc/PID/stat``) is already a task of the model, the new task is forked from it
(``sched_process_fork``, so ``options/event-fork`` follows real shells into their children).
Then each ``open``/``read``/``write``/``flush`` (which every close(2) sends) on a tracefs file
runs in the model as that task doing ``openat``/``read``/``write``/``close``: switched in on
CPU 0, the syscall events and the real functions (``__x64_sys_read`` → ``ksys_read`` →
``vfs_read`` ...) through their kprobe sites, the tree's own work innermost, then back to sleep.
So ``cat trace`` with a kprobe on ``vfs_read`` shows cat's own reads, as on Linux.

Reads of the consuming streams (``trace_pipe``, ``trace_pipe_raw``) run as the caller without
syscall events: a reader that is woken by the events of its own read would never block.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

O_ACCMODE = 0o3
STREAMS = ("trace_pipe", "trace_pipe_raw")
# the path string the task passes to openat (on its stack)
PATH_ADDR = 0x7ffd3a1c4f60


def proc_comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip() or f"pid{pid}"
    except OSError:
        return f"pid{pid}"


def proc_ppid(pid: int) -> int:
    """The parent pid from ``/proc/PID/stat`` (field 4, after the parenthesised comm)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
        return int(stat[stat.rindex(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


class HostTasks:
    """Host pid → model task, and the syscalls those tasks make on the tree's files."""

    def __init__(self, kernel: Any, comm_of: Callable[[int], str] = proc_comm,
                 ppid_of: Callable[[int], int] = proc_ppid) -> None:
        self.kernel = kernel
        self.comm_of = comm_of
        self.ppid_of = ppid_of
        self.fds: dict[int, int] = {}           # fh -> fd number in its task
        self._next_fd: dict[int, int] = {}      # pid -> next fd

    def task(self, pid: int) -> Any:
        """The model task of host process ``pid`` (made, or forked from its parent, once)."""
        machine = self.kernel.machine
        task = machine.tasks.get(pid)
        if task is not None:
            return task
        comm = self.comm_of(pid)
        parent = machine.tasks.get(self.ppid_of(pid))
        if parent is not None and parent.pid >= 1000:
            with self.kernel.sched.running(parent):
                task = self.kernel.sched.fork(comm, cpu=0, pid=pid)
        else:
            task = machine.spawn(comm, pid=pid)
        return task

    def _as(self, pid: int, body: Callable[[Any], T]) -> T:
        kernel = self.kernel
        with kernel.lock:
            task = self.task(pid)
            with kernel.machine.on_cpu(0), kernel.sched.running(task):
                return body(task)

    @staticmethod
    def _returning(work: Callable[[], T], out: list, ret: Callable[[T], int]) -> Callable[[], int]:
        """The syscall's body: ``work()``'s result kept in ``out``, its return value (a failing
        file operation returns -errno and the error is raised again after sys_exit)."""
        def body() -> int:
            try:
                out.append(work())
            except OSError as exc:
                out.append(exc)
                return -(exc.errno or 5)
            return ret(out[0])
        return body

    @staticmethod
    def _result(out: list) -> Any:
        if isinstance(out[0], OSError):
            raise out[0]
        return out[0]

    def openat(self, pid: int, path: str, flags: int, do_open: Callable[[], int]) -> int:
        """``openat(AT_FDCWD, path, flags)`` by ``pid``; ``do_open()`` returns the fh."""
        fd = self._next_fd.get(pid, 3)
        out: list = []
        body = self._returning(do_open, out, lambda fh: fd)
        self._as(pid, lambda t: self.kernel.syscalls.openat(PATH_ADDR, flags, body))
        fh = self._result(out)
        self._next_fd[pid] = fd + 1
        self.fds[fh] = fd
        return fh

    def read(self, pid: int, fh: int, path: str, size: int, do_read: Callable[[], bytes]) -> bytes:
        if path.rsplit("/", 1)[-1] in STREAMS:
            return do_read()
        out: list = []
        body = self._returning(do_read, out, len)
        self._as(pid, lambda t: self.kernel.syscalls.read(self.fds.get(fh, 3), size, body))
        return self._result(out)

    def write(self, pid: int, fh: int, size: int, do_write: Callable[[], int]) -> int:
        out: list = []
        body = self._returning(do_write, out, int)
        self._as(pid, lambda t: self.kernel.syscalls.write(self.fds.get(fh, 3), size, body))
        return self._result(out)

    def close(self, pid: int, fh: int, do_close: Callable[[], None]) -> None:
        """``close(fd)`` by ``pid``: FUSE's flush, sent on every close(2) of the file."""
        fd = self.fds.get(fh, 3)
        out: list = []
        body = self._returning(do_close, out, lambda _: 0)
        self._as(pid, lambda t: self.kernel.syscalls.close(fd, body))
        self._result(out)

    def forget(self, fh: int) -> None:
        """The file's last reference is gone (FUSE release)."""
        self.fds.pop(fh, None)


def caller_pid_valid(pid: int) -> bool:
    """A request from a real process (libfuse reports pid 0 for its own requests)."""
    return pid > 0 and pid != os.getpid()
