"""A LinUCB alpha sweep as one compiled program against separate runs.

Setting (platform issue): Linear-v0 (K=10, d=20), LinUCB with 8 values of alpha,
64 seeds each, T=10,000. `bandits.sweep` runs the 8 x 64 simulations as ONE
compiled program (alpha traced, a `vmap` over settings of a `vmap` over seeds);
the reference is 8 separate `bandits.run` calls (each 64 seeds, compiled once
per agent), measured in the same benchmark run. Two ratios are recorded (target
>= 3x):

  * `sweep_vs_separate_with_compile`: first calls from cold caches, so the 8
    separate runs pay 8 traces and compiles and the sweep pays one; what a user
    running a fresh sweep waits for. Before each side, the caches are cleared and
    the same unrelated two-round run (LinTS) is made, so neither side pays the
    one-off costs shared by every program (the seed-key and transfer kernels).
    Best of 3 cold starts per side: single cold starts vary by +/- 30% here.
  * `sweep_vs_separate_warm`: compiled programs reused, best of 3 after a
    warm-up; the simulation work alone.

Under `make test` (`--benchmark-disable`) the horizon drops to 300 and each side
runs once, so the test stays a quick smoke test; its ratios are not meaningful.
"""

from __future__ import annotations

import functools
import time

import jax
import numpy as np

import agents
import bandits
import envs
from tests.benchmarks.conftest import best_time

NUM_ARMS, DIM, SEEDS, HORIZON = 10, 20, 64, 10_000
SMOKE_HORIZON = 300
ALPHAS = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4]


def _timed(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def test_sweep_vs_separate_runs(benchmark, record_ratio, request):
    disabled = request.config.getoption("benchmark_disable")
    horizon = SMOKE_HORIZON if disabled else HORIZON
    env, params = envs.make("Linear-v0", num_arms=NUM_ARMS, dim=DIM)
    agent_fn = functools.partial(agents.linucb, num_arms=NUM_ARMS, dim=DIM)
    separate = [agent_fn(alpha=alpha) for alpha in ALPHAS]

    def sweep():
        return bandits.sweep(
            env,
            agent_fn,
            {"alpha": ALPHAS},
            horizon=horizon,
            seeds=SEEDS,
            params=params,
        )

    def runs():
        return [
            bandits.run(env, agent, horizon=horizon, seeds=SEEDS, params=params)
            for agent in separate
        ]

    def cold(fn) -> float:
        """Wall time of `fn()` from cleared caches, after the shared warm-up."""
        jax.clear_caches()
        warm_up = agents.lints(num_arms=NUM_ARMS, dim=DIM)
        jax.block_until_ready(
            bandits.run(env, warm_up, horizon=2, seeds=SEEDS, params=params).regret
        )
        return _timed(fn)

    cold_repeats = 1 if disabled else 3  # best of 3 cold starts, like the warm times
    sweep_cold = min(cold(sweep) for _ in range(cold_repeats))
    runs_cold = min(cold(runs) for _ in range(cold_repeats))

    # The sweep computes exactly what the separate runs compute.
    swept, single = sweep(), runs()
    for index in (0, len(ALPHAS) - 1):
        np.testing.assert_array_equal(
            np.asarray(swept.regret[index]), np.asarray(single[index].regret)
        )

    repeats = 1 if disabled else 3
    sweep_warm = best_time(sweep, repeats=repeats)
    runs_warm = best_time(runs, repeats=repeats)
    benchmark.pedantic(sweep, rounds=1 if disabled else 3, warmup_rounds=0)

    rounds = len(ALPHAS) * SEEDS * horizon
    record_ratio(
        "sweep_vs_separate_with_compile",
        runs_cold / sweep_cold,
        cold_sweep_s=sweep_cold,
        cold_separate_s=runs_cold,
        horizon=horizon,
    )
    record_ratio(
        "sweep_vs_separate_warm",
        runs_warm / sweep_warm,
        warm_sweep_s=sweep_warm,
        warm_separate_s=runs_warm,
        sweep_rounds_per_s=rounds / sweep_warm,
        separate_rounds_per_s=rounds / runs_warm,
        horizon=horizon,
    )
    assert sweep_warm > 0 and runs_warm > 0
