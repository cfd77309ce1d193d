"""``tracesim mount DIR`` / ``tracesim umount DIR``: the simulated tracefs on a real directory.

``mount`` builds the modelled kernel and its tracefs tree, serves the tree over FUSE and the
kernel's operations on the control socket (:mod:`tracesim.tools.ctl_socket`). By default it forks: the
child mounts and serves, the parent returns once the kernel reports the mount ready (or prints
the child's one-line error). ``--foreground`` serves in the calling process. SIGINT, SIGTERM and
SIGHUP end the FUSE loop, which unmounts; ``umount`` runs ``fusermount -u``.

A mount whose process died (``kill -9``) leaves a dead FUSE mount: every stat of the directory
fails with ENOTCONN. ``umount`` recognises one (ENOTCONN, or a ``fuse`` entry in
/proc/self/mountinfo) and clears it (``fusermount -u``, then ``-uz``); ``mount`` clears it itself
when it is a tracesim mount whose pid file names a dead process, and otherwise says what to run.
"""
from __future__ import annotations

import argparse
import ctypes.util
import errno
import os
import re
import shutil
import stat
import subprocess
import sys
import traceback

from tracesim.tools.cli_args import OneLineParser, int_in, workload_arg
from tracesim.tools.ctl_socket import (
    CtlServer,
    StateDirError,
    create_state_file,
    read_state_file,
    remove_stale,
    socket_path,
    state_dir,
    state_path,
)

PROG = "tracesim mount"
MAX_CPUS = 64
MAX_SEED = 2**63 - 1


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description="Mount the simulated tracefs on DIR.")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--cpus", type=int_in(1, MAX_CPUS), default=2,
                   help=f"simulated CPUs (default 2, at most {MAX_CPUS})")
    p.add_argument("--workload", type=workload_arg, default="none",
                   help="background traffic: a workload name with optional parameters "
                        "(NAME:KEY=VALUE,..., e.g. tcp_rr:rate=500,loss=0.01), or none (default)")
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=1,
                   help="seed of the workload (default 1)")
    p.add_argument("--foreground", action="store_true", help="serve in this process")
    p.add_argument("--bpf-engine", choices=("jit", "interp", "native", "auto"), default="jit",
                   help="how BPF filter programs run (default jit)")
    p.add_argument("--clock", choices=("real", "virtual"), default="real",
                   help="time base of the trace clocks (default real)")
    p.add_argument("--debug", action="store_true", help="libfuse debug output (foreground)")
    p.add_argument("--host-tasks", action=argparse.BooleanOptionalAction, default=True,
                   help="the mount's callers are tasks of the model: their openat/read/write/"
                        "close show as syscall events and kprobes (default on)")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    return parser().parse_args(argv)


def preflight(mountpoint: str) -> str | None:
    """The one-line reason the mount cannot work, or None; clears a dead mount of our own."""
    if dead_fuse_mount(mountpoint):
        if not _own_dead_mount(mountpoint):
            return (f"{mountpoint}: a dead FUSE mount is left there (its process ended); "
                    f"clear it with: tracesim umount {mountpoint}")
        problem = clear_dead_mount(mountpoint)
        if problem:
            return f"{mountpoint}: clearing the dead tracesim mount left there failed ({problem})"
    if not os.path.isdir(mountpoint):
        return f"{mountpoint}: not a directory"
    if os.path.ismount(mountpoint):
        return f"{mountpoint} is busy: something is already mounted there (tracesim umount {mountpoint})"
    if os.listdir(mountpoint):
        return f"{mountpoint} is busy: the directory is not empty"
    if not os.path.exists("/dev/fuse"):
        return ("/dev/fuse is missing: FUSE is not available here "
                "(load the fuse module, or give the container /dev/fuse)")
    if ctypes.util.find_library("fuse") is None:
        return "libfuse is missing: install the Debian package 'libfuse2'"
    try:
        import fuse  # noqa: F401  (fusepy raises OSError "Unable to find libfuse")
    except OSError as exc:
        return f"libfuse is missing ({exc}): install the Debian package 'libfuse2'"
    except ImportError:
        return "fusepy is missing: pip install fusepy"
    return None


def serve(args: argparse.Namespace, on_ready, on_error) -> int:
    """Build the kernel and tree, serve until unmounted. Returns the exit status."""
    from tracesim.kernel_model.control import set_progress_hook
    from tracesim.tracefs.fuse_mount import serve as fuse_serve
    from tracesim.tracefs.system import System

    mountpoint = os.path.realpath(args.dir)
    try:
        system = System.boot(cpus=args.cpus, seed=args.seed, clock=args.clock,
                             bpf_engine=args.bpf_engine)
        ctl = CtlServer(mountpoint, system.control, set_progress_hook)
        if args.workload != "none":
            system.start_workload(args.workload)
        system.kernel.idle.start()          # a kernel is never silent: ticks, kworkers, RCU
    except Exception as exc:
        on_error(f"cannot start the modelled kernel: {exc}")
        traceback.print_exc()
        return 1
    try:
        fuse_serve(system.tree, mountpoint, on_ready=on_ready, debug=args.debug,
                   host_tasks=args.host_tasks)
    except RuntimeError as exc:
        on_error(f"mounting {mountpoint} failed (libfuse status {exc})")
        return 1
    finally:
        system.shutdown()
        ctl.close()
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)         # --workload is checked there (cli_args.workload_arg)
    try:
        state_dir()     # first: a planted state folder is refused whatever else is wrong
        problem = preflight(args.dir)
        if not problem:
            # A socket left by a mount that died (not a live one: preflight saw no mount);
            # removed here so a planted one is refused before anything starts.
            remove_stale(socket_path(args.dir), stat.S_ISSOCK)
    except StateDirError as exc:
        problem = str(exc)
    if problem:
        print(f"{PROG}: {problem}", file=sys.stderr)
        return 1
    if args.foreground:
        # Resolved now: once mounted, a lookup from inside init() would wait on ourselves.
        where = os.path.realpath(args.dir)
        return serve(args, lambda: print(f"mounted on {where}", flush=True),
                     lambda msg: print(f"{PROG}: {msg}", file=sys.stderr))
    return _background(args)


