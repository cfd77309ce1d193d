"""Print BTF as ``bpftool btf dump file F`` does: ``raw`` (one ``[id] KIND 'name' ...`` line per
type) and ``c`` (a ``vmlinux.h``-style header clang compiles BPF programs against).

The C printer writes each type after the ones it needs by value (a struct member, an array
element, a typedef's target), declares structs used only through pointers with ``struct x;``,
and fills the gaps between members (BTF may leave members out) with anonymous bitfields as
libbpf's btf_dump does (``long: 64;``), or with named ``char`` arrays when asked (the model's own
headers, which its C parser lays out). Struct layouts it cannot express with natural alignment
get ``__attribute__((packed))``.
"""
from __future__ import annotations

from tracesim.filters.bpf.toolchain import btf as B

INT_ENCODINGS = {0: "(none)", B.INT_SIGNED: "SIGNED", B.INT_CHAR: "CHAR", B.INT_BOOL: "BOOL"}
FUNC_LINKAGE = {0: "static", 1: "global", 2: "extern"}
VAR_LINKAGE = {0: "static", 1: "global", 2: "extern"}
# What pads a gap, largest first (libbpf's choice of types for explicit padding).
PAD_TYPES = (("long", 64), ("int", 32), ("short", 16), ("char", 8))
PAD_PREFIX = "__pad_at_"


# ---------------------------------------------------------------- raw

def _name(t: B.BtfType) -> str:
    return t.name or "(anon)"


def member_bits(t: B.BtfType, raw: int) -> tuple[int, int]:
    """(bit offset, bitfield size or 0) of a struct member's ``offset`` word."""
    if t.kind_flag:
        return raw & 0xFFFFFF, raw >> 24
    return raw, 0


def enum_value(t: B.BtfType, value: int) -> int:
    """An enumerator's value as its enum's signedness reads it (kind_flag: signed)."""
    bits = 32 if t.kind == B.ENUM else 64
    value &= (1 << bits) - 1
    return value - (1 << bits) if t.kind_flag and value >> (bits - 1) else value


def raw_line(btf: B.Btf, tid: int) -> str:
    """One type as bpftool's ``btf dump ... format raw`` prints it (with its member lines)."""
    t = btf.types[tid]
    kind = B.KIND_NAMES.get(t.kind, "UNKNOWN")
    out = f"[{tid}] {kind} '{_name(t)}'"
    if t.kind == B.INT:
        enc = INT_ENCODINGS.get(t.int_encoding, "UNKN")
        out += f" size={t.ref} bits_offset=0 nr_bits={t.int_bits} encoding={enc}"
    elif t.kind in (B.PTR, B.CONST, B.VOLATILE, B.RESTRICT, B.TYPEDEF, B.TYPE_TAG):
        out += f" type_id={t.ref}"
    elif t.kind == B.ARRAY:
        elem, index, n = t.array
        out += f" type_id={elem} index_type_id={index} nr_elems={n}"
    elif t.kind in (B.STRUCT, B.UNION):
        out += f" size={t.ref} vlen={len(t.members)}"
        for name, mtype, raw in t.members:
            off, bits = member_bits(t, raw)
            out += f"\n\t'{name or '(anon)'}' type_id={mtype} bits_offset={off}"
            if bits:
                out += f" bitfield_size={bits}"
    elif t.kind in (B.ENUM, B.ENUM64):
        out += f" encoding={'SIGNED' if t.kind_flag else 'UNSIGNED'} size={t.ref} vlen={len(t.members)}"
        for name, value, _ in t.members:
            v = enum_value(t, value)
            out += f"\n\t'{name}' val={v}" + ("" if t.kind == B.ENUM else
                                                 "LL" if t.kind_flag else "ULL")
    elif t.kind == B.FWD:
        out += f" fwd_kind={'union' if t.kind_flag else 'struct'}"
    elif t.kind == B.FUNC:
        out += f" type_id={t.ref} linkage={FUNC_LINKAGE.get(t.linkage, '(unknown)')}"
    elif t.kind == B.FUNC_PROTO:
        out += f" ret_type_id={t.ref} vlen={len(t.members)}"
        for name, ptype, _ in t.members:
            out += f"\n\t'{name or '(anon)'}' type_id={ptype}"
    elif t.kind == B.VAR:
        out += f" type_id={t.ref}, linkage={VAR_LINKAGE.get(t.linkage, '(unknown)')}"
    elif t.kind == B.DATASEC:
        out += f" size={t.ref} vlen={len(t.secinfo)}"
        for vtype, off, size in t.secinfo:
            out += f"\n\ttype_id={vtype} offset={off} size={size}"
            if 0 < vtype < len(btf.types):
                vt = btf.types[vtype]
                out += f" ({B.KIND_NAMES.get(vt.kind, 'UNKNOWN')} '{_name(vt)}')"
    elif t.kind == B.FLOAT:
        out += f" size={t.ref}"
    elif t.kind == B.DECL_TAG:
        out += f" type_id={t.ref} component_idx={t.component_idx}"
    return out


