"""Running one task (a program on a seed chunk) in any worker process.

`execute_task(spec)` takes the plain dictionary built by
`experiments.plan.planner.plan`, rebuilds the env and agent(s) from the
registries, simulates the chunk with `bandits.run` (or `bandits.sweep` for traced
settings) and returns plain data:
downsampled cumulative curves per series, reward-model metrics and the compute
cost. No user object crosses a process boundary; only this dictionary (plain
values and the frozen `AgentSpec`) and the NumPy arrays of the result do.

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
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

import bandits
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


def execute_task(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Simulates one task and returns its results as plain data.

    Args:
      spec: a task spec (`experiments.plan.planner.Task.spec`).

    Returns:
      `{"task", "series": [{"label", "curves": {...}, "prediction"}], "cost",
      "worker"}`; `curves` holds the `experiments.store.storage.Curves` fields as arrays
      and `prediction` a list of per-seed metric dictionaries (or `None`).

    Raises:
      WorkerSetupError: the process has more than one JAX device, or the spec
        comes from another version.
      bandits.NonFiniteAgentStateError: an agent's state became NaN or inf.
    """
    _check_worker(spec)
    env = spec_env(spec)
    params = env.default_params()
    horizon = int(spec["horizon"])
    seeds = [int(s) for s in spec["seeds"]]
    batch = padded_seeds(seeds, int(spec["chunk_size"]))
    swept = {k: [float(v) for v in vs] for k, vs in spec["agent"]["swept"].items()}
    if swept:
        agent_fn, agent = spec_agent_fn(spec), None
        first = build_agent(
            spec["agent"]["spec"].with_values({k: v[0] for k, v in swept.items()})
        )
    else:
        agent_fn, agent = None, spec_agent(spec)
        first = agent
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
        )
        if swept:
            # Every grid point was built, hence checked, with the config.
            trajectory, states = bandits.sweep_with_states(
                env, agent_fn, swept, check_values=False, **common
            )
        else:
            trajectory, states = bandits.run_with_states(env, agent, **common)
            trajectory = jax.tree_util.tree_map(lambda x: x[None], trajectory)
        regret, reward, optimal = jax.device_get(
            (trajectory.regret, trajectory.reward, trajectory.optimal)
        )
    del trajectory
    count = regret.shape[0]
    curves = [
        _curves(spec, seeds, regret[g], reward[g], optimal[g]) for g in range(count)
    ]
    prediction, prediction_s = _predictions(
        spec, env, params, evaluated, states, agent, agent_fn, swept, count
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
                "curves": curves[g]._asdict(),
                "prediction": prediction[g] if prediction else None,
            }
            for g in range(count)
        ],
        "cost": cost,
        "worker": {"host": platform.node(), "pid": os.getpid()},
    }


def _check_worker(spec: Mapping[str, Any]) -> None:
    """Refuses a spec of another version, and a process with several devices."""
    if spec.get("format") != SPEC_FORMAT:
        raise WorkerSetupError(
            f"task format {spec.get('format')!r} is not {SPEC_FORMAT}: the worker "
            "runs another version of the bandits package"
        )
    if jax.local_device_count() != 1:
        raise WorkerSetupError(
            f"a worker must have exactly one JAX device, found "
            f"{jax.local_device_count()}; start it with {SINGLE_DEVICE_ENV}=1 "
            "(results are bit-identical only for one device per worker)"
        )


def _curves(spec, seeds, regret, reward, optimal) -> storage.Curves:
    """The stored curves of one series (padding seeds dropped)."""
    n = len(seeds)
    trajectory = bandits.Trajectory(
        action=None,
        reward=reward[:n],
        expected_reward=None,
        optimal_expected_reward=None,
        regret=regret[:n],
        optimal=optimal[:n],
    )
    return storage.curves_from_trajectory(
        trajectory, seeds, int(spec["curve_points"]), spec["curve_spacing"]
    )


def _predictions(spec, env, params, seeds, states, agent, agent_fn, swept, count):
    """Per-setting, per-seed reward-model metrics (or `None`) and their time.

    `states` are the final agent states of `seeds` from the run.
    """
    if not seeds:
        return None, 0.0
    start = time.perf_counter()
    per_setting = evaluation.evaluate_states(
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
    for g, per_seed in enumerate(per_setting):
        for seed, metrics in zip(seeds, per_seed, strict=True):
            metrics["seed"] = seed
        per_setting[g] = per_seed
    if len(per_setting) != count:
        raise RuntimeError(
            f"expected {count} evaluated settings, got {len(per_setting)}"
        )
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
