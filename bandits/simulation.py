"""The simulation loop: one `lax.scan` over time, `vmap` over seeds, one `jit`."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bandits.records import agent_reward, record
from bandits.seeds import check_seed_key, seed_keys, seed_list
from bandits.types import (
    Agent,
    Env,
    EnvParams,
    Trajectory,
)
from bandits.validation import BanditConfigError, positive_int


class NonFiniteAgentStateError(FloatingPointError):
    """An agent's state became NaN or infinite during a run."""


# Jitted programs kept per process, least recently used dropped first: each holds
# its compiled executables, so a long session that runs many shapes stays bounded.
# Every program cache in the project (here and in
# `experiments.execute.evaluation`) uses it.
PROGRAM_CACHE_SIZE = 64


def simulate(
    key: jax.Array,
    env: Env,
    params: EnvParams,
    agent: Agent,
    horizon: int,
) -> Trajectory:
    """Runs one agent on one environment instance for `horizon` steps.

    The loop is a single `jax.lax.scan`; it can be jitted and vmapped. Keys: `key`
    splits into (reset, init, steps); the steps key splits into one key per round,
    and each round's key into (act, env, update).

    Args:
      key: a JAX PRNG key.
      env: a functional environment (static configuration).
      params: the environment's problem instance (a pytree).
      agent: the policy to run.
      horizon: number of rounds T (a Python int).

    Returns:
      A `Trajectory` whose leaves have leading shape (T,).
    """
    trajectory, _, _ = _simulate(
        key, env, params, agent, horizon, check_each_step=False
    )
    return trajectory


def simulate_with_state(
    key: jax.Array,
    env: Env,
    params: EnvParams,
    agent: Agent,
    horizon: int,
) -> tuple[Trajectory, Any]:
    """`simulate`, also returning the agent's final state (same keys, same
    program body), e.g. to replay one seed of a batched run and inspect what it
    learned."""
    trajectory, agent_state, _ = _simulate(
        key, env, params, agent, horizon, check_each_step=False
    )
    return trajectory, agent_state


def _simulate(
    key: jax.Array,
    env: Env,
    params: EnvParams,
    agent: Agent,
    horizon: int,
    check_each_step: bool,
) -> tuple[Trajectory, Any, jax.Array]:
    """`simulate`, plus the final agent state and a finiteness report on it.

    With `check_each_step=False` (the fast path) the report is a bool: is the final
    state finite. With `check_each_step=True` it is the first step after which the
    state was non-finite (-1 if never), at the cost of a reduction per step.
    """
    key_reset, key_init, key_steps = jax.random.split(key, 3)
    obs, env_state = env.reset(key_reset, params)
    agent_state = agent.init(key_init)
    # All per-round keys are derived up front, outside the loop: (T, 3) keys.
    round_keys = jax.vmap(lambda k: jax.random.split(k, 3))(
        jax.random.split(key_steps, horizon)
    )

    def step(carry, inputs):
        obs, env_state, agent_state, first_bad = carry
        t, keys_t = inputs
        key_act, key_env, key_update = keys_t[0], keys_t[1], keys_t[2]
        action = jnp.asarray(agent.act(key_act, agent_state, obs), jnp.int32)
        next_obs, env_state, feedback = env.step(key_env, env_state, action, params)
        agent_state = agent.update(
            key_update, agent_state, obs, action, agent_reward(feedback)
        )
        row = record(
            obs,
            action,
            feedback.reward,
            feedback.expected_rewards,
            getattr(feedback, "slate", None),
        )
        if check_each_step:
            bad_now = (first_bad < 0) & ~_all_finite(agent_state)
            first_bad = jnp.where(bad_now, t, first_bad)
        return (next_obs, env_state, agent_state, first_bad), row

    steps = jnp.arange(horizon, dtype=jnp.int32)
    first_bad = jnp.asarray(-1, jnp.int32)
    (_, _, agent_state, first_bad), trajectory = jax.lax.scan(
        step, (obs, env_state, agent_state, first_bad), (steps, round_keys)
    )
    if check_each_step:
        return trajectory, agent_state, first_bad
    return trajectory, agent_state, _all_finite(agent_state)


def _all_finite(tree: Any) -> jax.Array:
    leaves = [
        jnp.all(jnp.isfinite(leaf))
        for leaf in jax.tree_util.tree_leaves(tree)
        if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact)
    ]
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack(leaves))


