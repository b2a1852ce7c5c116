"""Regret curves and summaries across seeds, with 95% confidence bands.

Slate runs use the same curves (`regret` is then exact slate pseudo-regret) and
add `expected_clicks`, `click_rate_per_position` and `ndcg`.

Bands are two-sided Student-t intervals for the mean across seeds:
mean +/- t_{0.975, S-1} * sd / sqrt(S), with sd the sample standard deviation.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from bandits.types import Trajectory


class Band(NamedTuple):
    """Mean and two-sided confidence interval of a curve across seeds."""

    mean: np.ndarray  # (T,)
    low: np.ndarray  # (T,)
    high: np.ndarray  # (T,)


def cumulative_regret(trajectory: Trajectory) -> np.ndarray:
    """Cumulative pseudo-regret per seed, (S, T) (or (T,) for one run)."""
    return np.cumsum(np.asarray(trajectory.regret, dtype=np.float64), axis=-1)


def mean_band(values: ArrayLike, confidence: float = 0.95) -> Band:
    """Mean over axis 0 with a Student-t confidence band.

    Args:
      values: (S, ...) one row per seed.
      confidence: coverage of the two-sided interval.

    Returns:
      A `Band`; with a single seed the band collapses to the mean.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    mean = values.mean(axis=0)
    if n < 2:
        return Band(mean, mean.copy(), mean.copy())
    half = half_width(values, confidence)
    return Band(mean, mean - half, mean + half)


def half_width(values: ArrayLike, confidence: float = 0.95) -> np.ndarray:
    """Half-width of the Student-t interval for the mean over axis 0."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if n < 2:
        return np.zeros(values.shape[1:])
    sem = values.std(axis=0, ddof=1) / np.sqrt(n)
    return t_quantile(0.5 + confidence / 2, n - 1) * sem


def t_quantile(q: float, df: float) -> float:
    """The q-quantile of Student's t with `df` degrees of freedom.

    `scipy.special.stdtrit`, which is what `scipy.stats.t.ppf` evaluates (equal
    to the bit), without importing `scipy.stats` (about 2 s of a start-up)."""
    import scipy.special

    return float(scipy.special.stdtrit(df, q))


def optimal_action_fraction(trajectory: Trajectory) -> np.ndarray:
    """Running fraction of rounds in which the chosen arm was optimal, (S, T)."""
    optimal = np.asarray(trajectory.optimal, dtype=np.float64)
    steps = np.arange(1, optimal.shape[-1] + 1)
    return np.cumsum(optimal, axis=-1) / steps


class Summary(NamedTuple):
    """Final-regret summary of one agent across seeds."""

    agent: str
    seeds: int
    horizon: int
    final_regret_mean: float
    final_regret_low: float
    final_regret_high: float
    final_regret_std: float
    optimal_fraction: float
    mean_reward: float


def summarize(agent: str, trajectory: Trajectory, confidence: float = 0.95) -> Summary:
    """Final cumulative regret with its confidence interval, and related rates."""
    final = cumulative_regret(trajectory)[..., -1].reshape(-1)
    band = mean_band(final[:, None], confidence)
    optimal = np.asarray(trajectory.optimal, dtype=np.float64)
    reward = np.asarray(trajectory.reward, dtype=np.float64)
    return Summary(
        agent=agent,
        seeds=int(final.shape[0]),
        horizon=int(np.shape(trajectory.regret)[-1]),
        final_regret_mean=float(band.mean[0]),
        final_regret_low=float(band.low[0]),
        final_regret_high=float(band.high[0]),
        final_regret_std=float(final.std(ddof=1)) if final.size > 1 else 0.0,
        optimal_fraction=float(optimal.mean()),
        mean_reward=float(reward.mean()),
    )


def loglog_slope(curve: ArrayLike, start: int, stop: int) -> float:
    """Least-squares slope of log(curve[t-1]) against log(t) for t in [start, stop].

    A cumulative-regret curve growing like t^a has slope a: ~1 for linear regret,
    ~0.5 for sqrt(T) regret, -> 0 for logarithmic regret.
    """
    curve = np.asarray(curve, dtype=np.float64)
    t = np.unique(np.geomspace(start, stop, num=50).astype(int))
    y = curve[t - 1]
    slope, _ = np.polyfit(np.log(t), np.log(y), 1)
    return float(slope)


def _slate_record(trajectory: Trajectory):
    if trajectory.slate is None:
        raise ValueError(
            "trajectory has no slate record: it comes from a single-item env "
            "(slate metrics need a slate env, e.g. envs.make('LinearSlate-v0'))"
        )
    return trajectory.slate


def expected_clicks(trajectory: Trajectory) -> np.ndarray:
    """Exact expected number of clicks of each played slate, (S, T) (or (T,)):
    sum_l E[click_l]. Under the cascade it is the slate's click probability;
    under the DCM it differs from the reward (a satisfied user)."""
    slate = _slate_record(trajectory)
    return np.asarray(slate.expected_clicks, np.float64).sum(axis=-1)


def click_rate_per_position(trajectory: Trajectory) -> np.ndarray:
    """Sampled click rate of every position over the run, (S, L) (or (L,))."""
    slate = _slate_record(trajectory)
    return np.asarray(slate.clicks, np.float64).mean(axis=-2)


def ndcg(trajectory: Trajectory) -> np.ndarray:
    """NDCG@L of each played slate against the ideal slate, (S, T) (or (T,)).

    Gains are the items' attractions (linear gains), discounts 1 / log2(l + 1),
    the ideal slate the L most attractive allowed items
    (`bandits.records.slate_ndcg`)."""
    return np.asarray(_slate_record(trajectory).ndcg, np.float64)


PROBABILITY_CLIP = 1e-7


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve, P(score of a positive > score of a negative),
    ties counted half: the Mann-Whitney statistic from average ranks,
    (sum of positive ranks - n_+ (n_+ + 1) / 2) / (n_+ n_-).

    Args:
      labels: (n,) truthy for positives.
      scores: (n,) real scores.

    Returns:
      The AUC, or NaN when only one class occurs (undefined).
    """
    positive = np.asarray(labels).astype(bool)
    num_pos, num_neg = int(positive.sum()), int((~positive).sum())
    if num_pos == 0 or num_neg == 0:
        return float("nan")
    # Ranks 1..n with ties given their average rank (a group of c equal scores
    # ending at rank e shares e - (c - 1) / 2).
    _, group, counts = np.unique(
        np.asarray(scores, np.float64), return_inverse=True, return_counts=True
    )
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[group.reshape(-1)]
    u = ranks[positive].sum() - num_pos * (num_pos + 1) / 2
    return float(u / (num_pos * num_neg))


def log_loss(
    labels: ArrayLike, probabilities: ArrayLike, clip: float = PROBABILITY_CLIP
) -> float:
    """Mean binary cross-entropy of 0/1 `labels` under predicted P(1), with the
    probabilities clipped to [clip, 1 - clip] (so a linear model's estimates
    outside [0, 1] score finitely)."""
    y = np.asarray(labels, np.float64)
    p = np.clip(np.asarray(probabilities, np.float64), clip, 1 - clip)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))
