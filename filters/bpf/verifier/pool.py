"""Verification in worker processes: a load waits for its verdict without stopping the daemon.

    res = verify_in_worker(insns, prog_type="kprobe", ctx=spec, maps=maps, unlock=ctx.lock)

The verifier is pure CPU work that may take seconds (a loop walked to the kernel's 1M
processed-insn limit).  Run in the daemon's own process it holds the GIL, and run under the
kernel's lock it stops the modelled kernel and every other control write.  Here it runs in a
``ProcessPoolExecutor`` (``forkserver`` start method where there is one, else ``spawn``: never
``fork`` in a threaded daemon), started on first use.  A process forked from one that has a
pool (``tracesim mount`` forks its daemon) starts its own.  The calling thread waits for the result
with ``unlock`` (the ``RLock`` its caller holds, if any: the kernel's) released, so the model
keeps running and other loads proceed in parallel.

Pool size: up to ``MIN_WORKERS`` processes, or the CPU count if that is more.  Workers start
only when a load finds none idle (an idle one holds about 20 MB).  A pool of exactly the CPU
count would make a short load queue behind long ones (eight loops walked to the 1M limit on a
2-CPU machine); with a process per concurrent load the OS shares the CPUs between them, as the
kernel's scheduler shares them between loader threads.

Failures never hang the writer: a verification still running after ``timeout`` seconds, or a
worker that dies, gives ``VerifyWorkerError`` (an ``OSError``: EAGAIN, EIO).  The broken or
stuck pool is replaced; loads that were running in it when it broke are retried once in the new
one (they did nothing wrong).  Where worker processes cannot start at all, verification runs
in the calling thread (logged once).  A worker outlives nothing: it ends itself when the process
that started the pool is gone, however that one ended (a killed daemon runs no exit handler).

The library API ``tracesim.filters.bpf.verifier.verify`` stays in-process: tools, tests and benchmarks
call it directly, where a pool would only add process start-up.
"""
from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any, NamedTuple

from tracesim.filters.bpf.runtime.maps import BPF_F_RDONLY_PROG
from tracesim.filters.bpf.verifier import ContextSpec, VerifierResult, verify
from tracesim.filters.bpf.vm.isa import Insn

MIN_WORKERS = 16
PARENT_POLL = 1.0            # seconds between a worker's checks that its daemon still exists
DEFAULT_TIMEOUT = 120.0      # seconds: the 1M-insn limit takes a few, even on a loaded machine

log = logging.getLogger(__name__)


class VerifyWorkerError(OSError):
    """The verification could not be done (timeout, dead worker): not a verdict."""


class MapShape(NamedTuple):
    """What the verifier reads of a map, without its contents (maps stay in the daemon): only
    a read-only map's values (format strings the verifier checks), and a map of maps' inner
    template."""
    name: str
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    values: bytes = b""
    inner: Any = None


_lock = threading.Lock()
_executor: ProcessPoolExecutor | None = None
_forkserver_used = False     # this process started multiprocessing's forkserver
_spawn_only = False          # forked from a process that had: its forkserver is not ours


def _forget_pool() -> None:
    """In a forked child (``tracesim mount`` forks its daemon): the parent's pool is not ours,
    its threads did not come along, and ``_lock`` may have been held by one of them.  Nor is
    the parent's forkserver (multiprocessing keeps one per process and would try to reuse it):
    a child of a process that started one starts its workers with ``spawn``."""
    global _lock, _executor, _forkserver_used, _spawn_only
    _lock = threading.Lock()
    _executor = None
    _spawn_only = _spawn_only or _forkserver_used
    _forkserver_used = False


os.register_at_fork(after_in_child=_forget_pool)


