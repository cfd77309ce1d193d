"""The modelled kernel's address space.

Memory is a set of *regions*, each a page-aligned run of bytes (a ``bytearray``) at an address in
the x86-64 direct map (``0xffff888100000000`` up) or, for kernel text, at ``0xffffffff81000000``.
A region may be cut into equal *objects* (a slab): then each object is live or free, and touching
a free object faults the way a use-after-free does under KASAN. Anything outside every region is
unmapped and faults too.

Reads and writes are little-endian. ``KernelFault`` is what a bad access raises inside the model;
``probe_read``/``probe_read_str`` are the BPF-facing forms that turn a fault into ``-EFAULT`` and
zero-filled output, as ``bpf_probe_read_kernel`` and ``bpf_probe_read_kernel_str`` do.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
DIRECT_MAP_BASE = 0xffff888100000000   # where the model starts handing out direct-map pages
KERNEL_TEXT_BASE = 0xffffffff81000000  # _stext on x86-64 without KASLR
EFAULT = 14
TASK_SIZE = (1 << 47) - PAGE_SIZE     # x86-64 TASK_SIZE_MAX (kernel_model/mm/user.py)


def _no_mm() -> Any:
    return None

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_INT_STRUCTS = {
    (1, False): _U8, (2, False): _U16, (4, False): _U32, (8, False): _U64,
    (1, True): struct.Struct("<b"), (2, True): struct.Struct("<h"),
    (4, True): struct.Struct("<i"), (8, True): struct.Struct("<q"),
}


class KernelFault(Exception):
    """An access to memory the model has not mapped (``unmapped``) or has freed (``freed``)."""

    def __init__(self, addr: int, size: int, kind: str) -> None:
        super().__init__(f"kernel fault: {kind} address 0x{addr:x} (size {size})")
        self.addr = addr
        self.size = size
        self.kind = kind


class Region:
    """A mapped, page-aligned run of memory; optionally a slab of ``obj_size`` objects.

    ``live`` is None when the whole region is accessible, else one byte per object (1 = allocated).
    ``owner`` is whoever manages the region (a ``KmemCache`` for slabs), for ``kfree`` to find.
    """

    __slots__ = ("base", "size", "end", "buf", "name", "obj_size", "live", "owner")

    def __init__(self, base: int, size: int, name: str, obj_size: int = 0,
                 owner: object = None) -> None:
        self.base = base
        self.size = size
        self.end = base + size
        self.buf = bytearray(size)
        self.name = name
        self.obj_size = obj_size
        self.live = bytearray(size // obj_size) if obj_size else None
        self.owner = owner

    def accessible(self, off: int, end: int) -> bool:
        """Whether every object touched by ``[off, end)`` (region offsets) is allocated."""
        live = self.live
        if live is None:
            return True
        obj = self.obj_size
        first, last = off // obj, (end - 1) // obj
        if last >= len(live):                 # the tail past the last whole object
            return False
        if first == last:                     # inside one object (probe reads, fields)
            return bool(live[first])
        return all(live[first:last + 1])


class Memory:
    """The kernel address space: map/unmap regions, read/write bytes and integers."""

    def __init__(self) -> None:
        # page number -> region; public so hot paths (slab) can look up without a call
        self.pages: dict[int, Region] = {}
        self._next_direct = DIRECT_MAP_BASE
        self._next_text = KERNEL_TEXT_BASE
        # current->mm (a UserSpace, or None in a kernel thread); the machine sets it
        self.current_mm: Callable[[], Any] = _no_mm

    # ------------------------------------------------------------------ mapping
    def map(self, size: int, name: str, obj_size: int = 0, owner: object = None,
            text: bool = False, at: int | None = None) -> Region:
        """Map a fresh zero-filled region of ``size`` bytes (rounded up to pages).

        It goes in the direct map, or in kernel text with ``text``, or at the page-aligned
        address ``at`` (which must be free).
        """
        if size <= 0:
            raise ValueError("region size must be positive")
        size = (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        if at is not None:
            if at & (PAGE_SIZE - 1) or any((p in self.pages) for p in
                                           range(at >> PAGE_SHIFT, (at + size) >> PAGE_SHIFT)):
                raise ValueError(f"cannot map {size} bytes at 0x{at:x}")
            base = at
        elif text:
            base, self._next_text = self._next_text, self._next_text + size
        else:
            base, self._next_direct = self._next_direct, self._next_direct + size
        region = Region(base, size, name, obj_size, owner)
        for page in range(base >> PAGE_SHIFT, region.end >> PAGE_SHIFT):
            self.pages[page] = region
        return region

    def unmap(self, region: Region) -> None:
        """Remove a region: its addresses fault from now on (the address range is not reused)."""
        for page in range(region.base >> PAGE_SHIFT, region.end >> PAGE_SHIFT):
            if self.pages.get(page) is region:
                del self.pages[page]

    def region_of(self, addr: int) -> Region | None:
        """The region containing ``addr`` (live or not), or None if unmapped."""
        return self.pages.get(addr >> PAGE_SHIFT)

    def resolve(self, addr: int, size: int) -> tuple[bytearray, int]:
        """The backing buffer and offset of ``[addr, addr+size)``; raises ``KernelFault``.

        For callers that want to read or write in place (the VM's loads, mirrored structs). The
        range must lie inside one region.
        """
        region = self.pages.get(addr >> PAGE_SHIFT)
        if region is None:
            raise KernelFault(addr, size, "unmapped")
        off = addr - region.base
        end = off + size
        if end > region.size:
            raise KernelFault(addr, size, "unmapped")
        if region.live is not None and not region.accessible(off, end):
            raise KernelFault(addr, size, "freed")
        return region.buf, off

    # ------------------------------------------------------------------ bytes
    def read(self, addr: int, size: int) -> bytes:
        """``size`` bytes at ``addr``; a range may span adjacent regions. Raises ``KernelFault``."""
        if size <= 0:
            return b""
        region = self.pages.get(addr >> PAGE_SHIFT)
        if region is not None:
            off = addr - region.base
            end = off + size
            if end <= region.size and (region.live is None or region.accessible(off, end)):
                return bytes(region.buf[off:end])
        return self._read_slow(addr, size)

    def _read_slow(self, addr: int, size: int) -> bytes:
        parts = []
        while size > 0:
            region = self.pages.get(addr >> PAGE_SHIFT)
            if region is None:
                raise KernelFault(addr, size, "unmapped")
            off = addr - region.base
            n = min(size, region.size - off)
            if region.live is not None and not region.accessible(off, off + n):
                raise KernelFault(addr, size, "freed")
            parts.append(bytes(region.buf[off:off + n]))
            addr += n
            size -= n
        return b"".join(parts)

    def write(self, addr: int, data: bytes) -> None:
        """Store ``data`` at ``addr`` (within one region). Raises ``KernelFault``."""
        buf, off = self.resolve(addr, len(data))
        buf[off:off + len(data)] = data

    def fill(self, addr: int, size: int, byte: int = 0) -> None:
        """memset."""
        buf, off = self.resolve(addr, size)
        buf[off:off + size] = bytes([byte]) * size

    # ------------------------------------------------------------------ integers
    def read_int(self, addr: int, size: int, signed: bool = False) -> int:
        buf, off = self.resolve(addr, size)
        return _INT_STRUCTS[size, signed].unpack_from(buf, off)[0]

    def write_int(self, addr: int, size: int, value: int) -> None:
        """Store the low ``size`` bytes of ``value`` (two's complement for negatives)."""
        buf, off = self.resolve(addr, size)
        _INT_STRUCTS[size, False].pack_into(buf, off, value & ((1 << (8 * size)) - 1))

    def write_u64(self, addr: int, value: int) -> None:
        self.write_int(addr, 8, value)

    def read_cstr(self, addr: int, max_len: int = 4096) -> bytes:
        """The NUL-terminated string at ``addr`` (without the NUL), at most ``max_len`` bytes."""
        region = self.pages.get(addr >> PAGE_SHIFT)
        if region is not None:     # the usual string: its NUL in the same region, one object
            off = addr - region.base
            nul = region.buf.find(0, off, off + max_len)
            live = region.live
            if nul >= 0 and (live is None or (off // region.obj_size == nul // region.obj_size
                                              and live[off // region.obj_size])):
                return bytes(region.buf[off:nul])
        out = bytearray()
        while len(out) < max_len:
            region = self.pages.get(addr >> PAGE_SHIFT)
            if region is None:
                raise KernelFault(addr, 1, "unmapped")
            off = addr - region.base
            stop = min(region.size, off + max_len - len(out))
            nul = region.buf.find(0, off, stop)
            end = stop if nul < 0 else nul
            if region.live is not None and not region.accessible(off, max(end, off + 1)):
                raise KernelFault(addr, end - off, "freed")
            out += region.buf[off:end]
            if nul >= 0:
                break
            addr += end - off
        return bytes(out)

    # ------------------------------------------------------------------ BPF-facing
    def probe_read(self, addr: int, size: int) -> tuple[int, bytes]:
        """``bpf_probe_read_kernel``: ``(0, data)``, or ``(-EFAULT, size zero bytes)`` on a fault."""
        try:
            return 0, self.read(addr, size)
        except KernelFault:
            return -EFAULT, bytes(size)

    def probe_read_str(self, addr: int, size: int) -> tuple[int, bytes]:
        """``bpf_probe_read_kernel_str`` into a ``size``-byte buffer.

        Returns ``(n, buf)``: n = bytes copied including the NUL (the string is cut to size-1
        bytes and NUL-terminated), buf = exactly the n bytes written. On a fault ``(-EFAULT,
        size zero bytes)``: the kernel clears the whole destination. ``size == 0`` gives (0, b"").
        """
        if size <= 0:
            return 0, b""
        try:
            text = self.read_cstr(addr, size - 1)
        except KernelFault:
            return -EFAULT, bytes(size)
        data = text + b"\0"
        return len(data), data

    # ------------------------------------------------------------------ user memory
    def probe_read_user(self, addr: int, size: int) -> tuple[int, bytes]:
        """``copy_from_user_nofault`` (``bpf_probe_read_user``, a ``+u`` dereference):
        ``(0, data)``, or ``(-EFAULT, size zero bytes)`` for a range outside user space, a
        task without user memory or a page that is not present."""
        mm = self.current_mm()
        if mm is None or size < 0 or not 0 <= addr <= TASK_SIZE - size:
            return -EFAULT, bytes(max(size, 0))
        try:
            return 0, mm.read(addr, size)
        except KernelFault:
            return -EFAULT, bytes(size)

    def probe_read_user_str(self, addr: int, size: int) -> tuple[int, bytes]:
        """``strncpy_from_user_nofault`` into a ``size``-byte buffer, as ``probe_read_str``
        returns it (``bpf_probe_read_user_str``, ``:ustring``)."""
        if size <= 0:
            return 0, b""
        mm = self.current_mm()
        if mm is None or not 0 <= addr < TASK_SIZE:
            return -EFAULT, bytes(size)
        try:
            text = mm.read_cstr(addr, min(size - 1, TASK_SIZE - addr))
        except KernelFault:
            return -EFAULT, bytes(size)
        return len(text) + 1, text + b"\0"

    def probe_mem_read(self, addr: int, size: int) -> tuple[int, bytes]:
        """A trace probe's memory fetch: user memory below ``TASK_SIZE``, else kernel."""
        region = self.pages.get(addr >> PAGE_SHIFT)
        if region is not None:
            off = addr - region.base
            end = off + size
            if end <= region.size and (region.live is None or region.accessible(off, end)):
                return 0, bytes(region.buf[off:end])
        if addr < TASK_SIZE:
            return self.probe_read_user(addr, size)
        return self.probe_read(addr, size)

    def probe_mem_read_str(self, addr: int, size: int) -> tuple[int, bytes]:
        """A trace probe's ``:string`` fetch: a user string below ``TASK_SIZE``, else kernel."""
        if addr < TASK_SIZE:
            return self.probe_read_user_str(addr, size)
        return self.probe_read_str(addr, size)
