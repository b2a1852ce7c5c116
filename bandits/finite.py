"""Where an agent's state stops being finite: per-run reports for callers that
keep the healthy runs of a batch (the experiment platform) instead of stopping.

`bandits.run` and `bandits.sweep` raise `NonFiniteAgentStateError` when any run's
final state holds a NaN or an infinity. A caller that wants to keep the other
runs computes them with `check_finite=False`, asks `finite_rows` which final
states are finite, and `first_non_finite_steps` where the failing ones went bad.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from bandits.seeds import check_seed_key, seed_keys, seed_list
from bandits.simulation import _check_pair, _run_compiled, _traced
from bandits.types import Agent, Env, EnvParams
from bandits.validation import positive_int


def finite_rows(states: Any, batch_dims: int = 1) -> np.ndarray:
    """Whether each run's state is finite: every float leaf free of NaN and inf.

    Args:
      states: agent states whose leaves share `batch_dims` leading axes, e.g.
        (S, ...) from `run_with_states` or (G, S, ...) from `sweep_with_states`.
      batch_dims: how many leading axes index runs.

    Returns:
      A bool array of the leading shape: True where the run's state is finite.
    """
    leaves = jax.tree_util.tree_leaves(states)
    if not leaves:
        raise ValueError("finite_rows needs at least one state leaf")
    shape = np.shape(leaves[0])[:batch_dims]
    finite = np.ones(shape, dtype=bool)
    for leaf in leaves:
        value = np.asarray(leaf)
        if np.issubdtype(value.dtype, np.inexact):
            flat = np.isfinite(value).reshape(*shape, -1)
            finite &= flat.all(axis=-1)
    return finite


def first_non_finite_steps(
    env: Env,
    agent: Agent,
    *,
    horizon: int,
    seeds: int | Sequence[int],
    params: EnvParams | None = None,
    resample_params: bool = False,
    seed_key: str = "split",
) -> np.ndarray:
    """The first step after which each seed's agent state is NaN or infinite.

    Re-runs `bandits.run(env, agent, ...)` (same keys, so the same runs) with a
    finiteness check after every update, which costs a reduction over the state
    per step: a diagnosis for runs known to have failed, not the fast path.

    Args:
      env, agent, horizon, seeds, params, resample_params, seed_key: as
        `bandits.run`.

    Returns:
      A (S,) int array: the 0-based step t whose update first left a NaN or inf
      in the state, or -1 where the state stays finite.
    """
    _check_pair(env, agent)
    horizon = positive_int("horizon", horizon)
    check_seed_key(seed_key, resample_params)
    seed_values = seed_list(seeds)
    if params is None:
        params = env.default_params()
    program = _run_compiled(env, agent, horizon, resample_params, seed_key, True, ())
    _, first_bad, _ = _traced(program, env, agent, seed_keys(seed_values), params)
    return np.asarray(first_bad)[: len(seed_values)]