def run(
    env: Env,
    agent: Agent,
    *,
    horizon: int,
    seeds: int | Sequence[int],
    params: EnvParams | None = None,
    resample_params: bool = False,
    check_finite: bool = True,
    seed_key: str = "split",
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
      seed_key: how a seed's key `jax.random.key(seed)` is used (`SEED_KEYS`):
        "split" into (problem instance, run) keys, or "direct": the seed's key is
        the run's key, as in `simulate(jax.random.key(seed), ...)` (needs
        `resample_params=False`).

    Returns:
      A `Trajectory` with leaves shaped (S, T).
    """
    trajectory, _ = run_with_states(
        env,
        agent,
        horizon=horizon,
        seeds=seeds,
        states_of=(),
        params=params,
        resample_params=resample_params,
        check_finite=check_finite,
        seed_key=seed_key,
    )
    return trajectory


def run_with_states(
    env: Env,
    agent: Agent,
    *,
    horizon: int,
    seeds: int | Sequence[int],
    states_of: Sequence[int],
    params: EnvParams | None = None,
    resample_params: bool = False,
    check_finite: bool = True,
    seed_key: str = "split",
) -> tuple[Trajectory, Any]:
    """`run`, also returning the final agent state of the seeds in `states_of`.

    Evaluating what an agent learned (its reward model on held-out contexts) needs
    the state it ends the run with; taking it from the run costs no second
    simulation. Only the states of `states_of` leave the compiled program, so
    memory stays small for agents with large states (replay buffers, networks).

    Args:
      env, agent, horizon, seeds, params, resample_params, check_finite,
        seed_key: as `run`.
      states_of: seeds (values among `seeds`) whose final state to return; may be
        empty.

    Returns:
      `(trajectory, states)`: the `Trajectory` of `run`, and the agent state with
      leaves shaped (len(states_of), ...) in the order of `states_of` (`None` if
      `states_of` is empty).
    """
    _check_pair(env, agent)
    horizon = positive_int("horizon", horizon)
    check_seed_key(seed_key, resample_params)
    seed_values = seed_list(seeds)
    rows = _state_rows(seed_values, states_of)
    if params is None:
        params = env.default_params()
    keys = seed_keys(seed_values)
    program = _run_compiled(env, agent, horizon, resample_params, seed_key, False, rows)
    trajectory, finite, states = _traced(program, env, agent, keys, params)
    trajectory = jax.tree_util.tree_map(
        lambda leaf: leaf[: len(seed_values)], trajectory
    )
    if check_finite:
        bad = np.flatnonzero(~np.asarray(finite)[: len(seed_values)])
        if bad.size:
            _raise_non_finite(
                env, agent, horizon, resample_params, seed_key, params, seed_values, bad
            )
    return trajectory, states


def _check_pair(env: Any, agent: Any) -> None:
    """Refuses arguments that are not an env and an agent (swapped, or a
    `(env, params)` pair from `envs.make`) before anything is traced."""
    if isinstance(env, Agent) or (hasattr(agent, "reset") and hasattr(agent, "step")):
        raise BanditConfigError(
            "env and agent are swapped: call run(env, agent, ...) (the env first)"
        )
    if isinstance(env, tuple):
        raise BanditConfigError(
            "env is a tuple (envs.make returns (env, params)); pass the env, and "
            "params=params if you want that instance"
        )
    for name, value, needed in (
        ("env", env, ("reset", "step", "default_params", "observation_spec")),
        ("agent", agent, ("init", "act", "update")),
    ):
        missing = [m for m in needed if not hasattr(value, m)]
        if missing:
            raise BanditConfigError(
                f"{name} must be a bandit {name}, got {type(value).__name__} "
                f"(it has no {', '.join(missing)})"
            )
    _check_declared_shapes(env, agent)


def _check_declared_shapes(env: Any, agent: Any) -> None:
    """An agent that declares the shapes it was built for (`Agent.num_arms`,
    `context_dim`, `arm_dim`) is checked against the env's before tracing."""
    if not isinstance(agent, Agent):
        return
    spec = env.observation_spec()
    name = agent.name
    found = {
        "num_arms": getattr(env, "num_arms", None),
        "context_dim": spec["context"].shape[-1] if "context" in spec else None,
        "arm_dim": spec["arms"].shape[-1] if "arms" in spec else None,
    }
    what = {
        "num_arms": "arms",
        "context_dim": "context features",
        "arm_dim": "features per arm",
    }
    env_slate = getattr(env, "slate_size", None)
    if agent.slate_size != env_slate:
        plays = (
            "single arms"
            if agent.slate_size is None
            else f"slates of {agent.slate_size}"
        )
        shows = "single arms" if env_slate is None else f"slates of {env_slate} items"
        raise BanditConfigError.about(
            "slate_size",
            f"of agent {name!r} is {agent.slate_size} (it plays {plays}), but env "
            f"{type(env).__name__} takes {shows}: build a "
            + (
                "single-arm agent"
                if env_slate is None
                else f"slate agent with slate_size={env_slate}"
            ),
        )
    for field, env_value in found.items():
        declared = getattr(agent, field)
        if declared is None or env_value is None or declared == env_value:
            continue
        raise BanditConfigError.about(
            field,
            f"of agent {name!r} is {declared}, but env {type(env).__name__} has "
            f"{env_value} {what[field]}: build the agent for the env's shapes",
        )


