"""Slate LinUCB rounds per second against single-item LinUCB, same run.

Setting: the disjoint logistic linear problem with K = 10 arms and d = 20, as
single items (`LinearBernoulli-v0`, `linucb`) and as slates of L = 3 under
cascade clicks (`LinearSlate-v0`, `top_l_linucb`, which adds L ridge
observations per round), 64 seeds, T = 2,000, compile excluded; the two runs
are timed in turn (`interleaved_best_times`). Recorded: rounds per second of
both and their ratio (slate / single; a slate round costs about L rank-one
updates, an argsort of K scores and the click model, so about 1 / L is the
expectation, higher is better).

Under `--benchmark-disable` (as in `make bench-smoke`) both run once at
4 seeds x T = 200 as a smoke test; its numbers are not meaningful.
"""

from __future__ import annotations

import agents
import bandits
import envs
from tests.benchmarks.conftest import interleaved_best_times

K, D, L = 10, 20, 3
SEEDS, HORIZON = 64, 2_000
SMOKE_SEEDS, SMOKE_HORIZON = 4, 200


def _runs(seeds: int, horizon: int):
    single_env, single_params = envs.make("LinearBernoulli-v0", num_arms=K, dim=D)
    slate_env, slate_params = envs.make(
        "LinearSlate-v0", num_arms=K, dim=D, slate_size=L, click_model="cascade"
    )
    single = agents.make("linucb", num_arms=K, dim=D, alpha=1.0)
    slate = agents.make("top_l_linucb", num_arms=K, dim=D, slate_size=L, alpha=1.0)

    def run_single():
        return bandits.run(
            single_env, single, horizon=horizon, seeds=seeds, params=single_params
        )

    def run_slate():
        return bandits.run(
            slate_env, slate, horizon=horizon, seeds=seeds, params=slate_params
        )

    return run_single, run_slate


def test_slate_linucb_rounds_per_second(benchmark, record_ratio):
    if benchmark.disabled:
        run_single, run_slate = _runs(SMOKE_SEEDS, SMOKE_HORIZON)
        run_single()
        traj = benchmark(run_slate)
        assert traj.action.shape == (SMOKE_SEEDS, SMOKE_HORIZON, L)
        return

    run_single, run_slate = _runs(SEEDS, HORIZON)
    single_seconds, slate_seconds = interleaved_best_times(
        [run_single, run_slate], repeats=3
    )
    benchmark.pedantic(run_slate, rounds=3, warmup_rounds=1)
    single_rate = SEEDS * HORIZON / single_seconds
    slate_rate = SEEDS * HORIZON / slate_seconds
    record_ratio(
        "slate_linucb_vs_linucb",
        slate_rate / single_rate,
        slate_rounds_per_s=slate_rate,
        single_rounds_per_s=single_rate,
        slate_size=L,
    )
    assert slate_rate > 0 and single_rate > 0
