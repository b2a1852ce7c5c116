"""The ridge-numerics study on the study runner, in its smoke settings: every
case and agent a cell, the tables from the cells, config errors by field."""

from __future__ import annotations

import json

import numpy as np

from experiments.execute import cells
from experiments.studies import ridge_numerics


def test_quick_run_fills_both_tables(tmp_path, capsys):
    out = tmp_path / "out"
    assert ridge_numerics.main(["--quick", "--out", str(out), "--quiet"]) == 0
    records = [json.loads(line) for line in (out / "results.jsonl").open()]
    accuracy = [r for r in records if r["part"] == "accuracy"]
    mushroom = {r["agent"]: r["mistakes"] for r in records if r["part"] == "mushroom"}
    assert [r["case"] for r in accuracy] == [
        "onehot, n=2,000, f=120, scale=1",
        "collinear, n=2,000, f=64, scale=1",
    ]
    # float32 against a float64 solve after 2,000 updates: about 1e-6 here;
    # 1e-4 leaves room for any CPU's rounding and still fails a drifting inverse.
    for r in accuracy:
        assert r["exact_prediction"] < 1e-4 and r["exact_width"] < 1e-4
    assert set(mushroom) == set(ridge_numerics.MUSHROOM_AGENTS.values())
    shipped = np.mean(mushroom["linucb, float32 (shipped)"])
    assert abs(shipped - np.mean(mushroom["linucb, float64"])) <= 0.1 * shipped
    summary = (out / "summary.md").read_text()
    assert "| onehot, n=2,000, f=120, scale=1 |" in summary
    assert "mistakes at T = 500 per seed" in summary
    assert len(list((out / cells.CELLS_DIR).glob("*.json"))) == 5
    assert "computed 5 cell(s)" in capsys.readouterr().out


def test_a_bad_case_is_refused_by_field(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text(
        'study = "ridge_numerics"\n[[cases]]\nkind = "sparse"\nn = 10\nd = 4\n'
    )
    assert ridge_numerics.main(["--config", str(config), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cases[0].kind must be one of" in err and "'sparse'" in err
