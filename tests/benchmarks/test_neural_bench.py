"""Neural agents' rounds per second through `bandits.run`, as ratios against LinUCB.

Setting: Linear-v0 with K = 4 arms and d = 10, 16 seeds, T = 2,000 rounds, compile
excluded, each agent with its factory defaults except where noted:

  * NeuralTS and NeuralUCB: one hidden layer of 100 units on the disjoint
    encoding (input d K = 40), retraining every 50 rounds (50 Adam steps on 64
    replay rows);
  * neural-linear: one hidden layer of 50 units on the context (multi-head),
    retraining every 50 rounds (100 Adam steps on 512 rows), then the Bayesian
    last layers recomputed from the replay buffer.

LinUCB (disjoint, alpha = 1) runs the same setting in the same test; the two
programs are timed in turn (`interleaved_best_times`), so load on a shared machine
hits both. Recorded in `benchmark.extra_info`: rounds per second of both and their
ratio `<agent>_vs_linucb` (below 1: the neural agent is that fraction of LinUCB's
speed).

Under `--benchmark-disable` (as in `make bench-smoke`) each neural agent runs once
at T = 100.
"""

from __future__ import annotations

import pytest

import agents
import bandits
import envs
from agents.neural import neural_linear, neural_ts, neural_ucb
from tests.benchmarks.conftest import interleaved_best_times

NUM_ARMS, DIM, SEEDS, HORIZON = 4, 10, 16, 2_000
SMOKE_HORIZON = 100
AGENTS = {
    "neural_ts": lambda: neural_ts(num_arms=NUM_ARMS, dim=DIM),
    "neural_ucb": lambda: neural_ucb(num_arms=NUM_ARMS, dim=DIM),
    "neural_linear": lambda: neural_linear(num_arms=NUM_ARMS, dim=DIM),
}


def _runner(agent, horizon: int = HORIZON):
    env, params = envs.make("Linear-v0", num_arms=NUM_ARMS, dim=DIM)
    return lambda: bandits.run(env, agent, horizon=horizon, seeds=SEEDS, params=params)


@pytest.mark.parametrize("name", list(AGENTS))
def test_neural_rounds_per_second(benchmark, record_ratio, name):
    agent = AGENTS[name]()
    if benchmark.disabled:
        benchmark(_runner(agent, SMOKE_HORIZON))
        return
    neural = _runner(agent)
    linear = _runner(agents.linucb(num_arms=NUM_ARMS, dim=DIM, alpha=1.0))
    neural_seconds, linear_seconds = interleaved_best_times([neural, linear], 3)
    benchmark.pedantic(neural, rounds=1, warmup_rounds=0)
    neural_rate = SEEDS * HORIZON / neural_seconds
    linear_rate = SEEDS * HORIZON / linear_seconds
    record_ratio(
        f"{name}_vs_linucb",
        neural_rate / linear_rate,
        ratio=neural_rate / linear_rate,  # printed to 4 digits in the summary
        **{f"{name}_rounds_per_s": neural_rate, "linucb_rounds_per_s": linear_rate},
    )
    assert neural_rate > 0 and linear_rate > 0


def test_the_breakdowns_first_layer_layouts_compute_the_same_gradient():
    """The layouts `python -m tests.benchmarks.neural_breakdown` times are one
    function: the same loss gradient (float32 tolerance: the sums run in other
    orders)."""
    import jax
    import numpy as np

    from tests.benchmarks import neural_breakdown as nb

    k = jax.random.split(jax.random.key(1), 5)
    params = (
        jax.random.normal(k[0], (nb.NUM_ARMS * nb.DIM, 6)),
        jax.random.normal(k[1], (6,)),
        jax.random.normal(k[2], (6,)),
    )
    x = jax.random.normal(k[3], (16, nb.DIM))
    action = jax.random.randint(k[4], (16,), 0, nb.NUM_ARMS)
    reward = x[:, 0]
    grads = [
        jax.grad(nb._loss(layer))(params, x, action, reward)
        for layer in nb.LAYOUTS.values()
    ]
    for other in grads[1:]:
        for a, b in zip(grads[0], other, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
