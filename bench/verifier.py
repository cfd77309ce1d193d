"""``tracesim bench verifier [--json] [--repeat N]``: how fast the verifier proves programs safe.

Three programs: a 4,096-slot straight-line kprobe program (loads, ALU, spills and fills), the RSS
Toeplitz hash over 36 input bytes written as two nested loops (the verifier explores them
iteration by iteration, pruning the data-dependent branches), and a socket-filter packet parser
(Ethernet/VLAN, IPv4 with options or IPv6, TCP/UDP ports, with bounds checks).  Reports processed
instructions per second and wall time per program (median of ``--repeat`` runs; ``spread`` their
(max-min)/median per timing).
Targets: >= 100,000 processed insns/s; the Toeplitz loop program under 2 s.

Reported apart (not in the overall rate): the whole RSS steering program, tools/examples/rss.bpf.c
built by ``tracesim cc`` (IPv6 extension headers x options loops, Toeplitz loop), whose time is
mostly pruning; target well under 5 s.  And the two worst cases of issue #13: the 4-insn loop
``r0 = 0; r0 += 1; if r0 != 0 goto -2; exit`` rejected at the kernel's 1M processed-insn limit
(``limit_1m_seconds``, target <= 2 s) and a 130,000-insn straight-line program
(``straight_line_130k_seconds``).  Both also give the process CPU time (``*_cpu_seconds``): on
a shared machine it says what the wall time would be without the other load.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from types import SimpleNamespace

from tracesim.bench.common import progress_bar, spread, spread_line
from tracesim.filters.bpf.toolchain.asm import assemble
from tracesim.filters.bpf.verifier import verify

BPF_MAP_TYPE_ARRAY = 2


def straight_line_program(slots: int = 4096) -> str:
    """Blocks of ctx loads, ALU on known and unknown values, a spill and a fill."""
    block = [
        "r2 = *(u64 *)(r1 + {ctx})",
        "r3 += r2",
        "r3 ^= 0x5bd1e995",
        "r4 = r3",
        "r4 &= 0xff",
        "r5 += 7",
        "r5 *= 3",
        "*(u64 *)(r10 - {slot}) = r3",
        "r6 = *(u64 *)(r10 - {slot})",
        "r6 >>= 3",
        "w7 = w6",
        "r7 |= r4",
    ]
    lines = ["r3 = 0", "r5 = 1", "r7 = 0"]
    i = 0
    while len(lines) + len(block) <= slots - 2:
        lines += [b.format(ctx=(i % 21) * 8, slot=8 + (i % 32) * 8) for b in block]
        i += 1
    while len(lines) < slots - 2:
        lines.append("r5 += 1")
    return "\n".join(lines + ["r0 = r7", "exit"]) + "\n"


# Toeplitz hash (Microsoft RSS) of 36 bytes (IPv6 src, dst, ports) with a 40-byte key held in a
# one-element array map (.rodata-like); the input is read with bpf_probe_read_kernel.
TOEPLITZ = """
    r6 = r1
    r1 = r10
    r1 += -48
    r2 = 36
    r3 = *(u64 *)(r6 + 112)
    call 113
    ld_pseudo r9, 2, 0, 0
    r0 = 0
    r7 = 0
outer:
    r2 = r10
    r2 += -48
    r2 += r7
    r3 = *(u8 *)(r2 + 0)
    r2 = r9
    r2 += r7
    r4 = *(u8 *)(r2 + 0)
    r4 <<= 8
    r5 = *(u8 *)(r2 + 1)
    r4 |= r5
    r4 <<= 8
    r5 = *(u8 *)(r2 + 2)
    r4 |= r5
    r4 <<= 8
    r5 = *(u8 *)(r2 + 3)
    r4 |= r5
    r4 <<= 8
    r5 = *(u8 *)(r2 + 4)
    r4 |= r5
    r8 = 0
inner:
    r1 = 7
    r1 -= r8
    r2 = r3
    r2 >>= r1
    r2 &= 1
    if r2 == 0 goto skip
    r1 = 8
    r1 -= r8
    r2 = r4
    r2 >>= r1
    r2 &= 0xffffffff
    r0 ^= r2
