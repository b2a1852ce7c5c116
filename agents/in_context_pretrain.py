"""Pretraining the in-context policy of `agents.in_context` across problem instances.

Following Lee et al. (2023), one pretraining sample is built from a problem
instance tau = `env.sample_params(key)`:

  * a behaviour policy for that instance: p = (1 - c) q + c e_i, with
    q ~ Dirichlet(1, ..., 1) over the K arms, c drawn uniformly from
    {0, 0.1, ..., 1} and e_i the one-hot of an arm drawn uniformly (so some
    datasets are spread over all arms and others concentrate on one arm);
  * an in-context dataset D of H events rolled out with that policy in the
    env: context x_j from the env, a_j ~ p (restricted to the allowed arms),
    reward r_j from `env.step`;
  * a query context x from a fresh `env.reset` of the same instance and its
    label, the optimal arm a* = argmax_k mu_tau(x, k) (exact expected rewards,
    `env.expected_rewards`, over the allowed arms).

The loss is the mean over the H + 1 prefixes D_{1..j}, j = 0..H, of the
cross-entropy -log M_theta(a* | x, D_{1..j}) (one causal forward pass gives every
prefix). Every Adam step draws a fresh batch of instances, rolls out their
datasets and takes the step in one compiled program (`steps_per_call` steps per
call, a `scan`); so each instance is seen once, where the paper collects a fixed
dataset of instances and trains several epochs over it.

Checkpoints are `.npz` files: the architecture and the training record as JSON
and every parameter under its path (no pickle), written atomically.

Reference:
  Lee, Xie, Pacchiano, Chandak, Finn, Nachum & Brunskill (2023), "Supervised
  pretraining can learn in-context reinforcement learning", NeurIPS.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from agents import checkpoints, resumable
from agents.in_context import (
    Events,
    InContextConfig,
    build_model,
    prefix_logits,
    split_model,
)
from bandits.types import Observation
from bandits.validation import BanditConfigError, positive_int, real

COVERAGES = tuple(i / 10 for i in range(11))
"""The weights c of the point mass in the behaviour policy (the paper's grid)."""


class Batch(NamedTuple):
    """B pretraining samples: query observations, datasets and labels."""

    query: Observation  # leaves (B, ...)
    events: Events  # leaves (B, H, ...)
    target: jax.Array  # (B,) int32 optimal arm of the query context


def behaviour_probs(key: jax.Array, num_arms: int) -> jax.Array:
    """p = (1 - c) Dirichlet(1) + c e_i, c uniform on `COVERAGES`, i uniform."""
    key_q, key_c, key_i = jax.random.split(key, 3)
    q = jax.random.dirichlet(key_q, jnp.ones((num_arms,)))
    c = jax.random.choice(key_c, jnp.asarray(COVERAGES, jnp.float32))
    point = jax.nn.one_hot(jax.random.randint(key_i, (), 0, num_arms), num_arms)
    return (1.0 - c) * q + c * point


def sample_task(key: jax.Array, env: Any, horizon: int) -> Batch:
    """One pretraining sample (no batch axis): see the module docstring."""
    key_params, key_policy, key_reset, key_steps, key_query = jax.random.split(key, 5)
    params = env.sample_params(key_params)
    probs = behaviour_probs(key_policy, env.num_arms)
    obs, state = env.reset(key_reset, params)

    def step(carry, key_step):
        obs, state = carry
        key_action, key_env = jax.random.split(key_step)
        allowed = jnp.where(obs.mask, probs, 0.0)
        # a point mass on an unavailable arm falls back to uniform over allowed
        allowed = jnp.where(jnp.sum(allowed) > 0, allowed, obs.mask.astype(float))
        action = jax.random.categorical(key_action, jnp.log(allowed)).astype(jnp.int32)
        next_obs, next_state, feedback = env.step(key_env, state, action, params)
        event = Events(
            context=obs.context.astype(jnp.float32),
            action=action,
            arm=obs.arms[action].astype(jnp.float32),
            reward=jnp.asarray(feedback.reward, jnp.float32),
            mask=jnp.asarray(True),
        )
        return (next_obs, next_state), event

    _, events = jax.lax.scan(step, (obs, state), jax.random.split(key_steps, horizon))
    query, query_state = env.reset(key_query, params)
    expected = env.expected_rewards(query_state, params)
    target = jnp.argmax(jnp.where(query.mask, expected, -jnp.inf)).astype(jnp.int32)
    query = Observation(query.context, query.arms, query.mask)  # no env history
    return Batch(query, events, target)


def sample_batch(key: jax.Array, env: Any, horizon: int, size: int) -> Batch:
    """`size` samples from independent instances, leaves with a leading (size,)."""
    return jax.vmap(lambda k: sample_task(k, env, horizon))(jax.random.split(key, size))


def batch_loss(graphdef, params, batch: Batch) -> jax.Array:
    """Mean over samples and prefixes j = 0..H of -log M(a* | x, D_{1..j})."""

    def one(query, events, target):
        logits = prefix_logits(graphdef, params, query, events)  # (H + 1, K)
        labels = jnp.full((logits.shape[0],), target)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)

    return jnp.mean(jax.vmap(one)(batch.query, batch.events, batch.target))


