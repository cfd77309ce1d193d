"""``tracesim objdump prog.o [-d] [-r] [-S] [-l] [-h] [-t]``: an eBPF object's disassembly, byte for
byte as ``llvm-objdump -d`` prints it (``-r``: relocations inline), its section headers (``-h``)
and its symbol table (``-t``).  ``-l``/``-S`` (``--line-numbers``/``--source``) put
``; file:line`` and ``; <source line>`` before the instructions a line starts, as llvm-objdump
does, from the ``.BTF.ext`` line_info clang writes with ``-g`` (not DWARF: functions clang
inlined are not named)."""
from __future__ import annotations

import argparse
import io
import struct
import sys

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from tracesim.filters.bpf.toolchain import btf as btfmod
from tracesim.filters.bpf.toolchain import core_reloc
from tracesim.filters.bpf.toolchain.disasm import format_insn
from tracesim.filters.bpf.vm import isa
from tracesim.filters.bpf.vm.isa import decode

RELOC_NAMES = {0: "R_BPF_NONE", 1: "R_BPF_64_64", 2: "R_BPF_64_ABS64", 3: "R_BPF_64_ABS32",
               4: "R_BPF_64_NODYLD32", 10: "R_BPF_64_32"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracesim objdump", description=__doc__.split("\n\n")[0],
                                add_help=False)
    p.add_argument("object")
    p.add_argument("-d", action="store_true", help="disassemble (default)")
    p.add_argument("-r", action="store_true", help="show relocations")
    p.add_argument("-l", "--line-numbers", dest="line_numbers", action="store_true",
                   help="source file and line before the code of each line (from .BTF.ext)")
    p.add_argument("-S", "--source", dest="source", action="store_true",
                   help="source lines interleaved with the code (from .BTF.ext)")
    p.add_argument("-h", dest="headers", action="store_true", help="section headers")
    p.add_argument("-t", dest="symbols", action="store_true", help="symbol table")
    p.add_argument("--help", action="help")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        data = open(args.object, "rb").read()
        disasm = args.d or args.source or args.line_numbers or not (args.headers or args.symbols)
        text = objdump(data, args.object, disasm=disasm, relocs=args.r, headers=args.headers,
                       symbols=args.symbols, line_numbers=args.line_numbers, source=args.source)
    except OSError as e:
        print(f"tracesim objdump: error: '{args.object}': {e.strerror}", file=sys.stderr)
        return 1
    except (ELFError, ValueError, struct.error) as e:
        print(f"tracesim objdump: error: '{args.object}': {e}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


def objdump(data: bytes, name: str, disasm: bool = True, relocs: bool = False,
            headers: bool = False, symbols: bool = False, line_numbers: bool = False,
            source: bool = False) -> str:
    f = ELFFile(io.BytesIO(data))
    lines = _line_info(f) if line_numbers or source else None
    out = [f"\n{name}:\tfile format elf64-bpf\n"]
    sections = list(f.iter_sections())
    syms = list(f.get_section_by_name(".symtab").iter_symbols()) \
        if f.get_section_by_name(".symtab") else []
    if headers:
        out.append("Sections:\nIdx Name              Size     VMA              Type")
        for i, s in enumerate(sections):
            kind = "TEXT" if s["sh_flags"] & 4 else ("DATA" if s["sh_type"] == "SHT_PROGBITS"
                                                     and s["sh_flags"] & 2 else
                                                     "BSS" if s["sh_type"] == "SHT_NOBITS" else "")
            out.append(f"{i:>3} {s.name:<17} {s['sh_size']:08x} {0:016x} {kind}".rstrip())
        out.append("")
    if symbols:
        out.append("SYMBOL TABLE:")
        for sym in syms[1:]:
            bind = "g" if sym["st_info"]["bind"] == "STB_GLOBAL" else "l"
            kind = {"STT_FUNC": "F", "STT_OBJECT": "O", "STT_SECTION": "d", "STT_FILE": "df"}.get(
                sym["st_info"]["type"], " ")
            shndx = sym["st_shndx"]
            where = "*ABS*" if shndx == "SHN_ABS" else sections[shndx].name \
                if isinstance(shndx, int) else "*UND*"
            label = sym.name or (where if kind == "d" else "")
            out.append(f"{sym['st_value']:016x} {bind}     {kind:<2} {where}\t{sym['st_size']:016x} "
                       f"{label}")
        out.append("")
    if disasm:
        for idx, s in enumerate(sections):
            if not s["sh_flags"] & 4 or s["sh_size"] == 0:
                continue
            notes = _notes(lines, s.name, line_numbers, source) if lines is not None else {}
            out.append(disassemble_section(f, idx, s, syms, relocs, notes))
    return "\n".join(out) + ("\n" if not disasm else "")


def _line_info(f: ELFFile) -> tuple[btfmod.Btf, core_reloc.BtfExt] | None:
    """The object's BTF and .BTF.ext, or None when it has none it can read."""
    btf_sec, ext_sec = f.get_section_by_name(".BTF"), f.get_section_by_name(".BTF.ext")
    if btf_sec is None or ext_sec is None:
        return None
    try:
        btf = btfmod.parse(btf_sec.data())
        return btf, core_reloc.parse_btf_ext(ext_sec.data(), btf)
    except (btfmod.BtfError, core_reloc.CoreReloError):
        return None


def _notes(info: tuple[btfmod.Btf, core_reloc.BtfExt] | None, section: str, line_numbers: bool,
           source: bool) -> dict[int, list[str]]:
    """Byte offset -> the ``;`` lines llvm-objdump -l/-S prints before that instruction: the
    function's name where one starts (-l), then file:line (-l) and the source (-S) where the
    line changes."""
    if info is None:
        return {}
    btf, ext = info
    notes: dict[int, list[str]] = {}
    if line_numbers:
        for off, tid in ext.func_info.get(section, ()):
            name = btf.types[tid].name if 0 < tid < len(btf.types) else ""
            if name:
                notes.setdefault(off, []).append(f"; {name}():")
    last = None
    for off, file, text, line, _col in sorted(ext.line_info.get(section, ())):
        if (file, line) == last or line == 0:       # line 0: code of no source line
            continue
        last = (file, line)
        if line_numbers:
            notes.setdefault(off, []).append(f"; {file}:{line}")
        if source:
            notes.setdefault(off, []).append(f"; {text}")
    return notes


def disassemble_section(f: ELFFile, idx: int, s, syms, show_relocs: bool,
                        notes: dict[int, list[str]] | None = None) -> str:
    lines = [f"Disassembly of section {s.name}:"]
    labels: dict[int, str] = {}
    for sym in syms:
        if sym["st_shndx"] == idx and sym["st_info"]["type"] in ("STT_FUNC", "STT_NOTYPE") \
                and sym.name:
            if sym["st_value"] not in labels or sym["st_info"]["type"] == "STT_FUNC":
                labels[sym["st_value"]] = sym.name
    starts = sorted(labels)
    rel_at: dict[int, list[tuple[int, str]]] = {}
    if show_relocs:
        for rs in f.iter_sections():
            if rs["sh_type"] == "SHT_REL" and rs["sh_info"] == idx:
                symtab = f.get_section(rs["sh_link"])
                for r in rs.iter_relocations():
                    sym = symtab.get_symbol(r["r_info_sym"])
                    sname = sym.name or (f.get_section(sym["st_shndx"]).name
                                         if isinstance(sym["st_shndx"], int) else "")
                    rel_at.setdefault(r["r_offset"], []).append((r["r_info_type"], sname))
    insns = decode(s.data()[:s["sh_size"] // 8 * 8])
    pc = 0
    while pc < len(insns):
        addr = pc * 8
        if addr in labels:
            lines.append("")
            lines.append(f"{addr:016x} <{labels[addr]}>:")
        lines.extend((notes or {}).get(addr, ()))
        insn = insns[pc]
        wide = insn.opcode == isa.LD_IMM64 and pc + 1 < len(insns)
        raw = s.data()[addr:addr + (16 if wide else 8)]
        text = format_insn(insn, insns[pc + 1] if wide else None)
        if isa.is_jump(insn):
            target = isa.jump_target(pc, insn) * 8
            base = max((a for a in starts if a <= target), default=None)
            if base is not None:
                text += f" <{labels[base]}>" if base == target else \
                    f" <{labels[base]}+{target - base:#x}>"
        lines.append(f"{pc:>8}:\t{' '.join(f'{b:02x}' for b in raw)}\t{text}")
        for rtype, sname in rel_at.get(addr, []):
            lines.append(f"\t\t{addr:016x}:  {RELOC_NAMES.get(rtype, rtype)}\t{sname}")
        pc += 2 if wide else 1
    return "\n".join(lines) + "\n"
