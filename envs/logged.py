"""Logged bandit data: events from any env under a logging policy, with propensities.

A logged dataset is what a deployed recommender leaves behind: for each event i
the observation x_i (context, candidates, history), the logged action a_i drawn
from the logging policy pi_0(. | x_i), its propensity pi_0(a_i | x_i) and the
observed reward r_i. It is the input of off-policy learning and evaluation (IPS
weights 1 / pi_0(a_i | x_i)) and of pretraining and warm starts.

    data = logged.generate(key, env, params, logged.uniform(), num_events=100_000)
    logged.save(data, "logs/rec.parquet")
    data = logged.load("logs/rec.parquet")

Logging policies (`LoggingPolicy`) are small pure functions of the observation
and, for the oracle-based one, of the env's exact expected rewards:

  * `uniform()`: pi_0(k) = 1 / |allowed|;
  * `epsilon_greedy_popularity(epsilon, popularity_column)`: greedy on an observed
    popularity column of `obs.arms` with probability 1 - epsilon, else uniform;
  * `softmax_noisy_oracle(temperature, noise_std)`: pi_0(k) proportional to
    exp((mu_k + eps_k) / tau), mu_k the exact expected reward and eps_k ~ N(0,
    noise_std^2) drawn per event (the propensity is exact given the draw, which
    is independent of the reward);
  * `from_agent(agent)`: any `bandits.types.Agent` with `action_probs`; it learns
    online while it logs.

Generation runs `num_streams` independent streams of the env (vmap) for as many
steps as needed, in compiled chunks of `chunk_steps` (scan), and stores events in
step-major order (all streams' step 0, then step 1, ...), so earlier events come
first. Arrays are held column-wise in NumPy; a dataset of the default
`ContextualRec-v0` takes about 2 kB per event (1M events: about 2 GB).

The Parquet file has one column per field, fixed-size lists of the flattened
per-event arrays, and its schema metadata (key `bandits.logged`) records the
shapes, so loading needs no pickle (a field with zero entries per event, such as
the (K, 0) `arms` of an env without arm features, is recorded in the metadata
only). `expected_rewards` (the simulator's exact
click probabilities) exists only because the data is simulated: it is for
evaluation (e.g. the MSE of a reward model against the truth), never for training.

Real logs (`envs.obd`, the Open Bandit Dataset) know neither the expected
rewards nor the logging policy's full distribution `action_probs`, only the
propensity of the logged action: those two columns are optional (None, and
absent from the file). So is `position`, the slot of a multi-slot interface the
logged item was shown in (0-based); simulated logs have none.

References:
  Li, Chu, Langford & Wang (2011), "Unbiased offline evaluation of
  contextual-bandit-based news article recommendation algorithms", WSDM.
  Saito, Aihara, Matsutani & Narita (2021), "Open Bandit Dataset and Pipeline",
  NeurIPS Datasets and Benchmarks (the logged-bandit data layout).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bandits.files import check_logged_events, read_logged, write_logged
from bandits.simulation import PROGRAM_CACHE_SIZE
from bandits.types import Agent, Env, EnvParams, Observation
from bandits.validation import BanditConfigError, positive_int, real

OBSERVATION_FIELDS = ("context", "arms", "mask", "history", "history_mask")
EVENT_FIELDS = (
    "action",
    "reward",
    "propensity",
    "action_probs",
    "expected_rewards",
    "stream",
    "step",
    "position",
)
COLUMNS = OBSERVATION_FIELDS + EVENT_FIELDS
OPTIONAL_COLUMNS = (
    "history",
    "history_mask",
    "action_probs",
    "expected_rewards",
    "position",
)
"""Columns a dataset may lack (None): behaviour history, and what real logs
cannot record (the logging policy's full distribution, the exact expected
rewards) or only some interfaces have (the slot position)."""


# ---------------------------------------------------------------------------
# Logging policies


class LoggingPolicy(NamedTuple):
    """A logging policy pi_0 as pure functions (one stream; vmapped by `generate`).

    Attributes:
      init: `init(key) -> state`.
      probs: `probs(key, state, obs, expected_rewards) -> (K,)` the distribution
        the logged action is drawn from (zero on masked arms).
      update: `update(key, state, obs, action, reward) -> state`.
      name: a short name, stored in the dataset's metadata.
      uses_oracle: whether `probs` reads `expected_rewards` (the env must then
        implement `expected_rewards(state, params)`).
    """

    init: Callable[[jax.Array], Any]
    probs: Callable[[jax.Array, Any, Observation, jax.Array], jax.Array]
    update: Callable[[jax.Array, Any, Observation, jax.Array, jax.Array], Any]
    name: str
    uses_oracle: bool = False


def _stateless_init(key: jax.Array) -> tuple:
    del key
    return ()


def _stateless_update(key, state, obs, action, reward):
    del key, obs, action, reward
    return state


def _uniform_over(mask: jax.Array) -> jax.Array:
    allowed = mask.astype(jnp.float32)
    return allowed / jnp.sum(allowed)


def uniform() -> LoggingPolicy:
    """pi_0(k | x) = 1 / |allowed(x)| for allowed k."""

    def probs(key, state, obs, expected_rewards):
        del key, state, expected_rewards
        return _uniform_over(obs.mask)

    return LoggingPolicy(_stateless_init, probs, _stateless_update, "uniform")


def epsilon_greedy_popularity(
    epsilon: float = 0.2, popularity_column: int = -2
) -> LoggingPolicy:
    """Epsilon-greedy on a popularity model: the arm with the largest observed
    popularity (column `popularity_column` of `obs.arms`) w.p. 1 - epsilon.

    pi_0(k | x) = epsilon / |allowed| + (1 - epsilon) 1[k = argmax_j pop_j].

    Args:
      epsilon: exploration probability in (0, 1] (0 would give zero propensities).
      popularity_column: the column of `obs.arms` holding popularity (for
        `ContextualRec-*`: -2, the column before the item id).
    """
    real("epsilon", epsilon, low=0.0, high=1.0, low_open=True)

    def probs(key, state, obs, expected_rewards):
        del key, state, expected_rewards
        popularity = jnp.where(obs.mask, obs.arms[:, popularity_column], -jnp.inf)
        greedy = jax.nn.one_hot(jnp.argmax(popularity), obs.mask.shape[0])
        return epsilon * _uniform_over(obs.mask) + (1.0 - epsilon) * greedy

    return LoggingPolicy(
        _stateless_init,
        probs,
        _stateless_update,
        f"epsilon_greedy_popularity_{epsilon:g}",
    )


def softmax_noisy_oracle(
    temperature: float = 0.1, noise_std: float = 0.1
) -> LoggingPolicy:
    """pi_0(k | x) proportional to exp((mu_k + eps_k) / tau) over allowed arms.

    mu_k is the exact expected reward (the env's oracle) and eps_k ~ N(0,
    noise_std^2) a per-event perturbation: a competent but imperfect production
    policy that still explores.

    Args:
      temperature: tau > 0 (small: nearly greedy; large: nearly uniform).
      noise_std: standard deviation of the oracle's noise, >= 0.
    """
    real("temperature", temperature, low=0.0, low_open=True)
    real("noise_std", noise_std, low=0.0)

    def probs(key, state, obs, expected_rewards):
        del state
        noise = noise_std * jax.random.normal(key, expected_rewards.shape)
        logits = (expected_rewards + noise) / temperature
        return jax.nn.softmax(jnp.where(obs.mask, logits, -jnp.inf))

    return LoggingPolicy(
        _stateless_init,
        probs,
        _stateless_update,
        f"softmax_noisy_oracle_{temperature:g}_{noise_std:g}",
        uses_oracle=True,
    )


def from_agent(agent: Agent) -> LoggingPolicy:
    """Any agent that exposes `action_probs`, learning online while it logs."""
    if agent.action_probs is None:
        raise BanditConfigError(
            f"agent {agent.name!r} has no action_probs, so it cannot log propensities"
        )

    def probs(key, state, obs, expected_rewards):
        del expected_rewards
        return agent.action_probs(key, state, obs)

    return LoggingPolicy(agent.init, probs, agent.update, f"agent_{agent.name}")


# ---------------------------------------------------------------------------
# The dataset


@dataclasses.dataclass(frozen=True, eq=False)
class LoggedData:
    """Logged events, column-wise (NumPy arrays with a leading event axis n).

    `history` and `history_mask` are None for envs without behaviour history;
    `action_probs` and `expected_rewards` are None for real logs, which record
    only the logged action's propensity; `position` is None unless the
    interface shows several items at once (the logged item's slot, 0-based).
    """

    context: np.ndarray  # (n, d) float32
    arms: np.ndarray  # (n, K, p) float32
    mask: np.ndarray  # (n, K) bool
    history: np.ndarray | None  # (n, H, p_h) float32
    history_mask: np.ndarray | None  # (n, H) bool
    action: np.ndarray  # (n,) int32  logged action a_i
    reward: np.ndarray  # (n,) float32  observed reward r_i
    propensity: np.ndarray  # (n,) float32  pi_0(a_i | x_i)
    action_probs: np.ndarray | None  # (n, K) float32  pi_0(. | x_i)
    expected_rewards: np.ndarray | None  # (n, K) float32  exact E[r | x_i, k]
    stream: np.ndarray  # (n,) int32  generating stream
    step: np.ndarray  # (n,) int32  step within the stream
    position: np.ndarray | None = None  # (n,) int32  slot of the logged item
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        check_logged_events(self.columns(), "logged data")

    def __len__(self) -> int:
        return int(self.action.shape[0])

    def columns(self) -> dict[str, np.ndarray]:
        """The non-None arrays by column name."""
        return {
            name: getattr(self, name)
            for name in COLUMNS
            if getattr(self, name) is not None
        }

    def observations(self) -> Observation:
        """The observations as one batched `Observation` (leading axis n)."""
        fields: dict[str, Any] = {
            name: getattr(self, name) for name in Observation._fields
        }
        return Observation(**fields)

    def take(self, index: np.ndarray | slice) -> LoggedData:
        """The events at `index` (an index array or a slice)."""
        values: dict[str, Any] = {
            name: None if getattr(self, name) is None else getattr(self, name)[index]
            for name in COLUMNS
        }
        return LoggedData(**values, metadata=dict(self.metadata))

    def split(self, train_fraction: float) -> tuple[LoggedData, LoggedData]:
        """(first, last) events: a temporal split at `train_fraction` of the rows."""
        real("train_fraction", train_fraction, low=0.0, high=1.0, low_open=True)
        cut = round(train_fraction * len(self))
        return self.take(slice(0, cut)), self.take(slice(cut, len(self)))

    def summary(self) -> dict[str, float]:
        """Size, click-through rate, mean propensity and (simulated logs only)
        the oracle's rate."""
        out = {
            "events": len(self),
            "ctr": float(self.reward.mean()),
            "mean_propensity": float(self.propensity.mean()),
            "min_propensity": float(self.propensity.min()),
        }
        if self.expected_rewards is not None:
            best = np.where(self.mask, self.expected_rewards, -np.inf).max(axis=1)
            out["oracle_ctr"] = float(best.mean())
        return out


def concatenate(parts: list[LoggedData]) -> LoggedData:
    """The events of several datasets, in order."""
    if not parts:
        raise BanditConfigError("concatenate needs at least one dataset")
    values: dict[str, Any] = {}
    for name in COLUMNS:
        arrays = [getattr(p, name) for p in parts]
        present = [a is not None for a in arrays]
        if any(present) and not all(present):
            raise BanditConfigError(
                f"concatenate: column {name!r} is in dataset(s) "
                f"{[i for i, p in enumerate(present) if p]} but not in the others"
            )
        values[name] = None if arrays[0] is None else np.concatenate(arrays)
    return LoggedData(**values, metadata=dict(parts[0].metadata))


# ---------------------------------------------------------------------------
# Generation


def _event_record(obs, action, probs, feedback, stream, step) -> dict:
    record = {
        "context": obs.context,
        "arms": obs.arms,
        "mask": obs.mask,
        "action": action,
        "reward": feedback.reward,
        "propensity": probs[action],
        "action_probs": probs,
        "expected_rewards": feedback.expected_rewards,
        "stream": stream,
        "step": step,
    }
    if obs.history is not None:
        record["history"] = obs.history
        record["history_mask"] = obs.history_mask
    return record


@functools.lru_cache(maxsize=PROGRAM_CACHE_SIZE)
def _chunk_program(env: Env, policy: LoggingPolicy, chunk_steps: int):
    """A jitted function advancing every stream `chunk_steps` steps (one per
    env, policy and chunk length: repeated `generate` calls, such as the parts
    of a long log, reuse its compiled programs instead of tracing again)."""

    def one_step(params, stream, carry, inputs):
        obs, env_state, policy_state = carry
        step, key = inputs
        key_probs, key_action, key_env, key_update = jax.random.split(key, 4)
        oracle = (
            env.expected_rewards(env_state, params)
            if policy.uses_oracle
            else jnp.zeros(obs.mask.shape, jnp.float32)
        )
        probs = policy.probs(key_probs, policy_state, obs, oracle)
        probs = jnp.where(obs.mask, probs, 0.0)
        probs = probs / jnp.sum(probs)
        action = jax.random.choice(key_action, probs.shape[0], p=probs).astype(
            jnp.int32
        )
        next_obs, env_state, feedback = env.step(key_env, env_state, action, params)
        policy_state = policy.update(
            key_update, policy_state, obs, action, feedback.reward
        )
        record = _event_record(obs, action, probs, feedback, stream, step)
        return (next_obs, env_state, policy_state), record

    def one_stream(carry, key, stream, start, params):
        steps = start + jnp.arange(chunk_steps, dtype=jnp.int32)
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, steps)
        return jax.lax.scan(
            lambda c, x: one_step(params, stream, c, x), carry, (steps, keys)
        )

    return jax.jit(jax.vmap(one_stream, in_axes=(0, 0, 0, None, None)))


