"""``tracesim btf dump [--format raw|c|bin] [--mount DIR | --file F]`` — the modelled kernel's BTF.

A real kernel describes its types in ``/sys/kernel/btf/vmlinux``; ``bpftool btf dump file
/sys/kernel/btf/vmlinux [format c]`` prints it. This prints the model's (``kernel_model/
model_btf.py``) the same ways: ``raw``, one ``[id] KIND 'name' ...`` line per type as bpftool
writes them; ``c``, a ``vmlinux.h`` that clang compiles BPF programs against; ``bin``, the raw
bytes (for tools that read a BTF file). With ``--mount`` the BTF comes from that mount's kernel,
over its control socket (tracefs has no BTF file: a kernel serves it in sysfs). With ``--file``
it prints the BTF of a file instead, raw BTF or a BPF object's ``.BTF``, as ``bpftool btf dump
file F`` does.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import io
import sys

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from tracesim.filters.bpf.toolchain import btf as B
from tracesim.filters.bpf.toolchain.btf_dump import dump_c, dump_raw
from tracesim.tools.ctl_socket import CtlError, request

USAGE = "usage: tracesim btf dump [--format raw|c|bin] [--mount DIR | --file F]\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracesim btf", usage=USAGE[len("usage: "):].rstrip(),
                                description="Print the modelled kernel's BTF, as bpftool btf dump "
                                            "prints /sys/kernel/btf/vmlinux.")
    p.add_argument("action", choices=("dump",), help="print the BTF")
    p.add_argument("--format", choices=("raw", "c", "bin"), default="raw",
                   help="raw: bpftool's text (default); c: a vmlinux.h; bin: the raw bytes")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--mount", metavar="DIR", help="the BTF of the kernel behind this mount")
    where.add_argument("--file", metavar="F", help="the BTF of a raw BTF file or a BPF object")
    return p


def read_file(path: str) -> bytes:
    """Raw BTF bytes from ``path``: a raw BTF file, or the ``.BTF`` section of an ELF object."""
    try:
        data = open(path, "rb").read()
    except OSError as e:
        raise CtlError(f"'{path}': {e.strerror}") from None
    if data[:2] == b"\x9f\xeb":
        return data
    try:
        section = ELFFile(io.BytesIO(data)).get_section_by_name(".BTF")
    except ELFError:
        raise CtlError(f"'{path}' is neither raw BTF nor an ELF object") from None
    if section is None:
        raise CtlError(f"'{path}' has no .BTF section")
    return section.data()


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
    args = parser().parse_args(argv)
    try:
        if args.mount is not None:
            data = fetch(args.mount)
        elif args.file is not None:
            data = read_file(args.file)
        else:
            from tracesim.kernel_model.model_btf import model_btf_bytes
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
