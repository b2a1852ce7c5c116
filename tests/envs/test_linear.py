"""Linear-v0, LinearBernoulli-v0 and LinearArmFeatures-v0 against their formulas."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from bandits.validation import BanditConfigError
from envs.linear import ArmFeatureParams, ArmFeatureState, ContextState, LinearParams

MC_SAMPLES = 20_000
# Monte-Carlo checks accept 5 standard errors: with fixed keys they are
# deterministic, and a correct env would fail a fresh seed with probability < 1e-6.
Z = 5.0


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _reset_and_step(env, params, seed: int, action: int = 0):
    key_reset, key_step = jax.random.split(jax.random.key(seed))
    obs, state = env.reset(key_reset, params)
    _, _, feedback = env.step(key_step, state, action, params)
    return obs, state, feedback


def _rewards_of(env, params, state, action: int, n: int = MC_SAMPLES):
    """Rewards of `action` from ONE state, over n independent step keys."""
    keys = jax.random.split(jax.random.key(123), n)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, None, None, None)))
    _, _, feedback = step(keys, state, jnp.int32(action), params)
    return np.asarray(feedback.reward, np.float64)


def test_golden_values_on_a_hand_computed_instance():
    theta = jnp.array([[1.0, 2.0], [0.0, -1.0]])
    state = ContextState(context=jnp.array([0.5, -0.5]))
    gaussian, _ = envs.make("Linear-v0", num_arms=2, dim=2)
    bernoulli, _ = envs.make("LinearBernoulli-v0", num_arms=2, dim=2)
    params = LinearParams(theta=theta)
    # x^T theta_0 = 0.5 - 1.0, x^T theta_1 = 0.5.
    np.testing.assert_allclose(gaussian.expected_rewards(state, params), [-0.5, 0.5])
    np.testing.assert_allclose(
        bernoulli.expected_rewards(state, params),
        [0.3775406687981454, 0.6224593312018546],
        rtol=1e-6,
    )
    adf, _ = envs.make("LinearArmFeatures-v0", num_arms=2, arm_dim=2, context_dim=1)
    adf_params = ArmFeatureParams(
        theta=jnp.array([1.0, -2.0]), theta_context=jnp.array([3.0])
    )
    adf_state = ArmFeatureState(
        context=jnp.array([0.5]), arms=jnp.array([[1.0, 1.0], [0.0, -0.5]])
    )
    # a_k^T theta + x^T theta_ctx = (1 - 2) + 1.5 and (0 + 1) + 1.5.
    np.testing.assert_allclose(adf.expected_rewards(adf_state, adf_params), [0.5, 2.5])


@pytest.mark.parametrize("env_id", ["Linear-v0", "LinearBernoulli-v0"])
def test_disjoint_expected_rewards_follow_the_formula(env_id):
    env, params = envs.make(env_id, num_arms=6, dim=4)
    obs, state, feedback = _reset_and_step(env, params, seed=0)
    logits = np.asarray(params.theta, np.float64) @ np.asarray(obs.context, np.float64)
    expected = _sigmoid(logits) if env_id == "LinearBernoulli-v0" else logits
    np.testing.assert_allclose(
        feedback.expected_rewards, expected, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        env.expected_rewards(state, params), expected, rtol=1e-5, atol=1e-6
    )


def test_arm_feature_expected_rewards_follow_the_formula():
    env, params = envs.make(
        "LinearArmFeatures-v0", num_arms=7, arm_dim=3, context_dim=2
    )
    obs, _, feedback = _reset_and_step(env, params, seed=0)
    arms = np.asarray(obs.arms, np.float64)
    context = np.asarray(obs.context, np.float64)
    expected = arms @ np.asarray(params.theta) + context @ np.asarray(
        params.theta_context
    )
    np.testing.assert_allclose(
        feedback.expected_rewards, expected, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("noise_std", [0.5, 2.0])
def test_gaussian_reward_of_a_fixed_arm_matches_its_expectation(noise_std):
    env, params = envs.make("Linear-v0", num_arms=4, dim=3, noise_std=noise_std)
    _, state, feedback = _reset_and_step(env, params, seed=1, action=2)
    rewards = _rewards_of(env, params, state, action=2)
    standard_error = noise_std / math.sqrt(MC_SAMPLES)
    assert (
        abs(rewards.mean() - float(feedback.expected_rewards[2])) < Z * standard_error
    )
    # The sample std of n Gaussians has standard error ~ sigma / sqrt(2 n).
    assert abs(rewards.std() - noise_std) < Z * noise_std / math.sqrt(2 * MC_SAMPLES)


def test_bernoulli_reward_of_a_fixed_arm_matches_its_expectation():
    env, params = envs.make("LinearBernoulli-v0", num_arms=4, dim=3, scale=3.0)
    _, state, feedback = _reset_and_step(env, params, seed=2, action=1)
    p = float(feedback.expected_rewards[1])
    rewards = _rewards_of(env, params, state, action=1)
    assert set(np.unique(rewards)) <= {0.0, 1.0}
    standard_error = math.sqrt(p * (1 - p) / MC_SAMPLES)
    assert abs(rewards.mean() - p) < Z * standard_error


def test_arm_features_reward_of_a_fixed_arm_matches_its_expectation():
    env, params = envs.make("LinearArmFeatures-v0", num_arms=5, noise_std=1.0)
    _, state, feedback = _reset_and_step(env, params, seed=3, action=4)
    # Each step also draws the next (K, p) arm features: fewer samples keep it fast.
    rewards = _rewards_of(env, params, state, action=4, n=4000)
    standard_error = 1.0 / math.sqrt(4000)
    assert (
        abs(rewards.mean() - float(feedback.expected_rewards[4])) < Z * standard_error
    )


def test_theta_has_the_documented_scale():
    env, _ = envs.make("Linear-v0", num_arms=200, dim=50, scale=2.0)
    theta = np.asarray(env.sample_params(jax.random.key(0)).theta)
    # theta ~ N(0, scale^2 / d): theta * sqrt(d) / scale is standard normal; over
    # 10_000 draws the sample std has standard error 1 / sqrt(20_000) ~ 0.007.
    standardized = theta * math.sqrt(50) / 2.0
    assert abs(standardized.std() - 1.0) < 0.05
    assert abs(standardized.mean()) < 0.05


@pytest.mark.parametrize(
    "env_id", ["Linear-v0", "LinearBernoulli-v0", "LinearArmFeatures-v0"]
)
def test_sample_params_depend_on_the_key(env_id):
    env, default = envs.make(env_id)
    same = env.sample_params(jax.random.key(0))
    other = env.sample_params(jax.random.key(1))
    for a, b, c in zip(
        jax.tree.leaves(default),
        jax.tree.leaves(same),
        jax.tree.leaves(other),
        strict=True,
    ):
        np.testing.assert_array_equal(
            a, b
        )  # default_params is the instance at key(params_seed=0)
        assert not np.array_equal(b, c)
    reseeded, reseeded_default = envs.make(env_id, params_seed=5)
    for a, b in zip(
        jax.tree.leaves(reseeded_default),
        jax.tree.leaves(reseeded.sample_params(jax.random.key(5))),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "env_id", ["Linear-v0", "LinearBernoulli-v0", "LinearArmFeatures-v0"]
)
def test_observations_are_in_bounds_and_match_the_spec(env_id):
    env, params = envs.make(env_id)
    keys = jax.random.split(jax.random.key(0), 256)
    obs, states = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)
    spec = env.observation_spec()
    assert set(spec) == {"context", "arms", "mask"}
    for name, field in spec.items():
        value = np.asarray(getattr(obs, name))
        assert value.shape == (256, *field.shape), name
        assert value.dtype == np.dtype(field.dtype), name
        assert np.all(value >= field.low) and np.all(value <= field.high), name
    assert np.all(obs.mask)
    expected = jax.vmap(env.expected_rewards, in_axes=(0, None))(states, params)
    if env_id == "LinearBernoulli-v0":
        assert np.all((expected >= 0) & (expected <= 1))
    assert np.all(np.isfinite(expected))


def test_thousand_arms_under_jit_and_vmap():
    env, params = envs.make("LinearArmFeatures-v0", num_arms=1000)
    keys = jax.random.split(jax.random.key(0), 4)

    def rollout(key):
        key_reset, key_step = jax.random.split(key)
        obs, state = env.reset(key_reset, params)
        action = jnp.argmax(obs.arms @ params.theta)
        _, _, feedback = env.step(key_step, state, action, params)
        return obs, feedback

    obs, feedback = jax.jit(jax.vmap(rollout))(keys)
    assert obs.arms.shape == (4, 1000, 10) and obs.mask.shape == (4, 1000)
    assert feedback.expected_rewards.shape == (4, 1000)
    assert feedback.reward.shape == (4,)
    # The arm maximising a^T theta is optimal: the context term is shared by all arms.
    best = feedback.expected_rewards.max(axis=1)
    chosen = feedback.expected_rewards[
        jnp.arange(4), jnp.argmax(obs.arms @ params.theta, axis=1)
    ]
    np.testing.assert_allclose(chosen, best, rtol=1e-6)
    # jit(vmap(f)) == stack(jit(f)(x)) for each key.
    single = jax.jit(rollout)
    for i, key in enumerate(keys):
        one_obs, one_feedback = single(key)
        np.testing.assert_allclose(one_obs.arms, obs.arms[i])
        np.testing.assert_allclose(
            one_feedback.expected_rewards,
            feedback.expected_rewards[i],
            rtol=1e-5,
            atol=1e-5,
        )


@pytest.mark.parametrize(
    ("env_id", "kwargs", "field"),
    [
        ("Linear-v0", {"num_arms": 0}, "num_arms"),
        ("Linear-v0", {"dim": -1}, "dim"),
        ("Linear-v0", {"reward": "poisson"}, "reward"),
        ("Linear-v0", {"noise_std": -0.1}, "noise_std"),
        ("Linear-v0", {"scale": -1.0}, "scale"),
        ("LinearBernoulli-v0", {"dim": 2.5}, "dim"),
        ("LinearArmFeatures-v0", {"num_arms": 0}, "num_arms"),
        ("LinearArmFeatures-v0", {"arm_dim": 0}, "arm_dim"),
        ("LinearArmFeatures-v0", {"context_dim": -3}, "context_dim"),
        ("LinearArmFeatures-v0", {"reward": "poisson"}, "reward"),
        ("LinearArmFeatures-v0", {"noise_std": -1.0}, "noise_std"),
    ],
)
def test_bad_input_names_the_field(env_id, kwargs, field):
    with pytest.raises(BanditConfigError, match=rf"^{field} must"):
        envs.make(env_id, **kwargs)


def test_unknown_reward_model_lists_the_allowed_ones():
    with pytest.raises(
        BanditConfigError, match="'gaussian', 'bernoulli'; got 'poisson'"
    ):
        envs.make("Linear-v0", reward="poisson")