@functools.lru_cache(maxsize=PROGRAM_CACHE_SIZE)
def _start_program(env: Env, policy: LoggingPolicy):
    def start(key, params):
        key_reset, key_policy = jax.random.split(key)
        obs, env_state = env.reset(key_reset, params)
        return obs, env_state, policy.init(key_policy)

    return jax.jit(jax.vmap(start, in_axes=(0, None)))


def generate(
    key: jax.Array,
    env: Env,
    params: EnvParams,
    policy: LoggingPolicy,
    num_events: int,
    *,
    num_streams: int = 64,
    chunk_steps: int = 256,
    path: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LoggedData:
    """Runs `policy` on `num_streams` streams of `env` and logs `num_events` events.

    Args:
      key: PRNG key; stream s uses `fold_in(key, s)`.
      env: any functional environment.
      params: its problem instance (shared by the streams).
      policy: the logging policy.
      num_events: events n to log (the last step may be cut short).
      num_streams: parallel streams S (each starts from `env.reset`).
      chunk_steps: steps per compiled chunk (bounds device memory).
      path: if given, the dataset is also written there as Parquet.
      progress: optional callback `progress(events_done, num_events)`.

    Returns:
      The `LoggedData` (events in step-major order).
    """
    num_events = positive_int("num_events", num_events)
    num_streams = min(positive_int("num_streams", num_streams), num_events)
    chunk_steps = positive_int("chunk_steps", chunk_steps)
    if policy.uses_oracle:
        _check_oracle(env)
    steps_needed = math.ceil(num_events / num_streams)
    chunk_steps = min(chunk_steps, steps_needed)
    stream_ids = jnp.arange(num_streams, dtype=jnp.int32)
    stream_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, stream_ids)
    pairs = jax.vmap(jax.random.split)(stream_keys)  # (S, 2): start, steps
    key_starts, stream_keys = pairs[:, 0], pairs[:, 1]
    carry = _start_program(env, policy)(key_starts, params)
    program = _chunk_program(env, policy, chunk_steps)

    columns: dict[str, np.ndarray] = {}
    filled = 0
    start = 0
    while filled < num_events:
        carry, record = program(carry, stream_keys, stream_ids, start, params)
        start += chunk_steps
        record = jax.device_get(record)  # leaves (S, Tc, ...)
        rows = {
            name: np.swapaxes(value, 0, 1).reshape(
                num_streams * chunk_steps, *value.shape[2:]
            )
            for name, value in record.items()
        }
        take = min(num_events - filled, chunk_steps * num_streams)
        for name, value in rows.items():
            if name not in columns:
                columns[name] = np.empty((num_events, *value.shape[1:]), value.dtype)
            columns[name][filled : filled + take] = value[:take]
        filled += take
        if progress is not None:
            progress(filled, num_events)

    metadata = {
        "policy": policy.name,
        "env": type(env).__name__,
        "num_streams": num_streams,
    }
    data = _from_columns(columns, metadata)
    if path is not None:
        save(data, path)
    return data


