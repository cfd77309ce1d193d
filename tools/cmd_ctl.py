"""``tracesim ctl MOUNTPOINT COMMAND [ARGS...]`` — drive the modelled kernel behind a mount.

The words after the mountpoint go unchanged to the mount process over its control socket
(``tools/ctl_socket.py``); the mount runs them (``kernel_model.control.run_command``, and the BPF
map commands ``maps`` / ``map dump NAME``) and sends back the exit status and the text to print.
"""
from __future__ import annotations

import sys

from tools.ctl_socket import CtlError, request

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
"""


def main(argv: list[str]) -> int:
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
