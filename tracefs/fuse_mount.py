"""The FUSE adapter: fusepy calls translated one to one into :class:`tracesim.tracefs.tree.Tree` calls.

Everything a file does lives in the tree; this module only keeps the table of open handles,
turns attributes into ``stat`` dicts and sets the mount options that make tracefs files work
through FUSE:

* ``direct_io`` on every open: sizes are 0, so without it the page cache would read nothing;
* ``atomic_o_trunc``: open() receives O_TRUNC itself (``echo > set_event`` vs ``>>``) instead of
  an open followed by a truncate;
* ``big_writes``/``max_write``: a ``cat prog.o > filter`` arrives in 128 KiB writes, not 4 KiB;
* zero entry/attr timeouts: directories change under the kernel model (kprobe events,
  instances), and ``O_TRUNC`` opens stamp mtime;
* multithreaded: a reader blocked in ``trace_pipe`` holds one libfuse worker, others go on;
  blocked reads poll libfuse's ``fuse_interrupted()`` so Ctrl-C on ``cat trace_pipe`` ends it;
* ``flag_nopath``: operations on an open file (read, write, flush, release, fstat, readdir)
  get no path, so libfuse takes no lock on the file's path for them. Otherwise a reader
  blocked in ``instances/foo/trace_pipe`` holds a read lock on ``instances/foo`` for as long as
  it waits: ``rmdir instances/foo`` queues for the write lock (in D state, deaf to signals)
  and every later lookup under ``instances/`` queues behind it. The adapter keeps each
  handle's path itself for the operations that need it;
* a 1 ms interpreter switch interval (default 5 ms): a FUSE worker answers each request with
  the interpreter lock and gives it up between requests, so with a workload thread running
  flat out it waited up to one interval per ``trace_pipe`` read - the reader fell behind and
  lines arrived hundreds of ms late instead of a few ms;
* each libfuse worker keeps its Python thread state between requests (``_keep_thread_state``):
  a ctypes callback from a thread Python did not start otherwise makes a thread state and
  frees it again on every request (with its frame stack: an mmap and an munmap, which in a
  threaded process flushes every CPU's TLB), half the cost of a one-page
  ``trace_pipe_raw`` read;
* reads skip fusepy's generic dispatch (``_Fuse.read``): the open file's handle is found by
  its fh and its bytes copied into libfuse's buffer, nothing else.

Importing this module imports fusepy, which raises OSError("Unable to find libfuse") when
libfuse2 is missing: callers catch that and say so.
"""
from __future__ import annotations

import codecs
import ctypes
import errno
import itertools
import os
import stat
import sys
import threading
from collections.abc import Callable
from typing import Any

import fuse
from tracesim.tracefs.blocking import set_interrupt_check
from tracesim.tracefs.caller import proc_comm, set_caller_lookup
from tracesim.tracefs.errors import FsError
from tracesim.tracefs.handles import Handle, LazyTextHandle, SeqHandle
from tracesim.tracefs.host_tasks import STREAMS, HostTasks, ProcForks, caller_pid_valid
from tracesim.tracefs.nodes import Attr
from tracesim.tracefs.tree import Tree

MAX_WRITE = 131072
SWITCH_INTERVAL = 0.001
# how long rmdir waits for the RELEASE of files already closed (see rmdir)
RELEASE_WAIT_S = 0.5

_kept = threading.local()


def _keep_thread_state() -> None:
    """Give the calling libfuse worker a thread state that outlives the request: one more
    PyGILState_Ensure (this thread holds the interpreter lock, so it only counts), never
    released, so the callback's own Release leaves the state in place and the next request
    on this thread reuses it (see the module docstring)."""
    ensure = ctypes.pythonapi.PyGILState_Ensure
    ensure.restype = ctypes.c_int
    ensure.argtypes = []
    ensure()
    _kept.on = True


