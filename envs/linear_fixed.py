"""A non-contextual linear bandit: fixed arm features, one shared theta.

`LinearFixedArms-v0` is the linear bandit of Lee et al. (2023, "Supervised
Pretraining Can Learn In-Context Reinforcement Learning"). A problem instance
holds K arm features phi(a) in R^d and one parameter theta; every round shows the
same arms, and pulling arm a pays

    r = <theta, phi(a)> + sigma * eps,   eps ~ N(0, 1),

so the optimal arm argmax_a <theta, phi(a)> is fixed for the whole stream.
theta ~ N(0, I / d) is drawn per instance. The features phi(a) ~ N(0, I / d) are
drawn either per instance (`shared_arms=False`, the default) or once from
`arms_seed` and shared by every instance (`shared_arms=True`, as public copies
of the paper's code do: one numpy draw with seed 1234, only theta varies across
tasks; our draw uses JAX keys, so the vectors themselves differ from theirs).

The observation carries `context = ones(1)` (nothing varies between rounds),
`arms` = phi (K, d) and a mask allowing every arm; the env state is `None`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bandits.types import ArraySpec, Feedback, Observation
from bandits.validation import BanditConfigError, non_negative_int, positive_int, real
from envs.base import BanditEnv, PyTreeData, all_arms, pytree_dataclass, register

FEATURE_BOUND = 10.0
"""The bound the observation spec declares for the Gaussian features: |phi| > 10
has probability below 1e-20 at d >= 1, so the spec holds in practice."""


@pytree_dataclass
class FixedArmsParams(PyTreeData):
    theta: jax.Array  # (d,)  shared parameter
    arms: jax.Array  # (K, d)  the arm features phi, fixed for the instance


@dataclasses.dataclass(frozen=True)
class LinearFixedArmsEnv(BanditEnv):
    """Linear bandit over fixed per-instance arm features (see module docstring)."""

    arms_count: int = 10
    dim: int = 2
    noise_std: float = 0.3
    shared_arms: bool = False
    arms_seed: int = 1234
    params_seed: int = 0

    def __post_init__(self):
        positive_int("num_arms", self.arms_count)
        positive_int("dim", self.dim)
        real("noise_std", self.noise_std, low=0.0)
        if not isinstance(self.shared_arms, bool):
            raise BanditConfigError(
                f"shared_arms must be true or false, got {self.shared_arms!r}"
            )
        non_negative_int("arms_seed", self.arms_seed)

    @property
    def num_arms(self) -> int:
        return self.arms_count

    def sample_params(self, key: jax.Array) -> FixedArmsParams:
        """theta ~ N(0, I/d); phi ~ N(0, I/d) per instance, or from `arms_seed`."""
        key_theta, key_arms = jax.random.split(key)
        if self.shared_arms:
            key_arms = jax.random.key(self.arms_seed)
        scale = 1.0 / jnp.sqrt(self.dim)
        theta = jax.random.normal(key_theta, (self.dim,)) * scale
        arms = jax.random.normal(key_arms, (self.arms_count, self.dim)) * scale
        return FixedArmsParams(theta=theta, arms=arms)

    def reset(self, key: jax.Array, params: FixedArmsParams):
        del key
        return self._observe(params), None

    def step(self, key: jax.Array, state: None, action: jax.Array, params):
        expected = self.expected_rewards(state, params)
        noise = jax.random.normal(key, (), expected.dtype)
        reward = expected[action] + self.noise_std * noise
        return self._observe(params), None, Feedback(reward, expected)

    def expected_rewards(self, state: None, params: FixedArmsParams) -> jax.Array:
        """<theta, phi(a)> for every arm a, (K,): the same every round."""
        del state
        return params.arms @ params.theta

    def observation_spec(self) -> dict[str, ArraySpec]:
        bound = FEATURE_BOUND
        return {
            "context": ArraySpec((1,), jnp.float32, 0.0, 1.0),
            "arms": ArraySpec((self.arms_count, self.dim), jnp.float32, -bound, bound),
            "mask": ArraySpec((self.arms_count,), jnp.bool_, 0, 1),
        }

    def _observe(self, params: FixedArmsParams) -> Observation:
        return Observation(
            context=jnp.ones((1,), jnp.float32),
            arms=params.arms.astype(jnp.float32),
            mask=all_arms(self.arms_count),
        )


def linear_fixed_arms(
    *,
    num_arms: int = 10,
    dim: int = 2,
    noise_std: float = 0.3,
    shared_arms: bool = False,
    arms_seed: int = 1234,
    params_seed: int = 0,
) -> LinearFixedArmsEnv:
    """Non-contextual linear bandit with fixed arm features; see module docstring.

    Args:
      num_arms: number of arms K.
      dim: feature dimension d.
      noise_std: sigma of the Gaussian reward noise.
      shared_arms: draw phi once from `arms_seed` for every instance (the
        paper's code) instead of per instance.
      arms_seed: seed of the shared features (used when `shared_arms`).
      params_seed: seed of the instance returned by `default_params`.

    Example:
      >>> import envs
      >>> env, params = envs.make("LinearFixedArms-v0")
      >>> env.expected_rewards(None, params).shape
      (10,)
    """
    return LinearFixedArmsEnv(
        num_arms, dim, noise_std, shared_arms, arms_seed, params_seed
    )


register(
    "LinearFixedArms-v0",
    linear_fixed_arms,
    "Non-contextual linear bandit: fixed arm features phi(a), r = <theta, phi(a)>"
    " + noise.",
)
