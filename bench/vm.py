"""``tracesim bench vm [--repeat R] [--json]``: speed of the eBPF interpreter, the Python JIT and
the native tier (LLVM machine code; figures ``native_*``).  Each engine is timed through the entry
point a caller that binds the environment once uses: ``entry(ctx)`` (the JIT's generated function,
the native tier's builtin trampoline) and the interpreter's ``__call__``.

Programs, each run on the same context by every engine:

* ``toeplitz``: the RSS Toeplitz hash (Microsoft's default key) over 12 bytes of IPv4 addresses and
  ports, fully unrolled and loop-free: per input bit ``if (byte & bit) hash ^= key window``.  Its
  result is checked against the published verification vector.
* ``devname``: the 2013 RFC's filter reduced to its core, a 4-byte device-name compare
  (``*(u32 *)(ctx + 8) == "eth5"``), against a hand-written Python function doing the same check
  on the same bytes (``ctx[8:12] == b"eth5"``).
* ``toeplitz_loop``: the same hash written as loops, the way the RSS steering program computes it
  (bytes outer, bits inner, the key window shifted along), with the key after the input in the
  context; checked against the same vector.
* ``tlv_parser``: a parser of type-length-value headers with a nested loop over each header's
  option bytes (a loop with its test at the top and an unconditional jump back, inside a loop
  left by a forward jump or by falling out), hashing the options; checked against Python.

``programs.<name>.native_vs_interp`` is a program's interpreter time per run over the native
tier's (the loop programs are the ones the native tier is for).  ``interp_minsn_per_s`` /
``jit_minsn_per_s`` are the Toeplitz figures (instructions executed per second, in millions);
``jit_vs_handwritten`` is the JIT'd devname filter's time per call divided by the hand-written
function's.  Every figure is the median of ``--repeat`` timed batches; ``spread`` holds each
timing's (max-min)/median over them, by ``program.figure``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from tracesim.bench.common import spread, spread_line
from tracesim.filters.bpf.runtime.program import Program, load_program
from tracesim.filters.bpf.toolchain.asm import assemble
from tracesim.filters.bpf.vm.interp import Interpreter
from tracesim.filters.bpf.vm.jit import compile_program
from tracesim.filters.bpf.vm.native import compile_native

RSS_KEY = bytes.fromhex("6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c"
                        "6a42b73bbeac01fa")
# First IPv4 vector: src 66.9.149.187:2794 -> dst 161.142.100.80:1766, hash 0x51ccc178.
TOEPLITZ_INPUT = bytes([66, 9, 149, 187, 161, 142, 100, 80]) + (2794).to_bytes(2, "big") \
    + (1766).to_bytes(2, "big")
TOEPLITZ_EXPECTED = 0x51CCC178
DEVNAME_CTX = bytes(8) + b"eth5" + bytes(12)

# Context: 12 input bytes, then the 40-byte key.  r3: the 32-bit key window, r4: the next key
# byte whose top bit shifts in, r2: the input byte whose bits are tested from the top.
TOEPLITZ_LOOP_SOURCE = """
    w0 = 0
    r3 = *(u32 *)(r1 + 12)
    r3 = be32 r3
    r6 = 0
byte:
    r7 = r1
    r7 += r6
    r2 = *(u8 *)(r7 + 0)
    r4 = *(u8 *)(r7 + 16)
    w5 = 0
bit:
    r8 = r2
    r8 &= 0x80
    if r8 == 0 goto shift
    w0 ^= w3
shift:
    w3 <<= 1
    r8 = r4
    r8 >>= 7
    w3 |= w8
    w2 <<= 1
    w2 &= 0xff
    w4 <<= 1
    w4 &= 0xff
    w5 += 1
    if w5 < 8 goto bit
    r6 += 1
    if r6 < 12 goto byte
    exit
"""

# Headers of [type, n, n option bytes] until type 0, at most 8 of them; r0 = hash of the options.
TLV_SOURCE = """
    r0 = 0
    r6 = 0
    r9 = 0
header:
    if r9 >= 8 goto done
    r7 = r1
    r7 += r6
    r2 = *(u8 *)(r7 + 0)
    if r2 == 0 goto done
    r3 = *(u8 *)(r7 + 1)
    r4 = 0
option:
    if r4 >= r3 goto next
    r5 = r7
    r5 += r4
    r5 = *(u8 *)(r5 + 2)
    w0 *= 31
    w0 += w5
    r4 += 1
    goto option
next:
    r6 += r3
    r6 += 2
    r9 += 1
    if r6 < 56 goto header
done:
    exit
