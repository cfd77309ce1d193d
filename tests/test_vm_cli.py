"""The VM's commands: tracesim demo and tracesim bench vm --json."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def _tracesim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_demo_prints_disassembly_and_results():
    out = _tracesim("demo")
    assert out.returncode == 0, out.stderr
    assert "   0: r2 = *(u32 *)(r1 + 8)" in out.stdout
    assert "dev eth5  interpreter r0 = 1  jit r0 = 1" in out.stdout
    assert "dev lo    interpreter r0 = 0  jit r0 = 0" in out.stdout


def test_bench_vm_json_keys():
    out = _tracesim("bench", "vm", "--json", "--repeat", "1")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) == {"interp_minsn_per_s", "jit_minsn_per_s", "jit_vs_handwritten", "programs"}
    assert set(result["programs"]) == {"toeplitz", "devname"}
    assert result["programs"]["toeplitz"]["insns_per_run"] > 300
    assert all(result[k] > 0 for k in ("interp_minsn_per_s", "jit_minsn_per_s", "jit_vs_handwritten"))
