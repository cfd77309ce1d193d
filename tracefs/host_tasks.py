"""The mount's callers as tasks of the model (``tracesim mount --host-tasks``, the default).

Each FUSE request carries the calling process's pid (``fuse_get_context``). The first request of
a pid makes a model task with that pid and the process's comm (``/proc/PID/comm``); when its
parent (``/proc/PID/stat``) is already a task of the model, the new task is forked from it
(``sched_process_fork``, so ``options/event-fork`` follows real shells into their children; a
process whose grandparent or older ancestor is a task brings the processes between along) and
exec's the process's program (``/proc/PID/exe``) if its comm differs, as ``bash`` running
``cat`` does. A comm that changes later (seen at open) is an exec; a process that is gone
(seen when a new one appears) exits and is reaped, so ``sched_process_exit``/``free`` follow.
Then each ``open``/``read``/``write``/``flush`` (which every close(2) sends) on a tracefs file
runs in the model as that task doing ``openat``/``read``/``write``/``close``: switched in on
CPU 0, the syscall events and the real functions (``__x64_sys_read`` → ``ksys_read`` →
``vfs_read`` ...) through their kprobe sites, the tree's own work innermost, then back to sleep.
So ``cat trace`` with a kprobe on ``vfs_read`` shows cat's own reads, as on Linux.

Reads of the consuming streams (``trace_pipe``, ``trace_pipe_raw``) run as the caller without
syscall events: a reader that is woken by the events of its own read would never block.

An open of a file or a directory (FUSE ``open``/``opendir``: ``cat trace``, ``ls`` listing a
directory of the mount) is the caller's ``openat`` with the arguments the caller passed: while
the request is served the caller sits in its syscall, so ``/proc/PID/syscall`` gives the
syscall's number and arguments and ``/proc/PID/mem`` the path string at the pointer it passed
(``"."`` for ``ls``). The model's task stores that string at that address in its own user
memory before the call, so ``sys_enter_openat``'s ``filename`` is the caller's pointer and
``:ustring`` fetches and ``bpf_probe_read_user_str`` read the caller's path there. Where the
caller's syscall cannot be read (not root, not an open), the task passes the file's absolute
path on its stack. A directory's close arrives only as ``releasedir``, after the close and
without the closing process: it is the opener's ``close`` while its task is still the model's.
"""
from __future__ import annotations

import os
import socket
import struct
import zlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from tracesim.kernel_model.mm.slab import GFP_ACCOUNT, GFP_KERNEL

T = TypeVar("T")

O_LARGEFILE = 0o100000
PAGE_SIZE = 4096
GFP_KERNEL_ACCOUNT = GFP_KERNEL | GFP_ACCOUNT
STREAMS = ("trace_pipe", "trace_pipe_raw")
# the path string the task passes to openat (on its stack) when its own is not known
PATH_ADDR = 0x7ffd3a1c4f60
AT_FDCWD = -100
O_DIRECTORY = 0o200000
# what glibc's opendir passes: O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_DIRECTORY
OPENDIR_FLAGS = 0o4000 | 0o2000000 | O_DIRECTORY
PATH_MAX = 4096
# x86-64 syscall numbers of the opens and where their (dfd, path, flags) arguments are
NR_OPEN, NR_CREAT, NR_OPENAT, NR_OPENAT2 = 2, 85, 257, 437
O_CREAT_TRUNC_WRONLY = 0o1000 | 0o100 | 0o1


class OpenCall:
    """The open a caller is in: its dfd, the path pointer and string, its flags (None when
    the caller's own flags are not known: openat2's are in a struct)."""

    __slots__ = ("dfd", "addr", "path", "flags")

    def __init__(self, dfd: int, addr: int, path: bytes, flags: int | None) -> None:
        self.dfd = dfd
        self.addr = addr
        self.path = path
        self.flags = flags


def proc_syscall(pid: int) -> tuple[int, list[int]] | None:
    """The syscall ``pid`` is blocked in and its six arguments (``/proc/PID/syscall``), or None
    (running, not in a syscall, or not readable)."""
    try:
        with open(f"/proc/{pid}/syscall", encoding="ascii") as f:
            words = f.read().split()
        if len(words) < 7:
            return None
        return int(words[0]), [int(w, 16) for w in words[1:7]]
    except (OSError, ValueError):
        return None


