"""Bad values are refused at the edge, naming the field (reliability cases).

Each case was accepted before and ran to a silently wrong result: an infinite
UCB width plays arm 0 forever; an infinite noise gives NaN rewards; a string
parsed as a float hid a config mistake.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import agents
import envs
from bandits import BanditConfigError
from bandits.validation import real


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, "inf", "1.0", b"1"])
def test_a_real_setting_takes_finite_numbers_only(value):
    with pytest.raises(BanditConfigError) as info:
        real("alpha", value, low=0.0)
    assert info.value.field == "alpha"


def test_numpy_and_python_numbers_pass():
    assert real("alpha", np.float32(0.5), low=0.0) == 0.5
    assert real("alpha", 2, low=0.0) == 2.0


@pytest.mark.parametrize("alpha", [math.inf, "inf"])
def test_linucb_refuses_an_infinite_alpha(alpha):
    with pytest.raises(BanditConfigError, match="alpha must be a"):
        agents.make("linucb", num_arms=3, dim=2, alpha=alpha)


def test_an_env_refuses_infinite_noise():
    with pytest.raises(BanditConfigError, match="noise_std must be a finite number"):
        envs.make_env("Linear-v0", noise_std=math.inf)


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"alpha": [math.nan, 1.0]}, "hyperparameters['alpha'][0] must be a number"),
        ({"alpha": [1.0, -1.0]}, "hyperparameters['alpha'][1] must be in"),
        ({"epsilon": [2.0, 0.1]}, "hyperparameters['epsilon'][0] must be in"),
    ],
)
def test_every_swept_value_is_checked_before_tracing(grid, message):
    """`bandits.sweep` traces the swept values, where the agent's own checks see
    no value; each setting is built once with concrete values first."""
    import functools

    import bandits

    name = "epsilon_greedy" if "epsilon" in grid else "linucb"
    agent_fn = functools.partial(agents.registered()[name].factory, num_arms=3, dim=2)
    env = envs.make_env("Linear-v0", num_arms=3, dim=2)
    with pytest.raises(BanditConfigError) as info:
        bandits.sweep(env, agent_fn, grid, horizon=5, seeds=1)
    assert str(info.value).startswith(message), str(info.value)


def test_swapped_or_wrong_arguments_to_run_are_named():
    import bandits

    env = envs.make_env("Linear-v0", num_arms=3, dim=2)
    agent = agents.make("linucb", num_arms=3, dim=2)
    with pytest.raises(BanditConfigError, match="swapped"):
        bandits.run(agent, env, horizon=5, seeds=1)
    with pytest.raises(BanditConfigError, match=r"envs\.make returns"):
        bandits.run(envs.make("Linear-v0"), agent, horizon=5, seeds=1)
    with pytest.raises(BanditConfigError, match="agent must be a bandit agent"):
        bandits.run(env, "linucb", horizon=5, seeds=1)


@pytest.mark.parametrize(
    ("kwargs", "field", "detail"),
    [
        ({"num_arms": 3, "dim": 5}, "context_dim", "is 5, but env LinearEnv has 2"),
        ({"num_arms": 7}, "num_arms", "is 7, but env LinearEnv has 3 arms"),
    ],
)
def test_an_agent_built_for_other_shapes_names_both(kwargs, field, detail):
    """Before: a raw JAX shape error from deep inside the trace. An agent that
    declares its shapes is checked before tracing; one that does not (a user's
    own agent) fails while tracing, and that error names both shapes too."""
    import bandits

    env = envs.make_env("Linear-v0", num_arms=3, dim=2)
    agent = agents.make("linucb", **{"dim": 2, **kwargs})
    with pytest.raises(BanditConfigError) as info:
        bandits.run(env, agent, horizon=5, seeds=1)
    assert info.value.field == field
    assert f"{field} of agent 'linucb' {detail}" in str(info.value)
    undeclared = agent._replace(num_arms=None, context_dim=None, arm_dim=None)
    with pytest.raises(BanditConfigError) as info:
        bandits.run(env, undeclared, horizon=5, seeds=1)
    message = str(info.value)
    assert "does not fit env LinearEnv (3 arms; observation context (2,)" in message
    assert "'linucb'" in message


def test_a_non_finite_state_in_a_sweep_names_the_agent_and_setting():
    """Before: the message showed `functools.partial(<function ...>)`."""
    import functools

    import jax.numpy as jnp

    import bandits

    def exploding(num_arms, dim, alpha=1.0):
        agent = agents.linucb(num_arms, dim, alpha=alpha)

        def update(key, state, obs, action, reward):
            state = agent.update(key, state, obs, action, reward)
            return jax_tree_scale(state, jnp.where(alpha > 5.0, jnp.nan, 1.0))

        return agent._replace(update=update)

    def jax_tree_scale(tree, factor):
        import jax

        return jax.tree_util.tree_map(
            lambda x: x * factor if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
        )

    env = envs.make_env("Linear-v0", num_arms=3, dim=2)
    fn = functools.partial(exploding, num_arms=3, dim=2)
    with pytest.raises(bandits.NonFiniteAgentStateError) as info:
        bandits.sweep(env, fn, {"alpha": [1.0, 10.0]}, horizon=5, seeds=1)
    message = str(info.value)
    assert message.startswith("agent 'exploding' with alpha=10")
    assert "functools" not in message
