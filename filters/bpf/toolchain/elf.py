"""ELF64 relocatable EM_BPF objects: the writer `tracesim cc` uses and the loader for ours and clang's.

Layout conventions are clang's: one section per ``SEC()``, helper-free subprograms in ``.text``,
``R_BPF_64_64`` on the ``ld_imm64`` that takes a map's (or a global variable's) address,
``R_BPF_64_32`` on a ``call`` into another section (target slot = symbol value / 8 + imm + 1),
maps in ``maps`` (legacy ``struct bpf_map_def``) or ``.maps`` (BTF-defined, described by ``.BTF``),
global variables in ``.rodata``/``.data``/``.bss`` (each becomes a one-element array map).

The loader resolves what libbpf resolves at load time: every program gets the subprograms it calls
appended and its calls re-pointed, and every map reference becomes ``ld_imm64`` with src_reg
``PSEUDO_MAP_FD`` (imm = index into ``BpfObject.maps``) or ``PSEUDO_MAP_VALUE`` (imm = map index,
the second slot's imm = offset inside the value).
"""
from __future__ import annotations

import bisect
import io
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from tracesim.filters.bpf.toolchain import btf as btfmod
from tracesim.filters.bpf.toolchain.core_reloc import BtfExt, CoreReloError, parse_btf_ext
from tracesim.filters.bpf.toolchain.externs import Externs, ExternSym
from tracesim.filters.bpf.toolchain.externs import resolve as resolve_externs
from tracesim.filters.bpf.vm.analysis import is_pseudo_call
from tracesim.filters.bpf.vm.isa import (
    LD_IMM64,
    PSEUDO_BTF_ID,
    PSEUDO_FUNC,
    PSEUDO_MAP_FD,
    PSEUDO_MAP_VALUE,
    Insn,
    decode,
    encode,
)
from tracesim.filters.bpf.vm.isa import to_s32 as isa_s32

EM_BPF = 247
ET_REL = 1
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_NOBITS, SHT_REL = 1, 2, 3, 8, 9
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR, SHF_INFO_LINK = 0x1, 0x2, 0x4, 0x40
STB_LOCAL, STB_GLOBAL = 0, 1
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 0, 1, 2, 3, 4
SHN_UNDEF, SHN_ABS = 0, 0xFFF1

# Relocation types of the BPF backend (llvm/BinaryFormat/ELFRelocs/BPF.def).
R_BPF_NONE, R_BPF_64_64, R_BPF_64_ABS64, R_BPF_64_ABS32, R_BPF_64_NODYLD32, R_BPF_64_32 = (
    0, 1, 2, 3, 4, 10)

BPF_MAP_TYPE_ARRAY = 2
BPF_F_RDONLY_PROG = 1 << 7
DATA_SECTIONS = (".rodata", ".data", ".bss")


class ElfLoadError(ValueError):
    """An object the loader cannot use; the message names the section and symbol involved."""


# ---------------------------------------------------------------- what the loader returns

@dataclass
class MapSpec:
    """A map the object defines.  For global-data maps (``.data`` ...) ``initial`` is the value."""
    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    section: str = ""
    initial: bytes = b""
    key_type: int = 0        # BTF type ids in BpfObject.btf (0: unknown)
    value_type: int = 0
    # __array(values, ...): the initial slots (index -> program or map name) and, for a map
    # of maps, its inner map's definition
    init_slots: dict[int, str] = field(default_factory=dict)
    inner: MapSpec | None = None
    map_extra: int = 0       # __ulong(map_extra, ...): a bloom filter's number of hashes


# One .BTF.ext line_info record: (insn index, file name, source line, line number, column).
LineInfo = tuple[int, str, str, int, int]


@dataclass
class ProgramSpec:
    """One program, relocated: its own code followed by every subprogram it calls.
    ``func_info`` ((insn index, BTF FUNC id)) and ``line_info`` come from ``.BTF.ext``, their
    insn indexes moved to where linking put each function (empty without ``.BTF.ext``)."""
    name: str
    section: str
    insns: list[Insn]
    func_info: list[tuple[int, int]] = field(default_factory=list)
    line_info: list[LineInfo] = field(default_factory=list)


