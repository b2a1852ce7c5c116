"""Linear contextual bandits: disjoint per-arm parameters and shared per-arm features.

`Linear-v0` (Gaussian rewards) and `LinearBernoulli-v0` (clicks through a logistic
link) share one context x ~ U[-1, 1]^d per round and a parameter theta_k per arm:

    mu_k(x) = x^T theta_k                      (gaussian:  r = mu_k + sigma * eps)
    p_k(x)  = sigmoid(x^T theta_k)             (bernoulli: r ~ Bernoulli(p_k))

with theta_k ~ N(0, scale^2 / d * I), so x^T theta_k has variance scale^2 / 3.

`LinearArmFeatures-v0` is the "action-dependent features" (ADF) form: each round
every arm k shows a feature vector a_k ~ U[-1, 1]^p, and one shared theta gives
mu_k = a_k^T theta + x^T theta_ctx. The context term is common to all arms, so it
moves the reward level but not which arm is best; K may be large (1000+).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from bandits.types import ArraySpec, Feedback, Observation
from bandits.validation import choice, positive_int, real
from envs.base import (
    BanditEnv,
    PyTreeData,
    all_arms,
    no_arm_features,
    pytree_dataclass,
    register,
)

REWARD_MODELS = ("gaussian", "bernoulli")


@pytree_dataclass
class LinearParams(PyTreeData):
    theta: jax.Array  # (K, d)  per-arm parameters


@pytree_dataclass
class ContextState(PyTreeData):
    context: jax.Array  # (d,)  the context the agent is about to act on


class _IndependentRounds(BanditEnv):
    """An env whose rounds are independent draws: a fresh state every step, the
    reward a linear score (`_logits`) through the reward model's link.

    Subclasses give `_sample_state(key)`, `_observe(state)` and
    `_logits(state, params)`, and the fields `reward` and `noise_std`.
    """

    reward: str
    noise_std: float
    actions_leave_state: ClassVar[bool] = True

    def reset(self, key, params):
        del params
        state = self._sample_state(key)
        return self._observe(state), state

    def step(self, key, state, action, params):
        key_reward, key_next = jax.random.split(key)
        expected = self.expected_rewards(state, params)
        reward = _sample_reward(
            key_reward, self.reward, expected[action], self.noise_std
        )
        next_state = self._sample_state(key_next)
        return self._observe(next_state), next_state, Feedback(reward, expected)

    def expected_rewards(self, state, params):
        logits = self._logits(state, params)
        return jax.nn.sigmoid(logits) if self.reward == "bernoulli" else logits

    @abc.abstractmethod
    def _sample_state(self, key):
        """A round's state (its context) drawn from `key`."""

    @abc.abstractmethod
    def _observe(self, state) -> Observation:
        """What the agent sees of the state."""

    @abc.abstractmethod
    def _logits(self, state, params) -> jax.Array:
        """The arms' mean rewards (before the sigmoid of Bernoulli rewards), (K,)."""


@dataclasses.dataclass(frozen=True)
class LinearEnv(_IndependentRounds):
    """Disjoint linear bandit over a shared context (see module docstring)."""

    arms_count: int = 10
    dim: int = 20
    reward: str = "gaussian"
    noise_std: float = 1.0
    scale: float = 1.0
    params_seed: int = 0

    def __post_init__(self):
        positive_int("num_arms", self.arms_count)
        positive_int("dim", self.dim)
        choice("reward", self.reward, REWARD_MODELS)
        real("noise_std", self.noise_std, low=0.0)
        real("scale", self.scale, low=0.0)

    @property
    def num_arms(self) -> int:
        return self.arms_count

    def sample_params(self, key: jax.Array) -> LinearParams:
        theta = jax.random.normal(key, (self.arms_count, self.dim))
        return LinearParams(theta=theta * (self.scale / jnp.sqrt(self.dim)))

    def _logits(self, state, params):
        return params.theta @ state.context

    def observation_spec(self):
        return {
            "context": ArraySpec((self.dim,), jnp.float32, -1.0, 1.0),
            "arms": ArraySpec((self.arms_count, 0), jnp.float32, -1.0, 1.0),
            "mask": ArraySpec((self.arms_count,), jnp.bool_, 0, 1),
        }

    def _sample_state(self, key):
        return ContextState(
            context=jax.random.uniform(key, (self.dim,), minval=-1.0, maxval=1.0)
        )

    def _observe(self, state):
        return Observation(
            context=state.context,
            arms=no_arm_features(self.arms_count),
            mask=all_arms(self.arms_count),
        )


