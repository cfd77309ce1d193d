"""``tracesim map ACTION ... --mount DIR``: the BPF maps of a running mount, like ``bpftool map``.

    tracesim map list --mount DIR                        id, name, type, sizes, entries, users
    tracesim map dump NAME|ID --mount DIR                every element, decoded by BTF
    tracesim map lookup NAME|ID key BYTES --mount DIR
    tracesim map update NAME|ID key BYTES value BYTES [any|noexist|exist] --mount DIR
    tracesim map delete NAME|ID key BYTES --mount DIR

BYTES as bpftool takes them (``1 0 0 0``, ``0x01 0 0 0``, ``hex 01 00 00 00``), or one number for
an integer key or value.  The maps are those of the filters written to ``filter`` files and of
the objects ``tracesim run --mount`` loaded; the words go to the mount (``tracesim.filters.bpf.
map_commands``), which answers with the kernel's errno (a frozen ``.rodata``: EPERM).
"""
from __future__ import annotations

import argparse
import sys

from tracesim.tools.ctl_socket import CtlError, request

ACTIONS = ("list", "dump", "lookup", "update", "delete")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracesim map", description="BPF maps of a running mount "
                                "(like bpftool map).", epilog=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("words", nargs="*", metavar="ARG", help="NAME|ID, key BYTES, value BYTES")
    p.add_argument("--mount", "-m", required=True, metavar="DIR", help="the tracesim mount")
    return p


def split_mount(argv: list[str]) -> tuple[str | None, list[str]]:
    """``--mount DIR`` (or ``-m DIR``, ``--mount=DIR``) anywhere on the line, and the rest."""
    rest, mount = [], None
    words = iter(argv)
    for word in words:
        if word in ("--mount", "-m"):
            mount = next(words, None)
        elif word.startswith("--mount="):
            mount = word.split("=", 1)[1]
        else:
            rest.append(word)
    return mount, rest


def forward(prog: str, p: argparse.ArgumentParser, command: str, argv: list[str]) -> int:
    """Check the line with ``p`` (usage errors, --help), then run it in the mount."""
    mount, rest = split_mount(argv)
    if "-h" in rest or "--help" in rest or mount is None or not rest:
        p.parse_args(argv)                   # prints help or the usage error, exits
    try:
        status, text = request(mount, [command, *rest])
    except CtlError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    (sys.stdout if status == 0 else sys.stderr).write(text)
    return status


def main(argv: list[str]) -> int:
    return forward("tracesim map", parser(), "map", argv)
