"""The VM's command: tracesim bench vm --json (the demo is tested in test_demo.py)."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def _tracesim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracesim.tools.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_bench_vm_json_keys():
    out = _tracesim("bench", "vm", "--json", "--repeat", "1")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) == {"interp_minsn_per_s", "jit_minsn_per_s", "jit_vs_handwritten", "programs",
                           "spread", "machine"}
    assert set(result["programs"]) == {"toeplitz", "devname", "toeplitz_loop", "tlv_parser"}
    assert result["programs"]["toeplitz"]["insns_per_run"] > 300
    assert all(result[k] > 0 for k in ("interp_minsn_per_s", "jit_minsn_per_s", "jit_vs_handwritten"))
