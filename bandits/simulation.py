"""The simulation loop: one `lax.scan` over time, `vmap` over seeds, one `jit`."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bandits.types import Agent, Env, EnvParams, Observation, Trajectory
from bandits.validation import BanditConfigError, positive_int


class NonFiniteAgentStateError(FloatingPointError):
    """An agent's state became NaN or infinite during a run."""


def simulate(
    key: jax.Array,
    env: Env,
    params: EnvParams,
    agent: Agent,
    horizon: int,
) -> Trajectory:
    """Runs one agent on one environment instance for `horizon` steps.

    The loop is a single `jax.lax.scan`; it can be jitted and vmapped. Per-step
    keys come from one split of `key` (reset, init, then one per step).

    Args:
      key: a JAX PRNG key.
      env: a functional environment (static configuration).
      params: the environment's problem instance (a pytree).
      agent: the policy to run.
      horizon: number of rounds T (a Python int).

    Returns:
      A `Trajectory` whose leaves have leading shape (T,).
    """
    trajectory, _ = _simulate(key, env, params, agent, horizon)
    return trajectory


def _simulate(
    key: jax.Array, env: Env, params: EnvParams, agent: Agent, horizon: int
) -> tuple[Trajectory, jax.Array]:
    """`simulate` plus the first step at which the agent state was non-finite."""
    key_reset, key_init, key_steps = jax.random.split(key, 3)
    obs, env_state = env.reset(key_reset, params)
    agent_state = agent.init(key_init)
    step_keys = jax.random.split(key_steps, horizon)
    first_bad = jnp.asarray(-1, jnp.int32)

    def step(carry, inputs):
        obs, env_state, agent_state, first_bad = carry
        t, key_t = inputs
        key_act, key_env, key_update = jax.random.split(key_t, 3)
        action = jnp.asarray(agent.act(key_act, agent_state, obs), jnp.int32)
        next_obs, env_state, feedback = env.step(key_env, env_state, action, params)
        agent_state = agent.update(key_update, agent_state, obs, action, feedback.reward)
        record = _record(obs, action, feedback.reward, feedback.expected_rewards)
        finite = _all_finite(agent_state)
        first_bad = jnp.where((first_bad < 0) & ~finite, t, first_bad)
        return (next_obs, env_state, agent_state, first_bad), record

    steps = jnp.arange(horizon, dtype=jnp.int32)
    (_, _, _, first_bad), trajectory = jax.lax.scan(
        step, (obs, env_state, agent_state, first_bad), (steps, step_keys)
    )
    return trajectory, first_bad


def _record(
    obs: Observation, action: jax.Array, reward: jax.Array, expected: jax.Array
) -> Trajectory:
    """Exact pseudo-regret of one step against the best allowed arm."""
    allowed = jnp.where(obs.mask, expected, -jnp.inf)
    best = jnp.max(allowed)
    chosen = expected[action]
    regret = best - chosen
    return Trajectory(
        action=action,
        reward=jnp.asarray(reward, expected.dtype),
        expected_reward=chosen,
        optimal_expected_reward=best,
        regret=regret,
        optimal=chosen >= best,
    )


def _all_finite(tree: Any) -> jax.Array:
    leaves = [
        jnp.all(jnp.isfinite(leaf))
        for leaf in jax.tree_util.tree_leaves(tree)
        if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact)
    ]
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack(leaves))


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """`seeds` as explicit integers: an int S means seeds 0..S-1."""
    if isinstance(seeds, int | np.integer) and not isinstance(seeds, bool):
        return list(range(positive_int("seeds", int(seeds))))
    try:
        values = [int(s) for s in seeds]  # type: ignore[union-attr]
    except TypeError:
        raise BanditConfigError(
            f"seeds must be a positive integer or a list of integers, got {seeds!r}"
        ) from None
    if not values:
        raise BanditConfigError("seeds must not be empty")
    if any(s < 0 for s in values):
        raise BanditConfigError(f"seeds must be >= 0, got {values}")
    return values


def run(
    env: Env,
    agent: Agent,
    *,
    horizon: int,
    seeds: int | Sequence[int],
    params: EnvParams | None = None,
    resample_params: bool = False,
    check_finite: bool = True,
) -> Trajectory:
    """Runs `agent` on `env` for every seed, compiled once and vmapped over seeds.

    Args:
      env: a functional environment.
      agent: the policy.
      horizon: rounds per run, T > 0.
      seeds: a number of seeds S (seeds 0..S-1) or an explicit list of seeds.
      params: the problem instance; `None` uses `env.default_params()`.
      resample_params: draw a fresh problem instance per seed with
        `env.sample_params` (from the seed's key) instead of sharing `params`.
      check_finite: raise `NonFiniteAgentStateError` naming the agent, seed and
        step if the agent's state becomes NaN or infinite.

    Returns:
      A `Trajectory` with leaves shaped (S, T).
    """
    horizon = positive_int("horizon", horizon)
    seed_values = seed_list(seeds)
    if params is None:
        params = env.default_params()
    keys = jnp.stack([jax.random.key(s) for s in seed_values])
    trajectory, first_bad = _run_compiled(env, agent, horizon, resample_params)(
        keys, params
    )
    if check_finite:
        first_bad = np.asarray(first_bad)
        bad = np.flatnonzero(first_bad >= 0)
        if bad.size:
            i = int(bad[0])
            raise NonFiniteAgentStateError(
                f"agent {agent.name!r} produced a non-finite state at seed "
                f"{seed_values[i]}, step {int(first_bad[i])} "
                f"({bad.size} of {len(seed_values)} seeds affected)"
            )
    return trajectory


@functools.cache
def _run_compiled(env: Env, agent: Agent, horizon: int, resample_params: bool):
    """One jitted, seed-vmapped program per (env, agent, horizon) shape."""

    def one_seed(key: jax.Array, params: EnvParams):
        key_params, key_run = jax.random.split(key)
        if resample_params:
            params = env.sample_params(key_params)
        return _simulate(key_run, env, params, agent, horizon)

    return jax.jit(jax.vmap(one_seed, in_axes=(0, None)))
