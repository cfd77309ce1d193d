"""The state folder (socket, log, pid file) resists a planted folder or planted symlinks.

Every case runs the real CLI in a subprocess whose environment points the state folder at the
test's own tmp_path (XDG_RUNTIME_DIR, or TMPDIR for the /tmp-style folder), never at the
machine's. A refusal is one line on stderr, exit status 1, no traceback, and the file a planted
symlink points at is left untouched.
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from tracesim.tools.ctl_socket import state_base

from tests.fuse_helpers import ROOT, TRACESIM, fuse_problem

VICTIM_TEXT = "precious root-owned content\n"


def cli_env(runtime: Path | None = None, tmpdir: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "TMPDIR")}
    if runtime is not None:
        env["XDG_RUNTIME_DIR"] = str(runtime)
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return env


def tracesim(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(TRACESIM + list(args), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def key_path(env: dict[str, str], mnt: Path, suffix: str) -> Path:
    """Where the CLI (with ``env``) keeps ``suffix`` for ``mnt``, computed by the CLI's own code."""
    code = ("import sys; from tracesim.tools.ctl_socket import state_base, state_path; "
            "sys.stdout.write(str(state_base() / state_path(sys.argv[1], sys.argv[2]).name))")
    done = subprocess.run([sys.executable, "-c", code, str(mnt), suffix], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    return Path(done.stdout)


def assert_refused(done: subprocess.CompletedProcess, prog: str, *words: str) -> None:
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: refusing to use "), done.stderr
    for word in words:
        assert word in lines[0]


@pytest.fixture
def mnt(tmp_path: Path) -> Path:
    path = tmp_path / "mnt"
    path.mkdir()
    return path


@pytest.fixture
def runtime(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    return path


def mount_refused(env: dict[str, str], mnt: Path, *words: str) -> None:
    """``tracesim mount`` refuses; should it mount anyway (the defect), unmount again."""
    try:
        assert_refused(tracesim(env, "mount", str(mnt), "--clock", "virtual"),
                       "tracesim mount", *words)
    finally:
        if os.path.ismount(mnt):
            tracesim(env, "umount", str(mnt))


# -------------------------------------------------------------------------- where it lives

def test_state_base_prefers_runtime_dir_then_run_user_then_tmpdir(tmp_path):
    uid = os.getuid()
    assert state_base({"XDG_RUNTIME_DIR": str(tmp_path)}) == tmp_path / "tracesim"
    fallback = (Path(f"/run/user/{uid}/tracesim") if os.path.isdir(f"/run/user/{uid}")
                else tmp_path / f"tracesim-{uid}")
    # Unset, relative or missing XDG_RUNTIME_DIR: the next choice.
    for env in ({"TMPDIR": str(tmp_path)},
                {"XDG_RUNTIME_DIR": "relative/dir", "TMPDIR": str(tmp_path)},
                {"XDG_RUNTIME_DIR": str(tmp_path / "absent"), "TMPDIR": str(tmp_path)}):
        assert state_base(env) == fallback
    if not os.path.isdir(f"/run/user/{uid}"):
        assert state_base({}) == Path(f"/tmp/tracesim-{uid}")


def test_folder_is_created_with_mode_0700(runtime, mnt):
    done = tracesim(cli_env(runtime), "ctl", str(mnt), "dmesg")
    assert done.returncode == 1 and "no tracesim mount answers" in done.stderr
    st = os.lstat(runtime / "tracesim")
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == os.getuid()


# -------------------------------------------------------------------------- planted folders

@pytest.mark.parametrize("mode", [0o755, 0o770, 0o701, 0o1777], ids=oct)
def test_folder_with_group_or_other_bits_is_refused(runtime, mnt, mode):
    folder = runtime / "tracesim"
    folder.mkdir()
    folder.chmod(mode)
    env = cli_env(runtime)
    mount_refused(env, mnt, str(folder), f"mode {mode:04o}", "0700")
    assert_refused(tracesim(env, "ctl", str(mnt), "dmesg"), "tracesim ctl", str(folder))
    assert os.listdir(folder) == []


def test_folder_owned_by_another_user_is_refused(runtime, mnt):
    if os.geteuid() != 0:
        pytest.skip("giving a folder to another uid needs root")
    folder = runtime / "tracesim"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    mount_refused(cli_env(runtime), mnt, str(folder), "owned by uid 65534")
    assert os.listdir(folder) == []


def test_symlink_in_place_of_the_folder_is_refused(runtime, tmp_path, mnt):
    target = tmp_path / "attacker"
    target.mkdir(mode=0o700)
    (runtime / "tracesim").symlink_to(target)
    mount_refused(cli_env(runtime), mnt, "symbolic link")
    assert os.listdir(target) == []


def test_file_in_place_of_the_folder_is_refused(runtime, mnt):
    (runtime / "tracesim").write_text("not a folder\n")
    mount_refused(cli_env(runtime), mnt, "not a directory")


def test_planted_tmp_folder_is_refused(tmp_path, mnt):
    """The attack itself: no XDG_RUNTIME_DIR, and someone made ``tracesim-<uid>`` a symlink."""
    if os.path.isdir(f"/run/user/{os.getuid()}"):
        pytest.skip("/run/user/<uid> exists here, so the /tmp-style folder is not used")
    target = tmp_path / "attacker"
    target.mkdir(mode=0o700)
    (tmp_path / f"tracesim-{os.getuid()}").symlink_to(target)
    mount_refused(cli_env(tmpdir=tmp_path), mnt, "symbolic link")
    assert os.listdir(target) == []


# -------------------------------------------------------------------------- planted files

@pytest.mark.parametrize("suffix", ["log", "pid"])
def test_symlink_in_place_of_log_or_pid_leaves_the_victim_untouched(runtime, tmp_path, mnt,
                                                                     suffix):
    problem = fuse_problem()
    if problem:
        pytest.skip(problem)     # mount stops at the FUSE check before it opens its files
    env = cli_env(runtime)
    victim = tmp_path / "victim"
    victim.write_text(VICTIM_TEXT)
    victim.chmod(0o644)
    planted = key_path(env, mnt, suffix)
    planted.parent.mkdir(mode=0o700, exist_ok=True)
    planted.symlink_to(victim)
    mount_refused(env, mnt, str(planted), "symbolic link")
    assert victim.read_text() == VICTIM_TEXT
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert planted.is_symlink()      # refused, not silently replaced


def test_symlink_in_place_of_the_socket_is_refused(runtime, tmp_path, mnt):
    env = cli_env(runtime)
    victim = tmp_path / "victim"
    victim.write_text(VICTIM_TEXT)
    planted = key_path(env, mnt, "sock")
    planted.parent.mkdir(mode=0o700, exist_ok=True)
    planted.symlink_to(victim)
    assert_refused(tracesim(env, "ctl", str(mnt), "dmesg"), "tracesim ctl", "symbolic link")
    if fuse_problem() is None:
        mount_refused(env, mnt, str(planted), "symbolic link")
    assert victim.read_text() == VICTIM_TEXT


def test_state_files_are_fresh_and_private(runtime, mnt):
    """A real mount creates log and pid afresh (a stale regular file of ours is replaced)."""
    problem = fuse_problem()
    if problem:
        pytest.skip(problem)
    env = cli_env(runtime)
    log = key_path(env, mnt, "log")
    log.parent.mkdir(mode=0o700, exist_ok=True)
    log.write_text("stale text of an earlier mount\n")
    done = tracesim(env, "mount", str(mnt), "--clock", "virtual")
    if done.returncode != 0:
        pytest.skip(f"FUSE mount does not work here: {done.stderr.strip()}")
    try:
        for suffix in ("log", "pid", "sock"):
            st = os.lstat(key_path(env, mnt, suffix))
            assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.getuid()
        assert "stale text" not in log.read_text()
        assert (mnt / "trace").exists()
        assert tracesim(env, "ctl", str(mnt), "dmesg").returncode == 0
    finally:
        assert tracesim(env, "umount", str(mnt)).returncode == 0
