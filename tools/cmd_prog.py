"""``tracesim prog list --mount DIR``: the BPF programs of a running mount, like ``bpftool prog``:
id, type, name, tag, license, ``run_time_ns``/``run_cnt`` (counted as the kernel's bpf_stats
counts them), where each is attached, the ``tracesim run`` that loaded it, its size and maps.
``tracesim prog detach RUN --mount DIR`` detaches what a run loaded (its client went away)."""
from __future__ import annotations

import argparse

from tracesim.tools.cmd_map import forward


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracesim prog", description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("list", "detach"))
    p.add_argument("run", nargs="?", metavar="RUN", help="detach: the run's number")
    p.add_argument("--mount", "-m", required=True, metavar="DIR", help="the tracesim mount")
    return p


def main(argv: list[str]) -> int:
    return forward("tracesim prog", parser(), "prog", argv)
