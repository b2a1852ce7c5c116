"""MultiArmed-v0 (Bernoulli) and MultiArmedGaussian-v0 against their definitions."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bandits
import envs
from bandits.types import Agent
from bandits.validation import BanditConfigError
from envs.multi_armed import MultiArmedParams

MC_SAMPLES = 20_000
# Monte-Carlo checks accept 5 standard errors: with fixed keys they are
# deterministic, and a correct env would fail a fresh seed with probability < 1e-6.
Z = 5.0


def _rewards_of(env, params, action: int, n: int = MC_SAMPLES) -> np.ndarray:
    keys = jax.random.split(jax.random.key(7), n)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, None, None, None)))
    _, _, feedback = step(keys, None, jnp.int32(action), params)
    return np.asarray(feedback.reward, np.float64)


def _fixed_arm_agent(arm: int) -> Agent:
    def init(key):
        del key
        return jnp.zeros(())

    def act(key, state, obs):
        del key, state, obs
        return jnp.int32(arm)

    def update(key, state, obs, action, reward):
        del key, obs, action, reward
        return state

    return Agent(init=init, act=act, update=update, name=f"arm-{arm}")


def test_presets_and_hyperparameters():
    assert envs.hyperparameters("MultiArmed-v0") == {
        "num_arms": 10,
        "reward": "bernoulli",
        "noise_std": 1.0,
        "params_seed": 0,
    }
    assert envs.hyperparameters("MultiArmedGaussian-v0")["reward"] == "gaussian"
    env, _ = envs.make("MultiArmedGaussian-v0", num_arms=3)
    assert env.reward == "gaussian" and env.num_arms == 3


def test_observation_is_constant_and_matches_the_spec():
    env, params = envs.make("MultiArmed-v0", num_arms=6)
    obs, state = env.reset(jax.random.key(0), params)
    next_obs, next_state, _ = env.step(jax.random.key(1), state, 2, params)
    spec = env.observation_spec()
    for current in (obs, next_obs):
        np.testing.assert_array_equal(current.context, np.ones(1, np.float32))
        assert current.arms.shape == (6, 0)
        np.testing.assert_array_equal(current.mask, np.ones(6, bool))
        assert current.history is None and current.history_mask is None
        for name, field in spec.items():
            value = np.asarray(getattr(current, name))
            assert value.shape == field.shape and value.dtype == np.dtype(field.dtype)
            assert np.all(value >= field.low) and np.all(value <= field.high)
    assert state is None and next_state is None


@pytest.mark.parametrize("env_id", ["MultiArmed-v0", "MultiArmedGaussian-v0"])
def test_expected_rewards_are_the_arm_means(env_id):
    env, params = envs.make(env_id, num_arms=5)
    assert isinstance(params, MultiArmedParams) and params.means.shape == (5,)
    _, state = env.reset(jax.random.key(0), params)
    _, _, feedback = env.step(jax.random.key(1), state, 4, params)
    np.testing.assert_array_equal(feedback.expected_rewards, params.means)
    np.testing.assert_array_equal(env.expected_rewards(state, params), params.means)


def test_golden_rewards_on_a_hand_made_instance():
    env, _ = envs.make("MultiArmedGaussian-v0", num_arms=3, noise_std=0.0)
    params = MultiArmedParams(means=jnp.array([0.25, -1.0, 2.0]))
    # Without noise the reward of arm k is exactly mu_k.
    for arm, mean in enumerate([0.25, -1.0, 2.0]):
        _, _, feedback = env.step(jax.random.key(arm), None, arm, params)
        assert float(feedback.reward) == mean
    bernoulli, _ = envs.make("MultiArmed-v0", num_arms=2)
    certain = MultiArmedParams(means=jnp.array([0.0, 1.0]))
    for seed in range(5):
        _, _, zero = bernoulli.step(jax.random.key(seed), None, 0, certain)
        _, _, one = bernoulli.step(jax.random.key(seed), None, 1, certain)
        assert float(zero.reward) == 0.0 and float(one.reward) == 1.0


def test_sampled_means_follow_the_documented_priors():
    bernoulli, _ = envs.make("MultiArmed-v0", num_arms=10_000)
    means = np.asarray(bernoulli.sample_params(jax.random.key(0)).means)
    assert np.all((means >= 0.0) & (means <= 1.0))
    # U(0, 1): mean 1/2 and std 1/sqrt(12); n = 10_000 gives standard errors of
    # about 0.003 on both, so 0.02 is > 6 standard errors.
    assert abs(means.mean() - 0.5) < 0.02
    assert abs(means.std() - 1 / math.sqrt(12)) < 0.02
    gaussian, _ = envs.make("MultiArmedGaussian-v0", num_arms=10_000)
    means = np.asarray(gaussian.sample_params(jax.random.key(0)).means)
    # N(0, 1): standard errors 0.01 (mean) and 0.007 (std).
    assert abs(means.mean()) < 0.05
    assert abs(means.std() - 1.0) < 0.05


@pytest.mark.parametrize("env_id", ["MultiArmed-v0", "MultiArmedGaussian-v0"])
def test_sample_params_depend_on_the_key(env_id):
    env, default = envs.make(env_id)
    np.testing.assert_array_equal(
        default.means, env.sample_params(jax.random.key(0)).means
    )
    assert not np.array_equal(
        env.sample_params(jax.random.key(0)).means,
        env.sample_params(jax.random.key(1)).means,
    )
    _, reseeded = envs.make(env_id, params_seed=3)
    np.testing.assert_array_equal(
        reseeded.means, env.sample_params(jax.random.key(3)).means
    )


def test_bernoulli_rewards_match_the_arm_mean():
    env, params = envs.make("MultiArmed-v0", num_arms=4)
    arm = 2
    p = float(params.means[arm])
    rewards = _rewards_of(env, params, arm)
    assert set(np.unique(rewards)) <= {0.0, 1.0}
    assert abs(rewards.mean() - p) < Z * math.sqrt(p * (1 - p) / MC_SAMPLES)


@pytest.mark.parametrize("noise_std", [0.5, 3.0])
def test_gaussian_rewards_match_the_arm_mean_and_noise(noise_std):
    env, params = envs.make("MultiArmedGaussian-v0", num_arms=4, noise_std=noise_std)
    arm = 1
    rewards = _rewards_of(env, params, arm)
    assert abs(rewards.mean() - float(params.means[arm])) < Z * noise_std / math.sqrt(
        MC_SAMPLES
    )
    # The sample std of n Gaussians has standard error ~ sigma / sqrt(2 n).
    assert abs(rewards.std() - noise_std) < Z * noise_std / math.sqrt(2 * MC_SAMPLES)


def test_step_under_jit_and_vmap_matches_single_calls():
    env, params = envs.make("MultiArmedGaussian-v0", num_arms=5)
    keys = jax.random.split(jax.random.key(0), 3)
    actions = jnp.array([0, 3, 4], jnp.int32)
    batched = jax.jit(jax.vmap(env.step, in_axes=(0, None, 0, None)))
    _, _, feedback = batched(keys, None, actions, params)
    for i in range(3):
        _, _, one = env.step(keys[i], None, actions[i], params)
        np.testing.assert_allclose(one.reward, feedback.reward[i], rtol=1e-6)
        np.testing.assert_array_equal(
            one.expected_rewards, feedback.expected_rewards[i]
        )


def test_simulated_regret_of_a_fixed_arm_is_its_gap():
    env, params = envs.make("MultiArmed-v0", num_arms=4)
    arm = int(np.argmin(params.means))
    trajectory = bandits.run(env, _fixed_arm_agent(arm), horizon=6, seeds=2)
    gap = float(np.max(params.means) - params.means[arm])
    assert trajectory.regret.shape == (2, 6)
    np.testing.assert_allclose(trajectory.regret, gap, rtol=1e-6)
    assert not np.any(trajectory.optimal)


@pytest.mark.parametrize(
    ("env_id", "kwargs", "field"),
    [
        ("MultiArmed-v0", {"num_arms": 0}, "num_arms"),
        ("MultiArmed-v0", {"num_arms": 2.5}, "num_arms"),
        ("MultiArmed-v0", {"reward": "poisson"}, "reward"),
        ("MultiArmedGaussian-v0", {"noise_std": -0.1}, "noise_std"),
        ("MultiArmedGaussian-v0", {"noise_std": float("nan")}, "noise_std"),
    ],
)
def test_bad_input_names_the_field(env_id, kwargs, field):
    with pytest.raises(BanditConfigError, match=rf"^{field} must"):
        envs.make(env_id, **kwargs)


def test_unknown_reward_model_lists_the_allowed_ones():
    with pytest.raises(
        BanditConfigError, match="'bernoulli', 'gaussian'; got 'poisson'"
    ):
        envs.make("MultiArmed-v0", reward="poisson")
