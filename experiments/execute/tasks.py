"""Running one task (a program on a seed chunk) in any worker process.

`execute_task(spec)` takes the plain dictionary built by
`experiments.plan.planner.plan`, rebuilds the env and agent(s) from the
registries, simulates the chunk with `bandits.run` (or `bandits.sweep` for traced
settings) and returns plain data:
downsampled cumulative curves per series, reward-model metrics and the compute
cost. No user object crosses a process boundary; only this dictionary (plain
values and the frozen `AgentSpec`) and the NumPy arrays of the result do.

A run whose agent state turns NaN or infinite does not stop the task: that
series comes back marked `failed` (with the first bad seed and step) and the
task's other series, the healthy grid points of the same compiled sweep, come
back as usual (see `simulate_keeping_healthy`).

Bit-identical results. XLA picks kernels by batch shape, so float32 results for a
seed can differ in the last bits between batch sizes, and between a batch split
across several devices and the same batch on one. Every task therefore runs a
fixed batch of `chunk_size` seeds on exactly one device: the process must have a
single JAX device (`BANDITS_CPU_DEVICES=1`, which the executors set for their
workers). Then a seed's numbers do not depend on the executor, the number of
workers, the order of the chunks or an interruption.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import jax
import numpy as np

import bandits
from bandits.finite import finite_rows, first_non_finite_steps
from bandits.metrics import click_rate_per_position, ndcg
from bandits.types import SlateRecord
from experiments.config.loader import build_agent
from experiments.execute import evaluation
from experiments.execute.progress import CompileClock, PeakMemory
from experiments.plan.planner import (
    SPEC_FORMAT,
    padded_seeds,
    spec_agent,
    spec_agent_fn,
    spec_env,
)
from experiments.store import storage

SINGLE_DEVICE_ENV = "BANDITS_CPU_DEVICES"


CELL_TASK = "cell"
"""The `kind` of a study cell's spec (`experiments.execute.cells`)."""


class WorkerSetupError(RuntimeError):
    """A worker process cannot run tasks (e.g. it has several JAX devices)."""


def worker_info() -> dict[str, Any]:
    """What a worker runs on: JAX devices, versions, host (checked before a run)."""
    return {
        "devices": jax.local_device_count(),
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "spec_format": SPEC_FORMAT,
        "host": platform.node(),
        "pid": os.getpid(),
    }


def _task_agents(spec: Mapping[str, Any]) -> tuple[dict, Any, Any, Any]:
    """(swept values, agent function of a sweep or None, agent or None, the first
    grid point's agent)."""
    swept = {k: [float(v) for v in vs] for k, vs in spec["agent"]["swept"].items()}
    if not swept:
        agent = spec_agent(spec)
        return swept, None, agent, agent
    first = build_agent(
        spec["agent"]["spec"].with_values({k: v[0] for k, v in swept.items()})
    )
    return swept, spec_agent_fn(spec), None, first


MAPPINGS_FRACTION = 0.5
"""`release_compiled_programs_if_crowded` drops the compiled programs when the
process holds more than this fraction of the memory mappings Linux allows it."""


def memory_mappings() -> tuple[int, int] | None:
    """(mappings this process holds, the most it may hold), or None where the
    system does not tell (not Linux)."""
    try:
        limit = int(Path("/proc/sys/vm/max_map_count").read_text())
        with open("/proc/self/maps", "rb") as maps:
            count = sum(1 for _ in maps)
    except (OSError, ValueError):
        return None
    return count, limit


def release_compiled_programs_if_crowded() -> bool:
    """Drops JAX's in-memory compiled programs when the process's memory
    mappings pass `MAPPINGS_FRACTION` of the limit; returns whether it did.

    Every compiled program a process holds costs about 20 mappings and Linux
    allows 65,530 by default (vm.max_map_count), so a worker that has run a
    few thousand distinct programs would crash inside XLA (segfault or abort)
    on the next one. The dropped programs come back from the persistent
    compilation cache when a later task needs them."""
    mappings = memory_mappings()
    if mappings is None or mappings[0] <= MAPPINGS_FRACTION * mappings[1]:
        return False
    jax.clear_caches()
    return True


