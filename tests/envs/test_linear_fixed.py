"""LinearFixedArms-v0 (non-contextual linear bandit, fixed arm features)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from bandits.validation import BanditConfigError

MC_SAMPLES = 20_000
# Monte-Carlo checks accept 5 standard errors: with fixed keys they are
# deterministic, and a correct env would fail a fresh seed with probability < 1e-6.
Z = 5.0


def _stream(env, params, actions):
    """Observations and feedback of a stream playing `actions` in turn."""
    obs, state = env.reset(jax.random.key(1), params)
    seen, feedback = [obs], []
    for t, action in enumerate(actions):
        obs, state, fb = env.step(jax.random.key(100 + t), state, action, params)
        seen.append(obs)
        feedback.append(fb)
    return seen, feedback


def test_arms_are_fixed_within_an_instance_and_the_optimal_arm_too():
    env, params = envs.make("LinearFixedArms-v0", num_arms=6, dim=3)
    seen, feedback = _stream(env, params, [0, 5, 2, 2, 4, 1, 3])
    for obs in seen:
        np.testing.assert_array_equal(obs.arms, params.arms)
        np.testing.assert_array_equal(obs.context, [1.0])
        assert obs.mask.all() and obs.arms.shape == (6, 3)
    best = {int(jnp.argmax(fb.expected_rewards)) for fb in feedback}
    assert best == {int(jnp.argmax(params.arms @ params.theta))}


def test_expected_rewards_are_the_inner_products():
    env, params = envs.make("LinearFixedArms-v0", num_arms=4, dim=2)
    theta = np.asarray(params.theta, np.float64)
    arms = np.asarray(params.arms, np.float64)
    # float32 products and sum of d = 2 terms of size < 10 against float64:
    # a few float32 ulps (6e-8 at 1) on any CPU, far below 1e-6.
    np.testing.assert_allclose(
        env.expected_rewards(None, params), arms @ theta, rtol=0, atol=1e-6
    )
    _, feedback = _stream(env, params, [3])
    np.testing.assert_allclose(
        feedback[0].expected_rewards, arms @ theta, rtol=0, atol=1e-6
    )


def test_reward_noise_has_the_stated_mean_and_std():
    env, params = envs.make("LinearFixedArms-v0", num_arms=3, noise_std=0.3)
    keys = jax.random.split(jax.random.key(7), MC_SAMPLES)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, None, None, None)))
    _, _, fb = step(keys, None, jnp.int32(2), params)
    rewards = np.asarray(fb.reward, np.float64)
    mean = float(params.arms[2] @ params.theta)
    assert abs(rewards.mean() - mean) < Z * 0.3 / np.sqrt(MC_SAMPLES)
    # the sample std of n Gaussians has standard error sigma / sqrt(2 n)
    assert abs(rewards.std() - 0.3) < Z * 0.3 / np.sqrt(2 * MC_SAMPLES)


def test_instances_differ_and_shared_arms_keep_the_features():
    env, _ = envs.make("LinearFixedArms-v0", num_arms=5, dim=2)
    a = env.sample_params(jax.random.key(0))
    b = env.sample_params(jax.random.key(1))
    assert not np.allclose(a.arms, b.arms) and not np.allclose(a.theta, b.theta)
    shared, _ = envs.make("LinearFixedArms-v0", num_arms=5, dim=2, shared_arms=True)
    c = shared.sample_params(jax.random.key(0))
    d = shared.sample_params(jax.random.key(1))
    np.testing.assert_array_equal(c.arms, d.arms)
    assert not np.allclose(c.theta, d.theta)
    other, _ = envs.make("LinearFixedArms-v0", shared_arms=True, arms_seed=7)
    assert not np.allclose(other.sample_params(jax.random.key(0)).arms[:5], c.arms)


def test_parameters_are_drawn_with_variance_one_over_d():
    env, _ = envs.make("LinearFixedArms-v0", num_arms=10, dim=4)
    keys = jax.random.split(jax.random.key(3), 2000)
    params = jax.vmap(env.sample_params)(keys)
    for draws in (np.asarray(params.theta), np.asarray(params.arms)):
        values = draws.reshape(-1).astype(np.float64)
        # variance 1/d = 0.25; the sample variance of n normals has standard
        # error var * sqrt(2 / n)
        assert abs(values.mean()) < Z * 0.5 / np.sqrt(values.size)
        assert abs(values.var() - 0.25) < Z * 0.25 * np.sqrt(2 / values.size)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_arms": 0}, "num_arms"),
        ({"dim": -1}, "dim"),
        ({"noise_std": -0.1}, "noise_std"),
        ({"shared_arms": "yes"}, "shared_arms"),
        ({"arms_seed": 1.5}, "arms_seed"),
        ({"arm_dim": 2}, "arm_dim"),
    ],
)
def test_bad_parameters_are_clear_errors(kwargs, field):
    with pytest.raises(BanditConfigError, match=field):
        envs.make("LinearFixedArms-v0", **kwargs)
