"""The wheel bandit of Riquelme, Tucker & Snoek (2018), `Wheel-v0`.

Each round a context x is drawn uniformly on the unit disk in R^2. There are five
arms. Arm 0 always pays N(mu1, sigma^2) with mu1 = 1.2. Arms 1-4 pay N(mu2, sigma^2)
with mu2 = 1.0, except that when ||x|| > delta the arm of x's quadrant pays
N(mu3, sigma^2) with mu3 = 50:

    arm 1: x1 > 0, x2 > 0     arm 2: x1 > 0, x2 < 0
    arm 3: x1 < 0, x2 > 0     arm 4: x1 < 0, x2 < 0

so inside the disk of radius delta arm 0 is best, outside the quadrant's arm is.
The outer ring has probability 1 - delta^2, which makes large delta a hard
exploration problem.

Noise: the paper states sigma = 0.01 for every arm (the default here). The
released code draws the small arms (mu1, mu2) with standard deviation 0.05 and the
large one (mu3) with 0.01; pass `small_noise_std=0.05` for that variant. Regret is
computed from exact expected rewards, so the choice affects only what agents see.

Uniform play earns (mu1 + 4 mu2) / 5 = 1.04 inside (regret 0.16) and
(mu1 + mu3 + 3 mu2) / 5 = 10.84 outside (regret 39.16), so its expected regret per
round is exactly

    0.16 delta^2 + 39.16 (1 - delta^2)            (`uniform_regret_per_step`),

the denominator of the paper's normalised cumulative regret (uniform = 100).

References:
  Riquelme, Tucker & Snoek (2018), "Deep Bayesian bandits showdown: an empirical
  comparison of Bayesian deep networks for Thompson sampling", ICLR, section 5.1.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bandits.types import ArraySpec, Feedback, Observation
from bandits.validation import real
from envs.base import (
    BanditEnv,
    PyTreeData,
    all_arms,
    no_arm_features,
    pytree_dataclass,
    register,
)

NUM_ARMS = 5


@pytree_dataclass
class WheelParams(PyTreeData):
    delta: jax.Array  # ()  radius of the inner disk, in [0, 1]


@pytree_dataclass
class WheelState(PyTreeData):
    context: jax.Array  # (2,)  point in the unit disk


@dataclasses.dataclass(frozen=True)
class WheelEnv(BanditEnv):
    """The wheel bandit (see module docstring); `delta` lives in the params."""

    delta: float = 0.5
    mu1: float = 1.2
    mu2: float = 1.0
    mu3: float = 50.0
    noise_std: float = 0.01
    small_noise_std: float | None = None
    params_seed: int = 0

    def __post_init__(self):
        real("delta", self.delta, low=0.0, high=1.0)
        real("mu1", self.mu1)
        real("mu2", self.mu2)
        real("mu3", self.mu3)
        real("noise_std", self.noise_std, low=0.0)
        if self.small_noise_std is not None:
            real("small_noise_std", self.small_noise_std, low=0.0)

    @property
    def num_arms(self) -> int:
        return NUM_ARMS

    def sample_params(self, key: jax.Array) -> WheelParams:
        del key
        return WheelParams(delta=jnp.asarray(self.delta, jnp.float32))

    def reset(self, key, params):
        del params
        state = WheelState(context=sample_disk(key))
        return self._observe(state), state

    def step(self, key, state, action, params):
        key_reward, key_context = jax.random.split(key)
        expected = self.expected_rewards(state, params)
        quadrant, outside = _region(state.context, params.delta)
        large = outside & (action == quadrant)
        small_std = self.noise_std
        if self.small_noise_std is not None:
            small_std = self.small_noise_std
        std = jnp.where(large, self.noise_std, small_std)
        reward = expected[action] + std * jax.random.normal(key_reward)
        next_state = WheelState(context=sample_disk(key_context))
        return self._observe(next_state), next_state, Feedback(reward, expected)

    def expected_rewards(self, state, params):
        quadrant, outside = _region(state.context, params.delta)
        arms = jnp.arange(NUM_ARMS)
        small = jnp.where(arms == 0, self.mu1, self.mu2)
        return jnp.where(outside & (arms == quadrant), self.mu3, small).astype(
            jnp.float32
        )

    def observation_spec(self):
        return {
            "context": ArraySpec((2,), jnp.float32, -1.0, 1.0),
            "arms": ArraySpec((NUM_ARMS, 0), jnp.float32, -1.0, 1.0),
            "mask": ArraySpec((NUM_ARMS,), jnp.bool_, 0, 1),
        }

    def _observe(self, state):
        return Observation(
            context=state.context,
            arms=no_arm_features(NUM_ARMS),
            mask=all_arms(NUM_ARMS),
        )


def _region(x: jax.Array, delta) -> tuple[jax.Array, jax.Array]:
    """The quadrant's arm (1..4) and whether ||x|| > delta."""
    quadrant = 1 + 2 * (x[0] < 0) + (x[1] < 0)
    return quadrant, jnp.sum(x * x) > delta**2


def sample_disk(key: jax.Array) -> jax.Array:
    """A point uniform on the unit disk: radius sqrt(U), angle 2 pi V."""
    key_radius, key_angle = jax.random.split(key)
    radius = jnp.sqrt(jax.random.uniform(key_radius))
    angle = 2.0 * jnp.pi * jax.random.uniform(key_angle)
    return jnp.clip(radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)]), -1.0, 1.0)


def uniform_regret_per_step(
    delta: float, mu1: float = 1.2, mu2: float = 1.0, mu3: float = 50.0
) -> float:
    """Expected per-round regret of uniform play: 0.16 d^2 + 39.16 (1 - d^2).

    Inside (prob. delta^2): mu1 - (mu1 + 4 mu2) / 5; outside: mu3 - (mu1 + mu3 +
    3 mu2) / 5. Valid while mu1 >= mu2 and mu3 >= mu1.
    """
    inside = mu1 - (mu1 + 4 * mu2) / 5
    outside = mu3 - (mu1 + mu3 + 3 * mu2) / 5
    return inside * delta**2 + outside * (1 - delta**2)


def wheel(
    *,
    delta: float = 0.5,
    mu1: float = 1.2,
    mu2: float = 1.0,
    mu3: float = 50.0,
    noise_std: float = 0.01,
    small_noise_std: float | None = None,
    params_seed: int = 0,
) -> WheelEnv:
    """The wheel bandit; see the module docstring."""
    return WheelEnv(delta, mu1, mu2, mu3, noise_std, small_noise_std, params_seed)


register(
    "Wheel-v0",
    wheel,
    "Wheel bandit (Riquelme et al. 2018): 5 arms, context on the unit disk, "
    "a rare high-reward ring ||x|| > delta.",
)
