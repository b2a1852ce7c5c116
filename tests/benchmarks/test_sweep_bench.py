"""A LinUCB alpha sweep as one compiled program against separate runs.

Setting (platform issue): Linear-v0 (K=10, d=20), LinUCB with 8 values of alpha,
64 seeds each, T=10,000, measured twice, each against its own reference in the
same benchmark run (target >= 3x):

1. `test_sweep_vs_separate_runs`, the library: `bandits.sweep` runs the 8 x 64
   simulations as ONE compiled program (alpha traced, one flat batch of rows);
   the reference is 8 separate `bandits.run` calls (each 64 seeds, compiled once
   per agent). Two ratios:

   * `sweep_vs_separate_with_compile`: first calls from cold caches, so the 8
     separate runs pay 8 traces and compiles and the sweep pays one; what a user
     running a fresh sweep waits for. Before each side, the caches are cleared and
     the same unrelated two-round run (LinTS) is made, so neither side pays the
     one-off costs shared by every program (the seed-key and transfer kernels).
     Best of 3 cold starts per side: single cold starts vary by +/- 30% here.
   * `sweep_vs_separate_warm`: compiled programs reused, best of 3 after a
     warm-up; the simulation work alone.

2. `test_platform_sweep_vs_separate_runs`, the experiment platform: one config
   with `grid = {alpha = [...]}` through
   `experiments.execute.runner.run_experiment` (what
   `bandits run` calls: worker processes, stored chunks, reward-model evaluation,
   report) against 8 configs with one alpha each. Ratio
   `platform_sweep_vs_separate`.

Under `make bench-smoke` (`--benchmark-disable`) both shrink to smoke tests (2 alphas,
T=1,000, each side once; the platform test with 4 seeds); their ratios are not
meaningful.
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
SMOKE_HORIZON = 1_000  # compiles in half the time of T=300 here (XLA CPU)
ALPHAS = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4]


def _timed(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def test_sweep_vs_separate_runs(benchmark, record_ratio, request):
    disabled = request.config.getoption("benchmark_disable")
    horizon = SMOKE_HORIZON if disabled else HORIZON
    alphas = ALPHAS[:2] if disabled else ALPHAS
    env, params = envs.make("Linear-v0", num_arms=NUM_ARMS, dim=DIM)
    agent_fn = functools.partial(agents.linucb, num_arms=NUM_ARMS, dim=DIM)
    separate = [agent_fn(alpha=alpha) for alpha in alphas]

    def sweep():
        return bandits.sweep(
            env,
            agent_fn,
            {"alpha": alphas},
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
        if disabled:  # smoke test: first calls compile anyway, no warm-up needed
            return _timed(fn)
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
    for index in (0, len(alphas) - 1):
        np.testing.assert_array_equal(
            np.asarray(swept.regret[index]), np.asarray(single[index].regret)
        )

    repeats = 1 if disabled else 3
    sweep_warm = best_time(sweep, repeats=repeats)
    runs_warm = best_time(runs, repeats=repeats)
    benchmark.pedantic(sweep, rounds=1 if disabled else 3, warmup_rounds=0)

    rounds = len(alphas) * SEEDS * horizon
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


def _platform_config(agent: dict, horizon: int, seeds: int):
    """A `bandits run` config: one agent table on the benchmark's Linear-v0."""
    from experiments.config.loader import parse_config

    return parse_config(
        {
            "name": "sweep-bench",
            "env": {"id": "Linear-v0", "params": {"num_arms": NUM_ARMS, "dim": DIM}},
            "run": {"horizon": horizon, "seeds": seeds},
            "agents": [agent],
        }
    )


def _seed_results(directory, label: str) -> dict[str, list[float]]:
    """Per-seed final regret and optimal fraction of one stored series, by seed."""
    from experiments.store import storage

    records = storage.read_summaries(directory / "summaries.jsonl")
    rows = sorted(
        (r for r in records if r["kind"] == "seed" and r["agent"] == label),
        key=lambda r: r["seed"],
    )
    return {k: [r[k] for r in rows] for k in ("final_regret", "optimal_fraction")}


def test_platform_sweep_vs_separate_runs(benchmark, record_ratio, request, tmp_path):
    """The same comparison through the experiment platform, as `bandits run` runs it.

    One config whose `[[agents]]` table has `grid = {alpha = [8 values]}` (one
    compiled program per worker, one report with sensitivity plots) against 8
    configs with one alpha each, run one after another (8 compiles per worker, 8
    reports): what a researcher waits for with and without the sweep. Each side
    starts from fresh local worker processes that have already imported everything
    and run the same unrelated warm-up config, so process start-up is not counted.
    Under `make bench-smoke` it runs 2 alphas x 4 seeds x T=1,000 once, as a smoke test.
    """
    from experiments.execute.executors import LocalExecutor, _discard_pool
    from experiments.execute.runner import run_experiment

    disabled = request.config.getoption("benchmark_disable")
    horizon, seeds = (SMOKE_HORIZON, 4) if disabled else (HORIZON, SEEDS)
    alphas = ALPHAS[:2] if disabled else ALPHAS
    sweep = [
        _platform_config({"name": "linucb", "grid": {"alpha": alphas}}, horizon, seeds)
    ]
    separate = [
        _platform_config(
            {"name": "linucb", "hyperparameters": {"alpha": a}}, horizon, seeds
        )
        for a in alphas
    ]
    warm_up = _platform_config({"name": "lints"}, 2, seeds)

    def fresh_workers(tag: str) -> None:
        """New worker processes, warmed up by the same unrelated config."""
        if disabled:  # the smoke test reuses warm workers
            return
        _discard_pool(LocalExecutor().workers)
        run_experiment(
            warm_up,
            tmp_path / f"{tag}-warm-up",
            progress=False,
            executor=LocalExecutor(),
        )

    def timed(tag: str, configs) -> float:
        """Wall time of running `configs` one after another."""
        start = time.perf_counter()
        for index, config in enumerate(configs):
            run_experiment(
                config,
                tmp_path / f"{tag}-{index}",
                progress=False,
                executor=LocalExecutor(),
            )
        return time.perf_counter() - start

    def sweep_set_up():
        fresh_workers("sweep")
        return ("sweep", sweep), {}

    try:
        fresh_workers("separate")
        separate_s = timed("separate", separate)
        # The sweep side is the benchmark's saved timing (set-up not included).
        sweep_s = benchmark.pedantic(timed, setup=sweep_set_up, rounds=1, iterations=1)
    finally:
        _discard_pool(LocalExecutor().workers)

    # The same per-seed results either way, to float32 rounding: a worker's batch
    # is 8 x 32 rows for the sweep and 32 for a separate run, XLA picks kernels by
    # batch shape, and where two arms' expected rewards tie to the last bit the
    # "optimal" flag or the action can flip (a few steps in 10,000 for one seed
    # here). Neighbouring alphas differ by far more than these tolerances.
    for index in (0, len(alphas) - 1):
        swept = _seed_results(tmp_path / "sweep-0", f"linucb alpha={alphas[index]:g}")
        single = _seed_results(tmp_path / f"separate-{index}", "linucb")
        assert len(swept["final_regret"]) == seeds
        np.testing.assert_allclose(
            swept["final_regret"], single["final_regret"], rtol=1e-3
        )
        np.testing.assert_allclose(
            swept["optimal_fraction"], single["optimal_fraction"], atol=1e-3
        )
    record_ratio(
        "platform_sweep_vs_separate",
        separate_s / sweep_s,
        platform_sweep_s=sweep_s,
        platform_separate_s=separate_s,
        horizon=horizon,
        seeds=seeds,
    )
