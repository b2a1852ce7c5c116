"""The streamed path of the off-policy benchmark (a replicate fitted from ridge
statistics summed over parts of its streams) against the in-memory path."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import envs
from bandits import offline
from experiments.studies import ope_benchmark
from experiments.studies import ope_benchmark_streamed as streamed
from experiments.studies.ope_benchmark_config import logging_policy, parse_study

REC = {
    "log_sizes": [200],
    "replicates": 2,
    "truth_events": 400,
    "streams_per_replicate": 4,
    "folds": 2,
    "logging": [{"label": "softmax", "kind": "softmax", "temperature": 1.0}],
    "envs": [
        {
            "id": "ContextualRec-v0",
            "reward_model": "context_items",
            "targets": [
                {
                    "label": "LinUCB context x items",
                    "name": "linucb_context_items",
                    "train_rounds": 50,
                    "hyperparameters": {"alpha": 0.3, "cross_scale": 0.05},
                }
            ],
        }
    ],
}


@pytest.fixture(scope="module")
def rec_cell():
    study = parse_study(REC)
    cell = study.envs[0]
    env, params = envs.make(cell.id)
    trained = ope_benchmark.train_target(cell.targets[0], env, params)
    policy = logging_policy(study.loggers[0])
    return study, cell, env, params, trained, policy


def _in_memory(study, cell, env, params, trained, policy, key):
    agent, state = trained
    n, streams = study.log_sizes[0], study.streams_per_replicate
    data, order = ope_benchmark.logs_by_replicate(
        key, env, params, policy, 1, n, streams
    )
    obs = jax.tree.map(np.asarray, data.observations())
    probs = offline.policy_probs(agent, state, obs, jax.random.fold_in(key, 1))
    estimates = ope_benchmark.estimate_replicates(
        study, env, cell, data, order, probs, key
    )
    return estimates, float(data.propensity.min())


def test_the_streamed_path_gives_the_in_memory_estimates(rec_cell):
    """Two parts of two streams, each read in slices of 25 events (slices end
    inside streams; pass 2 reuses the last part and generates the first again):
    the same log, probabilities and folds as the in-memory path, so the same
    estimates up to float32 summation order in X^T X (sums of 100 events of 166
    columns: relative rounding ~1e-6, amplified by the ridge solve). 1e-4
    absolute on values in [0, 1] and on interval ends is far below what a wrong
    event, fold or key changes (the estimates' standard errors are ~0.05)."""
    study, cell, env, params, trained, policy = rec_cell
    key = jax.random.key(7)
    expected, low = _in_memory(study, cell, env, params, trained, policy, key)
    got, got_low = ope_benchmark.estimate_streamed(
        study, env, params, cell, policy, trained, study.log_sizes[0], key, (2, 25)
    )
    assert got.shape == expected.shape == (1, 8, 4)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert got_low == low
    # Not trivially equal: DM (from the ridge model alone) differs from IPS.
    assert abs(expected[0, 0, 0] - expected[0, 1, 0]) > 1e-3


def test_today_s_sizes_stay_in_memory_and_10_6_is_streamed():
    """The path is chosen from the features' size: the sizes run in memory so
    far (ContextualRec-v0 at 10^5, Linear-v0 at 10^6) keep that path."""
    rec, rec_params = envs.make("ContextualRec-v0")
    raw, feature = ope_benchmark.bytes_per_event("context_items", rec, rec_params)
    assert feature == 20 * 165 * 4  # K x f float32
    assert not ope_benchmark.is_streamed(100_000, feature)
    assert ope_benchmark.is_streamed(1_000_000, feature)
    linear, linear_params = envs.make("Linear-v0")
    _, linear_feature = ope_benchmark.bytes_per_event("context", linear, linear_params)
    assert not ope_benchmark.is_streamed(1_000_000, linear_feature)
    # 10^6 ContextualRec events: the 8 streams' raw log fits one part, and the
    # features go in slices under the budget.
    per_part, per_slice = streamed.part_sizes(
        1_000_000, 8, raw, feature, ope_benchmark.MAX_FEATURE_BYTES
    )
    assert per_part * 125_000 * raw <= ope_benchmark.MAX_FEATURE_BYTES
    assert per_slice * feature <= ope_benchmark.MAX_FEATURE_BYTES


def test_ridge_statistics_add_over_parts_and_fit_as_before():
    """`ridge_model.fit` is the solve of the summed statistics; statistics of
    two halves add up to the whole's (float32 sums of 50 terms: 1e-5)."""
    key_x, key_a, key_r = jax.random.split(jax.random.key(0), 3)
    features = jax.random.normal(key_x, (100, 3, 4))
    action = jax.random.randint(key_a, (100,), 0, 3)
    reward = jax.random.uniform(key_r, (100,))
    for shared in (False, True):
        whole = offline.ridge_statistics(features, action, reward, 3, shared)
        halves = [
            offline.ridge_statistics(features[s], action[s], reward[s], 3, shared)
            for s in (slice(0, 50), slice(50, 100))
        ]
        summed = jax.tree.map(np.add, *halves)
        np.testing.assert_allclose(summed.gram, whole.gram, rtol=1e-5, atol=1e-5)
        theta = offline.ridge_model(3, 2.0, shared).fit(features, action, reward)
        X = np.concatenate([np.asarray(features), np.ones((100, 3, 1))], axis=-1)
        X = X[np.arange(100), np.asarray(action)].astype(np.float64)
        groups = np.zeros(100, int) if shared else np.asarray(action)
        for m in range(theta.shape[0]):
            rows = X[groups == m]
            direct = np.linalg.solve(
                rows.T @ rows + 2.0 * np.eye(5),
                rows.T @ np.asarray(reward)[groups == m],
            )
            np.testing.assert_allclose(theta[m], direct, rtol=1e-4, atol=1e-5)


def test_the_replicate_program_calls_no_lapack(rec_cell):
    """The in-memory path's program fits every fold of a group of replicates at
    once; with 13 replicates `lax.map` runs a group of 10 and a remainder of 3,
    two independent fits XLA may run at the same time. jaxlib's LAPACK solves
    block XLA's threads, and two of them deadlocked a 2-thread pool here
    (docs/ope.md), so the lowered program must hold no LAPACK call."""
    study, cell, env, params, _, policy = rec_cell
    n = study.log_sizes[0]
    data, order = ope_benchmark.logs_by_replicate(
        jax.random.key(2), env, params, policy, 13, n, study.streams_per_replicate
    )
    program = ope_benchmark._replicate_program(
        env, cell.reward_model, study.folds, study.seed, n
    )
    obs = jax.tree.map(np.asarray, data.observations())
    probs = np.full((len(data.action), env.num_arms), 1.0 / env.num_arms, np.float32)
    lowered = program.lower(
        obs, data.action, data.reward, data.propensity, probs, np.asarray(order)
    )
    text = lowered.as_text().lower()
    assert "lapack" not in text