def _traced(program, env: Env, agent: Any, *args):
    """Calls a compiled simulation; a shape error while tracing it (the agent was
    built for other shapes than the env's) becomes an error naming both."""
    try:
        return program(*args)
    except BanditConfigError:
        raise  # already names its field
    except (TypeError, ValueError) as err:
        spec = env.observation_spec()
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in spec.items())
        name = getattr(agent, "name", None) or getattr(agent, "__name__", "agent")
        raise BanditConfigError(
            f"agent {name!r} does not fit env {type(env).__name__} "
            f"({env.num_arms} arms; observation {shapes}): check the agent's "
            f"num_arms and dim. Tracing failed with: {err}"
        ) from err


def _state_rows(seed_values: list[int], states_of: Sequence[int]) -> tuple[int, ...]:
    """Row of each seed of `states_of` in `seed_values` (its first occurrence)."""
    rows = []
    for seed in states_of:
        try:
            rows.append(seed_values.index(operator.index(seed)))
        except (ValueError, TypeError):
            raise BanditConfigError(
                f"states_of: {seed!r} is not one of the seeds {seed_values[:10]}"
                f"{' ...' if len(seed_values) > 10 else ''}"
            ) from None
    return tuple(rows)


def _take_rows(tree: Any, rows: tuple[int, ...]) -> Any:
    """The leading-axis rows `rows` of every leaf, or `None` if there are none."""
    if not rows:
        return None
    index = np.asarray(rows)
    return jax.tree_util.tree_map(lambda leaf: leaf[index], tree)


def _raise_non_finite(
    env, agent, horizon, resample_params, seed_key, params, seed_values, bad
):
    """Re-runs the failing seeds with a per-step check to name the first bad step."""
    failing = [seed_values[i] for i in bad]
    program = _run_compiled(env, agent, horizon, resample_params, seed_key, True, ())
    _, first_bad, _ = program(seed_keys(failing), params)
    first_bad = np.asarray(first_bad)[: len(failing)]
    seed, step = failing[0], int(first_bad[0])
    where = f"step {step}" if step >= 0 else "an unknown step"
    raise NonFiniteAgentStateError(
        f"agent {agent.name!r} produced a non-finite (NaN or inf) state at seed "
        f"{seed}, {where} ({len(failing)} of {len(seed_values)} seeds affected: "
        f"{failing[:10]}{' ...' if len(failing) > 10 else ''})"
    )


