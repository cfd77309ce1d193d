"""``Part``: the base of a class that holds one topic of a bigger class's methods.

The verifier's walk (``verifier/check.py``: access, call and branch checks) and the compiler's
lowering (``compiler/lower.py``: statements, expressions, values) keep their methods in one module
per topic, combined into one class. A topic's methods use the combined object's state and the
other topics' methods, which a type checker cannot see from the topic's own class; typed as
extending ``Any`` those uses are unchecked, while the combined class, its state and everything
that calls it are checked.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    Part = Any
else:
    class Part:
        __slots__ = ()
