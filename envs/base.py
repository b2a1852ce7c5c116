"""The functional environment base class and the environment registry."""

from __future__ import annotations

import abc
import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, ClassVar, Self, TypeVar, cast, dataclass_transform

import jax
import jax.numpy as jnp

from bandits.types import ArraySpec, EnvParams, EnvState, Feedback, Observation
from bandits.validation import BanditConfigError

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class BanditEnv(abc.ABC):
    """A bandit environment: static configuration here, pytrees for the rest.

    Subclasses are frozen dataclasses of Python ints/floats/strings (hashable, so a
    jitted program is compiled once per configuration) and implement
    `sample_params`, `reset`, `step`, `expected_rewards` and `observation_spec`.
    They never assign to `self`. `params_seed` fixes the instance returned by
    `default_params`.
    """

    actions_leave_state: ClassVar[bool] = False
    """True when the next state never depends on the action played (rounds are
    independent draws): the Gymnasium shell then computes rounds in blocks ahead
    for every action and steps by indexing (`envs.gym`)."""

    @property
    @abc.abstractmethod
    def num_arms(self) -> int:
        """Number of arms (candidates) K presented each round."""

    @abc.abstractmethod
    def sample_params(self, key: jax.Array) -> EnvParams:
        """Draws a problem instance."""

    @abc.abstractmethod
    def reset(self, key: jax.Array, params: EnvParams) -> tuple[Observation, EnvState]:
        """Starts a stream: the first observation and the state behind it."""

    @abc.abstractmethod
    def step(
        self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams
    ) -> tuple[Observation, EnvState, Feedback]:
        """Reveals the reward of `action` on the current observation, then moves on.

        Returns the next observation, the next state and the feedback for the
        observation that was acted on.
        """

    @abc.abstractmethod
    def observation_spec(self) -> dict[str, ArraySpec]:
        """Shapes, dtypes and finite bounds of the `Observation` fields."""

    def default_params(self) -> EnvParams:
        """The default problem instance: `sample_params` at a fixed key."""
        return self.sample_params(jax.random.key(getattr(self, "params_seed", 0)))

    @abc.abstractmethod
    def expected_rewards(self, state: EnvState, params: EnvParams) -> jax.Array:
        """Expected reward of every arm for the current observation, (K,).

        Exact pseudo-regret and logged-data oracles need it, so every env has it.
        """


class PyTreeData:
    """Base of the `pytree_dataclass` classes: `replace(**changes)`, a copy with
    some fields changed (so type checkers know the method)."""

    __slots__ = ()

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(cast(Any, self), **changes)


@dataclass_transform(frozen_default=True)
def pytree_dataclass(cls: type[_T]) -> type[_T]:
    """A frozen dataclass whose every field is a JAX pytree child, with
    `replace(**changes)` (from `PyTreeData`, which the class should subclass):
    the form of env parameters and env states.

    Plain `dataclasses` and `jax.tree_util.register_dataclass`, so importing the
    envs needs no neural-network library.
    """
    cls = dataclasses.dataclass(frozen=True)(cls)
    if not issubclass(cls, PyTreeData):
        cls.replace = PyTreeData.replace  # type: ignore[attr-defined]
    return jax.tree_util.register_dataclass(cls)


def all_arms(num_arms: int) -> jax.Array:
    """A mask allowing every arm."""
    return jnp.ones((num_arms,), dtype=bool)


def no_arm_features(num_arms: int, dtype=jnp.float32) -> jax.Array:
    """The (K, 0) `arms` field of envs whose arms carry no features."""
    return jnp.zeros((num_arms, 0), dtype=dtype)


# ---------------------------------------------------------------------------
# Registry


@dataclasses.dataclass(frozen=True)
class EnvEntry:
    """A registered environment id: its factory and fixed keyword arguments."""

    id: str
    factory: Callable[..., BanditEnv]
    defaults: dict[str, Any]
    description: str


_REGISTRY: dict[str, EnvEntry] = {}


def register(
    env_id: str, factory: Callable[..., BanditEnv], description: str, **defaults: Any
) -> None:
    """Registers `env_id` (e.g. "Linear-v0") for `make` and Gymnasium."""
    _REGISTRY[env_id] = EnvEntry(env_id, factory, dict(defaults), description)


def registered() -> dict[str, EnvEntry]:
    """The registered environment ids, in registration order."""
    return dict(_REGISTRY)


def hyperparameters(env_id: str) -> dict[str, Any]:
    """Keyword arguments accepted by `make(env_id, ...)` with their defaults."""
    entry = _entry(env_id)
    signature = inspect.signature(entry.factory)
    out = {
        name: p.default
        for name, p in signature.parameters.items()
        if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD
    }
    out.update(entry.defaults)
    return out


def _entry(env_id: str) -> EnvEntry:
    name = env_id.removeprefix("bandits/")
    if name not in _REGISTRY:
        raise BanditConfigError(
            f"unknown env {env_id!r}; known envs: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def make_env(env_id: str, **kwargs: Any) -> BanditEnv:
    """Builds the static environment for `env_id`, checking keyword names."""
    entry = _entry(env_id)
    allowed = hyperparameters(env_id)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise BanditConfigError(
            f"unknown parameter(s) {', '.join(map(repr, unknown))} for env "
            f"{entry.id!r}; allowed: {', '.join(sorted(allowed))}"
        )
    return entry.factory(**{**entry.defaults, **kwargs})


def make(env_id: str, **kwargs: Any) -> tuple[BanditEnv, EnvParams]:
    """Builds an environment and its default problem instance.

    Example:
      >>> env, params = make("Linear-v0", num_arms=10, dim=20)
    """
    env = make_env(env_id, **kwargs)
    return env, env.default_params()