def _background(args: argparse.Namespace) -> int:
    """Fork a child that mounts and serves; return when it says ready (0) or failed (1)."""
    # Opened here, before the fork, so a refusal reaches the user's terminal.
    try:
        log_fd = create_state_file(state_path(args.dir, "log"))
        try:
            pid_fd = create_state_file(state_path(args.dir, "pid"))
        except StateDirError:
            os.close(log_fd)
            raise
    except StateDirError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        os.setsid()
        _detach(log_fd)
        os.write(pid_fd, f"{os.getpid()}\n".encode())
        os.close(pid_fd)

        def tell(text: str) -> None:
            try:
                os.write(wfd, text.encode())
            except OSError:
                pass

        status = serve(args, lambda: tell("ready\n"), lambda msg: tell(f"error {msg}\n"))
        os._exit(status)
    os.close(wfd)
    os.close(log_fd)
    os.close(pid_fd)
    with os.fdopen(rfd, "rb") as pipe:
        answer = pipe.readline().decode(errors="replace").strip()
    if answer == "ready":
        return 0
    os.waitpid(pid, 0)
    reason = answer[len("error "):] if answer.startswith("error ") else \
        f"the mount process ended early (log: {state_path(args.dir, 'log')})"
    print(f"{PROG}: {reason}", file=sys.stderr)
    return 1


def _detach(log: int) -> None:
    """Point stdin at /dev/null and stdout/stderr at the mount's log file."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def _unescape_mountinfo(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as 3-digit octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _abspath(mountpoint: str) -> str:
    """The path mountinfo shows for ``mountpoint``: the real path of its folder plus its name
    (the mountpoint itself may not stat at all when its FUSE process is dead)."""
    path = os.path.abspath(mountpoint)
    try:
        os.stat(path)
    except OSError:
        return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    return os.path.realpath(path)


def mount_entry(mountpoint: str) -> tuple[str, str] | None:
    """``(fstype, source)`` of what is mounted on ``mountpoint`` (topmost), from
    /proc/self/mountinfo; None when nothing is."""
    target, found = _abspath(mountpoint), None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split()
                if "-" not in fields[6:]:
                    continue
                sep = fields.index("-", 6)
                if _unescape_mountinfo(fields[4]) == target and len(fields) > sep + 2:
                    found = (fields[sep + 1], fields[sep + 2])
    except OSError:
        return None
    return found


def dead_fuse_mount(mountpoint: str) -> bool:
    """A FUSE mount whose process is gone: stat fails with ENOTCONN."""
    try:
        os.stat(mountpoint)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:    # a zombie nobody reaped yet is dead too (its /dev/fuse is closed)
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _own_dead_mount(mountpoint: str) -> bool:
    """The dead mount is tracesim's (mountinfo says fuse.tracesim) and the process our pid file
    names for it is gone: safe to clear without asking."""
    entry = mount_entry(mountpoint)
    if entry is None or entry[0] != "fuse.tracesim":
        return False
    text = read_state_file(state_path(mountpoint, "pid"))
    if text is None or not text.strip().isdigit():
        return False
    return not _pid_alive(int(text.strip()))


def _unmount(mountpoint: str, lazy: bool) -> subprocess.CompletedProcess:
    tool = shutil.which("fusermount") or shutil.which("fusermount3")
    if tool:
        cmd = [tool, "-uz" if lazy else "-u", mountpoint]
    else:
        cmd = ["umount", "-l", mountpoint] if lazy else ["umount", mountpoint]
    return subprocess.run(cmd, capture_output=True, text=True)


def _last_line(done: subprocess.CompletedProcess) -> str:
    msg = (done.stderr or done.stdout).strip().splitlines()
    return msg[-1] if msg else "failed"


def clear_dead_mount(mountpoint: str) -> str | None:
    """Unmount a dead FUSE mount (``-u``, then lazily ``-uz``); the error text, or None."""
    done = _unmount(mountpoint, lazy=False)
    if done.returncode != 0:
        done = _unmount(mountpoint, lazy=True)
    return None if done.returncode == 0 else _last_line(done)


def umount_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracesim umount", description="Unmount a tracesim mount.")
    p.add_argument("dir", metavar="DIR")
    return p


def umount_main(argv: list[str]) -> int:
    args = umount_parser().parse_args(argv)
    entry = mount_entry(args.dir)
    if dead_fuse_mount(args.dir) or (entry is not None and entry[0].startswith("fuse")
                                     and not os.path.isdir(args.dir)):
        problem = clear_dead_mount(args.dir)
        if problem:
            print(f"tracesim umount: {args.dir}: {problem}", file=sys.stderr)
            return 1
        return 0
    if not os.path.ismount(args.dir):
        print(f"tracesim umount: {args.dir} is not a mount point", file=sys.stderr)
        return 1
    done = _unmount(args.dir, lazy=False)
    if done.returncode != 0:
        print(f"tracesim umount: {_last_line(done)}", file=sys.stderr)
        return 1
    return 0
