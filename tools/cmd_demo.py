"""``tracesim demo``: the 2013 "tracing filters with BPF" story, end to end.

Mounts the simulated tracefs (FUSE; where that cannot work, the same tree in process, saying
so), shows the tree, compiles ``tools/examples/filter_ex1.c`` with tracesim's compiler, ``cat``s
the object into ``events/net/netif_receive_skb/filter``, enables the event, sends traffic on
``lo`` and ``eth0``, prints what ``trace_pipe`` holds (only ``lo`` packets pass the filter), then
runs the RFC's skb benchmark at a modest size with its table, and unmounts.
"""
from __future__ import annotations

import argparse
import errno
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tracesim.bench import skb as skb_bench
from tracesim.tools.cli_args import OneLineParser, int_in

EXAMPLES = Path(__file__).resolve().parent / "examples"
EVENT = "events/net/netif_receive_skb"


def say(text: str = "") -> None:
    print(text, flush=True)


def shell(text: str) -> None:
    say(f"$ {text}")


# ---------------------------------------------------------------------------------------------
# the two ways to run: a FUSE mount (files through the kernel, cat/echo) or the in-process tree

class MountedDemo(skb_bench.Mounted):
    def __init__(self, mountpoint: str) -> None:
        super().__init__(mountpoint)
        self.mountpoint = mountpoint

    def cat_into(self, src: Path, path: str) -> None:
        shell(f"cat {src.name} > {path}")
        subprocess.run(f"cat {shlex.quote(str(src))} > {shlex.quote(path)}", shell=True,
                       cwd=self.mountpoint, check=True)

    def listing(self, path: str) -> list[str]:
        return sorted(os.listdir(self.root / path))

    def drain_pipe(self) -> str:
        fd = os.open(self.root / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        out = bytearray()
        try:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                out += chunk
        finally:
            os.close(fd)
        return out.decode(errors="replace")


class InProcessDemo(skb_bench.InProcess):
    def cat_into(self, src: Path, path: str) -> None:
        shell(f"cat {src.name} > {path}")
        self.write(path, src.read_bytes())

    def listing(self, path: str) -> list[str]:
        return self.system.tree.readdir("/" + path)

    def drain_pipe(self) -> str:
        tree = self.system.tree
        handle = tree.open("/trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        out = bytearray()
        try:
            while True:
                try:
                    chunk = handle.read(65536, len(out))
                except OSError as exc:
                    if exc.errno == errno.EAGAIN:
                        break
                    raise
                if not chunk:
                    break
                out += chunk
        finally:
            handle.release()
        return out.decode(errors="replace")


def try_mount(mountpoint: str) -> tuple[Any, str]:
    """A mounted tree, or the in-process one with the reason the mount could not be made."""
    from tracesim.tools import cmd_mount
    problem = cmd_mount.preflight(mountpoint)
    if problem is None:
        if cmd_mount.main([mountpoint, "--clock", "real"]) == 0:
            return MountedDemo(mountpoint), ""
        problem = "tracesim mount failed (see above)"
    return InProcessDemo(), problem


# ---------------------------------------------------------------------------------------------

def story(fs: Any, obj: Path, iterations: int) -> None:
    say("== the tree")
    shell("ls")
    say("  ".join(fs.listing("")))
    shell("ls events/net")
    say("  ".join(fs.listing("events/net")))
    say()
    say("== the filter: keep net:netif_receive_skb only for packets received on lo")
    say((EXAMPLES / "filter_ex1.c").read_text().split("*/", 1)[1].strip())
    say()
    shell(f"tracesim cc filter_ex1.c -o {obj.name}")
    say(f"({obj.stat().st_size} bytes, ELF EM_BPF)")
    fs.cat_into(obj, f"{EVENT}/filter")
    shell(f"cat {EVENT}/filter")
    say(fs.read(f"{EVENT}/filter").rstrip("\n"))
    shell(f"echo 1 > {EVENT}/enable")
    fs.write(f"{EVENT}/enable", "1")
    for dev in ("lo", "eth0"):
        shell(f"tracesim ctl MOUNT send {dev} --len 84 --count 2")
        status, text = fs.control(["send", dev, "--len", "84", "--count", "2"])
        say(text.rstrip("\n"))
    shell("cat trace_pipe")
    say(fs.drain_pipe().rstrip("\n") or "(nothing)")
    say("(2 lo packets: a bpf_trace_printk line and the kept event each; eth0's were dropped "
        "by the program before anything was written)")
    fs.write(f"{EVENT}/enable", "0")
    fs.write(f"{EVENT}/filter", "0")
    say()
    say(f"== the RFC benchmark: {iterations} skb alloc/free pairs per phase "
        f"(tracesim bench skb for the full run)")
    results = skb_bench.measure(fs, iterations, 1, log=say)
    say()
    say(skb_bench.table(results, iterations))


def parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="tracesim demo", description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int_in(1, 10**9), default=20_000,
                    help="skb alloc/free pairs per benchmark phase (default 20000)")
    ap.add_argument("--in-process", action="store_true", help="do not try a FUSE mount")
    return ap


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from tracesim.filters.bpf.compiler.driver import compile_file
    with tempfile.TemporaryDirectory(prefix="tracesim-demo-") as tmp:
        obj = Path(tmp) / "filter_ex1.o"
        obj.write_bytes(compile_file(EXAMPLES / "filter_ex1.c").elf)
        mountpoint = Path(tmp) / "tracing"
        mountpoint.mkdir()
        if args.in_process:
            fs, problem = InProcessDemo(), "asked for --in-process"
        else:
            fs, problem = try_mount(str(mountpoint))
        if problem:
            say(f"FUSE mount not possible ({problem}): using the same tree in process")
        else:
            shell(f"tracesim mount {mountpoint}")
        try:
            story(fs, obj, args.iterations)
        finally:
            if isinstance(fs, MountedDemo):
                from tracesim.tools import cmd_mount
                shell(f"tracesim umount {mountpoint}")
                cmd_mount.umount_main([str(mountpoint)])
            fs.close()
    return 0