def dump_raw(btf: B.Btf) -> str:
    return "".join(raw_line(btf, i) + "\n" for i in range(1, len(btf.types)))


# ---------------------------------------------------------------- C

def alignment(btf: B.Btf, tid: int, cache: dict[int, int] | None = None) -> int:
    """Alignment of a type on x86-64 / BPF as the compiler gives it: natural, except that a
    struct BTF shows packed (see ``is_packed``) is 1-aligned."""
    cache = {} if cache is None else cache
    tid = btf.resolve(tid) if tid else 0
    if tid in cache:
        return cache[tid]
    t = btf.types[tid] if tid else None
    align = 1
    if t is None:
        pass
    elif t.kind in (B.INT, B.ENUM, B.ENUM64, B.FLOAT):
        align = min(max(t.ref, 1), 8 if t.kind != B.FLOAT else 16)
    elif t.kind == B.PTR:
        align = 8
    elif t.kind == B.ARRAY:
        align = alignment(btf, t.array[0], cache)
    elif t.kind in (B.STRUCT, B.UNION):
        align = 1 if is_packed(btf, tid, cache) else _natural(btf, tid, cache)
    cache[tid] = align
    return align


def _natural(btf: B.Btf, tid: int, cache: dict[int, int]) -> int:
    t = btf.types[tid]
    align = 1
    for name, mtype, raw in t.members:
        _, bits = member_bits(t, raw)
        if bits and not name:
            continue
        align = max(align, alignment(btf, mtype, cache))
    return align


def is_packed(btf: B.Btf, tid: int, cache: dict[int, int] | None = None) -> bool:
    """Whether natural alignment cannot give this struct its BTF layout (a member sits below
    its alignment, or the size is not a multiple of the alignment)."""
    cache = {} if cache is None else cache
    t = btf.types[tid]
    if t.kind not in (B.STRUCT, B.UNION):
        return False
    if t.ref % _natural(btf, tid, cache):
        return True
    for _, mtype, raw in t.members:
        off, bits = member_bits(t, raw)
        if not bits and off % (8 * alignment(btf, mtype, cache)):
            return True
    return False


