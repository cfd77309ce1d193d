"""`tracesim` — one entry point; each subcommand lives in its own module ``tools/cmd_<name>.py``.

Each command module exposes ``main(argv: list[str]) -> int`` and ``parser()``, the argparse parser
it reads its arguments with (``prog="tracesim NAME"``; ``umount_parser()`` for umount), so
starting one command never imports the others. ``parser()`` here is the top of the tree and
``command_parser(NAME)`` a command's own: together they are every command's ``--help``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = {
    "mount": ("tracesim.tools.cmd_mount", "mount the simulated tracefs on a directory (FUSE)"),
    "umount": ("tracesim.tools.cmd_mount", "unmount a tracesim mount"),
    "ctl": ("tracesim.tools.cmd_ctl",
            "drive the modelled kernel of a mount (send, ping, skb-bench, dmesg, maps ...)"),
    "demo": ("tracesim.tools.cmd_demo", "walk through the 2013 BPF tracing-filter story"),
    "bench": ("tracesim.tools.cmd_bench", "run a benchmark (tracesim bench --help lists them), or all"),
    "cc": ("tracesim.tools.cmd_cc", "compile restricted C to an eBPF ELF object"),
    "objdump": ("tracesim.tools.cmd_objdump", "show sections, symbols and disassembly of an eBPF object"),
    "check": ("tracesim.tools.cmd_check", "verify a BPF program offline (prints OK or the verifier log)"),
    "conformance": ("tracesim.tools.cmd_conformance", "run the eBPF conformance suite on the VM"),
    "rss": ("tracesim.tools.cmd_rss", "RSS steering with eBPF over a modelled multi-queue TUN device"),
    "btf": ("tracesim.tools.cmd_btf", "print the modelled kernel's BTF (raw, as a vmlinux.h, or bytes)"),
    "run": ("tracesim.tools.cmd_run", "load a BPF object, attach its programs by section, print records"),
    "map": ("tracesim.tools.cmd_map", "list, dump, look up, update, delete the BPF maps of a mount"),
    "prog": ("tracesim.tools.cmd_prog", "list the BPF programs of a mount (type, attach point, stats)"),
    "perf": ("tracesim.tools.cmd_perf", "perf stat -e for the model's tracepoints of a mount"),
    "kallsyms": ("tracesim.tools.cmd_kallsyms", "print the model's /proc/kallsyms (for trace-cmd, perf)"),
}


def parser() -> argparse.ArgumentParser:
    """The commands as sub-commands; each command's module parses the rest of the line."""
    p = argparse.ArgumentParser(prog="tracesim", usage="%(prog)s COMMAND [ARGS...]",
                                description="Linux kernel tracing and BPF, simulated.",
                                epilog="tracesim COMMAND --help describes each command.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (_, text) in COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    return p


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser command ``name`` reads its arguments with (imports its module)."""
    module = importlib.import_module(COMMANDS[name][0])
    return module.umount_parser() if name == "umount" else module.parser()


def usage() -> str:
    return parser().format_help().rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _dispatch(argv)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `tracesim ... | head`: the reader left; say nothing more, and keep the interpreter's
        # final flush of stdout from reporting the closed pipe as an error
        sys.stdout = open(os.devnull, "w")
        return 0


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"tracesim: unknown command '{name}'\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    if name == "umount":
        return module.umount_main(rest)
    return module.main(rest) or 0

if __name__ == "__main__":
    sys.exit(main())