def verify_in_worker(insns: Sequence[Insn], *, prog_type: str, ctx: ContextSpec | None,
                     maps: Sequence[Any] = (), privileged: bool = True, log_level: int = 1,
                     log_size: int = 0, unlock: Any = None,
                     timeout: float = DEFAULT_TIMEOUT, attach: str = "") -> VerifierResult:
    """``verify(...)`` in a worker process; the same result.  ``unlock``: a lock the caller
    holds (an ``RLock``, as the kernel's is), released while waiting, held again on return."""
    args = (list(insns), prog_type, ctx, [_shape(m) for m in maps], privileged, log_level,
            log_size, attach)
    with _released(unlock):
        for attempt in (1, 2):
            try:
                executor = _pool()
            except OSError as exc:          # no processes here (no /dev/shm, fork limits...)
                _warn_in_process(exc)
                return _work(args)
            try:
                future = executor.submit(_work, args)
            except (BrokenProcessPool, RuntimeError):   # broken, or shut down by another load
                _discard(executor)
                continue
            except OSError as exc:
                _discard(executor)
                _warn_in_process(exc)
                return _work(args)
            try:
                return future.result(timeout=timeout)
            except FutureTimeout:
                _discard(executor, kill=True)
                raise VerifyWorkerError(
                    errno.EAGAIN, f"verification did not finish within {timeout:g} s") from None
            except BrokenProcessPool:
                _discard(executor)
                if attempt == 2:
                    raise VerifyWorkerError(errno.EIO,
                                            "verifier worker process died") from None
        raise VerifyWorkerError(errno.EIO, "verifier worker processes cannot run")


def _work(args: tuple) -> VerifierResult:
    insns, prog_type, ctx, maps, privileged, log_level, log_size, attach = args
    return verify(insns, prog_type=prog_type, ctx=ctx, maps=maps, privileged=privileged,
                  log_level=log_level, log_size=log_size, attach=attach)


def _init_worker(parent: int) -> None:
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch",
                     daemon=True).start()


def _watch_parent(parent: int) -> None:
    """A worker forked by the forkserver is not the daemon's child: no signal tells it that the
    daemon died, and it would wait for work forever.  Poll instead."""
    while True:
        time.sleep(PARENT_POLL)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass            # it exists (as another user's: the pid was reused); keep going


def _shape(m: Any) -> MapShape:
    flags = getattr(m, "flags", 0)
    inner = getattr(m, "inner", None)
    return MapShape(str(getattr(m, "name", "")), m.map_type, m.key_size, m.value_size,
                    m.max_entries, flags,
                    bytes(m.values) if flags & BPF_F_RDONLY_PROG else b"",
                    _shape(inner) if inner is not None else None)


def _pool() -> ProcessPoolExecutor:
    global _executor, _forkserver_used
    with _lock:
        if _executor is None:
            if "forkserver" in multiprocessing.get_all_start_methods() and not _spawn_only:
                mp: multiprocessing.context.BaseContext = multiprocessing.get_context("forkserver")
                # workers fork from a server that has the verifier imported already
                mp.set_forkserver_preload(["tracesim.filters.bpf.verifier.pool"])
                _forkserver_used = True
            else:
                mp = multiprocessing.get_context("spawn")
            _executor = ProcessPoolExecutor(max_workers=max(os.cpu_count() or 1, MIN_WORKERS),
                                            mp_context=mp, initializer=_init_worker,
                                            initargs=(os.getpid(),))
        return _executor


_warned = False


def _warn_in_process(exc: OSError) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning("verifier worker processes cannot start (%s): verifying in-process", exc)


def _discard(executor: ProcessPoolExecutor, kill: bool = False) -> None:
    """Stop using ``executor`` (broken, or running a verification that must not go on)."""
    global _executor
    with _lock:
        if _executor is executor:
            _executor = None
    if kill:
        # the executor cannot stop one running job: end its processes (a job of another load
        # running there sees a broken pool and is retried in the new one)
        for proc in list(getattr(executor, "_processes", {}).values()):
            try:
                proc.kill()
            except (OSError, ValueError, AttributeError):
                pass
    try:
        executor.shutdown(wait=False, cancel_futures=True)
    except Exception as exc:      # a broken pool may fail its own shutdown; it is gone anyway
        log.debug("verifier pool shutdown: %s", exc)


class _released:
    """Release an ``RLock`` this thread holds for the ``with`` body, fully (it may be held more
    than once), and take it back as it was: what ``threading.Condition.wait`` does.  Anything
    else (no lock, a lock of another thread) is left as it is."""

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.saved: Any = None

    def __enter__(self) -> None:
        lock = self.lock
        if lock is not None and hasattr(lock, "_release_save") and lock._is_owned():
            self.saved = lock._release_save()

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            self.lock._acquire_restore(self.saved)
