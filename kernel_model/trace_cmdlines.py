"""``saved_cmdlines``: the pid → comm map the trace output prints task names from."""
from __future__ import annotations

import errno

from kernel_model.trace_errlog import os_error

SAVED_CMDLINES_DEFAULT = 128


class SavedCmdlines:
    """pid → comm as ``saved_cmdlines`` keeps them (a fixed number of slots, oldest replaced)."""

    def __init__(self, size: int = SAVED_CMDLINES_DEFAULT) -> None:
        self.size = size
        self.map: dict[int, str] = {}

    def record(self, pid: int, comm: str) -> None:
        if self.map.get(pid) == comm:
            return
        self.map.pop(pid, None)
        if len(self.map) >= self.size:
            del self.map[next(iter(self.map))]
        self.map[pid] = comm

    def find(self, pid: int) -> str:
        """trace_find_cmdline: ``<idle>`` for pid 0, ``<...>`` when not saved."""
        if pid == 0:
            return "<idle>"
        return self.map.get(pid, "<...>")

    def text(self) -> str:
        return "".join(f"{pid} {comm}\n" for pid, comm in self.map.items())

    def resize(self, size: int) -> None:
        if size < 1 or size > 32768:       # PID_MAX_DEFAULT
            raise os_error(errno.EINVAL)
        self.size = size
        while len(self.map) > size:
            del self.map[next(iter(self.map))]
