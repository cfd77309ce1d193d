"""The kernel's own ftrace selftests (tools/testing/selftests/ftrace) against the mount.

Issue #18 names the trigger, hist and snapshot groups, issue #19 the ftrace, kprobe, dynevent and
fprobe groups. Each group runs as its own test, on its own mount, so a failure names its group.
The suite comes from Debian's linux-source package (`make test` installs it as root and unpacks
the ftrace folder, tools/selftests.sh); elsewhere these tests skip, naming the package.

ftracetest finds tracefs in /proc/mounts by its type, which a FUSE mount does not have, so a copy
of the suite is pointed at the mount by its TRACING_DIR line. Some tests read kernel files outside
tracefs: the stack tracer's switch /proc/sys/kernel/stack_tracer_enabled, /proc/kallsyms (a
function's address, a data symbol), /proc/version, /proc/sys/debug/kprobes-optimization and
debugfs's kprobes/list. The suite runs in a private mount namespace where those paths are the
model's (tests/proc_overlay.py, served from the mount's control socket).
"""
from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Each group: the test.d entries (folders or globs) it runs.
GROUPS: dict[str, tuple[str, ...]] = {
    "trigger": ("trigger",),
    "snapshot": ("00basic/snapshot*.tc",),
    "ftrace": ("ftrace",),
    "kprobe": ("kprobe",),
    "dynevent": ("dynevent",),
    # the rest of the suite: tracefs basics, event enabling and pid filters, filters, instances
    "basic": ("00basic/[!s]*.tc",),
    "event": ("event",),
    "filter": ("filter",),
    "instances": ("instances",),
}

# Tests that cannot pass against a FUSE mount of the model, each with the reason. Nothing else may
# fail.
FAIL_OK: dict[str, str] = {
    "Test tracefs GID mount option":
        "remounts tracefs with gid=: a FUSE mount's options are its own",
    "Test file and directory ownership changes for eventfs":
        "remounts tracefs with gid=: a FUSE mount's options are its own",
    "event tracing - restricts events based on pid":
        "counts sched_switch events of tasks other than the shell and its children; the "
        "shell's `ping`/`sleep` never call into the mount, so the model never sees them run",
    "event tracing - restricts events based on pid notrace filtering":
        "counts events of tasks other than the shell; the shell's `ping`/`sleep` never call "
        "into the mount, so the model never sees them run",
    "Kprobe event user-memory access":
        "probes the shell's open of /dev/null and ln's symlink in $TMPDIR, which never reach "
        "the mount: a host process's syscalls reach the model only as its FUSE requests "
        "(:ustring and +u themselves work: tests/test_user_memory.py)",
    "event filter - reject incomplete logical expressions":
        "tests a filter-parser change newer than 6.18.44, which accepts `len == 100 ||` "
        "(../shared/reference/linux-6.18/filter_behaviour)",
}

# Tests ftracetest may leave UNRESOLVED on the model, with the reason: they load a kernel module
# (the model has none to load), which a distribution kernel without the test modules also can't.
UNRESOLVED_OK: dict[str, str] = {
    "Generic dynamic event - add/remove tracepoint probe events on module": "loads a module",
    "Kprobe dynamic event - probing module": "loads a module",
    "Test trace_printk from module": "loads a module",
    # its :mod: part passes (the word is kept for the module); then it loads trace-printk
    "ftrace - function trace on module": "loads a module",
}


def _selftests_dir() -> Path | None:
    for base in (Path("/usr/src"), Path("/usr/lib"), Path.home()):
        for hit in sorted(base.glob("*/tools/testing/selftests/ftrace/ftracetest"))[-1:]:
            return hit.parent
    return None


def _plain(name: str) -> str:
    """A test's description without the "(instance)" mark of its rerun in an instance."""
    return name.removeprefix("(instance)").strip()


