"""``tracesim bench compare A.json B.json``: two ``--json`` outputs of one benchmark side by side.

Every number found under the same key path in both documents is printed with its ratio B/A;
a path present in only one shows ``-`` for the other. The ``machine`` blocks are printed first,
since a ratio between two machines (or two loads) says as much about them as about the code."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tracesim.bench.common import machine_line

Leaves = dict[str, float]


SUMMARY = "two --json outputs of one benchmark side by side, with ratios"
DESCRIPTION = "Print two JSON outputs of the same benchmark side by side, with the ratio B/A of every figure."


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The command line, on ``tracesim bench``'s sub-parser as on the stand-alone one."""
    p.add_argument("a", metavar="A.json", help="the baseline (output of tracesim bench NAME --json)")
    p.add_argument("b", metavar="B.json", help="the run to compare with the baseline")
    return p


def parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="tracesim bench compare", description=DESCRIPTION))


def numeric_leaves(doc: Any, prefix: str = "") -> Leaves:
    """Every number in ``doc`` by its dotted key path (list items by index); booleans and the
    ``machine`` block are not figures."""
    found: Leaves = {}
    if isinstance(doc, dict):
        items = [(str(k), v) for k, v in doc.items() if not (prefix == "" and k == "machine")]
    elif isinstance(doc, list):
        items = [(str(i), v) for i, v in enumerate(doc)]
    else:
        if isinstance(doc, (int, float)) and not isinstance(doc, bool):
            found[prefix] = float(doc)
        return found
    for key, value in items:
        found.update(numeric_leaves(value, f"{prefix}.{key}" if prefix else key))
    return found


def _load(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise ValueError(f"{path}: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a JSON document ({e})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not the JSON object a benchmark's --json prints")
    return doc


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}"


def table(a: dict, b: dict, name_a: str, name_b: str) -> list[str]:
    """The comparison as text lines: the two machines, then one aligned row per key path."""
    left, right = numeric_leaves(a), numeric_leaves(b)
    keys = list(left) + [k for k in right if k not in left]
    lines = [f"A: {name_a}", "   " + (machine_line(a["machine"]) if isinstance(a.get("machine"), dict)
                                     else "machine: not recorded"),
             f"B: {name_b}", "   " + (machine_line(b["machine"]) if isinstance(b.get("machine"), dict)
                                     else "machine: not recorded"), ""]
    rows = [("key", "A", "B", "B/A")]
    for key in keys:
        x, y = left.get(key), right.get(key)
        ratio = f"{y / x:.3f}" if x is not None and y is not None and x != 0 else "-"
        rows.append((key, _number(x), _number(y), ratio))
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        lines.append(f"{r[0]:<{width[0]}}  {r[1]:>{width[1]}}  {r[2]:>{width[2]}}  {r[3]:>{width[3]}}")
    return lines


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        a, b = _load(args.a), _load(args.b)
    except ValueError as e:
        print(f"tracesim bench compare: {e}", file=sys.stderr)
        return 2
    if not set(numeric_leaves(a)) & set(numeric_leaves(b)):
        print(f"tracesim bench compare: {args.a} and {args.b} share no figure: "
              "not outputs of the same benchmark?", file=sys.stderr)
        return 2
    print("\n".join(table(a, b, args.a, args.b)))
    return 0
