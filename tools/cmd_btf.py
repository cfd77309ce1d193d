"""``tracesim btf dump [--format raw|c|bin] [--mount DIR]`` — the modelled kernel's BTF.

A real kernel describes its types in ``/sys/kernel/btf/vmlinux``; ``bpftool btf dump file
/sys/kernel/btf/vmlinux [format c]`` prints it. This prints the model's (``kernel_model/
model_btf.py``) the same ways: ``raw``, one ``[id] KIND 'name' ...`` line per type as bpftool
writes them; ``c``, a ``vmlinux.h`` that clang compiles BPF programs against; ``bin``, the raw
bytes (for tools that read a BTF file). With ``--mount`` the BTF comes from that mount's kernel,
over its control socket (tracefs has no BTF file: a kernel serves it in sysfs).
"""
from __future__ import annotations

import argparse
import base64
import binascii
import sys

from filters.bpf import btf as B
from filters.bpf.btf_dump import dump_c, dump_raw
from tools.ctl_socket import CtlError, request

USAGE = "usage: tracesim btf dump [--format raw|c|bin] [--mount DIR]\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracesim btf", usage=USAGE[len("usage: "):].rstrip(),
                                description="Print the modelled kernel's BTF, as bpftool btf dump "
                                            "prints /sys/kernel/btf/vmlinux.")
    p.add_argument("action", choices=("dump",), help="print the BTF")
    p.add_argument("--format", choices=("raw", "c", "bin"), default="raw",
                   help="raw: bpftool's text (default); c: a vmlinux.h; bin: the raw bytes")
    p.add_argument("--mount", metavar="DIR", help="the BTF of the kernel behind this mount")
    return p


def fetch(mountpoint: str) -> bytes:
    """The raw BTF of a running mount, over its control socket."""
    status, text = request(mountpoint, ["btf"])
    if status != 0:
        raise CtlError(text.strip() or f"btf failed with status {status}")
    try:
        return base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise CtlError("the mount answered something that is not BTF") from None


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.mount is not None:
            data = fetch(args.mount)
        else:
            from kernel_model.model_btf import model_btf_bytes
            data = model_btf_bytes()
        if args.format == "bin":
            if sys.stdout.isatty():
                print("tracesim btf: refusing to write binary BTF to a terminal "
                      "(redirect it to a file)", file=sys.stderr)
                return 1
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return 0
        btf = B.parse(data)
    except (B.BtfError, CtlError) as e:
        print(f"tracesim btf: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(dump_c(btf) if args.format == "c" else dump_raw(btf))
    return 0
