"""CO-RE relocations, applied as libbpf applies them (``relo_core.c``): each ``.BTF.ext``
relocation names a local type, an access string (``0:1:3``) and a kind; the field, type or
enumerator it reaches in the program's own BTF is looked up by name in the target BTF (the
model's kernel), and the instruction is patched with the target's offset, size or value.

    relocs = parse_btf_ext(ext_bytes, local_btf).core_relos[".text"]
    result = relocate(insns, relocs, local_btf, target_btf, prog_name="prog")

``result.insns`` are the patched instructions, ``result.log`` libbpf's debug/warning lines.
``apply_to_elf(object_bytes, target_btf)`` does it for every section of a BPF object and gives
back the object with its instructions patched, for a loader to call before it reads them. A
relocation that cannot be resolved (a field the target lacks, a missing enumerator) poisons its
instruction with a call to helper 195896080 (``0xbad2310``), which the verifier rejects only if
the instruction is reachable; a malformed relocation raises ``CoreReloError`` with libbpf's
message and errno. Candidates are the target types of a compatible kind whose name, with any
``___flavor`` suffix cut off, equals the local one.
"""
from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field
from typing import Any

from tracesim.filters.bpf.toolchain import btf as B
from tracesim.filters.bpf.vm.isa import Insn, decode, encode

(FIELD_BYTE_OFFSET, FIELD_BYTE_SIZE, FIELD_EXISTS, FIELD_SIGNED, FIELD_LSHIFT_U64,
 FIELD_RSHIFT_U64, TYPE_ID_LOCAL, TYPE_ID_TARGET, TYPE_EXISTS, TYPE_SIZE, ENUMVAL_EXISTS,
 ENUMVAL_VALUE, TYPE_MATCHES) = range(13)
KIND_NAMES = ("byte_off", "byte_sz", "field_exists", "signed", "lshift_u64", "rshift_u64",
              "local_type_id", "target_type_id", "type_exists", "type_size", "enumval_exists",
              "enumval_value", "type_matches")
FIELD_KINDS = range(FIELD_BYTE_OFFSET, FIELD_RSHIFT_U64 + 1)
TYPE_KINDS = (TYPE_ID_LOCAL, TYPE_ID_TARGET, TYPE_EXISTS, TYPE_SIZE, TYPE_MATCHES)
ENUMVAL_KINDS = (ENUMVAL_EXISTS, ENUMVAL_VALUE)
POISON_IMM = 195896080            # 0xbad2310, "bad relo"
SPEC_MAX_LEN = 64                 # BPF_CORE_SPEC_MAX_LEN
SHRT_MAX = 0x7FFF
BPF_CALL = 0x85
_SIZES = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}      # BPF_W, BPF_H, BPF_B, BPF_DW -> bytes


