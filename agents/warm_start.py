"""Warm-starting any agent from logged data by replaying it through `update`.

Given logged events (x_i, a_i, r_i), i = 1..n in time order, the warm-started
agent's initial state is

    s_0 = init(key),   s_i = update(key_i, s_{i-1}, x_i, a_i, r_i),

the state the agent would have reached had it observed the logs itself; online
it then starts from s_n (for every seed). The replay is one compiled `scan` per
chunk of events, so 100k events take seconds for LinUCB.

Why no inverse-propensity weights here: the agents in this project fit a reward
model E[r | x, a] by regression on the features of the played action (ridge for
LinUCB, a network for NeuralTS). A conditional model fitted on data whose actions
were chosen by a policy that sees only x is consistent whatever that policy was,
as long as it gave each action a chance; propensities change which (x, a)
regions are fitted best, not what is fitted. IPS weights are needed to estimate
the value of a new policy from the logs (off-policy evaluation), and they can
help a misspecified model; the transformer's pretraining offers them
(`agents.pretrain`), the replay does not.

Logged data is read from an `envs.logged` dataset object, a mapping of column
arrays or a Parquet file in that layout (columns "context", "arms", "mask",
optionally "history" and "history_mask", "action", "reward", stored as fixed-size
lists with their per-event shapes in the schema metadata `bandits.logged`).

References:
  Li, Chu, Langford & Wang (2011), "Unbiased offline evaluation of
  contextual-bandit-based news article recommendation algorithms", WSDM.
  Strehl, Langford, Li & Kakade (2010), "Learning from logged implicit
  exploration data", NeurIPS (reward regression on logged data).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bandits.files import (
    check_logged_events,
    check_logged_file,
    iter_logged,
    read_logged,
    read_logged_shapes,
)
from bandits.simulation import PROGRAM_CACHE_SIZE
from bandits.types import Agent, Observation
from bandits.validation import BanditConfigError, positive_int

OPTIONAL_COLUMNS = ("history", "history_mask")
REPLAY_COLUMNS = (
    "context",
    "arms",
    "mask",
    "history",
    "history_mask",
    "action",
    "reward",
)


def read_events(path: str | os.PathLike, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Columns of a logged-data Parquet file as NumPy arrays (no pickle).

    Optional columns ("history", "history_mask") that the file lacks are left
    out; any other missing column is an error.
    """
    return read_logged(path, names, optional=OPTIONAL_COLUMNS)[0]