def sweep(
    env: Env,
    agent_fn: Callable[..., Agent],
    hyperparameters: Mapping[str, Sequence[float]],
    *,
    horizon: int,
    seeds: int | Sequence[int],
    params: EnvParams | None = None,
    resample_params: bool = False,
    check_finite: bool = True,
    check_values: bool = True,
    seed_key: str = "split",
) -> Trajectory:
    """Runs a grid of traced hyperparameter settings x seeds as ONE compiled program.

    `agent_fn(**setting)` is called inside `jit` with each float hyperparameter as a
    traced scalar, so the whole grid is a `vmap` (settings) of a `vmap` (seeds) of
    one `scan` (time). Only hyperparameters that agents accept as traced values
    (floats such as `alpha`, `epsilon`, `v`, learning rates) can be swept this way;
    shapes and strings need separate runs.

    Args:
      env: a functional environment.
      agent_fn: builds the agent from keyword hyperparameters, e.g.
        `functools.partial(agents.linucb, num_arms=10, dim=20)`. Reuse the same
        object across calls to reuse the compiled program.
      hyperparameters: name -> G values; every list must have the same length G
        (zip them yourself from a product for a full grid).
      horizon: rounds per run, T > 0.
      seeds: a number of seeds S or an explicit list.
      params: the problem instance; `None` uses `env.default_params()`.
      resample_params: draw a problem instance per seed (shared across settings).
      check_finite: raise `NonFiniteAgentStateError` if a state turns non-finite.
      check_values: build the agent once per setting with concrete values first,
        so that a bad value (NaN, out of range) is refused before tracing, where
        the agent's checks cannot see it. Off only where every setting was
        already built (the experiment platform builds each grid point once).

    Returns:
      A `Trajectory` with leaves shaped (G, S, T).
    """
    trajectory, _ = sweep_with_states(
        env,
        agent_fn,
        hyperparameters,
        horizon=horizon,
        seeds=seeds,
        states_of=(),
        params=params,
        resample_params=resample_params,
        check_finite=check_finite,
        check_values=check_values,
        seed_key=seed_key,
    )
    return trajectory


def _fn_name(agent_fn: Any) -> str:
    """A readable name for an agent factory (a `functools.partial` of one too)."""
    inner = getattr(agent_fn, "func", agent_fn)
    return getattr(inner, "__name__", type(inner).__name__)


def _check_settings(agent_fn, names, columns) -> None:
    """Builds the agent of every setting with concrete values (checks them)."""
    for g in range(columns[0].shape[0]):
        setting = {n: float(c[g]) for n, c in zip(names, columns, strict=True)}
        try:
            agent_fn(**setting)
        except BanditConfigError as err:
            where = f"hyperparameters[{err.field!r}][{g}]"
            if err.field in names:
                raise err.at(where) from None
            raise err.at(f"setting {g} ({setting})") from None


def sweep_with_states(
    env: Env,
    agent_fn: Callable[..., Agent],
    hyperparameters: Mapping[str, Sequence[float]],
    *,
    horizon: int,
    seeds: int | Sequence[int],
    states_of: Sequence[int],
    params: EnvParams | None = None,
    resample_params: bool = False,
    check_finite: bool = True,
    check_values: bool = True,
    seed_key: str = "split",
) -> tuple[Trajectory, Any]:
    """`sweep`, also returning the final agent state of the seeds in `states_of`.

    As `run_with_states` for a sweep: the states come out of the same program.

    Returns:
      `(trajectory, states)`: the `Trajectory` of `sweep`, and the agent state with
      leaves shaped (G, len(states_of), ...) (`None` if `states_of` is empty).
    """
    horizon = positive_int("horizon", horizon)
    check_seed_key(seed_key, resample_params)
    seed_values = seed_list(seeds)
    names = tuple(hyperparameters)
    if not names:
        raise BanditConfigError("hyperparameters must name at least one value to sweep")
    columns = [np.asarray(hyperparameters[n], dtype=np.float64) for n in names]
    sizes = {n: c.shape for n, c in zip(names, columns, strict=True)}
    if any(len(shape) != 1 or shape[0] == 0 for shape in sizes.values()) or (
        len({shape[0] for shape in sizes.values()}) != 1
    ):
        raise BanditConfigError(
            "hyperparameters must map each name to a non-empty 1-D list, all of the "
            f"same length; got shapes {sizes}"
        )
    if params is None:
        params = env.default_params()
    # One flat batch of G * S rows (setting-major), each with its own traced
    # hyperparameters and seed key: the env and agent arithmetic of every setting is
    # batched together and the rows are sharded across devices like seeds are.
    num_settings, num_seeds = columns[0].shape[0], len(seed_values)
    if check_values:
        _check_settings(agent_fn, names, columns)
    rows = num_settings * num_seeds
    keys = seed_keys(seed_values * num_settings)
    padded = keys.shape[0]
    values = tuple(
        _like_keys(
            np.pad(np.repeat(c, num_seeds), (0, padded - rows), mode="edge"), keys
        )
        for c in columns
    )
    seed_rows = _state_rows(seed_values, states_of)
    state_rows = tuple(  # setting-major flat rows
        g * num_seeds + r for g in range(num_settings) for r in seed_rows
    )
    program = _sweep_compiled(
        env, agent_fn, names, horizon, resample_params, seed_key, state_rows
    )
    trajectory, finite, states = _traced(program, env, agent_fn, values, keys, params)
    trajectory = jax.tree_util.tree_map(
        lambda leaf: leaf[:rows].reshape(num_settings, num_seeds, *leaf.shape[1:]),
        trajectory,
    )
    if states is not None:
        states = jax.tree_util.tree_map(
            lambda leaf: leaf.reshape(num_settings, len(seed_rows), *leaf.shape[1:]),
            states,
        )
    finite = np.asarray(finite)[:rows].reshape(num_settings, num_seeds)
    if check_finite and not finite.all():
        setting, seed_index = np.argwhere(~finite)[0]
        values_of = {n: float(c[setting]) for n, c in zip(names, columns, strict=True)}
        label = ", ".join(f"{n}={v:g}" for n, v in values_of.items())
        seed = seed_values[seed_index]
        step = _first_bad_step(
            env, agent_fn(**values_of), horizon, resample_params, seed_key, params, seed
        )
        where = f"step {step}" if step >= 0 else "a step the per-step re-run missed"
        raise NonFiniteAgentStateError(
            f"agent {_fn_name(agent_fn)!r} with {label} produced a non-finite "
            f"(NaN or inf) state at seed {seed}, {where} "
            f"({int((~finite).sum())} runs affected)"
        )
    return trajectory, states


