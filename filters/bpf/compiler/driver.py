"""The pipeline: preprocess -> parse -> lower -> optimise -> select -> allocate -> emit -> ELF."""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pycparser import c_parser
from tracesim.filters.bpf.compiler import btfgen
from tracesim.filters.bpf.compiler.emit import MachineCode, emit
from tracesim.filters.bpf.compiler.errors import CompileError, error_at
from tracesim.filters.bpf.compiler.isel import select
from tracesim.filters.bpf.compiler.lower import Lowerer
from tracesim.filters.bpf.compiler.opt import dce, optimise
from tracesim.filters.bpf.compiler.preprocess import preprocess
from tracesim.filters.bpf.compiler.regalloc import allocate
from tracesim.filters.bpf.compiler.unit import Unit
from tracesim.filters.bpf.toolchain import elf

MAX_STACK = 512
_PARSE_ERROR = re.compile(r"^(?P<file>.*?):(?P<line>\d+):(?:(?P<col>\d+):)?\s*(?P<msg>.*)$")


@dataclass
class CompiledObject:
    """A compiled translation unit: the ELF object and the per-function machine code."""
    elf: bytes
    functions: list[MachineCode] = field(default_factory=list)
    license: str = ""

    def sections(self) -> dict[str, list[MachineCode]]:
        out: dict[str, list[MachineCode]] = {}
        for f in self.functions:
            out.setdefault(f.section, []).append(f)
        return out


def compile_file(path: str | Path, include_dirs: Iterable[str | Path] = (),
                 defines: Iterable[str] = (), opt_level: int = 2) -> CompiledObject:
    path = Path(path)
    try:
        source = path.read_text()
    except OSError as e:
        raise CompileError(f"cannot read '{path}': {e.strerror}") from None
    return compile_source(source, str(path), [path.parent, *include_dirs], defines, opt_level)


def compile_source(source: str, filename: str = "<stdin>",
                   include_dirs: Iterable[str | Path] = (), defines: Iterable[str] = (),
                   opt_level: int = 2) -> CompiledObject:
    """Compile restricted C to an EM_BPF object.  Raises CompileError on any user error."""
    text = preprocess(source, filename, include_dirs, defines)
    parser = c_parser.CParser(dialect="c23")
    try:
        ast = parser.parse(text, filename)
    except c_parser.ParseError as e:
        raise parse_error(str(e), parser) from None
    unit = Unit()
    unit.add(ast)
    machine = compile_functions(unit, opt_level)
    return CompiledObject(build_object(unit, machine, Path(filename).name), machine,
                          unit.license())


def parse_error(text: str, parser: c_parser.CParser) -> CompileError:
    """pycparser's message as a located diagnostic; without a position in the message, where
    the lexer stopped (the offending token)."""
    m = _PARSE_ERROR.match(text)
    lex = parser.clex
    file = getattr(lex, "_filename", None) or ""
    line = getattr(lex, "_lineno", 0)
    col = max(getattr(lex, "_pos", 0) - getattr(lex, "_line_start", 0), 0)
    msg = text.split(": ", 1)[-1]
    if m:
        file, line, col, msg = m.group("file"), int(m.group("line")), int(m.group("col") or 0), \
            m.group("msg")
    msg = {"Invalid declaration": "expected declaration",
           "Invalid expression": "expected expression"}.get(msg, msg)
    if msg.startswith("before: "):
        msg = f"expected expression or ';' before '{msg[8:]}'"
    return CompileError(msg, file, line, col)


def compile_functions(unit: Unit, opt_level: int) -> list[MachineCode]:
    roots = [f for f in unit.functions.values()
             if f.section is not None or (not f.is_static and not f.inline)]
    if not roots:
        raise CompileError("no BPF program: put a function in a section with SEC(\"...\")")
    done: dict[str, MachineCode] = {}
    graph: dict[str, set[str]] = {}
    queue = [f.name for f in roots]
    while queue:
        name = queue.pop(0)
        if name in done:
            continue
        info = unit.functions[name]
        section = info.section or ".text"
        lw = Lowerer(unit, info.node, info.type, section, not info.is_static)
        fn = lw.lower()
        graph[name] = set(lw.calls)
        if opt_level > 0:
            optimise(fn)
        else:
            dce(fn)
        select(fn)
        allocate(fn)
        if fn.frame > MAX_STACK:
            raise error_at(info.node.decl, f"stack size of {fn.frame} bytes in '{name}' exceeds "
                                           f"the BPF limit of {MAX_STACK}")
        done[name] = emit(fn)
        queue.extend(sorted(lw.calls))
    check_recursion(unit, graph)
    order = list(unit.functions)
    return sorted(done.values(), key=lambda m: (m.section != ".text", order.index(m.name)))


def check_recursion(unit: Unit, graph: dict[str, set[str]]) -> None:
    state: dict[str, int] = {}

    def visit(n: str) -> None:
        state[n] = 1
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                raise error_at(unit.functions[m].node.decl,
                               f"recursion through '{m}' is not supported in BPF programs")
            if m not in state:
                visit(m)
        state[n] = 2

    for n in graph:
        if n not in state:
            visit(n)


def build_object(unit: Unit, machine: list[MachineCode], source_name: str) -> bytes:
    spec = elf.ObjectSpec(source_name=source_name)
    where: dict[str, tuple[str, int]] = {}
    for m in machine:
        code = spec.code.setdefault(m.section, [])
        where[m.name] = (m.section, len(code))
        spec.functions.append(elf.FuncSymbol(m.name, m.section, len(code), len(m.insns),
                                             m.is_global))
        code.extend(m.insns)
    for m in machine:
        section, base = where[m.name]
        code = spec.code[section]
        relocs = spec.relocs.setdefault(section, [])
        for slot, sym in m.relocs:
            relocs.append(elf.Reloc(base + slot, sym, elf.R_BPF_64_64))
        for slot, callee in m.calls:
            csec, cstart = where[callee]
            at = base + slot
            if csec == section:
                code[at] = code[at]._replace(imm=cstart - at - 1)
            else:
                code[at] = code[at]._replace(imm=cstart - 1)
                relocs.append(elf.Reloc(at, csec, elf.R_BPF_64_32))
        relocs.sort(key=lambda r: r.slot)
    for name in ("maps", ".rodata", ".data", ".maps", "license", ".rodata.str1.1"):
        if name in unit.data:
            spec.data[name] = bytes(unit.data[name])
    spec.bss_size = unit.bss_size
    variables = list(unit.maps.values()) + list(unit.globals.values())
    spec.objects = [elf.DataSymbol(g.name, g.section, g.offset, g.type.size, g.is_global)
                    for g in variables]
    builder = btfgen.BtfBuilder()
    for section in ("maps", ".rodata", ".data", ".maps", ".bss", "license"):
        entries = [(g.name, g.type, g.offset, g.is_global) for g in variables
                   if g.section == section]
        if entries:
            size = unit.bss_size if section == ".bss" else len(unit.data.get(section, b""))
            builder.datasec(section, entries, size)
    spec.btf = builder.encode()
    return elf.write_object(spec)


