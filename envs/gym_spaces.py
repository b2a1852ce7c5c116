"""The Gymnasium spaces of the bandit shells (`envs.gym`, `envs.gym_vector`) and
the checks of the actions played in them.

`observation_space` is a `spaces.Dict` of finite `Box`es with the keys and
bounds of the env's `observation_spec()`; the action space is `MaskedDiscrete`
(K arms, sampling among the allowed ones) or, for a slate env, `SlateSpace` (L
distinct items). A masked-out action is refused with `MaskedActionError`, or
played with one warning per env when the shell was made with `strict=False`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from gymnasium import spaces

from bandits.types import ArraySpec, Observation
from envs.base import BanditEnv


class MaskedActionError(ValueError):
    """An action the current observation's mask forbids (a strict shell)."""


class MaskedDiscrete(spaces.Discrete):
    """`Discrete(K)` whose `sample()` draws among the arms currently allowed.

    `allowed` is the (K,) mask of the observation the agent is about to act on
    (set by the shell; None before a reset). While every arm is allowed, sampling
    is exactly `Discrete.sample()`.
    """

    allowed: np.ndarray | None = None

    def sample(self, mask=None, probability=None):
        if mask is None and probability is None and _some_masked(self.allowed):
            mask = self.allowed.astype(np.int8)
        return super().sample(mask=mask, probability=probability)


class MaskedMultiDiscrete(spaces.MultiDiscrete):
    """The batched `MaskedDiscrete` of a vector env: `allowed` is (num_envs, K)."""

    allowed: np.ndarray | None = None

    def sample(self, mask=None, probability=None):
        if mask is None and probability is None and _some_masked(self.allowed):
            mask = tuple(row.astype(np.int8) for row in self.allowed)
        return super().sample(mask=mask, probability=probability)


def _some_masked(allowed: np.ndarray | None) -> bool:
    return allowed is not None and not allowed.all()


def _sample_slate(
    rng: np.random.Generator, num_items: int, size: int, allowed: np.ndarray | None
) -> np.ndarray:
    """L distinct items in uniformly random order, drawn among the allowed ones
    (among all when fewer than L are allowed)."""
    pool = np.arange(num_items)
    if allowed is not None and allowed.sum() >= size:
        pool = pool[allowed]
    return rng.choice(pool, size=size, replace=False).astype(np.int64)


class SlateSpace(spaces.MultiDiscrete):
    """The action space of a slate env: `MultiDiscrete([K] * L)`, L positions.

    `sample()` draws L distinct items among those `allowed` (the current
    observation's mask, set by the shell), and `contains` refuses a repeated
    item. An explicit `sample(mask=...)` is Gymnasium's own (it may repeat).
    """

    allowed: np.ndarray | None = None

    def __init__(self, num_items: int, slate_size: int, seed=None):
        super().__init__(np.full(slate_size, num_items, dtype=np.int64), seed=seed)
        self.num_items, self.slate_size = num_items, slate_size

    def sample(self, mask=None, probability=None):
        if mask is not None or probability is not None:
            return super().sample(mask=mask, probability=probability)
        return _sample_slate(
            self.np_random, self.num_items, self.slate_size, self.allowed
        )

    def contains(self, x) -> bool:
        value = np.asarray(x)
        return bool(super().contains(x) and len(np.unique(value)) == value.shape[-1])


class SlateBatchSpace(spaces.MultiDiscrete):
    """The batched `SlateSpace` of a vector env, (num_envs, L); `allowed` is
    (num_envs, K)."""

    allowed: np.ndarray | None = None

    def __init__(self, num_envs: int, num_items: int, slate_size: int, seed=None):
        nvec = np.full((num_envs, slate_size), num_items, dtype=np.int64)
        super().__init__(nvec, seed=seed)
        self.num_items, self.slate_size = num_items, slate_size

    def sample(self, mask=None, probability=None):
        if mask is not None or probability is not None:
            return super().sample(mask=mask, probability=probability)
        rows = self.shape[0]
        allowed = self.allowed if self.allowed is not None else [None] * rows
        return np.stack(
            [
                _sample_slate(self.np_random, self.num_items, self.slate_size, a)
                for a in allowed
            ]
        )


