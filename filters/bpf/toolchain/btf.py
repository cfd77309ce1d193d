"""BTF, the BPF Type Format (`.BTF` section): decode what clang writes, encode what `tracesim cc` writes.

Only the parts an object needs are modelled: the type records (kinds 1..19 of
``include/uapi/linux/btf.h``), the string table, and look-ups the ELF loader uses to read
BTF-defined maps (``struct { __uint(type, ...); __type(key, ...); ... } m SEC(".maps")``): a map's
attributes are encoded in its type, ``__uint(name, N)`` as a pointer to an array of N ints.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

MAGIC = 0xEB9F
HEADER = struct.Struct("<HBBIIIII")   # magic, version, flags, hdr_len, type_off/len, str_off/len

(INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO,
 VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64) = range(1, 20)
KIND_NAMES = {INT: "INT", PTR: "PTR", ARRAY: "ARRAY", STRUCT: "STRUCT", UNION: "UNION", ENUM: "ENUM",
              FWD: "FWD", TYPEDEF: "TYPEDEF", VOLATILE: "VOLATILE", CONST: "CONST",
              RESTRICT: "RESTRICT", FUNC: "FUNC", FUNC_PROTO: "FUNC_PROTO", VAR: "VAR",
              DATASEC: "DATASEC", FLOAT: "FLOAT", DECL_TAG: "DECL_TAG", TYPE_TAG: "TYPE_TAG",
              ENUM64: "ENUM64"}
# Kinds that only qualify or rename another type (followed when resolving).
MODIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)
INT_SIGNED, INT_CHAR, INT_BOOL = 1, 2, 4
VAR_STATIC, VAR_GLOBAL = 0, 1


class BtfError(ValueError):
    """A malformed .BTF section or a type the caller cannot use."""


@dataclass
class BtfType:
    """One type record.  ``ref`` is the size (INT, STRUCT, UNION, ENUM, DATASEC, FLOAT) or the
    referenced type id (PTR, TYPEDEF, modifiers, FUNC, VAR, DECL_TAG)."""
    kind: int
    name: str = ""
    ref: int = 0
    vlen: int = 0
    kind_flag: bool = False
    int_bits: int = 0            # INT: nr_bits
    int_encoding: int = 0        # INT: INT_SIGNED | INT_CHAR | INT_BOOL
    array: tuple[int, int, int] = (0, 0, 0)     # ARRAY: elem type, index type, nelems
    members: list[tuple[str, int, int]] = field(default_factory=list)
    # STRUCT/UNION: (name, type, bit offset | bitfield size << 24 when kind_flag);
    # ENUM/ENUM64: (name, value, 0); FUNC_PROTO: (name, type, 0)
    secinfo: list[tuple[int, int, int]] = field(default_factory=list)   # DATASEC: (type, off, size)
    linkage: int = 0             # VAR, FUNC (vlen)
    component_idx: int = 0       # DECL_TAG


@dataclass
class Btf:
    types: list[BtfType]         # index = type id; 0 is void
    strings: bytes = b"\0"

    # -- look-ups
    def resolve(self, type_id: int) -> int:
        """Follow typedefs and qualifiers to the type they name."""
        seen = 0
        while 0 < type_id < len(self.types) and self.types[type_id].kind in MODIFIERS:
            type_id = self.types[type_id].ref
            seen += 1
            if seen > 64:
                raise BtfError("BTF type loop through typedefs/modifiers")
        return type_id

    def get(self, type_id: int) -> BtfType:
        if not 0 < type_id < len(self.types):
            raise BtfError(f"BTF type id {type_id} out of range")
        return self.types[type_id]

    def size_of(self, type_id: int) -> int:
        count = 1
        for _ in range(64):                  # arrays of arrays; a loop is malformed BTF
            t = self.get(self.resolve(type_id))
            if t.kind in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT, DATASEC):
                return t.ref * count
            if t.kind == PTR:
                return 8 * count
            if t.kind != ARRAY:
                raise BtfError(f"BTF type [{type_id}] {KIND_NAMES.get(t.kind, t.kind)} has no size")
            count *= t.array[2]
            type_id = t.array[0]
        raise BtfError("BTF type loop through arrays")

    def find(self, kind: int, name: str) -> int | None:
        for i, t in enumerate(self.types):
            if i and t.kind == kind and t.name == name:
                return i
        return None

    def datasec(self, name: str) -> list[tuple[str, int, int, int]]:
        """Variables of a DATASEC: (var name, var's type id, offset, size)."""
        sec = self.find(DATASEC, name)
        if sec is None:
            return []
        out = []
        for var_id, off, size in self.types[sec].secinfo:
            var = self.get(var_id)
            out.append((var.name, var.ref, off, size))
        return out

    def type_name(self, type_id: int) -> str:
        """C-like spelling for messages and map dumps: ``u64``, ``struct foo``, ``char[16]``."""
        if type_id == 0:
            return "void"
        t = self.get(type_id)
        if t.kind in (STRUCT, UNION):
            return f"{'struct' if t.kind == STRUCT else 'union'} {t.name or '(anon)'}"
        if t.kind in (ENUM, ENUM64):
            return f"enum {t.name or '(anon)'}"
        if t.kind == PTR:
            return f"{self.type_name(t.ref)} *"
        if t.kind == ARRAY:
            return f"{self.type_name(t.array[0])}[{t.array[2]}]"
        if t.kind in (CONST, VOLATILE, RESTRICT):
            return f"{KIND_NAMES[t.kind].lower()} {self.type_name(t.ref)}"
        return t.name or KIND_NAMES.get(t.kind, "?")

    def map_attributes(self, type_id: int) -> dict[str, int]:
        """A BTF-defined map's attributes: ``__uint`` members as numbers, ``__type`` members as
        ``<name>_type`` ids (plus ``key_size``/``value_size`` computed from them)."""
        struct_t = self.get(self.resolve(type_id))
        if struct_t.kind != STRUCT:
            raise BtfError(f"map definition is a {KIND_NAMES.get(struct_t.kind)}, expected a struct")
        attrs: dict[str, int] = {}
        for name, mtype, bit_off in struct_t.members:
            member = self.get(self.resolve(mtype))
            if name == "values" and member.kind == ARRAY:
                # __array(values, T): initial slots (.rel.maps), their type an inner map
                # definition (maps of maps) or a program (program arrays)
                attrs["values_offset"] = (bit_off & 0xFFFFFF) // 8
                elem = self.get(self.resolve(member.array[0]))
                inner = self.resolve(elem.ref) if elem.kind == PTR else 0
                if inner and self.get(inner).kind == STRUCT:
                    attrs["inner_type"] = inner
                continue
            if member.kind in (ENUM, ENUM64) and member.members:
                attrs[name] = member.members[0][1]       # __ulong(name, v): enum { x = v }
                continue
            ptr = member
            if ptr.kind != PTR:
                raise BtfError(f"map attribute '{name}' is not a pointer (use __uint/__type)")
            target_id = self.resolve(ptr.ref)
            target = self.get(target_id) if target_id else None
            if name in ("key", "value"):
                attrs[f"{name}_type"] = ptr.ref
                attrs[f"{name}_size"] = self.size_of(ptr.ref)
            elif target is not None and target.kind == ARRAY:
                attrs[name] = target.array[2]
            else:
                raise BtfError(f"map attribute '{name}' is not __uint(...) or __type(...)")
        return attrs

    # -- encoding
    def encode(self) -> bytes:
        body = b"".join(_encode_type(t, self) for t in self.types[1:])
        hdr = HEADER.pack(MAGIC, 1, 0, HEADER.size, 0, len(body), len(body), len(self.strings))
        return hdr + body + self.strings


def _encode_type(t: BtfType, btf: Btf) -> bytes:
    name_off = _string_offset(btf, t.name)
    vlen = {STRUCT: len(t.members), UNION: len(t.members), ENUM: len(t.members),
            ENUM64: len(t.members), FUNC_PROTO: len(t.members), DATASEC: len(t.secinfo),
            FUNC: t.linkage}.get(t.kind, 0)
    info = (vlen & 0xFFFF) | (t.kind << 24) | (int(t.kind_flag) << 31)
    out = struct.pack("<III", name_off, info, t.ref)
    if t.kind == INT:
        out += struct.pack("<I", (t.int_encoding << 24) | t.int_bits)
    elif t.kind == ARRAY:
        out += struct.pack("<III", *t.array)
    elif t.kind in (STRUCT, UNION):
        out += b"".join(struct.pack("<III", _string_offset(btf, n), ty, off)
                        for n, ty, off in t.members)
    elif t.kind == ENUM:
        out += b"".join(struct.pack("<Ii", _string_offset(btf, n), v) for n, v, _ in t.members)
    elif t.kind == FUNC_PROTO:
        out += b"".join(struct.pack("<II", _string_offset(btf, n), ty) for n, ty, _ in t.members)
    elif t.kind == VAR:
        out += struct.pack("<I", t.linkage)
    elif t.kind == DATASEC:
        out += b"".join(struct.pack("<III", *s) for s in t.secinfo)
    elif t.kind == DECL_TAG:
        out += struct.pack("<i", t.component_idx)
    return out


def _string_offset(btf: Btf, s: str) -> int:
    if not s:
        return 0
    raw = s.encode() + b"\0"
    at = btf.strings.find(b"\0" + raw)
    if at >= 0:
        return at + 1
    off = len(btf.strings)
    btf.strings += raw
    return off


def parse(data: bytes) -> Btf:
    """Decode a .BTF section."""
    if len(data) < HEADER.size:
        raise BtfError(f".BTF is {len(data)} bytes, shorter than its header")
    magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BtfError(f".BTF has magic {magic:#x}, expected {MAGIC:#x}")
    if version != 1:
        raise BtfError(f".BTF version {version} is not supported")
    types_at, strs_at = hdr_len + type_off, hdr_len + str_off
    if types_at + type_len > len(data) or strs_at + str_len > len(data):
        raise BtfError(".BTF header points past the end of the section")
    strings = data[strs_at:strs_at + str_len]

    def string(off: int) -> str:
        end = strings.find(b"\0", off)
        if off >= len(strings) or end < 0:
            raise BtfError(f".BTF string offset {off} out of range")
        return strings[off:end].decode("utf-8", "replace")

    types = [BtfType(0)]
    pos, end = types_at, types_at + type_len
    try:
        while pos < end:
            name_off, info, ref = struct.unpack_from("<III", data, pos)
            pos += 12
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            t = BtfType(kind, string(name_off), ref, vlen, bool(info >> 31))
            if kind == INT:
                (enc,) = struct.unpack_from("<I", data, pos)
                t.int_bits, t.int_encoding = enc & 0xFF, (enc >> 24) & 0x0F
                pos += 4
            elif kind == ARRAY:
                t.array = struct.unpack_from("<III", data, pos)
                pos += 12
            elif kind in (STRUCT, UNION):
                for _ in range(vlen):
                    n, ty, off = struct.unpack_from("<III", data, pos)
                    t.members.append((string(n), ty, off))
                    pos += 12
            elif kind == ENUM:
                for _ in range(vlen):
                    n, v = struct.unpack_from("<Ii", data, pos)
                    t.members.append((string(n), v, 0))
                    pos += 8
            elif kind == ENUM64:
                for _ in range(vlen):
                    n, lo, hi = struct.unpack_from("<III", data, pos)
                    t.members.append((string(n), lo | (hi << 32), 0))
                    pos += 12
            elif kind == FUNC_PROTO:
                for _ in range(vlen):
                    n, ty = struct.unpack_from("<II", data, pos)
                    t.members.append((string(n), ty, 0))
                    pos += 8
            elif kind == VAR:
                (t.linkage,) = struct.unpack_from("<I", data, pos)
                pos += 4
            elif kind == DATASEC:
                for _ in range(vlen):
                    t.secinfo.append(struct.unpack_from("<III", data, pos))
                    pos += 12
            elif kind == DECL_TAG:
                (t.component_idx,) = struct.unpack_from("<i", data, pos)
                pos += 4
            elif kind == FUNC:
                t.linkage = vlen
            elif kind not in (PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FLOAT, TYPE_TAG):
                raise BtfError(f".BTF type [{len(types)}] has unknown kind {kind}")
            types.append(t)
    except struct.error as e:
        raise BtfError(f".BTF type section is truncated ({e})") from None
    return Btf(types, bytes(strings) or b"\0")
