"""Benchmarks repeat until their runs agree within 5 % (bench/common.py), up to a cap."""
from __future__ import annotations

import json

from tracesim.bench import common, skb


def samples(values):
    it = iter(values)
    return lambda: next(it)


def test_steady_runs_stop_at_repeat():
    assert common.sample_until_steady(samples([100, 101, 102, 500]), 3) == [100, 101, 102]


def test_a_slow_run_is_outvoted_by_more_runs():
    taken = common.sample_until_steady(samples([100, 180, 101, 102, 900]), 3)
    assert taken == [100, 180, 101, 102]            # one more run, then three agree
    assert common.steady_figure(taken, 3) == (101, 0.0198)


def test_the_cap_stops_an_unsteady_bench():
    taken = common.sample_until_steady(samples([100, 200, 300, 400, 500, 600, 700]), 2,
                                       max_rounds=5)
    assert len(taken) == 5 and not common.steady(taken, 2)


def test_skb_json_reports_rounds_and_the_rfc_shape(capsys):
    assert skb.run(["--iterations", "200", "--repeat", "2", "--max-repeat", "3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rounds"]["kept"] == 2 and 2 <= doc["rounds"]["run"] <= 3
    assert doc["rounds"]["max"] == 3 and isinstance(doc["rounds"]["steady"], bool)
    assert set(doc["ratios"]) == set(skb.PHASES) and doc["ratios"]["off"] == 1.0
    assert set(doc["targets_met"]) == set(skb.RFC_SHAPE) | {"bpf_over_predicate_overhead"}
    assert doc["ns_per_iteration"]["off"] > 0


def test_skb_opcode_counts_are_per_phase(capsys):
    from tracesim.bench import skb_opcodes
    assert skb_opcodes.main(["--pairs", "5", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc) == list(skb_opcodes.PHASES) and doc["off"]["ratio"] == 1.0
    assert doc["enabled"]["opcodes"] > doc["off"]["opcodes"]       # recording costs something
