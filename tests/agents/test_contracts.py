"""Contracts every registered agent must honour.

Parametrized over `agents.registered()` at collection time, so an agent added by a
new module is covered as soon as `agents/__init__.py` imports it. Each agent is
built with `num_arms` and `dim` only (its other hyperparameters at their defaults)
on a small `Linear-v0` (or, for agents that read item features from `obs.arms`,
on `LinearArmFeatures-v0`); agents with a `features` hyperparameter are also built
with `features="arms"` on `LinearArmFeatures-v0`.

Checked: `jit(f) == f` for init/act/update/action_probs; `vmap(f)(xs) ==
stack([f(x) for x in xs])` for act/update/action_probs; state structure, shapes and
dtypes are preserved by `update`; actions are int32 scalars on allowed arms;
`action_probs` are a distribution that is zero on masked arms and matches the
frequencies of `act`.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
import envs

NUM_ARMS = 5
DIM = 4
ARM_DIM = 4
CONTEXT_DIM = 3
ROLLOUT_STEPS = 8
STATE_STEPS = (0, 3, 7)  # states after this many updates, used as a small batch
# One mask per state. The last state (past every agent's forced initial pulls,
# 5 = K rounds) keeps three allowed arms, so epsilon mixing and sampling show in
# its `action_probs`; the single-arm mask goes to a state during the forced pulls.
MASKS = (
    (True, True, True, True, True),
    (False, False, False, True, False),
    (True, False, True, False, True),
)


def _cases() -> list:
    params = []
    for name in sorted(agents.registered()):
        hyper = agents.hyperparameters(name)
        missing = [
            k
            for k, v in hyper.items()
            if v is inspect.Parameter.empty and k not in ("num_arms", "dim")
        ]
        marks = ()
        if missing:
            marks = pytest.mark.skip(
                reason=f"agent {name!r} needs hyperparameters {missing} beyond "
                "num_arms and dim"
            )
        params.append(
            pytest.param((name, "context"), id=f"{name}-context", marks=marks)
        )
        if "features" in hyper:
            params.append(pytest.param((name, "arms"), id=f"{name}-arms", marks=marks))
    return params


def _linear_env():
    return envs.make("Linear-v0", num_arms=NUM_ARMS, dim=DIM)


def _arm_features_env():
    return envs.make(
        "LinearArmFeatures-v0",
        num_arms=NUM_ARMS,
        arm_dim=ARM_DIM,
        context_dim=CONTEXT_DIM,
    )


def _build(name: str, form: str):
    """The agent on the first small env it runs on.

    `features="arms"` agents use `LinearArmFeatures-v0`. Other agents try
    `Linear-v0` (dim = context dim), then `LinearArmFeatures-v0` (dim = context
    dim; for agents that read item features from `obs.arms`). An agent that runs
    on neither fails the test with both errors.
    """
    if form == "arms":
        env, env_params = _arm_features_env()
        agent = agents.make(name, num_arms=NUM_ARMS, dim=ARM_DIM, features="arms")
        return env, env_params, agent
    errors = []
    for make_env, dim in ((_linear_env, DIM), (_arm_features_env, CONTEXT_DIM)):
        env, env_params = make_env()
        try:
            agent = agents.make(name, num_arms=NUM_ARMS, dim=dim)
            obs, _ = env.reset(jax.random.key(0), env_params)
            agent.act(jax.random.key(1), agent.init(jax.random.key(2)), obs)
        except Exception as error:  # reported below if no env fits
            errors.append(f"{type(env).__name__}: {type(error).__name__}: {error}")
            continue
        return env, env_params, agent
    pytest.fail(f"agent {name!r} runs on none of the contract envs: {errors}")


def _rollout(env, env_params, agent, steps: int, seed: int = 0):
    """Observations and the agent state held before acting on each of them."""
    key = jax.random.key(seed)
    key_reset, key_init, key = jax.random.split(key, 3)
    obs, env_state = env.reset(key_reset, env_params)
    state = agent.init(key_init)
    observations, states = [], []
    for t in range(steps):
        observations.append(obs)
        states.append(state)
        key_act, key_env, key_update = jax.random.split(jax.random.fold_in(key, t), 3)
        action = agent.act(key_act, state, obs)
        next_obs, env_state, feedback = env.step(key_env, env_state, action, env_params)
        state = agent.update(key_update, state, obs, action, feedback.reward)
        obs = next_obs
    observations.append(obs)
    states.append(state)
    return observations, states


def _stack(trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def _assert_trees_equal(actual, expected):
    """Integers and booleans exactly; floats up to rounding.

    XLA may fuse and reorder floating-point operations differently inside a jitted
    or vmapped program than op by op, so float leaves agree to a few ulps of
    float32 rather than bit for bit (relative 1e-5, absolute 1e-6).
    """
    actual_leaves, actual_def = jax.tree_util.tree_flatten(actual)
    expected_leaves, expected_def = jax.tree_util.tree_flatten(expected)
    assert actual_def == expected_def
    for a, e in zip(actual_leaves, expected_leaves, strict=True):
        a, e = np.asarray(a), np.asarray(e)
        assert a.shape == e.shape
        assert a.dtype == e.dtype
        if np.issubdtype(e.dtype, np.inexact):
            np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(a, e)


@pytest.fixture(scope="module", params=_cases())
def case(request):
    """(agent, batch of (key, state, obs) triples with varied masks)."""
    name, form = request.param
    env, env_params, agent = _build(name, form)
    observations, states = _rollout(env, env_params, agent, ROLLOUT_STEPS)
    keys = jax.random.split(jax.random.key(42), len(STATE_STEPS))
    batch = []
    for i, step in enumerate(STATE_STEPS):
        obs = observations[step]._replace(mask=jnp.asarray(MASKS[i]))
        batch.append((keys[i], states[step], obs))
    return agent, batch


def test_init_is_deterministic_and_jittable(case):
    agent, _ = case
    key = jax.random.key(7)
    _assert_trees_equal(jax.jit(agent.init)(key), agent.init(key))
    _assert_trees_equal(agent.init(key), agent.init(key))


def test_jit_act_equals_act(case):
    agent, batch = case
    jitted = jax.jit(agent.act)
    for key, state, obs in batch:
        _assert_trees_equal(jitted(key, state, obs), agent.act(key, state, obs))


def test_act_returns_int32_scalar(case):
    agent, batch = case
    for key, state, obs in batch:
        action = agent.act(key, state, obs)
        assert action.shape == ()
        assert action.dtype == jnp.int32


def test_jit_update_equals_update(case):
    agent, batch = case
    jitted = jax.jit(agent.update)
    for key, state, obs in batch:
        action = agent.act(key, state, obs)
        reward = jnp.float32(0.75)
        _assert_trees_equal(
            jitted(key, state, obs, action, reward),
            agent.update(key, state, obs, action, reward),
        )


def test_update_preserves_state_structure(case):
    agent, batch = case
    for key, state, obs in batch:
        action = agent.act(key, state, obs)
        new_state = agent.update(key, state, obs, action, jnp.float32(1.0))
        assert jax.tree_util.tree_structure(new_state) == (
            jax.tree_util.tree_structure(state)
        )
        for new, old in zip(
            jax.tree_util.tree_leaves(new_state),
            jax.tree_util.tree_leaves(state),
            strict=True,
        ):
            assert jnp.shape(new) == jnp.shape(old)
            assert jnp.asarray(new).dtype == jnp.asarray(old).dtype


def test_vmap_act_equals_stacked_act(case):
    agent, batch = case
    keys, states, observations = (_stack(column) for column in zip(*batch, strict=True))
    expected = jnp.stack([agent.act(k, s, o) for k, s, o in batch])
    _assert_trees_equal(jax.vmap(agent.act)(keys, states, observations), expected)


def test_vmap_update_equals_stacked_update(case):
    agent, batch = case
    actions = jnp.stack([agent.act(k, s, o) for k, s, o in batch])
    rewards = jnp.asarray([0.0, 1.0, -0.5], jnp.float32)
    keys, states, observations = (_stack(column) for column in zip(*batch, strict=True))
    expected = _stack(
        [
            agent.update(k, s, o, a, r)
            for (k, s, o), a, r in zip(batch, actions, rewards, strict=True)
        ]
    )
    actual = jax.vmap(agent.update)(keys, states, observations, actions, rewards)
    _assert_trees_equal(actual, expected)


def test_act_never_picks_a_masked_arm(case):
    agent, batch = case
    act_many = jax.jit(jax.vmap(agent.act, in_axes=(0, None, None)))
    for i, (_, state, obs) in enumerate(batch):
        keys = jax.random.split(jax.random.key(100 + i), 256)
        actions = np.asarray(act_many(keys, state, obs))
        mask = np.asarray(obs.mask)
        assert mask[actions].all(), f"picked masked arms {actions[~mask[actions]]}"


def _needs_action_probs(agent):
    if agent.action_probs is None:
        pytest.skip(f"agent {agent.name!r} exposes no action_probs")


def test_jit_and_vmap_action_probs(case):
    agent, batch = case
    _needs_action_probs(agent)
    jitted = jax.jit(agent.action_probs)
    for key, state, obs in batch:
        _assert_trees_equal(
            jitted(key, state, obs), agent.action_probs(key, state, obs)
        )
    keys, states, observations = (_stack(column) for column in zip(*batch, strict=True))
    expected = jnp.stack([agent.action_probs(k, s, o) for k, s, o in batch])
    _assert_trees_equal(
        jax.vmap(agent.action_probs)(keys, states, observations), expected
    )


def test_action_probs_are_a_distribution_over_allowed_arms(case):
    agent, batch = case
    _needs_action_probs(agent)
    for key, state, obs in batch:
        probs = np.asarray(agent.action_probs(key, state, obs))
        assert probs.shape == (NUM_ARMS,)
        assert (probs >= 0).all()
        np.testing.assert_allclose(probs.sum(), 1.0, rtol=0, atol=1e-5)
        assert (probs[~np.asarray(obs.mask)] == 0).all()


def test_action_probs_match_act_frequencies(case):
    """The propensities are those of `act`.

    Frequencies of 4,000 draws have standard error <= 0.008; an estimated
    propensity (Monte Carlo, e.g. Thompson sampling's 1,000 draws) adds <= 0.016.
    The tolerance 0.08 is over 4 combined standard errors.
    """
    agent, batch = case
    _needs_action_probs(agent)
    act_many = jax.jit(jax.vmap(agent.act, in_axes=(0, None, None)))
    for i, (key, state, obs) in enumerate(batch):
        keys = jax.random.split(jax.random.key(200 + i), 4000)
        actions = np.asarray(act_many(keys, state, obs))
        frequencies = np.bincount(actions, minlength=NUM_ARMS) / actions.size
        probs = np.asarray(agent.action_probs(key, state, obs))
        np.testing.assert_allclose(frequencies, probs, rtol=0, atol=0.08)
