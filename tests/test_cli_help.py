"""Every ``tracesim`` command and sub-command answers ``--help``: exit 0 and its usage text.

The commands are not listed here: they are read from the argparse parsers themselves
(``tools.cli.parser()`` for the top, ``tools.cli.command_parser(NAME)`` for each command, and
the sub-commands those declare), so a command added later is covered without editing this file.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from tracesim.tools import cli

ROOT = Path(__file__).resolve().parent.parent
# A value for a positional argument that comes before a sub-command (ctl's MOUNTPOINT): help
# must work without a mount behind it.
PLACEHOLDER = "/nonexistent/tracesim-mount"


def _subcommands(parser: argparse.ArgumentParser) -> tuple[list[str], dict[str, argparse.ArgumentParser]]:
    """The placeholder values for positionals before the sub-command, and the sub-commands."""
    before: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return before, dict(action.choices)
        if not action.option_strings:
            before.append(PLACEHOLDER)
    return before, {}


def _walk(argv: list[str], parser: argparse.ArgumentParser) -> list[list[str]]:
    found = [argv]
    before, subs = _subcommands(parser)
    for name, sub in subs.items():
        found += _walk(argv + before + [name], sub)
    return found


def every_command_line() -> list[list[str]]:
    _, commands = _subcommands(cli.parser())
    found: list[list[str]] = [[]]
    for name in commands:
        found += _walk([name], cli.command_parser(name))
    return found


COMMAND_LINES = every_command_line()


def test_the_tree_is_found():
    lines = {" ".join(a).replace(PLACEHOLDER, "M") for a in COMMAND_LINES}
    # the ones the issue names, and one of each level
    assert {"ctl", "ctl M send", "ctl M map dump", "bench skb", "bench all", "demo",
            "cc", "umount"} <= lines


@pytest.mark.parametrize("argv", COMMAND_LINES,
                         ids=[" ".join(a).replace(PLACEHOLDER, "M") or "tracesim" for a in COMMAND_LINES])
def test_help(argv, capsys):
    try:
        status = cli.main(argv + ["--help"])
    except SystemExit as stop:             # argparse's help action ends with exit(0)
        status = stop.code
    out, err = capsys.readouterr()
    assert status in (0, None), err
    assert out.startswith("usage: tracesim"), out
    words = [w for w in argv if w != PLACEHOLDER]
    usage = out.split("\n\n")[0]
    assert all(w in usage for w in words), usage
    assert "Traceback" not in out + err


@pytest.mark.parametrize("argv", [["ctl", PLACEHOLDER, "--help"], ["ctl", PLACEHOLDER, "send", "--help"],
                                  ["--help"]])
def test_help_from_the_shell(argv):
    """The reported case, through the real entry point and with nothing mounted."""
    done = subprocess.run([sys.executable, "-m", "tracesim.tools.cli", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: tracesim") and done.stderr == ""
