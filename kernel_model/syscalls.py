"""The syscall layer: what a task's system call does between user space and the kernel.

``kernel.syscalls.call(name, args, body, chain)`` runs in the current task's context the path
of ``do_syscall_64``: ``raw_syscalls:sys_enter`` and ``syscalls:sys_enter_<name>``, then the
6.18 functions of that syscall through their kprobe sites (``__x64_sys_read`` → ``ksys_read``
→ ``vfs_read``; ``__x64_sys_openat`` → ``do_sys_openat2`` ...), ``body()`` innermost (what the
model does: read a tracefs file, fork ...), then ``syscalls:sys_exit_<name>`` and
``raw_syscalls:sys_exit`` with the return value (a negative errno on failure). ``exit_group``
never returns, so it has no exit events, as on Linux.

The helpers (``read``, ``write``, ``openat``, ``close``, ``clone``, ``execve``, ``exit_group``,
``wait4``, ``kill``, ``nanosleep``, ``socket``, ``connect``, ``accept4``, ``sendto``,
``recvfrom``) pass plausible user-space pointers (a stack buffer near 0x7ffd...) and the
functions' real argument lists.
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tracesim.kernel_model.mm.slab import GFP_KERNEL, SLAB_HWCACHE_ALIGN, SLAB_PANIC
from tracesim.kernel_model.sched import SIGCHLD_CLONE, call
from tracesim.kernel_model.trace.events.syscalls import INT32_TYPES, SYSCALLS

if TYPE_CHECKING:
    from tracesim.kernel_model.kernel import Kernel
    from tracesim.kernel_model.machine import Task

USER_BUF = 0x7ffd3a1c2e40          # a user stack buffer
USER_PATH = 0x7ffd3a1c4f60         # a path string on the user stack
USER_SOCKADDR = 0x7ffd3a1c2e20
PT_REGS_ON_STACK = 0xffffc90000a0ff58   # the user pt_regs do_syscall_64 passes to __x64_sys_*
FILE_BASE = 0xffff888104a3c000     # struct file of fd N: FILE_BASE + N * 0x100
AT_FDCWD = -100
SLEEP_TIMER = 0xffffc90000a0fd80   # the hrtimer_sleeper on the sleeping task's stack
CLOCK_MONOTONIC = 1
HRTIMER_MODE_REL = 1
EBADF = 9
FILENAME = 0xffff888103d5e000      # the struct filename getname() made of the path
SEQ_FILE_BASE = 0xffff888105a10000  # struct seq_file of fd N: SEQ_FILE_BASE + N * 0x100
SEQ_LOCK = 0x38                    # offsetof(struct seq_file, lock)
DENTRY_SIZE = 192                  # struct dentry (include/linux/fs.h)
D_NAME = 32                        # its d_name: struct qstr {hash, len; name}
F_PATH_DENTRY = 72                 # struct file's f_path.dentry
MAX_BACKED_FDS = 256               # fds whose struct file is in memory
DENTRY_SLOT = 0x200                # a dentry and its name, per fd
PATH_MAX = 4096

Chain = Sequence[tuple[str, Sequence[Any]]]


def file_addr(fd: int) -> int:
    """The ``struct file *`` the model's fd ``fd`` stands for."""
    return FILE_BASE + (fd & 0xffff) * 0x100


