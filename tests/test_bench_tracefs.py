"""``tracesim bench tracefs`` at a small size through a real mount: the JSON keys and that what
it reports is consistent (no timing assertions: rates live in the benchmark itself)."""
from __future__ import annotations

import json

import pytest
from tracesim.bench import tracefs as bench

from tests.fuse_helpers import need_fuse

pytestmark = pytest.mark.fuse


def test_json_output(capsys, tmp_path_factory):
    need_fuse(tmp_path_factory.getbasetemp())
    assert bench.run(["--seconds", "0.5", "--drain-packets", "300", "--events",
                      "net:netif_receive_skb", "--repeat", "1",
                      "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["drain_events"] == 300                   # one netif_receive_skb per packet
    assert result["raw_drain_events"] == 300
    assert len(result["drain_runs"]) >= 1 and len(result["raw_runs"]) >= 1
    assert result["drain_events_per_s"] > 0 and result["raw_events_per_s"] > 0
    for key in ("drain_events_per_mount_cpu_s", "raw_events_per_mount_cpu_s"):
        assert result[key] is None or result[key] > 0      # None: under one clock tick
    assert set(result["targets"]) == set(result["targets_met"]) == set(result["spread"]) == \
        {"drain_events_per_s", "raw_events_per_s"}
    assert result["events_per_s"] > 0 and result["produced_events_per_s"] > 0
    assert result["limited_by"] in ("producer", "consumer")
    assert result["mount_cpu_s"] > 0 and result["events_per_mount_cpu_s"] > 0
    assert result["latency_samples"] > 0 and result["latency_ms_median"] is not None
    assert result["workload"] == "flood" and result["events"] == "net:netif_receive_skb"
