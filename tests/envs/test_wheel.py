"""`Wheel-v0`: rewards by region, the disk sampler, and uniform play's exact regret."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
import bandits
import envs
from bandits.validation import BanditConfigError
from envs.wheel import (
    WheelParams,
    WheelState,
    sample_disk,
    uniform_regret_per_step,
    wheel,
)


def _expected(x, delta=0.5):
    env = wheel(delta=delta)
    state = WheelState(context=jnp.asarray(x, jnp.float32))
    return np.asarray(env.expected_rewards(state, env.default_params()))


@pytest.mark.parametrize(
    ("x", "best"),
    [
        ((0.1, 0.1), 0),  # inside: arm 0 (mu1 = 1.2)
        ((0.6, 0.6), 1),  # x1 > 0, x2 > 0
        ((0.6, -0.6), 2),  # x1 > 0, x2 < 0
        ((-0.6, 0.6), 3),  # x1 < 0, x2 > 0
        ((-0.6, -0.6), 4),  # x1 < 0, x2 < 0
    ],
)
def test_expected_rewards_by_region(x, best):
    expected = _expected(x)
    golden = np.asarray([1.2, 1.0, 1.0, 1.0, 1.0], np.float32)
    if best > 0:
        golden[best] = 50.0
    np.testing.assert_array_equal(expected, golden)


def test_closed_form_uniform_regret():
    for delta in (0.0, 0.5, 0.9, 0.99, 1.0):
        assert math.isclose(
            uniform_regret_per_step(delta),
            0.16 * delta**2 + 39.16 * (1 - delta**2),
            rel_tol=1e-12,
        )


@pytest.mark.parametrize("delta", [0.5, 0.95])
def test_uniform_regret_per_step_matches_monte_carlo(delta):
    """Mean over 400,000 contexts of max_k mu_k - mean_k mu_k.

    The per-context value is 0.16 or 39.16, so its standard deviation is at most
    39 sqrt(p (1 - p)) <= 19.5; 400,000 draws give a standard error <= 0.031, and
    the tolerance is 5 standard errors (0.16).
    """
    env = wheel(delta=delta)
    params = env.default_params()
    keys = jax.random.split(jax.random.key(0), 400_000)

    def gap(key):
        mu = env.expected_rewards(WheelState(context=sample_disk(key)), params)
        return jnp.max(mu) - jnp.mean(mu)

    estimate = float(jnp.mean(jax.jit(jax.vmap(gap))(keys)))
    assert abs(estimate - uniform_regret_per_step(delta)) < 0.16


def test_uniform_agent_regret_through_the_simulator():
    """Random play's cumulative regret / (T u(delta)) is ~1 (normalised 100).

    16 seeds x 2,000 rounds at delta = 0.7: per-round regret has sd <= 19.5, so the
    mean per-round regret has s.e. <= 19.5 / sqrt(32,000) = 0.11 plus the action
    noise (sd <= 20); 5 s.e. of the total gives a relative tolerance of 0.08.
    """
    env, params = envs.make("Wheel-v0", delta=0.7)
    agent = agents.random(num_arms=5)
    trajectory = bandits.run(env, agent, horizon=2_000, seeds=16, params=params)
    per_step = float(np.mean(np.asarray(trajectory.regret)))
    assert abs(per_step / uniform_regret_per_step(0.7) - 1.0) < 0.08


def test_disk_sampler_is_uniform_on_the_unit_disk():
    points = np.asarray(
        jax.vmap(sample_disk)(jax.random.split(jax.random.key(1), 50_000))
    )
    radius = np.linalg.norm(points, axis=1)
    assert radius.max() <= 1.0
    # P(||x|| <= r) = r^2; binomial s.e. <= 0.0023 at n = 50,000; tolerance 5 s.e.
    for r in (0.3, 0.7, 0.95):
        assert abs(np.mean(radius <= r) - r**2) < 0.012
    # the four quadrants are equally likely (same tolerance)
    quadrant = 2 * (points[:, 0] < 0) + (points[:, 1] < 0)
    np.testing.assert_allclose(np.bincount(quadrant) / len(points), 0.25, atol=0.012)


def test_reward_noise_is_the_papers_sigma_by_default_and_code_variant_on_request():
    key_states = jax.random.split(jax.random.key(2), 20_000)
    inside = WheelState(context=jnp.asarray([0.1, 0.0]))
    outside = WheelState(context=jnp.asarray([0.9, 0.1]))

    def rewards(env, state, action):
        params = env.default_params()
        step = jax.vmap(lambda k: env.step(k, state, action, params)[2].reward)
        return np.asarray(step(key_states))

    paper = wheel()
    code = wheel(small_noise_std=0.05)
    # sample sd of 20,000 Gaussians is within 2% of sigma (s.e. ~0.5%)
    np.testing.assert_allclose(rewards(paper, inside, 0).std(), 0.01, rtol=0.02)
    np.testing.assert_allclose(rewards(code, inside, 0).std(), 0.05, rtol=0.02)
    np.testing.assert_allclose(rewards(code, outside, 1).std(), 0.01, rtol=0.02)
    np.testing.assert_allclose(rewards(code, outside, 1).mean(), 50.0, atol=1e-3)


def test_delta_is_a_traced_parameter():
    env = wheel()
    state = WheelState(context=jnp.asarray([0.6, 0.6]))
    deltas = WheelParams(delta=jnp.asarray([0.5, 0.9]))
    expected = jax.vmap(env.expected_rewards, in_axes=(None, 0))(state, deltas)
    # ||x|| = 0.85: outside the 0.5 disk, inside the 0.9 disk
    np.testing.assert_array_equal(np.asarray(expected[:, 1]), [50.0, 1.0])


def test_observation_fits_the_spec_and_bad_delta_raises():
    env, params = envs.make("Wheel-v0")
    obs, _ = env.reset(jax.random.key(0), params)
    spec = env.observation_spec()
    assert obs.context.shape == spec["context"].shape and env.num_arms == 5
    assert np.all(np.abs(np.asarray(obs.context)) <= 1.0)
    with pytest.raises(BanditConfigError, match="delta"):
        wheel(delta=1.5)