class Syscalls:
    """sys_enter/sys_exit events and the syscall functions' kprobe sites."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        event = kernel.tracing.event
        self.raw_enter = event("raw_syscalls", "sys_enter")
        self.raw_exit = event("raw_syscalls", "sys_exit")
        self.enter = {name: event("syscalls", f"sys_enter_{name}") for name in SYSCALLS}
        self.exit = {name: event("syscalls", f"sys_exit_{name}") for name in SYSCALLS}
        self.sites = kernel.kprobes.sites
        self._dentries: dict[int, int] = {}            # fd -> its file's dentry
        self._dentry_region: int | None = None
        # getname/putname: an openat copies its path into a names_cache object
        # (vfs_caches_init's cache of PATH_MAX-byte buffers) and frees it before returning
        slab = kernel.slab
        self._names_cache = slab.kmem_cache_create("names_cache", PATH_MAX, 0,
                                                   SLAB_HWCACHE_ALIGN | SLAB_PANIC)
        syms, kps = kernel.kallsyms, kernel.kprobes
        self._getname_site, self._putname_site = (
            sym.addr + kps.call_offset(sym, "kmem_cache_" + op)
            for sym, op in ((syms.symbol("getname_flags"), "alloc"),
                            (syms.symbol("putname"), "free")))

    def call(self, name: str, args: Sequence[int], body: Callable[[], int],
             chain: Chain = ()) -> int:
        """Run syscall ``name`` with ``args`` in the current task; returns ``body()``'s value."""
        nr, decls = SYSCALLS[name]
        # a 32-bit argument is zero-extended in its register (AT_FDCWD shows as ffffff9c)
        args = tuple(a & 0xFFFFFFFF if ctype in INT32_TYPES else a
                     for a, (ctype, _) in zip(args, decls, strict=True))
        if self.raw_enter.enabled:
            self.raw_enter.fire(nr, args)
        enter = self.enter[name]
        if enter.enabled:
            enter.fire(*args)
        ret = call(self.sites[f"__x64_sys_{name}"], lambda regs: self._chain(chain, body),
                   PT_REGS_ON_STACK)
        if name == "exit_group":
            return ret
        leave = self.exit[name]
        if leave.enabled:
            leave.fire(ret)
        if self.raw_exit.enabled:
            self.raw_exit.fire(nr, ret)
        return ret

    def _chain(self, chain: Chain, body: Callable[[], int]) -> int:
        if not chain:
            return body()
        (site, args), rest = chain[0], chain[1:]
        return call(self.sites[site], lambda *_: self._chain(rest, body), *args)

    # ------------------------------------------------------------------ files
    def openat(self, path_addr: int, flags: int, body: Callable[[], int], mode: int = 0,
               path: bytes | None = None, dfd: int = AT_FDCWD) -> int:
        """openat(dfd, path_addr, flags, mode); ``path``: the string the task stored at
        ``path_addr`` before the call (in its own memory, where ``getname`` and user-memory
        probes read it)."""
        if path is not None:
            self.store_user(path_addr, path + b"\0")
        slab, cache = self.kernel.slab, self._names_cache

        def opening() -> int:           # do_sys_openat2: getname, do_filp_open, putname
            name = slab.kmem_cache_alloc(cache, GFP_KERNEL, self._getname_site)
            try:
                return body()
            finally:
                slab.kmem_cache_free(cache, name, self._putname_site)
        return self.call("openat", (dfd, path_addr, flags, mode), opening,
                         (("do_sys_openat2", (dfd, path_addr, USER_BUF)),))

    def store_user(self, addr: int, data: bytes) -> None:
        """The current task's own store of ``data`` at user address ``addr``."""
        mm = self.kernel.machine.current.task.mm
        if mm is not None:
            mm.write(addr, data)

    def read(self, fd: int, count: int, body: Callable[[], int], pos: int = 0) -> int:
        """read(2) of a file of the model (a seq_file: seq_read_iter holds its m->lock)."""
        sites = self.sites
        lock = SEQ_FILE_BASE + (fd & 0xffff) * 0x100 + SEQ_LOCK

        def locked() -> int:
            call(sites["mutex_lock"], lambda m: None, lock)
            try:
                return body()
            finally:
                call(sites["mutex_unlock"], lambda m: None, lock)
        return self.call("read", (fd, USER_BUF, count), locked,
                         (("ksys_read", (fd, USER_BUF, count)),
                          ("vfs_read", (file_addr(fd), USER_BUF, count, pos))))

    def write(self, fd: int, count: int, body: Callable[[], int], pos: int = 0) -> int:
        return self.call("write", (fd, USER_BUF, count), body,
                         (("ksys_write", (fd, USER_BUF, count)),
                          ("vfs_write", (file_addr(fd), USER_BUF, count, pos))))

    def close(self, fd: int, body: Callable[[], int]) -> int:
        def closing() -> int:
            ret = body()
            call(self.sites["filp_flush"], lambda f, owner: 0, file_addr(fd), 0)
            return ret
        ret = self.call("close", (fd,), closing, (("file_close_fd", (fd,)),))
        dentry = self._dentries.pop(fd, None)
        if dentry is not None:
            # the last fput's task work (__fput) on the way back to user space
            call(self.sites["dput"], lambda d: None, dentry)
            self.kernel.mem.write(file_addr(fd) + F_PATH_DENTRY, bytes(8))
        return ret

    def install_file(self, fd: int, name: str) -> None:
        """An opened file takes fd ``fd`` (do_sys_openat2's fd_install): its ``struct file``
        at ``file_addr(fd)`` gets ``f_path.dentry``, a dentry whose ``d_name`` is ``name``,
        so probes read them (``file->f_path.dentry->d_name.name``, ``%pD``, ``%pd``); close
        drops it with ``dput``. Files of fds the model has no room for (>= 256) stay bare."""
        if not 0 <= fd < MAX_BACKED_FDS:
            return
        mem = self.kernel.mem
        if self._dentry_region is None:
            mem.map(MAX_BACKED_FDS * 0x100, "struct file", at=FILE_BASE)
            self._dentry_region = mem.map(MAX_BACKED_FDS * DENTRY_SLOT, "dentry").base
        dentry = self._dentry_region + fd * DENTRY_SLOT
        raw = name.encode()[:DENTRY_SLOT - DENTRY_SIZE - 1] + b"\0"
        mem.write(dentry + DENTRY_SIZE, raw)
        # d_name: hash, len, name
        mem.write(dentry + D_NAME, struct.pack("<IIQ", 0, len(raw) - 1, dentry + DENTRY_SIZE))
        mem.write(file_addr(fd) + F_PATH_DENTRY, struct.pack("<Q", dentry))
        self._dentries[fd] = dentry

    # ------------------------------------------------------------------ processes
    def clone(self, comm: str | None = None, cpu: int | None = None,
              pid: int | None = None) -> Task:
        """fork(): glibc's clone(SIGCHLD ...) in the current task; returns the child (``pid``:
        the child's pid, when the caller knows it)."""
        made: list[Task] = []

        def fork() -> int:
            made.append(self.kernel.sched.fork(comm, cpu, pid))
            return made[0].pid
        self.call("clone", (SIGCHLD_CLONE, 0, 0, USER_BUF, 0), fork)
        return made[0]

    def execve(self, filename: str) -> int:
        """execve(2): ``do_execve`` (inlined) → ``do_execveat_common`` → ``bprm_execve``."""
        def execute() -> int:
            self.kernel.sched.exec(filename)
            return 0
        self.store_user(USER_PATH, filename.encode() + b"\0")
        return self.call("execve", (USER_PATH, USER_BUF, USER_BUF + 0x40), execute,
                         (("do_execveat_common.isra.0",
                           (AT_FDCWD, FILENAME, USER_BUF, USER_BUF + 0x40, 0)),))

    def exit_group(self, code: int = 0) -> None:
        sched = self.kernel.sched

        def leave() -> int:
            sched.exit(code)
            return 0
        self.call("exit_group", (code,), leave, (("do_group_exit", (code << 8,)),))

    def wait4(self, child: Task | None) -> int:
        return self.call("wait4", (-1, USER_BUF, 0, 0), lambda: self.kernel.sched.wait(child))

    def kill(self, target: Task, sig: int) -> int:
        def send() -> int:
            self.kernel.sched.send_signal(sig, target)
            return 0
        return self.call("kill", (target.pid, sig), send,
                         (("kill_something_info", (sig, USER_BUF, target.pid)),))

    def nanosleep(self, ns: int) -> int:
        """The current task sleeps ``ns`` (the CPU goes idle; the hrtimer wakes it)."""
        sched, clock = self.kernel.sched, self.kernel.clock

        def sleep() -> int:
            task = self.kernel.machine.current.task
            sched.schedule()
            clock.advance(ns)
            call(self.sites["hrtimer_wakeup"], lambda timer: sched.wake_up(task), SLEEP_TIMER)
            sched.schedule()
            return 0
        return self.call("nanosleep", (USER_BUF, 0), sleep,
                         (("hrtimer_nanosleep", (ns, HRTIMER_MODE_REL, CLOCK_MONOTONIC)),
                          ("do_nanosleep", (USER_BUF, HRTIMER_MODE_REL))))

    # ------------------------------------------------------------------ sockets
    def socket(self, family: int, kind: int, protocol: int, fd: int) -> int:
        return self.call("socket", (family, kind, protocol), lambda: fd,
                         (("__sys_socket", (family, kind, protocol)),))

    def connect(self, fd: int, body: Callable[[], int] = lambda: 0) -> int:
        return self.call("connect", (fd, USER_SOCKADDR, 16), body,
                         (("__sys_connect", (fd, USER_SOCKADDR, 16)),))

    def accept4(self, fd: int, body: Callable[[], int]) -> int:
        return self.call("accept4", (fd, 0, 0, 0), body, (("__sys_accept4", (fd, 0, 0, 0)),))

    def sendto(self, fd: int, length: int, body: Callable[[], int], addr: int = 0) -> int:
        args = (fd, USER_BUF, length, 0, addr, 16 if addr else 0)
        return self.call("sendto", args, body, (("__sys_sendto", args),))

    def recvfrom(self, fd: int, size: int, body: Callable[[], int]) -> int:
        args = (fd, USER_BUF, size, 0, USER_SOCKADDR, USER_BUF - 8)
        return self.call("recvfrom", args, body, (("__sys_recvfrom", args),))
