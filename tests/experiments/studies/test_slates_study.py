"""The slate study (`experiments.studies.slates`) and slate configs on the
platform: `slate_size` taken from the env, the paired gain over the baseline
(golden values), the Markdown table, and a smoke run of `main` (two agents, one
setting, 100 rounds, 2 seeds)."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from bandits.validation import BanditConfigError
from experiments.config.loader import build, load_config, parse_config
from experiments.store import storage
from experiments.studies import slates


def _config(agent: dict) -> dict:
    return {
        "env": {
            "id": "LinearSlate-v0",
            "params": {"num_arms": 6, "dim": 3, "slate_size": 3},
        },
        "run": {"horizon": 10, "seeds": 1},
        "agents": [agent],
    }


def test_slate_size_is_taken_from_the_env():
    experiment = build(parse_config(_config({"name": "top_l_linucb"})))
    assert experiment.agents_by_setting[0][0].slate_size == 3
    assert experiment.kwargs_by_setting[0][0]["slate_size"] == 3
    matching = {"name": "cascade_ucb1", "hyperparameters": {"slate_size": 3}}
    built = build(parse_config(_config(matching)))
    assert built.agents_by_setting[0][0].slate_size == 3


def test_a_slate_size_that_disagrees_with_the_env_is_an_error():
    agent = {"name": "random_slate", "hyperparameters": {"slate_size": 2}}
    with pytest.raises(BanditConfigError) as info:
        build(parse_config(_config(agent)))
    assert str(info.value).startswith(
        "agents[0].hyperparameters.slate_size = 2 does not match the env: "
        "'LinearSlate-v0' shows slates of 3"
    )


@pytest.mark.parametrize("name", ["slates", "slates_rec", "cascading_bandits"])
def test_the_study_configs_are_slate_configs(name):  # slate_transformer: see
    # tests/agents/test_transformer_slate.py (it needs a checkpoint)
    config = load_config(name)
    slates.check(config)
    assert len(config.settings) >= 3


def test_paired_gain_golden():
    """Baseline seeds 0-3 against agent seeds 1-4: seeds 1-3 pair up;
    differences 2, 4, 6: mean 4, t-interval 4 -+ 4.303 * 2 / sqrt(3)."""

    def curves(seeds, finals):
        finals = np.asarray(finals, np.float64)[:, None]
        return storage.Curves(
            seeds=np.asarray(seeds),
            steps=np.asarray([1]),
            cumulative_regret=finals,
            cumulative_reward=finals,
            cumulative_optimal=np.zeros_like(finals, np.int64),
        )

    gain = slates._paired_gain(
        curves([0, 1, 2, 3], [9.0, 10.0, 12.0, 14.0]),
        curves([1, 2, 3, 4], [8.0, 8.0, 8.0, 1.0]),
    )
    half = 4.302652729911275 * 2.0 / np.sqrt(3)
    assert gain["gain_mean"] == pytest.approx(4.0)
    assert gain["gain_low"] == pytest.approx(4.0 - half)
    assert gain["gain_high"] == pytest.approx(4.0 + half)
    assert gain["gain_share"] == pytest.approx(4.0 / 12.0)


def test_regret_at_the_last_stored_step_golden():
    """Curves stored at steps 10, 20, 40: `--early 30` reads step 20 (the last
    stored at or before 30), regrets 1, 2, 3 there: mean 2, t-interval
    2 -+ 4.303 / sqrt(3); before the first stored step there is nothing."""
    regret = np.asarray([[0.5, 1.0, 4.0], [1.0, 2.0, 5.0], [1.5, 3.0, 6.0]])
    curves = storage.Curves(
        seeds=np.arange(3),
        steps=np.asarray([10, 20, 40]),
        cumulative_regret=regret,
        cumulative_reward=regret,
        cumulative_optimal=np.zeros_like(regret, np.int64),
    )
    early = slates._regret_at(curves, 30)
    half = 4.302652729911275 / np.sqrt(3)
    assert early["early_step"] == 20
    assert early["early_regret_mean"] == pytest.approx(2.0)
    assert early["early_regret_low"] == pytest.approx(2.0 - half)
    assert early["early_regret_high"] == pytest.approx(2.0 + half)
    assert slates._regret_at(curves, 9) == {}


def test_unknown_settings_are_refused_with_the_known_ones():
    with pytest.raises(BanditConfigError, match=r"unknown env setting.*'nope'"):
        slates.keep_settings(load_config("slates"), ["nope"])
    kept = slates.keep_settings(load_config("slates"), ["pbm"])
    assert kept["env"]["settings"] == [
        {
            "label": "pbm",
            "params": {"click_model": "pbm", "kappa": [1.0, 0.6, 0.4, 0.25]},
        }
    ]


@pytest.mark.slow
def test_slates_study_quick(tmp_path, capsys):
    main = importlib.import_module("experiments.studies.slates").main
    capsys.readouterr()
    code = main(
        [
            "--quiet",
            "--quick",
            "--out",
            str(tmp_path),
            "--settings",
            "cascade",
            "--agents",
            "Top-L LinUCB",
            "CascadeLinUCB",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert {(r["setting"], r["agent"]) for r in rows} == {
        ("cascade", "Top-L LinUCB"),
        ("cascade", "CascadeLinUCB"),
    }
    for row in rows:
        assert row["seeds"] == 2 and row["horizon"] == 100
        assert row["final_regret_low"] <= row["final_regret_mean"]
        assert row["final_regret_mean"] <= row["final_regret_high"]
    cascade = next(r for r in rows if r["agent"] == "CascadeLinUCB")
    assert cascade["position_aware"] and cascade["gain_mean"] is not None
    baseline = next(r for r in rows if r["agent"] == "Top-L LinUCB")
    assert baseline["gain_mean"] is None
    assert (tmp_path / "slate_regret.png").stat().st_size > 0
    assert "| CascadeLinUCB * |" in (tmp_path / "summary.md").read_text()
    assert "Gain over the baseline" in out.out
