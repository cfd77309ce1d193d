"""The modelled kernel's own BTF: what ``/sys/kernel/btf/vmlinux`` holds on a real kernel.

Built from the model's types (``c_types.kernel_types()``, the headers generated from the 6.18
BTF): every struct, union, enum and typedef with its real name, kind and member offsets, the
typedef names members are declared with (``__be16 protocol``), ints spelled as the kernel's BTF
spells them (``long unsigned int``). The ``__pad_at_<offset>`` members standing for what the
model does not use are left out: BTF lists members by offset, so the others keep theirs and
each struct keeps its size. ``tracesim btf dump`` prints it.
"""
from __future__ import annotations

import functools

from tracesim.filters.bpf.toolchain import btf as B
from tracesim.filters.bpf.toolchain.btf_dump import PAD_PREFIX
from tracesim.kernel_model.c_types import (
    INCLUDE_DIR,
    Array,
    CType,
    Enum,
    Float,
    Func,
    Int,
    Pointer,
    Struct,
    TypeEnv,
    Void,
    kernel_types,
    parse_c,
    preprocess,
)
from tracesim.kernel_model.percpu import PERCPU_VARS, PercpuVar

# c_types spelling -> the one gcc writes into DWARF (and pahole into BTF)
INT_NAMES = {"unsigned long": "long unsigned int", "long": "long int",
             "unsigned short": "short unsigned int", "short": "short int",
             "long long": "long long int", "unsigned long long": "long long unsigned int"}


class _Builder:
    def __init__(self, env: TypeEnv) -> None:
        self.env = env
        self.btf = B.Btf([B.BtfType(0)])
        self.ids: dict[object, int] = {}
        self.typedef_ids: dict[str, int] = {}

    def _add(self, t: B.BtfType) -> int:
        self.btf.types.append(t)
        return len(self.btf.types) - 1

    def typedef(self, name: str) -> int:
        if name in self.typedef_ids:
            return self.typedef_ids[name]
        tid = self.typedef_ids[name] = self._add(B.BtfType(B.TYPEDEF, name))
        self.btf.types[tid].ref = self.spelled(self.env.typedefs[name], self.env.typedef_of.get(name))
        return tid

    def spelled(self, t: CType, typedef: tuple[str, int] | None) -> int:
        """The id of ``t`` as declared: through the typedef it names, under its declarators."""
        if typedef is None:
            return self.type_id(t)
        name, depth = typedef
        if depth == 0:
            return self.typedef(name)
        if isinstance(t, Pointer):
            return self._add(B.BtfType(B.PTR, ref=self.spelled(t.target, (name, depth - 1))))
        if isinstance(t, Array):
            elem = self.spelled(t.elem, (name, depth - 1))
            return self._add(B.BtfType(B.ARRAY, array=(elem, self.int_id(), t.count or 0)))
        return self.type_id(t)

    def int_id(self) -> int:
        return self.type_id(Int("int", 4, True))

    def type_id(self, t: CType) -> int:
        key: object = id(t) if isinstance(t, Struct) else t
        if key in self.ids:
            return self.ids[key]
        if isinstance(t, Void):
            return 0
        if isinstance(t, Int):
            enc = B.INT_BOOL if t.name == "_Bool" else (
                B.INT_SIGNED if t.signed and t.name != "char" else 0)
            tid = self._add(B.BtfType(B.INT, INT_NAMES.get(t.name, t.name), t.size,
                                      int_bits=8 * t.size, int_encoding=enc))
        elif isinstance(t, Float):
            tid = self._add(B.BtfType(B.FLOAT, t.name, t.size))
        elif isinstance(t, Pointer):
            tid = self._add(B.BtfType(B.PTR))
            self.ids[key] = tid
            self.btf.types[tid].ref = self.type_id(t.target)
            return tid
        elif isinstance(t, Array):
            elem = self.type_id(t.elem)
            tid = self._add(B.BtfType(B.ARRAY, array=(elem, self.int_id(), t.count or 0)))
        elif isinstance(t, Struct):
            return self.struct(t)
        elif isinstance(t, Enum):
            kind = B.ENUM64 if t.size == 8 else B.ENUM
            tid = self._add(B.BtfType(kind, t.tag or "", t.size, kind_flag=t.signed,
                                      members=[(n, v, 0) for n, v in t.values]))
        elif isinstance(t, Func):
            params = [("", self.type_id(p), 0) for p in t.params]
            if t.variadic:
                params.append(("", 0, 0))
            tid = self._add(B.BtfType(B.FUNC_PROTO, "", self.type_id(t.ret), members=params))
        else:
            raise TypeError(f"no BTF for {t!r}")
        self.ids[key] = tid
        return tid

    def struct(self, s: Struct) -> int:
        kind = B.UNION if s.kind == "union" else B.STRUCT
        if not s.complete:
            tid = self._add(B.BtfType(B.FWD, s.tag or "", kind_flag=kind == B.UNION))
            self.ids[id(s)] = tid
            return tid
        tid = self._add(B.BtfType(kind, s.tag or "", s.size))
        self.ids[id(s)] = tid
        real = [m for m in s.members
                if m.name is not None and not m.name.startswith(PAD_PREFIX)
                or m.name is None and m.bit_size is None]     # anonymous struct/union members
        bitfields = any(m.bit_size is not None for m in real)
        members = []
        for m in real:
            bit = 8 * m.offset + (m.bit_offset or 0)
            if bitfields:
                bit |= (m.bit_size or 0) << 24
            members.append((m.name or "", self.spelled(m.type, m.typedef), bit))
        self.btf.types[tid].members = members
        self.btf.types[tid].kind_flag = bitfields
        return tid