def _first_bad_step(
    env, agent, horizon, resample_params, seed_key, params, seed
) -> int:
    """The first step after which `agent`'s state is non-finite on `seed`, from a
    re-run with the per-step check (-1 if that run stays finite: a traced sweep
    and a concrete run may round differently)."""
    program = _run_compiled(env, agent, horizon, resample_params, seed_key, True, ())
    _, first_bad, _ = program(seed_keys([seed]), params)
    return int(np.asarray(first_bad)[0])


@functools.lru_cache(maxsize=PROGRAM_CACHE_SIZE)
def _sweep_compiled(
    env, agent_fn, names, horizon, resample_params, seed_key, state_rows
):
    """One jitted program for the flat rows of a sweep: (trajectory, finite, states)."""

    def one_row(values, key, params):
        agent = agent_fn(**dict(zip(names, values, strict=True)))
        return _one_seed(
            key, params, env, agent, horizon, resample_params, seed_key, False
        )

    def program(values, keys, params):
        trajectory, states, finite = jax.vmap(one_row, in_axes=(0, 0, None))(
            values, keys, params
        )
        return trajectory, finite, _take_rows(states, state_rows)

    return jax.jit(program)


def _like_keys(column: np.ndarray, keys: jax.Array) -> jax.Array:
    """A float32 row column placed with the same sharding as the row keys."""
    return jax.device_put(jnp.asarray(column, dtype=jnp.float32), keys.sharding)


def _one_seed(
    key, params, env, agent, horizon, resample_params, seed_key, check_each_step
):
    """One seed's run: the seed's key splits into (problem instance, run), or
    with `seed_key="direct"` is the run's key itself."""
    if seed_key == "direct":
        return _simulate(key, env, params, agent, horizon, check_each_step)
    key_params, key_run = jax.random.split(key)
    if resample_params:
        params = env.sample_params(key_params)
    return _simulate(key_run, env, params, agent, horizon, check_each_step)


@functools.lru_cache(maxsize=PROGRAM_CACHE_SIZE)
def _run_compiled(
    env: Env,
    agent: Agent,
    horizon: int,
    resample_params: bool,
    seed_key: str,
    check_each_step: bool,
    state_rows: tuple[int, ...],
):
    """One jitted, seed-vmapped program per (env, agent, horizon) shape.

    It returns (trajectory, finiteness report, final states of `state_rows`).
    """

    def one_seed(key: jax.Array, params: EnvParams):
        return _one_seed(
            key, params, env, agent, horizon, resample_params, seed_key, check_each_step
        )

    def program(keys: jax.Array, params: EnvParams):
        trajectory, states, report = jax.vmap(one_seed, in_axes=(0, None))(keys, params)
        return trajectory, report, _take_rows(states, state_rows)

    return jax.jit(program)