def _check_oracle(env: Env) -> None:
    """The `Env` protocol includes `expected_rewards`; an object that does not
    implement it cannot drive an oracle logging policy."""
    if not callable(getattr(env, "expected_rewards", None)):
        raise BanditConfigError(
            f"policy needs the env's expected rewards, which {type(env).__name__} "
            "does not expose (the Env protocol requires expected_rewards); use "
            "uniform() or epsilon_greedy_popularity()"
        )


def _from_columns(columns: Mapping[str, np.ndarray], metadata) -> LoggedData:
    values: dict[str, Any] = {name: columns.get(name) for name in COLUMNS}
    dtypes = {
        "context": np.float32,
        "arms": np.float32,
        "mask": np.bool_,
        "history": np.float32,
        "history_mask": np.bool_,
        "action": np.int32,
        "reward": np.float32,
        "propensity": np.float32,
        "action_probs": np.float32,
        "expected_rewards": np.float32,
        "stream": np.int32,
        "step": np.int32,
        "position": np.int32,
    }
    for name, value in values.items():
        if value is not None:
            values[name] = np.asarray(value, dtypes[name])
    missing = [n for n in COLUMNS if values[n] is None and n not in OPTIONAL_COLUMNS]
    if missing:
        raise BanditConfigError(f"logged data is missing column(s) {missing}")
    return LoggedData(**values, metadata=dict(metadata))


# ---------------------------------------------------------------------------
# Parquet


def save(data: LoggedData, path: str | os.PathLike) -> Path:
    """Writes `data` as Parquet (atomically: a temporary file, then a rename)."""
    return write_logged(path, data.columns(), data.metadata)


def read_columns(
    path: str | os.PathLike, columns: tuple[str, ...] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The named columns of a logged-data Parquet file as NumPy arrays.

    Returns:
      `(arrays, metadata)`; see `bandits.files.read_logged`.

    Raises:
      BanditConfigError: if the file is not a logged dataset of this version or
        lacks a requested column.
    """
    return read_logged(path, columns)


def load(path: str | os.PathLike) -> LoggedData:
    """Reads a dataset written by `save` (no pickle)."""
    arrays, metadata = read_columns(path)
    return _from_columns(arrays, metadata)


__all__ = [
    "COLUMNS",
    "OPTIONAL_COLUMNS",
    "LoggedData",
    "LoggingPolicy",
    "concatenate",
    "epsilon_greedy_popularity",
    "from_agent",
    "generate",
    "load",
    "read_columns",
    "save",
    "softmax_noisy_oracle",
    "uniform",
]
