"""Regret curves, confidence bands and summaries across seeds."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats

from bandits import Trajectory, metrics


def _trajectory(regret, optimal=None, reward=None) -> Trajectory:
    regret = np.asarray(regret, np.float32)
    zeros = np.zeros_like(regret)
    return Trajectory(
        action=np.zeros(regret.shape, np.int32),
        reward=zeros if reward is None else np.asarray(reward, np.float32),
        expected_reward=zeros,
        optimal_expected_reward=regret,
        regret=regret,
        optimal=(regret == 0) if optimal is None else np.asarray(optimal),
    )


def test_mean_band_matches_a_hand_computed_t_interval():
    values = np.array(
        [[1.0, 2.0, 0.0], [3.0, 2.0, 1.0], [2.0, 5.0, 1.0], [4.0, 3.0, 2.0]]
    )
    band = metrics.mean_band(values)
    # Column 0: mean 2.5, sample sd sqrt(5/3), t_{0.975, 3} = 3.182446.
    half = 3.182446305284263 * np.sqrt(5 / 3) / 2
    assert band.mean[0] == pytest.approx(2.5)
    assert band.low[0] == pytest.approx(2.5 - half, rel=1e-9)
    assert band.high[0] == pytest.approx(2.5 + half, rel=1e-9)
    # Every column, with SciPy's quantile.
    n = values.shape[0]
    mean = values.mean(axis=0)
    sem = values.std(axis=0, ddof=1) / np.sqrt(n)
    q = scipy.stats.t.ppf(0.975, df=n - 1)
    np.testing.assert_allclose(band.mean, mean)
    np.testing.assert_allclose(band.low, mean - q * sem)
    np.testing.assert_allclose(band.high, mean + q * sem)
    np.testing.assert_allclose(metrics.half_width(values), q * sem)
    # A 90% band is narrower, with its own quantile.
    band90 = metrics.mean_band(values, confidence=0.9)
    q90 = scipy.stats.t.ppf(0.95, df=n - 1)
    np.testing.assert_allclose(band90.high - band90.mean, q90 * sem)


def test_single_seed_band_collapses_to_the_mean():
    values = np.array([[1.0, 4.0, 9.0]])
    band = metrics.mean_band(values)
    np.testing.assert_array_equal(band.mean, [1.0, 4.0, 9.0])
    np.testing.assert_array_equal(band.low, band.mean)
    np.testing.assert_array_equal(band.high, band.mean)
    np.testing.assert_array_equal(metrics.half_width(values), [0.0, 0.0, 0.0])


def test_identical_seeds_give_a_zero_width_band():
    band = metrics.mean_band(np.ones((5, 3)))
    np.testing.assert_array_equal(band.low, band.high)


@pytest.mark.parametrize(("power", "start", "stop"), [(0.5, 10, 5000), (1.0, 1, 1000)])
def test_loglog_slope_of_power_laws(power, start, stop):
    t = np.arange(1, stop + 1, dtype=np.float64)
    assert metrics.loglog_slope(3.0 * t**power, start, stop) == pytest.approx(
        power, abs=1e-9
    )


def test_loglog_slope_of_logarithmic_regret_is_small():
    """log(t) grows like t^a with a = 1 / ln(t) locally: 0.12-0.15 on [1e3, 1e4]."""
    t = np.arange(1, 10_001, dtype=np.float64)
    slope = metrics.loglog_slope(np.log(t), 1000, 10_000)
    assert 0.1 < slope < 0.16


def test_cumulative_regret_and_optimal_fraction():
    regret = [[0.0, 1.0, 0.5, 0.0], [2.0, 0.0, 0.0, 0.0]]
    traj = _trajectory(regret)
    np.testing.assert_allclose(
        metrics.cumulative_regret(traj), [[0.0, 1.0, 1.5, 1.5], [2.0, 2.0, 2.0, 2.0]]
    )
    assert metrics.cumulative_regret(traj).dtype == np.float64
    np.testing.assert_allclose(
        metrics.optimal_action_fraction(traj),
        [[1.0, 0.5, 1 / 3, 0.5], [0.0, 0.5, 2 / 3, 0.75]],
    )


def test_summarize_fields():
    regret = [[0.0, 1.0, 0.5], [2.0, 0.0, 0.0], [0.0, 0.0, 0.25]]
    reward = [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    summary = metrics.summarize("linucb", _trajectory(regret, reward=reward))
    final = np.array([1.5, 2.0, 0.25])
    half = scipy.stats.t.ppf(0.975, df=2) * final.std(ddof=1) / np.sqrt(3)
    assert summary.agent == "linucb"
    assert summary.seeds == 3
    assert summary.horizon == 3
    assert summary.final_regret_mean == pytest.approx(final.mean())
    assert summary.final_regret_low == pytest.approx(final.mean() - half)
    assert summary.final_regret_high == pytest.approx(final.mean() + half)
    assert summary.final_regret_std == pytest.approx(final.std(ddof=1))
    assert summary.optimal_fraction == pytest.approx(5 / 9)
    assert summary.mean_reward == pytest.approx(6 / 9)


def test_summarize_single_run():
    summary = metrics.summarize("random", _trajectory([0.5, 0.5, 0.0]))
    assert summary.seeds == 1
    assert summary.horizon == 3
    assert summary.final_regret_mean == pytest.approx(1.0)
    assert summary.final_regret_low == summary.final_regret_high == pytest.approx(1.0)
    assert summary.final_regret_std == 0.0


def test_roc_auc_matches_pairwise_counting_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    s = rng.integers(0, 5, 60) / 4.0  # many ties
    pairs = [
        1.0 if a > b else 0.5 if a == b else 0.0
        for (a, ya), (b, yb) in itertools.product(
            zip(s, y, strict=True), zip(s, y, strict=True)
        )
        if ya == 1 and yb == 0
    ]
    assert metrics.roc_auc(y, s) == pytest.approx(np.mean(pairs))


def test_roc_auc_golden_values_and_one_class():
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    positive = np.array([False, False, True, True])
    # Pairs (positive > negative): 0.35>0.1, 0.8>0.1, 0.8>0.4 -> 3 of 4.
    assert metrics.roc_auc(positive, scores) == 0.75
    assert metrics.roc_auc(np.array([True, False]), np.array([0.5, 0.5])) == 0.5
    assert np.isnan(metrics.roc_auc(np.ones(4, bool), scores))


def test_log_loss_golden_values_and_clip():
    y = np.array([1.0, 0.0, 1.0])
    p = np.array([0.9, 0.4, 0.8])
    expected = -(np.log(0.9) + np.log(0.6) + np.log(0.8)) / 3
    assert metrics.log_loss(y, p) == pytest.approx(expected)
    # A linear model's estimate outside [0, 1] is clipped to [1e-7, 1 - 1e-7].
    assert metrics.log_loss([1.0], [-0.3]) == pytest.approx(-np.log(1e-7))
    assert metrics.log_loss([0.0], [1.7]) == pytest.approx(-np.log(1e-7), rel=1e-6)


def test_worker_modules_start_without_scipy_or_matplotlib():
    # A worker process imports these before its first task; scipy.stats and
    # matplotlib would add about a second to every start (the report's side
    # imports matplotlib when it needs it). Student-t intervals, which every run
    # computes, need scipy.special only (scipy.stats was about 2 s of a run).
    code = (
        "import sys, agents, envs, experiments.execute.tasks, numpy as np; "
        "from bandits import metrics; "
        "metrics.mean_band(np.arange(12.0).reshape(4, 3)); "
        "print(sorted(m for m in ('scipy.stats', 'matplotlib') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_t_quantile_is_scipy_stats_t_ppf_to_the_bit():
    for df in (1, 2, 3, 7, 31, 99, 1000, 2.5):
        for q in (0.6, 0.75, 0.9, 0.95, 0.975, 0.995):
            assert metrics.t_quantile(q, df) == scipy.stats.t.ppf(q, df=df)
