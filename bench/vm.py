"""``tracesim bench vm [--repeat R] [--json]``: speed of the eBPF interpreter and JIT.

Two programs, each run on the same context by both engines:

* ``toeplitz``: the RSS Toeplitz hash (Microsoft's default key) over 12 bytes of IPv4 addresses and
  ports, fully unrolled and loop-free: per input bit ``if (byte & bit) hash ^= key window``.  Its
  result is checked against the published verification vector.
* ``devname``: the 2013 RFC's filter reduced to its core, a 4-byte device-name compare
  (``*(u32 *)(ctx + 8) == "eth5"``), against a hand-written Python function doing the same check
  on the same bytes (``ctx[8:12] == b"eth5"``).

``interp_minsn_per_s`` / ``jit_minsn_per_s`` are the Toeplitz figures (instructions executed per
second, in millions); ``jit_vs_handwritten`` is the JIT'd devname filter's time per call divided by
the hand-written function's.  Every figure is the median of ``--repeat`` timed batches.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

from filters.bpf.asm import assemble
from filters.bpf.interp import Interpreter
from filters.bpf.jit import compile_program
from filters.bpf.program import Program, load_program

RSS_KEY = bytes.fromhex("6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c"
                        "6a42b73bbeac01fa")
# First IPv4 vector: src 66.9.149.187:2794 -> dst 161.142.100.80:1766, hash 0x51ccc178.
TOEPLITZ_INPUT = bytes([66, 9, 149, 187, 161, 142, 100, 80]) + (2794).to_bytes(2, "big") \
    + (1766).to_bytes(2, "big")
TOEPLITZ_EXPECTED = 0x51CCC178
DEVNAME_CTX = bytes(8) + b"eth5" + bytes(12)


def toeplitz_source(key: bytes = RSS_KEY, nbytes: int = 12) -> str:
    """LLVM-syntax assembly of the unrolled Toeplitz hash over ``nbytes`` context bytes."""
    key_bits = int.from_bytes(key, "big")
    total = len(key) * 8
    lines = ["w0 = 0"]
    for i in range(nbytes):
        lines.append(f"r2 = *(u8 *)(r1 + {i})")
        for j in range(8):
            bit = i * 8 + j
            window = (key_bits >> (total - 32 - bit)) & 0xFFFFFFFF
            lines += ["r3 = r2", f"r3 &= {0x80 >> j}", "if r3 == 0 goto +1",
                      f"w0 ^= {window - (1 << 32) if window >> 31 else window}"]
    lines.append("exit")
    return "\n".join(lines)


DEVNAME_SOURCE = """
    r2 = *(u32 *)(r1 + 8)
    if r2 != 0x35687465 goto miss
    r0 = 1
    exit
miss:
    r0 = 0
    exit
"""


def handwritten_devname(ctx: bytes) -> int:
    return 1 if ctx[8:12] == b"eth5" else 0


def _per_call_ns(fn: Callable, arg, calls: int, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn(arg)
        samples.append((time.perf_counter_ns() - start) / calls)
    return statistics.median(samples)


def measure_program(program: Program, ctx: bytes, expected: int, repeat: int,
                    interp_calls: int, jit_calls: int) -> dict:
    interp = Interpreter(program)
    jit = compile_program(program)
    got = (interp(ctx), jit(ctx))
    if got != (expected, expected):
        raise SystemExit(f"bench vm: {program.name} returned {got}, expected {expected:#x}")
    insns = interp.executed
    interp_ns = _per_call_ns(interp, ctx, interp_calls, repeat)
    jit_ns = _per_call_ns(jit.entry, ctx, jit_calls, repeat)
    return {"insns_per_run": insns, "interp_ns_per_run": round(interp_ns, 1),
            "jit_ns_per_run": round(jit_ns, 1),
            "interp_minsn_per_s": round(insns / interp_ns * 1e3, 3),
            "jit_minsn_per_s": round(insns / jit_ns * 1e3, 3),
            "jit_speedup": round(interp_ns / jit_ns, 1)}


def measure(repeat: int) -> dict:
    toeplitz = load_program(assemble(toeplitz_source()), name="toeplitz", ctx_size=12)
    devname = load_program(assemble(DEVNAME_SOURCE), name="devname", ctx_size=len(DEVNAME_CTX))
    programs = {
        "toeplitz": measure_program(toeplitz, TOEPLITZ_INPUT, TOEPLITZ_EXPECTED, repeat, 200, 5000),
        "devname": measure_program(devname, DEVNAME_CTX, 1, repeat, 20000, 200000),
    }
    jit = compile_program(devname)
    assert handwritten_devname(DEVNAME_CTX) == jit.entry(DEVNAME_CTX) == 1
    hand_ns = _per_call_ns(handwritten_devname, DEVNAME_CTX, 200000, repeat)
    jit_ns = _per_call_ns(jit.entry, DEVNAME_CTX, 200000, repeat)
    programs["devname"]["handwritten_ns_per_call"] = round(hand_ns, 1)
    programs["devname"]["jit_ns_per_call"] = round(jit_ns, 1)
    return {
        "interp_minsn_per_s": programs["toeplitz"]["interp_minsn_per_s"],
        "jit_minsn_per_s": programs["toeplitz"]["jit_minsn_per_s"],
        "jit_vs_handwritten": round(jit_ns / hand_ns, 2),
        "programs": programs,
    }


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tracesim bench vm")
    parser.add_argument("--repeat", type=int, default=7, help="timed batches per figure (median)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = measure(max(1, args.repeat))
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"interpreter      {result['interp_minsn_per_s']:8.2f} M insns/s (toeplitz)")
    print(f"jit              {result['jit_minsn_per_s']:8.2f} M insns/s (toeplitz)")
    print(f"jit/handwritten  {result['jit_vs_handwritten']:8.2f} (devname filter, time per call)")
    for name, row in result["programs"].items():
        print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in row.items()))
    return 0