class CoreReloError(Exception):
    """A relocation libbpf refuses: ``errno`` and the message it logs."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.errno = code


@dataclass(frozen=True)
class CoreRelo:
    insn_off: int           # bytes from the start of the ELF section
    type_id: int            # local root type
    access: str             # "0:1:3"
    kind: int


@dataclass
class BtfExt:
    """``.BTF.ext``: per ELF section, func_info (insn_off, type_id), line_info (insn_off,
    file, line text, line, column) and CO-RE relocations."""
    func_info: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    line_info: dict[str, list[tuple[int, str, str, int, int]]] = field(default_factory=dict)
    core_relos: dict[str, list[CoreRelo]] = field(default_factory=dict)


def _string(btf: B.Btf, off: int) -> str:
    end = btf.strings.find(b"\0", off)
    if off >= len(btf.strings) or end < 0:
        raise CoreReloError(errno.EINVAL, f".BTF.ext string offset {off} is out of range")
    return btf.strings[off:end].decode("utf-8", "replace")


def parse_btf_ext(data: bytes, btf: B.Btf) -> BtfExt:
    """Decode ``.BTF.ext`` (its names point into ``btf``'s strings)."""
    if len(data) < 8:
        raise CoreReloError(errno.EINVAL, "BTF.ext header not found")
    magic, version, flags, hdr_len = struct.unpack_from("<HBBI", data)
    if magic != B.MAGIC:
        raise CoreReloError(errno.EINVAL, f"Invalid BTF.ext magic:{magic:x}")
    if version != 1:
        raise CoreReloError(errno.ENOTSUP, f"Unsupported BTF.ext version:{version}")
    if flags:
        raise CoreReloError(errno.EINVAL, f"Unsupported BTF.ext flags:{flags:x}")
    if hdr_len < 24 or hdr_len > len(data):
        raise CoreReloError(errno.EINVAL, "BTF.ext header not found")
    fields = struct.unpack_from("<4I", data, 8)
    parts = [("func_info", fields[0], fields[1], 8), ("line_info", fields[2], fields[3], 16)]
    if hdr_len >= 32:
        core_off, core_len = struct.unpack_from("<II", data, 24)
        parts.append(("core_relo", core_off, core_len, 16))
    ext = BtfExt()
    for what, off, length, min_size in parts:
        if not length:
            continue
        start = hdr_len + off
        if off % 4 or start + length > len(data):
            raise CoreReloError(errno.EINVAL, f"{what} section is not aligned to 4 bytes"
                                if off % 4 else f"{what} section (off:{off} len:{length}) "
                                "is past the end of BTF.ext")
        for sec, records in _subsection(data[start:start + length], min_size, what, btf):
            if what == "func_info":
                ext.func_info[sec] = [struct.unpack_from("<II", r) for r in records]
            elif what == "line_info":
                out = ext.line_info[sec] = []
                for r in records:
                    insn_off, file_off, line_off, col = struct.unpack_from("<4I", r)
                    out.append((insn_off, _string(btf, file_off), _string(btf, line_off),
                                col >> 10, col & 0x3FF))
            else:
                relos = ext.core_relos[sec] = []
                for r in records:
                    insn_off, type_id, access_off, kind = struct.unpack_from("<4I", r)
                    relos.append(CoreRelo(insn_off, type_id, _string(btf, access_off), kind))
    return ext


def _subsection(data: bytes, min_size: int, what: str, btf: B.Btf):
    if len(data) < 4:
        raise CoreReloError(errno.EINVAL, f"{what} section is too small")
    (rec_size,) = struct.unpack_from("<I", data)
    if rec_size < min_size or rec_size % 4:
        raise CoreReloError(errno.EINVAL, f"{what} record size {rec_size} is invalid")
    pos = 4
    while pos < len(data):
        if pos + 8 > len(data):
            raise CoreReloError(errno.EINVAL, f"{what} section header is truncated")
        name_off, count = struct.unpack_from("<II", data, pos)
        pos += 8
        name = _string(btf, name_off)
        if count == 0:
            raise CoreReloError(errno.EINVAL, f"{what} section '{name}' has no records")
        if pos + count * rec_size > len(data):
            raise CoreReloError(errno.EINVAL, f"{what} section '{name}' is truncated")
        yield name, [data[pos + i * rec_size:pos + (i + 1) * rec_size] for i in range(count)]
        pos += count * rec_size


# ---------------------------------------------------------------- specs

def essential_name(name: str) -> str:
    """``task_struct___v2`` -> ``task_struct``: cut at the last ``___`` that has a character
    other than ``_`` on both sides."""
    for i in range(len(name) - 5, -1, -1):
        if name[i] != "_" and name[i + 1:i + 4] == "___" and name[i + 4] != "_":
            return name[:i + 1]
    return name


def _skip(btf: B.Btf, tid: int) -> int:
    """Skip modifiers and typedefs."""
    return btf.resolve(tid)


def _kind_str(t: B.BtfType) -> str:
    return B.KIND_NAMES.get(t.kind, "unknown").lower()


def _is_composite(t: B.BtfType) -> bool:
    return t.kind in (B.STRUCT, B.UNION)


def _is_enum(t: B.BtfType) -> bool:
    return t.kind in (B.ENUM, B.ENUM64)


def _kind_compat(a: B.BtfType, b: B.BtfType) -> bool:
    return a.kind == b.kind or (_is_enum(a) and _is_enum(b))


def _member_bits(t: B.BtfType, i: int) -> tuple[int, int]:
    raw = t.members[i][2]
    return (raw & 0xFFFFFF, raw >> 24) if t.kind_flag else (raw, 0)


@dataclass
class Accessor:
    type_id: int
    idx: int
    name: str | None


@dataclass
class Spec:
    btf: B.Btf
    root_type_id: int
    kind: int
    spec: list[Accessor] = field(default_factory=list)
    raw: list[int] = field(default_factory=list)
    bit_offset: int = 0

    def format(self) -> str:
        """libbpf's ``bpf_core_format_spec``."""
        t = self.btf.get(self.root_type_id) if self.root_type_id else B.BtfType(0)
        out = (f"<{KIND_NAMES[self.kind]}> [{self.root_type_id}] {_kind_str(t)} "
               f"{t.name or '<anon>'}")
        if self.kind in TYPE_KINDS:
            return out
        if self.kind in ENUMVAL_KINDS:
            if not self.raw:                 # a candidate without the enumerator
                return out
            e = self.btf.get(_skip(self.btf, self.root_type_id))
            name, value, _ = e.members[self.raw[0]]
            from tracesim.filters.bpf.toolchain.btf_dump import enum_value
            return out + f"::{name} = {enum_value(e, value)}"
        for i, acc in enumerate(self.spec):
            if acc.name:
                out += f".{acc.name}"
            elif i > 0 or acc.idx > 0:
                out += f"[{acc.idx}]"
        out += " (" + ":".join(str(i) for i in self.raw)
        bo = self.bit_offset
        return out + (f" @ offset {bo // 8}.{bo % 8})" if bo % 8 else f" @ offset {bo // 8})")


def _flex(btf: B.Btf, acc: Accessor | None, arr: B.BtfType) -> bool:
    """A zero-length array that is the last member of its struct."""
    if acc is None or not acc.name or arr.array[2]:
        return False
    t = btf.get(acc.type_id)
    return _is_composite(t) and acc.idx == len(t.members) - 1


def parse_spec(btf: B.Btf, relo: CoreRelo) -> Spec:
    """``bpf_core_parse_spec``; raises CoreReloError(EINVAL) for a bad access string."""
    if not relo.access or relo.access.startswith(":"):
        raise CoreReloError(errno.EINVAL, "empty or malformed access string")
    try:
        raw = [int(p) for p in relo.access.split(":")]
    except ValueError:
        raise CoreReloError(errno.EINVAL, f"access string '{relo.access}' is not numbers") from None
    if len(raw) > SPEC_MAX_LEN:
        raise CoreReloError(errno.E2BIG, "access string is too long")
    if any(i < 0 for i in raw):
        raise CoreReloError(errno.EINVAL, "negative access index")
    if not 0 < relo.type_id < len(btf.types):
        raise CoreReloError(errno.EINVAL, f"type id {relo.type_id} is out of range")
    spec = Spec(btf, relo.type_id, relo.kind, raw=list(raw))
    if relo.kind in TYPE_KINDS:
        if raw != [0]:
            raise CoreReloError(errno.EINVAL, "type relocation needs access string \"0\"")
        return spec
    tid = _skip(btf, relo.type_id)
    t = btf.get(tid)
    if relo.kind in ENUMVAL_KINDS:
        if not _is_enum(t) or len(raw) > 1 or raw[0] >= len(t.members):
            raise CoreReloError(errno.EINVAL, "enum relocation does not name an enumerator")
        spec.spec.append(Accessor(tid, raw[0], t.members[raw[0]][0]))
        return spec
    if relo.kind not in FIELD_KINDS:
        raise CoreReloError(errno.EINVAL, f"unknown relocation kind {relo.kind}")
    spec.spec.append(Accessor(tid, raw[0], None))
    spec.bit_offset = raw[0] * btf.size_of(tid) * 8
    for idx in raw[1:]:
        tid = _skip(btf, tid)
        t = btf.get(tid)
        if _is_composite(t):
            if idx >= len(t.members):
                raise CoreReloError(errno.EINVAL, f"member index {idx} is out of range")
            spec.bit_offset += _member_bits(t, idx)[0]
            name = t.members[idx][0]
            if name:
                spec.spec.append(Accessor(tid, idx, name))
            tid = t.members[idx][1]
        elif t.kind == B.ARRAY:
            flex = _flex(btf, spec.spec[-1] if spec.spec else None, t)
            elem = _skip(btf, t.array[0])
            if not flex and idx >= t.array[2]:
                raise CoreReloError(errno.EINVAL, f"array index {idx} is out of range")
            spec.spec.append(Accessor(elem, idx, None))
            spec.bit_offset += idx * btf.size_of(elem) * 8
            tid = elem
        else:
            raise CoreReloError(errno.EINVAL, f"relo for [{relo.type_id}] captures type [{tid}] "
                                f"of unexpected kind {_kind_str(t)}")
    return spec


# ---------------------------------------------------------------- matching

def fields_compat(lb: B.Btf, lid: int, tb: B.Btf, tid: int) -> bool:
    """``bpf_core_fields_are_compat``."""
    for _ in range(32):
        lt, tt = lb.get(_skip(lb, lid)) if lid else None, tb.get(_skip(tb, tid)) if tid else None
        if lt is None or tt is None:
            return lt is tt
        if _is_composite(lt) and _is_composite(tt):
            return True
        if not _kind_compat(lt, tt):
            return False
        if lt.kind in (B.PTR, B.FLOAT):
            return True
        if lt.kind in (B.FWD, B.ENUM, B.ENUM64):
            a, b = essential_name(lt.name), essential_name(tt.name)
            return not a or not b or a == b
        if lt.kind == B.INT:
            return True
        if lt.kind == B.ARRAY:
            lid, tid = lt.array[0], tt.array[0]
            continue
        return False
    return False


def types_compat(lb: B.Btf, lid: int, tb: B.Btf, tid: int, depth: int = 32) -> bool:
    """``__bpf_core_types_are_compat``."""
    if depth <= 0:
        return False
    lt, tt = lb.get(_skip(lb, lid)) if lid else None, tb.get(_skip(tb, tid)) if tid else None
    if lt is None or tt is None:
        return lt is tt
    if not _kind_compat(lt, tt):
        return False
    if lt.kind in (B.STRUCT, B.UNION, B.ENUM, B.ENUM64, B.FWD, B.INT):
        return True
    if lt.kind == B.PTR:
        return types_compat(lb, lt.ref, tb, tt.ref, depth - 1)
    if lt.kind == B.ARRAY:
        return types_compat(lb, lt.array[0], tb, tt.array[0], depth - 1)
    if lt.kind == B.FUNC_PROTO:
        if len(lt.members) != len(tt.members):
            return False
        return all(types_compat(lb, a[1], tb, b[1], depth - 1)
                   for a, b in zip(lt.members, tt.members, strict=True)) \
            and types_compat(lb, lt.ref, tb, tt.ref, depth - 1)
    return False


def types_match(lb: B.Btf, lid: int, tb: B.Btf, tid: int, behind_ptr: bool = False,
                depth: int = 32) -> bool:
    """``__bpf_core_types_match``: same shape, member by member (TYPE_MATCHES)."""
    if depth <= 0:
        return False
    lt, tt = lb.get(_skip(lb, lid)) if lid else None, tb.get(_skip(tb, tid)) if tid else None
    if lt is None or tt is None:
        return lt is tt
    if essential_name(lt.name) != essential_name(tt.name) and lt.name and tt.name:
        return False
    if behind_ptr and _is_composite(lt) and tt.kind == B.FWD:
        return (lt.kind == B.UNION) == tt.kind_flag
    if behind_ptr and lt.kind == B.FWD and _is_composite(tt):
        return (tt.kind == B.UNION) == lt.kind_flag
    if not _kind_compat(lt, tt):
        return False
    if lt.kind == B.FWD:
        return lt.kind_flag == tt.kind_flag
    if _is_enum(lt):
        names = {m[0] for m in tt.members}
        return lt.ref == tt.ref and all(m[0] in names for m in lt.members)
    if _is_composite(lt):
        if behind_ptr:
            return True
        theirs = {m[0]: m for m in tt.members}
        return all(m[0] in theirs and types_match(lb, m[1], tb, theirs[m[0]][1], False, depth - 1)
                   for m in lt.members)
    if lt.kind == B.INT:
        return lt.ref == tt.ref and (lt.int_encoding & B.INT_SIGNED) == (tt.int_encoding & B.INT_SIGNED)
    if lt.kind == B.PTR:
        return types_match(lb, lt.ref, tb, tt.ref, True, depth - 1)
    if lt.kind == B.ARRAY:
        return lt.array[2] == tt.array[2] and \
            types_match(lb, lt.array[0], tb, tt.array[0], behind_ptr, depth - 1)
    if lt.kind == B.FUNC_PROTO:
        return len(lt.members) == len(tt.members) and all(
            types_match(lb, a[1], tb, b[1], behind_ptr, depth - 1)
            for a, b in zip(lt.members, tt.members, strict=True)) \
            and types_match(lb, lt.ref, tb, tt.ref, behind_ptr, depth - 1)
    return lt.kind == B.FLOAT and lt.ref == tt.ref


def _match_member(local: Spec, acc: Accessor, tb: B.Btf, tid: int, spec: Spec) -> tuple[int, int]:
    """Find ``acc``'s member by name in target type ``tid`` (through anonymous members):
    (1 found / 0 not, the member's type id)."""
    lt = local.btf.get(acc.type_id)
    lname, ltype = lt.members[acc.idx][0], lt.members[acc.idx][1]
    tid = _skip(tb, tid)
    t = tb.get(tid)
    if not _is_composite(t):
        return 0, 0
    for i, (name, mtype, _) in enumerate(t.members):
        if len(spec.raw) >= SPEC_MAX_LEN:
            raise CoreReloError(errno.E2BIG, "struct/union/array nesting is too deep")
        bit = _member_bits(t, i)[0]
        spec.bit_offset += bit
        spec.raw.append(i)
        if not name:
            found, next_id = _match_member(local, acc, tb, mtype, spec)
            if found:
                return found, next_id
        elif name == lname:
            if fields_compat(local.btf, ltype, tb, mtype):
                spec.spec.append(Accessor(tid, i, name))
                return 1, mtype
            return 0, 0
        spec.bit_offset -= bit
        spec.raw.pop()
    return 0, 0


def spec_match(local: Spec, tb: B.Btf, tid: int) -> tuple[bool, Spec]:
    """``bpf_core_spec_match``: whether candidate ``tid`` matches, and its (partial) spec."""
    spec = Spec(tb, tid, local.kind)
    if local.kind in TYPE_KINDS:
        ok = types_match(local.btf, local.root_type_id, tb, tid) if local.kind == TYPE_MATCHES \
            else types_compat(local.btf, local.root_type_id, tb, tid)
        return ok, spec
    if local.kind in ENUMVAL_KINDS:
        t = tb.get(_skip(tb, tid))
        if not _is_enum(t):
            return False, spec
        want = essential_name(local.spec[0].name or "")
        for i, (name, _, _) in enumerate(t.members):
            if essential_name(name) == want:
                spec.spec.append(Accessor(_skip(tb, tid), i, name))
                spec.raw.append(i)
                return True, spec
        return False, spec
    tid = _skip(tb, tid)
    for i, acc in enumerate(local.spec):
        t = tb.get(tid)
        if acc.name:
            found, next_id = _match_member(local, acc, tb, tid, spec)
            if not found:
                return False, spec
            tid = _skip(tb, next_id)
            continue
        if i > 0:
            if t.kind != B.ARRAY:
                return False, spec
            if not _flex(tb, spec.spec[-1] if spec.spec else None, t) and acc.idx >= t.array[2]:
                return False, spec
            tid = _skip(tb, t.array[0])
        spec.spec.append(Accessor(tid, acc.idx, None))
        spec.raw.append(acc.idx)
        spec.bit_offset += acc.idx * tb.size_of(tid) * 8
    return True, spec


# ---------------------------------------------------------------- values

@dataclass
class Result:
    orig_val: int = 0
    new_val: int = 0
    orig_sz: int = 0
    new_sz: int = 0
    orig_type: int = 0
    new_type: int = 0
    poison: bool = False
    validate: bool = True
    fail_memsz_adjust: bool = False


class _Poison(Exception):
    pass


def _field_value(relo: CoreRelo, spec: Spec | None, prog: str) -> tuple[int, int, int, bool]:
    """``bpf_core_calc_field_relo``: (value, field size, field type id, validate)."""
    if relo.kind == FIELD_EXISTS:
        return (1 if spec else 0), 0, 0, True
    if spec is None:
        raise _Poison
    b = spec.btf
    acc = spec.spec[-1]
    if not acc.name:
        if relo.kind == FIELD_BYTE_OFFSET:
            return spec.bit_offset // 8, b.size_of(acc.type_id), acc.type_id, True
        if relo.kind == FIELD_BYTE_SIZE:
            return b.size_of(acc.type_id), 0, 0, True
        raise CoreReloError(errno.EINVAL, f"prog '{prog}': relo {relo.kind} at insn "
                            f"#{relo.insn_off // 8} can't be applied to array access")
    t = b.get(acc.type_id)
    mtype_id = _skip(b, t.members[acc.idx][1])
    mt = b.get(mtype_id)
    bit_off, bit_sz = spec.bit_offset, _member_bits(t, acc.idx)[1]
    bitfield = bit_sz > 0
    if bitfield:
        byte_sz = mt.ref
        byte_off = bit_off // 8 // byte_sz * byte_sz
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise CoreReloError(errno.E2BIG, f"prog '{prog}': relo {relo.kind} at insn "
                                    f"#{relo.insn_off // 8} can't be satisfied for bitfield")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = b.size_of(mtype_id)
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8
    validate = not bitfield
    if relo.kind == FIELD_BYTE_OFFSET:
        return byte_off, (0 if bitfield else byte_sz), (0 if bitfield else mtype_id), validate
    if relo.kind == FIELD_BYTE_SIZE:
        return byte_sz, 0, 0, validate
    if relo.kind == FIELD_SIGNED:
        signed = (_is_enum(mt) and mt.kind_flag) or (mt.kind == B.INT and
                                                      bool(mt.int_encoding & B.INT_SIGNED))
        return int(signed), 0, 0, True
    if relo.kind == FIELD_LSHIFT_U64:
        return 64 - (bit_off + bit_sz - byte_off * 8), 0, 0, validate
    return 64 - bit_sz, 0, 0, True                  # FIELD_RSHIFT_U64


def _type_value(relo: CoreRelo, spec: Spec | None) -> tuple[int, bool]:
    if spec is None:
        return 0, True
    if relo.kind == TYPE_ID_TARGET:
        return spec.root_type_id, False
    if relo.kind in (TYPE_EXISTS, TYPE_MATCHES):
        return 1, True
    return spec.btf.size_of(spec.root_type_id), True       # TYPE_SIZE


def _enum_value(relo: CoreRelo, spec: Spec | None) -> int:
    if relo.kind == ENUMVAL_EXISTS:
        return 1 if spec else 0
    if spec is None:
        raise _Poison
    from tracesim.filters.bpf.toolchain.btf_dump import enum_value
    t = spec.btf.get(spec.spec[0].type_id)
    return enum_value(t, t.members[spec.spec[0].idx][1])


def calc(relo: CoreRelo, local: Spec, target: Spec | None, prog: str) -> Result:
    """``bpf_core_calc_relo``."""
    res = Result()
    try:
        if relo.kind in FIELD_KINDS:
            res.orig_val, res.orig_sz, res.orig_type, res.validate = _field_value(relo, local, prog)
            res.new_val, res.new_sz, res.new_type, _ = _field_value(relo, target, prog)
            if res.orig_sz != res.new_sz and target is not None:
                ot, nt = local.btf.get(res.orig_type), target.btf.get(res.new_type)
                ok = (ot.kind == B.PTR and nt.kind == B.PTR) or (
                    ot.kind == B.INT and nt.kind == B.INT
                    and not ot.int_encoding & B.INT_SIGNED and not nt.int_encoding & B.INT_SIGNED)
                res.fail_memsz_adjust = not ok
        elif relo.kind in TYPE_KINDS:
            res.orig_val, res.validate = _type_value(relo, local)
            res.new_val, _ = _type_value(relo, target)
        else:
            res.orig_val = _enum_value(relo, local)
            res.new_val = _enum_value(relo, target)
    except _Poison:
        res.poison = True
    return res


# ---------------------------------------------------------------- the driver

@dataclass
class Relocated:
    insns: list[Insn]
    log: list[str]


def candidates(local: B.Btf, local_id: int, target: B.Btf) -> list[int]:
    """Target types of a compatible kind with the same essential name."""
    lt = local.get(local_id)             # as libbpf: the root type itself, typedefs included
    want = essential_name(lt.name)
    return [i for i, t in enumerate(target.types)
            if i and t.name and _kind_compat(lt, t) and essential_name(t.name) == want]


def _poison(insns: list[Insn], i: int, prog: str, idx: int, log: list[str]) -> None:
    log.append(f"prog '{prog}': relo #{idx}: substituting insn #{i} w/ invalid insn")
    if insns[i].opcode == 0x18 and i + 1 < len(insns):
        insns[i + 1] = Insn(BPF_CALL, 0, 0, 0, POISON_IMM)
    insns[i] = Insn(BPF_CALL, 0, 0, 0, POISON_IMM)


def _patch(insns: list[Insn], i: int, res: Result, prog: str, idx: int, log: list[str]) -> None:
    """``bpf_core_patch_insn``."""
    if res.poison:
        _poison(insns, i, prog, idx, log)
        return
    ins = insns[i]
    cls = ins.opcode & 0x07
    orig, new = res.orig_val, res.new_val
    where = f"prog '{prog}': relo #{idx}:"
    if cls in (0x04, 0x07):                          # ALU, ALU64
        if ins.opcode & 0x08:
            raise CoreReloError(errno.EINVAL, f"{where} insn #{i} (ALU/ALU64) uses a register")
        if res.validate and ins.imm & 0xFFFFFFFF != orig & 0xFFFFFFFF:
            raise CoreReloError(errno.EINVAL, f"{where} unexpected insn #{i} (ALU/ALU64) value: "
                                f"got {ins.imm & 0xFFFFFFFF}, exp {orig} -> {new}")
        imm = new & 0xFFFFFFFF
        insns[i] = ins._replace(imm=imm - (1 << 32) if imm >> 31 else imm)
        log.append(f"{where} patched insn #{i} (ALU/ALU64) imm {ins.imm & 0xFFFFFFFF} -> {new}")
    elif cls in (0x01, 0x02, 0x03):                  # LDX, ST, STX
        if res.validate and ins.off != orig:
            raise CoreReloError(errno.EINVAL, f"{where} unexpected insn #{i} (LDX/ST/STX) value: "
                                f"got {ins.off}, exp {orig} -> {new}")
        if new > SHRT_MAX:
            raise CoreReloError(errno.ERANGE, f"{where} insn #{i} (LDX/ST/STX) value too big: {new}")
        if res.fail_memsz_adjust:
            log.append(f"{where} insn #{i} (LDX/ST/STX) accesses field incorrectly. Make sure you "
                       "are accessing pointers, unsigned integers, or fields of matching type "
                       "and size.")
            _poison(insns, i, prog, idx, log)
            return
        patched = ins._replace(off=new)
        log.append(f"{where} patched insn #{i} (LDX/ST/STX) off {ins.off} -> {new}")
        if res.new_sz != res.orig_sz:
            have = _SIZES[ins.opcode & 0x18]
            if have != res.orig_sz:
                raise CoreReloError(errno.EINVAL, f"{where} insn #{i} (LDX/ST/STX) unexpected mem "
                                    f"size: got {have}, exp {res.orig_sz}")
            size_bits = {v: k for k, v in _SIZES.items()}.get(res.new_sz)
            if size_bits is None:
                raise CoreReloError(errno.EINVAL, f"{where} insn #{i} (LDX/ST/STX) invalid new mem "
                                    f"size: {res.new_sz}")
            patched = patched._replace(opcode=(ins.opcode & ~0x18) | size_bits)
            log.append(f"{where} patched insn #{i} (LDX/ST/STX) mem_sz {res.orig_sz} -> {res.new_sz}")
        insns[i] = patched
    elif ins.opcode == 0x18 and i + 1 < len(insns):          # LD_IMM64
        hi = insns[i + 1]
        if ins.src or ins.off or hi.opcode or hi.dst or hi.src or hi.off:
            raise CoreReloError(errno.EINVAL, f"{where} insn #{i} (LDIMM64) has unexpected form")
        imm = (ins.imm & 0xFFFFFFFF) | ((hi.imm & 0xFFFFFFFF) << 32)
        if res.validate and imm != orig & 0xFFFFFFFFFFFFFFFF:
            raise CoreReloError(errno.EINVAL, f"{where} unexpected insn #{i} (LDIMM64) value: "
                                f"got {imm}, exp {orig} -> {new}")
        lo32, hi32 = new & 0xFFFFFFFF, (new >> 32) & 0xFFFFFFFF
        insns[i] = ins._replace(imm=lo32 - (1 << 32) if lo32 >> 31 else lo32)
        insns[i + 1] = hi._replace(imm=hi32 - (1 << 32) if hi32 >> 31 else hi32)
        log.append(f"{where} patched insn #{i} (LDIMM64) imm64 {imm} -> {new}")
    else:
        raise CoreReloError(errno.EINVAL, f"{where} trying to relocate unrecognized insn #{i}, "
                            f"code:{ins.opcode:#x}, src:{ins.src:#x}, dst:{ins.dst:#x}, "
                            f"off:{ins.off & 0xFFFF:#x}, imm:{ins.imm & 0xFFFFFFFF:#x}")


def relocate(insns: list[Insn], relos: list[CoreRelo], local: B.Btf, target: B.Btf,
             prog: str = "prog", section: str = ".text") -> Relocated:
    """Apply ``relos`` (insn offsets in bytes from the start of ``insns``) against ``target``."""
    out, log = list(insns), [f"sec '{section}': found {len(relos)} CO-RE relocations"]
    cache: dict[int, list[int]] = {}
    for idx, relo in enumerate(relos):
        if relo.insn_off % 8 or not 0 <= relo.insn_off // 8 < len(out):
            raise CoreReloError(errno.EINVAL, f"prog '{prog}': relo #{idx}: bad insn offset "
                                f"{relo.insn_off}")
        i = relo.insn_off // 8
        try:
            local_spec = parse_spec(local, relo)
        except (CoreReloError, B.BtfError) as e:
            lt = local.types[relo.type_id] if 0 < relo.type_id < len(local.types) else B.BtfType(0)
            log.append(f"prog '{prog}': relo #{idx}: parsing [{relo.type_id}] {_kind_str(lt)} "
                       f"{lt.name or '<anon>'} + {relo.access or '<?>'} failed: -{errno.EINVAL}")
            raise CoreReloError(errno.EINVAL, str(e)) from None
        log.append(f"prog '{prog}': relo #{idx}: {local_spec.format()}")
        if relo.kind == TYPE_ID_LOCAL:
            res = Result(relo.type_id, relo.type_id)
            _patch(out, i, res, prog, idx, log)
            continue
        if not local.get(relo.type_id).name:
            log.append(f"prog '{prog}': relo #{idx}: <{KIND_NAMES[relo.kind]}> ({relo.kind}) "
                       "relocation doesn't support anonymous types")
            raise CoreReloError(errno.EOPNOTSUPP, "relocation doesn't support anonymous types")
        if relo.type_id not in cache:
            cache[relo.type_id] = candidates(local, relo.type_id, target)
            lt = local.get(relo.type_id)
            for c in cache[relo.type_id]:
                ct = target.types[c]
                log.append(f"CO-RE relocating [{relo.type_id}] {_kind_str(lt)} {lt.name}: found "
                           f"target candidate [{c}] {_kind_str(ct)} {ct.name} in [vmlinux]")
        chosen: tuple[Spec, Result] | None = None
        for j, cand in enumerate(cache[relo.type_id]):
            ok, cand_spec = spec_match(local_spec, target, cand)
            log.append(f"prog '{prog}': relo #{idx}: {'matching' if ok else 'non-matching'} "
                       f"candidate #{j} {cand_spec.format()}")
            if not ok:
                continue
            res = calc(relo, local_spec, cand_spec, prog)
            if chosen is None:
                chosen = (cand_spec, res)
            elif cand_spec.bit_offset != chosen[0].bit_offset:
                raise CoreReloError(errno.EINVAL, f"prog '{prog}': relo #{idx}: field offset "
                                    f"ambiguity: {cand_spec.bit_offset} != {chosen[0].bit_offset}")
            elif res.poison != chosen[1].poison or (not res.poison and res.new_val != chosen[1].new_val):
                raise CoreReloError(errno.EINVAL, f"prog '{prog}': relo #{idx}: relocation decision "
                                    f"ambiguity: {res.new_val} != {chosen[1].new_val}")
        if chosen is None:
            log.append(f"prog '{prog}': relo #{idx}: no matching targets found")
            res = calc(relo, local_spec, None, prog)
        else:
            res = chosen[1]
        _patch(out, i, res, prog, idx, log)
    return Relocated(out, log)


_REFS_TYPE = (B.PTR, B.TYPEDEF, B.VOLATILE, B.CONST, B.RESTRICT, B.FUNC, B.VAR, B.DECL_TAG,
              B.TYPE_TAG)


def btf_bad_reference(btf: B.Btf) -> str:
    """libbpf's btf_validate_type: every type id a type refers to must exist (its warning
    line, or "" when all do), so relocating never follows a dangling id."""
    count = len(btf.types)
    for tid, t in enumerate(btf.types[1:], 1):
        refs: list[int] = []
        if t.kind in _REFS_TYPE:
            refs = [t.ref]
        elif t.kind == B.ARRAY:
            refs = [t.array[0], t.array[1]]
        elif t.kind in (B.STRUCT, B.UNION):
            refs = [m[1] for m in t.members]
        elif t.kind == B.FUNC_PROTO:
            refs = [t.ref] + [m[1] for m in t.members]
        elif t.kind == B.DATASEC:
            refs = [v[0] for v in t.secinfo]
        bad = next((r for r in refs if not 0 <= r < count), None)
        if bad is not None:
            return f"btf: type [{tid}]: invalid referenced type ID {bad}"
    return ""


def apply_to_elf(data: bytes, target: B.Btf) -> tuple[bytes, list[str]]:
    """Apply an object's CO-RE relocations against ``target``: the object with the relocated
    instructions written over the originals, and the log. Data that is not an ELF object, or
    has no ``.BTF.ext`` relocations, comes back unchanged (the loader judges it); a ``.BTF`` or
    ``.BTF.ext`` that does not parse is ignored with libbpf's warning, as libbpf does; a
    relocation libbpf would fail on raises CoreReloError."""
    import io

    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        elf = ELFFile(io.BytesIO(data))
        sections = list(elf.iter_sections())
    except ELFError:
        return data, []
    by_name = {s.name: (i, s) for i, s in enumerate(sections)}
    if ".BTF" not in by_name or ".BTF.ext" not in by_name:
        return data, []
    try:
        local = B.parse(by_name[".BTF"][1].data())
        bad_ref = btf_bad_reference(local)
    except B.BtfError:
        local, bad_ref = None, ""
    if local is None or bad_ref:
        return data, [line for line in (bad_ref, f"Error loading ELF section .BTF: "
                                        f"-{errno.EINVAL}. Ignored and continue.") if line]
    try:
        ext = parse_btf_ext(by_name[".BTF.ext"][1].data(), local)
    except CoreReloError as e:
        return data, [f"Error loading ELF section .BTF.ext: -{e.errno}. Ignored and continue."]
    names: dict[tuple[int, int], str] = {}
    symtab: Any = by_name.get(".symtab")
    for sym in symtab[1].iter_symbols() if symtab is not None else ():
        if sym["st_info"]["type"] == "STT_FUNC" and isinstance(sym["st_shndx"], int):
            names[(sym["st_shndx"], sym["st_value"])] = sym.name
    out, log = bytearray(data), []
    for sec_name, relos in ext.core_relos.items():
        if sec_name not in by_name:
            raise CoreReloError(errno.EINVAL, f"CO-RE relocations for a missing section '{sec_name}'")
        index, section = by_name[sec_name]
        prog = names.get((index, 0), sec_name)
        try:
            insns = decode(section.data())
        except ValueError as e:
            raise CoreReloError(errno.EINVAL, f"section '{sec_name}': {e}") from None
        try:
            done = relocate(insns, relos, local, target, prog, sec_name)
        except B.BtfError as e:              # e.g. a loop through typedefs or arrays
            raise CoreReloError(errno.EINVAL, f"prog '{prog}': {e}") from None
        log += done.log
        start = section["sh_offset"]
        out[start:start + section["sh_size"]] = encode(done.insns)
    return bytes(out), log
