"""What every part of the tree shares: the modelled kernel, the control lock and the hooks.

``bpf_loader`` is the seam for BPF filters: ``loader(target, object_bytes)`` installs a program
on ``target.files`` (see :class:`tracesim.tracefs.events.BpfTarget`) or raises an OSError (EACCES for a
program that fails to load or verify); ``bpf_unloader(file)`` removes it (``echo 0 > filter``).
Until a loader is installed, writing a BPF object to a ``filter`` file fails with EINVAL, as a
kernel without BPF filters would refuse it as a predicate.
"""
from __future__ import annotations

import contextlib
import errno
import threading
from collections.abc import Callable
from typing import Any

from tracesim.filters.predicate.compile import USTRING_BUF_SIZE
from tracesim.tracefs.caller import caller_comm
from tracesim.tracefs.errors import FsError

BpfLoader = Callable[[Any, bytes], None]


class TreeContext:
    """The kernel behind a tree and the hooks a later layer plugs in."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.tracing = kernel.tracing
        # Control writes run the model like any other thread: under the kernel's lock (which
        # also serializes concurrent FUSE threads, as the kernel's event_mutex does).
        self.lock = getattr(kernel, "lock", None) or threading.RLock()
        self.bpf_loader: BpfLoader | None = None
        self.bpf_unloader: Callable[[Any], None] | None = None

    @property
    def ncpus(self) -> int:
        return self.tracing.ncpus

    def traceable_symbols(self) -> list:
        """Functions ftrace could trace: kallsyms text symbols ('t'/'T') with a size, less
        those built without the ftrace hook."""
        from tracesim.kernel_model.kallsyms import NOTRACE
        return [s for s in self.kernel.kallsyms
                if s.type in "tT" and s.size and s.name not in NOTRACE]

    def traceable_functions(self) -> list[str]:
        return [s.name for s in self.traceable_symbols()]

    def as_caller(self) -> Any:
        """Run the ``with`` body as the modelled task of the calling process (if known)."""
        comm = caller_comm()
        kernel = self.kernel
        if comm is None or not hasattr(kernel, "user_task"):
            return contextlib.nullcontext()
        return kernel.machine.running(kernel.user_task(comm))

    def load_bpf(self, target: Any, obj: bytes) -> None:
        if self.bpf_loader is None:
            raise FsError(errno.EINVAL)
        with self.lock:
            try:
                self.bpf_loader(target, obj)
            except FsError:
                raise
            except OSError as exc:
                raise FsError(exc.errno or errno.EINVAL, exc.strerror) from None

    def unload_bpf(self, file: Any) -> None:
        if self.bpf_unloader is not None:
            self.bpf_unloader(file)
        elif getattr(file, "prog", None) is not None:
            file.set_prog(None)

    def filter_compile_options(self) -> dict[str, Any]:
        """How predicate filters reach kernel memory and symbols (strings behind char *)."""
        options: dict[str, Any] = {"nr_cpu_ids": self.ncpus}
        kernel = self.kernel
        memory = getattr(kernel, "memory", None) or getattr(kernel, "mem", None)
        if memory is not None and hasattr(memory, "read_cstr"):
            options["read_string"] = _fault_to_none(memory.read_cstr)
        if memory is not None and hasattr(memory, "probe_read_user_str"):
            options["read_user_string"] = _user_string(memory.probe_read_user_str)
        kallsyms = getattr(kernel, "kallsyms", None)
        if kallsyms is not None:
            options["symbols"] = KallsymsLookup(kallsyms)
        return options

    def header_event_text(self) -> str:
        from tracesim.kernel_model.trace.ring_buffer import HEADER_EVENT_TEXT
        return HEADER_EVENT_TEXT


def _user_string(read: Callable[[int, int], tuple[int, bytes]]) -> Callable[[int], bytes | None]:
    """A ``.ustring`` read for filters: strncpy_from_user_nofault of the current task's
    memory (None where it faults: the predicate fails)."""
    def read_user_string(addr: int) -> bytes | None:
        n, raw = read(addr, USTRING_BUF_SIZE)
        return None if n < 0 else raw
    return read_user_string


def _fault_to_none(read: Callable[[int], bytes]) -> Callable[[int], bytes | None]:
    """A string read for filters: a faulting address gives None (the predicate fails)."""
    def read_string(addr: int) -> bytes | None:
        try:
            return read(addr)
        except Exception:  # KernelFault: unmapped or freed memory
            return None
    return read_string


class KallsymsLookup:
    """kallsyms as the predicate compiler asks it (``.function`` fields)."""

    def __init__(self, kallsyms: Any) -> None:
        self.kallsyms = kallsyms

    def lookup_name(self, name: str) -> int:
        return self.kallsyms.address_of(name) or 0

    def lookup_size_offset(self, addr: int) -> tuple[int, int] | None:
        found = self.kallsyms.lookup(addr)
        return None if found is None else (found[2], found[1])
