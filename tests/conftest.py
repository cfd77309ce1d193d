"""Shared test fixtures: where ../shared is, and skips that name what is missing."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
REFERENCE = SHARED / "reference" / "linux-6.18"
CONFORMANCE = SHARED / "bpf_conformance"


def need_shared() -> Path:
    """Skip unless ../shared (reference data, conformance suite) sits beside the project."""
    if not SHARED.is_dir():
        pytest.skip(f"../shared is absent (looked for {SHARED})")
    return SHARED


def need_tool(binary: str, package: str) -> str:
    """Skip unless ``binary`` is on PATH; the reason names the Debian package that provides it."""
    path = shutil.which(binary)
    if not path:
        pytest.skip(f"{binary} not found: install the Debian package '{package}'")
    return path


@pytest.fixture
def reference() -> Path:
    need_shared()
    return REFERENCE


FUZZ_LONG = os.environ.get("TRACESIM_FUZZ") == "long"
