"""``tracesim run OBJ.o --mount DIR``: the object runs in the mount's kernel, this process prints.

The object travels to the mount over its control socket (``bpf-run load``, base64), is loaded and
attached there (``tracesim.filters.bpf.run_commands``), and this process polls its records
(``bpf-run poll``) until ``--duration`` or Ctrl-C, then detaches it (``bpf-run stop``), which
answers the maps' contents.  Records and maps are decoded here, with the object's own BTF, by the
same printer as in process.  ``--workload W`` starts that workload in the mount for the run.
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
from types import SimpleNamespace
from typing import Any

from tracesim.filters.bpf import loader as loadermod
from tracesim.filters.bpf.object_run import map_display_name, object_name
from tracesim.tools.ctl_socket import CtlError, request
from tracesim.tools.run_output import PROG, Printer, poll_until, report_start


def run_on_mount(args: argparse.Namespace, data: bytes) -> int:
    name = object_name(args.object)
    try:
        obj = loadermod.open_object(data)
        printer = Printer(obj, args)
    except loadermod.LoadError as e:
        print(f"libbpf: failed to open object '{name}': {e.summary}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    command = ["bpf-run", "load", name, base64.b64encode(data).decode()]
    command += ["--strict"] if args.strict else []
    for assignment in args.sets:
        command += ["--set", assignment]
    for cookie in args.cookies:
        command += ["--cookie", cookie]
    try:
        status, text = request(args.mount, command)
        if status:
            sys.stderr.write(text)
            return 1
        loaded = json.loads(text)
        programs = [SimpleNamespace(name=n, state=s, prog_type=t, attach_point=a, section="")
                    for n, s, t, a in loaded["programs"]]
        report_start(loaded["messages"], programs)
        return _follow(args, obj, printer, loaded["id"])
    except CtlError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1


def _follow(args: argparse.Namespace, obj: Any, printer: Printer, run_id: int) -> int:
    started = False
    if args.workload != "none":
        status, text = request(args.mount, ["workload", "start", args.workload])
        if status:
            sys.stderr.write(text)
        started = status == 0

    def poll() -> None:
        status, text = request(args.mount, ["bpf-run", "poll", str(run_id)])
        if status:
            raise CtlError(text.strip())
        for raw in json.loads(text)["records"]:
            printer.record(bytes.fromhex(raw))

    try:
        poll_until(args.duration, poll)
    except KeyboardInterrupt:
        pass
    finally:
        if started:
            request(args.mount, ["workload", "stop", args.workload])
        status, text = request(args.mount, ["bpf-run", "stop", str(run_id)])
    if status:
        sys.stderr.write(text)
        return 1
    final = json.loads(text)
    for raw in final["records"]:
        printer.record(bytes.fromhex(raw))
    printer.maps([(spec, map_display_name(object_name(args.object), spec.name),
                   [(bytes.fromhex(k), [bytes.fromhex(x) for x in v] if isinstance(v, list)
                     else bytes.fromhex(v)) for k, v in items])
                  for spec, items in zip(obj.maps, final["maps"], strict=True)])
    return 0
