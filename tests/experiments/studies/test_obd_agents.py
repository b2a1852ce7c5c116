"""Smoke run of the OBD agent comparison in a subprocess (`--quick`: the first
2,000 events of random/all, random and LinUCB) and the exact replay interval."""

from __future__ import annotations

import json

import numpy as np
import pytest

from envs import obd
from experiments.studies.obd_agents import clopper_pearson
from tests.experiments.modules import run_module


def test_clopper_pearson_golden_values():
    # 0 of 62: the upper bound solves (1 - p)^62 = 0.025.
    low, high = clopper_pearson(0, 62)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 62), rel=1e-9)
    # 5 of 10: the textbook interval 0.1871-0.8129.
    low, high = clopper_pearson(5, 10)
    assert low == pytest.approx(0.18709, abs=1e-5)
    assert high == pytest.approx(0.81291, abs=1e-5)
    assert clopper_pearson(3, 3)[1] == 1.0


@pytest.mark.slow
def test_quick_agent_comparison(tmp_path):
    done = run_module(
        "experiments.studies.obd_agents", "--quick", "--out", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["train_events"] == summary["test_events"] == 1000
    test = obd.load("random", "all").take(np.arange(1000, 2000))
    assert summary["logging_click_rate"] == pytest.approx(test.reward.mean())
    rows = {r["agent"]: r for r in summary["rows"]}
    assert set(rows) == {"random", "linucb"}
    for r in rows.values():
        assert 0 < r["replay_accepted"] < 1000
        assert 0 <= r["replay_clicks"] <= r["replay_accepted"]
        assert r["replay_exact_low"] <= r["replay_value"] <= r["replay_exact_high"]
        assert r["dr_low"] <= r["dr_value"] <= r["dr_high"]
    # The uniform agent is the logging policy: its weights are all 1, so DR is
    # the logged click rate plus mean(q_pi - q(a_i)), a model term of mean zero
    # under uniform logging; the shared model varies little across items here
    # (observed difference 4e-5), allow 5e-4 (a sixth of the rate).
    assert abs(rows["random"]["dr_value"] - summary["logging_click_rate"]) < 5e-4
    assert "| linucb |" in (tmp_path / "summary.md").read_text()
