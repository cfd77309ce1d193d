"""The control channel of a mount: a Unix socket served by the mount process.

``tracesim ctl MOUNTPOINT ...`` talks to the modelled kernel of a running mount through it. The
socket's path is derived from the mountpoint, so a client needs only the directory. One request
per line, one answer per line, both JSON: the command's words in, its exit status and text out::

    -> {"argv": ["send", "lo", "--len", "128"]}
    <- {"status": 0, "output": "...text to print..."}

While a long command runs (``send --count 1000000``) the server sends empty lines as keepalives,
and a client that hangs up stops the command.

The server does not know the commands: it calls ``run(argv) -> (status, text)`` (the kernel
model's ``control.run_command``) in a thread per connection.

The socket, the mount's log and its pid file live in a per-user state folder (:func:`state_base`)
that must be a real directory owned by the caller with mode 0700 - in ``/tmp`` anyone could have
created it first - and files in it are never opened through a symlink.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import socketserver
import stat
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

Run = Callable[[list], "tuple[int, str]"]
BindProgress = Callable[["Callable[[], bool] | None"], None]
# Seconds between the keepalive lines a long command sends (see _Handler._progress).
KEEPALIVE = 5.0


class CtlError(Exception):
    """The mount answered with an error, or could not be reached."""


class StateDirError(CtlError):
    """The state folder, or a file in it, is not safe to use: the one-line reason."""


def state_base(environ: Mapping[str, str] | None = None) -> Path:
    """The state folder's path, as ssh-agent and tmux choose theirs: ``$XDG_RUNTIME_DIR/tracesim``,
    else ``/run/user/<uid>/tracesim`` when that exists, else ``${TMPDIR:-/tmp}/tracesim-<uid>``.
    The first two live in a folder only this user (or root) can write; the last one does not,
    which is why :func:`state_dir` checks what it finds there."""
    env = os.environ if environ is None else environ
    uid = os.getuid()
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime) and os.path.isdir(runtime):
        return Path(runtime) / "tracesim"
    run_user = Path(f"/run/user/{uid}")
    if run_user.is_dir():
        return run_user / "tracesim"
    tmp = env.get("TMPDIR", "")
    return Path(tmp if os.path.isabs(tmp) else "/tmp") / f"tracesim-{uid}"


def _refuse(path: Path, why: str) -> StateDirError:
    return StateDirError(f"refusing to use {path}: {why}")


def check_state_dir(path: Path) -> None:
    """StateDirError unless ``path`` is a real directory (not a symlink) owned by this user with
    no group or other permission bits: anyone else who can write or swap it could point our
    log, pid file or socket wherever they like, or talk to the mount's kernel."""
    st = os.lstat(path)
    uid = os.getuid()
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, "the state folder is a symbolic link (remove it, then retry)")
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "the state folder is not a directory (remove it, then retry)")
    if st.st_uid != uid:
        raise _refuse(path, f"the state folder is owned by uid {st.st_uid}, not by you "
                            f"(uid {uid}); remove it, then retry")
    if st.st_mode & 0o077:
        raise _refuse(path, f"the state folder has mode {stat.S_IMODE(st.st_mode):04o}, "
                            "it must be 0700 (chmod 700 it, or remove it, then retry)")


