"""What printing trace records needs from the kernel: %p hashing and kallsyms lookups."""
from __future__ import annotations

import hashlib
from typing import Any

_UNSEEN = object()


class Symbols:
    """What printing needs from the kernel: %p hashing and kallsyms lookups."""

    def __init__(self, kernel: Any, key: bytes) -> None:
        self.kallsyms = getattr(kernel, "kallsyms", None)
        self.key = key
        self._hash_raw = False
        self._cache: dict[int, int] = {}
        self._lookups: dict[int, tuple[str, int, int] | None] = {}
        # Texts of ``%p`` and ``%pS`` pointers already printed, by value (filled and read by
        # the context printers of printfmt.py; ``%p``'s depend on ``hash_raw``)
        self.ptr_texts: dict[int, str] = {}
        self.sym_texts: dict[int, str] = {}

    @property
    def hash_raw(self) -> bool:
        """``%p`` prints the raw address (the top-level ``hash-ptr`` option off)."""
        return self._hash_raw

    @hash_raw.setter
    def hash_raw(self, raw: bool) -> None:
        # a new memo after the switch: a printer that took the old one before stores there
        self._hash_raw = raw
        self.ptr_texts = {}

    def hash_ptr(self, addr: int) -> int:
        """ptr_to_id: a keyed hash of the pointer, masked to 32 bits (CONFIG_64BIT); the raw
        address with the top-level ``hash-ptr`` option off."""
        if self._hash_raw:
            return addr
        h = self._cache.get(addr)
        if h is None:
            digest = hashlib.blake2b(addr.to_bytes(8, "little"), digest_size=8, key=self.key)
            h = int.from_bytes(digest.digest(), "little") & 0xFFFFFFFF
            if len(self._cache) < 65536:
                self._cache[addr] = h
        return h

    def lookup(self, addr: int) -> tuple[str, int, int] | None:
        """kallsyms' (name, offset, size) of ``addr``, remembered: kallsyms does not change
        after boot and the same call sites print on every line."""
        hit: Any = self._lookups.get(addr, _UNSEEN)
        if hit is _UNSEEN:
            hit = self.kallsyms.lookup(addr) if self.kallsyms is not None else None
            if len(self._lookups) < 65536:
                self._lookups[addr] = hit
        return hit

    def address_of(self, name: str) -> int | None:
        return self.kallsyms.address_of(name) if self.kallsyms is not None else None