# From the uapi <linux/bpf.h>: what a kernel's BTF has of it (programs of type socket filter or
# tc read struct __sk_buff through vmlinux.h); the header's legacy struct bpf_map_def is libbpf's.
UAPI_TYPES = (("struct", "__sk_buff"), ("enum", "bpf_map_type"), ("enum", "bpf_hdr_start_off"))


def build(env: TypeEnv, extra: tuple[tuple[TypeEnv, str, str], ...] = (),
          percpu: bool = False) -> B.Btf:
    """The BTF of every type ``env`` declares (typedefs, then structs, unions, named enums),
    then the ``extra`` ones: (environment, "struct" or "enum", name); with ``percpu``, the
    model's per-CPU variables last."""
    b = _Builder(env)
    for name in env.typedefs:
        b.typedef(name)
    for s in (*env.structs.values(), *env.unions.values()):
        b.type_id(s)
    for e in env.enums.values():
        b.type_id(e)
    for other, kind, name in extra:
        b.type_id(other.struct(name) if kind == "struct" else other.enums[name])
    if percpu:
        percpu_vars(b, env)
    return b.btf


def percpu_vars(b: _Builder, env: TypeEnv) -> None:
    """The per-CPU variables the model keeps (``percpu.PERCPU_VARS``): a global VAR each, in a
    ``.data..percpu`` DATASEC, as pahole emits them (the only variables in a kernel's BTF)."""
    secinfo = []
    for var in PERCPU_VARS:
        tid = b.type_id(env.parse_type(var.ctype))
        vid = b._add(B.BtfType(B.VAR, var.name, ref=tid, linkage=B.VAR_GLOBAL))
        secinfo.append((vid, var.offset, var.size))
    size = max(off + n for _, off, n in secinfo)
    b._add(B.BtfType(B.DATASEC, ".data..percpu", ref=size, secinfo=secinfo))


def uapi_types() -> TypeEnv:
    text = preprocess("#include <uapi/linux/bpf.h>\n", "<uapi>", [INCLUDE_DIR])
    env = TypeEnv()
    env.add(parse_c(text, "<uapi>"))
    return env


@functools.cache
def model_btf_bytes() -> bytes:
    """The raw BTF of the modelled kernel (``/sys/kernel/btf/vmlinux``)."""
    uapi = uapi_types()
    return build(kernel_types(), tuple((uapi, kind, name) for kind, name in UAPI_TYPES),
                 percpu=True).encode()


def model_btf() -> B.Btf:
    return B.parse(model_btf_bytes())


@functools.cache
def percpu_btf_vars() -> dict[int, tuple[PercpuVar, str, int]]:
    """The model BTF's per-CPU VARs by type id: (the variable, the kernel's name of its type,
    the type's size)."""
    btf = model_btf()
    by_name = {v.name: v for v in PERCPU_VARS}
    out = {}
    for tid, t in enumerate(btf.types):
        if t.kind == B.VAR and t.name in by_name:
            ref = btf.resolve(t.ref)
            out[tid] = (by_name[t.name], btf.get(ref).name if ref else "void", by_name[t.name].size)
    return out