@dataclass
class BpfObject:
    programs: list[ProgramSpec]
    maps: list[MapSpec]
    license: str = ""
    btf: btfmod.Btf | None = None
    core_log: list[str] = field(default_factory=list)     # libbpf's CO-RE relocation lines

    def program(self, key: str | None = None) -> ProgramSpec:
        """The program named ``key`` (function name or section); the only one when ``key`` is None."""
        if key is None:
            if len(self.programs) != 1:
                names = ", ".join(p.section for p in self.programs) or "none"
                raise ElfLoadError(f"object has {len(self.programs)} programs ({names}): name one")
            return self.programs[0]
        for p in self.programs:
            if key in (p.name, p.section):
                return p
        raise ElfLoadError(f"object has no program or section named '{key}'")

    def map_index(self, name: str) -> int:
        for i, m in enumerate(self.maps):
            if m.name == name:
                return i
        raise KeyError(name)


# ---------------------------------------------------------------- loader

@dataclass
class _Symbol:
    name: str
    kind: int
    bind: int
    shndx: int
    value: int
    size: int
    weak: bool = False


@dataclass
class _Elf:
    sections: list[tuple[str, int, int, bytes, int, int]]   # name, type, flags, data, link, info
    symbols: list[_Symbol]
    by_name: dict[str, int] = field(default_factory=dict)
    externs: Externs | None = None       # the undefined symbols, resolved
    kconfig_map: int = -1                # index of the .kconfig map

    def section_name(self, idx: int) -> str:
        return self.sections[idx][0] if 0 <= idx < len(self.sections) else f"#{idx}"


def load_object(data: bytes, ksym_address: Callable[[str], int | None] | None = None,
                kernel_btf: Any = None) -> BpfObject:
    """Load an EM_BPF relocatable object (ours or clang's); its externs are resolved as
    ``externs.resolve`` says (``ksym_address``: name -> kernel address, for untyped
    ``__ksym``; ``kernel_btf``: the kernel's BTF, for typed ones)."""
    elf = _read_elf(data)
    btf = None
    if ".BTF" in elf.by_name:
        try:
            btf = btfmod.parse(elf.sections[elf.by_name[".BTF"]][3])
        except btfmod.BtfError as e:
            raise ElfLoadError(f"section '.BTF': {e}") from None
        _fixup_datasecs(elf, btf)
    maps, map_of = _collect_maps(elf, btf)
    undefined = [ExternSym(s.name, s.weak) for s in elf.symbols
                 if s.shndx == SHN_UNDEF and s.name and s.kind != STT_FILE]
    if undefined:
        elf.externs = ext = resolve_externs(btf, undefined, ksym_address,
                                            kernel_btf=kernel_btf)
        if ext.kconfig_offsets:
            elf.kconfig_map = len(maps)
            maps.append(MapSpec(".kconfig", BPF_MAP_TYPE_ARRAY, 4, len(ext.kconfig), 1,
                                BPF_F_RDONLY_PROG, ".kconfig", initial=ext.kconfig))
    license_ = ""
    if "license" in elf.by_name:
        license_ = elf.sections[elf.by_name["license"]][3].split(b"\0")[0].decode("ascii", "replace")
    relocs = _collect_relocs(elf)
    functions = _collect_functions(elf)
    text = elf.by_name.get(".text")
    entries = [(i, fn) for i, fns in functions.items() if i != text for fn in fns]
    if not entries:   # no SEC() programs: the global functions of .text are the programs
        entries = [(text, fn) for fn in functions.get(text, []) if fn.bind == STB_GLOBAL]
    btf_ext = _btf_ext(elf, btf)
    programs = []
    for i, fn in entries:
        placed: list[tuple[int, _Symbol, int]] = []
        insns = _link_program(elf, i, fn, functions, relocs, map_of, placed)
        spec = ProgramSpec(fn.name, elf.section_name(i), insns)
        if btf_ext is not None:
            spec.func_info = _moved(btf_ext.func_info, elf, placed)
            spec.line_info = _moved(btf_ext.line_info, elf, placed)
        programs.append(spec)
    return BpfObject(programs, maps, license_, btf)


