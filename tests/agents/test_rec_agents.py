"""Agents for changing candidate sets: item / context x item LinUCB and popularity."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
import bandits
import envs
from agents.features import context_cross_items, item_columns, with_arm_features
from agents.popularity import item_index
from bandits.types import Observation
from bandits.validation import BanditConfigError

CONTEXT = jnp.array([1.0, 2.0])
ARMS = jnp.array([[1.0, 0.0, 0.5, 0.9], [0.0, 1.0, 0.25, 0.1]])


def _obs(context=CONTEXT, arms=ARMS, mask=None):
    mask = jnp.ones((arms.shape[0],), bool) if mask is None else mask
    return Observation(context=context, arms=arms, mask=mask)


def test_context_cross_items_golden_values():
    phi = context_cross_items(_obs(), context_dim=2, item_dim=3, cross_dim=2)
    # [a_k[:3] | a_k0 * x, a_k1 * x]
    expected = [[1, 0, 0.5, 1, 2, 0, 0], [0, 1, 0.25, 0, 0, 1, 2]]
    np.testing.assert_allclose(phi, expected)
    scaled = context_cross_items(
        _obs(), context_dim=2, item_dim=3, cross_dim=2, cross_scale=0.5
    )
    np.testing.assert_allclose(scaled[:, 3:], 0.5 * np.asarray(expected)[:, 3:])
    np.testing.assert_allclose(item_columns(_obs(), 3), ARMS[:, :3])


def test_mapped_agent_equals_the_base_agent_on_mapped_features():
    base = agents.linucb(num_arms=2, dim=7, alpha=0.7, features="arms")
    mapped = agents.make(
        "linucb_context_items", num_arms=2, dim=2, item_dim=3, cross_dim=2, alpha=0.7
    )
    obs = _obs()
    phi_obs = obs._replace(arms=context_cross_items(obs, 2, 3, 2))
    key = jax.random.key(0)
    s_base, s_mapped = base.init(key), mapped.init(key)
    for reward in (1.0, 0.0, 1.0):
        action = mapped.act(key, s_mapped, obs)
        assert int(action) == int(base.act(key, s_base, phi_obs))
        s_mapped = mapped.update(key, s_mapped, obs, action, reward)
        s_base = base.update(key, s_base, phi_obs, action, reward)
    for a, b in zip(jax.tree.leaves(s_mapped), jax.tree.leaves(s_base), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_action_probs_pass_through_the_feature_map():
    base = agents.epsilon_greedy(num_arms=2, dim=3, epsilon=0.2, features="arms")
    wrapped = with_arm_features(base, lambda o: item_columns(o, 3), name="eps")
    state = wrapped.init(jax.random.key(0))
    probs = wrapped.action_probs(jax.random.key(1), state, _obs())
    np.testing.assert_allclose(np.sum(probs), 1.0, rtol=1e-6)
    assert wrapped.name == "eps"


def test_context_aware_agent_learns_a_category_x_context_effect():
    # Arm 0 pays when x[0] = 1, arm 1 when x[1] = 1; item features alone cannot tell.
    aware = agents.make(
        "linucb_context_items", num_arms=2, dim=2, item_dim=2, cross_dim=2, alpha=0.1
    )
    blind = agents.make("linucb_items", num_arms=2, dim=2, item_dim=2, alpha=0.1)
    eye = jnp.eye(2)

    def play(agent, key):
        def step(state, key_t):
            key_ctx, key_act = jax.random.split(key_t)
            which = jax.random.bernoulli(key_ctx).astype(jnp.int32)
            obs = _obs(context=eye[which], arms=eye)
            action = agent.act(key_act, state, obs)
            reward = (action == which).astype(jnp.float32)
            return agent.update(key_act, state, obs, action, reward), reward

        _, rewards = jax.lax.scan(step, agent.init(key), jax.random.split(key, 400))
        return rewards[200:].mean()

    assert play(aware, jax.random.key(0)) > 0.95
    assert 0.3 < play(blind, jax.random.key(0)) < 0.7  # a coin flip at best


def test_feature_agents_check_dimensions():
    aware = agents.make(
        "linucb_context_items", num_arms=2, dim=5, item_dim=3, cross_dim=2
    )
    state = aware.init(jax.random.key(0))
    with pytest.raises(BanditConfigError, match="dim must equal"):
        jax.jit(aware.act)(jax.random.key(0), state, _obs())
    too_wide = agents.make("linucb_items", num_arms=2, item_dim=9)
    with pytest.raises(BanditConfigError, match="item_dim"):
        too_wide.act(jax.random.key(0), too_wide.init(jax.random.key(0)), _obs())
    with pytest.raises(BanditConfigError, match="cross_dim"):
        agents.make("linucb_context_items", num_arms=2, dim=2, item_dim=2, cross_dim=3)
    with pytest.raises(BanditConfigError, match="cross_scale"):
        agents.make(
            "linucb_context_items", num_arms=2, dim=2, item_dim=2, cross_scale=0.0
        )
    with pytest.raises(BanditConfigError, match="item_dim"):
        agents.make("linucb_items", num_arms=2, item_dim=0)


# ---------------------------------------------------------------------------
# Popularity


def test_item_index_inverts_the_normalised_id_at_100k_items():
    n = 100_000
    ids = jnp.arange(n)
    normalised = (ids.astype(jnp.float32) / (n - 1))[:, None]
    obs = _obs(arms=normalised, mask=jnp.ones((n,), bool))
    np.testing.assert_array_equal(item_index(obs, n, -1), ids)


def test_popularity_counts_per_item_and_picks_the_best_ctr():
    n = 11
    agent = agents.make("popularity", num_arms=3, num_items=n, prior_weight=1.0)
    state = agent.init(jax.random.key(0))
    ids = jnp.array([3.0, 7.0, 5.0]) / (n - 1)
    obs = _obs(arms=ids[:, None])
    # Item 3 clicked twice in 2 views, item 7 once in 4 views, item 5 never seen.
    for action, reward in [(0, 1.0), (0, 1.0), (1, 1.0), (1, 0.0), (1, 0.0), (1, 0.0)]:
        state = agent.update(jax.random.key(1), state, obs, jnp.int32(action), reward)
    np.testing.assert_allclose(state.clicks[jnp.array([3, 7, 5])], [2, 1, 0])
    np.testing.assert_allclose(state.views[jnp.array([3, 7, 5])], [2, 4, 0])
    assert float(state.views.sum()) == 6  # nothing else counted
    # Smoothed CTRs: (2 + .5) / 3, (1 + .5) / 5, .5 / 1 -> item 3 (slot 0).
    assert int(agent.act(jax.random.key(2), state, obs)) == 0
    # The same items in other slots: the choice follows the item, not the slot.
    shuffled = _obs(arms=ids[jnp.array([2, 1, 0])][:, None])
    assert int(agent.act(jax.random.key(2), state, shuffled)) == 2
    masked = _obs(arms=ids[:, None], mask=jnp.array([False, True, True]))
    assert int(agent.act(jax.random.key(2), state, masked)) == 2  # .5 beats .3
    # predict is the smoothed CTR of each candidate; action_probs the argmax.
    np.testing.assert_allclose(agent.predict(state, obs), [2.5 / 3, 1.5 / 5, 0.5])
    np.testing.assert_array_equal(agent.action_probs(None, state, masked), [0, 0, 1])


def test_popularity_breaks_ties_at_random_among_allowed():
    agent = agents.make("popularity", num_arms=4, num_items=4)
    state = agent.init(jax.random.key(0))
    obs = _obs(arms=(jnp.arange(4.0) / 3)[:, None], mask=jnp.array([1, 1, 0, 1], bool))
    keys = jax.random.split(jax.random.key(3), 400)
    actions = np.asarray(jax.vmap(lambda k: agent.act(k, state, obs))(keys))
    counts = np.bincount(actions, minlength=4)
    assert counts[2] == 0
    assert (counts[[0, 1, 3]] > 80).all()  # ~133 each; > 80 fails w.p. < 1e-8
    probs = agent.action_probs(None, state, obs)
    np.testing.assert_allclose(probs, [1 / 3, 1 / 3, 0, 1 / 3], rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_items": 0}, "num_items"),
        ({"prior_mean": 1.5}, "prior_mean"),
        ({"prior_weight": 0.0}, "prior_weight"),
    ],
)
def test_popularity_rejects_bad_hyperparameters(kwargs, field):
    with pytest.raises(BanditConfigError, match=field):
        agents.make("popularity", num_arms=3, **kwargs)


@pytest.mark.slow
def test_agents_run_on_the_recommendation_env():
    env, params = envs.make("ContextualRec-v0", num_items=100, num_users=200)
    built = [
        agents.make(
            "popularity", num_arms=env.num_arms, dim=env.context_dim, num_items=100
        ),
        agents.make("linucb_items", num_arms=env.num_arms, item_dim=env.item_dim),
        agents.make(
            "linucb_context_items",
            num_arms=env.num_arms,
            dim=env.context_dim,
            item_dim=env.item_dim,
            cross_dim=env.num_categories,
        ),
    ]
    for agent in built:
        trajectory = bandits.run(env, agent, horizon=30, seeds=2, params=params)
        assert trajectory.regret.shape == (2, 30)
        assert np.all(np.asarray(trajectory.regret) >= -1e-6)
