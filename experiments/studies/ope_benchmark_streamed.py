"""A replicate of the off-policy benchmark too large to hold at once.

`experiments.studies.ope_benchmark` builds the reward model's features of a
whole replicate (n, K, f floats: 13 GB for 10^6 `ContextualRec-v0` events) and
fits the cross-fitted ridge model on them. Here the replicate's streams are
generated in parts (a part is a set of whole streams, each as long as in the
in-memory path, since a stateful env's contexts depend on how long its stream
has run), and every part is read in slices of events:

  pass 1  for each part: generate its streams; per slice, the target's
          probabilities and the ridge statistics X^T X, X^T r of every fold's
          training events (`offline.ridge_statistics`), added over slices and
          parts; then theta_f = `offline.ridge_solve` per fold f.
  pass 2  for each part (in reverse, so the last part of pass 1 is reused
          rather than generated again): per slice, the features again and each
          event's prediction from the model of the folds it was held out of.

The log is the one `ope_benchmark.logs_by_replicate` generates for one
replicate with the same key (stream s from `fold_in(key, s)`, step t from
`fold_in(stream key, t)`), the target's probability keys and the fold of each
event are the in-memory path's, so the two paths give the same estimates up to
float32 summation order. Only the part's raw log (host memory) and one slice's
features are held at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import bandits
from bandits import offline
from envs import logged

# The columns a replicate keeps from its log (the estimators' inputs and the
# observations the target and the reward model read).
_KEPT = ("action", "reward", "propensity")


class ReplicateInputs(NamedTuple):
    """The estimators' inputs for one replicate, events in replicate order
    (stream by stream, each stream's steps in order)."""

    reward: np.ndarray  # (n,) float32
    action: np.ndarray  # (n,) int32
    propensity: np.ndarray  # (n,) float32  pi_0(a_i | x_i)
    probs: np.ndarray  # (n, K) float32  pi(. | x_i) of the target
    reward_hat: np.ndarray  # (n, K) float32  cross-fitted ridge predictions


class StreamedPrograms(NamedTuple):
    """The compiled programs of the streamed path for one (env, reward model,
    target, folds); built once per cell and reused by its replicates."""

    probs: Callable  # (state, keys (m,), obs (m, ...)) -> (m, K)
    statistics: Callable  # (obs, action, reward, fold) -> RidgeStatistics (F, ...)
    predict: Callable  # (theta (F, M, f+1), obs, fold) -> (m, K)


def fold_assignment(n: int, folds: int, seed: int) -> np.ndarray:
    """(n,) the cross-fitting fold of each event of a replicate, by its position
    in replicate order (shared by the in-memory and the streamed path)."""
    fold = np.arange(n) % folds
    np.random.default_rng(seed).shuffle(fold)
    return fold


def programs(
    agent: bandits.Agent,
    features: Callable[[bandits.Observation], jax.Array],
    num_arms: int,
    shared: bool,
    folds: int,
) -> StreamedPrograms:
    """The jitted probability, statistics and prediction programs.

    `features` maps an observation batch (m, ...) to the reward model's (m, K, f)
    features."""
    assert agent.action_probs is not None  # checked by train_target
    action_probs = agent.action_probs

    @jax.jit
    def probs(state, keys, obs):
        # The computation of `offline.policy_probs` with given per-event keys.
        return jax.lax.map(
            lambda inputs: action_probs(inputs[0], state, inputs[1]),
            (keys, obs),
            batch_size=1024,
        )

    @jax.jit
    def statistics(obs, action, reward, fold):
        X = features(obs)
        per_fold = [
            offline.ridge_statistics(
                X, action, reward, num_arms, shared,
                weight=(fold != f) if folds > 1 else jnp.ones_like(reward),
            )
            for f in range(folds)
        ]  # fmt: skip
        return jax.tree.map(lambda *leaves: jnp.stack(leaves), *per_fold)

    @jax.jit
    def predict(theta, obs, fold):
        X = features(obs)
        out = offline.ridge_predict(theta[0], X, shared)
        for f in range(1, folds):
            out = jnp.where((fold == f)[:, None], offline.ridge_predict(
                theta[f], X, shared), out)  # fmt: skip
        return out

    return StreamedPrograms(probs, statistics, predict)


def solve(statistics: offline.RidgeStatistics, regularization: float = 1.0):
    """theta (F, M, f+1): each fold's ridge model from its statistics."""
    return jax.vmap(offline.ridge_solve, in_axes=(0, None))(statistics, regularization)


def stream_log(
    key: jax.Array,
    env: Any,
    params: Any,
    policy: logged.LoggingPolicy,
    streams: np.ndarray,
    steps: int,
) -> dict[str, np.ndarray]:
    """The columns of streams `streams` of the log `logged.generate(key, ...,
    num_streams=S)` would write (stream s from `fold_in(key, s)`), `steps` steps
    each, in replicate order: (len(streams) * steps, ...)."""
    chunk_steps = min(256, steps)
    stream_ids = jnp.asarray(streams, jnp.int32)
    stream_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, stream_ids)
    pairs = jax.vmap(jax.random.split)(stream_keys)
    carry = logged._start_program(env, policy)(pairs[:, 0], params)
    program = logged._chunk_program(env, policy, chunk_steps)
    columns: dict[str, np.ndarray] = {}
    for start in range(0, steps, chunk_steps):
        carry, record = program(carry, pairs[:, 1], stream_ids, start, params)
        take = min(chunk_steps, steps - start)
        for name, value in jax.device_get(record).items():
            if name not in _KEPT + bandits.Observation._fields:
                continue
            if name not in columns:
                columns[name] = np.empty(
                    (len(streams), steps, *value.shape[2:]), value.dtype
                )
            columns[name][:, start : start + take] = value[:, :take]
    rows = len(streams) * steps  # explicit: an arms column may have width 0
    return {
        name: value.reshape(rows, *value.shape[2:]) for name, value in columns.items()
    }