class CWriter:
    """Writes the types of ``btf`` as C (see the module docstring). ``pad_arrays``: gaps become
    ``char __pad_at_<offset>[n];`` members instead of anonymous bitfields."""

    def __init__(self, btf: B.Btf, pad_arrays: bool = False) -> None:
        self.btf = btf
        self.pad_arrays = pad_arrays
        self.out: list[str] = []
        self.defined: set[int] = set()     # named structs/unions/enums and typedefs written
        self.declared: set[int] = set()    # structs/unions with a `struct x;` written
        self.active: set[int] = set()      # being written (dependency cycles through pointers)
        self.names = unique_names(btf)
        self._align: dict[int, int] = {}
        self.enumerators: dict[str, int] = {}

    # -- what a declaration needs first
    def need_complete(self, tid: int, proto: bool = False) -> None:
        """Make ``tid`` usable by value: its definition (and what it needs) written. ``proto``:
        the use is in a function prototype's parameters."""
        t = self.btf.types[tid] if tid else None
        if t is None:
            return
        if t.kind in (B.PTR,):
            self.need_name(t.ref, proto)
        elif t.kind == B.ARRAY:
            self.need_complete(t.array[0], proto)
        elif t.kind in (B.CONST, B.VOLATILE, B.RESTRICT, B.TYPE_TAG):
            self.need_complete(t.ref, proto)
        elif t.kind == B.TYPEDEF:
            self.need_complete(t.ref)
            self.define(tid)
        elif t.kind in (B.STRUCT, B.UNION, B.ENUM, B.ENUM64):
            if t.name:
                self.define(tid)
            else:
                self.need_members(tid)
        elif t.kind == B.FUNC_PROTO:
            self.need_name(t.ref, True)
            for _, ptype, _ in t.members:
                self.need_name(ptype, True)

    def need_name(self, tid: int, proto: bool = False) -> None:
        """Make ``tid``'s name usable behind a pointer: a forward declaration is enough. Inside
        its own definition a struct needs none, except in a prototype, whose parameters have
        their own scope."""
        t = self.btf.types[tid] if tid else None
        if t is None:
            return
        if t.kind in (B.STRUCT, B.UNION, B.FWD) and t.name:
            if tid not in self.defined and tid not in self.declared and (
                    proto or tid not in self.active):
                self.declared.add(tid)
                kind = "union" if t.kind == B.UNION or (t.kind == B.FWD and t.kind_flag) else "struct"
                self.out.append(f"{kind} {self.names[tid]};\n\n")
        elif t.kind in (B.CONST, B.VOLATILE, B.RESTRICT, B.TYPE_TAG):
            self.need_name(t.ref, proto)
        elif t.kind == B.TYPEDEF:
            if tid not in self.defined and tid not in self.active:
                self.need_name(t.ref, proto)
                target = self.btf.types[t.ref] if t.ref else None
                if target is not None and target.kind in (B.STRUCT, B.UNION) and target.name:
                    self.define(tid)            # typedef struct x x_t; needs only struct x
                else:
                    self.need_complete(tid, proto)
        else:
            self.need_complete(tid, proto)

    def need_members(self, tid: int) -> None:
        t = self.btf.types[tid]
        if t.kind in (B.STRUCT, B.UNION):
            for _, mtype, _ in t.members:
                self.need_complete(mtype)

    def define(self, tid: int) -> None:
        if tid in self.defined or tid in self.active:
            return
        t = self.btf.types[tid]
        if t.kind == B.TYPEDEF and t.name == "__builtin_va_list":   # the compiler's own
            self.defined.add(tid)
            return
        self.active.add(tid)
        if t.kind in (B.STRUCT, B.UNION):
            self.need_members(tid)
            text = self.struct_body(tid, 0) + ";\n\n"
        elif t.kind in (B.ENUM, B.ENUM64):
            text = self.enum_body(tid, 0) + ";\n\n"
        else:                                        # TYPEDEF
            target = self.btf.types[t.ref] if t.ref else None
            if not (target is not None and target.kind in (B.STRUCT, B.UNION) and target.name):
                self.need_complete(t.ref)
            text = f"typedef {self.decl(t.ref, self.names[tid], 0)};\n\n"
        self.active.discard(tid)
        self.defined.add(tid)
        self.out.append(text)

    # -- declarators
    def decl(self, tid: int, inner: str, lvl: int) -> str:
        """``type inner`` as C: ``char name[16]``, ``void (*fn)(struct sk_buff *)``."""
        if tid == 0:
            return f"void {inner}".rstrip()
        t = self.btf.types[tid]
        k = t.kind
        if k == B.PTR:
            target = self.btf.types[t.ref] if t.ref else None
            star = "*" + inner
            if target is not None and target.kind in (B.ARRAY, B.FUNC_PROTO):
                star = f"({star})"
            return self.decl(t.ref, star, lvl)
        if k == B.ARRAY:
            elem, _, n = t.array
            if inner.startswith("*"):
                inner = f"({inner})"
            return self.decl(elem, f"{inner}[{n}]", lvl)
        if k == B.FUNC_PROTO:
            params = []
            for i, (_, ptype, _) in enumerate(t.members):
                if ptype == 0 and i == len(t.members) - 1:
                    params.append("...")
                else:
                    params.append(self.decl(ptype, "", lvl))
            return self.decl(t.ref, f"{inner}({', '.join(params) or 'void'})", lvl)
        if k in (B.CONST, B.VOLATILE, B.RESTRICT):
            q = {B.CONST: "const", B.VOLATILE: "volatile", B.RESTRICT: "restrict"}[k]
            target = self.btf.types[t.ref] if t.ref else None
            under = target
            while under is not None and under.kind == B.ARRAY:   # const (const char[4])
                under = self.btf.types[under.array[0]] if under.array[0] else None
            if under is not None and under.kind == k:        # const const x: one is enough
                return self.decl(t.ref, inner, lvl)
            if target is not None and target.kind == B.PTR:
                return self.decl(t.ref, f"{q} {inner}".rstrip(), lvl)
            return f"{q} {self.decl(t.ref, inner, lvl)}"
        if k == B.TYPE_TAG:
            return self.decl(t.ref, inner, lvl)
        if k in (B.STRUCT, B.UNION) and not t.name:
            base = self.struct_body(tid, lvl)
        elif k in (B.ENUM, B.ENUM64) and not t.name:
            base = self.enum_body(tid, lvl)
        elif k in (B.STRUCT, B.UNION):
            base = f"{'union' if k == B.UNION else 'struct'} {self.names[tid]}"
        elif k in (B.ENUM, B.ENUM64):
            base = f"enum {self.names[tid]}"
        elif k == B.FWD:
            base = f"{'union' if t.kind_flag else 'struct'} {self.names[tid]}"
        else:
            base = self.names.get(tid, t.name)
        return f"{base} {inner}" if inner else base

    def enum_body(self, tid: int, lvl: int) -> str:
        t = self.btf.types[tid]
        ind = "\t" * (lvl + 1)
        lines = [f"enum {self.names[tid]} {{" if t.name else "enum {"]
        for name, raw, _ in t.members:
            value = enum_value(t, raw)
            seen = self.enumerators.get(name, 0)
            self.enumerators[name] = seen + 1
            if seen:                                # C has one namespace for enumerators
                name = f"{name}___{seen + 1}"
            suffix = "" if t.kind == B.ENUM else ("LL" if t.kind_flag else "ULL")
            lines.append(f"{ind}{name} = {value}{suffix},")
        # sizes C gives an enum only when told (libbpf's choice of attributes)
        attr = ""
        if t.ref == 1:
            attr = " __attribute__((mode(byte)))"
        elif t.ref == 8 and all(-(1 << 31) <= enum_value(t, v) < (1 << 32) for _, v, _ in t.members):
            attr = " __attribute__((mode(word)))"
        lines.append("\t" * lvl + "}" + attr)
        return "\n".join(lines)

    def struct_body(self, tid: int, lvl: int) -> str:
        t = self.btf.types[tid]
        kw = "union" if t.kind == B.UNION else "struct"
        ind = "\t" * (lvl + 1)
        lines = [f"{kw} {self.names[tid]} {{" if t.name else f"{kw} {{"]
        cur = 0                    # bit position after the last member written (structs)
        packed = is_packed(self.btf, tid, self._align)
        for name, mtype, raw in t.members:
            off, bits = member_bits(t, raw)
            if t.kind == B.STRUCT:
                align = 1 if packed else alignment(self.btf, mtype, self._align)
                lines += self.padding(cur, off, bits, align, ind)
            text = self.decl(mtype, name, lvl + 1)
            if bits:
                text += f": {bits}"
            lines.append(f"{ind}{text};")
            end = off + (bits or 8 * self.btf.size_of(mtype))
            cur = max(cur, end) if t.kind == B.STRUCT else cur
        if t.kind == B.STRUCT:
            lines += self.tail_padding(tid, cur, ind)
        elif t.members and max(self._member_size(mt) for _, mt, _ in t.members) < t.ref:
            lines.append(f"{ind}char {PAD_PREFIX}0[{t.ref}];")
        attr = " __attribute__((packed))" if packed else ""
        lines.append("\t" * lvl + "}" + attr)
        return "\n".join(lines)

    def _member_size(self, mtype: int) -> int:
        try:
            return self.btf.size_of(mtype)
        except B.BtfError:
            return 0

    def padding(self, cur: int, off: int, bits: int, align: int, ind: str) -> list[str]:
        """Explicit padding from bit ``cur`` so the next member lands at bit ``off``; ``align``
        is the member's alignment in bytes."""
        if off <= cur:
            return []
        if not bits:
            align = 8 * align
            natural = -(-cur // align) * align
            if natural == off:
                return []
        return self._fill(cur, off, ind)

    def tail_padding(self, tid: int, cur: int, ind: str) -> list[str]:
        t = self.btf.types[tid]
        size_bits = 8 * t.ref
        align = 8 * alignment(self.btf, tid, self._align)
        if -(-cur // align) * align == size_bits or cur >= size_bits:
            return []
        return self._fill(cur, size_bits, ind)

    def _fill(self, cur: int, end: int, ind: str) -> list[str]:
        lines = []
        if self.pad_arrays:
            if cur % 8:                                   # the rest of a partly used byte
                step = min(8 - cur % 8, end - cur)
                lines.append(f"{ind}unsigned char: {step};")
                cur += step
            if end - cur >= 8:
                n = (end - cur) // 8
                lines.append(f"{ind}char {PAD_PREFIX}{cur // 8}[{n}];")
                cur += 8 * n
            if cur < end:
                lines.append(f"{ind}unsigned char: {end - cur};")
            return lines
        while cur < end:
            if cur % 8:                                   # to the next byte boundary
                step = min(8 - cur % 8, end - cur)
                lines.append(f"{ind}char: {step};")
                cur += step
                continue
            for tname, size in PAD_TYPES:
                if cur % size == 0 and end - cur >= size:
                    lines.append(f"{ind}{tname}: {size};")
                    cur += size
                    break
            else:
                lines.append(f"{ind}char: {end - cur};")
                cur = end
        return lines

    # -- whole files
    def top_level(self) -> list[int]:
        """What a header declares at file scope: every named struct, union, enum and typedef,
        every FWD, and the anonymous enums no other type uses (the rest are written inline)."""
        used = referenced(self.btf)
        return [i for i, t in enumerate(self.btf.types) if i and (
            (t.kind in (B.STRUCT, B.UNION, B.TYPEDEF, B.ENUM, B.ENUM64) and t.name)
            or (t.kind in (B.ENUM, B.ENUM64) and not t.name and t.members and i not in used)
            or t.kind == B.FWD)]

    def types(self, ids: list[int] | None = None) -> str:
        """Definitions of ``ids`` (default: ``top_level()`` in id order) and what they need."""
        for tid in self.top_level() if ids is None else ids:
            t = self.btf.types[tid]
            if t.kind == B.FWD:
                self.need_name(tid)
            elif t.kind in (B.ENUM, B.ENUM64) and not t.name:
                self.out.append(self.enum_body(tid, 0) + ";\n\n")
            else:
                self.need_complete(tid)
        text = "".join(self.out)
        self.out = []
        return text


def unique_names(btf: B.Btf) -> dict[int, str]:
    """C names of the named types: a name BTF gives to several types (a kernel's compilation
    units may each define their own ``struct x``) gets ``___2``, ``___3`` ... after the first,
    as libbpf's btf_dump does. A FWD takes the name of the first definition."""
    names: dict[int, str] = {}
    counts: dict[tuple[str, str], int] = {}
    first_tag: dict[str, int] = {}
    for i, t in enumerate(btf.types):
        if not i or not t.name:
            continue
        if t.kind in (B.STRUCT, B.UNION, B.ENUM, B.ENUM64, B.TYPEDEF):
            key = ("ordinary" if t.kind == B.TYPEDEF else "tag", t.name)
            counts[key] = counts.get(key, 0) + 1
            names[i] = t.name if counts[key] == 1 else f"{t.name}___{counts[key]}"
            if key[0] == "tag":
                first_tag.setdefault(t.name, i)
        elif t.kind not in (B.FWD,):
            names[i] = t.name
    for i, t in enumerate(btf.types):
        if i and t.kind == B.FWD:
            names[i] = t.name
    return names


def referenced(btf: B.Btf) -> set[int]:
    """Ids some other type refers to (an anonymous enum that is is written where it is used)."""
    used: set[int] = set()
    for t in btf.types[1:]:
        if t.kind in (B.PTR, B.TYPEDEF, B.CONST, B.VOLATILE, B.RESTRICT, B.TYPE_TAG, B.FUNC,
                      B.VAR, B.DECL_TAG, B.FUNC_PROTO):
            used.add(t.ref)
        if t.kind == B.ARRAY:
            used.add(t.array[0])
        if t.kind in (B.STRUCT, B.UNION, B.FUNC_PROTO):
            used.update(m[1] for m in t.members)
    return used


def _rank(btf: B.Btf, tid: int, has_name: bool = False, depth: int = 0) -> int:
    """bpftool's sort rank: anonymous enums, enums, ints and floats, structs and unions, then
    the rest; typedefs and arrays rank as what they name."""
    t = btf.types[tid] if tid else None
    if t is None or depth > 64:
        return 10
    has_name = has_name or bool(t.name)
    if t.kind in (B.ENUM, B.ENUM64):
        return 1 if has_name else 0
    if t.kind in (B.INT, B.FLOAT):
        return 2
    if t.kind in (B.STRUCT, B.UNION):
        return 3 if has_name else 10
    if t.kind == B.FUNC_PROTO:
        return 4 if has_name else 10
    if t.kind == B.ARRAY:
        return _rank(btf, t.array[0], has_name, depth + 1) if has_name else 10
    if t.kind in (B.TYPE_TAG, B.CONST, B.PTR, B.VOLATILE, B.RESTRICT, B.TYPEDEF, B.DECL_TAG):
        return _rank(btf, t.ref, has_name, depth + 1) if has_name else 10
    return 10


def _sort_name(btf: B.Btf, tid: int, from_ref: bool = False, depth: int = 0) -> str:
    t = btf.types[tid] if tid else None
    if t is None or depth > 64:
        return ""
    if t.kind in (B.ENUM, B.ENUM64):
        return t.name or ("" if from_ref or not t.members else t.members[0][0])
    if t.kind == B.ARRAY:
        return _sort_name(btf, t.array[0], True, depth + 1)
    if t.kind in (B.TYPE_TAG, B.CONST, B.PTR, B.VOLATILE, B.RESTRICT, B.TYPEDEF, B.DECL_TAG):
        return _sort_name(btf, t.ref, True, depth + 1)
    return t.name


def dump_c(btf: B.Btf, sort: bool = True) -> str:
    """The header ``bpftool btf dump file F format c`` writes for ``btf`` (types in bpftool's
    sorted order unless ``sort`` is off, its ``unsorted`` option)."""
    head = ("#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n\n"
            "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n"
            "#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)\n"
            "#endif\n\n"
            "#ifndef __ksym\n#define __ksym __attribute__((section(\".ksyms\")))\n#endif\n\n"
            "#ifndef __weak\n#define __weak __attribute__((weak))\n#endif\n\n"
            "#ifndef __bpf_fastcall\n#if __has_attribute(bpf_fastcall)\n"
            "#define __bpf_fastcall __attribute__((bpf_fastcall))\n#else\n"
            "#define __bpf_fastcall\n#endif\n#endif\n\n")
    tail = ("\n/* BPF kfuncs */\n#ifndef BPF_NO_KFUNC_PROTOTYPES\n#endif\n\n"
            "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute pop\n#endif\n\n"
            "#endif /* __VMLINUX_H__ */\n")
    w = CWriter(btf)
    ids = w.top_level()
    if sort:
        ids.sort(key=lambda i: (_rank(btf, i), _sort_name(btf, i), btf.types[i].name, i))
    return head + w.types(ids) + tail