skip:
    r8 += 1
    if r8 < 8 goto inner
    r7 += 1
    if r7 < 36 goto outer
    exit
"""

# Socket filter: copy up to 78 bytes of headers to the stack, then parse them with checks.
PACKET_PARSER = """
    r6 = r1
    r2 = 0
    r3 = r10
    r3 += -80
    r4 = 78
    call 26
    if r0 != 0 goto drop
    r7 = 12
    r1 = *(u16 *)(r10 - 68)
    if r1 != 0x81 goto no_vlan
    r7 = 16
    r1 = *(u16 *)(r10 - 64)
no_vlan:
    r8 = r7
    r8 += 2
    if r1 == 0x8 goto ipv4
    if r1 == 0xdd86 goto ipv6
    goto drop
ipv4:
    r2 = r10
    r2 += -80
    r2 += r8
    r3 = *(u8 *)(r2 + 0)
    r4 = r3
    r4 >>= 4
    if r4 != 4 goto drop
    r3 &= 15
    r3 <<= 2
    if r3 < 20 goto drop
    r5 = *(u8 *)(r2 + 9)
    r8 += r3
    goto l4
ipv6:
    r2 = r10
    r2 += -80
    r2 += r8
    r5 = *(u8 *)(r2 + 6)
    r8 += 40
l4:
    if r5 == 6 goto ports
    if r5 == 17 goto ports
    r0 = 1
    exit
ports:
    if r8 > 74 goto drop
    r2 = r10
    r2 += -80
    r2 += r8
    r3 = *(u8 *)(r2 + 0)
    r4 = *(u8 *)(r2 + 1)
    r3 <<= 8
    r3 |= r4
    r4 = *(u8 *)(r2 + 2)
    r0 = *(u8 *)(r2 + 3)
    r4 <<= 8
    r0 |= r4
    r0 ^= r3
    r0 |= 1
    exit
drop:
    r0 = 0
    exit
