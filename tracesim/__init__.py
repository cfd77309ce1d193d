"""tracesim: Linux kernel tracing (tracefs, ftrace events, BPF) on a modelled 6.18 kernel.

Everything installs under this one name: ``tracesim.kernel_model`` (the kernel),
``tracesim.filters`` (the ftrace predicate language and eBPF), ``tracesim.tracefs`` (the file
tree), ``tracesim.tools`` (the ``tracesim`` command) and ``tracesim.bench``. In a source tree
those rooms sit beside this folder (the repository keeps them at its top level), so the package
path takes in the tree's root; an installed copy has them inside this folder.
"""
from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
if not (_HERE / "kernel_model").is_dir() and (_HERE.parent / "kernel_model" / "__init__.py").is_file():
    __path__.append(str(_HERE.parent))  # noqa: F821 (a package's __path__ is set by the import system)
