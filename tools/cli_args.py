"""Argument types and a parser the commands share: bad input is one line and exit status 2.

``OneLineParser`` prints ``PROG: error: MESSAGE`` (no usage block) and exits 2; ``int_in(lo, hi)``
is an argparse type for an integer in a range; ``workload_arg`` checks ``NAME[:KEY=VALUE,...]``
against the workload table (``none`` means no workload) before anything starts.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

from tracesim.kernel_model.workload import TASK_WORKLOADS, parse_workload


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high``."""
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range ({low} to {high})")
        return value
    convert.__name__ = "integer"
    return convert


def workload_arg(text: str) -> str:
    """An argparse type: ``none`` or a workload with valid parameters (the text, unchanged)."""
    if text == "none" or text in TASK_WORKLOADS:     # task workloads take no parameters
        return text
    try:
        parse_workload(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text