def _fixup_datasecs(elf: _Elf, btf: btfmod.Btf) -> None:
    """libbpf's btf_fixup_datasec: clang leaves a DATASEC's size and its variables' offsets 0;
    they are the ELF section's size and the variables' symbol values."""
    for t in btf.types[1:]:
        if t.kind != btfmod.DATASEC or t.name not in elf.by_name:
            continue
        shndx = elf.by_name[t.name]
        t.ref = t.ref or len(elf.sections[shndx][3])
        where = {s.name: s.value for s in elf.symbols if s.shndx == shndx and s.kind == STT_OBJECT}
        t.secinfo = [(var, where.get(btf.types[var].name, off) if 0 < var < len(btf.types)
                      else off, size) for var, off, size in t.secinfo]


_INSN_LINE = re.compile(r"^(\d+): \([0-9a-f]{2}\) ")


def annotate_verifier_log(log: str, line_info: list[LineInfo]) -> str:
    """The verifier log as the kernel writes it for a program loaded with line_info
    (``verbose_linfo``): before an instruction line whose source line differs from the last one
    shown, ``; <source, left-trimmed> @ <file's base name>:<line>``."""
    if not line_info:
        return log
    starts = [rec[0] for rec in line_info]
    out, shown = [], -1
    for line in log.splitlines(keepends=True):
        m = _INSN_LINE.match(line)
        if m:
            k = bisect.bisect_right(starts, int(m[1])) - 1
            if k >= 0 and k != shown:
                _, file, text, num, _col = line_info[k]
                out.append(f"; {text.lstrip()} @ {file.rpartition('/')[2]}:{num}\n")
                shown = k
        out.append(line)
    return "".join(out)


def _btf_ext(elf: _Elf, btf: btfmod.Btf | None) -> BtfExt | None:
    """The object's ``.BTF.ext`` decoded, or None (absent, or unreadable: libbpf ignores it
    then, and the open step has already logged its warning)."""
    if btf is None or ".BTF.ext" not in elf.by_name:
        return None
    try:
        return parse_btf_ext(elf.sections[elf.by_name[".BTF.ext"]][3], btf)
    except CoreReloError:
        return None


def _moved(records: dict[str, list[tuple]], elf: _Elf,
           placed: list[tuple[int, _Symbol, int]]) -> list:
    """The records of the functions a program is linked from, each at its linked insn index."""
    out = []
    for sec, fn, base in placed:
        first, end = fn.value // 8, (fn.value + fn.size) // 8
        for rec in records.get(elf.section_name(sec), ()):
            slot = rec[0] // 8
            if first <= slot < end:
                out.append((base + slot - first, *rec[1:]))
    return sorted(out)


def _read_elf(data: bytes) -> _Elf:
    try:
        f = ELFFile(io.BytesIO(data))
        if f["e_machine"] not in ("EM_BPF", EM_BPF):
            raise ElfLoadError(f"not a BPF object (e_machine {f['e_machine']})")
        if f["e_type"] != "ET_REL":
            raise ElfLoadError(f"not a relocatable object (e_type {f['e_type']})")
        sections = []
        for s in f.iter_sections():
            kind = {"SHT_PROGBITS": SHT_PROGBITS, "SHT_SYMTAB": SHT_SYMTAB,
                    "SHT_STRTAB": SHT_STRTAB, "SHT_NOBITS": SHT_NOBITS,
                    "SHT_REL": SHT_REL}.get(s["sh_type"], -1)
            body = b"\0" * s["sh_size"] if kind == SHT_NOBITS else s.data()
            sections.append((s.name, kind, s["sh_flags"], body, s["sh_link"], s["sh_info"]))
        symbols = []
        symtab: Any = f.get_section_by_name(".symtab")   # a SymbolTableSection
        if symtab is not None:
            for sym in symtab.iter_symbols():
                shndx = sym["st_shndx"]
                bind = sym["st_info"]["bind"]
                if shndx == "SHN_UNDEF":
                    shndx = SHN_UNDEF
                symbols.append(_Symbol(
                    sym.name, _SYMBOL_TYPES.get(sym["st_info"]["type"], -1),
                    STB_GLOBAL if bind in ("STB_GLOBAL", "STB_WEAK") else STB_LOCAL,
                    shndx if isinstance(shndx, int) else -1, sym["st_value"], sym["st_size"],
                    bind == "STB_WEAK"))
    except ELFError as e:
        raise ElfLoadError(f"not a valid ELF object: {e}") from None
    except (struct.error, ValueError) as e:
        if isinstance(e, ElfLoadError):
            raise
        raise ElfLoadError(f"not a valid ELF object: {e}") from None
    elf = _Elf(sections, symbols)
    elf.by_name = {s[0]: i for i, s in enumerate(sections)}
    return elf