def proc_user_string(pid: int, addr: int, max_len: int = PATH_MAX) -> bytes | None:
    """The NUL-terminated string at ``addr`` in ``pid``'s memory (``/proc/PID/mem``), without
    its NUL; None where it cannot be read."""
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except OSError:
        return None
    try:
        out = b""
        while len(out) < max_len:
            at = addr + len(out)
            chunk = os.pread(fd, min(PAGE_SIZE - at % PAGE_SIZE, max_len - len(out)), at)
            if not chunk:
                return None
            nul = chunk.find(b"\0")
            if nul >= 0:
                return out + chunk[:nul]
            out += chunk
        return None
    except (OSError, OverflowError):
        return None
    finally:
        os.close(fd)


def _signed32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def caller_open(pid: int, syscall_of: Callable[[int], tuple[int, list[int]] | None] = proc_syscall,
                string_at: Callable[[int, int], bytes | None] = proc_user_string
                ) -> OpenCall | None:
    """The open(2)/openat(2)/openat2(2)/creat(2) ``pid`` is in, with its path, or None."""
    call = syscall_of(pid)
    if call is None:
        return None
    nr, args = call
    if nr == NR_OPENAT:
        dfd, addr, flags = _signed32(args[0]), args[1], args[2] & 0xFFFFFFFF
    elif nr == NR_OPENAT2:
        dfd, addr, flags = _signed32(args[0]), args[1], None
    elif nr == NR_OPEN:
        dfd, addr, flags = AT_FDCWD, args[0], args[1] & 0xFFFFFFFF
    elif nr == NR_CREAT:
        dfd, addr, flags = AT_FDCWD, args[0], O_CREAT_TRUNC_WRONLY
    else:
        return None
    path = string_at(pid, addr)
    return None if path is None else OpenCall(dfd, addr, path, flags)


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