def execute_task(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Simulates one task and returns its results as plain data.

    Args:
      spec: a task spec (`experiments.plan.planner.Task.spec`), or a study
        cell's (`kind = "cell"`, `experiments.execute.cells`), whose result is
        `cells.execute_cell`'s.

    Returns:
      `{"task", "series": [{"label", "curves": {...}, "prediction", "failed"}],
      "cost", "worker"}`; `curves` holds the `experiments.store.storage.Curves`
      fields as arrays and `prediction` a list of per-seed metric dictionaries
      (or `None`). A series whose agent state became NaN or inf has `curves`
      None and `failed` `{"seed", "step", "seeds"}` (the first bad seed, the
      0-based step whose update first left a NaN or inf in its state, None if a
      re-run does not show it, and every bad seed of the chunk); others have
      `failed` None.

    Raises:
      WorkerSetupError: the process has more than one JAX device, or the spec
        comes from another version.
    """
    if spec.get("kind") == CELL_TASK:
        from experiments.execute import cells  # it imports the executors

        _check_devices()
        return cells.execute_cell(spec)
    return _simulate_task(spec)


def _simulate_task(spec: Mapping[str, Any]) -> dict[str, Any]:
    """`execute_task` for a chunk of a regret experiment."""
    _check_worker(spec)
    release_compiled_programs_if_crowded()
    env = spec_env(spec)
    params = env.default_params()
    horizon = int(spec["horizon"])
    seeds = [int(s) for s in spec["seeds"]]
    batch = padded_seeds(seeds, int(spec["chunk_size"]))
    swept, agent_fn, agent, first = _task_agents(spec)
    # The reward model is evaluated on the final states the run itself keeps.
    evaluated = [int(s) for s in spec.get("prediction_seeds", [])]
    if not evaluation.has_reward_model(first):
        evaluated = []
    start = time.perf_counter()
    with CompileClock() as clock, PeakMemory() as memory:
        common = dict(
            horizon=horizon,
            seeds=batch,
            states_of=evaluated,
            params=params,
            resample_params=bool(spec["resample_params"]),
            seed_key=spec["seed_key"],
        )
        trajectory, states, failed = simulate_keeping_healthy(
            spec, env, agent, agent_fn, swept, common
        )
        if trajectory is not None:
            regret, reward, optimal, slate = jax.device_get(
                (
                    trajectory.regret,
                    trajectory.reward,
                    trajectory.optimal,
                    trajectory.slate,
                )
            )
    del trajectory
    count = len(spec["labels"])
    curves = [
        None if g in failed else _curves(spec, seeds, regret[g], reward[g], optimal[g])
        for g in range(count)
    ]
    slates = [
        None
        if g in failed or slate is None
        else slate_summaries(SlateRecord(*(leaf[g] for leaf in slate)), seeds)
        for g in range(count)
    ]
    prediction, prediction_s = _predictions(
        spec, env, params, evaluated, states, agent, agent_fn, swept, count, failed
    )
    rounds = count * len(seeds) * horizon
    cost = {
        "wall_s": time.perf_counter() - start,
        "compile_s": clock.compile_s,
        "run_s": clock.run_s,
        "rounds": rounds,
        "rounds_per_s": rounds / clock.run_s if clock.run_s > 0 else None,
        "batch": len(batch),
        "programs": count,
        "peak_memory_bytes": memory.peak_bytes,
        "memory_increase_bytes": memory.increase_bytes,
        "prediction_s": prediction_s,
    }
    return {
        "task": spec["task"],
        "series": [
            {
                "label": spec["labels"][g],
                "curves": None if (c := curves[g]) is None else c._asdict(),
                "prediction": prediction[g] if prediction else None,
                "failed": failed.get(g),
                **({} if slates[g] is None else {"slate": slates[g]}),
            }
            for g in range(count)
        ],
        "cost": cost,
        "worker": {"host": platform.node(), "pid": os.getpid()},
    }


def simulate_keeping_healthy(spec, env, agent, agent_fn, swept, common):
    """Simulates a task's program; runs whose agent state turns non-finite are
    reported instead of stopping the task.

    The fast path is the plain `bandits.run_with_states` / `sweep_with_states`
    call (unchanged numbers). Only when it raises `NonFiniteAgentStateError` is
    the sweep computed again without the check, with every seed's final state,
    to tell the healthy grid points (whose curves are kept) from the failed
    ones, and each failed one is re-run with a per-step check to name the step.

    Returns:
      `(trajectory, states, failed)`: the trajectory with leaves (G, S, T) (None
      if the task's only series failed), the final states of
      `common["states_of"]` (None if none), and `{grid point: failure}` (see
      `execute_task`).
    """
    if not swept:
        try:
            trajectory, states = bandits.run_with_states(env, agent, **common)
        except bandits.NonFiniteAgentStateError:
            return None, None, {0: _failure(env, agent, common, [])}
        return jax.tree_util.tree_map(lambda x: x[None], trajectory), states, {}
    try:
        # Every grid point was built, hence checked, with the config.
        trajectory, states = bandits.sweep_with_states(
            env, agent_fn, swept, check_values=False, **common
        )
        return trajectory, states, {}
    except bandits.NonFiniteAgentStateError:
        pass
    batch = list(common["seeds"])
    unique = list(dict.fromkeys(batch))  # padding repeats the last seed
    trajectory, every = bandits.sweep_with_states(
        env,
        agent_fn,
        swept,
        check_values=False,
        check_finite=False,
        **{**common, "states_of": unique},
    )
    finite = finite_rows(every, batch_dims=2)  # (G, len(unique))
    failed = {}
    for g in np.flatnonzero(~finite.all(axis=1)):
        point = {k: v[g] for k, v in swept.items()}
        bad = [s for s, ok in zip(unique, finite[g], strict=True) if not ok]
        built = build_agent(spec["agent"]["spec"].with_values(point))
        failed[int(g)] = _failure(env, built, common, bad)
    columns = [unique.index(s) for s in common["states_of"]]
    states = (
        jax.tree_util.tree_map(lambda leaf: leaf[:, columns], every)
        if columns
        else None
    )
    return trajectory, states, failed


def _failure(env, agent, common, bad_seeds) -> dict[str, Any]:
    """The failure report of one series: its first bad seed and the step at
    which that seed's state first held a NaN or inf (a per-step re-run of the
    chunk's batch; None if the re-run stays finite). Without `bad_seeds` (a
    failed `run`, which names no seed), the seeds the re-run finds bad."""
    batch = list(common["seeds"])
    steps = first_non_finite_steps(
        env,
        agent,
        horizon=common["horizon"],
        seeds=batch,
        params=common["params"],
        resample_params=common["resample_params"],
        seed_key=common["seed_key"],
    )
    step_of = {s: int(t) for s, t in zip(batch, steps, strict=True) if t >= 0}
    bad = list(dict.fromkeys(bad_seeds)) or list(step_of)
    seed = next((s for s in bad if s in step_of), bad[0] if bad else None)
    return {"seed": seed, "step": step_of.get(seed), "seeds": bad}


def _check_worker(spec: Mapping[str, Any]) -> None:
    """Refuses a spec of another version, and a process with several devices."""
    if spec.get("format") != SPEC_FORMAT:
        raise WorkerSetupError(
            f"task format {spec.get('format')!r} is not {SPEC_FORMAT}: the worker "
            "runs another version of the bandits package"
        )
    _check_devices()


def _check_devices() -> None:
    """Refuses a process with several JAX devices."""
    if jax.local_device_count() != 1:
        raise WorkerSetupError(
            f"a worker must have exactly one JAX device, found "
            f"{jax.local_device_count()}; start it with {SINGLE_DEVICE_ENV}=1 "
            "(results are bit-identical only for one device per worker)"
        )


# A `Trajectory` field the consumer does not read (the type says array).
_UNUSED = cast(jax.Array, None)


def _curves(spec, seeds, regret, reward, optimal) -> storage.Curves:
    """The stored curves of one series (padding seeds dropped)."""
    n = len(seeds)
    trajectory = bandits.Trajectory(
        action=_UNUSED,
        reward=reward[:n],
        expected_reward=_UNUSED,
        optimal_expected_reward=_UNUSED,
        regret=regret[:n],
        optimal=optimal[:n],
    )
    return storage.curves_from_trajectory(
        trajectory, seeds, int(spec["curve_points"]), spec["curve_spacing"]
    )


def slate_summaries(slate: SlateRecord, seeds: Sequence[int]) -> dict[str, list]:
    """The stored per-seed summaries of a slate series (padding seeds dropped).

    Args:
      slate: the series' slate record, leaves (S', T, L) or (S', T) with
        S' >= len(seeds) (the padded batch).
      seeds: the chunk's seeds (the first len(seeds) rows of the batch).

    Returns:
      `{"seeds", "click_rate", "expected_clicks", "ndcg"}`: per seed, the
      sampled click rate of every position over the run (`bandits.metrics.
      click_rate_per_position`), the mean exact expected click of every
      position, both (L,), and the mean NDCG@L over the run
      (`bandits.metrics.ndcg`).
    """
    n = len(seeds)
    # NumPy leaves, where the type says jax.Array: the metrics take either.
    kept = SlateRecord(*(cast(jax.Array, np.asarray(leaf)[:n]) for leaf in slate))
    trajectory = bandits.Trajectory(
        action=_UNUSED,
        reward=_UNUSED,
        expected_reward=_UNUSED,
        optimal_expected_reward=_UNUSED,
        regret=_UNUSED,
        optimal=_UNUSED,
        slate=kept,
    )
    expected = np.asarray(kept.expected_clicks, np.float64).mean(axis=-2)
    return {
        "seeds": [int(s) for s in seeds],
        "click_rate": click_rate_per_position(trajectory).tolist(),
        "expected_clicks": expected.tolist(),
        "ndcg": ndcg(trajectory).mean(axis=-1).tolist(),
    }


def _predictions(
    spec, env, params, seeds, states, agent, agent_fn, swept, count, failed
):
    """Per-setting, per-seed reward-model metrics (or `None`) and their time.

    `states` are the final agent states of `seeds` from the run; settings in
    `failed` are not evaluated (their entry is None).
    """
    kept = [g for g in range(count) if g not in failed]
    if not seeds or not kept or states is None:
        return None, 0.0
    start = time.perf_counter()
    if failed and swept:
        swept = {k: [v[g] for g in kept] for k, v in swept.items()}
        states = jax.tree_util.tree_map(lambda leaf: leaf[np.asarray(kept)], states)
    evaluated = evaluation.evaluate_states(
        env,
        params,
        states,
        seeds,
        int(spec["prediction_contexts"]),
        bool(spec["resample_params"]),
        agent=agent,
        agent_fn=agent_fn,
        swept=swept or None,
    )
    if len(evaluated) != len(kept):
        raise RuntimeError(
            f"expected {len(kept)} evaluated settings, got {len(evaluated)}"
        )
    per_setting: list[list[dict] | None] = [None] * count
    for g, per_seed in zip(kept, evaluated, strict=True):
        for seed, metrics in zip(seeds, per_seed, strict=True):
            metrics["seed"] = seed
        per_setting[g] = per_seed
    return per_setting, time.perf_counter() - start


def curves_from_result(series: Mapping[str, Any]) -> storage.Curves:
    """The `Curves` of one series entry of an `execute_task` result."""
    c = series["curves"]
    return storage.Curves(
        seeds=np.asarray(c["seeds"], np.int64),
        steps=np.asarray(c["steps"], np.int64),
        cumulative_regret=np.asarray(c["cumulative_regret"], np.float64),
        cumulative_reward=np.asarray(c["cumulative_reward"], np.float64),
        cumulative_optimal=np.asarray(c["cumulative_optimal"], np.int64),
    )
