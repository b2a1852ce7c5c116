"""`Nonlinear-v0`: the three reward functions of the NeuralUCB paper."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from bandits.validation import BanditConfigError
from envs.nonlinear import NonlinearParams, NonlinearState, nonlinear, reward_function

X = jnp.asarray([0.6, 0.8, 0.0])
PARAMS = NonlinearParams(
    a=jnp.asarray([1.0, 0.0, 0.0]),
    A=jnp.asarray([[1.0, 2.0, 0.0], [0.0, 1.0, 0.0], [3.0, 0.0, 1.0]]),
)


@pytest.mark.parametrize(
    ("name", "golden"),
    [
        ("h1", 10.0 * 0.6**2),  # 10 (x^T a)^2
        ("h2", 2.2**2 + 0.8**2 + 1.8**2),  # ||A x||^2, A x = (2.2, 0.8, 1.8)
        ("h3", np.cos(3 * 0.6)),  # cos(3 x^T a)
    ],
)
def test_reward_functions_golden_values(name, golden):
    np.testing.assert_allclose(
        float(reward_function(name, X, PARAMS)), golden, rtol=1e-6
    )


def test_expected_rewards_apply_h_to_each_arm_and_rewards_add_noise():
    env = nonlinear(num_arms=3, dim=3, reward_fn="h2", noise_std=0.5)
    arms = jnp.stack([X, -X, jnp.asarray([0.0, 0.0, 1.0])])
    state = NonlinearState(arms=arms)
    expected = np.asarray(env.expected_rewards(state, PARAMS))
    np.testing.assert_allclose(expected[0], expected[1], rtol=1e-6)  # h2 is even
    np.testing.assert_allclose(expected[2], 1.0, rtol=1e-6)  # ||A e_3||^2 = 1
    keys = jax.random.split(jax.random.key(0), 20_000)
    rewards = jax.vmap(lambda k: env.step(k, state, 2, PARAMS)[2].reward)(keys)
    # 20,000 draws: sample mean s.e. 0.0035, sd within ~1.5% (tolerances ~5 s.e.)
    assert abs(float(rewards.mean()) - 1.0) < 0.02
    np.testing.assert_allclose(float(rewards.std()), 0.5, rtol=0.03)


def test_features_lie_on_the_unit_sphere_and_context_concatenates_them():
    env, params = envs.make("Nonlinear-v0", num_arms=4, dim=10)
    obs, _ = env.reset(jax.random.key(1), params)
    np.testing.assert_allclose(
        np.linalg.norm(np.asarray(obs.arms), axis=1), 1.0, rtol=1e-5
    )
    np.testing.assert_array_equal(np.asarray(obs.context), np.asarray(obs.arms).ravel())
    spec = env.observation_spec()
    assert obs.context.shape == spec["context"].shape
    assert obs.arms.shape == spec["arms"].shape
    np.testing.assert_allclose(float(jnp.linalg.norm(params.a)), 1.0, rtol=1e-5)


def test_problem_instances_differ_by_key_and_steps_are_deterministic():
    env = nonlinear()
    p0, p1 = env.sample_params(jax.random.key(0)), env.sample_params(jax.random.key(1))
    assert not np.allclose(np.asarray(p0.a), np.asarray(p1.a))
    _, state = env.reset(jax.random.key(2), p0)
    step = jax.jit(env.step)
    a = step(jax.random.key(3), state, jnp.int32(1), p0)
    b = env.step(jax.random.key(3), state, jnp.int32(1), p0)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6)


def test_bad_configuration_raises():
    with pytest.raises(BanditConfigError, match="reward_fn"):
        nonlinear(reward_fn="h4")
    with pytest.raises(BanditConfigError, match="dim"):
        nonlinear(dim=0)
