"""Control-channel commands for BPF maps: ``tracesim ctl MOUNTPOINT maps`` and ``... map dump NAME``.

    maps                  one line per live map: id, name, type, sizes, entries, where it runs
    map dump NAME|ID      every element; keys and values decoded by the object's BTF when it has
                          one (ints, pointers, char arrays as strings, structs, enums), else hex
                          bytes as bpftool prints them; per-CPU maps show one value per CPU; a
                          ring buffer prints and consumes its pending records

``run(filters, argv, lock=None) -> (status, text)`` follows ``tracesim.kernel_model.control``: 0 success,
1 a failed operation, 2 a usage error.
"""
from __future__ import annotations

import contextlib
from typing import Any

from tracesim.filters.bpf.runtime.maps import MAP_TYPE_NAMES, MAP_TYPE_RINGBUF
from tracesim.filters.bpf.toolchain import btf as btfmod

COMMANDS = ("maps", "map")
USAGE = "usage: maps | map dump NAME|ID\n"


def run(filters: Any, argv: list[str], lock: Any = None) -> tuple[int, str]:
    """Run ``maps`` or ``map dump NAME|ID`` against a ``BpfFilters`` registry."""
    with lock if lock is not None else contextlib.nullcontext():
        if argv == ["maps"]:
            return 0, maps_text(filters)
        if len(argv) == 3 and argv[:2] == ["map", "dump"]:
            entry = find_map(filters, argv[2])
            if entry is None:
                return 1, f"map dump: no map named '{argv[2]}' (see: maps)\n"
            return 0, dump_text(entry)
    return 2, USAGE


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
    m, btf = entry.map, entry.btf
    if m.map_type == MAP_TYPE_RINGBUF:
        records = m.consume()
        lines = [f"record {i}: {hex_bytes(r)}" for i, r in enumerate(records)]
        return "".join(line + "\n" for line in lines) + f"Found {len(records)} records\n"
    key_type = getattr(m, "key_type", 0) if btf is not None else 0
    value_type = getattr(m, "value_type", 0) if btf is not None else 0
    lines = []
    n = 0
    for key, value in m.items():
        n += 1
        k = decode(btf, key_type, key) if key_type else hex_bytes(key)
        if isinstance(value, list):
            lines.append(f"key: {k}")
            lines += [f"  value (CPU {c:02d}): "
                      f"{decode(btf, value_type, v) if value_type else hex_bytes(v)}"
                      for c, v in enumerate(value)]
        else:
            v = decode(btf, value_type, value) if value_type else hex_bytes(value)
            lines.append(f"key: {k}  value: {v}")
    return "".join(line + "\n" for line in lines) + f"Found {n} element{'s' if n != 1 else ''}\n"


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
