"""``tracesim kallsyms [--mount DIR]``: the model's ``/proc/kallsyms``, for tools that would
otherwise resolve the model's addresses with the host's symbols.

trace-cmd (``extract``/``record``) copies ``/proc/kallsyms`` into ``trace.dat`` and ``report``
resolves ``%pS`` fields and function addresses with it; perf takes ``--kallsyms FILE``.  Give
them this file instead of the host's: ``tracesim kallsyms --mount DIR > model.kallsyms``, then
``perf report --kallsyms model.kallsyms`` or, for trace-cmd, the LD_PRELOAD shim's
``TRACESIM_KALLSYMS=model.kallsyms`` (README, "Run a real tool").
"""
from __future__ import annotations

import argparse
import sys

from tracesim.tools.ctl_socket import CtlError, request


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracesim kallsyms", description=__doc__.split("\n\n")[0])
    p.add_argument("--mount", "-m", metavar="DIR",
                   help="the mount whose kernel to ask (default: a kernel booted here)")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.mount is None:
        from tracesim.kernel_model.kallsyms import Kallsyms
        from tracesim.kernel_model.proc_kallsyms import kallsyms_text
        sys.stdout.write(kallsyms_text(Kallsyms()))
        return 0
    try:
        status, text = request(args.mount, ["kallsyms"])
    except CtlError as exc:
        print(f"tracesim kallsyms: {exc}", file=sys.stderr)
        return 1
    (sys.stdout if status == 0 else sys.stderr).write(text)
    return status