@pytree_dataclass
class ArmFeatureParams(PyTreeData):
    theta: jax.Array  # (p,)  shared parameter over arm features
    theta_context: jax.Array  # (d,)  context effect common to every arm


@pytree_dataclass
class ArmFeatureState(PyTreeData):
    context: jax.Array  # (d,)
    arms: jax.Array  # (K, p)


@dataclasses.dataclass(frozen=True)
class LinearArmFeaturesEnv(_IndependentRounds):
    """Shared-parameter linear bandit over per-arm features (ADF form)."""

    arms_count: int = 50
    arm_dim: int = 10
    context_dim: int = 5
    reward: str = "gaussian"
    noise_std: float = 1.0
    scale: float = 1.0
    params_seed: int = 0

    def __post_init__(self):
        positive_int("num_arms", self.arms_count)
        positive_int("arm_dim", self.arm_dim)
        positive_int("context_dim", self.context_dim)
        choice("reward", self.reward, REWARD_MODELS)
        real("noise_std", self.noise_std, low=0.0)
        real("scale", self.scale, low=0.0)

    @property
    def num_arms(self) -> int:
        return self.arms_count

    def sample_params(self, key):
        key_arm, key_context = jax.random.split(key)
        return ArmFeatureParams(
            theta=jax.random.normal(key_arm, (self.arm_dim,))
            * (self.scale / jnp.sqrt(self.arm_dim)),
            theta_context=jax.random.normal(key_context, (self.context_dim,))
            * (self.scale / jnp.sqrt(self.context_dim)),
        )

    def _logits(self, state, params):
        return state.arms @ params.theta + state.context @ params.theta_context

    def observation_spec(self):
        return {
            "context": ArraySpec((self.context_dim,), jnp.float32, -1.0, 1.0),
            "arms": ArraySpec((self.arms_count, self.arm_dim), jnp.float32, -1.0, 1.0),
            "mask": ArraySpec((self.arms_count,), jnp.bool_, 0, 1),
        }

    def _sample_state(self, key):
        key_context, key_arms = jax.random.split(key)
        return ArmFeatureState(
            context=jax.random.uniform(
                key_context, (self.context_dim,), minval=-1.0, maxval=1.0
            ),
            arms=jax.random.uniform(
                key_arms, (self.arms_count, self.arm_dim), minval=-1.0, maxval=1.0
            ),
        )

    def _observe(self, state):
        return Observation(
            context=state.context, arms=state.arms, mask=all_arms(self.arms_count)
        )


def _sample_reward(key, model: str, mean, noise_std: float):
    """A Gaussian reward around `mean`, or a Bernoulli click with probability `mean`."""
    if model == "bernoulli":
        return jax.random.bernoulli(key, mean).astype(jnp.float32)
    return mean + noise_std * jax.random.normal(key, jnp.shape(mean))


def linear(
    *,
    num_arms: int = 10,
    dim: int = 20,
    reward: str = "gaussian",
    noise_std: float = 1.0,
    scale: float = 1.0,
    params_seed: int = 0,
) -> LinearEnv:
    """Disjoint linear bandit; see the module docstring."""
    return LinearEnv(num_arms, dim, reward, noise_std, scale, params_seed)


def linear_arm_features(
    *,
    num_arms: int = 50,
    arm_dim: int = 10,
    context_dim: int = 5,
    reward: str = "gaussian",
    noise_std: float = 1.0,
    scale: float = 1.0,
    params_seed: int = 0,
) -> LinearArmFeaturesEnv:
    """Shared-parameter linear bandit over per-arm features; see module docstring."""
    return LinearArmFeaturesEnv(
        num_arms, arm_dim, context_dim, reward, noise_std, scale, params_seed
    )


register(
    "Linear-v0",
    linear,
    "Disjoint linear bandit, Gaussian rewards: r = x^T theta_k + noise.",
)
register(
    "LinearBernoulli-v0",
    linear,
    "Disjoint linear bandit with Bernoulli clicks, p = sigmoid(x^T theta_k).",
    reward="bernoulli",
)
register(
    "LinearArmFeatures-v0",
    linear_arm_features,
    "Shared theta over per-arm features (ADF form), K can be 1000+.",
)
