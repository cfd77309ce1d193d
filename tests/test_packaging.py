"""``pip install .`` gives a working tracesim: build the wheel, install it into a fresh venv, delete
the source it was built from, and run the commands that read package data (headers, examples)
from a directory outside any source tree.

Needs pip to reach the package index (setuptools for the build, tracesim's dependencies for the
install), as ``make setup`` does; the pip cache makes repeated runs quick.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What the wheel is built from: the tree less what a checkout does not ship.
NOT_SOURCE = (".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache",
              ".hypothesis", ".ruff_cache", "tests", "out")

pytestmark = pytest.mark.slow


def quiet_env(**extra: str) -> dict[str, str]:
    """The environment less anything that would point Python back at the source tree."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_REQUIRE"))}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_ROOT_USER_ACTION="ignore", **extra)
    return env


def run(argv: list, cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"$ {' '.join(map(str, argv))}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(venv, a working directory outside any tree, env with the venv first on PATH)."""
    base = tmp_path_factory.mktemp("packaging")
    src, dist, venv, work = base / "src", base / "dist", base / "venv", base / "work"
    work.mkdir()
    env = quiet_env()
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_SOURCE), symlinks=True)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, src], work, env)
    shutil.rmtree(src)                            # what follows cannot read the source
    wheels = list(dist.glob("tracesim-*.whl"))
    assert len(wheels) == 1, wheels
    run([sys.executable, "-m", "venv", "--without-pip", venv], work, env)
    run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q",
         wheels[0]], work, env)
    env = quiet_env(PATH=f"{venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                    VIRTUAL_ENV=str(venv))
    return venv, work, env


def test_imports_come_from_the_wheel(installed):
    venv, work, env = installed
    where = run(["python", "-c", "import tracesim.tools, tracesim.kernel_model, tracesim.filters,"
                 " tracesim.tracefs, tracesim.bench; print(tracesim.tools.__file__)"], work, env)
    assert where.startswith(str(venv)), where
    assert str(ROOT) not in where


def test_nothing_installs_a_generic_top_level_name(installed):
    venv, work, env = installed
    site = Path(run(["python", "-c", "import tracesim, pathlib;"
                     "print(pathlib.Path(tracesim.__file__).parent.parent)"], work, env).strip())
    ours = {p.name for p in site.iterdir() if p.name.startswith("tracesim") or p.name in
            ("tools", "filters", "bench", "kernel_model", "tracefs")}
    assert {n for n in ours if not n.startswith("tracesim")} == set()
    assert run(["python", "-m", "tracesim", "--help"], work, env).startswith("usage: tracesim")


def test_setup_cfg_names_every_package_folder():
    """A package folder missing from setup.cfg's list would be left out of the wheel."""
    text = (ROOT / "setup.cfg").read_text()
    listed = text.split("packages =", 1)[1].split("package_dir", 1)[0].split()
    folders = {"tracesim." + ".".join(p.parent.relative_to(ROOT).parts)
               for top in ("bench", "filters", "kernel_model", "tools", "tracefs")
               for p in (ROOT / top).rglob("__init__.py")} | {"tracesim"}
    assert sorted(listed) == sorted(folders)


def test_help(installed):
    _, work, env = installed
    assert run(["tracesim", "demo", "--help"], work, env).startswith("usage: tracesim demo")
    assert run(["tracesim", "--help"], work, env).startswith("usage: tracesim")


def test_cc_objdump_check_on_a_shipped_example(installed):
    venv, work, env = installed
    examples = Path(run(["python", "-c", "import tracesim.tools as tools, pathlib;"
                         "print(pathlib.Path(tools.__file__).parent / 'examples')"],
                        work, env).strip())
    assert examples.is_relative_to(venv)
    for source in sorted(examples.glob("*.c")):  # bpf_helpers.h, the kernel headers, tp_net.h
        obj = work / (source.stem + ".o")
        run(["tracesim", "cc", source, "-o", obj], work, env)
        assert obj.read_bytes()[:4] == b"\x7fELF"
    obj = work / "filter_ex1.o"
    assert "file format elf64-bpf" in run(["tracesim", "objdump", obj], work, env)
    out = run(["tracesim", "check", obj, "--type", "tracepoint:net/netif_receive_skb"], work, env)
    assert out.strip() == "OK"


def test_demo(installed):
    """The demo mounts with FUSE where it can, else runs in process and says so; either way the
    filter compiled from the shipped example keeps lo's packets only."""
    _, work, env = installed
    out = run(["tracesim", "demo", "--iterations", "2000"], work, env)
    assert "$ tracesim mount " in out or "FUSE mount not possible (" in out
    assert "netif_receive_skb: dev=lo " in out and "dev=eth0" not in out.split("$ cat trace_pipe")[1]
    assert "off_again/off = " in out


def test_rss_builds_the_shipped_program(installed):
    _, work, env = installed
    out = run(["tracesim", "rss", "--packets", "20", "--compiler", "tracesim"], work, env)
    assert out.startswith("rss: eBPF steering (jit, object built by tracesim cc)"), out
