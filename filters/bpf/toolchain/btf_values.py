"""Values of a BPF object's BTF types as user space shows them: ring buffer records, map dumps,
global variables and log2 histograms (``tracesim run``, ``tracesim map``).

* ``to_python(btf, type_id, data)``: ints, bools, enum names, char arrays as strings, other
  arrays as lists, structs and unions as dicts (member name -> value) — what ``--json`` prints;
* ``record_type(btf, size, name, exclude)``: the struct a record of ``size`` bytes is decoded
  with (``--record-type NAME``; otherwise the one struct of that size that is not a map's key,
  value or definition, or failing that the only struct of that size; None: print hex);
* ``log2_hist(vals, label)``: a log2 histogram drawn as bcc's ``print_log2_hist`` draws it;
* ``hist_slots(btf, type_id)``: where a map value holds log2 slots (a struct whose member
  ``slots`` is an integer array, as libbpf-tools' ``struct hist``), or None.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tracesim.filters.bpf.toolchain import btf as btfmod

STARS_MAX = 40


def to_python(btf: Any, type_id: int, data: bytes) -> Any:
    """The value of ``data`` as BTF type ``type_id`` says (hex text if the type is unusable)."""
    try:
        return _value(btf, btf.resolve(type_id), bytes(data))
    except (btfmod.BtfError, IndexError, ValueError):
        return data.hex()


def _value(btf: Any, tid: int, data: bytes) -> Any:
    t = btf.get(tid)
    if t.kind == btfmod.INT:
        value = int.from_bytes(data[:t.ref], "little",
                               signed=bool(t.int_encoding & btfmod.INT_SIGNED))
        return bool(value) if t.int_encoding & btfmod.INT_BOOL else value
    if t.kind == btfmod.PTR:
        return int.from_bytes(data[:8], "little")
    if t.kind in (btfmod.ENUM, btfmod.ENUM64):
        value = int.from_bytes(data[:t.ref], "little")
        return next((name for name, v, _ in t.members if v == value), value)
    if t.kind == btfmod.ARRAY:
        elem, _, count = t.array
        esize = btf.size_of(elem)
        et = btf.get(btf.resolve(elem))
        if et.kind == btfmod.INT and esize == 1 and "char" in et.name:
            return data[:count].split(b"\0", 1)[0].decode("utf-8", "replace")
        return [_value(btf, btf.resolve(elem), data[i * esize:(i + 1) * esize])
                for i in range(count)]
    if t.kind in (btfmod.STRUCT, btfmod.UNION):
        out: dict[str, Any] = {}
        for name, mtype, off in t.members:
            bit_off = off & 0xFFFFFF if t.kind_flag else off
            bits = off >> 24 if t.kind_flag else 0
            if bits:
                out[name] = int.from_bytes(data, "little") >> bit_off & ((1 << bits) - 1)
                continue
            start = bit_off // 8
            value = _value(btf, btf.resolve(mtype), data[start:start + btf.size_of(mtype)])
            if name:
                out[name] = value
            elif isinstance(value, dict):         # an anonymous struct/union: its members
                out.update(value)
        return out
    return data.hex()


def record_type(btf: Any, size: int, name: str | None = None,
                exclude: Iterable[int] = ()) -> int | None:
    """The struct type id to decode a ``size``-byte record with (module docstring); ValueError
    when ``name`` is given but is not a struct of the object."""
    if btf is None:
        if name:
            raise ValueError(f"--record-type {name}: the object has no BTF")
        return None
    structs = [i for i, t in enumerate(btf.types) if i and t.kind == btfmod.STRUCT]
    if name:
        wanted = name.removeprefix("struct ").strip()
        found = next((i for i in structs if btf.types[i].name == wanted), None)
        if found is None:
            raise ValueError(f"--record-type {name}: no struct named '{wanted}' in the object's "
                             "BTF")
        return found
    sized = [i for i in structs if btf.types[i].ref == size]
    excluded = set(exclude)
    written = [i for i in sized if i not in excluded]
    if len(written) == 1:
        return written[0]
    return sized[0] if len(sized) == 1 else None


def map_type_ids(btf: Any, specs: Sequence[Any]) -> set[int]:
    """Struct ids used as map keys, values or definitions: not what programs write to rings."""
    out: set[int] = set()
    if btf is None:
        return out
    for spec in specs:
        for tid in (spec.key_type, spec.value_type):
            if tid:
                out.add(btf.resolve(tid))
    for _, tid, _, _ in btf.datasec(".maps"):
        out.add(btf.resolve(tid))
    return out


def hist_slots(btf: Any, type_id: int) -> tuple[int, int, int] | None:
    """(byte offset, count, element size) of the ``slots`` integer array in a value of type
    ``type_id``, or None when it holds none."""
    if btf is None or not type_id:
        return None
    try:
        t = btf.get(btf.resolve(type_id))
        if t.kind != btfmod.STRUCT:
            return None
        for name, mtype, off in t.members:
            mt = btf.get(btf.resolve(mtype))
            if name == "slots" and mt.kind == btfmod.ARRAY and not t.kind_flag:
                elem = btf.get(btf.resolve(mt.array[0]))
                if elem.kind == btfmod.INT:
                    return off // 8, mt.array[2], elem.ref
    except btfmod.BtfError:
        return None
    return None


def slot_values(data: bytes, where: tuple[int, int, int]) -> list[int]:
    off, count, esize = where
    return [int.from_bytes(data[off + i * esize:off + (i + 1) * esize], "little")
            for i in range(count)]


def _stars(val: int, val_max: int, width: int) -> str:
    stars = min(val, val_max) * width // val_max
    return "*" * stars + " " * (width - stars) + ("+" if val > val_max else "")


def log2_hist(vals: Sequence[int], label: str) -> list[str]:
    """The lines bcc's ``print_log2_hist(vals, vals_size, label)`` prints (none when all are
    zero): slot i counts values in [2^i, 2^(i+1)) (slot 0: 0 and 1)."""
    idx_max = max((i for i, v in enumerate(vals) if v > 0), default=-1)
    if idx_max < 0:
        return []
    val_max = max(vals)
    narrow = idx_max <= 32
    lines = [f"{'':{5 if narrow else 15}}{label:<{19 if narrow else 29}} : count    distribution"]
    stars = STARS_MAX if narrow else STARS_MAX // 2
    width = 10 if narrow else 20
    for i in range(idx_max + 1):
        low, high = (1 << (i + 1)) >> 1, (1 << (i + 1)) - 1
        if low == high:
            low -= 1
        lines.append(f"{low:>{width}} -> {high:<{width}} : {vals[i]:<8} |"
                     f"{_stars(vals[i], val_max, stars)}|")
    return lines
