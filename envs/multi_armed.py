"""Context-free K-armed stochastic bandits (Bernoulli or Gaussian rewards).

Each problem instance fixes one mean reward mu_k per arm; every round the agent sees
the same constant context and the reward of the pulled arm is drawn independently:

    bernoulli:  mu_k ~ U(0, 1),   r ~ Bernoulli(mu_k)
    gaussian:   mu_k ~ N(0, 1),   r = mu_k + sigma * eps,  eps ~ N(0, 1)

The observation carries `context = ones(1)` (so linear agents reduce to per-arm
means), `arms` of shape (K, 0) and a mask allowing every arm. Nothing evolves, so
the env state is `None` and the per-step oracle is the fixed best arm
argmax_k mu_k.

References:
  Lattimore, T. and Szepesvári, C. (2020). Bandit Algorithms, ch. 4 (stochastic
  bandits) and ch. 7 (the upper confidence bound algorithm). Cambridge University
  Press.
  Auer, P., Cesa-Bianchi, N. and Fischer, P. (2002). Finite-time analysis of the
  multiarmed bandit problem. Machine Learning 47, 235-256.
"""

from __future__ import annotations

import dataclasses

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

REWARD_MODELS = ("bernoulli", "gaussian")


@pytree_dataclass
class MultiArmedParams(PyTreeData):
    means: jax.Array  # (K,)  expected reward mu_k of every arm


@dataclasses.dataclass(frozen=True)
class MultiArmedEnv(BanditEnv):
    """K-armed bandit with a constant context (see module docstring)."""

    arms_count: int = 10
    reward: str = "bernoulli"
    noise_std: float = 1.0
    params_seed: int = 0

    def __post_init__(self):
        positive_int("num_arms", self.arms_count)
        choice("reward", self.reward, REWARD_MODELS)
        real("noise_std", self.noise_std, low=0.0)

    @property
    def num_arms(self) -> int:
        return self.arms_count

    def sample_params(self, key: jax.Array) -> MultiArmedParams:
        """Draws mu ~ U(0, 1)^K (bernoulli) or mu ~ N(0, I_K) (gaussian)."""
        if self.reward == "bernoulli":
            means = jax.random.uniform(key, (self.arms_count,))
        else:
            means = jax.random.normal(key, (self.arms_count,))
        return MultiArmedParams(means=means)

    def reset(
        self, key: jax.Array, params: MultiArmedParams
    ) -> tuple[Observation, None]:
        del key, params
        return self._observe(), None

    def step(
        self,
        key: jax.Array,
        state: None,
        action: jax.Array,
        params: MultiArmedParams,
    ) -> tuple[Observation, None, Feedback]:
        expected = self.expected_rewards(state, params)
        mean = expected[action]
        if self.reward == "bernoulli":
            reward = jax.random.bernoulli(key, mean).astype(expected.dtype)
        else:
            reward = mean + self.noise_std * jax.random.normal(key, (), expected.dtype)
        return self._observe(), None, Feedback(reward, expected)

    def expected_rewards(self, state: None, params: MultiArmedParams) -> jax.Array:
        """mu, the (K,) vector of arm means (the same every round)."""
        del state
        return params.means

    def observation_spec(self) -> dict[str, ArraySpec]:
        return {
            "context": ArraySpec((1,), jnp.float32, 0.0, 1.0),
            "arms": ArraySpec((self.arms_count, 0), jnp.float32, -1.0, 1.0),
            "mask": ArraySpec((self.arms_count,), jnp.bool_, 0, 1),
        }

    def _observe(self) -> Observation:
        return Observation(
            context=jnp.ones((1,), jnp.float32),
            arms=no_arm_features(self.arms_count),
            mask=all_arms(self.arms_count),
        )


def multi_armed(
    *,
    num_arms: int = 10,
    reward: str = "bernoulli",
    noise_std: float = 1.0,
    params_seed: int = 0,
) -> MultiArmedEnv:
    """Context-free K-armed bandit; see the module docstring.

    Args:
      num_arms: number of arms K.
      reward: "bernoulli" (mu_k ~ U(0, 1)) or "gaussian" (mu_k ~ N(0, 1)).
      noise_std: sigma of the Gaussian reward noise (unused for "bernoulli").
      params_seed: seed of the instance returned by `default_params`.

    Example:
      >>> import envs
      >>> env, params = envs.make("MultiArmed-v0", num_arms=5)
      >>> env.expected_rewards(None, params).shape
      (5,)
    """
    return MultiArmedEnv(num_arms, reward, noise_std, params_seed)


register(
    "MultiArmed-v0",
    multi_armed,
    "Context-free K-armed bandit, Bernoulli rewards with means mu_k ~ U(0, 1).",
)
register(
    "MultiArmedGaussian-v0",
    multi_armed,
    "Context-free K-armed bandit, rewards mu_k + sigma * N(0, 1), mu_k ~ N(0, 1).",
    reward="gaussian",
)
