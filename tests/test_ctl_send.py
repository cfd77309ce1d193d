"""``send --count N``: bounded, streamed in batches, every packet delivered, stoppable.

The daemon used to build all N frames before sending one (195 MB for N = 10^6). Now a count
above MAX_SEND_COUNT is refused, frames are generated per batch, a requester that hangs up stops
the command, and the control socket sends keepalives so a long send does not look like a dead
mount to the client.
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time

import pytest
from tracesim.kernel_model import control
from tracesim.tools import ctl_socket
from tracesim.tracefs.system import System

from tests.fuse_helpers import mounted, need_fuse, sh, tracesim

NETIF = "/events/net/netif_receive_skb"


def netif_lines(system: System) -> list[str]:
    return [line for line in system.tree.read_text("/trace").splitlines()
            if "netif_receive_skb:" in line]


@pytest.mark.parametrize("count", [control.MAX_SEND_COUNT + 1, 10**18, -1])
def test_count_out_of_range_is_refused_and_sends_nothing(system, count):
    system.tree.echo(NETIF + "/enable", "1")
    status, text = system.control(["send", "eth0", "--len", "100", "--count", str(count)])
    assert (status, text) == (2, f"send: --count {count} is out of range (0 to 1000000000)\n")
    assert netif_lines(system) == []


@pytest.mark.parametrize("dev", ["eth0", "lo"])
def test_every_packet_of_a_multi_batch_send_arrives(system, dev):
    count = 3 * control.SEND_BATCH + 7
    system.tree.echo("/buffer_size_kb", "4096")
    system.tree.echo(NETIF + "/enable", "1")
    status, text = system.control(["send", dev, "--len", "100", "--count", str(count)])
    assert (status, text) == (0, f"sent {count} udp packets of len 100 on {dev}\n")
    lines = netif_lines(system)
    assert len(lines) == count
    assert all(line.endswith(" len=100") for line in lines)


def test_bad_length_fails_before_anything_is_sent(system):
    system.tree.echo(NETIF + "/enable", "1")
    status, text = system.control(["send", "eth0", "--len", "20", "--count", "1000"])
    assert status == 1 and text.startswith("send: --len 20 is too short")
    assert netif_lines(system) == []


def test_send_is_generated_in_batches_and_stops_when_the_requester_leaves(system):
    """A million packets with a requester that is gone after the second batch: the command
    returns after 2 batches (building all frames first would take minutes and ~200 MB)."""
    calls = []

    def hook() -> bool:
        calls.append(1)
        return len(calls) >= 2

    control.set_progress_hook(hook)
    try:
        status, text = system.control(["send", "eth0", "--len", "100", "--count", "1000000"])
    finally:
        control.set_progress_hook(None)
    assert (status, text) == (1, f"send: stopped after {2 * control.SEND_BATCH} of 1000000 "
                                 "packets: the requester went away\n")
    assert len(calls) == 2


# -------------------------------------------------------------------------- the control socket

@pytest.fixture
def served(tmp_path, monkeypatch):
    """A CtlServer on tmp_path's state folder; ``run`` is set by the test via ``holder``."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    holder: dict = {}
    local = threading.local()

    def bind(check) -> None:
        local.check = check

    def run(argv: list[str]) -> tuple[int, str]:
        return holder["run"](local.check)

    mnt = str(tmp_path / "mnt")
    server = ctl_socket.CtlServer(mnt, run, bind)
    try:
        yield mnt, holder
    finally:
        server.close()


def test_a_client_that_hangs_up_stops_the_command(served):
    mnt, holder = served
    stopped = threading.Event()

    def long_command(check) -> tuple[int, str]:
        deadline = time.monotonic() + 30
        while not check() and time.monotonic() < deadline:
            time.sleep(0.01)
        if time.monotonic() < deadline:
            stopped.set()
        return 0, ""

    holder["run"] = long_command
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(ctl_socket.socket_path(mnt)))
        sock.sendall(json.dumps({"argv": ["send"]}).encode() + b"\n")
    assert stopped.wait(20)


def test_a_long_command_sends_keepalives_the_client_skips(served, monkeypatch):
    """Every progress check of a running command past KEEPALIVE seconds sends an empty line, so
    the client's per-read timeout measures silence, not the command's length; the client takes
    the answer after them."""
    mnt, holder = served
    monkeypatch.setattr(ctl_socket, "KEEPALIVE", 0.0)

    def long_command(check) -> tuple[int, str]:
        assert not any([check(), check(), check()])
        return 0, "done\n"

    holder["run"] = long_command
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(ctl_socket.socket_path(mnt)))
        sock.sendall(json.dumps({"argv": ["send"]}).encode() + b"\n")
        data = b""
        while not data.endswith(b"}\n"):
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
    assert data == b"\n\n\n" + json.dumps({"status": 0, "output": "done\n"}).encode() + b"\n"
    assert ctl_socket.request(mnt, ["send"]) == (0, "done\n")


# -------------------------------------------------------------------------- through the CLI

def test_cli_send_refuses_a_huge_count_and_delivers_a_modest_one(tmp_path):
    need_fuse(tmp_path)
    with mounted(tmp_path / "mnt") as mnt:
        done = tracesim("ctl", str(mnt), "send", "eth0", "--len", "100", "--count", "2000000000",
                        check=False)
        assert done.returncode == 2
        assert done.stderr == "send: --count 2000000000 is out of range (0 to 1000000000)\n"
        assert sh("echo 4096 > buffer_size_kb && echo 1 > events/net/netif_receive_skb/enable",
                  mnt).returncode == 0
        done = tracesim("ctl", str(mnt), "send", "eth0", "--len", "100", "--count", "1000")
        assert done.stdout == "sent 1000 udp packets of len 100 on eth0\n"
        trace = sh("cat trace", mnt).stdout
        assert len(re.findall(r"netif_receive_skb: .* len=100$", trace, re.M)) == 1000
