"""The C preprocessor step (pcpp) with tracesim's include paths and predefined macros."""
from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable
from pathlib import Path

from pcpp import Preprocessor
from tracesim.filters.bpf.compiler.errors import CompileError
from tracesim.kernel_model.c_types import INCLUDE_DIR as KERNEL_INCLUDE

BPF_INCLUDE = Path(__file__).resolve().parent.parent / "include"

# What clang -target bpf predefines that programs test, plus tracesim's own marker; the GNU
# spellings pycparser does not know are mapped to standard C (attributes are rewritten below).
PRELUDE = """\
#define __TRACESIM_CC__ 1
#define __bpf__ 1
#define __BPF__ 1
#define __x86_64__ 1
#define __LITTLE_ENDIAN__ 1
#define __BYTE_ORDER__ 1234
#define __ORDER_LITTLE_ENDIAN__ 1234
#define __ORDER_BIG_ENDIAN__ 4321
#define __CHAR_BIT__ 8
#define __SIZEOF_POINTER__ 8
#define __SIZEOF_LONG__ 8
#define __extension__
#define __inline inline
#define __inline__ inline
#define __restrict restrict
#define __restrict__ restrict
#define __volatile__ volatile
#define __signed__ signed
#define __always_inline inline
#define bool __tracesim_bool
"""

_ATTRIBUTE = re.compile(r"__attribute__\s*\(\(")


def preprocess(source: str, filename: str, include_dirs: Iterable[str | Path] = (),
               defines: Iterable[str] = ()) -> str:
    """Preprocessed text with ``#line`` markers; GNU ``__attribute__((section(...)))`` becomes the
    C23 ``[[gnu::section(...)]]`` pycparser reads, other GNU attributes are dropped."""
    pp = Preprocessor()
    pp.line_directive = "#line"
    pp.compress = 0
    pp.passthru_comments = False
    for d in list(include_dirs) + [BPF_INCLUDE, KERNEL_INCLUDE]:
        pp.add_path(str(d))
    errors: list[CompileError] = []

    def on_error(file: str, line: int, msg: str) -> None:
        errors.append(CompileError(msg, file, line))

    def on_include_not_found(is_malformed: bool, is_system_include: bool, curdir: str,
                             includepath: str) -> None:
        raise _IncludeNotFound(includepath)

    pp.on_error = on_error
    pp.on_include_not_found = on_include_not_found
    for d in defines:
        name, eq, value = d.partition("=")
        pp.define(f"{name} {value if eq else '1'}")
    try:
        pp.parse(PRELUDE, "<built-in>")
        pp.write(io.StringIO())
        pp.parse(source, filename)
        out = io.StringIO()
        pp.write(out)
    except _IncludeNotFound as e:
        line = _line_of_include(source, e.path)
        raise CompileError(f"'{e.path}' file not found", filename, line,
                           _col_of(source, line, e.path)) from None
    if errors:
        raise errors[0]
    return rewrite_attributes(restore_filename(out.getvalue(), filename))


def restore_filename(text: str, filename: str) -> str:
    """pcpp names the main file relative to the working directory; diagnostics should use the
    name the user gave."""
    target = os.path.abspath(filename)

    def fix(m: re.Match) -> str:
        name = m.group(2)
        return f'{m.group(1)}"{filename}"' if os.path.abspath(name) == target else m.group(0)
    return re.sub(r'^(#line \d+ )"([^"]*)"', fix, text, flags=re.M)


class _IncludeNotFound(Exception):
    def __init__(self, path: str) -> None:
        self.path = path


def _line_of_include(source: str, path: str) -> int:
    for n, line in enumerate(source.splitlines(), 1):
        if line.lstrip().startswith("#") and "include" in line and path in line:
            return n
    return 0


def _col_of(source: str, line: int, text: str) -> int:
    lines = source.splitlines()
    if 0 < line <= len(lines):
        return lines[line - 1].find(text) + 1
    return 0


def rewrite_attributes(text: str) -> str:
    """``__attribute__((section("x"), used))`` -> ``[[gnu::section("x")]]`` (same width when
    possible, so columns after it stay right); attributes without a section vanish."""
    out = []
    pos = 0
    for m in _ATTRIBUTE.finditer(text):
        if m.start() < pos:
            continue
        depth, i = 2, m.end()
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        body = text[m.end():i - 2]
        section = re.search(r'section\s*\(\s*("(?:[^"\\]|\\.)*")\s*\)', body)
        repl = f"[[gnu::section({section.group(1)})]]" if section else ""
        out.append(text[pos:m.start()])
        out.append(repl.ljust(i - m.start()) if "\n" not in text[m.start():i] else repl)
        pos = i
    out.append(text[pos:])
    return "".join(out)