class PretrainResult(NamedTuple):
    """What `pretrain` returns."""

    config: InContextConfig
    params: Any  # nnx.State of the trained model
    losses: np.ndarray  # (steps,) training loss per Adam step
    seconds: float  # wall time of the training calls (compilation included)
    tasks: int  # problem instances drawn (steps x batch_size)


def pretrain(
    key: jax.Array,
    env: Any,
    cfg: InContextConfig,
    *,
    steps: int = 1000,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    steps_per_call: int = 50,
    progress: bool = False,
    resume: str | os.PathLike | None = None,
) -> PretrainResult:
    """Pretrains the in-context model on instances of `env` (module docstring).

    Args:
      key: PRNG key (initialisation, instances, rollouts).
      env: a functional env (`sample_params`, `reset`, `step`,
        `expected_rewards`) whose shapes match `cfg`.
      cfg: the architecture; `cfg.horizon` is the length H of every dataset.
      steps: Adam steps.
      batch_size: instances per step (each instance gives one dataset and one
        query).
      learning_rate: Adam step size, cosine-decayed to 10% over the steps.
      steps_per_call: Adam steps per compiled call.
      progress: print the mean loss after every call.
      resume: a file for the training's progress (`agents.resumable`): saved
        every 30 s, and a call with the same arguments continues from it to
        the same result; the caller deletes it once the result is kept.

    Returns:
      A `PretrainResult`.
    """
    steps, batch_size, learning_rate, steps_per_call = check_options(
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        steps_per_call=steps_per_call,
    ).values()
    check_env(env, cfg)
    key_init, key_train = jax.random.split(key)
    graphdef, params = nnx.split(build_model(cfg, key_init))
    schedule = optax.cosine_decay_schedule(learning_rate, steps, alpha=0.1)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))

    def step(carry, key_step):
        params, opt_state = carry
        batch = sample_batch(key_step, env, cfg.horizon, batch_size)
        loss, grads = jax.value_and_grad(lambda p: batch_loss(graphdef, p, batch))(
            params
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    @jax.jit
    def run_steps(carry, keys):
        return jax.lax.scan(step, carry, keys)

    keys = jax.random.split(key_train, steps)
    settings: dict[str, Any] = {}
    if resume is not None:  # what the result depends on
        settings = {
            "training": "agents.in_context_pretrain",
            "config": cfg.to_json(),
            "env": resumable.describe(env),
            "key": np.asarray(jax.random.key_data(key)).tolist(),
            "steps": steps,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "steps_per_call": steps_per_call,
        }
    start = time.perf_counter()

    def report(done: int, loss: np.ndarray) -> None:
        if progress:
            elapsed = time.perf_counter() - start
            mean = float(np.mean(loss))
            print(
                f"  step {done}/{steps}: loss {mean:.4f} ({elapsed:.0f} s)", flush=True
            )

    calls = (
        (min(steps_per_call, steps - first), _keys_of(keys, first, steps_per_call))
        for first in range(0, steps, steps_per_call)
    )
    (params, _), (losses,), seconds = resumable.run_calls(
        lambda carry, keys: _one_curve(*run_steps(carry, keys)),
        (params, optimizer.init(params)),
        calls,
        resumable.Progress(resume, settings),
        curves=1,
        report=report,
    )
    return PretrainResult(cfg, params, losses, seconds, steps * batch_size)


def check_options(
    *,
    steps: int = 1000,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    steps_per_call: int = 50,
) -> dict[str, Any]:
    """`pretrain`'s training options checked (a `BanditConfigError` naming the
    option for a bad one); returns them, the counts as ints. A config that sets
    them calls this before any compute."""
    real("learning_rate", learning_rate, low=0.0, low_open=True)
    return {
        "steps": positive_int("steps", steps),
        "batch_size": positive_int("batch_size", batch_size),
        "learning_rate": learning_rate,
        "steps_per_call": positive_int("steps_per_call", steps_per_call),
    }


def _one_curve(carry, loss):
    return carry, (loss,)


def _keys_of(keys: jax.Array, first: int, count: int):
    """The arguments of one call: its steps' keys."""
    return lambda: (keys[first : first + count],)


def held_out_loss(
    key: jax.Array, env: Any, cfg: InContextConfig, params, *, size: int = 256
) -> float:
    """The pretraining loss on `size` fresh instances drawn from `key`."""
    check_env(env, cfg)
    graphdef, _ = split_model(cfg)
    batch = sample_batch(key, env, cfg.horizon, positive_int("size", size))
    return float(jax.jit(lambda p: batch_loss(graphdef, p, batch))(params))


def check_env(env: Any, cfg: InContextConfig) -> None:
    """The env's observation shapes against the architecture."""
    spec = env.observation_spec()
    needed = {
        "context": (cfg.context_dim,),
        "arms": (cfg.num_arms, cfg.arm_width),
        "mask": (cfg.num_arms,),
    }
    for name, shape in needed.items():
        if tuple(spec[name].shape) != shape:
            raise BanditConfigError(
                f"the env's {name} has shape {tuple(spec[name].shape)}, the "
                f"in-context model was built for {shape} (num_arms, dim, arm columns)"
            )


# ---------------------------------------------------------------------------
# Checkpoints

CONFIG_KEY = "config"
RECORD_KEY = "record"


def save_checkpoint(
    path: str | os.PathLike,
    cfg: InContextConfig,
    params: Any,
    record: Mapping[str, Any] | None = None,
) -> Path:
    """Writes the architecture, a JSON `record` (how it was trained) and every
    parameter to an `.npz` (no pickle, `agents.checkpoints`), atomically."""
    texts = {
        CONFIG_KEY: cfg.to_json(),
        RECORD_KEY: json.dumps(dict(record or {}), sort_keys=True),
    }
    return checkpoints.write(path, texts, params)


def load_checkpoint(
    path: str | os.PathLike,
) -> tuple[InContextConfig, Any, dict[str, Any]]:
    """Reads a checkpoint of `save_checkpoint`: `(config, params, record)`.

    Member sizes are checked against the declared architecture before any
    parameter is read (a small file cannot expand to gigabytes).

    Raises:
      BanditConfigError: the file is missing, is not such a checkpoint, cannot be
        read, or its parameters do not match the architecture it declares.
    """
    path = Path(path)
    kind = "an in-context"
    sizes = checkpoints.member_sizes(path, kind)
    config = checkpoints.read_text(path, sizes, CONFIG_KEY, kind)
    record = checkpoints.read_text(path, sizes, RECORD_KEY, kind)
    try:
        cfg = InContextConfig.from_json(config)
        trained = json.loads(record)
    except (ValueError, KeyError, TypeError) as err:
        raise checkpoints.unreadable(path, err) from None
    _, template = split_model(cfg)
    return cfg, checkpoints.read_params(path, sizes, template), trained


__all__ = [
    "COVERAGES",
    "Batch",
    "PretrainResult",
    "batch_loss",
    "behaviour_probs",
    "check_env",
    "held_out_loss",
    "load_checkpoint",
    "pretrain",
    "sample_batch",
    "sample_task",
    "save_checkpoint",
]
