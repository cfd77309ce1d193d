"""BTF for the objects `tracesim cc` writes: the types of the maps in ``.maps`` (and of the other
global variables), so the loader, and map dumps, know each map's key and value types."""
from __future__ import annotations

from tracesim.filters.bpf.toolchain import btf as B
from tracesim.kernel_model.c_types import Array, CType, Enum, Float, Func, Int, Pointer, Struct, Void


class BtfBuilder:
    def __init__(self) -> None:
        self.btf = B.Btf([B.BtfType(0)])
        self._ids: dict[object, int] = {}

    def _add(self, t: B.BtfType) -> int:
        self.btf.types.append(t)
        return len(self.btf.types) - 1

    def type_id(self, t: CType) -> int:
        key = id(t) if isinstance(t, Struct) else t
        if key in self._ids:
            return self._ids[key]
        if isinstance(t, Void):
            return 0
        if isinstance(t, Int):
            enc = (B.INT_SIGNED if t.signed else 0) | (B.INT_CHAR if t.name.endswith("char") else 0)
            if t.name == "_Bool":
                enc = B.INT_BOOL
            tid = self._add(B.BtfType(B.INT, t.name, t.size, int_bits=8 * t.size,
                                      int_encoding=enc))
        elif isinstance(t, Pointer):
            tid = self._add(B.BtfType(B.PTR))
            self._ids[key] = tid
            self.btf.types[tid].ref = self.type_id(t.target)
            return tid
        elif isinstance(t, Array):
            elem = self.type_id(t.elem)
            index = self.type_id(Int("__ARRAY_SIZE_TYPE__", 4, False))
            tid = self._add(B.BtfType(B.ARRAY, array=(elem, index, t.count or 0)))
        elif isinstance(t, Struct):
            kind = B.UNION if t.kind == "union" else B.STRUCT
            tid = self._add(B.BtfType(kind, t.tag or "", t.size if t.complete else 0))
            self._ids[key] = tid
            if not t.complete:
                self.btf.types[tid] = B.BtfType(B.FWD, t.tag or "", 0,
                                                kind_flag=t.kind == "union")
                return tid
            bitfields = any(m.bit_size is not None for m in t.members)
            members = []
            for m in t.members:
                mid = self.type_id(m.type)
                bit = m.offset * 8 + (m.bit_offset or 0)
                if bitfields:
                    bit |= (m.bit_size or 0) << 24
                members.append((m.name or "", mid, bit))
            self.btf.types[tid].members = members
            self.btf.types[tid].kind_flag = bitfields
            return tid
        elif isinstance(t, Enum):
            tid = self._add(B.BtfType(B.ENUM, t.tag or "", t.size, kind_flag=t.signed,
                                      members=[(n, v, 0) for n, v in t.values]))
        elif isinstance(t, Float):
            tid = self._add(B.BtfType(B.FLOAT, t.name, t.size))
        elif isinstance(t, Func):
            ret = self.type_id(t.ret)
            params = [("", self.type_id(p), 0) for p in t.params]
            tid = self._add(B.BtfType(B.FUNC_PROTO, "", ret, members=params))
        else:
            raise TypeError(f"no BTF for {t!r}")
        self._ids[key] = tid
        return tid

    def datasec(self, name: str, variables: list[tuple[str, CType, int, bool]], size: int) -> None:
        """A DATASEC of (variable name, type, offset, global linkage) entries."""
        entries = []
        for vname, t, off, is_global in variables:
            var = self._add(B.BtfType(B.VAR, vname, self.type_id(t),
                                      linkage=B.VAR_GLOBAL if is_global else B.VAR_STATIC))
            entries.append((var, off, t.size))
        self._add(B.BtfType(B.DATASEC, name, size, secinfo=entries))

    def encode(self) -> bytes:
        return self.btf.encode()
