"""Helpers for tests that drive the in-process tracefs tree as a shell would."""
from __future__ import annotations

import os
from typing import Any


def cat_into(tree: Any, path: str, obj: bytes, chunk: int = 4096) -> None:
    """``cat obj > path``: O_TRUNC open, writes of ``chunk`` bytes, close."""
    handle = tree.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        for i in range(0, len(obj), chunk):
            handle.write(obj[i:i + chunk], i)
        handle.flush()
    finally:
        handle.release()
