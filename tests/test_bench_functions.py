"""``tracesim bench functions`` at a small size: phases, JSON keys, the table, a clean tree."""
from __future__ import annotations

import json

from tracesim.bench import functions

PHASES = ["off", "function", "function_graph", "off_again"]


def test_json_output(capsys):
    assert functions.run(["--iterations", "100", "--repeat", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["phases"]) == PHASES and list(result["ratios"]) == PHASES
    assert result["iterations"] == 100 and result["ratios"]["off"] == 1.0
    assert all(v > 0 for v in result["phases"].values())
    # __netdev_alloc_skb, __alloc_skb, kmem_cache_alloc_node, kmalloc_reserve, ... per pair
    assert result["entries_per_pair"] >= 8
    assert set(result["targets_met"]) == {"function"}


def test_table(capsys):
    assert functions.run(["--iterations", "100", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    for phase in PHASES:
        assert f"\n{phase} " in out
    assert "function entries per pair" in out and "function/off = " in out


def test_the_tree_is_left_clean():
    fs = functions.InProcess()
    try:
        functions.measure_runs(fs, 50, 1)
        assert fs.read("current_tracer") == "nop\n"
    finally:
        fs.close()
