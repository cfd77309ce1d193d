"""The control channel of a mount: a Unix socket served by the mount process.

``tracesim ctl MOUNTPOINT ...`` talks to the modelled kernel of a running mount through it. The
socket's path is derived from the mountpoint, so a client needs only the directory. One request
per line, one answer per line, both JSON: the command's words in, its exit status and text out::

    -> {"argv": ["send", "lo", "--len", "128"]}
    <- {"status": 0, "output": "...text to print..."}

The server does not know the commands: it calls ``run(argv) -> (status, text)`` (the kernel
model's ``control.run_command``) in a thread per connection.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

Run = Callable[[list], "tuple[int, str]"]


class CtlError(Exception):
    """The mount answered with an error, or could not be reached."""


def state_dir() -> Path:
    """Where mounts keep their socket, log and pid file: $XDG_RUNTIME_DIR/tracesim or /tmp."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "tracesim" if runtime else Path(f"/tmp/tracesim-{os.getuid()}")
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    return base


def state_path(mountpoint: str, suffix: str) -> Path:
    """``<state dir>/<hash of the mountpoint's real path>.<suffix>`` (sock, log, pid)."""
    key = hashlib.sha1(os.path.realpath(mountpoint).encode()).hexdigest()[:16]
    return state_dir() / f"{key}.{suffix}"


def socket_path(mountpoint: str) -> Path:
    return state_path(mountpoint, "sock")


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        run: Run = self.server.run  # type: ignore[attr-defined]
        for line in self.rfile:
            try:
                argv = [str(word) for word in json.loads(line)["argv"]]
                status, output = run(argv)
                answer: dict[str, Any] = {"status": status, "output": output}
            except Exception as exc:  # the client shows the error; the mount keeps running
                answer = {"status": 1, "output": f"{type(exc).__name__}: {exc}\n"}
            self.wfile.write(json.dumps(answer).encode() + b"\n")
            self.wfile.flush()


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class CtlServer:
    """Serves ``run`` on the mount's socket until :meth:`close`."""

    def __init__(self, mountpoint: str, run: Run) -> None:
        self.path = socket_path(mountpoint)
        if self.path.exists():
            self.path.unlink()
        self._server = _Server(str(self.path), _Handler)
        self._server.run = run  # type: ignore[attr-defined]
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
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps({"argv": list(argv)}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise CtlError(f"no tracesim mount answers for {mountpoint} ({path}: {exc.strerror})") \
            from None
    if not data:
        raise CtlError(f"the tracesim mount at {mountpoint} closed the connection")
    answer = json.loads(data)
    return int(answer["status"]), str(answer["output"])