class _Fuse(fuse.FUSE):
    """fusepy's FUSE with the two changes the module docstring describes."""

    @staticmethod
    def _wrapper(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not getattr(_kept, "on", False):
            _keep_thread_state()
        return fuse.FUSE._wrapper(func, *args, **kwargs)

    def read(self, path: Any, buf: Any, size: int, offset: int, fip: Any) -> int:
        data = self.operations.read(None, size, offset, fip.contents)
        if not data:
            return 0
        n = len(data)
        if n > size:                    # fusepy's assertion: EINVAL
            raise FsError(errno.EINVAL)
        ctypes.memmove(buf, data, n)
        return n


def _request_must_end() -> Callable[[], bool]:
    """The check blocked reads poll: the request was interrupted (the reader got a signal), or
    the session is ending (SIGTERM/SIGINT/unmount). libfuse joins its worker threads on the
    way out, so a read still waiting for data would keep the process from ever exiting."""
    lib = fuse._libfuse
    interrupted = getattr(lib, "fuse_interrupted", None)
    exited = getattr(lib, "fuse_exited", None)
    if interrupted is None or exited is None:
        return lambda: False
    interrupted.restype = ctypes.c_int
    interrupted.argtypes = []
    exited.restype = ctypes.c_int
    exited.argtypes = [ctypes.c_void_p]
    session = ctypes.c_void_p(lib.fuse_get_context().contents.fuse)
    return lambda: bool(interrupted()) or bool(exited(session))


class TracefsOperations(fuse.Operations):
    """fusepy operations over a tree; ``on_ready`` runs once the kernel has the mount."""

    use_ns = True
    flag_nopath = 1          # see the module docstring: no libfuse path lock held by a read
    flag_nullpath_ok = 1
    # Not registered: fusepy's ioctl decodes a path, which flag_nopath makes None. libfuse
    # then answers ENOSYS, which the kernel's FUSE turns into ENOTTY - what tracefs files,
    # having no ioctl of their own, answer too (lsattr: "Inappropriate ioctl for device").
    ioctl = None

    def __init__(self, tree: Tree, on_ready: Callable[[], None] | None = None,
                 host_tasks: bool = False, mountpoint: str = "") -> None:
        self.tree = tree
        self.on_ready = on_ready
        # --host-tasks: callers become model tasks doing openat/read/write/close
        self.host = HostTasks(tree.ctx.kernel, forks=ProcForks.open(),
                              mountpoint=os.path.abspath(mountpoint) if mountpoint else ""
                              ) if host_tasks else None
        self._handles: dict[int, Handle] = {}
        self._paths: dict[int, str] = {}        # fh -> path it was opened by (files and dirs)
        self._streams: set[int] = set()         # fhs of trace_pipe/trace_pipe_raw files
        self._next_fh = itertools.count(1)
        self._lock = threading.Lock()
        # fh closed by close(2) (FLUSH seen) whose RELEASE has not arrived yet; see rmdir
        self._closing: set[int] = set()
        self._released = threading.Condition(self._lock)
        self._uid, self._gid = os.getuid(), os.getgid()

    def _stat(self, attr: Attr) -> dict[str, Any]:
        ns = int(attr.mtime * 1e9)
        return {"st_mode": attr.mode, "st_nlink": attr.nlink, "st_uid": self._uid,
                "st_gid": self._gid, "st_size": 0, "st_mtime": ns, "st_atime": ns, "st_ctime": ns,
                "st_blksize": 4096}

    def _handle(self, fi: Any) -> Handle:
        handle = self._handles.get(fi.fh)
        if handle is None:
            raise FsError(errno.EBADF)
        return handle

    def _new_fh(self, path: str, handle: Handle | None = None) -> int:
        with self._lock:
            fh = next(self._next_fh)
            if handle is not None:
                self._handles[fh] = handle
                if path.rsplit("/", 1)[-1] in STREAMS:
                    self._streams.add(fh)
            self._paths[fh] = path
        return fh

    def _path_of(self, path: str | None, fh: int | None) -> str:
        """The path of a request: libfuse passes None for operations on an open file."""
        if path is not None:
            return path
        found = self._paths.get(fh) if fh is not None else None
        if found is None:
            raise FsError(errno.EBADF)
        return found

    # -- lifecycle -----------------------------------------------------------------------------
    def init(self, path: str) -> None:
        set_interrupt_check(_request_must_end())
        def process() -> str | None:
            return proc_comm(fuse.fuse_get_context()[2])
        if self.host is None:
            set_caller_lookup(process)
        else:       # each file operation already runs as the caller's own task
            set_caller_lookup(lambda: None, process)
        if self.on_ready is not None:
            self.on_ready()

    # -- namespace -----------------------------------------------------------------------------
    def getattr(self, path: str | None, fh: Any = None) -> dict[str, Any]:
        # fstat() arrives as the open file's fuse_file_info (raw_fi) and no path.
        return self._stat(self.tree.getattr(self._path_of(path, getattr(fh, "fh", None))))

    def opendir(self, path: str) -> int:
        def do_open() -> int:
            self.tree.readdir(path)      # ENOENT/ENOTDIR at opendir, as the kernel's open does
            return self._new_fh(path)
        pid = self._caller()
        if pid:          # the caller's openat of the directory (ls: openat(AT_FDCWD, ".", ...))
            return self.host.openat(pid, path, None, do_open)
        return do_open()

    def releasedir(self, path: str | None, fh: int) -> None:
        with self._lock:
            self._paths.pop(fh, None)
        if self.host is not None:    # a release carries no caller: the opener closed it
            self.host.closedir(fh)

    def readdir(self, path: str | None, fh: int) -> list[tuple[str, dict[str, int], int]]:
        path = self._path_of(path, fh)
        # With each entry's mode, so readers that trust d_type (perf's tracepoint walk) work.
        entries = [(".", {"st_mode": stat.S_IFDIR}, 0), ("..", {"st_mode": stat.S_IFDIR}, 0)]
        for name in self.tree.readdir(path):
            child = path.rstrip("/") + "/" + name
            try:
                mode = self.tree.getattr(child).mode
            except FsError:
                continue        # went away between the listing and the lookup
            entries.append((name, {"st_mode": mode}, 0))
        return entries

    def mkdir(self, path: str, mode: int) -> None:
        self.tree.mkdir(path)

    def rmdir(self, path: str) -> None:
        try:
            self.tree.rmdir(path)
        except FsError as e:
            # The kernel drops an open file's reference before close(2) returns (__fput runs
            # as task work); FUSE sends RELEASE after close has returned. So `cat
            # instances/foo/trace; rmdir instances/foo` could find the reference still held.
            # Give files already closed a moment to be released, then answer for good.
            if e.errno != errno.EBUSY or not self._await_releases(RELEASE_WAIT_S):
                raise
            self.tree.rmdir(path)

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        self.tree.create(path)
        return 0

    def truncate(self, path: str | None, length: int, fh: Any = None) -> None:
        # Only an explicit truncate(2) gets here (O_TRUNC arrives with open).
        self.tree.truncate(self._path_of(path, getattr(fh, "fh", None)))

    # fusepy's defaults answer EROFS; tracefs says EPERM (see Tree.unlink).
    def unlink(self, path: str) -> None:
        self.tree.unlink(path)

    def rename(self, old: str, new: str) -> None:
        self.tree.rename(old, new)

    def link(self, target: str, source: str) -> None:
        self.tree.link(target)

    def symlink(self, target: str, source: str) -> None:
        self.tree.link(target)

    def mknod(self, path: str, mode: int, dev: int) -> None:
        self.tree.link(path)

    # -- files ---------------------------------------------------------------------------------
    def _caller(self) -> int:
        """The calling process's pid when callers are model tasks, else 0."""
        if self.host is None:
            return 0
        pid = fuse.fuse_get_context()[2]
        return pid if caller_pid_valid(pid) else 0

    def open(self, path: str, fi: Any) -> int:
        pid = self._caller()
        if pid:
            fi.fh = self.host.openat(pid, path, fi.flags,
                                     lambda: self._new_fh(path, self.tree.open(path, fi.flags)))
        else:
            fi.fh = self._new_fh(path, self.tree.open(path, fi.flags))
        fi.direct_io = 1
        return 0

    def read(self, path: str | None, size: int, offset: int, fi: Any) -> bytes:
        fh = fi.fh
        handle = self._handles.get(fh)
        if handle is None:
            raise FsError(errno.EBADF)
        # The request carries the file's current flags: O_NONBLOCK may have been set by fcntl
        # after open (libtracefs does so before flushing trace_pipe_raw).
        handle.nonblock = bool(fi.flags & os.O_NONBLOCK)
        if self.host is None or fh in self._streams:
            return handle.read(size, offset)     # host tasks read the streams as themselves
        pid = self._caller()
        if pid:
            return self.host.read(pid, fh, self._paths.get(fh, ""), size,
                                  lambda: handle.read(size, offset),
                                  seq_file=isinstance(handle, SeqHandle | LazyTextHandle))
        return handle.read(size, offset)

    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        pid = self._caller()
        if pid:
            handle = self._handle(fi)
            return self.host.write(pid, fi.fh, len(data), lambda: handle.write(data, offset))
        return self._handle(fi).write(data, offset)

    def flush(self, path: str, fi: Any) -> None:
        # every close(2) of the file flushes, in the closing process's context: its close()
        handle = self._handle(fi)
        pid = self._caller()
        try:
            if pid:
                self.host.close(pid, fi.fh, handle.flush)
            else:
                handle.flush()
        finally:
            with self._lock:
                if fi.fh in self._handles:
                    self._closing.add(fi.fh)

    def _await_releases(self, timeout: float) -> bool:
        """Wait until every file closed so far is released (or ``timeout`` passes); whether
        any was pending. A descriptor dup'ed elsewhere keeps its file: the wait then ends
        at the timeout and the caller answers as before."""
        with self._released:
            if not self._closing:
                return False
            self._released.wait_for(lambda: not self._closing, timeout)
            return True

    def release(self, path: str, fi: Any) -> None:
        with self._lock:
            handle = self._handles.pop(fi.fh, None)
            self._paths.pop(fi.fh, None)
            self._streams.discard(fi.fh)
        try:
            if handle is None:
                return
            if self.host is not None:
                self.host.forget(fi.fh)
            handle.release()
        finally:
            with self._released:
                self._closing.discard(fi.fh)
                self._released.notify_all()


PATH_ENCODING = "tracesim_fs"


def _path_codec(name: str) -> codecs.CodecInfo | None:
    """UTF-8 with surrogate escapes for the names fusepy decodes and encodes: a name that is not
    UTF-8 (``mkdir $'instances/\\xff'``, ``stat $'\\xff'``) reaches the tree as a str that
    encodes back to the same bytes, instead of failing fusepy's strict decode with a traceback
    in the log and EINVAL where the kernel answers ENOENT or makes the instance."""
    if name != PATH_ENCODING:
        return None
    return codecs.CodecInfo(
        name=PATH_ENCODING,
        encode=lambda text, errors="strict": codecs.utf_8_encode(text, "surrogateescape"),
        decode=lambda data, errors="strict": codecs.utf_8_decode(data, "surrogateescape", True))


def serve(tree: Tree, mountpoint: str, *, on_ready: Callable[[], None] | None = None,
          debug: bool = False, host_tasks: bool = False) -> None:
    """Mount ``tree`` on ``mountpoint`` and serve until unmounted or SIGINT/SIGTERM/SIGHUP.

    Runs in the calling thread (libfuse's multithreaded loop); libfuse's own signal handlers end
    the loop on those signals, and it unmounts on the way out.
    """
    sys.setswitchinterval(SWITCH_INTERVAL)
    codecs.register(_path_codec)
    _Fuse(TracefsOperations(tree, on_ready, host_tasks, mountpoint), mountpoint,
          raw_fi=True, foreground=True, encoding=PATH_ENCODING,
              nothreads=False, debug=debug, fsname="tracesim", subtype="tracesim",
              default_permissions=True, atomic_o_trunc=True, big_writes=True,
              max_write=MAX_WRITE, entry_timeout=0, attr_timeout=0, negative_timeout=0)