def _action_space(env: BanditEnv) -> MaskedDiscrete | SlateSpace:
    """`MaskedDiscrete(K)`, or a `SlateSpace` for an env with a `slate_size`."""
    size = getattr(env, "slate_size", None)
    if size is None:
        return MaskedDiscrete(env.num_arms)
    return SlateSpace(env.num_arms, size)


def _check_slate(action: Any, num_items: int, size: int) -> np.ndarray:
    """`action` as an (L,) int32 array of distinct items in [0, K), else raises."""
    value = np.asarray(action)
    if (
        value.shape != (size,)
        or not np.issubdtype(value.dtype, np.integer)
        or np.any(value < 0)
        or np.any(value >= num_items)
    ):
        raise ValueError(
            f"action must be a slate: {size} integers in [0, {num_items}) (one "
            f"item per position), got {action!r}"
        )
    items, counts = np.unique(value, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(
            f"action {value.tolist()} repeats item(s) {items[counts > 1].tolist()}: "
            f"a slate shows {size} distinct items"
        )
    return value.astype(np.int32)


def _refuse_masked(action: int, allowed: np.ndarray, where: str = "") -> str:
    """The message for a masked-out `action` given the (K,) `allowed` mask."""
    arms = np.flatnonzero(allowed).tolist()
    return (
        f"action {action}{where} is masked out by the current observation; "
        f"allowed actions: {arms}"
    )


def _refuse_or_warn(shell: Any, message: str) -> None:
    """A masked-out action: an error for a strict shell, else one warning per
    env (the action is played; its regret may be negative)."""
    if shell.strict:
        raise MaskedActionError(
            f"{message} (make the env with strict=False to play it anyway)"
        )
    if not shell._warned_masked:
        shell._warned_masked = True
        warnings.warn(
            f"{message}; played anyway (strict=False), its regret may be "
            "negative. Warned once per env.",
            stacklevel=3,
        )


def observation_space(env: BanditEnv) -> spaces.Dict:
    """The Gymnasium observation space of `env`, from its `observation_spec()`.

    Raises:
      ValueError: the spec names a field that `Observation` lacks or has an
        infinite bound.
    """
    spec = env.observation_spec()
    return spaces.Dict({name: _box(env, name, field) for name, field in spec.items()})


def _box(env: BanditEnv, name: str, field: ArraySpec) -> spaces.Box:
    if name not in Observation._fields:
        raise ValueError(
            f"{type(env).__name__}.observation_spec() has field {name!r}; "
            f"Observation fields are {', '.join(Observation._fields)}"
        )
    if not (math.isfinite(field.low) and math.isfinite(field.high)):
        raise ValueError(
            f"{type(env).__name__}.observation_spec()[{name!r}] needs finite "
            f"bounds, got [{field.low}, {field.high}]"
        )
    dtype = np.dtype(field.dtype)
    shape = tuple(int(n) for n in field.shape)
    if dtype == np.bool_:
        return spaces.Box(0, 1, shape, dtype=np.bool_)  # type: ignore[arg-type]
    if np.issubdtype(dtype, np.integer):
        return spaces.Box(int(field.low), int(field.high), shape, dtype=dtype)
    return spaces.Box(float(field.low), float(field.high), shape, dtype=dtype)


def _numpy_obs(obs: Observation, space: spaces.Dict) -> dict[str, np.ndarray]:
    """Fresh NumPy arrays (one per space key) in the space's dtypes."""
    return {
        name: np.array(getattr(obs, name), dtype=box.dtype)
        for name, box in space.spaces.items()
    }


def _check_action(action: Any, num_arms: int) -> int:
    value = np.asarray(action)
    if (
        value.shape != ()
        or not np.issubdtype(value.dtype, np.integer)
        or not 0 <= int(value) < num_arms
    ):
        raise ValueError(
            f"action must be an integer in [0, {num_arms}), got {action!r}"
        )
    return int(value)


# ---------------------------------------------------------------------------
# Vector environment
