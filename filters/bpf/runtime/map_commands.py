"""Control-channel commands for BPF maps: ``tracesim ctl MOUNTPOINT maps`` and ``... map dump NAME``.

    maps, map list        one line per live map: id, name, type, sizes, entries, where it runs
    map dump NAME|ID      every element; keys and values decoded by the object's BTF when it has
                          one (ints, pointers, char arrays as strings, structs, enums), else hex
                          bytes as bpftool prints them; per-CPU maps show one value per CPU; a
                          ring buffer prints and consumes its pending records
    map lookup NAME|ID key BYTES                  one element (bpftool's key syntax: bytes in
    map update NAME|ID key BYTES value BYTES [any|noexist|exist]   decimal or 0x hex, or
    map delete NAME|ID key BYTES                  ``hex`` then hex bytes; a lone number fills an
                                                  integer key or value of its size)

``run(filters, argv, lock=None) -> (status, text)`` follows ``tracesim.kernel_model.control``: 0 success,
1 a failed operation, 2 a usage error.
"""
from __future__ import annotations

import contextlib
import errno
import os
from typing import Any

from tracesim.filters.bpf.runtime.maps import (
    BPF_ANY,
    BPF_EXIST,
    BPF_NOEXIST,
    MAP_TYPE_NAMES,
    MAP_TYPE_RINGBUF,
    MapError,
)
from tracesim.filters.bpf.toolchain import btf as btfmod

COMMANDS = ("maps", "map")
USAGE = ("usage: maps | map list | map dump NAME|ID | map lookup NAME|ID key BYTES | "
         "map update NAME|ID key BYTES value BYTES [any|noexist|exist] | "
         "map delete NAME|ID key BYTES\n")
UPDATE_FLAGS = {"any": BPF_ANY, "noexist": BPF_NOEXIST, "exist": BPF_EXIST}


def run(filters: Any, argv: list[str], lock: Any = None) -> tuple[int, str]:
    """Run ``maps`` or ``map dump NAME|ID`` against a ``BpfFilters`` registry."""
    with lock if lock is not None else contextlib.nullcontext():
        if argv in (["maps"], ["map", "list"]):
            return 0, maps_text(filters)
        if len(argv) >= 3 and argv[0] == "map" and argv[1] in ("dump", "lookup", "update",
                                                                "delete"):
            entry = find_map(filters, argv[2])
            if entry is None:
                return 1, f"map {argv[1]}: no map named '{argv[2]}' (see: maps)\n"
            if argv[1] == "dump":
                return (0, dump_text(entry)) if len(argv) == 3 else (2, USAGE)
            return element_command(entry, argv[1], argv[3:])
    return 2, USAGE


def element_command(entry: Any, action: str, words: list[str]) -> tuple[int, str]:
    """``lookup``/``update``/``delete`` of one element, with the kernel's errno as bpftool
    reports it (``Error: ...: No such file or directory``)."""
    m = entry.map
    try:
        key_words, value_words, flags = _element_words(words, action)
        key = parse_bytes(key_words, m.key_size)
        if action == "lookup":
            value = m.lookup(key)
            if value is None:
                raise MapError(errno.ENOENT, "no such element")
            return 0, _element_line(entry, key, value) + "\n"
        if getattr(m, "frozen", False):
            raise MapError(errno.EPERM, "the map is frozen")
        if action == "delete":
            m.delete(key)
        else:
            m.update(key, parse_bytes(value_words, m.value_size), flags)
    except ValueError as e:
        return 2, f"Error: {e}\n{USAGE}"
    except MapError as e:
        return 1, f"Error: {action} failed: {os.strerror(e.errno)}\n"
    return 0, ""


def _element_words(words: list[str], action: str) -> tuple[list[str], list[str], int]:
    if not words or words[0] != "key":
        raise ValueError("expected: key BYTES")
    rest = words[1:]
    flags = BPF_ANY
    if action != "update":
        return rest, [], flags
    if "value" not in rest:
        raise ValueError("expected: value BYTES")
    at = rest.index("value")
    value = rest[at + 1:]
    if value and value[-1] in UPDATE_FLAGS:
        flags = UPDATE_FLAGS[value.pop()]
    return rest[:at], value, flags


def parse_bytes(words: list[str], size: int) -> bytes:
    """bpftool's byte syntax: ``1 0 0 0`` / ``0x01 0 0 0`` / ``hex 01 00 00 00``; a lone
    number fills ``size`` bytes little-endian (an integer key)."""
    if words[:1] == ["hex"]:
        try:
            data = bytes.fromhex("".join(words[1:]))
        except ValueError:
            raise ValueError(f"invalid hex bytes: {' '.join(words[1:])}") from None
    else:
        try:
            numbers = [int(w, 0) for w in words]
        except ValueError:
            raise ValueError(f"invalid byte in: {' '.join(words)}") from None
        if len(numbers) == 1 and size > 1:
            if not 0 <= numbers[0] < 1 << (8 * size):
                raise ValueError(f"{numbers[0]} does not fit in {size} bytes")
            return numbers[0].to_bytes(size, "little")
        if any(not 0 <= n <= 255 for n in numbers):
            raise ValueError(f"a byte is 0..255: {' '.join(words)}")
        data = bytes(numbers)
    if len(data) != size:
        raise ValueError(f"{len(data)} bytes given, the map needs {size}")
    return data


