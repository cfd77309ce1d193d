"""A process's user address space (the part of its ``mm`` the model keeps): user pages.

x86-64 splits the address space: user memory lies below ``TASK_SIZE`` (``TASK_SIZE_MAX`` with
4-level paging, one guard page short of 2^47), the kernel's above ``0xffff800000000000``. Each
user task has its own ``UserSpace``: a fork copies it (copy-on-write, as far as any reader can
tell), an exec replaces it with an empty one, an exit drops it; kernel threads have none.

Only the bytes a modelled syscall hands the kernel are here - the path string a task passes to
``openat`` or ``execve``, stored at the address the task passed - so the kernel's user accessors
(``copy_from_user_nofault``, ``strncpy_from_user_nofault``: probes' ``:ustring`` and ``+u``,
``bpf_probe_read_user``) read what the process had there. Any other user address is not mapped:
reading it faults, as a page that is not present does with page faults disabled.
"""
from __future__ import annotations

from tracesim.kernel_model.mm.memory import PAGE_SHIFT, PAGE_SIZE, TASK_SIZE, KernelFault

__all__ = ["TASK_SIZE", "UserSpace"]


class UserSpace:
    """User pages of one process: page number -> its bytes. Pages appear when written."""

    __slots__ = ("pages",)

    def __init__(self) -> None:
        self.pages: dict[int, bytearray] = {}

    def copy(self) -> UserSpace:
        """The child's copy at fork (dup_mmap)."""
        child = UserSpace()
        child.pages = {n: bytearray(page) for n, page in self.pages.items()}
        return child

    def write(self, addr: int, data: bytes) -> None:
        """The process's own store of ``data`` at ``addr`` (pages it touches are its own)."""
        if addr < 0 or addr + len(data) > TASK_SIZE:
            raise KernelFault(addr, len(data), "unmapped")
        at = 0
        while at < len(data):
            page = self.pages.setdefault((addr + at) >> PAGE_SHIFT, bytearray(PAGE_SIZE))
            off = (addr + at) & (PAGE_SIZE - 1)
            n = min(PAGE_SIZE - off, len(data) - at)
            page[off:off + n] = data[at:at + n]
            at += n

    def read(self, addr: int, size: int) -> bytes:
        """``size`` bytes at ``addr``; raises ``KernelFault`` where a page is not present."""
        out = bytearray()
        while len(out) < size:
            page = self.pages.get((addr + len(out)) >> PAGE_SHIFT)
            if page is None:
                raise KernelFault(addr + len(out), size - len(out), "unmapped")
            off = (addr + len(out)) & (PAGE_SIZE - 1)
            out += page[off:off + size - len(out)]
        return bytes(out)

    def read_cstr(self, addr: int, max_len: int) -> bytes:
        """The NUL-terminated string at ``addr`` (without its NUL), at most ``max_len`` bytes;
        raises ``KernelFault`` at a page that is not present before the string ends."""
        out = bytearray()
        while len(out) < max_len:
            page = self.pages.get((addr + len(out)) >> PAGE_SHIFT)
            if page is None:
                raise KernelFault(addr + len(out), 1, "unmapped")
            off = (addr + len(out)) & (PAGE_SIZE - 1)
            stop = min(PAGE_SIZE, off + max_len - len(out))
            nul = page.find(0, off, stop)
            out += page[off:stop if nul < 0 else nul]
            if nul >= 0:
                break
        return bytes(out)

