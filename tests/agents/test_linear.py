"""The linear agents: ridge statistics, golden scores, special cases, sweeps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
import bandits
import envs
from agents.ridge import ridge_totals
from bandits import Observation

KEY = jax.random.key(0)


def _obs(context, mask=None, arms=None) -> Observation:
    context = jnp.asarray(context, jnp.float32)
    if arms is None:
        k = len(mask)
        arms = jnp.zeros((k, 0), jnp.float32)
    arms = jnp.asarray(arms, jnp.float32)
    if mask is None:
        mask = [True] * arms.shape[0]
    return Observation(context, arms, jnp.asarray(mask))


# --- ridge statistics -----------------------------------------------------------


@pytest.mark.parametrize("refactor_every", [256, 7])
def test_disjoint_statistics_equal_the_direct_ridge_solution(refactor_every):
    """After 40 updates, S_k S_k^T, A_k, b_k and theta_hat_k of every arm equal
    inv(lam I + X_k^T X_k), lam I + X_k^T X_k, X_k^T r_k and their product
    (float64, tight), whether or not re-factorisations happened on the way."""
    num_arms, dim, lam = 3, 4, 0.5
    rng = np.random.default_rng(0)
    contexts = rng.uniform(-1, 1, (40, dim))
    actions = rng.integers(0, num_arms, 40)
    rewards = rng.normal(size=40)
    with jax.enable_x64(True):
        agent = agents.linucb(
            num_arms,
            dim,
            regularization=lam,
            dtype="float64",
            refactor_every=refactor_every,
        )
        state = agent.init(KEY)
        for x, a, r in zip(contexts, actions, rewards, strict=True):
            obs = _obs(x, [True] * num_arms)._replace(context=jnp.asarray(x))
            state = agent.update(KEY, state, obs, jnp.int32(a), r)
        for k in range(num_arms):
            X, r = contexts[actions == k], rewards[actions == k]
            A = lam * np.eye(dim) + X.T @ X
            R = np.asarray(state.root[k])
            A_total, b_total = map(np.asarray, ridge_totals(state))
            np.testing.assert_allclose(R.T @ R, np.linalg.inv(A), atol=1e-12)
            np.testing.assert_allclose(A_total[k], A, atol=1e-12)
            np.testing.assert_allclose(b_total[k], X.T @ r, atol=1e-12)
            np.testing.assert_allclose(
                state.theta_hat[k], np.linalg.solve(A, X.T @ r), atol=1e-12
            )


def test_shared_statistics_use_the_chosen_arms_features():
    num_arms, dim = 4, 3
    rng = np.random.default_rng(1)
    arms = rng.uniform(-1, 1, (30, num_arms, dim))
    actions = rng.integers(0, num_arms, 30)
    rewards = rng.normal(size=30)
    with jax.enable_x64(True):
        agent = agents.lin_greedy(num_arms, dim, features="arms", dtype="float64")
        state = agent.init(KEY)
        assert state.root.shape == (1, dim, dim)
        for X, a, r in zip(arms, actions, rewards, strict=True):
            obs = Observation(jnp.zeros((2,)), jnp.asarray(X), jnp.ones(num_arms, bool))
            state = agent.update(KEY, state, obs, jnp.int32(a), r)
    chosen = arms[np.arange(30), actions]
    A = np.eye(dim) + chosen.T @ chosen
    R = np.asarray(state.root[0])
    np.testing.assert_allclose(R.T @ R, np.linalg.inv(A), atol=1e-12)
    np.testing.assert_allclose(
        ridge_totals(state)[1][0], chosen.T @ rewards, atol=1e-12
    )


# --- golden values ----------------------------------------------------------------


@pytest.mark.parametrize(("alpha", "expected"), [(0.0, 0), (1.0, 0), (3.0, 1)])
def test_linucb_golden_scores(alpha, expected):
    """lam = 1; arm 0 saw x = (1, 0) with r = 1, arm 1 nothing. At x = (1, 1):

    arm 0: A = diag(2, 1), theta_hat = (0.5, 0): mean 0.5, x^T A^{-1} x = 1.5;
    arm 1: mean 0, x^T x = 2. Scores 0.5 + alpha sqrt(1.5) vs alpha sqrt(2): arm 0
    wins for alpha = 0 and 1 (1.725 > 1.414); arm 1 for alpha = 3 (4.243 > 4.174).
    """
    agent = agents.linucb(2, 2, alpha=alpha)
    state = agent.init(KEY)
    state = agent.update(KEY, state, _obs([1.0, 0.0], [True, True]), jnp.int32(0), 1.0)
    np.testing.assert_allclose(state.theta_hat, [[0.5, 0.0], [0.0, 0.0]])
    R = np.asarray(state.root[0])
    np.testing.assert_allclose(R.T @ R, [[0.5, 0.0], [0.0, 1.0]], atol=1e-7)
    assert int(agent.act(KEY, state, _obs([1.0, 1.0], [True, True]))) == expected
    # Masking the winner leaves the other arm.
    mask = [expected != 0, expected != 1]
    assert int(agent.act(KEY, state, _obs([1.0, 1.0], mask))) == 1 - expected


def test_epsilon_greedy_action_probs_golden():
    """epsilon = 0.3, arms {0, 1, 3} allowed, greedy arm 1:
    pi = 0.3 / 3 + 0.7 * 1[k = 1] on allowed arms = (0.1, 0.8, 0, 0.1)."""
    agent = agents.epsilon_greedy(4, 1, epsilon=0.3)
    state = agent.init(KEY)
    obs = _obs([1.0], [True, True, False, True])
    state = agent.update(KEY, state, obs, jnp.int32(1), 1.0)
    np.testing.assert_allclose(
        agent.action_probs(KEY, state, obs), [0.1, 0.8, 0.0, 0.1], rtol=1e-6
    )
    greedy = agents.lin_greedy(4, 1)
    np.testing.assert_array_equal(greedy.action_probs(KEY, state, obs), [0, 1, 0, 0])


# --- special cases agree ----------------------------------------------------------


@pytest.mark.parametrize("features", ["context", "arms"])
def test_zero_exploration_agents_are_the_greedy_agent(features):
    """LinUCB with alpha = 0, LinTS with v = 0 and epsilon-greedy with epsilon = 0
    all score by the ridge mean, so they play exactly as `lin_greedy`."""
    if features == "context":
        env, params = envs.make("Linear-v0", num_arms=4, dim=3)
        dim = 3
    else:
        env, params = envs.make(
            "LinearArmFeatures-v0", num_arms=6, arm_dim=3, context_dim=2
        )
        dim = 3
    k = env.num_arms
    runs = {
        name: bandits.simulate(KEY, env, params, agent, 80).action
        for name, agent in {
            "greedy": agents.lin_greedy(k, dim, features=features),
            "linucb": agents.linucb(k, dim, alpha=0.0, features=features),
            "lints": agents.lints(k, dim, v=0.0, features=features),
            "epsilon": agents.epsilon_greedy(k, dim, epsilon=0.0, features=features),
        }.items()
    }
    for name, actions in runs.items():
        np.testing.assert_array_equal(actions, runs["greedy"], err_msg=name)


# --- traced hyperparameters: a sweep is a vmap -----------------------------------


def test_alpha_sweep_by_vmap_equals_separate_runs():
    env, params = envs.make("Linear-v0", num_arms=4, dim=3)
    alphas = jnp.asarray([0.0, 0.5, 2.0], jnp.float32)

    def regret_curve(alpha, regularization):
        agent = agents.linucb(4, 3, alpha=alpha, regularization=regularization)
        return bandits.simulate(KEY, env, params, agent, 60)

    swept = jax.jit(jax.vmap(regret_curve, in_axes=(0, None)))(alphas, 1.0)
    for i, alpha in enumerate([0.0, 0.5, 2.0]):
        single = bandits.simulate(
            KEY, env, params, agents.linucb(4, 3, alpha=alpha), 60
        )
        np.testing.assert_array_equal(swept.action[i], single.action)
        np.testing.assert_allclose(swept.regret[i], single.regret, rtol=1e-5, atol=1e-6)
    assert len({tuple(np.asarray(a)) for a in swept.action}) > 1


def test_epsilon_sweep_by_vmap_runs():
    env, params = envs.make("Linear-v0", num_arms=4, dim=3)

    def run(epsilon):
        agent = agents.epsilon_greedy(4, 3, epsilon=epsilon)
        return bandits.simulate(KEY, env, params, agent, 40).action

    actions = jax.jit(jax.vmap(run))(jnp.asarray([0.0, 1.0]))
    assert actions.shape == (2, 40)
    # epsilon = 1 is uniform: it plays several arms; epsilon = 0 is greedy.
    assert len(np.unique(actions[1])) > 1
