"""``tracesim mount DIR`` / ``tracesim umount DIR``: the simulated tracefs on a real directory.

``mount`` builds the modelled kernel and its tracefs tree, serves the tree over FUSE and the
kernel's operations on the control socket (:mod:`tools.ctl_socket`). By default it forks: the
child mounts and serves, the parent returns once the kernel reports the mount ready (or prints
the child's one-line error). ``--foreground`` serves in the calling process. SIGINT, SIGTERM and
SIGHUP end the FUSE loop, which unmounts; ``umount`` runs ``fusermount -u``.
"""
from __future__ import annotations

import argparse
import ctypes.util
import os
import shutil
import subprocess
import sys
import traceback

from tools.ctl_socket import CtlServer, state_path

PROG = "tracesim mount"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description="Mount the simulated tracefs on DIR.")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--cpus", type=int, default=2, help="simulated CPUs (default 2)")
    p.add_argument("--workload", default="none",
                   help="background traffic: a workload name, or none (default)")
    p.add_argument("--seed", type=int, default=1, help="seed of the workload (default 1)")
    p.add_argument("--foreground", action="store_true", help="serve in this process")
    p.add_argument("--bpf-engine", choices=("jit", "interp"), default="jit",
                   help="how BPF filter programs run (default jit)")
    p.add_argument("--clock", choices=("real", "virtual"), default="real",
                   help="time base of the trace clocks (default real)")
    p.add_argument("--debug", action="store_true", help="libfuse debug output (foreground)")
    return p.parse_args(argv)


def preflight(mountpoint: str) -> str | None:
    """The one-line reason the mount cannot work, or None."""
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
    from tracefs.fuse_mount import serve as fuse_serve
    from tracefs.system import System

    mountpoint = os.path.realpath(args.dir)
    try:
        system = System.boot(cpus=args.cpus, seed=args.seed, clock=args.clock,
                             bpf_engine=args.bpf_engine)
        ctl = CtlServer(mountpoint, system.control)
        if args.workload != "none":
            system.start_workload(args.workload)
    except Exception as exc:
        on_error(f"cannot start the modelled kernel: {exc}")
        traceback.print_exc()
        return 1
    try:
        fuse_serve(system.tree, mountpoint, on_ready=on_ready, debug=args.debug)
    except RuntimeError as exc:
        on_error(f"mounting {mountpoint} failed (libfuse status {exc})")
        return 1
    finally:
        system.shutdown()
        ctl.close()
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    problem = preflight(args.dir)
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
    sys.stdout.flush()
    sys.stderr.flush()
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        os.setsid()
        _detach(state_path(args.dir, "log"))
        state_path(args.dir, "pid").write_text(f"{os.getpid()}\n")

        def tell(text: str) -> None:
            try:
                os.write(wfd, text.encode())
            except OSError:
                pass

        status = serve(args, lambda: tell("ready\n"), lambda msg: tell(f"error {msg}\n"))
        os._exit(status)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as pipe:
        answer = pipe.readline().decode(errors="replace").strip()
    if answer == "ready":
        return 0
    os.waitpid(pid, 0)
    reason = answer[len("error "):] if answer.startswith("error ") else \
        f"the mount process ended early (log: {state_path(args.dir, 'log')})"
    print(f"{PROG}: {reason}", file=sys.stderr)
    return 1


def _detach(log_path) -> None:
    """Point stdin at /dev/null and stdout/stderr at the mount's log file."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    log = os.open(str(log_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def umount_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tracesim umount", description="Unmount a tracesim mount.")
    p.add_argument("dir", metavar="DIR")
    args = p.parse_args(argv)
    if not os.path.ismount(args.dir):
        print(f"tracesim umount: {args.dir} is not a mount point", file=sys.stderr)
        return 1
    tool = shutil.which("fusermount") or shutil.which("fusermount3")
    cmd = [tool, "-u", args.dir] if tool else ["umount", args.dir]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        msg = (done.stderr or done.stdout).strip().splitlines()
        print(f"tracesim umount: {msg[-1] if msg else 'failed'}", file=sys.stderr)
        return 1
    return 0