def as_events(data: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The named columns of `data` (a path, a mapping or an object with them).

    Optional history columns that are absent (or None) are left out.
    """
    if isinstance(data, str | os.PathLike):
        return read_events(data, names)
    out = {}
    for name in names:
        if isinstance(data, Mapping):
            value = data.get(name)
        else:
            value = getattr(data, name, None)
        if value is None:
            if name in OPTIONAL_COLUMNS:
                continue
            raise BanditConfigError(f"logged data has no column {name!r}")
        out[name] = np.asarray(value)
    lengths = {name: len(v) for name, v in out.items()}
    if len(set(lengths.values())) > 1:
        raise BanditConfigError(f"logged columns differ in length: {lengths}")
    check_logged_events(out, "logged data")
    return out


def check_fits(agent: Agent, data: Any) -> None:
    """Refuses logged events of another shape than `agent` was built for.

    The agent's declared `num_arms`, `context_dim` and `arm_dim` (those that are
    not None) are compared with the per-event widths of the logged `mask`,
    `context` and `arms` columns. For a file only its schema is read, so a
    mismatch is reported before any event is.

    Raises:
      BanditConfigError: naming the agent's value and the logs' (field
        "num_arms" or "dim").
    """
    shapes, where = _logged_shapes(data)
    checks = (
        ("num_arms", agent.num_arms, "mask", 0, "arms per event"),
        ("dim", agent.context_dim, "context", 0, "context features"),
        ("dim", agent.arm_dim, "arms", 1, "features per arm row"),
    )
    for field, declared, column, axis, what in checks:
        shape = shapes.get(column)
        if declared is None or shape is None or len(shape) <= axis:
            continue
        if shape[axis] != declared:
            raise BanditConfigError.about(
                field,
                f"of agent {agent.name!r} is {declared}, but {where} has "
                f"{shape[axis]} {what} (column {column!r} of per-event shape "
                f"{shape}); build the agent for the env that logged the data",
            )


def _logged_shapes(data: Any) -> tuple[dict[str, tuple[int, ...]], str]:
    """Per-event shapes of the logged columns, and how to name the data."""
    if isinstance(data, str | os.PathLike):
        return read_logged_shapes(data), f"the logged data {str(data)!r}"
    shapes = {}
    for name in ("mask", "context", "arms"):
        value = (
            data.get(name) if isinstance(data, Mapping) else getattr(data, name, None)
        )
        if value is not None:
            shapes[name] = tuple(int(n) for n in np.shape(value)[1:])
    return shapes, "the logged data"


@functools.lru_cache(maxsize=PROGRAM_CACHE_SIZE)
def _replay_program(agent: Agent, chunk_size: int):
    """One jitted replay per agent and chunk size, shared by every warm start."""

    def replay(state, key, chunk):
        def step(state, event):
            index, valid, obs, action, reward = event
            key_i = jax.random.fold_in(key, index)
            return (
                jax.lax.cond(
                    valid,
                    lambda s: agent.update(key_i, s, obs, action, reward),
                    lambda s: s,
                    state,
                ),
                None,
            )

        state, _ = jax.lax.scan(step, state, chunk)
        return state

    return jax.jit(replay)


def replay_logged(
    key: jax.Array,
    agent: Agent,
    state: Any,
    data: Any,
    *,
    max_events: int | None = None,
    chunk_size: int = 4096,
    progress: Callable[[int, int], None] | None = None,
) -> Any:
    """`state` after `agent.update` on every logged event, in order.

    Args:
      key: PRNG key; event i's update key is `fold_in(key, i)`.
      agent: any agent.
      state: its starting state (usually `agent.init(...)`).
      data: logged events (see `as_events`).
      max_events: replay only the first `max_events` events.
      chunk_size: events per compiled call (the last chunk is padded with
        no-op events, so one program serves every chunk).
      progress: optional callback `progress(events_done, total)`.

    Returns:
      The agent state after the replay.

    Raises:
      BanditConfigError: bad logged events, or logs of another shape than the
        agent was built for (`check_fits`).
    """
    chunk_size = positive_int("chunk_size", chunk_size)
    check_fits(agent, data)
    if max_events is not None:
        max_events = positive_int("max_events", max_events)
    total, chunks = _event_chunks(data, chunk_size)
    n = total if max_events is None else min(total, max_events)
    program = _replay_program(agent, chunk_size)
    for first, events in chunks:
        if first >= n:
            break
        index = np.arange(first, first + chunk_size)
        valid = index < n
        # Padding rows repeat the chunk's last event; they are not replayed.
        rows = np.minimum(np.arange(chunk_size), len(events["action"]) - 1)
        fields: dict[str, Any] = {
            name: events[name][rows]
            for name in ("context", "arms", "mask", "history", "history_mask")
            if name in events
        }
        obs = Observation(**fields)
        chunk = (
            jnp.asarray(index, jnp.int32),
            jnp.asarray(valid),
            obs,
            jnp.asarray(events["action"][rows], jnp.int32),
            jnp.asarray(events["reward"][rows], jnp.float32),
        )
        state = program(state, key, chunk)
        if progress is not None:
            progress(min(first + chunk_size, n), n)
    return state


def _event_chunks(
    data: Any, chunk_size: int
) -> tuple[int, Iterator[tuple[int, dict[str, np.ndarray]]]]:
    """(events in `data`, consecutive chunks of `chunk_size` events as
    `(first row, columns)`). A Parquet path is checked whole first, then read
    one chunk at a time (`bandits.files.iter_logged`), so a warm start from
    millions of logged events holds about one chunk of them in memory."""
    if isinstance(data, str | os.PathLike):
        total = check_logged_file(
            data, REPLAY_COLUMNS, OPTIONAL_COLUMNS, batch_size=chunk_size
        )
        return total, iter_logged(
            data, REPLAY_COLUMNS, OPTIONAL_COLUMNS, batch_size=chunk_size
        )
    events = as_events(data, REPLAY_COLUMNS)
    total = len(events["action"])

    def chunks() -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        for first in range(0, total, chunk_size):
            last = min(first + chunk_size, total)
            yield first, {name: v[first:last] for name, v in events.items()}

    return total, chunks()


def warm_start(
    agent: Agent,
    data: Any,
    *,
    key: jax.Array | None = None,
    max_events: int | None = None,
    chunk_size: int = 4096,
) -> Agent:
    """`agent` whose `init` returns the state reached by replaying the logs.

    Every seed starts from the same warm state (the logs are shared); `act` and
    `update` are the agent's own.

    Args:
      agent: any agent.
      data: logged events: a Parquet path, an `envs.logged.LoggedData` or a
        mapping of column arrays.
      key: PRNG key of the initialisation and the replay (default: key 0).
      max_events: replay only the first `max_events` events.
      chunk_size: events per compiled replay call.

    Returns:
      An `Agent` named "<name>_warm".

    Raises:
      BanditConfigError: the logs were recorded with another number of arms or
        feature width than the agent's (`check_fits`, before any event is read),
        or hold bad events.

    Examples:
      >>> warm = warm_start(agents.linucb(num_arms=20, dim=13, features="arms"),
      ...                   "logs/rec.parquet")  # doctest: +SKIP
    """
    check_fits(agent, data)
    key = jax.random.key(0) if key is None else key
    key_init, key_replay = jax.random.split(key)
    state = replay_logged(
        key_replay,
        agent,
        jax.jit(agent.init)(key_init),
        data,
        max_events=max_events,
        chunk_size=chunk_size,
    )
    state = jax.device_get(state)

    def init(key):
        del key
        return jax.tree.map(jnp.asarray, state)

    return agent._replace(init=init, name=f"{agent.name}_warm")


def maybe_warm_start(agent: Agent, warm_start_path: str | None, **options) -> Agent:
    """`warm_start(agent, path, **options)`, or `agent` itself when the path is
    None: the form an experiment config's per-agent `warm_start = "PATH"` key
    maps to."""
    if warm_start_path is None:
        return agent
    if not isinstance(warm_start_path, str | os.PathLike):
        raise BanditConfigError.about(
            "warm_start",
            f"must be a path to a logged-data Parquet file, got {warm_start_path!r}",
        )
    return warm_start(agent, warm_start_path, **options)


__all__ = [
    "as_events",
    "check_fits",
    "maybe_warm_start",
    "read_events",
    "replay_logged",
    "warm_start",
]
