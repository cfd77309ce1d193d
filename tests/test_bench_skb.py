"""``tracesim bench skb`` at a small size: phases, JSON shape, table, plot, and --mount."""
from __future__ import annotations

import json
import re

from tracesim.bench import skb

from tests.fuse_helpers import mounted, need_fuse, tracesim

PHASES = ["off", "enabled", "predicate", "bpf_jit", "bpf_interp", "off_again"]


def test_json_output(capsys):
    assert skb.run(["--iterations", "200", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"phases", "iterations", "spread", "ns_per_iteration", "ratios"} <= set(result)
    assert result["iterations"] == 200 and "rounds" not in result   # one repeat: no rounds
    assert result["spread"] == {}               # one repeat: no spread to report
    assert list(result["phases"]) == PHASES
    assert all(isinstance(v, (int, float)) and v > 0 for v in result["phases"].values())


def test_table_and_dmesg_lines(capsys, tmp_path):
    png = tmp_path / "skb.png"
    assert skb.run(["--iterations", "300", "--repeat", "2", "--max-repeat", "2",
                    "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    lines = re.findall(r"^\[ *(\w+)\] 300 skb alloc/free \d+ \(usecs\)$", out, re.M)
    assert lines == PHASES * 2
    assert "2 sequence(s) run (at most 2)" in out and "RFC shape: " in out
    for phase in PHASES:
        assert re.search(rf"^{phase} +\d+ +\d+\.\d\d ", out, re.M)
    assert "off_again/off = " in out and "(bpf_jit-off)/(predicate-off) = " in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_tree_is_left_clean():
    fs = skb.InProcess()
    skb.measure(fs, 100, 1)
    assert fs.read("kprobe_events") == ""
    assert fs.control(["bpf-engine"]) == (0, "jit\n")
    assert fs.system.bpf.attached() == []


def test_bench_through_a_mount(tmp_path):
    need_fuse(tmp_path)
    with mounted(tmp_path / "mnt") as mnt:
        done = tracesim("bench", "skb", "--iterations", "200", "--json", "--mount", str(mnt))
        result = json.loads(done.stdout)
        assert list(result["phases"]) == PHASES
        assert (mnt / "kprobe_events").read_text() == ""


def test_clock_choice(capsys):
    fs = skb.InProcess()
    try:
        for clock in ("cpu", "wall"):
            status, text = fs.control(["skb-bench", "100", "--clock", clock])
            assert status == 0 and re.fullmatch(r"100 skb alloc/free \d+ \(usecs\)\n", text)
        status, text = fs.control(["skb-bench", "100", "--clock", "sundial"])
        assert status == 2 and "invalid choice" in text
    finally:
        fs.close()
    assert skb.run(["--iterations", "200", "--repeat", "2", "--clock", "wall"]) == 0
    out = capsys.readouterr().out
    assert "wall time" in out and "within each repeat: off_again/off " in out
