"""NeuralTS rounds per second through `bandits.run`, as a ratio against LinUCB.

Setting: Linear-v0 with K = 4 arms and d = 10, 16 seeds, T = 2,000 rounds, compile
excluded. NeuralTS has one hidden layer of 100 units on the disjoint encoding
(input d K = 40) and retrains every 50 rounds (50 Adam steps on 64 replay rows);
LinUCB (disjoint, alpha = 1) runs the same setting in the same test. Recorded in
`benchmark.extra_info`: rounds per second of both and their ratio
`neural_ts_vs_linucb` (below 1: NeuralTS is that fraction of LinUCB's speed).

Under `--benchmark-disable` (as in `make bench-smoke`) NeuralTS runs once.
"""

from __future__ import annotations

import agents
import bandits
import envs
from agents.neural import neural_ts
from tests.benchmarks.conftest import best_time

NUM_ARMS, DIM, SEEDS, HORIZON = 4, 10, 16, 2_000


def _runner(agent):
    env, params = envs.make("Linear-v0", num_arms=NUM_ARMS, dim=DIM)
    return lambda: bandits.run(env, agent, horizon=HORIZON, seeds=SEEDS, params=params)


def test_neural_ts_rounds_per_second(benchmark, record_ratio):
    neural = _runner(
        neural_ts(
            num_arms=NUM_ARMS,
            dim=DIM,
            hidden_sizes=(100,),
            train_every=50,
            train_steps=50,
            batch_size=64,
        )
    )
    if benchmark.disabled:
        benchmark(neural)
        return
    linear = _runner(agents.linucb(num_arms=NUM_ARMS, dim=DIM, alpha=1.0))
    neural_seconds = best_time(neural)
    linear_seconds = best_time(linear)
    benchmark.pedantic(neural, rounds=3, warmup_rounds=1)
    neural_rate = SEEDS * HORIZON / neural_seconds
    linear_rate = SEEDS * HORIZON / linear_seconds
    record_ratio(
        "neural_ts_vs_linucb",
        neural_rate / linear_rate,
        neural_ts_rounds_per_s=neural_rate,
        linucb_rounds_per_s=linear_rate,
    )
    assert neural_rate > 0 and linear_rate > 0