def state_dir() -> Path:
    """The checked state folder (created with mode 0700 if missing); StateDirError if unsafe."""
    base = state_base()
    try:
        os.mkdir(base, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StateDirError(f"cannot create the state folder {base}: {exc.strerror}") from None
    check_state_dir(base)
    return base


def state_path(mountpoint: str, suffix: str) -> Path:
    """``<state dir>/<hash of the mountpoint's real path>.<suffix>`` (sock, log, pid)."""
    key = hashlib.sha1(os.path.realpath(mountpoint).encode()).hexdigest()[:16]
    return state_dir() / f"{key}.{suffix}"


def remove_stale(path: Path, is_kind: Callable[[int], bool]) -> None:
    """Remove a file left by an earlier mount, if it is one of ours of the expected kind
    (``stat.S_ISREG``, ``stat.S_ISSOCK``); StateDirError for anything else (a symlink above all)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, "it is a symbolic link (remove it, then retry)")
    if not is_kind(st.st_mode) or st.st_uid != os.getuid():
        raise _refuse(path, "it is not a file an earlier mount left (remove it, then retry)")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def create_state_file(path: Path) -> int:
    """A new file in the state folder, write-only, mode 0600: never through a symlink
    (O_NOFOLLOW) and never one that someone else put there in between (O_EXCL)."""
    remove_stale(path, stat.S_ISREG)
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                       0o600)
    except OSError as exc:
        raise _refuse(path, exc.strerror or str(exc)) from None


def read_state_file(path: Path, limit: int = 4096) -> str | None:
    """The text of a small file in the state folder, or None when it is absent; StateDirError
    when it is a symlink or not a regular file (a FIFO would block: O_NONBLOCK)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(path, "it is a symbolic link (remove it, then retry)") from None
        raise _refuse(path, exc.strerror or str(exc)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _refuse(path, "it is not a regular file (remove it, then retry)")
        return os.read(fd, limit).decode(errors="replace")
    finally:
        os.close(fd)


def socket_path(mountpoint: str) -> Path:
    return state_path(mountpoint, "sock")


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        run: Run = self.server.run  # type: ignore[attr-defined]
        bind: BindProgress | None = self.server.bind_progress  # type: ignore[attr-defined]
        for line in self.rfile:
            if bind is not None:
                bind(self._progress())
            try:
                argv = [str(word) for word in json.loads(line)["argv"]]
                status, output = run(argv)
                answer: dict[str, Any] = {"status": status, "output": output}
            except Exception as exc:  # the client shows the error; the mount keeps running
                answer = {"status": 1, "output": f"{type(exc).__name__}: {exc}\n"}
            finally:
                if bind is not None:
                    bind(None)
            try:
                self.wfile.write(json.dumps(answer).encode() + b"\n")
                self.wfile.flush()
            except OSError:     # the client went away (Ctrl-C): nobody to answer
                return

    def _progress(self) -> Callable[[], bool]:
        """The check a long command calls between batches: sends a keepalive (an empty line)
        every KEEPALIVE seconds, so the client's timeout measures silence, not the command's
        length; True once the client has hung up, so the command stops."""
        last = [time.monotonic()]

        def check() -> bool:
            try:
                if self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                    return True
            except BlockingIOError:
                pass
            except OSError:
                return True
            if time.monotonic() - last[0] >= KEEPALIVE:
                last[0] = time.monotonic()
                try:
                    self.wfile.write(b"\n")
                    self.wfile.flush()
                except OSError:
                    return True
            return False

        return check


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class CtlServer:
    """Serves ``run`` on the mount's socket until :meth:`close`. ``bind_progress(check)`` is
    called in the serving thread before each command (and with None after): ``check()`` is what
    a long command calls between batches (keepalive; True = the client hung up, stop)."""

    def __init__(self, mountpoint: str, run: Run, bind_progress: BindProgress | None = None) -> None:
        self.path = socket_path(mountpoint)
        remove_stale(self.path, stat.S_ISSOCK)
        self._server = _Server(str(self.path), _Handler)
        self._server.run = run  # type: ignore[attr-defined]
        self._server.bind_progress = bind_progress  # type: ignore[attr-defined]
        os.chmod(self.path, 0o600)
        self._thread = threading.Thread(target=self._server.serve_forever, name="ctl",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def request(mountpoint: str, argv: list[str], timeout: float = 600) -> tuple[int, str]:
    """Run a control command in the mount process: ``(status, text)``; CtlError if unreachable."""
    path = socket_path(mountpoint)
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):    # connect() would follow it
            raise _refuse(path, "it is a symbolic link (remove it, then retry)")
    except FileNotFoundError:
        pass
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps({"argv": list(argv)}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data = (data + chunk).lstrip(b"\n")     # keepalives come before the answer
    except OSError as exc:
        raise CtlError(f"no tracesim mount answers for {mountpoint} ({path}: {exc.strerror})") \
            from None
    if not data:
        raise CtlError(f"the tracesim mount at {mountpoint} closed the connection")
    answer = json.loads(data)
    return int(answer["status"]), str(answer["output"])
