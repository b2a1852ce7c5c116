"""The environment registry: ids, keyword checks and the `bandits/` prefix."""

from __future__ import annotations

import inspect

import gymnasium
import jax
import numpy as np
import pytest

import envs
from bandits.types import Observation
from bandits.validation import BanditConfigError
from envs.base import BanditEnv

ENV_IDS = list(envs.registered())


def test_known_ids_include_the_model_envs():
    assert {
        "Linear-v0",
        "LinearBernoulli-v0",
        "LinearArmFeatures-v0",
        "MultiArmed-v0",
        "MultiArmedGaussian-v0",
    } <= set(ENV_IDS)


def test_unknown_env_id_lists_the_known_ones():
    with pytest.raises(BanditConfigError, match="unknown env 'Nope-v0'") as error:
        envs.make("Nope-v0")
    for env_id in ENV_IDS:
        assert env_id in str(error.value)
    with pytest.raises(BanditConfigError, match="known envs: "):
        envs.make_env("bandits/Nope-v0")
    with pytest.raises(BanditConfigError, match="unknown env"):
        envs.hyperparameters("Nope-v0")


def test_unknown_kwarg_names_the_allowed_ones():
    with pytest.raises(BanditConfigError) as error:
        envs.make("Linear-v0", num_arm=3)
    message = str(error.value)
    assert "'num_arm'" in message and "'Linear-v0'" in message
    for name in ("num_arms", "dim", "reward", "noise_std", "scale", "params_seed"):
        assert name in message
    # The same check guards the Gymnasium shell.
    with pytest.raises(BanditConfigError, match=r"allowed: .*num_arms"):
        gymnasium.make("bandits/Linear-v0", num_arm=3)


def test_bandits_prefix_is_accepted():
    env, params = envs.make("bandits/Linear-v0", num_arms=3, dim=2)
    plain, plain_params = envs.make("Linear-v0", num_arms=3, dim=2)
    assert env == plain
    np.testing.assert_array_equal(params.theta, plain_params.theta)
    assert envs.hyperparameters("bandits/MultiArmed-v0") == envs.hyperparameters(
        "MultiArmed-v0"
    )


def test_registered_defaults_override_factory_defaults_and_kwargs_override_both():
    assert envs.hyperparameters("Linear-v0")["reward"] == "gaussian"
    assert envs.hyperparameters("LinearBernoulli-v0")["reward"] == "bernoulli"
    assert envs.make_env("LinearBernoulli-v0").reward == "bernoulli"
    assert envs.make_env("LinearBernoulli-v0", reward="gaussian").reward == "gaussian"


def test_registered_returns_a_copy():
    snapshot = envs.registered()
    snapshot.pop("Linear-v0")
    assert "Linear-v0" in envs.registered()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_every_registered_env_honours_the_core_contract(env_id):
    entry = envs.registered()[env_id]
    assert entry.id == env_id and entry.description
    # Factories take keyword-only arguments, so configs cannot depend on order.
    for parameter in inspect.signature(entry.factory).parameters.values():
        assert parameter.kind is parameter.KEYWORD_ONLY, parameter.name
    env = envs.make_env(env_id)
    assert isinstance(env, BanditEnv)
    assert isinstance(env.num_arms, int) and env.num_arms > 0
    hash(env)  # static configuration: usable as a jit static argument
    spec = env.observation_spec()
    assert {"context", "arms", "mask"} <= set(spec) <= set(Observation._fields)
    assert spec["mask"].shape == (env.num_arms,)
    assert spec["arms"].shape[0] == env.num_arms
    # Shapes by abstract evaluation: nothing is computed or compiled.
    params = jax.eval_shape(env.sample_params, jax.random.key(0))
    obs, _ = jax.eval_shape(env.reset, jax.random.key(0), params)
    for name, field in spec.items():
        assert getattr(obs, name).shape == tuple(field.shape), name
        assert getattr(obs, name).dtype == np.dtype(field.dtype), name
