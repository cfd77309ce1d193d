"""Shared test fixtures: where ../shared is, skips that name what is missing, the booted kernel /
system / mount every test file uses, and a guard that no test leaves process-global state changed.

The suite runs in random order (pytest-randomly) on two xdist workers, so a test that changes a
global table and forgets to put it back breaks some other test on some runs only.  The guard
below compares the global tables, the environment and the working directory before and after
every test: a test that changes them fails at teardown (naming what changed) and the state is put
back, so the damage stays with the test that did it.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from tracesim.filters.bpf.runtime import helper_table as helper_table_mod
from tracesim.filters.bpf.runtime import helpers, maps
from tracesim.filters.bpf.vm import isa
from tracesim.kernel_model import workload
from tracesim.kernel_model.c_types import kernel_types
from tracesim.kernel_model.kernel import Kernel
from tracesim.tracefs import blocking, caller
from tracesim.tracefs.system import System

from tests.fuse_helpers import mounted, need_fuse

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
REFERENCE = SHARED / "reference" / "linux-6.18"
CONFORMANCE = SHARED / "bpf_conformance"

FUZZ_LONG = os.environ.get("TRACESIM_FUZZ") == "long"

# Property tests run on two workers of a machine that may be busy with other work: how long an
# example takes says nothing about the code, so neither a deadline nor the too-slow health check
# may fail a run.
settings.register_profile("tracesim", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("tracesim")


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


# ---------------------------------------------------------------------------------------------
# the things under test, booted fresh for every test (a kernel costs ~25 ms, a system ~50 ms)

@pytest.fixture
def reference() -> Path:
    need_shared()
    return REFERENCE


@pytest.fixture
def kernel() -> Iterator[Kernel]:
    """A modelled kernel: 2 CPUs, fixed seed, virtual clock (timestamps do not depend on load).
    Workload threads a test started and did not stop are stopped at the end."""
    booted = Kernel(cpus=2, seed=1, clock="virtual")
    yield booted
    booted.workloads.stop_all()


@pytest.fixture
def system() -> Iterator[System]:
    """A kernel with its tracefs tree and BPF filters, as ``tracesim mount`` boots it."""
    booted = System.boot(cpus=2, seed=1, clock="virtual")
    yield booted
    booted.shutdown()


@pytest.fixture
def tree(system: System) -> Any:
    """The in-process tracefs tree of ``system``."""
    return system.tree


@pytest.fixture
def helper_table() -> dict[int, helpers.Helper]:
    """A private id -> implementation map: register into it, load with ``helpers=``."""
    return helper_table_mod.implementations()


@pytest.fixture
def mnt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real FUSE mount of a fresh system (skips, naming what is missing, where FUSE cannot work)."""
    need_fuse(tmp_path_factory.getbasetemp())
    with mounted(tmp_path_factory.mktemp("tracefs")) as path:
        yield path


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the processes the tests start, however the suite itself was started.

    A shell without job control starts a background command (``make test &``, a CI runner's
    job) with SIGINT and SIGQUIT ignored, and every child inherits that: the ``cat trace_pipe``
    a test interrupts would then never see its Ctrl-C. Python's own handler is what the suite
    would have had from a terminal; children get the default action back at exec."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Name the random order's seed at the end, where ``-q`` still shows it, beside any failure."""
    seed = getattr(config.option, "randomly_seed", None)
    if isinstance(seed, int) and config.pluginmanager.has_plugin("randomly"):
        terminalreporter.write_line(f"random order seed {seed}: rerun this order with "
                                    f"-p randomly --randomly-seed={seed}")


# ---------------------------------------------------------------------------------------------
# the guard: process-global state a test may read but must leave as it found it

# Module-level tables nobody may change after import (the helper table itself is a read-only
# mapping of frozen records, so it needs no watching).
GLOBAL_TABLES: dict[str, Any] = {
    "tracesim.filters.bpf.vm.isa.HELPER_IDS": isa.HELPER_IDS,
    "tracesim.filters.bpf.runtime.maps.MAP_CLASSES": maps.MAP_CLASSES,
    "tracesim.kernel_model.workload.WORKLOADS": workload.WORKLOADS,
    # the kernel's C types, parsed once and shared by every Kernel
    **{f"kernel_types().{part}": getattr(kernel_types(), part)
       for part in ("typedefs", "structs", "unions", "enums", "enum_consts", "globals")},
}
# Hooks the FUSE adapter installs in the mount process; in the test process they stay the defaults.
GLOBAL_HOOKS: dict[str, tuple[Any, str]] = {
    "tracesim.tracefs.caller._lookup": (caller, "_lookup"),
    "tracesim.tracefs.caller._process": (caller, "_process"),
    "tracesim.tracefs.blocking._interrupt_check": (blocking, "_interrupt_check"),
}
# pytest itself rewrites this one for every phase of every test.
VOLATILE_ENV = {"PYTEST_CURRENT_TEST"}


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in VOLATILE_ENV}


def _entries(table: dict) -> dict:
    """A copy of ``table``; a set value is kept with a frozen copy, so a change inside it shows."""
    return {k: (v, frozenset(v)) if isinstance(v, set) else v for k, v in table.items()}


def _snapshot() -> dict[str, Any]:
    state: dict[str, Any] = {name: _entries(table) for name, table in GLOBAL_TABLES.items()}
    state.update({name: getattr(mod, attr) for name, (mod, attr) in GLOBAL_HOOKS.items()})
    state["os.environ"] = _environ()
    state["cwd"] = os.getcwd()
    state["sys.path"] = list(sys.path)
    return state


def _restore(name: str, value: Any) -> None:
    if name in GLOBAL_TABLES:
        table = GLOBAL_TABLES[name]
        table.clear()
        for key, entry in value.items():
            if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], set):
                entry[0].clear()
                entry[0].update(entry[1])
                entry = entry[0]
            table[key] = entry
    elif name in GLOBAL_HOOKS:
        mod, attr = GLOBAL_HOOKS[name]
        setattr(mod, attr, value)
    elif name == "os.environ":
        for key in set(_environ()) - set(value):
            del os.environ[key]
        os.environ.update(value)
    elif name == "cwd":
        os.chdir(value)
    elif name == "sys.path":
        sys.path[:] = value


def _difference(name: str, before: Any, after: Any) -> str:
    if isinstance(before, dict):
        added = sorted(map(str, set(after) - set(before)))
        removed = sorted(map(str, set(before) - set(after)))
        changed = sorted(str(k) for k in set(before) & set(after) if before[k] is not after[k]
                         and before[k] != after[k])
        parts = [f"{what} {keys}" for what, keys in
                 (("added", added), ("removed", removed), ("changed", changed)) if keys]
        return f"{name}: " + "; ".join(parts)
    return f"{name}: {before!r} -> {after!r}"


@pytest.fixture(autouse=True)
def _global_state_is_left_alone() -> Iterator[None]:
    """Fail the test that changes process-global state, and put the state back."""
    before = _snapshot()
    yield
    after = _snapshot()
    changed = [name for name in before if before[name] != after[name]]
    for name in changed:
        _restore(name, before[name])
    if changed:
        pytest.fail("the test changed process-global state (give it its own copy instead): "
                    + " | ".join(_difference(n, before[n], after[n]) for n in changed),
                    pytrace=False)
