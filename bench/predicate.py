"""``tracesim bench predicate [--iterations N] [--repeat R] [--json]``.

The cost of one compiled predicate-filter check, ``flt.match(record, cpu, comm)``, for the filters
the 2013 RFC story uses: the text predicate ``name == "eth5"`` on the benchmark's kprobe event
(``name`` a ``__data_loc char[]`` holding ``lo``, so every record is discarded), and a few others
on ``net:netif_receive_skb`` records. Each figure is the median over ``--repeat`` runs of ns per
call (wall time), its ``spread`` the (max-min)/median of those runs; ``empty_call`` is a Python
function with the same signature doing nothing.
"""
from __future__ import annotations

import json
import statistics
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from tracesim.bench.common import iteration_args, spread, spread_line
from tracesim.filters.predicate import compile_filter


@dataclass(frozen=True)
class _Field:
    name: str
    type: str
    offset: int
    size: int
    is_signed: bool


_COMMON = [
    _Field("common_type", "unsigned short", 0, 2, False),
    _Field("common_flags", "unsigned char", 2, 1, False),
    _Field("common_preempt_count", "unsigned char", 3, 1, False),
    _Field("common_pid", "int", 4, 4, True),
]
# p:netdev_alloc __netdev_alloc_skb name=+280(%di):string  (trace_kprobe layout)
KPROBE_FIELDS = _COMMON + [
    _Field("__probe_ip", "unsigned long", 8, 8, False),
    _Field("name", "__data_loc char[]", 16, 4, True),
]
# net:netif_receive_skb, as the 6.18 format file
NETIF_FIELDS = _COMMON + [
    _Field("skbaddr", "void *", 8, 8, False),
    _Field("len", "unsigned int", 16, 4, False),
    _Field("name", "__data_loc char[]", 20, 4, False),
]


def _kprobe_record(dev: bytes) -> bytes:
    name = dev + b"\0"
    head = struct.pack("<HBBiQ", 1, 0, 0, 42, 0xFFFFFFFF81000000)
    return head + struct.pack("<I", 20 | (len(name) << 16)) + name


def _netif_record(length: int, dev: bytes) -> bytes:
    name = dev + b"\0"
    head = struct.pack("<HBBiQI", 2, 0, 0, 42, 0xFFFF888000001000, length)
    return head + struct.pack("<I", 24 | (len(name) << 16)) + name


CASES: list[tuple[str, str, list, bytes]] = [
    ("rfc_name_eq_eth5", 'name == "eth5"', KPROBE_FIELDS, _kprobe_record(b"lo")),
    ("len_gt_and_name_ne", 'len > 10 && name != "eth0"', NETIF_FIELDS, _netif_record(84, b"lo")),
    ("name_glob", 'name ~ "eth*"', NETIF_FIELDS, _netif_record(84, b"eth1")),
    ("common_pid_ne", "common_pid != 0", NETIF_FIELDS, _netif_record(84, b"lo")),
    ("or_of_three", "len < 10 || len > 1000 || CPU == 1", NETIF_FIELDS, _netif_record(84, b"lo")),
]


def _ns_per_call(fn: Callable, record: bytes, iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        fn(record, 0, "swapper/0")
    return (time.perf_counter() - start) * 1e9 / iterations


def measure(iterations: int, repeat: int) -> dict:
    def empty(record: bytes, cpu: int, comm: str) -> bool:
        return True

    result: dict = {"iterations": iterations, "repeat": repeat}
    spreads: dict[str, float] = {}
    samples = [_ns_per_call(empty, b"", iterations) for _ in range(repeat)]
    result["empty_call_ns"] = round(statistics.median(samples), 1)
    spreads["empty_call_ns"] = spread(samples)
    for name, text, fields, record in CASES:
        match = compile_filter(text, fields).match
        samples = [_ns_per_call(match, record, iterations) for _ in range(repeat)]
        result[f"{name}_ns"] = round(statistics.median(samples), 1)
        spreads[f"{name}_ns"] = spread(samples)
    result["spread"] = spreads if repeat > 1 else {}
    return result


def run(argv: list[str]) -> int:
    args = iteration_args("tracesim bench predicate", __doc__, argv)
    result = measure(args.iterations, args.repeat)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"predicate filter match(), {args.iterations} calls, median of {args.repeat}:")
    print(f"  {'empty Python call':28} {result['empty_call_ns']:8.1f} ns")
    for name, text, _, _ in CASES:
        print(f"  {text:28} {result[name + '_ns']:8.1f} ns")
    print(spread_line(result["spread"]))
    return 0
