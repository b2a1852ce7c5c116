"""The neural-bandit studies on the experiment platform, at tiny settings.

Each calls the study's `main` in this process (its tasks run in the platform's
worker processes) with `--quick` and two agents, checks the stored results, the
study's table (`summary.json` and the printed one), then reruns it to check that
every chunk is reused (resume).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

import agents
import bandits
from envs.wheel import uniform_regret_per_step, wheel
from experiments.store import manifest, storage
from experiments.studies import uci_neural, wheel_showdown


def _last_computed(out: Path) -> list[str]:
    last_run = json.loads((out / storage.MANIFEST).read_text())["last_run"]
    return last_run["computed_chunks"]


def _uniform_regret(delta: float, horizon: int, seeds: list[int]) -> np.ndarray:
    """R_T of uniform play, each seed simulated on its own key (the study's
    seed -> key schedule)."""
    env = wheel(delta=delta)
    agent = agents.random(num_arms=5, dim=2)
    regret = [
        bandits.simulate(
            jax.random.key(s), env, env.default_params(), agent, horizon
        ).regret
        for s in seeds
    ]
    return np.cumsum(np.asarray(regret, np.float64), axis=1)[:, -1]  # as stored


@pytest.mark.slow
def test_wheel_showdown_quick(tmp_path, capsys):
    argv = ["--quick", "--horizon", "200", "--out", str(tmp_path), "--quiet"]
    argv += ["--agents", "lints", "uniform"]
    assert wheel_showdown.main(argv) == 0
    printed = capsys.readouterr().out

    stored = manifest.read(tmp_path)
    assert [(e.agent_label, e.env_grid) for e in stored.agents] == [
        (a, {"delta": d}) for d in (0.5, 0.95) for a in ("lints", "uniform")
    ]
    assert 'seed_key = "direct"' in (tmp_path / "config.toml").read_text()
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [(r["agent"], r["delta"]) for r in rows] == [
        (a, d) for d in (0.5, 0.95) for a in ("lints", "uniform")
    ]
    for r in rows:
        assert r["trials"] == 2 and r["horizon"] == 200
        expected = 100 * np.asarray(r["cumulative_regret"])
        expected /= 200 * uniform_regret_per_step(r["delta"])
        np.testing.assert_allclose(r["normalised"], expected)
        assert r["normalised_mean"] == pytest.approx(np.mean(expected))
        assert r["normalised_se"] > 0 and r["seconds"] > 0 and "jax" in r["machine"]
    assert rows[-1]["published_neural_linear"] == 9.56
    uniform = [r for r in rows if r["agent"] == "uniform"]
    # random play over 2 x 200 rounds: normalised regret near 100
    assert all(40 < r["normalised_mean"] < 160 for r in uniform)
    # Each seed's key is its run's key, as in the study before the platform
    # (the same draws; two programs, so float32 sums may round apart on
    # another CPU: 1e-6 relative).
    np.testing.assert_allclose(
        uniform[0]["cumulative_regret"], _uniform_regret(0.5, 200, [0, 1]), rtol=1e-6
    )
    assert "| neural_linear (published) | 0.95 | 9.56 |" in printed
    assert "| uniform |" in printed

    assert wheel_showdown.main(argv) == 0
    assert _last_computed(tmp_path) == []  # resumed: nothing recomputed
    assert json.loads((tmp_path / "summary.json").read_text()) == rows


@pytest.mark.slow
def test_uci_neural_quick(tmp_path, capsys):
    argv = ["--quick", "--horizon", "100", "--out", str(tmp_path), "--quiet"]
    argv += ["--agents", "linucb", "neural_ts"]
    assert uci_neural.main(argv) == 0
    printed = capsys.readouterr().out

    stored = manifest.read(tmp_path)
    assert [(e.agent_label, e.env_grid) for e in stored.agents] == [
        ("linucb", {"dataset": "mushroom"}),
        ("neural_ts", {"dataset": "mushroom"}),
    ]
    curves = manifest.read_series_curves(tmp_path, stored)
    for c in curves.values():  # every step kept, one chunk per seed
        np.testing.assert_array_equal(c.steps, np.arange(1, 101))
    assert stored.run["chunk_size"] == 1
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [(r["dataset"], r["agent"]) for r in rows] == [
        ("mushroom", "linucb"),
        ("mushroom", "neural_ts"),
    ]
    for r, c in zip(rows, curves.values(), strict=True):
        assert r["regret"] == c.cumulative_regret[:, -1].tolist()
        assert 0 <= r["regret_mean"] <= 100 and r["trials"] == 2
        assert r["horizon"] == 100 and r["scaling"] == "standardize"
        assert r["reference_neural_ts"] == 115.0 and r["reference_verified"] is False
        assert r["rows"] == 8124 and "regret_at_reference_horizon_mean" not in r
    assert "NeuralTS, Zhang et al. 2021 (unverified)" in printed

    assert uci_neural.main(argv) == 0
    assert _last_computed(tmp_path) == []  # resumed: nothing recomputed


def test_uci_cell_reads_the_regret_at_the_reference_horizon():
    """Mushroom's reference horizon (8,124 rounds) is read from the kept steps."""
    steps = np.arange(1, 8_201)
    regret = np.stack([steps * 0.01, steps * 0.03])
    curves = storage.Curves(
        seeds=np.asarray([0, 1]),
        steps=steps,
        cumulative_regret=regret,
        cumulative_reward=regret,
        cumulative_optimal=np.zeros(regret.shape, np.int64),
    )
    cell = uci_neural.cell("mushroom", "linucb", curves, "standardize")
    assert cell["regret"] == [82.0, 246.0] and cell["regret_mean"] == 164.0
    assert cell["regret_se"] == pytest.approx(82.0)
    assert cell["regret_at_reference_horizon_mean"] == pytest.approx(162.48)
    assert cell["regret_at_reference_horizon_se"] == pytest.approx(81.24)
    assert "(162 at T=8124)" in uci_neural.format_table([cell])


@pytest.mark.parametrize(
    ("module", "options", "expected"),
    [
        (
            wheel_showdown,
            ["--deltas", "0.9", "--horizon", "50", "--trials", "3"],
            {
                "env": {"grid": {"delta": [0.9]}},
                "run": {"horizon": 50, "seeds": 3, "chunk_size": 3},
            },
        ),
        (
            uci_neural,
            ["--datasets", "adult", "--scaling", "unit_norm", "--trials", "5"],
            {
                "env": {
                    "grid": {"dataset": ["adult"]},
                    "params": {"scaling": "unit_norm"},
                },
                "run": {"seeds": 5, "chunk_size": 3},
            },
        ),
        (
            uci_neural,
            ["--horizon", "400"],
            {"run": {"horizon": 400, "curve_points": 400}},
        ),
    ],
)
def test_options_map_to_config_overrides(module, options, expected):
    assert module.overrides(module.parse_args(options)) == expected


@pytest.mark.parametrize(
    ("module", "options", "message"),
    [
        (wheel_showdown, ["--deltas", "1.5"], "env.grid.delta"),
        (wheel_showdown, ["--agents", "Nobody"], "unknown agent label"),
        (uci_neural, ["--datasets", "iris2"], "env.grid.dataset"),
        (uci_neural, ["--trials", "0"], "--trials: must be a positive integer"),
    ],
)
def test_bad_options_are_refused_before_running(module, options, message, capsys):
    try:
        status = module.main([*options, "--quiet"])
    except SystemExit as stop:  # argparse refuses a count below one itself
        status = stop.code
    assert status == 2
    assert message in capsys.readouterr().err
