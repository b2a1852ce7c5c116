"""Held-out evaluation of an agent's reward model (`Agent.predict`).

For an agent that exposes `predict(state, obs) -> (K,)` estimates of every arm's
expected reward, the final state of a run is evaluated on fresh contexts the
agent never saw:

1. the final state of the seed's run: kept by the run itself
   (`bandits.run_with_states` / `sweep_with_states`, then `evaluate_states`; what
   the experiment runner does, so no second simulation), or in `evaluate`
   replayed (the same keys as `bandits.run`, so the same actions; a test checks
   this against the kernel, and another that both ways score alike);
2. M held-out observations are drawn with `env.reset` from a key stream of the
   seed that the run does not use (`fold_in(seed key, HELDOUT_STREAM)`), and for
   each one every arm is pulled once with `env.step` (an independent reward per
   arm) next to its exact expected reward;
3. metrics over the allowed (context, arm) pairs:

   * every env: `mse`, the mean squared error of the estimates against the exact
     expected rewards, and `best_arm_accuracy`, the fraction of contexts whose
     highest estimate is an optimal arm;
   * envs whose sampled rewards are all 0 or 1 (Bernoulli clicks) also score the
     estimates as click predictions against the sampled clicks: `accuracy`,
     `recall` and `f1` at threshold 0.5, `roc_auc` (the Mann-Whitney statistic,
     ties counted half) and `log_loss` (estimates clipped to [1e-7, 1 - 1e-7]),
     both from `bandits.metrics`.
     For real-valued (Gaussian) rewards these are left out (`None`).

References:
  Hanley & McNeil (1982), "The meaning and use of the area under a receiver
  operating characteristic (ROC) curve", Radiology 143(1) (AUC as the
  Mann-Whitney U statistic).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import bandits
from bandits.metrics import log_loss, mean_band, roc_auc
from bandits.simulation import PROGRAM_CACHE_SIZE

HELDOUT_STREAM = 0x6E1D0
"""`jax.random.fold_in` data that separates the held-out stream from the run."""
METRICS = (
    "mse",
    "best_arm_accuracy",
    "accuracy",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
)
CLASSIFICATION_METRICS = ("accuracy", "recall", "f1", "roc_auc", "log_loss")


def has_reward_model(agent: bandits.Agent) -> bool:
    """Whether `agent` exposes `predict` (expected-reward estimates per arm) and
    can be evaluated held out. Slate agents are not yet: the evaluation pulls
    single arms, which a slate env does not take."""
    return (
        getattr(agent, "predict", None) is not None
        and getattr(agent, "slate_size", None) is None
    )


def replay(
    key: jax.Array,
    env: bandits.Env,
    params: Any,
    agent: bandits.Agent,
    horizon: int,
) -> tuple[Any, jax.Array]:
    """Runs one seed's simulation again: (final agent state, actions (T,)).

    It is `bandits.simulate_with_state`, so the keys (and hence the actions and
    the state) are those of that seed in `bandits.run`.
    """
    trajectory, agent_state = bandits.simulate_with_state(
        key, env, params, agent, horizon
    )
    return agent_state, trajectory.action


def held_out(
    key: jax.Array,
    env: bandits.Env,
    params: Any,
    agent: bandits.Agent,
    state: Any,
    contexts: int,
) -> dict[str, jax.Array]:
    """Estimates, exact and sampled rewards on `contexts` fresh observations.

    Returns:
      `prediction`, `expected`, `sampled`: (M, K) floats; `mask`: (M, K) bool.
    """
    num_arms = env.num_arms

    def one_context(key_context):
        key_reset, key_pulls = jax.random.split(key_context)
        obs, env_state = env.reset(key_reset, params)

        def pull(action, key_pull):
            _, _, feedback = env.step(key_pull, env_state, action, params)
            return feedback.reward, feedback.expected_rewards

        sampled, expected = jax.vmap(pull)(
            jnp.arange(num_arms, dtype=jnp.int32), jax.random.split(key_pulls, num_arms)
        )
        return {
            "prediction": jnp.asarray(agent.predict(state, obs), jnp.float32),
            "expected": expected[0].astype(jnp.float32),
            "sampled": sampled.astype(jnp.float32),
            "mask": obs.mask,
        }

    return jax.vmap(one_context)(jax.random.split(key, contexts))


def evaluate(
    env: bandits.Env,
    params: Any,
    horizon: int,
    seeds: Sequence[int],
    contexts: int,
    resample_params: bool,
    agent: bandits.Agent | None = None,
    agent_fn: Callable[..., bandits.Agent] | None = None,
    swept: Mapping[str, Sequence[float]] | None = None,
) -> list[list[dict[str, float | None]]]:
    """Reward-model metrics of the final state, per swept setting and per seed.

    Give `agent` (one setting) or `agent_fn` with `swept` (name -> G values,
    traced as in `bandits.sweep`).

    Returns:
      `[setting][seed]` metric dictionaries (see `metrics`).
    """
    agent_or_fn, names, values = _setting(agent, agent_fn, swept)
    program = _program(env, agent_or_fn, names, horizon, resample_params, contexts)
    out = jax.device_get(program(values, _seed_keys(seeds), params))
    return _metrics_table(out, len(seeds), swept=bool(names))


def evaluate_states(
    env: bandits.Env,
    params: Any,
    states: Any,
    seeds: Sequence[int],
    contexts: int,
    resample_params: bool,
    agent: bandits.Agent | None = None,
    agent_fn: Callable[..., bandits.Agent] | None = None,
    swept: Mapping[str, Sequence[float]] | None = None,
) -> list[list[dict[str, float | None]]]:
    """`evaluate` on final states kept by the run (`bandits.run_with_states`).

    No replay: the states are those the run ended with, so only the held-out
    program is compiled. The held-out draws are the same as `evaluate`'s.

    Args:
      states: the agent state for `seeds`, leaves shaped (len(seeds), ...), or
        (G, len(seeds), ...) with `swept` (from `bandits.sweep_with_states`).
      Others: as `evaluate` (no horizon: the states already hold the run).

    Returns:
      `[setting][seed]` metric dictionaries (see `metrics`).
    """
    agent_or_fn, names, values = _setting(agent, agent_fn, swept)
    program = _held_out_program(env, agent_or_fn, names, resample_params, contexts)
    out = jax.device_get(program(values, states, _seed_keys(seeds), params))
    return _metrics_table(out, len(seeds), swept=bool(names))


def _setting(agent, agent_fn, swept):
    """(agent or agent_fn, swept names, traced values) for the programs below."""
    if not swept:
        return agent, (), ()
    names = tuple(swept)
    return agent_fn, names, tuple(jnp.asarray(swept[n], jnp.float32) for n in names)


def _seed_keys(seeds: Sequence[int]) -> jax.Array:
    return jax.vmap(jax.random.key)(jnp.asarray(list(seeds), dtype=jnp.uint32))


def _metrics_table(
    out: Mapping[str, np.ndarray], num_seeds: int, swept: bool
) -> list[list[dict]]:
    """`[setting][seed]` metrics from held-out arrays shaped ([G,] seeds, M, K)."""
    if not swept:
        out = {k: v[None] for k, v in out.items()}
    return [
        [
            metrics(
                out["prediction"][g, i],
                out["expected"][g, i],
                out["sampled"][g, i],
                out["mask"][g, i],
            )
            for i in range(num_seeds)
        ]
        for g in range(out["prediction"].shape[0])
    ]


def _agent_for(agent_or_fn, names, values):
    """The agent itself, or `agent_fn(**setting)` with traced values."""
    if names:
        return agent_or_fn(**dict(zip(names, values, strict=True)))
    return agent_or_fn


def _seed_instance(env, key, params, resample_params):
    """(problem instance, run key, held-out key) of a seed, split as `bandits.run`."""
    key_params, key_run = jax.random.split(key)
    if resample_params:
        params = env.sample_params(key_params)
    return params, key_run, jax.random.fold_in(key, HELDOUT_STREAM)


@functools.lru_cache(maxsize=PROGRAM_CACHE_SIZE)
def _held_out_program(env, agent_or_fn, names, resample_params, contexts):
    """One jitted program: final states (and swept settings) -> held-out arrays."""

    def one_seed(values, state, key, params):
        agent = _agent_for(agent_or_fn, names, values)
        params, _, key_eval = _seed_instance(env, key, params, resample_params)
        return held_out(key_eval, env, params, agent, state, contexts)

    def seeds(values, states, keys, params):
        return jax.vmap(lambda state, key: one_seed(values, state, key, params))(
            states, keys
        )

    if names:
        return jax.jit(jax.vmap(seeds, in_axes=(0, 0, None, None)))
    return jax.jit(seeds)


@functools.lru_cache(maxsize=PROGRAM_CACHE_SIZE)
def _program(env, agent_or_fn, names, horizon, resample_params, contexts):
    """One jitted program: seeds (and swept settings) -> held-out arrays."""

    def one_seed(values, key, params):
        agent = _agent_for(agent_or_fn, names, values)
        params, key_run, key_eval = _seed_instance(env, key, params, resample_params)
        state, _ = replay(key_run, env, params, agent, horizon)
        return held_out(key_eval, env, params, agent, state, contexts)

    def seeds(values, keys, params):
        return jax.vmap(lambda key: one_seed(values, key, params))(keys)

    if names:
        return jax.jit(jax.vmap(seeds, in_axes=(0, None, None)))
    return jax.jit(seeds)


def metrics(
    prediction: np.ndarray,
    expected: np.ndarray,
    sampled: np.ndarray,
    mask: np.ndarray,
) -> dict[str, float | None]:
    """Metrics of (M, K) estimates against exact and sampled rewards (see module).

    Only allowed arms (`mask`) count. Classification metrics are `None` unless
    every sampled reward is 0 or 1; `roc_auc` is `None` if only one class occurs.
    """
    mask = np.asarray(mask, bool)
    prediction = np.asarray(prediction, np.float64)
    expected = np.asarray(expected, np.float64)
    out: dict[str, float | None] = dict.fromkeys(METRICS)
    out["mse"] = float(np.mean((prediction[mask] - expected[mask]) ** 2))
    best = np.max(np.where(mask, expected, -np.inf), axis=1)
    chosen = np.argmax(np.where(mask, prediction, -np.inf), axis=1)
    picked = np.take_along_axis(expected, chosen[:, None], axis=1)[:, 0]
    out["best_arm_accuracy"] = float(np.mean(picked >= best))
    labels = np.asarray(sampled, np.float64)[mask]
    if not np.all((labels == 0) | (labels == 1)):
        return out
    scores = prediction[mask]
    positive = labels == 1
    predicted = scores >= 0.5
    true_pos = float(np.sum(predicted & positive))
    out["accuracy"] = float(np.mean(predicted == positive))
    out["recall"] = true_pos / positive.sum() if positive.any() else None
    precision = true_pos / predicted.sum() if predicted.any() else 0.0
    recall = out["recall"] or 0.0
    out["f1"] = (
        2 * precision * recall / (precision + recall) if precision + recall else 0.0
    )
    auc = roc_auc(positive, scores)
    out["roc_auc"] = None if np.isnan(auc) else auc  # undefined: JSON null
    out["log_loss"] = log_loss(positive, scores)
    return out


def aggregate(
    per_seed: Sequence[Mapping[str, float | None]], confidence: float = 0.95
) -> dict[str, dict[str, float | int] | None]:
    """Mean and Student-t interval across seeds for every metric (`None` if none)."""
    out: dict[str, dict[str, float | int] | None] = {}
    for name in METRICS:
        values = np.asarray(
            [m[name] for m in per_seed if m.get(name) is not None], np.float64
        )
        if values.size == 0:
            out[name] = None
            continue
        band = mean_band(values[:, None], confidence)
        out[name] = {
            "mean": float(band.mean[0]),
            "low": float(band.low[0]),
            "high": float(band.high[0]),
            "seeds": int(values.size),
        }
    return out


def reward_type(per_seed: Sequence[Mapping[str, float | None]]) -> str:
    """ "bernoulli" if click metrics were computed (0/1 rewards), else "real"."""
    return (
        "bernoulli" if any(m.get("accuracy") is not None for m in per_seed) else "real"
    )
