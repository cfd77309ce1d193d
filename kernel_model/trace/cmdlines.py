"""``saved_cmdlines``: the pid → comm map the trace output prints task names from."""
from __future__ import annotations

import errno

from tracesim.kernel_model.trace.errlog import os_error

# The kernel asks for 128 slots but allocates whole power-of-two page blocks and then uses all the
# room it got (allocate_cmdlines_buffer, "Round up to actual allocation"): a header holding the
# pid -> slot map for PID_MAX_DEFAULT + 1 pids, then per slot a TASK_COMM_LEN name and a pid.
PID_MAX_DEFAULT = 32768
_HEADER = 131096          # sizeof(struct saved_cmdlines_buffer) on x86_64
_PER_SLOT = 16 + 4        # TASK_COMM_LEN + sizeof(unsigned) for map_cmdline_to_pid
_PAGE = 4096


def allocated_slots(requested: int) -> int:
    """How many cmdlines the kernel's buffer really holds when ``requested`` are asked for."""
    size = _PAGE
    while size < _HEADER + requested * _PER_SLOT:
        size *= 2
    return (size - _HEADER) // _PER_SLOT


SAVED_CMDLINES_DEFAULT = allocated_slots(128)      # 6552, as a 6.18 kernel reads


class SavedCmdlines:
    """pid → comm as ``saved_cmdlines`` keeps them (a fixed number of slots, oldest replaced)."""

    def __init__(self, size: int = SAVED_CMDLINES_DEFAULT) -> None:
        self.size = size
        self.map: dict[int, str] = {}

    def record(self, pid: int, comm: str) -> None:
        if self.map.get(pid) == comm or not pid:      # trace_save_cmdline skips the idle task
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
        if size < 1 or size > PID_MAX_DEFAULT:
            raise os_error(errno.EINVAL)
        self.size = allocated_slots(size)
        while len(self.map) > size:
            del self.map[next(iter(self.map))]
