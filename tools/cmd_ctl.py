"""``tracesim ctl MOUNTPOINT COMMAND [ARGS...]`` — drive the modelled kernel behind a mount.

The words after the mountpoint go unchanged to the mount process over its control socket
(``tools/ctl_socket.py``); the mount runs them (``tracesim.kernel_model.control.run_command``, the
BPF map commands ``maps`` / ``map dump NAME`` and ``bpf-engine``) and sends back the exit
status and the text to print.
"""
from __future__ import annotations

import argparse
import sys

from tracesim.tools.ctl_socket import CtlError, request

USAGE = """\
usage: tracesim ctl MOUNTPOINT COMMAND [ARGS...]

commands:
  send DEV --len N [--proto udp|tcp|icmp] [--count K]   deliver packets of skb len N on DEV
  send tun0 --src A --dst B [--proto P] [--sport S] [--dport D] [--vlan V] [--df] [--len N]
  ping DEV [-c K]                                       ICMP echo through DEV (lo: loopback)
  skb-bench [N] [--dev DEV]                             the 2013 RFC's skb alloc/free module
  dmesg [-c|-C]                                         the kernel log
  workload start|stop NAME | workload list              seeded background traffic
  maps                                                  BPF maps of the attached programs
  map dump NAME                                         keys and values of one map
  bpf-engine [jit|interp|native|auto]                   show or switch the BPF engine (next loads)
"""


# One line per command of the mount's control channel, for --help.
COMMAND_HELP = {
    "send": "deliver packets of skb len N on DEV",
    "ping": "ICMP echo through DEV (lo: loopback)",
    "skb-bench": "the 2013 RFC's skb alloc/free module",
    "dmesg": "the kernel log",
    "workload": "seeded background traffic",
}
TUN_SEND = ("send tun0 --src A --dst B [--proto P] [--sport S] [--dport D] [--vlan V] [--df] "
            "[--len N] [--count K]: one flow's packets through the TUN device's queues")


def parser() -> argparse.ArgumentParser:
    """The command line as argparse sees it, for ``--help`` at every level. Only help is parsed
    here: the words after the mountpoint go to the mount unchanged, which owns the commands."""
    from tracesim.kernel_model.control import command_parsers

    p = argparse.ArgumentParser(prog="tracesim ctl", usage="%(prog)s MOUNTPOINT COMMAND [ARGS...]",
                                description="Drive the modelled kernel behind a tracesim mount.",
                                epilog=USAGE.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mountpoint", metavar="MOUNTPOINT", help="where tracesim mount serves the tree")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", prog="tracesim ctl MOUNTPOINT",
                           help="one of the commands below; COMMAND --help for its options")
    for name, (command, _) in command_parsers().items():
        sub.add_parser(name, parents=[command], description=COMMAND_HELP.get(name),
                       epilog=TUN_SEND if name == "send" else None)
    sub.add_parser("maps", description="BPF maps of the attached programs.")
    maps = sub.add_parser("map", description="One BPF map.")
    actions = maps.add_subparsers(dest="action", metavar="ACTION", title="actions")
    dump = actions.add_parser("dump", help="keys and values of one map",
                              description="Keys and values of one map.")
    dump.add_argument("name", metavar="NAME")
    engine = sub.add_parser("bpf-engine", description="Show or switch the BPF engine for programs "
                            "loaded afterwards (tracesim mount --bpf-engine sets the first).")
    engine.add_argument("engine", nargs="?", choices=("jit", "interp", "native", "auto"))
    return p


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and ("-h" in argv[1:] or "--help" in argv[1:]):
        parser().parse_args(argv)         # prints the help asked for and exits 0
    if len(argv) < 2 or argv[0] in ("-h", "--help"):
        print(USAGE, end="", file=sys.stdout if argv[:1] in (["-h"], ["--help"]) else sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    mountpoint, command = argv[0], argv[1:]
    try:
        status, text = request(mountpoint, command)
    except CtlError as exc:
        print(f"tracesim ctl: {exc}", file=sys.stderr)
        return 1
    (sys.stdout if status == 0 else sys.stderr).write(text)
    return status
