"""Regret growth rates on `Linear-v0` (K = 10 arms, d = 20): LinUCB is sublinear.

LinUCB's regret on a linear bandit grows like sqrt(T) up to log factors (Chu, Li,
Reyzin & Schapire 2011, "Contextual bandits with linear payoff functions",
AISTATS), and with a gap between the best and second-best arm's means it grows
even more slowly, so the log-log slope of its cumulative-regret curve stays below
0.5. The uniform random policy's expected per-step regret is constant, so its
slope is 1.

Fixed seeds 0..7, each with its own problem instance (`resample_params=True`),
horizon 20,000, slope of the mean curve fitted on t in [1,000, 20,000].
Measured (CPU, float32): LinUCB 0.357 (per-seed 0.33-0.40), random 1.001
(per-seed 0.99-1.01). Tolerances: the per-seed slopes' standard deviation is
~0.025 for LinUCB and ~0.006 for random, so the 8-seed mean curve's slope is
known to ~0.01 and ~0.002; the thresholds 0.5 and 0.95 are more than ten such
standard errors away from the measured values, while a policy that stopped
learning (slope ~1) or random regret that flattened would cross them.
"""

from __future__ import annotations

import numpy as np

import agents
import bandits
import envs
from bandits import metrics

HORIZON = 20_000
SEEDS = 8
FIT_START, FIT_STOP = 1_000, 20_000


def _mean_curve(name: str) -> np.ndarray:
    env, _ = envs.make("Linear-v0", num_arms=10, dim=20)
    agent = agents.make(name, num_arms=10, dim=20)
    traj = bandits.run(env, agent, horizon=HORIZON, seeds=SEEDS, resample_params=True)
    return metrics.mean_band(metrics.cumulative_regret(traj)).mean


def test_linucb_regret_is_sublinear_and_random_is_linear():
    linucb = _mean_curve("linucb")
    random = _mean_curve("random")
    linucb_slope = metrics.loglog_slope(linucb, FIT_START, FIT_STOP)
    random_slope = metrics.loglog_slope(random, FIT_START, FIT_STOP)
    assert linucb_slope < 0.5, linucb_slope
    assert random_slope > 0.95, random_slope
    # Measured final regret: LinUCB ~1,170, random ~17,900.
    assert linucb[-1] < 0.2 * random[-1], (linucb[-1], random[-1])