def _model_programs(bin_dir: Path, mnt: Path) -> dict[str, str]:
    """The environment that runs the workload programs the tests start on the modelled
    machine rather than the host. A ``ping`` on the host never reaches the model (its
    packets, wakeups, exec and exit happen in the host's kernel), so ``ping`` here is a
    script that has the mount's kernel run ping (``tracesim ctl MNT ping``: the shell forks,
    the child execs /usr/bin/ping, pings lo and exits), as the tests expect of the traced
    kernel. ftracetest moves TMPDIR, so the script brings back the one the mount's control
    socket lives under."""
    bin_dir.mkdir()
    keep = "".join(f"export {var}={shlex.quote(os.environ[var])}\n" if var in os.environ
                   else f"unset {var}\n" for var in ("TMPDIR", "XDG_RUNTIME_DIR"))
    ping = bin_dir / "ping"
    ping.write_text(
        "#!/bin/sh\n"
        "count=4\n"
        "while [ $# -gt 0 ]; do\n"
        '  case "$1" in -c) count=$2; shift 2;; -c*) count=${1#-c}; shift;; *) shift;; esac\n'
        "done\n" + keep +
        f"exec {shlex.quote(sys.executable)} -m tracesim ctl {shlex.quote(str(mnt))} "
        'ping lo -c "$count"\n')
    ping.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def _cases(suite: Path, entries: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for entry in entries:
        for path in sorted((suite / "test.d").glob(entry)):
            if str(path) not in found:
                found.append(str(path))
    return found


@contextlib.contextmanager
def model_proc(mnt: Path, where: Path) -> Iterator[list[str]]:
    """The command prefix that runs a command in a private mount namespace where the model's
    files outside tracefs are at the kernel's paths (tests/proc_overlay.py: /proc/kallsyms,
    /proc/version, the model's sysctl files in /proc/sys/kernel and /proc/sys/debug, debugfs
    with kprobes/); empty where the overlay or unshare cannot work."""
    overlay = Path(__file__).with_name("proc_overlay.py")
    sys.path.insert(0, str(overlay.parent))
    try:
        from proc_overlay import mount_commands
    finally:
        sys.path.remove(str(overlay.parent))
    unshare = shutil.which("unshare")
    where.mkdir()
    server = subprocess.Popen([sys.executable, str(overlay), str(where), str(mnt)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not os.path.ismount(where) and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if unshare is None or not os.path.ismount(where):
            yield []
            return
        yield [unshare, "-m", "--propagation", "private", "sh", "-c",
               mount_commands(str(where)) + ' && exec "$@"', "sh"]
    finally:
        if os.path.ismount(where):
            subprocess.run(["umount", str(where)], capture_output=True)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_ftrace_selftest_group_passes(group: str, mnt: Path, tmp_path: Path) -> None:
    found = _selftests_dir()
    if found is None:
        pytest.skip("the kernel's ftrace selftests are not on this machine (Debian package "
                    "linux-source-6.12; `make test` installs and unpacks it as root)")
    if os.geteuid() != 0:
        pytest.skip("ftracetest runs only as root")
    suite = tmp_path / "ftrace"
    shutil.copytree(found, suite)
    runner = suite / "ftracetest"
    runner.write_text(re.sub(r"^TRACING_DIR=.*$", f"TRACING_DIR={mnt}", runner.read_text(),
                             count=1, flags=re.M))
    cases = _cases(suite, GROUPS[group])
    assert cases, f"no selftests matched {GROUPS[group]}"
    env = _model_programs(tmp_path / "bin", mnt)
    with model_proc(mnt, tmp_path / "model_proc") as prefix:
        out = subprocess.run([*prefix, "bash", str(runner), "-l", str(tmp_path / "logs"),
                              *cases], cwd=suite, capture_output=True, text=True, timeout=900,
                             stdin=subprocess.DEVNULL, env=env)
    results = re.findall(r"^\[\d+\] (.*?)\t\[(\w+)\]$", out.stdout, flags=re.M)
    assert results, out.stdout[-3000:] + out.stderr[-2000:]
    bad = [f"{name}: {verdict}" for name, verdict in results
           if (verdict == "FAIL" and _plain(name) not in FAIL_OK)
           or (verdict == "UNRESOLVED" and _plain(name) not in UNRESOLVED_OK)]
    assert not bad, "\n".join(bad) + "\n\n" + out.stdout[-4000:]