_SYMBOL_TYPES = {"STT_NOTYPE": STT_NOTYPE, "STT_OBJECT": STT_OBJECT, "STT_FUNC": STT_FUNC,
                 "STT_SECTION": STT_SECTION, "STT_FILE": STT_FILE}


def _collect_maps(elf: _Elf, btf: btfmod.Btf | None) -> tuple[list[MapSpec], dict]:
    """All maps, and a look-up (section index, offset) -> map index for relocations."""
    maps: list[MapSpec] = []
    map_of: dict[tuple[int, int], int] = {}
    if "maps" in elf.by_name:
        shndx = elf.by_name["maps"]
        body = elf.sections[shndx][3]
        syms = sorted((s for s in elf.symbols if s.shndx == shndx and s.kind != STT_SECTION
                       and s.name), key=lambda s: s.value)
        if syms:
            def_size = len(body) // len(syms)
            if def_size < 16:
                raise ElfLoadError(f"section 'maps': {len(syms)} maps in {len(body)} bytes: "
                                   f"each struct bpf_map_def is only {def_size} bytes")
            for s in syms:
                raw = body[s.value:s.value + def_size][:20].ljust(20, b"\0")
                mtype, ksize, vsize, entries, flags = struct.unpack("<5I", raw)
                map_of[(shndx, s.value)] = len(maps)
                maps.append(MapSpec(s.name, mtype, ksize, vsize, entries, flags, "maps"))
    if ".maps" in elf.by_name:
        shndx = elf.by_name[".maps"]
        syms = sorted((s for s in elf.symbols if s.shndx == shndx and s.kind != STT_SECTION
                       and s.name), key=lambda s: s.value)
        if syms and btf is None:
            raise ElfLoadError(f"section '.maps': map '{syms[0].name}' is BTF-defined but the "
                               "object has no .BTF section (compile with -g)")
        described = {name: type_id for name, type_id, _, _ in btf.datasec(".maps")} if btf else {}
        for s in syms:
            if s.name not in described:
                raise ElfLoadError(f"section '.maps': map '{s.name}' is not described in .BTF")
            try:
                attrs = btf.map_attributes(described[s.name])
            except btfmod.BtfError as e:
                raise ElfLoadError(f"section '.maps': map '{s.name}': {e}") from None
            if "type" not in attrs:
                raise ElfLoadError(f"section '.maps': map '{s.name}' has no __uint(type, ...)")
            map_of[(shndx, s.value)] = len(maps)
            spec = _btf_map_spec(s.name, attrs)
            if "inner_type" in attrs:
                spec.inner = _btf_map_spec(s.name + ".inner", btf.map_attributes(attrs["inner_type"]))
            if "values_offset" in attrs:
                spec.value_size = spec.value_size or 4
                spec.init_slots = _initial_slots(elf, shndx, s, attrs["values_offset"])
            maps.append(spec)
    for shndx, (name, _kind, flags, body, _link, _info) in enumerate(elf.sections):
        if not (flags & SHF_ALLOC) or flags & SHF_EXECINSTR or not _is_data_section(name):
            continue
        map_of[(shndx, -1)] = len(maps)
        readonly = name.startswith(".rodata")
        maps.append(MapSpec(name, BPF_MAP_TYPE_ARRAY, 4, len(body), 1,
                            BPF_F_RDONLY_PROG if readonly else 0, name, initial=bytes(body)))
    return maps, map_of