def _observations(columns: dict[str, np.ndarray], rows: slice) -> bandits.Observation:
    fields: dict[str, Any] = {
        name: None if name not in columns else jnp.asarray(columns[name][rows])
        for name in bandits.Observation._fields
    }
    return bandits.Observation(**fields)


def streamed_inputs(
    key: jax.Array,
    env: Any,
    params: Any,
    policy: logged.LoggingPolicy,
    state: Any,
    compiled: StreamedPrograms,
    *,
    n: int,
    streams: int,
    folds: int,
    seed: int,
    streams_per_part: int,
    slice_events: int,
    regularization: float = 1.0,
) -> ReplicateInputs:
    """The estimators' inputs for the replicate of `n` events in `streams`
    streams that `logs_by_replicate(key, ..., 1, n, streams)` would generate,
    its streams generated `streams_per_part` at a time and its features built
    `slice_events` events at a time (see the module docstring)."""
    steps = n // streams
    num_arms = int(env.num_arms)
    fold = fold_assignment(n, folds, seed)
    # The in-memory path keys event (stream s, step t) of the generation order
    # (step-major: t * streams + s) with the t * streams + s-th of these.
    prob_keys = jax.random.split(jax.random.fold_in(key, 1), n)
    parts = [
        np.arange(first, min(first + streams_per_part, streams))
        for first in range(0, streams, streams_per_part)
    ]
    out = {
        "reward": np.empty(n, np.float32),
        "action": np.empty(n, np.int32),
        "propensity": np.empty(n, np.float32),
        "probs": np.empty((n, num_arms), np.float32),
        "reward_hat": np.empty((n, num_arms), np.float32),
    }

    def positions(part: np.ndarray) -> np.ndarray:
        """Replicate-order positions of a part's events (its streams are
        consecutive, so these are consecutive too)."""
        return np.arange(part[0] * steps, (part[-1] + 1) * steps)

    total = None
    columns: dict[str, np.ndarray] = {}
    for part in parts:
        columns = stream_log(key, env, params, policy, part, steps)
        where = positions(part)
        generation = (np.arange(steps)[None, :] * streams + part[:, None]).reshape(-1)
        for name in _KEPT:
            out[name][where] = columns[name]
        for first in range(0, where.size, slice_events):
            rows = slice(first, min(first + slice_events, where.size))
            obs = _observations(columns, rows)
            at = where[rows]
            keys = prob_keys[jnp.asarray(generation[rows])]
            out["probs"][at] = np.asarray(compiled.probs(state, keys, obs))
            stats = compiled.statistics(
                obs, jnp.asarray(columns["action"][rows]),
                jnp.asarray(columns["reward"][rows]), jnp.asarray(fold[at]),
            )  # fmt: skip
            total = stats if total is None else jax.tree.map(jnp.add, total, stats)
    assert total is not None
    theta = solve(total, regularization)
    for p, part in enumerate(reversed(parts)):
        if p > 0:  # the last part of pass 1 is still in `columns`
            columns = stream_log(key, env, params, policy, part, steps)
        where = positions(part)
        for first in range(0, where.size, slice_events):
            rows = slice(first, min(first + slice_events, where.size))
            at = where[rows]
            predicted = compiled.predict(
                theta, _observations(columns, rows), jnp.asarray(fold[at])
            )
            out["reward_hat"][at] = np.asarray(predicted)
    return ReplicateInputs(**out)


def part_sizes(
    n: int, streams: int, bytes_per_event: int, feature_bytes: int, budget: int
) -> tuple[int, int]:
    """(streams per part, events per slice) that keep a part's raw log
    (`bytes_per_event` each) and a slice's features (`feature_bytes` each)
    within `budget` bytes (at least one stream and one event)."""
    steps = n // streams
    streams_per_part = max(1, min(streams, budget // max(1, bytes_per_event * steps)))
    slice_events = max(1, budget // max(1, feature_bytes))
    # Slices of (nearly) equal length: at most two compilations per part size.
    part_events = streams_per_part * steps
    count = math.ceil(part_events / min(slice_events, part_events))
    return streams_per_part, math.ceil(part_events / count)