"""

KEY_MAP = SimpleNamespace(map_type=BPF_MAP_TYPE_ARRAY, key_size=4, value_size=40, max_entries=1,
                          name=".rodata")


def programs() -> dict[str, dict]:
    return {
        "straight_line_4096": dict(insns=assemble(straight_line_program()), prog_type="kprobe",
                                   maps=[]),
        "toeplitz_loop_36": dict(insns=assemble(TOEPLITZ), prog_type="kprobe", maps=[KEY_MAP]),
        "packet_parser": dict(insns=assemble(PACKET_PARSER), prog_type="socket_filter", maps=[]),
    }


LOOP_TO_LIMIT = "r0 = 0\nr0 += 1\nif r0 != 0 goto -2\nexit\n"


def rss_program() -> dict:
    """The RSS steering program as the loader verifies it (object built by tracesim cc)."""
    from tracesim.filters.bpf.runtime.maps import create_map
    from tracesim.filters.bpf.toolchain import elf
    from tracesim.tools.rss import ebpf_rss
    obj = elf.load_object(ebpf_rss.build_object("tracesim")[0])
    maps = [create_map(m.name, m.type, m.key_size, m.value_size, m.max_entries, m.flags)
            for m in obj.maps]
    return dict(insns=obj.program(ebpf_rss.PROGRAM_NAME).insns, prog_type="socket_filter",
                maps=maps)


def measure(prog: dict, repeat: int, spreads: dict[str, float] | None = None, key: str = "") -> dict:
    """The program verified ``repeat`` times: median wall time; its spread goes to ``spreads[key]``."""
    times = []
    res = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = verify(prog["insns"], prog_type=prog["prog_type"], maps=prog["maps"], log_level=1)
        times.append(time.perf_counter() - t0)
        if not res.ok:
            raise SystemExit(f"benchmark program rejected: {res.error}\n{res.log}")
    wall = statistics.median(times)
    if spreads is not None:
        spreads[key] = spread(times)
    return {"slots": len(prog["insns"]), "processed": res.insn_processed,
            "total_states": res.total_states, "wall_s": round(wall, 4),
            "insns_per_s": round(res.insn_processed / wall)}


def measure_limit(repeat: int, spreads: dict[str, float]) -> dict:
    """The looping program, rejected once its walk passes 1,000,000 processed insns."""
    insns = assemble(LOOP_TO_LIMIT)
    walls, cpus = [], []
    res = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        res = verify(insns, prog_type="kprobe", log_level=1, log_size=16 * 1024)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        if res.ok or "BPF program is too large" not in (res.error or ""):
            raise SystemExit(f"the loop should hit the complexity limit: {res.error}")
    spreads["limit_1m.wall_s"] = spread(walls)
    return {"processed": res.insn_processed, "total_states": res.total_states,
            "wall_s": round(statistics.median(walls), 4),
            "cpu_s": round(statistics.median(cpus), 4), "error": res.error}


def measure_cpu(prog: dict, repeat: int, spreads: dict[str, float], key: str) -> dict:
    """``measure`` plus the median process CPU time."""
    cpus = []
    d = None
    for _ in range(repeat):
        c0 = time.process_time()
        d = measure(prog, 1)
        cpus.append((time.process_time() - c0, d["wall_s"]))
    walls = sorted(w for _, w in cpus)
    spreads[key] = spread(walls)
    d["wall_s"] = round(statistics.median(walls), 4)
    d["cpu_s"] = round(statistics.median(c for c, _ in cpus), 4)
    d["insns_per_s"] = round(d["processed"] / d["wall_s"])
    return d


def run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tracesim bench verifier")
    p.add_argument("--json", action="store_true")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    progs = {**programs(), "rss_steering": rss_program()}
    detail = {}
    spreads: dict[str, float] = {}
    with progress_bar(len(progs), "program", "verifier bench", args.json) as bar:
        for name, prog in progs.items():
            bar.set_postfix_str(name)
            detail[name] = measure(prog, args.repeat, spreads, f"programs.{name}.wall_s")
            bar.update(1)
    rss = detail.pop("rss_steering")       # reported apart, not in the overall rate
    total_processed = sum(d["processed"] for d in detail.values())
    total_wall = sum(d["wall_s"] for d in detail.values())
    spreads["rss_steering.wall_s"] = spreads.pop("programs.rss_steering.wall_s")
    limit = measure_limit(args.repeat, spreads)
    straight = measure_cpu(dict(insns=assemble(straight_line_program(130_000)),
                                prog_type="kprobe", maps=[]), args.repeat, spreads,
                           "straight_line_130k.wall_s")
    out = {"processed_insns_per_s": round(total_processed / total_wall),
           "toeplitz_loop_s": detail["toeplitz_loop_36"]["wall_s"], "programs": detail,
           "rss_steering_s": rss["wall_s"], "rss_steering": rss,
           "limit_1m_seconds": limit["wall_s"], "limit_1m_cpu_seconds": limit["cpu_s"],
           "limit_1m": limit,
           "straight_line_130k_seconds": straight["wall_s"],
           "straight_line_130k_cpu_seconds": straight["cpu_s"], "straight_line_130k": straight,
           "spread": spreads if args.repeat > 1 else {}}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{'program':<22}{'slots':>7}{'processed':>11}{'states':>8}{'wall s':>9}{'insns/s':>10}")
    for name, d in [*detail.items(), ("rss_steering (apart)", rss),
                    ("straight_line_130k", straight)]:
        print(f"{name:<22}{d['slots']:>7}{d['processed']:>11}{d['total_states']:>8}"
              f"{d['wall_s']:>9.3f}{d['insns_per_s']:>10}")
    print(f"overall: {out['processed_insns_per_s']} processed insns/s "
          f"(target >= 100000); Toeplitz loop {out['toeplitz_loop_s']:.3f} s (target < 2 s); "
          f"RSS steering {rss['wall_s']:.3f} s (target < 5 s)")
    print(f"limit_1m_seconds: {limit['wall_s']:.3f} (cpu {limit['cpu_s']:.3f}; target <= 2 s): "
          f"the 4-insn loop rejected, {limit['error']}")
    print(f"straight_line_130k_seconds: {straight['wall_s']:.3f} (cpu {straight['cpu_s']:.3f})")
    print(spread_line(out["spread"]))
    return 0
