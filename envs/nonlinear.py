"""Nonlinear per-arm reward functions of the NeuralUCB paper, `Nonlinear-v0`.

Each round every arm k shows its own feature vector x_k, drawn uniformly on the
unit sphere in R^d, and pays r = h(x_k) + sigma * eps with eps ~ N(0, 1), where
(`reward_fn`):

    "h1": h(x) = 10 (x^T a)^2
    "h2": h(x) = x^T A^T A x
    "h3": h(x) = cos(3 x^T a)

with a uniform on the unit sphere and A a d x d matrix of independent N(0, 1)
entries; (a, A) is the problem instance (`sample_params`). None of these is linear
in x (h1 and h2 are even in x), so linear bandits cannot do better than chance on
h1 and h2.

The observation has `arms` (K, d) = the x_k and, for agents that read a single
context vector, `context` (K d,) = the x_k concatenated.

References:
  Zhou, Li & Gu (2020), "Neural contextual bandits with UCB-based exploration",
  ICML, section 7.1 (synthetic reward functions).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bandits.types import ArraySpec, Feedback, Observation
from bandits.validation import choice, positive_int, real
from envs.base import BanditEnv, PyTreeData, all_arms, pytree_dataclass, register

REWARD_FUNCTIONS = ("h1", "h2", "h3")


@pytree_dataclass
class NonlinearParams(PyTreeData):
    a: jax.Array  # (d,)  unit vector (h1, h3)
    A: jax.Array  # (d, d)  Gaussian matrix (h2)


@pytree_dataclass
class NonlinearState(PyTreeData):
    arms: jax.Array  # (K, d)  this round's per-arm features on the unit sphere


@dataclasses.dataclass(frozen=True)
class NonlinearEnv(BanditEnv):
    """Per-arm nonlinear rewards h(x_k) + noise (see module docstring)."""

    arms_count: int = 4
    dim: int = 10
    reward_fn: str = "h1"
    noise_std: float = 1.0
    params_seed: int = 0

    def __post_init__(self):
        positive_int("num_arms", self.arms_count)
        positive_int("dim", self.dim)
        choice("reward_fn", self.reward_fn, REWARD_FUNCTIONS)
        real("noise_std", self.noise_std, low=0.0)

    @property
    def num_arms(self) -> int:
        return self.arms_count

    def sample_params(self, key: jax.Array) -> NonlinearParams:
        key_a, key_A = jax.random.split(key)
        return NonlinearParams(
            a=unit_sphere(key_a, (self.dim,)),
            A=jax.random.normal(key_A, (self.dim, self.dim)),
        )

    def reset(self, key, params):
        del params
        state = self._sample_state(key)
        return self._observe(state), state

    def step(self, key, state, action, params):
        key_reward, key_next = jax.random.split(key)
        expected = self.expected_rewards(state, params)
        reward = expected[action] + self.noise_std * jax.random.normal(key_reward)
        next_state = self._sample_state(key_next)
        return self._observe(next_state), next_state, Feedback(reward, expected)

    def expected_rewards(self, state, params):
        return jax.vmap(lambda x: reward_function(self.reward_fn, x, params))(
            state.arms
        )

    def observation_spec(self):
        K, d = self.arms_count, self.dim
        return {
            "context": ArraySpec((K * d,), jnp.float32, -1.0, 1.0),
            "arms": ArraySpec((K, d), jnp.float32, -1.0, 1.0),
            "mask": ArraySpec((K,), jnp.bool_, 0, 1),
        }

    def _sample_state(self, key):
        return NonlinearState(arms=unit_sphere(key, (self.arms_count, self.dim)))

    def _observe(self, state):
        return Observation(
            context=state.arms.reshape(-1),
            arms=state.arms,
            mask=all_arms(self.arms_count),
        )


def unit_sphere(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Points uniform on the unit sphere along the last axis (normalised Gaussians)."""
    z = jax.random.normal(key, shape)
    return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)


def reward_function(name: str, x: jax.Array, params: NonlinearParams) -> jax.Array:
    """h(x) for one feature vector x (d,)."""
    if name == "h1":
        return 10.0 * (x @ params.a) ** 2
    if name == "h2":
        Ax = params.A @ x
        return Ax @ Ax
    return jnp.cos(3.0 * (x @ params.a))


def nonlinear(
    *,
    num_arms: int = 4,
    dim: int = 10,
    reward_fn: str = "h1",
    noise_std: float = 1.0,
    params_seed: int = 0,
) -> NonlinearEnv:
    """Nonlinear per-arm rewards; see the module docstring."""
    return NonlinearEnv(num_arms, dim, reward_fn, noise_std, params_seed)


register(
    "Nonlinear-v0",
    nonlinear,
    "Per-arm features on the unit sphere, r = h(x_k) + N(0, noise_std^2) with "
    "h1 = 10 (x^T a)^2, h2 = x^T A^T A x or h3 = cos(3 x^T a) (Zhou et al. 2020).",
)
