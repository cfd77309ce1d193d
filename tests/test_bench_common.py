"""The machine every benchmark reports, and ``tracesim bench compare`` (no timing asserted)."""
from __future__ import annotations

import json

from tracesim.bench.common import machine_info, spread
from tracesim.tools import cli


def test_machine_info_keys_and_types():
    m = machine_info()
    assert isinstance(m["cpu_model"], str) and m["cpu_model"]
    assert isinstance(m["cores"], int) and m["cores"] >= 1
    assert isinstance(m["python"], str) and m["python"].count(".") == 2
    assert isinstance(m["implementation"], str)
    load = m["load_avg_start"]
    assert load is None or (len(load) == 3 and all(isinstance(x, float) for x in load))


def test_spread_is_range_over_median():
    assert spread([10.0, 11.0, 12.0]) == round(2 / 11, 4)
    assert spread([5.0]) == 0.0


def test_a_bench_json_has_the_machine(capsys):
    assert cli.main(["bench", "predicate", "--iterations", "200", "--repeat", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)            # still one JSON document
    assert "rfc_name_eq_eth5_ns" in doc
    assert set(doc["machine"]) >= {"cpu_model", "cores", "python", "load_avg_start", "load_avg_end"}


def test_a_bench_text_ends_with_the_machine(capsys):
    assert cli.main(["bench", "predicate", "--iterations", "200", "--repeat", "1"]) == 0
    last = capsys.readouterr().out.rstrip("\n").splitlines()[-1]
    assert last.startswith("machine: ") and "cores" in last and "at end" in last


def _write(path, doc) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def test_compare_prints_ratios_side_by_side(tmp_path, capsys):
    machine = {"cpu_model": "Test CPU", "cores": 2, "python": "3.11.7", "implementation": "CPython",
               "load_avg_start": [1.0, 1.0, 1.0], "load_avg_end": [2.0, 1.0, 1.0]}
    a = _write(tmp_path / "a.json", {"x_ns": 100.0, "nested": {"y": 4}, "only_a": 1, "flag": True,
                                     "machine": machine})
    b = _write(tmp_path / "b.json", {"x_ns": 50.0, "nested": {"y": 6}, "only_b": 3, "machine": machine})
    assert cli.main(["bench", "compare", a, b]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line and line[0] != " "}
    assert rows["x_ns"] == ["100", "50", "0.500"]
    assert rows["nested.y"] == ["4", "6", "1.500"]
    assert rows["only_a"] == ["1", "-", "-"]
    assert rows["only_b"] == ["-", "3", "-"]
    assert "flag" not in rows and not any(k.startswith("machine") for k in rows)
    assert out.count("machine: Test CPU, 2 cores") == 2


def test_compare_rejects_bad_files(tmp_path, capsys):
    good = _write(tmp_path / "good.json", {"x": 1})
    bad = tmp_path / "bad.json"
    bad.write_text("not json at all\n")
    assert cli.main(["bench", "compare", good, str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.json: not a JSON document" in err and "Traceback" not in err
    assert cli.main(["bench", "compare", good, str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    other = _write(tmp_path / "other.json", {"y": 2})
    assert cli.main(["bench", "compare", good, other]) == 2
    assert "share no figure" in capsys.readouterr().err
