"""Off-policy estimators on simulator logs, scored against the exact value.

`Linear-v0` (K = 5, d = 5), the uniform logging policy, and LinUCB trained for
500 rounds then frozen as the target; 2,000 independent logs of n = 10^4 events
(the machinery of `experiments/studies/ope_benchmark.py`). The true value
V = E_x sum_a pi(a | x) mu(x, a) is computed from the env's expected rewards on
a separate log of 10^6 events (standard error about 1/30 of an IPS estimate's at
n = 10^4, so it barely moves a coverage rate).

Tolerances (fixed seeds; each would fail rarely for a correct estimator):
* unbiased: the mean over 2,000 replicates within 3 standard errors of V
  (a false alarm rate of 0.3% per estimator);
* coverage of the 95% intervals in [0.93, 0.97] (the binomial standard deviation
  of a rate over 2,000 replicates is 0.5%);
* DR's variance below IPS's with the cross-fitted ridge model (measured ratio
  in the assertion message);
* SNIPS's bias is O(1/n): at n = 10^4 within 3 standard errors of zero (its
  detectable bias at tiny n is checked in tests/bandits/test_ope.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from bandits import ope
from experiments.studies import ope_benchmark as study_module
from experiments.studies.ope_benchmark_config import parse_study

N, REPLICATES, GROUP = 10_000, 2_000, 200


@pytest.fixture(scope="module")
def scored():
    study = parse_study(
        {
            "log_sizes": [N],
            "replicates": REPLICATES,
            "streams_per_replicate": 8,
            "folds": 2,
            "logging": [{"label": "uniform", "kind": "uniform"}],
            "envs": [
                {
                    "id": "Linear-v0",
                    "params": {"num_arms": 5, "dim": 5},
                    "targets": [
                        {"label": "LinUCB", "name": "linucb", "train_rounds": 500}
                    ],
                }
            ],
        }
    )
    cell = study.envs[0]
    env, params = envs.make(cell.id, **cell.params)
    agent, state = study_module.train_target(cell.targets[0], env, params)
    policy = study_module.logging_policy(study.loggers[0])
    key = jax.random.key(2026)
    truth, truth_se = study_module.true_value(
        jax.random.fold_in(key, 0), env, params, policy, agent, state, 10**6, N // 8
    )
    estimates = []
    for g in range(REPLICATES // GROUP):
        k = jax.random.fold_in(key, 1 + g)
        data, order = study_module.logs_by_replicate(
            k, env, params, policy, GROUP, N, 8
        )
        obs = jax.tree.map(jnp.asarray, data.observations())
        probs = study_module.offline.policy_probs(agent, state, obs, k)
        estimates.append(
            study_module.estimate_replicates(study, env, cell, data, order, probs, k)
        )
    estimates = np.concatenate(estimates)
    names = list(ope.ESTIMATORS)
    return {n: estimates[:, i] for i, n in enumerate(names)}, truth, truth_se


@pytest.mark.slow
def test_estimators_on_simulator_logs_against_the_exact_value(scored):
    """All four checks on one set of replicates (one test, so that parallel
    test workers do not each compute the 2,000 logs)."""
    out, truth, truth_se = scored
    for name in ("ips", "dr"):
        values = out[name][:, 0]
        se = values.std(ddof=1) / np.sqrt(values.size)
        print(f"{name}: bias {values.mean() - truth:+.5f} (se {se:.5f}), V {truth:.4f}")
        assert abs(values.mean() - truth) < 3 * se, (name, values.mean(), truth, se)

    assert truth_se < 0.05 * out["ips"][:, 0].std()
    for name in ("ips", "snips", "dr", "sndr"):
        _, low, high, _ = out[name].T
        coverage = np.mean((low <= truth) & (truth <= high))
        print(f"{name}: coverage {coverage:.3f}")
        assert 0.93 <= coverage <= 0.97, (name, coverage)

    ratio = out["dr"][:, 0].var() / out["ips"][:, 0].var()
    print(f"var(DR) / var(IPS) = {ratio:.3f}")
    assert ratio < 0.9, ratio

    values = out["snips"][:, 0]
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert abs(values.mean() - truth) < 3 * se  # SNIPS's O(1/n) bias, negligible
