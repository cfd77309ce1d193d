"""The restricted-C compiler behind `tracesim cc`: C in, EM_BPF ELF objects out.

``compile_file(path, include_dirs, defines, opt_level)`` and ``compile_source(text, filename, ...)``
return a ``CompiledObject`` (``.elf`` bytes, per-function machine code); user errors raise
``CompileError`` whose ``render()`` is the ``file:line:col: error: ...`` diagnostic.
"""
from __future__ import annotations

from tracesim.filters.bpf.compiler.driver import CompiledObject, compile_file, compile_source
from tracesim.filters.bpf.compiler.errors import CompileError

__all__ = ["CompileError", "CompiledObject", "compile_file", "compile_source"]