"""
TLV_CTX = bytes([1, 6, 10, 20, 30, 40, 50, 60,  2, 4, 7, 7, 7, 7,  3, 9] + list(range(9))
                + [4, 2, 0xFF, 0xFE,  5, 8] + list(range(100, 108)) + [6, 3, 1, 2, 3, 0, 0]) \
    + bytes(10)


def tlv_expected(ctx: bytes) -> int:
    """What TLV_SOURCE computes, in Python."""
    h = off = 0
    for _ in range(8):
        if ctx[off] == 0:
            break
        for b in ctx[off + 2:off + 2 + ctx[off + 1]]:
            h = (h * 31 + b) & 0xFFFFFFFF
        off += ctx[off + 1] + 2
        if off >= 56:
            break
    return h


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


def _per_call_ns(fn: Callable, arg, calls: int, repeat: int) -> tuple[float, float]:
    """ns per call, median of ``repeat`` batches, and the batches' spread."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn(arg)
        samples.append((time.perf_counter_ns() - start) / calls)
    return statistics.median(samples), spread(samples)


def measure_program(program: Program, ctx: bytes, expected: int, repeat: int,
                    interp_calls: int, jit_calls: int, spreads: dict[str, float]) -> dict:
    """The program's figures; each timing's spread goes into ``spreads`` as ``name.figure``."""
    interp = Interpreter(program)
    jit = compile_program(program)
    native = compile_native(program)
    got = (interp(ctx), jit(ctx), native(ctx))
    if got != (expected, expected, expected):
        raise SystemExit(f"bench vm: {program.name} returned {got}, expected {expected:#x}")
    insns = interp.executed
    interp_ns, spreads[f"{program.name}.interp_ns_per_run"] = _per_call_ns(interp, ctx, interp_calls, repeat)
    jit_ns, spreads[f"{program.name}.jit_ns_per_run"] = _per_call_ns(jit.entry, ctx, jit_calls, repeat)
    native_ns, spreads[f"{program.name}.native_ns_per_run"] = _per_call_ns(native.entry, ctx,
                                                                            jit_calls * 4, repeat)
    return {"insns_per_run": insns, "interp_ns_per_run": round(interp_ns, 1),
            "jit_ns_per_run": round(jit_ns, 1), "native_ns_per_run": round(native_ns, 1),
            "interp_minsn_per_s": round(insns / interp_ns * 1e3, 3),
            "jit_minsn_per_s": round(insns / jit_ns * 1e3, 3),
            "native_minsn_per_s": round(insns / native_ns * 1e3, 3),
            "jit_speedup": round(interp_ns / jit_ns, 1),
            "native_vs_interp": round(interp_ns / native_ns, 1)}


def measure(repeat: int) -> dict:
    toeplitz = load_program(assemble(toeplitz_source()), name="toeplitz", ctx_size=12)
    devname = load_program(assemble(DEVNAME_SOURCE), name="devname", ctx_size=len(DEVNAME_CTX))
    toeplitz_loop = load_program(assemble(TOEPLITZ_LOOP_SOURCE), name="toeplitz_loop",
                                 ctx_size=len(TOEPLITZ_INPUT) + len(RSS_KEY))
    tlv = load_program(assemble(TLV_SOURCE), name="tlv_parser", ctx_size=len(TLV_CTX))
    spreads: dict[str, float] = {}
    programs = {
        "toeplitz": measure_program(toeplitz, TOEPLITZ_INPUT, TOEPLITZ_EXPECTED, repeat, 200, 5000,
                                    spreads),
        "devname": measure_program(devname, DEVNAME_CTX, 1, repeat, 20000, 200000, spreads),
        "toeplitz_loop": measure_program(toeplitz_loop, TOEPLITZ_INPUT + RSS_KEY, TOEPLITZ_EXPECTED,
                                         repeat, 20, 200, spreads),
        "tlv_parser": measure_program(tlv, TLV_CTX, tlv_expected(TLV_CTX), repeat, 50, 1000, spreads),
    }
    jit = compile_program(devname)
    assert handwritten_devname(DEVNAME_CTX) == jit.entry(DEVNAME_CTX) == 1
    hand_ns, spreads["devname.handwritten_ns_per_call"] = _per_call_ns(handwritten_devname, DEVNAME_CTX,
                                                                        200000, repeat)
    jit_ns, spreads["devname.jit_ns_per_call"] = _per_call_ns(jit.entry, DEVNAME_CTX, 200000, repeat)
    programs["devname"]["handwritten_ns_per_call"] = round(hand_ns, 1)
    programs["devname"]["jit_ns_per_call"] = round(jit_ns, 1)
    return {
        "interp_minsn_per_s": programs["toeplitz"]["interp_minsn_per_s"],
        "jit_minsn_per_s": programs["toeplitz"]["jit_minsn_per_s"],
        "jit_vs_handwritten": round(jit_ns / hand_ns, 2),
        "programs": programs,
        "spread": spreads if repeat > 1 else {},
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
    for name in ("toeplitz_loop", "tlv_parser"):                  # the loop-heavy programs
        print(f"native/interp    {result['programs'][name]['native_vs_interp']:8.1f}x ({name})")
    for name, row in result["programs"].items():
        print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in row.items()))
    print(spread_line(result["spread"]))
    return 0
