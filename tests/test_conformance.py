"""The eBPF conformance suite (../shared/bpf_conformance) on every engine (interpreter, Python JIT,
native), and the CLI around it."""
from __future__ import annotations

import subprocess
import sys

import pytest
from tracesim.filters.bpf.vm.conformance import ENGINES, assemble_dialect, parse_file, run_case

from tests.conftest import CONFORMANCE, ROOT, need_shared


def _cases(sub: str):
    directory = CONFORMANCE / sub
    return sorted(directory.glob("*.data")) if directory.is_dir() else []


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", _cases("tests"), ids=lambda p: p.stem)
def test_suite_passes(path, engine):
    case = parse_file(path)
    passed, detail = run_case(case, engine)
    assert passed, detail


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", _cases("negative"), ids=lambda p: p.stem)
def test_negative_rejected_at_load(path, engine):
    case = parse_file(path)
    passed, detail = run_case(case, engine)
    assert passed and detail.startswith("rejected: insn 0 ("), detail


def test_suite_present():
    need_shared()
    assert len(_cases("tests")) >= 300 and len(_cases("negative")) >= 40


def test_cli_summary_line():
    need_shared()
    out = subprocess.run([sys.executable, "-m", "tracesim.tools.cli", "conformance",
                          str(CONFORMANCE / "negative"), "--engine", "interp"],
                         cwd=ROOT, capture_output=True, text=True)
    lines = out.stdout.splitlines()
    assert out.returncode == 0
    assert lines[-1] == f"{len(_cases('negative'))} passed, 0 failed"
    assert all(line.startswith("PASS interp ") for line in lines[:-1])


def test_dialect_labels_and_exit_label():
    insns = assemble_dialect("mov %r0, 1\njeq %r0, 1, exit\nja L\nL:\nmov32 %r0, 2\nexit\n")
    assert insns[1].off == 2          # "exit" = the first exit instruction
    assert insns[2].off == 0
    assert insns[3].opcode == 0xB4 and insns[3].imm == 2


def test_cli_runs_the_native_engine():
    need_shared()
    out = subprocess.run([sys.executable, "-m", "tracesim.tools.cli", "conformance",
                          str(CONFORMANCE / "tests"), "--engine", "native", "-q"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:]
    assert out.stdout.splitlines()[-1] == f"{len(_cases('tests'))} passed, 0 failed"
