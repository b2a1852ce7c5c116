"""Memory a run will need, estimated from shapes before anything is allocated.

Sizes that cannot fit (`horizon = 10**12`, `num_arms = 10**9`,
`prediction_contexts = 2 * 10**8`) used to pass validation and fail after the
output folder existed. `check_memory` estimates, from the shapes alone
(`jax.eval_shape`: nothing is computed or allocated), what one task holds at its
peak, times the tasks that run at once on this machine, plus what the runner
keeps while merging a series, and refuses a run that exceeds the machine's
memory with the estimate and its largest part.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import jax
import numpy as np

from experiments.config.schema import TRAJECTORY_BYTES_PER_ROUND, Experiment

FRACTION = 0.9
"""Share of the machine's memory a run may be estimated to use."""
RECORD_BYTES = 1_000
"""Memory of one summary line held by the runner (a Python dict), generously."""


def machine_memory() -> int | None:
    """Physical memory in bytes, or None where it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def tree_bytes(tree) -> int:
    """Bytes of a pytree of arrays or shape structs (PRNG keys count 8 bytes)."""
    total = 0
    for leaf in jax.tree_util.tree_leaves(tree):
        dtype = leaf.dtype
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            itemsize = 8
        else:
            itemsize = np.dtype(dtype).itemsize
        total += math.prod(leaf.shape) * itemsize
    return total


def estimate(experiment: Experiment, parallel: int) -> dict[str, int]:
    """Estimated peak bytes by part (the largest over env settings and agents)."""
    config = experiment.config
    run = config.run
    chunk = run.resolved_chunk_size
    key = jax.random.key(0)
    parts: dict[str, int] = {}

    def keep(name: str, value: int) -> None:
        parts[name] = max(parts.get(name, 0), int(value))

    for env, agents in zip(experiment.envs, experiment.agents_by_setting, strict=True):
        params = jax.eval_shape(env.default_params)
        obs = jax.eval_shape(lambda k, e=env: e.reset(k, e.default_params())[0], key)
        instances = chunk if run.resample_params else 1
        keep("problem instances", instances * tree_bytes(params))
        keep(
            "trajectories of a chunk",
            chunk * run.horizon * TRAJECTORY_BYTES_PER_ROUND * len(agents),
        )
        for agent in agents:
            keep(
                "agent states of a chunk",
                chunk * tree_bytes(jax.eval_shape(agent.init, key)),
            )
        if run.prediction_seeds:
            keep(
                "held-out evaluation",
                # Per context: its observation, one step per arm (an observation,
                # keys and feedback each) and four (K,) result rows; generous,
                # since XLA keeps temporaries of the vmapped program.
                run.prediction_contexts
                * (4 * tree_bytes(obs) + env.num_arms * (tree_bytes(obs) + 64) + 64),
            )
    per_task = sum(parts.values())
    parts = {f"{k} (x{parallel} tasks at once)": v * parallel for k, v in parts.items()}
    series = len(experiment.config.agents) * len(experiment.envs)
    points = min(run.curve_points, run.horizon)
    parts["merged curves of a series"] = len(run.seeds) * points * 24
    parts["summary lines"] = len(run.seeds) * series * RECORD_BYTES
    parts["total"] = per_task * parallel + sum(
        v for k, v in parts.items() if "tasks at once" not in k
    )
    return parts


def check_memory(experiment: Experiment, parallel: int) -> Mapping[str, int]:
    """Raises if the estimate exceeds `FRACTION` of this machine's memory.

    Raises:
      BanditConfigError: naming the estimate, its largest part and the memory.
    """
    from bandits.validation import BanditConfigError

    parts = estimate(experiment, parallel)
    memory = machine_memory()
    if memory is not None and parts["total"] > FRACTION * memory:
        largest = max((k for k in parts if k != "total"), key=parts.__getitem__)
        raise BanditConfigError(
            f"the run needs about {_gib(parts['total'])} of memory (largest part: "
            f"{largest}, {_gib(parts[largest])}); this machine has {_gib(memory)}. "
            "Lower run.horizon, run.seeds, run.chunk_size, run.curve_points or "
            "run.prediction_contexts, or the env's sizes"
        )
    return parts


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"