def find_map(filters: Any, name: str) -> Any:
    entries = filters.maps()
    for e in entries:
        if e.map.name == name or name == str(e.id):
            return e
    return None


def maps_text(filters: Any) -> str:
    entries = filters.maps()
    if not entries:
        return "no maps (no BPF filter with maps is attached)\n"
    rows = [("ID", "NAME", "TYPE", "KEY", "VALUE", "MAX_ENTRIES", "ENTRIES", "INSTANCE",
             "EVENTS")]
    for e in entries:
        m = e.map
        count = len(m.records) if m.map_type == MAP_TYPE_RINGBUF else sum(1 for _ in m.items())
        rows.append((str(e.id), m.name, MAP_TYPE_NAMES.get(m.map_type, str(m.map_type)),
                     str(m.key_size), str(m.value_size), str(m.max_entries), str(count),
                     e.instance or "(top)", ",".join(e.events)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] + "\n"
                   for r in rows)


def dump_text(entry: Any) -> str:
    m = entry.map
    if m.map_type == MAP_TYPE_RINGBUF:
        records = m.consume()
        lines = [f"record {i}: {hex_bytes(r)}" for i, r in enumerate(records)]
        return "".join(line + "\n" for line in lines) + f"Found {len(records)} records\n"
    lines = []
    n = 0
    for key, value in m.items():
        n += 1
        lines.append(_element_line(entry, key, value))
    return "".join(line + "\n" for line in lines) + f"Found {n} element{'s' if n != 1 else ''}\n"


def _element_line(entry: Any, key: bytes, value: Any) -> str:
    """``key: K  value: V`` (per-CPU values: one line per CPU), decoded by BTF when known."""
    m, btf = entry.map, entry.btf
    key_type = getattr(m, "key_type", 0) if btf is not None else 0
    value_type = getattr(m, "value_type", 0) if btf is not None else 0
    k = decode(btf, key_type, key) if key_type else hex_bytes(key)
    if isinstance(value, list):
        return "\n".join([f"key: {k}"] + [
            f"  value (CPU {c:02d}): {decode(btf, value_type, v) if value_type else hex_bytes(v)}"
            for c, v in enumerate(value)])
    v = decode(btf, value_type, value) if value_type else hex_bytes(value)
    return f"key: {k}  value: {v}"


def hex_bytes(data: bytes) -> str:
    return " ".join(f"{b:02x}" for b in data)


def decode(btf: Any, type_id: int, data: bytes) -> str:
    """A value as C would spell it, following its BTF type."""
    try:
        return _decode(btf, btf.resolve(type_id), bytes(data))
    except (btfmod.BtfError, IndexError, ValueError):
        return hex_bytes(data)


def _decode(btf: Any, tid: int, data: bytes) -> str:
    t = btf.get(tid)
    if t.kind == btfmod.INT:
        size = t.ref
        signed = bool(t.int_encoding & btfmod.INT_SIGNED)
        value = int.from_bytes(data[:size], "little", signed=signed)
        if t.int_encoding & btfmod.INT_BOOL:
            return "true" if value else "false"
        return str(value)
    if t.kind == btfmod.PTR:
        return f"0x{int.from_bytes(data[:8], 'little'):x}"
    if t.kind in (btfmod.ENUM, btfmod.ENUM64):
        value = int.from_bytes(data[:t.ref], "little")
        names = [name for name, v, _ in t.members if v == value]
        return names[0] if names else str(value)
    if t.kind == btfmod.ARRAY:
        elem, _, count = t.array
        esize = btf.size_of(elem)
        et = btf.get(btf.resolve(elem))
        if et.kind == btfmod.INT and esize == 1 and "char" in et.name:
            text = data[:count].split(b"\0", 1)[0].decode("latin-1")
            return f'"{text}"'
        return "[" + ", ".join(_decode(btf, btf.resolve(elem), data[i * esize:(i + 1) * esize])
                               for i in range(count)) + "]"
    if t.kind in (btfmod.STRUCT, btfmod.UNION):
        parts = []
        for name, mtype, off in t.members:
            bit_off = off & 0xFFFFFF if t.kind_flag else off
            bits = off >> 24 if t.kind_flag else 0
            if bits:
                raw = int.from_bytes(data, "little") >> bit_off & ((1 << bits) - 1)
                parts.append(f"{name} = {raw}")
                continue
            start = bit_off // 8
            size = btf.size_of(mtype)
            parts.append(f"{name} = {_decode(btf, btf.resolve(mtype), data[start:start + size])}")
        return "{" + ", ".join(parts) + "}"
    return hex_bytes(data)
