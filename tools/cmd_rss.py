"""``tracesim rss``: RSS steering with eBPF over a modelled multi-queue TUN device.

Boots a modelled kernel, creates ``tun0`` with N queues, loads and configures the steering
program (``tools/examples/rss.bpf.c``; software RSS when it cannot be loaded or verified), sends
random flows through the device and prints which queue each packet reached.
"""
from __future__ import annotations

import argparse
import random
import time

from tracesim.kernel_model.net import packets
from tracesim.tools.rss import rss_software
from tracesim.tools.rss.ebpf_rss import ENGINES, EbpfRss
from tracesim.tools.rss.rss_software import HASH_ALL, HASH_TYPE_NAMES, INDIRECTION_TABLE_SIZE, RssConfig


def random_frames(count: int, seed: int = 1, ipv6_share: float = 0.3) -> list[bytes]:
    """``count`` frames of distinct random flows: TCP/UDP (some ICMP) over IPv4 and IPv6."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        v6 = rng.random() < ipv6_share
        proto = rng.choices(("tcp", "udp", "icmp"), (6, 3, 1))[0]
        if v6:
            src = packets.addr_text(bytes([0x20, 0x01, 0x0d, 0xb8]) + rng.randbytes(12))
            dst = packets.addr_text(bytes([0x20, 0x01, 0x0d, 0xb8]) + rng.randbytes(12))
        else:
            src = packets.addr_text(bytes([10]) + rng.randbytes(3))
            dst = packets.addr_text(bytes([192, 168]) + rng.randbytes(2))
        flow = packets.Flow(src, dst, proto, rng.randrange(1024, 65536), rng.choice((80, 443, 53, 8080)))
        out.append(packets.flow_frame(flow))
    return out


def parse_hash_types(text: str) -> int:
    """``all`` or a comma list of ipv4,tcpv4,udpv4,ipv6,tcpv6,udpv6,ip_ex,tcp_ex,udp_ex."""
    if text == "all":
        return HASH_ALL
    bits = 0
    for name in text.split(","):
        name = name.strip().lower()
        if name not in HASH_TYPE_NAMES:
            raise argparse.ArgumentTypeError(
                f"unknown hash type {name!r} (all, {', '.join(HASH_TYPE_NAMES)})")
        bits |= HASH_TYPE_NAMES[name]
    return bits


def distribution_text(counts: list[int]) -> str:
    total = sum(counts) or 1
    width = 40
    peak = max(counts) or 1
    lines = ["queue  packets  share"]
    for q, n in enumerate(counts):
        bar = "#" * round(width * n / peak)
        lines.append(f"{q:>5}  {n:>7}  {100 * n / total:5.1f}%  {bar}")
    low = min(counts)
    spread = f"{max(counts) / low:.3f}" if low else "inf"
    lines.append(f"max/min queue load: {spread}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tracesim rss", description=__doc__.splitlines()[0])
    ap.add_argument("--queues", type=int, default=4, help="TUN queues (default 4)")
    ap.add_argument("--packets", type=int, default=2000, help="flows to send, one packet each")
    ap.add_argument("--engine", choices=ENGINES, default="jit")
    ap.add_argument("--compiler", choices=("auto", "tracesim", "clang"), default="auto")
    ap.add_argument("--object", help="a built rss.bpf.o instead of compiling the example")
    ap.add_argument("--software", action="store_true", help="do not load the program")
    ap.add_argument("--no-verify", action="store_true",
                    help="load the program without running tracesim's verifier on it")
    ap.add_argument("--hash-types", type=parse_hash_types, default=HASH_ALL)
    ap.add_argument("--indirections", type=int, default=INDIRECTION_TABLE_SIZE)
    ap.add_argument("--key", help="Toeplitz key, 40 bytes in hex (default: the standard key)")
    ap.add_argument("--seed", type=int, default=1)
    return ap


def main(argv: list[str]) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if not 1 <= args.queues <= 256:
        ap.error("--queues must be 1..256")
    if not 1 <= args.indirections <= INDIRECTION_TABLE_SIZE:
        ap.error(f"--indirections must be 1..{INDIRECTION_TABLE_SIZE}")
    key = rss_software.STANDARD_KEY
    if args.key:
        try:
            key = bytes.fromhex(args.key)
        except ValueError:
            ap.error("--key is not hex")
        if len(key) != rss_software.KEY_SIZE:
            ap.error(f"--key must be {rss_software.KEY_SIZE} bytes")

    from tracesim.kernel_model.kernel import Kernel
    from tracesim.kernel_model.net.tun import tun_device

    kernel = Kernel(cpus=2, clock="real")
    tun = tun_device(kernel, "tun0", args.queues)
    rss = EbpfRss()
    if not args.software:
        rss.load(args.object, engine=args.engine, compiler=args.compiler,
                 verify=not args.no_verify)
    elif args.object:
        ap.error("--object and --software exclude each other")
    else:
        rss.fallback_reason = "--software"
    print(rss.status_line())
    table = [i % args.queues for i in range(INDIRECTION_TABLE_SIZE)]
    config = RssConfig(hash_types=args.hash_types, indirections_len=args.indirections)
    rss.set_all(config, table, key)
    rss.attach(tun)
    frames = random_frames(args.packets, args.seed)
    start = time.perf_counter()
    with kernel.lock, kernel.machine.running(kernel.user_task("tracesim-rss")):
        for frame in frames:
            rss.deliver(frame)
    elapsed = time.perf_counter() - start
    print(f"tun0: {args.queues} queues, {len(frames)} packets of {len(frames)} random flows "
          f"in {elapsed:.2f} s; indirection table {args.indirections} entries (i % {args.queues}), "
          f"hash types {args.hash_types:#x}")
    print(distribution_text(rss.queue_packets))
    return 0
