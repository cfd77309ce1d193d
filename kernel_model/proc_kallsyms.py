"""``/proc/kallsyms`` of the model (kernel/kallsyms.c ``s_show``): ``%px %c %s`` per symbol, the
module name in brackets after a tab for module symbols, in address order (what trace-cmd copies
into ``trace.dat`` and perf reads with ``--kallsyms``)."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def kallsyms_text(symbols: Iterable[Any]) -> str:
    """The file's text for ``symbols``: a ``Kallsyms`` (its ``listing()``: every symbol the
    model's kernel has) or any iterable of its ``Symbol``."""
    listing = getattr(symbols, "listing", None)
    if listing is not None:
        symbols = listing()
    lines = []
    for s in sorted(symbols, key=lambda s: (s.addr, s.name)):
        module = f"\t[{s.module}]" if s.module else ""
        lines.append(f"{s.addr:016x} {s.type} {s.name}{module}\n")
    return "".join(lines)