def _btf_map_spec(name: str, attrs: dict[str, int]) -> MapSpec:
    if "type" not in attrs:
        raise ElfLoadError(f"section '.maps': map '{name}' has no __uint(type, ...)")
    return MapSpec(name, attrs["type"], attrs.get("key_size", 0), attrs.get("value_size", 0),
                   attrs.get("max_entries", 0), attrs.get("map_flags", 0), ".maps",
                   key_type=attrs.get("key_type", 0), value_type=attrs.get("value_type", 0),
                   map_extra=attrs.get("map_extra", 0))


def _initial_slots(elf: _Elf, shndx: int, sym: _Symbol, values_offset: int) -> dict[int, str]:
    """The ``.values = { [i] = &prog_or_map }`` of a map: the ``.rel.maps`` relocations that
    fall in its ``values`` array."""
    out: dict[int, str] = {}
    for name, kind, _flags, body, _link, info in elf.sections:
        if kind != SHT_REL or info != shndx:
            continue
        for off, rinfo in struct.iter_unpack("<QQ", body[:len(body) // 16 * 16]):
            rel_off = off - sym.value - values_offset
            if 0 <= rel_off < sym.size - values_offset:      # the symbol covers its slots
                target = elf.symbols[rinfo >> 32] if rinfo >> 32 < len(elf.symbols) else None
                if target is None or rel_off % 8:
                    raise ElfLoadError(f"section '{name}': bad relocation at {off:#x}")
                out[rel_off // 8] = target.name
    return out


def _is_data_section(name: str) -> bool:
    return any(name == d or name.startswith(d + ".") for d in DATA_SECTIONS)


def _collect_relocs(elf: _Elf) -> dict[int, dict[int, tuple[int, _Symbol]]]:
    """For each code section: slot -> (relocation type, symbol)."""
    out: dict[int, dict[int, tuple[int, _Symbol]]] = {}
    for name, kind, _flags, body, _link, info in elf.sections:
        if kind != SHT_REL or not 0 < info < len(elf.sections):
            continue
        if not elf.sections[info][2] & SHF_EXECINSTR:
            continue            # .rel.BTF, .rel.debug_*: nothing to do at load time
        table = out.setdefault(info, {})
        for off, rinfo in struct.iter_unpack("<QQ", body[:len(body) // 16 * 16]):
            sym_idx, rtype = rinfo >> 32, rinfo & 0xFFFFFFFF
            if sym_idx >= len(elf.symbols):
                raise ElfLoadError(f"section '{name}': relocation at offset {off:#x} names "
                                   f"symbol #{sym_idx}, past the symbol table")
            if off % 8:
                raise ElfLoadError(f"section '{name}': relocation at offset {off:#x} is not on "
                                   "an instruction boundary")
            table[off // 8] = (rtype, elf.symbols[sym_idx])
    return out


def _collect_functions(elf: _Elf) -> dict[int, list[_Symbol]]:
    """Function symbols per code section, by start; a section without any is one function."""
    out: dict[int, list[_Symbol]] = {}
    for i, s in enumerate(elf.sections):
        if not s[2] & SHF_EXECINSTR:
            continue
        funcs = sorted((sym for sym in elf.symbols if sym.shndx == i and sym.kind == STT_FUNC),
                       key=lambda sym: sym.value)
        if not funcs:
            funcs = [_Symbol(s[0], STT_FUNC, STB_GLOBAL, i, 0, len(s[3]))]
        for k, fn in enumerate(funcs):   # a zero st_size runs to the next function
            if fn.size == 0:
                end = funcs[k + 1].value if k + 1 < len(funcs) else len(s[3])
                funcs[k] = _Symbol(fn.name, fn.kind, fn.bind, fn.shndx, fn.value, end - fn.value)
        out[i] = funcs
    return out


def _function_at(functions: dict[int, list[_Symbol]], shndx: int, slot: int) -> _Symbol | None:
    for fn in functions.get(shndx, []):
        if fn.value // 8 <= slot < (fn.value + fn.size) // 8:
            return fn
    return None


def _link_program(elf: _Elf, shndx: int, entry: _Symbol, functions: dict, relocs: dict,
                  map_of: dict, placed: list | None = None) -> list[Insn]:
    """The entry function's slots followed by every subprogram reachable by calls (as libbpf);
    ``placed`` gets (section, function, first insn index) for each function linked in."""
    order = [(shndx, entry)]
    position = {(shndx, entry.value): 0}
    code: list[list[Insn]] = []
    k = 0
    while k < len(order):           # breadth first: each callee placed once, after its caller
        sec, fn = order[k]
        body = elf.sections[sec][3]
        if fn.value + fn.size > len(body) or fn.value % 8 or fn.size % 8:
            raise ElfLoadError(f"section '{elf.section_name(sec)}': function '{fn.name}' lies "
                               "outside the section or off instruction boundaries")
        insns = decode(body[fn.value:fn.value + fn.size])
        code.append(insns)
        for i, insn in enumerate(insns):
            callback = _callback_target(elf, relocs, sec, fn.value // 8 + i, insn)
            if is_pseudo_call(insn) or callback is not None:
                target_sec, target = callback or _call_target(elf, sec, fn.value // 8 + i, insn,
                                                              relocs)
                callee = _function_at(functions, target_sec, target)
                if callee is None:
                    raise ElfLoadError(
                        f"section '{elf.section_name(sec)}': call at insn {fn.value // 8 + i} goes "
                        f"to insn {target} of section '{elf.section_name(target_sec)}', which is "
                        "in no function")
                if (target_sec, callee.value) not in position:
                    position[(target_sec, callee.value)] = sum(f.size // 8 for _, f in order)
                    order.append((target_sec, callee))
        k += 1
    out: list[Insn] = []
    for (sec, fn), insns in zip(order, code, strict=False):
        sec_name, table = elf.section_name(sec), relocs.get(sec, {})
        base_old, base_new = fn.value // 8, len(out)
        if placed is not None:
            placed.append((sec, fn, base_new))
        for i, insn in enumerate(insns):
            slot = base_old + i
            rel = table.get(slot)
            callback = _callback_target(elf, relocs, sec, slot, insn)
            if is_pseudo_call(insn) or callback is not None:
                target_sec, target = callback or _call_target(elf, sec, slot, insn, relocs)
                callee = _function_at(functions, target_sec, target)
                new_target = position[(target_sec, callee.value)] + target - callee.value // 8
                insns[i] = insn._replace(imm=new_target - (base_new + i + 1))
                if callback is not None:       # ld_imm64 of a function: a callback (libbpf)
                    insns[i] = insns[i]._replace(src=PSEUDO_FUNC)
            elif insn.opcode == LD_IMM64 and rel is not None:
                if i + 1 >= len(insns):
                    raise ElfLoadError(f"section '{sec_name}': ld_imm64 at insn {slot} is cut off")
                insns[i], insns[i + 1] = _map_reference(elf, sec_name, slot, insn, insns[i + 1],
                                                        rel, map_of)
            elif rel is not None and rel[0] != R_BPF_NONE:
                raise ElfLoadError(f"section '{sec_name}': relocation against symbol "
                                   f"'{rel[1].name}' at insn {slot} is on neither an ld_imm64 "
                                   "nor a call")
        out.extend(insns)
    return out


def _callback_target(elf: _Elf, relocs: dict, sec: int, slot: int,
                     insn: Insn) -> tuple[int, int] | None:
    """(section, slot) of the function an ``ld_imm64`` takes the address of (``r2 = cb ll``,
    relocated against a code section), or None."""
    rel = relocs.get(sec, {}).get(slot)
    if insn.opcode != LD_IMM64 or rel is None or rel[0] != R_BPF_64_64:
        return None
    sym = rel[1]
    if not 0 < sym.shndx < len(elf.sections) or not elf.sections[sym.shndx][2] & SHF_EXECINSTR:
        return None
    return sym.shndx, (sym.value + insn.imm) // 8


def _call_target(elf: _Elf, sec: int, slot: int, insn: Insn, relocs: dict) -> tuple[int, int]:
    """(section, slot) a bpf-to-bpf call goes to: by relocation, else relative to the call."""
    rel = relocs.get(sec, {}).get(slot)
    if rel is None:
        return sec, slot + insn.imm + 1
    rtype, sym = rel
    if rtype != R_BPF_64_32:
        raise ElfLoadError(f"section '{elf.section_name(sec)}': call at insn {slot} to "
                           f"'{sym.name}' has relocation type {rtype}, expected R_BPF_64_32")
    return sym.shndx, sym.value // 8 + insn.imm + 1


def _map_reference(elf: _Elf, sec_name: str, slot: int, first: Insn, second: Insn,
                   rel: tuple[int, _Symbol], map_of: dict) -> tuple[Insn, Insn]:
    rtype, sym = rel
    where = f"section '{sec_name}': insn {slot} refers to '{sym.name or elf.section_name(sym.shndx)}'"
    if rtype != R_BPF_64_64:
        raise ElfLoadError(f"{where} with relocation type {rtype}, expected R_BPF_64_64")
    ext = elf.externs
    if sym.shndx == SHN_UNDEF and ext is not None:
        if sym.name in ext.kconfig_offsets:        # a load from the .kconfig map
            return (first._replace(src=PSEUDO_MAP_VALUE, imm=elf.kconfig_map),
                    second._replace(imm=first.imm + ext.kconfig_offsets[sym.name]))
        if sym.name in ext.ksym_btf_ids:                   # a typed __ksym: its BTF id
            return (first._replace(src=PSEUDO_BTF_ID, imm=ext.ksym_btf_ids[sym.name]),
                    second._replace(imm=0))
        addr = ext.ksyms[sym.name] + first.imm            # a __ksym: its address
        return (first._replace(src=0, imm=isa_s32(addr & 0xFFFFFFFF)),
                second._replace(imm=isa_s32(addr >> 32 & 0xFFFFFFFF)))
    target_name = elf.section_name(sym.shndx)
    if (sym.shndx, sym.value) in map_of and target_name in ("maps", ".maps"):
        return first._replace(src=PSEUDO_MAP_FD, imm=map_of[(sym.shndx, sym.value)]), second
    if (sym.shndx, -1) in map_of:
        offset = first.imm + sym.value
        return (first._replace(src=PSEUDO_MAP_VALUE, imm=map_of[(sym.shndx, -1)]),
                second._replace(imm=offset))
    if target_name in ("maps", ".maps"):
        raise ElfLoadError(f"{where}, which is not a map definition in '{target_name}'")
    raise ElfLoadError(f"{where} in section '{target_name}', which holds no map or global data")


# ---------------------------------------------------------------- writer

@dataclass
class Reloc:
    slot: int                # instruction index inside its section
    symbol: str              # a function, object or section name
    type: int = R_BPF_64_64


@dataclass
class FuncSymbol:
    name: str
    section: str
    slot: int                # first slot inside the section
    count: int               # number of slots
    is_global: bool = True


@dataclass
class DataSymbol:
    name: str
    section: str
    offset: int
    size: int
    is_global: bool = True


@dataclass
class ObjectSpec:
    """Everything the writer needs; code sections keep the order they were added."""
    source_name: str = ""
    code: dict[str, list[Insn]] = field(default_factory=dict)
    relocs: dict[str, list[Reloc]] = field(default_factory=dict)
    functions: list[FuncSymbol] = field(default_factory=list)
    data: dict[str, bytes] = field(default_factory=dict)   # maps, .rodata, .data, .maps, license...
    bss_size: int = 0
    objects: list[DataSymbol] = field(default_factory=list)
    btf: bytes = b""


def write_object(spec: ObjectSpec) -> bytes:
    """Serialise ``spec`` as an ELF64 little-endian relocatable EM_BPF object."""
    strtab = _StringTable()
    # (name, type, flags, body, link, info, align, entsize) ; link/info patched below
    sections: list[list] = [["", 0, 0, b"", 0, 0, 0, 0], [".strtab", SHT_STRTAB, 0, b"", 0, 0, 1, 0]]
    index: dict[str, int] = {}

    def add(name: str, kind: int, flags: int, body: bytes, align: int, entsize: int = 0) -> int:
        sections.append([name, kind, flags, body, 0, 0, align, entsize])
        index[name] = len(sections) - 1
        return index[name]

    rel_sections: list[tuple[str, int]] = []
    for name, insns in spec.code.items():
        add(name, SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, encode(insns), 8)
        if spec.relocs.get(name):
            rel_sections.append((name, add(".rel" + name, SHT_REL, SHF_INFO_LINK, b"", 8, 16)))
    for name, body in spec.data.items():
        if name == ".BTF":
            continue
        flags = SHF_ALLOC | (0 if name.startswith(".rodata") else SHF_WRITE)
        add(name, SHT_PROGBITS, flags, body, 1 if name == "license" else 8)
    if spec.bss_size:
        add(".bss", SHT_NOBITS, SHF_ALLOC | SHF_WRITE, b"\0" * spec.bss_size, 8)
    if spec.btf:
        add(".BTF", SHT_PROGBITS, 0, spec.btf, 4)
    symtab_idx = add(".symtab", SHT_SYMTAB, 0, b"", 8, 24)

    # Symbols: null, file, section symbols of code sections, locals, then globals.
    symbols: list[tuple[str, int, int, int, int, int]] = [("", 0, 0, 0, 0, 0)]
    sym_index: dict[str, int] = {}
    if spec.source_name:
        symbols.append((spec.source_name, STB_LOCAL, STT_FILE, SHN_ABS, 0, 0))
    for name in list(spec.code) + [d for d in spec.data if d != ".BTF"] + \
            ([".bss"] if spec.bss_size else []):
        sym_index.setdefault(name, len(symbols))
        symbols.append(("", STB_LOCAL, STT_SECTION, index[name], 0, 0))
    named = [(f.name, f.is_global, STT_FUNC, index[f.section], f.slot * 8, f.count * 8)
             for f in spec.functions]
    named += [(o.name, o.is_global, STT_OBJECT, index[o.section], o.offset, o.size)
              for o in spec.objects]
    for want_global in (False, True):
        for name, is_global, kind, shndx, value, size in named:
            if is_global == want_global:
                sym_index[name] = len(symbols)
                symbols.append((name, STB_GLOBAL if is_global else STB_LOCAL, kind, shndx,
                                value, size))
    first_global = next((i for i, s in enumerate(symbols) if s[1] == STB_GLOBAL), len(symbols))
    symtab = b"".join(struct.pack("<IBBHQQ", strtab.add(n) if n else 0, (bind << 4) | kind, 0,
                                  shndx, value, size)
                      for n, bind, kind, shndx, value, size in symbols)
    sections[symtab_idx][3] = symtab
    sections[symtab_idx][4], sections[symtab_idx][5] = 1, first_global

    for target, rel_idx in rel_sections:
        rows = []
        for r in spec.relocs[target]:
            if r.symbol not in sym_index:
                raise ValueError(f"relocation in '{target}' names unknown symbol '{r.symbol}'")
            rows.append(struct.pack("<QQ", r.slot * 8, (sym_index[r.symbol] << 32) | r.type))
        sections[rel_idx][3] = b"".join(rows)
        sections[rel_idx][4], sections[rel_idx][5] = symtab_idx, index[target]

    for s in sections[1:]:
        strtab.add(s[0])
    sections[1][3] = strtab.data

    out = bytearray(64)
    offsets = []
    for _name, kind, _flags, body, _link, _info, align, _entsize in sections:
        if kind == 0:
            offsets.append(0)
            continue
        if align > 1:
            out += b"\0" * (-len(out) % align)
        offsets.append(len(out))
        if kind != SHT_NOBITS:
            out += body
    out += b"\0" * (-len(out) % 8)
    shoff = len(out)
    for (name, kind, flags, body, link, info, align, entsize), off in zip(sections, offsets, strict=False):
        name_off = strtab.add(name) if name else 0
        out += struct.pack("<IIQQQQIIQQ", name_off, kind, flags, 0, off, len(body), link, info,
                           align, entsize)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    out[:64] = ident + struct.pack("<HHIQQQIHHHHHH", ET_REL, EM_BPF, 1, 0, 0, shoff, 0, 64, 0, 0,
                                   64, len(sections), 1)
    return bytes(out)


class _StringTable:
    def __init__(self) -> None:
        self.data = b"\0"
        self._at: dict[str, int] = {"": 0}

    def add(self, s: str) -> int:
        if s not in self._at:
            self._at[s] = len(self.data)
            self.data += s.encode() + b"\0"
        return self._at[s]
