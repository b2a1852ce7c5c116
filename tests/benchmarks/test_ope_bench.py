"""The off-policy estimators over many log replicates as one compiled program,
against a plain NumPy loop over the replicates in the same run.

Setting (issue on off-policy evaluation): 1,000 replicates x 8 estimators x
10^4 events, K = 5 actions. Both sides receive the same pre-generated logs
(context index, action, reward per event) and look up the target policy's and
the reward model's rows in small tables; only the estimation is timed. The
ratio of replicates per second (compiled / NumPy) is recorded.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bandits import ope
from tests.benchmarks.conftest import best_time

REPLICATES, EVENTS, ACTIONS, CONTEXTS = 1_000, 10_000, 5, 20
NUMPY_REPLICATES = 50  # the loop is timed on a subset and scaled per replicate


def logs():
    rng = np.random.default_rng(0)
    mu = rng.uniform(0.05, 0.6, (CONTEXTS, ACTIONS)).astype(np.float32)
    logits = 4.0 * mu
    target = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    reward_hat = np.clip(mu + rng.normal(0, 0.05, mu.shape), 0, 1).astype(np.float32)
    ctx = rng.integers(0, CONTEXTS, (REPLICATES, EVENTS)).astype(np.int32)
    action = rng.integers(0, ACTIONS, (REPLICATES, EVENTS)).astype(np.int32)
    reward = (rng.uniform(size=ctx.shape) < mu[ctx, action]).astype(np.float32)
    return target, reward_hat, ctx, action, reward


def numpy_estimates(reward, action, propensity, target, reward_hat):
    """The eight estimators and their standard errors, one replicate, NumPy."""
    n = reward.size
    rows = np.arange(n)
    w = target[rows, action] / propensity
    q_pi = (target * reward_hat).sum(1)
    q_a = reward_hat[rows, action]
    res = reward - q_a

    def mean_se(t):
        return t.mean(), t.std(ddof=1) / np.sqrt(n)

    v_sn = (w * reward).sum() / w.sum()
    c = (w * res).sum() / w.sum()
    return [
        mean_se(q_pi),
        mean_se(w * reward),
        mean_se(np.minimum(w, 100.0) * reward),
        (v_sn, ((w * reward - v_sn * w) / w.mean()).std(ddof=1) / np.sqrt(n)),
        mean_se(q_pi + w * res),
        (q_pi.mean() + c, 0.0),
        mean_se(q_pi + np.where(w <= 100.0, w, 0.0) * res),
        mean_se(q_pi + w / (w * w + 1.0) * res),
    ]


def test_estimators_over_replicates_against_numpy(benchmark, record_ratio):
    target, reward_hat, ctx, action, reward = logs()
    propensity = np.full(EVENTS, 1.0 / ACTIONS, np.float32)
    target_j, reward_hat_j = jnp.asarray(target), jnp.asarray(reward_hat)

    @jax.jit
    def compiled(ctx, action, reward):
        def one(inputs):
            c, a, r = inputs
            out = ope.estimate_all(
                r, a, jnp.asarray(propensity), target_j[c], reward_hat_j[c]
            )
            return jnp.stack([jnp.stack(list(e)) for e in out.values()])

        return jax.lax.map(one, (ctx, action, reward), batch_size=50)

    args = (jnp.asarray(ctx), jnp.asarray(action), jnp.asarray(reward))

    def run_numpy():
        return [
            numpy_estimates(
                reward[i], action[i], propensity, target[ctx[i]], reward_hat[ctx[i]]
            )
            for i in range(NUMPY_REPLICATES)
        ]

    jax_seconds = best_time(lambda: compiled(*args))
    numpy_seconds = best_time(run_numpy) * REPLICATES / NUMPY_REPLICATES
    benchmark.pedantic(lambda: compiled(*args), rounds=3, warmup_rounds=1)
    out = np.asarray(compiled(*args))
    assert out.shape == (REPLICATES, len(ope.ESTIMATORS), 4)
    assert np.isfinite(out).all()
    # the two sides compute the same thing: replicate 0's values agree
    want = numpy_estimates(
        reward[0], action[0], propensity, target[ctx[0]], reward_hat[ctx[0]]
    )
    np.testing.assert_allclose(out[0, :, 0], [v for v, _ in want], rtol=1e-4)
    record_ratio(
        "ope_replicates_vs_numpy",
        numpy_seconds / jax_seconds,
        jax_replicates_per_s=REPLICATES / jax_seconds,
        numpy_replicates_per_s=REPLICATES / numpy_seconds,
    )