def proc_exe(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def proc_alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


NETLINK_CONNECTOR = 11
CN_IDX_PROC = CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_EVENT_FORK = 0x00000001
NLMSG_HDR = struct.Struct("=IHHII")
CN_MSG = struct.Struct("=IIIIHH")
FORK_EVENT = struct.Struct("=IIQIIII")     # what, cpu, timestamp, parent pid/tgid, child pid/tgid


class ProcForks:
    """The host kernel's process events connector (``NETLINK_CONNECTOR``, ``CN_IDX_PROC``):
    forks of host processes that never touch the mount, like a shell's ``( subshell )``.
    The kernel queues the event at the fork, so it is here before the parent's next request.
    ``open()`` is None where the connector is not available (not root, another namespace)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    def open(cls) -> ProcForks | None:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
            sock.bind((0, CN_IDX_PROC))
            op = struct.pack("=I", PROC_CN_MCAST_LISTEN)
            msg = CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op), 0) + op
            sock.send(NLMSG_HDR.pack(NLMSG_HDR.size + len(msg), 3, 0, 0, 0) + msg)  # NLMSG_DONE
            sock.setblocking(False)
        except (OSError, AttributeError):
            return None
        return cls(sock)

    def __call__(self) -> list[tuple[int, int]]:
        """The (parent tgid, child pid) of each process forked since the last call (threads,
        whose pid is not their tgid, are left out)."""
        out: list[tuple[int, int]] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError:                  # ENOBUFS: events were lost; keep going
                continue
            at = 0
            while at + NLMSG_HDR.size <= len(data):
                length = NLMSG_HDR.unpack_from(data, at)[0]
                body = at + NLMSG_HDR.size + CN_MSG.size
                if length < NLMSG_HDR.size or body + FORK_EVENT.size > len(data):
                    break
                what, _, _, _, ptgid, cpid, ctgid = FORK_EVENT.unpack_from(data, body)
                if what == PROC_EVENT_FORK and cpid == ctgid:
                    out.append((ptgid, cpid))
                at += (length + 3) & ~3


class HostTasks:
    """Host pid → model task, and the syscalls those tasks make on the tree's files."""

    def __init__(self, kernel: Any, comm_of: Callable[[int], str] = proc_comm,
                 ppid_of: Callable[[int], int] = proc_ppid,
                 exe_of: Callable[[int], str | None] = proc_exe,
                 alive: Callable[[int], bool] = proc_alive,
                 forks: Callable[[], Iterable[tuple[int, int]]] | None = None,
                 open_of: Callable[[int], OpenCall | None] = caller_open,
                 mountpoint: str = "") -> None:
        self.kernel = kernel
        self.open_of = open_of
        self.mountpoint = mountpoint.rstrip("/")
        self.forks = forks
        self.comm_of = comm_of
        self.ppid_of = ppid_of
        self.exe_of = exe_of
        self.alive = alive
        self.hosts: dict[int, Any] = {}         # host pid -> its model task
        self.fds: dict[int, int] = {}           # fh -> fd number in its task
        self.openers: dict[int, int] = {}       # fh -> host pid that opened it
        self.seq_bufs: dict[int, int] = {}      # fh -> its seq_file buffer (kmalloc'd)
        self._open_fds: dict[int, set[int]] = {}    # pid -> its fds in use

    def task(self, pid: int, check_exec: bool = False) -> Any:
        """The model task of host process ``pid``: made once (forked from its parent's task when
        that is known, then exec'd if the comm differs); ``check_exec`` notices a later exec."""
        if self.forks is not None:
            self._catch_up_forks()
        task = self.hosts.get(pid)
        if task is None:
            self._reap_gone()
            task = self._new_task(pid)
        elif check_exec:
            self._exec_if_changed(pid, task)
        return task

    def _catch_up_forks(self) -> None:
        """Forks the host made since the last request by processes that are tasks here
        (``( echo )`` in a shell): each child is its parent's clone(2), then exits and is
        reaped with the others that are gone."""
        forked = False
        for ppid, pid in self.forks():                  # type: ignore[misc]
            parent = self.hosts.get(ppid)
            if parent is None or pid in self.hosts:
                continue
            own_pid = None if pid in self.kernel.machine.tasks else pid
            sched = self.kernel.sched
            with sched.running(parent):
                child = self.hosts[pid] = self.kernel.syscalls.clone(cpu=0, pid=own_pid)
            for task in (child, parent):        # each ran on the host; here too, then waits
                with sched.running(task):
                    pass
                if self.kernel.machine.current.task is task:
                    sched.schedule()
            forked = True
        if forked:
            self._reap_gone()

    def _new_task(self, pid: int) -> Any:
        kernel = self.kernel
        sched, machine = kernel.sched, kernel.machine
        own_pid = None if pid in machine.tasks else pid     # a model task has it: a fresh one
        ppid = self.ppid_of(pid)
        parent = self.hosts.get(ppid)
        if parent is None and self._known_ancestor(ppid):
            parent = self._new_task(ppid)     # a subshell between a known shell and pid
        if parent is None:
            task = machine.spawn(self.comm_of(pid), pid=own_pid)
        else:
            with sched.running(parent):                 # the parent's clone(2)
                task = kernel.syscalls.clone(cpu=0, pid=own_pid)
            if machine.current.task is parent:
                sched.schedule()          # it was running already: it waits for its child too
        self.hosts[pid] = task
        if parent is not None:
            self._exec_if_changed(pid, task)
            if machine.current.task is task:
                sched.schedule()              # switched in for its syscalls only
        return task

    def _known_ancestor(self, pid: int) -> bool:
        """Whether a process above ``pid`` (its parent's parent and up) is a task of the
        model: then ``pid`` and the processes between become tasks, each forked from its
        parent, as the processes were (``cat`` in a command substitution of a shell: the
        subshell forks it)."""
        seen: set[int] = set()
        while pid > 1 and pid not in seen and self.alive(pid):
            if pid in self.hosts:
                return True
            seen.add(pid)
            pid = self.ppid_of(pid)
        return False

    def _exec_if_changed(self, pid: int, task: Any) -> None:
        comm = self.comm_of(pid)
        if comm != task.comm:
            with self.kernel.sched.running(task):
                self.kernel.syscalls.execve(self.exe_of(pid) or comm)

    def _reap_gone(self) -> None:
        """Host processes that ended: their tasks exit and are reaped by the parent's task
        (or init's), so event-fork's pid lists and saved tasks follow."""
        sched, machine = self.kernel.sched, self.kernel.machine
        for pid, task in list(self.hosts.items()):
            if self.alive(pid):
                continue
            del self.hosts[pid]
            self._open_fds.pop(pid, None)
            with sched.running(task):
                sched.exit(0)
            reaper = task.parent if task.parent in self.hosts.values() else machine.tasks[1]
            with sched.running(reaper):
                sched.wait(task)
            # the child's exit woke its parent (SIGCHLD) and switched to it, so running()
            # found it already on the CPU and leaves it there: it goes back to sleep after
            # reaping, as after any other operation, or later wakeups would never be seen
            if machine.current.task is reaper:
                sched.schedule()

    def _as(self, pid: int, body: Callable[[Any], T], check_exec: bool = False) -> T:
        kernel = self.kernel
        with kernel.lock, kernel.machine.on_cpu(0):
            task = self.task(pid, check_exec)
            with kernel.sched.running(task):
                result = body(task)
            if kernel.machine.current.task is task:
                # it was running already (its fork switched to it): it sleeps after this
                # syscall as well, like every caller between its requests
                kernel.sched.schedule()
            return result

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

    def openat(self, pid: int, path: str, flags: int | None, do_open: Callable[[], int]) -> int:
        """``openat(dfd, path, flags)`` by ``pid`` as the caller made it (see the module
        docstring); ``path`` is the file's path in the mount, ``flags`` the open's flags from
        FUSE (None: a directory, opened as opendir does); ``do_open()`` returns the fh."""
        used = self._open_fds.setdefault(pid, set())
        fd = next(n for n in range(3, len(used) + 4) if n not in used)   # the lowest free fd
        out: list = []
        name = path.rstrip("/").rsplit("/", 1)[-1] or "/"
        call = self.open_of(pid)
        if call is None:
            dfd, addr = AT_FDCWD, PATH_ADDR
            raw = (self.mountpoint + path if path != "/" else self.mountpoint or "/").encode(
                "utf-8", "surrogateescape")
        else:
            dfd, addr, raw = call.dfd, call.addr, call.path
            if call.flags is not None:
                flags = call.flags
        if flags is None:
            flags = OPENDIR_FLAGS

        def opening() -> int:
            fh = do_open()
            self.kernel.syscalls.install_file(fd, name)     # fd_install
            return fh
        body = self._returning(opening, out, lambda fh: fd)
        user_flags = flags & ~O_LARGEFILE           # the kernel's own addition, not the caller's
        self._as(pid, lambda t: self.kernel.syscalls.openat(addr, user_flags, body, path=raw,
                                                            dfd=dfd), True)
        fh = self._result(out)
        used.add(fd)
        self.fds[fh] = fd
        self.openers[fh] = pid
        return fh

    def read(self, pid: int, fh: int, path: str, size: int, do_read: Callable[[], bytes],
             seq_file: bool = False) -> bytes:
        """``read(fd)`` by ``pid``. A ``seq_file`` (the generated text files) takes its
        buffer at the first read, as seq_read_iter does (kvmalloc of a page: a kmalloc
        event from seq_read_iter, before the file's show runs); it is freed at close."""
        if path.rsplit("/", 1)[-1] in STREAMS:
            return do_read()
        out: list = []
        if seq_file and fh not in self.seq_bufs:
            inner = do_read

            def do_read() -> bytes:
                self.seq_bufs[fh] = self._slab_call("kmalloc", "seq_read_iter", PAGE_SIZE,
                                                    GFP_KERNEL_ACCOUNT)
                return inner()
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
        self._open_fds.get(pid, set()).discard(fd)
        out: list = []
        buf = self.seq_bufs.pop(fh, None)
        if buf is not None:
            inner = do_close

            def do_close() -> None:
                inner()
                self._slab_call("kfree", "seq_release", buf)    # kvfree(m->buf)
        body = self._returning(do_close, out, lambda _: 0)
        self._as(pid, lambda t: self.kernel.syscalls.close(fd, body))
        self._result(out)

    def closedir(self, fh: int) -> None:
        """A directory's last close: FUSE sends no flush for a directory, only a releasedir
        after the close(2), without the closing process; the process that opened it is taken
        as the one that closed it (``ls``), if its task is still one of the model's."""
        pid = self.openers.get(fh, 0)
        if fh in self.fds and pid in self.hosts:
            self.close(pid, fh, lambda: None)
        self.forget(fh)

    def forget(self, fh: int) -> None:
        """The file's last reference is gone (FUSE release)."""
        self.fds.pop(fh, None)
        self.openers.pop(fh, None)
        self.seq_bufs.pop(fh, None)

    def _slab_call(self, op: str, caller: str, *args: int) -> int:
        """kmalloc(size, gfp) / kfree(addr) from ``caller`` (its call site: a fixed offset
        in it, as the model's functions have no instructions)."""
        kernel = self.kernel
        site = kernel.kallsyms.address_of(caller) or 0
        if site:
            sym = kernel.kallsyms.lookup(site)
            if sym is not None:
                site += _call_offset(caller, op, sym[2])
        if op == "kmalloc":
            return int(kernel.slab.kmalloc(args[0], args[1], call_site=site))
        kernel.slab.kfree(args[0], call_site=site)
        return 0


def _call_offset(caller: str, callee: str, size: int) -> int:
    """A fixed, plausible offset of ``caller``'s call to ``callee`` (inside the function)."""
    room = size - 0x20
    return 0x10 + zlib.crc32(f"{caller}>{callee}".encode()) % room if room > 0 else size // 2


def caller_pid_valid(pid: int) -> bool:
    """A request from a real process (libfuse reports pid 0 for its own requests)."""
    return pid > 0 and pid != os.getpid()
