"""The one memory interface every BPF load, store and atomic goes through.

The VM's address space is a handful of *regions*: the stack (all call frames, one bytearray), the
context (rebound per run), packet data, and buffers owned by others (map values) that are mapped on
demand.  Each region has an address range, a buffer and a writability flag.  Anything outside every
region faults with ``MemoryFault`` (a ``VMError``): the engines turn it into a clean run result.

Kernel memory (the modelled kernel's 0xffff888... addresses) is deliberately not a region: a program
reaches it only through helpers such as probe_read, so a direct load from it faults.

Addresses are fixed so the JIT can treat "context + k" and "frame pointer + k" as compile-time
constants and read those buffers directly.
"""
from __future__ import annotations

import struct

from tracesim.filters.bpf.vm.isa import MAX_CALL_DEPTH, STACK_SIZE


class VMError(Exception):
    """A clean runtime error of a BPF program (fault, budget, call depth)."""


class MemoryFault(VMError):
    def __init__(self, addr: int, size: int, write: bool, why: str = "") -> None:
        self.addr, self.size, self.write = addr, size, write
        kind = "write" if write else "read"
        super().__init__(why or f"invalid {kind} of {size} bytes at {addr:#x}")


# Fixed layout (all below the kernel's 0xffff8880... half, far apart so over-runs fault).
CTX_BASE = 0x0000_1000_0000
PACKET_BASE = 0x0000_2000_0000
DYNAMIC_BASE = 0x0000_4000_0000      # map values and other buffers mapped on demand
STACK_BASE = 0x0000_7FF0_0000
STACK_BYTES = STACK_SIZE * MAX_CALL_DEPTH
STACK_TOP = STACK_BASE + STACK_BYTES  # r10 of the outermost frame
_GUARD = 0x1000

UNPACK = {1: struct.Struct("<B").unpack_from, 2: struct.Struct("<H").unpack_from,
          4: struct.Struct("<I").unpack_from, 8: struct.Struct("<Q").unpack_from}
PACK = {1: struct.Struct("<B").pack_into, 2: struct.Struct("<H").pack_into,
        4: struct.Struct("<I").pack_into, 8: struct.Struct("<Q").pack_into}
MASKS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF, 8: 0xFFFFFFFFFFFFFFFF}


class Region:
    """``[start, end)`` backed by ``buf``; ``end`` follows the buffer when it is rebound."""
    __slots__ = ("name", "start", "end", "buf", "writable")

    def __init__(self, name: str, start: int, buf, writable: bool) -> None:
        self.name, self.start, self.buf = name, start, buf
        self.end = start + len(buf)
        self.writable = writable and not isinstance(buf, bytes)

    def rebind(self, buf, writable: bool) -> None:
        self.buf = buf
        self.end = self.start + len(buf)
        self.writable = writable and not isinstance(buf, bytes)

    def __repr__(self) -> str:
        return f"Region({self.name}, {self.start:#x}-{self.end:#x}, {'rw' if self.writable else 'ro'})"


class Memory:
    """An address space of regions; ``load``/``store`` are little-endian, unsigned."""

    def __init__(self) -> None:
        self.regions: list[Region] = []
        self._by_buffer: dict[int, Region] = {}
        self._next = DYNAMIC_BASE

    # -- mapping ---------------------------------------------------------------------------------
    def map(self, name: str, buf, *, writable: bool, start: int | None = None) -> Region:
        if start is None:
            start = self._next
            self._next = (start + len(buf) + _GUARD + 15) & ~15
        region = Region(name, start, buf, writable)
        self.regions.append(region)
        return region

    def unmap(self, region: Region) -> None:
        self.regions.remove(region)
        self._by_buffer.pop(id(region.buf), None)

    def address_of(self, buf, *, writable: bool = True, name: str = "buffer") -> int:
        """Address of a long-lived buffer (e.g. a map value), mapping it on first use."""
        region = self._by_buffer.get(id(buf))
        if region is None or region.buf is not buf:
            region = self.map(name, buf, writable=writable)
            self._by_buffer[id(buf)] = region
        return region.start

    def find(self, addr: int, size: int, write: bool = False) -> Region:
        for region in self.regions:
            if region.start <= addr and addr + size <= region.end:
                if write and not region.writable:
                    raise MemoryFault(addr, size, True, f"write of {size} bytes to read-only "
                                      f"{region.name} at {addr:#x}")
                return region
        raise MemoryFault(addr, size, write)

    # -- access ----------------------------------------------------------------------------------
    def load(self, addr: int, size: int) -> int:
        region = self.find(addr, size)
        return UNPACK[size](region.buf, addr - region.start)[0]

    def store(self, addr: int, size: int, value: int) -> None:
        region = self.find(addr, size, True)
        PACK[size](region.buf, addr - region.start, value & MASKS[size])

    def read(self, addr: int, n: int) -> bytes:
        """``n`` bytes at ``addr`` (for helpers); faults like a load."""
        if n == 0:
            return b""
        region = self.find(addr, n)
        off = addr - region.start
        return bytes(region.buf[off:off + n])

    def write(self, addr: int, data: bytes) -> None:
        """Store ``data`` at ``addr`` (for helpers); faults like a store."""
        if not data:
            return
        region = self.find(addr, len(data), True)
        off = addr - region.start
        region.buf[off:off + len(data)] = data
