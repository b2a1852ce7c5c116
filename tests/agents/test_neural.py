"""Neural agents: the math of each exploration rule, the training clock, sweeps.

The generic contracts (`jit(f) == f`, `vmap(f) == stack(f)`, masks, action
probabilities against frequencies) run for every registered agent, these included,
in `tests/agents/test_contracts.py`. Here: what is specific to the neural agents,
on tiny networks so each test compiles quickly.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bandits
import envs
from agents import neural, neural_linear
from agents.networks import TrainConfig, make_network
from bandits.validation import BanditConfigError

K, D = 3, 4
TINY = dict(
    hidden_sizes=(8,),
    capacity=32,
    train_every=4,
    train_steps=3,
    batch_size=8,
)
FACTORIES = {
    "neural_epsilon_greedy": neural.neural_epsilon_greedy,
    "neural_linear": neural.neural_linear,
    "neural_ucb": neural.neural_ucb,
    "neural_ts": neural.neural_ts,
    "ensemble_sampling": neural.ensemble_sampling,
    "bootstrapped_ensemble": neural.bootstrapped_ensemble,
}


def _env():
    return envs.make("Linear-v0", num_arms=K, dim=D)


def _net_of(state):
    """The single-network part of any neural agent's state."""
    return state if isinstance(state, neural.NeuralState) else state.net


def _rollout(agent, steps: int, seed: int = 0):
    env, params = _env()
    key_reset, key_init, key = jax.random.split(jax.random.key(seed), 3)
    obs, env_state = env.reset(key_reset, params)
    state = agent.init(key_init)
    update = jax.jit(agent.update)
    act = jax.jit(agent.act)
    history = []
    for t in range(steps):
        key_act, key_env, key_update = jax.random.split(jax.random.fold_in(key, t), 3)
        action = act(key_act, state, obs)
        next_obs, env_state, feedback = env.step(key_env, env_state, action, params)
        history.append((obs, action, feedback.reward))
        state = update(key_update, state, obs, action, feedback.reward)
        obs = next_obs
    return state, history


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_run_is_deterministic_and_learns_nothing_invalid(name):
    env, params = _env()
    agent = FACTORIES[name](num_arms=K, dim=D, **TINY)
    first = bandits.run(env, agent, horizon=40, seeds=2, params=params)
    second = bandits.run(env, agent, horizon=40, seeds=2, params=params)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    actions = np.asarray(first.action)
    assert actions.min() >= 0 and actions.max() < K
    # different seeds explore differently
    assert not np.array_equal(actions[0], actions[1])


def test_network_retrains_exactly_every_train_every_updates():
    agent = neural.neural_epsilon_greedy(num_arms=K, dim=D, **TINY)
    init, _ = _rollout(agent, 0)
    state, _ = _rollout(agent, 3)
    for a, b in zip(
        jax.tree.leaves(init.params), jax.tree.leaves(state.params), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    state, _ = _rollout(agent, 4)
    changed = [
        not np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(
            jax.tree.leaves(init.params), jax.tree.leaves(state.params), strict=True
        )
    ]
    assert all(changed)
    assert int(state.step) == 4 and int(state.buffer.size) == 4


def test_neural_epsilon_greedy_mixes_epsilon_after_the_forced_pulls():
    """After the K forced pulls, pi = eps / |allowed| + (1 - eps) 1[greedy].

    With arms {0, 2} allowed and eps = 0.3: the greedy allowed arm gets 0.85,
    the other allowed arm 0.15, the masked arm 0 (exact arithmetic on the
    probabilities, so 1e-6). Before the forced pulls end the policy is the
    forced arm with probability one.
    """
    agent = neural.neural_epsilon_greedy(num_arms=K, dim=D, epsilon=0.3, **TINY)
    state, history = _rollout(agent, K + 2)
    obs = history[-1][0]._replace(mask=jnp.asarray([True, False, True]))
    probs = np.asarray(agent.action_probs(jax.random.key(0), state, obs))
    network = make_network("context", K, D, (8,))
    scores = np.asarray(network.scores(state.params, obs))
    greedy = 0 if scores[0] >= scores[2] else 2
    expected = np.zeros(K)
    expected[[0, 2]] = 0.15
    expected[greedy] += 0.7
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    early, _ = _rollout(agent, 1)
    forced = np.asarray(agent.action_probs(jax.random.key(0), early, obs))
    assert sorted(forced.tolist()) == [0.0, 0.0, 1.0]


def test_training_reduces_the_squared_error_on_the_buffer():
    agent = neural.neural_epsilon_greedy(
        num_arms=K, dim=D, hidden_sizes=(16,), capacity=64, train_every=32,
        train_steps=200, batch_size=32, learning_rate=1e-2,
    )  # fmt: skip
    state, history = _rollout(agent, 32)
    network = make_network("context", K, D, (16,))

    def mse(params):
        errors = [
            network.predict_taken(params, obs.context, action) - reward
            for obs, action, reward in history
        ]
        return float(np.mean(np.square(errors)))

    # 200 Adam steps on 32 points: the fit must at least halve the initial error
    assert mse(state.params) < 0.5 * mse(_rollout(agent, 0)[0].params)


def test_neural_ucb_diagonal_precision_is_lambda_plus_squared_gradients():
    lam = 0.5
    agent = neural.neural_ucb(
        num_arms=K, dim=D, regularization=lam, **{**TINY, "train_every": 100}
    )
    state, history = _rollout(agent, 5)
    network = make_network("disjoint", K, D, (8,))
    params = state.net.params  # never retrained: train_every > 5
    expected = jax.tree.map(lambda p: jnp.full_like(p, lam), params)
    for obs, action, _ in history:
        g = network.taken_gradient(params, obs.context, action)
        expected = jax.tree.map(lambda z, gi: z + gi * gi, expected, g)
    for a, b in zip(
        jax.tree.leaves(state.precision_diag), jax.tree.leaves(expected), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5)


@pytest.mark.parametrize("name", ["neural_ucb", "neural_ts"])
def test_paper_config_scales_the_gradient_features_by_one_over_m(name):
    """config="paper": Z = lambda + sum g^2 / m (m = 8, the hidden width), and
    the squared width is g^T Z^{-1} g / m (NeuralUCB) or lambda g^T Z^{-1} g / m
    (NeuralTS), against the same sums written out here."""
    lam, m = 0.5, 8
    agent = FACTORIES[name](
        num_arms=K, dim=D, regularization=lam, config="paper",
        **{**TINY, "train_every": 100},
    )  # fmt: skip
    state, history = _rollout(agent, 5)
    network = make_network("disjoint", K, D, (m,))
    params = state.net.params  # never retrained: train_every > 5
    z = jax.tree.map(lambda p: jnp.full_like(p, lam), params)
    for obs, action, _ in history:
        g = network.taken_gradient(params, obs.context, action)
        z = jax.tree.map(lambda zi, gi: zi + gi * gi / m, z, g)
    for a, b in zip(
        jax.tree.leaves(state.precision_diag), jax.tree.leaves(z), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5)
    obs = history[-1][0]
    grads = network.arm_gradients(params, obs)
    quad = sum(
        np.sum((np.asarray(g) ** 2 / np.asarray(zi)).reshape(K, -1), axis=1)
        for g, zi in zip(jax.tree.leaves(grads), jax.tree.leaves(z), strict=True)
    )
    expected = quad / m * (lam if name == "neural_ts" else 1.0)
    width = neural._squared_norm_over_z(grads, state.precision_diag)
    scale = (lam if name == "neural_ts" else 1.0) / m
    np.testing.assert_allclose(scale * np.asarray(width), expected, rtol=1e-5)


def test_paper_training_is_gradient_descent_from_theta_0():
    """TrainNN: theta_1 = theta_0 - (eta / n) sum_i (f_i - r_i) g_i (the prior
    term vanishes at theta_0), and theta_2 = theta_1 - (eta / n) [sum_i
    (f_i(theta_1) - r_i) g_i(theta_1) + m lambda (theta_1 - theta_0)], n the
    stored rounds, written out with per-row gradients, against `fit_full_batch`
    with J = 1 and J = 2 (float32, 1e-5)."""
    from agents.networks import fit_full_batch

    lam, eta, m = 0.3, 0.05, 8
    agent = neural.neural_ts(num_arms=K, dim=D, config="paper", **TINY)
    state, _ = _rollout(agent, 6)
    network = make_network("disjoint", K, D, (m,))
    net = state.net
    rows = int(net.buffer.size)
    items = jax.tree.map(lambda v: v[:rows], net.buffer.items)

    def descend(params):
        total = jax.tree.map(jnp.zeros_like, params)
        for x, a, r in zip(items["x"], items["action"], items["reward"], strict=True):
            f = network.predict_taken(params, x, a)
            g = network.taken_gradient(params, x, a)
            total = jax.tree.map(lambda t, gi, f=f, r=r: t + (f - r) * gi, total, g)
        total = jax.tree.map(
            lambda t, p, p0: t + m * lam * (p - p0), total, params, net.params0
        )
        return jax.tree.map(lambda p, t: p - eta / rows * t, params, total)

    one = descend(net.params0)
    two = descend(one)
    for steps, expected in ((1, one), (2, two)):
        actual = fit_full_batch(network, net.params0, net.buffer, eta, lam, steps)
        for a, b in zip(
            jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True
        ):
            np.testing.assert_allclose(
                np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6
            )


def test_paper_training_stays_finite_with_the_papers_width_and_step():
    """Width m = 100, lambda = 1, eta = 1e-2 (the reference code's step) on 200
    rounds: the summed objective's curvature (at least m lambda = 100, growing
    with the rows) made a fixed step eta diverge (non-finite weights by round
    200 here); the step eta / n keeps every weight finite."""
    env, params = envs.make("Linear-v0", num_arms=4, dim=8)
    agent = neural.neural_ts(
        num_arms=4, dim=8, config="paper", hidden_sizes=(100,), nu=0.1,
        regularization=1.0, learning_rate=1e-2, train_every=25, train_steps=50,
        capacity=200,
    )  # fmt: skip
    _, states = bandits.run_with_states(
        env, agent, horizon=200, seeds=2, params=params, states_of=[0, 1]
    )
    for leaf in jax.tree.leaves(states.net.params):
        assert np.all(np.isfinite(np.asarray(leaf)))


def test_paper_config_runs_and_retrains_from_theta_0_every_round():
    env, params = _env()
    agent = neural.neural_ucb(
        num_arms=K, dim=D, config="paper", **{**TINY, "train_every": 1}
    )
    trajectory = bandits.run(env, agent, horizon=30, seeds=2, params=params)
    assert np.all(np.isfinite(np.asarray(trajectory.regret)))
    with pytest.raises(BanditConfigError, match="config"):
        neural.neural_ts(num_arms=K, dim=D, config="papers")


def test_reference_training_is_single_round_sgd_until_the_loss_is_small():
    """NeuralUCB's reference code trains from the current parameters by SGD on
    one stored round at a time, (f - r)^2 with weight decay lambda toward 0, in
    one random order of the rows, until a sweep's mean loss is at most 1e-3 or
    1,000 steps. Written out as a Python loop over the same order and compared
    with `fit_sgd_until_small` (float32, 1e-5): capped at 7 steps (a sweep of 6
    rows and one more), and stopping after one sweep when the tolerance is met
    at once (rewards equal to the network's own predictions, no weight decay)."""
    from agents.networks import fit_sgd_until_small

    lam, eta = 0.3, 0.05
    agent = neural.neural_ts(num_arms=K, dim=D, config="paper", **TINY)
    state, _ = _rollout(agent, 6)
    network = make_network("disjoint", K, D, (8,))
    net = state.net
    rows = int(net.buffer.size)
    key = jax.random.key(3)
    draw = jax.random.uniform(key, (32,))
    order = np.argsort(np.where(np.arange(32) < rows, np.asarray(draw), 2.0))[:rows]
    items = jax.tree.map(np.asarray, net.buffer.items)

    def by_hand(params, rewards, decay, steps):
        for step in range(steps):
            i = order[step % rows]
            x, a = items["x"][i], items["action"][i]
            f = network.predict_taken(params, x, a)
            g = network.taken_gradient(params, x, a)

            def sgd(p, gi, f=f, r=rewards[i]):
                return p - eta * (2 * (f - r) * gi + decay * p)

            params = jax.tree.map(sgd, params, g)
        return params

    def close(actual, expected):
        for a, b in zip(
            jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True
        ):
            np.testing.assert_allclose(
                np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6
            )

    capped = fit_sgd_until_small(
        key, network, net.params, net.buffer, eta, lam, max_steps=7, tolerance=0.0
    )
    close(capped, by_hand(net.params, items["reward"], lam, 7))
    assert not np.allclose(
        np.asarray(jax.tree.leaves(capped)[0]),
        np.asarray(jax.tree.leaves(net.params)[0]),
    )

    fitted = jax.vmap(network.predict_taken, in_axes=(None, 0, 0))(
        net.params, net.buffer.items["x"], net.buffer.items["action"]
    )
    buffer = net.buffer._replace(items={**net.buffer.items, "reward": fitted})
    stopped = fit_sgd_until_small(
        key, network, net.params, buffer, eta, 0.0, max_steps=50, tolerance=1e-3
    )
    close(stopped, by_hand(net.params, np.asarray(fitted), 0.0, rows))


def test_reference_config_schedule_width_and_errors(monkeypatch):
    """config="reference": the width is sqrt(lambda nu g^T Z^-1 g) with Z =
    lambda + sum g^2 (no 1/m), so with nu = 4 it acts as the fast configuration
    with nu = 2 on the same state; it stores and trains after every round up to
    the schedule's switch and then after every 100th only (switch at 5 and
    every 3rd here: 5 + 5 stored after 20 rounds); NeuralTS has no such
    configuration."""
    reference = neural.neural_ucb(num_arms=K, dim=D, nu=4.0, config="reference", **TINY)
    fast = neural.neural_ucb(num_arms=K, dim=D, nu=2.0, **TINY)
    state, history = _rollout(reference, 12)
    for t, (obs, _, _) in enumerate(history):
        key = jax.random.key(t)
        assert int(reference.act(key, state, obs)) == int(fast.act(key, state, obs))
    assert int(state.net.buffer.size) == 12

    monkeypatch.setattr(neural, "REFERENCE_EVERY_ROUND_UNTIL", 5)
    monkeypatch.setattr(neural, "REFERENCE_TRAIN_EVERY", 3)
    agent = neural.neural_ucb(num_arms=K, dim=D, config="reference", **TINY)
    state, _ = _rollout(agent, 20)
    assert int(state.net.buffer.size) == 5 + 5  # rounds 6, 9, 12, 15, 18
    assert int(state.net.step) == 20

    with pytest.raises(BanditConfigError, match="config"):
        neural.neural_ts(num_arms=K, dim=D, config="reference")


def test_neural_ucb_scores_are_mean_plus_nu_times_width():
    nu, lam = 2.0, 1.0
    agent = neural.neural_ucb(
        num_arms=K, dim=D, nu=nu, regularization=lam, **{**TINY, "train_every": 100}
    )
    state, history = _rollout(agent, 6)
    obs = history[-1][0]
    network = make_network("disjoint", K, D, (8,))
    mean = np.asarray(network.scores(state.net.params, obs))
    grads = network.arm_gradients(state.net.params, obs)
    width2 = sum(
        np.sum((np.asarray(g) ** 2 / np.asarray(z)).reshape(K, -1), axis=1)
        for g, z in zip(
            jax.tree.leaves(grads), jax.tree.leaves(state.precision_diag), strict=True
        )
    )
    scores = mean + nu * np.sqrt(lam * width2)
    action = agent.act(jax.random.key(0), state, obs)
    assert int(action) == int(np.argmax(scores))


def test_neural_ts_with_nu_zero_is_greedy_and_sampling_spreads_actions():
    state, history = _rollout(
        neural.neural_ts(num_arms=K, dim=D, **{**TINY, "train_every": 100}), 4
    )
    obs = history[-1][0]
    greedy = neural.neural_ts(num_arms=K, dim=D, nu=0.0, **TINY)
    network = make_network("disjoint", K, D, (8,))
    best = int(np.argmax(np.asarray(network.scores(state.net.params, obs))))
    keys = jax.random.split(jax.random.key(3), 64)
    actions = jax.vmap(greedy.act, in_axes=(0, None, None))(keys, state, obs)
    assert set(np.asarray(actions).tolist()) == {best}
    wide = neural.neural_ts(num_arms=K, dim=D, nu=100.0, **TINY)
    actions = jax.vmap(wide.act, in_axes=(0, None, None))(keys, state, obs)
    # nu = 100 makes the draws dominated by noise: 64 draws hit more than one arm
    assert len(set(np.asarray(actions).tolist())) > 1


def test_neural_linear_posterior_matches_numpy_ridge():
    lam = 0.25
    agent = neural.neural_linear(
        num_arms=K, dim=D, lambda_prior=lam, initial_pulls=0,
        **{**TINY, "train_every": 100},
    )  # fmt: skip
    state, history = _rollout(agent, 12)
    network = make_network("context", K, D, (8,))
    params = state.net.params
    for arm in range(K):
        rows = [(o, r) for o, a, r in history if int(a) == arm]
        phi = np.asarray(
            [np.asarray(network.embed_taken(params, o.context, arm)) for o, _ in rows]
        ).reshape(len(rows), 8)
        r = np.asarray([float(r) for _, r in rows])
        precision = lam * np.eye(8) + phi.T @ phi
        mean = np.linalg.solve(precision, phi.T @ r)
        R = np.asarray(state.blr.root[arm], np.float64)
        np.testing.assert_allclose(R.T @ R, np.linalg.inv(precision), atol=2e-4)
        np.testing.assert_allclose(np.asarray(state.blr.mean[arm]), mean, atol=2e-4)
        assert float(state.blr.rounds[arm]) == len(rows)
        np.testing.assert_allclose(float(state.blr.yty[arm]), np.sum(r**2), rtol=1e-5)


def test_neural_linear_refit_equals_incremental_statistics():
    agent = neural.neural_linear(
        num_arms=K, dim=D, initial_pulls=0, **{**TINY, "train_every": 100}
    )
    state, _ = _rollout(agent, 10)
    network = make_network("context", K, D, (8,))
    refit = neural_linear._blr_refit(network, state.net.params, state.net.buffer, 0.25)
    # roots are not unique: compare the covariances R^T R they stand for
    cov = jnp.einsum("mji,mjk->mik", refit.root, refit.root)
    incremental = jnp.einsum("mji,mjk->mik", state.blr.root, state.blr.root)
    np.testing.assert_allclose(np.asarray(cov), np.asarray(incremental), atol=1e-4)
    for a, b in zip(refit[1:], state.blr[1:], strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)


def test_bootstrapped_ensemble_plays_a_members_greedy_arm_and_averages_members():
    agent = neural.bootstrapped_ensemble(
        num_arms=K, dim=D, num_models=4, initial_pulls=0, **TINY
    )
    state, history = _rollout(agent, 9)
    obs = history[-1][0]
    network = make_network("context", K, D, (8,))
    members = [jax.tree.map(lambda p, m=m: p[m], state.params) for m in range(4)]
    greedy = [int(np.argmax(network.scores(p, obs))) for p in members]
    probs = np.asarray(agent.action_probs(jax.random.key(0), state, obs))
    np.testing.assert_allclose(probs, np.bincount(greedy, minlength=K) / 4)
    keys = jax.random.split(jax.random.key(1), 32)
    actions = jax.vmap(agent.act, in_axes=(0, None, None))(keys, state, obs)
    assert set(np.asarray(actions).tolist()) <= set(greedy)
    # bootstrap weights are Poisson(1) counts, one per member and stored round
    weights = np.asarray(state.buffer.items["weights"])[: int(state.buffer.size)]
    assert weights.shape == (9, 4) and np.all(weights == np.round(weights))
    assert len(np.unique(weights)) > 1
    assert np.all(np.asarray(state.buffer.items["noise"]) == 0.0)


def test_ensemble_sampling_perturbs_rewards_without_bootstrap():
    """Lu & Van Roy (2017): every member sees every round (weight 1) with its own
    perturbation z ~ N(0, sigma^2). 40 rounds x 8 members = 320 draws with
    sigma = 0.5: their standard deviation is within 0.1 of 0.5 (the sample
    s.d. of 320 normals has s.e. 0.02, so 5 s.e.)."""
    agent = neural.ensemble_sampling(
        num_arms=K, dim=D, num_models=8, noise_std=0.5, **{**TINY, "capacity": 64}
    )
    state, _ = _rollout(agent, 40)
    rows = int(state.buffer.size)
    weights = np.asarray(state.buffer.items["weights"])[:rows]
    noise = np.asarray(state.buffer.items["noise"])[:rows]
    assert np.all(weights == 1.0)
    assert abs(noise.std() - 0.5) < 0.1
    assert not np.allclose(noise[:, 0], noise[:, 1])


def test_ensemble_sampling_prior_term_holds_members_near_their_draws():
    """The prior term sigma^2 / (sigma_0^2 n) ||theta_m - theta_m0||^2: with
    sigma / sigma_0 = 1000 it dominates the data term, and after the same
    training the members' RMS distance from their prior draws is under half of
    what it is without the term (sigma = 0). Adam's steps have size ~ the
    learning rate whatever the gradient, so the strong prior shows as members
    oscillating around their draws instead of walking away."""

    def rms_drift(noise_std, prior_std):
        agent = neural.ensemble_sampling(
            num_arms=K, dim=D, num_models=3, noise_std=noise_std,
            prior_std=prior_std, **{**TINY, "train_steps": 20},
        )  # fmt: skip
        state, _ = _rollout(agent, 8)  # two retrainings
        squares = [
            np.sum((np.asarray(p) - np.asarray(p0)) ** 2)
            for p, p0 in zip(
                jax.tree.leaves(state.params), jax.tree.leaves(state.params0),
                strict=True,
            )
        ]  # fmt: skip
        size = sum(np.size(p) for p in jax.tree.leaves(state.params))
        return float(np.sqrt(sum(squares) / size))

    held, free = rms_drift(10.0, 0.01), rms_drift(0.0, 1.0)
    assert held < 0.5 * free, (held, free)


def test_initial_pulls_play_each_arm_in_turn():
    agent = neural.neural_linear(num_arms=K, dim=D, initial_pulls=2, **TINY)
    _, history = _rollout(agent, 2 * K)
    assert [int(a) for _, a, _ in history] == [0, 1, 2, 0, 1, 2]


def test_arm_feature_form_scores_each_candidate():
    env, params = envs.make("LinearArmFeatures-v0", num_arms=5, arm_dim=3)
    agent = neural.neural_ts(num_arms=5, dim=3, features="arms", **TINY)
    trajectory = bandits.run(env, agent, horizon=20, seeds=2, params=params)
    assert np.asarray(trajectory.action).max() < 5
    network = make_network("arms", 5, 3, (8,))
    obs, _ = env.reset(jax.random.key(0), params)
    p = network.init(jax.random.key(1))
    scores = network.scores(p, obs)
    one = [network.predict_taken(p, obs.arms[k], k) for k in range(5)]
    np.testing.assert_allclose(np.asarray(scores), np.asarray(one), rtol=1e-6)


def test_learning_rate_and_exploration_sweep_is_a_vmap():
    env, params = _env()
    key = jax.random.key(0)

    def final_regret(nu, learning_rate):
        agent = neural.neural_ts(
            num_arms=K, dim=D, nu=nu, learning_rate=learning_rate, **TINY
        )
        return jnp.sum(bandits.simulate(key, env, params, agent, 24).regret)

    nus = jnp.asarray([0.0, 2.0])
    lrs = jnp.asarray([1e-3, 1e-1])
    swept = jax.jit(jax.vmap(final_regret))(nus, lrs)
    single = jax.jit(final_regret)
    one_by_one = [float(single(n, lr)) for n, lr in zip(nus, lrs, strict=True)]
    assert one_by_one[0] != one_by_one[1]  # the swept values matter
    np.testing.assert_allclose(np.asarray(swept), one_by_one, rtol=1e-4, atol=1e-4)


def test_training_stays_a_cond_under_vmap_over_seeds():
    """The step counter is unbatched, so seeds share one real branch."""
    env, params = _env()
    agent = neural.neural_ts(num_arms=K, dim=D, **TINY)
    keys = jax.random.split(jax.random.key(0), 2)
    program = jax.vmap(lambda k: bandits.simulate(k, env, params, agent, 8).regret)
    assert "cond[" in str(jax.make_jaxpr(program)(keys))


@pytest.mark.parametrize(
    ("factory", "kwargs", "field"),
    [
        (neural.neural_ts, {"num_arms": 0}, "num_arms"),
        (neural.neural_ts, {"dim": -1}, "dim"),
        (neural.neural_ts, {"features": "pixels"}, "features"),
        (neural.neural_ts, {"hidden_sizes": (8, 0)}, "hidden_sizes"),
        (neural.neural_ts, {"learning_rate": 0.0}, "learning_rate"),
        (neural.neural_ts, {"train_every": 0}, "train_every"),
        (neural.neural_ts, {"batch_size": 2.5}, "batch_size"),
        (neural.neural_ts, {"capacity": 0}, "capacity"),
        (neural.neural_ts, {"nu": -1.0}, "nu"),
        (neural.neural_ucb, {"regularization": 0.0}, "regularization"),
        (neural.neural_epsilon_greedy, {"epsilon": 1.5}, "epsilon"),
        (neural.neural_linear, {"a0": 0.0}, "a0"),
        (neural.neural_linear, {"lambda_prior": -1.0}, "lambda_prior"),
        (neural.neural_linear, {"initial_pulls": -1}, "initial_pulls"),
        (neural.ensemble_sampling, {"num_models": 0}, "num_models"),
        (neural.ensemble_sampling, {"noise_std": -0.1}, "noise_std"),
        (neural.ensemble_sampling, {"prior_std": 0.0}, "prior_std"),
        (neural.bootstrapped_ensemble, {"weight_decay": -1.0}, "weight_decay"),
        (neural.neural_linear, {"weight_decay": -1.0}, "weight_decay"),
    ],
)
def test_bad_hyperparameters_raise_naming_the_field(factory, kwargs, field):
    args = {"num_arms": K, "dim": D, **kwargs}
    with pytest.raises(BanditConfigError, match=field):
        factory(**args)


def test_registered_under_their_names():
    import agents

    for name in FACTORIES:
        assert name in agents.registered()
        agent = agents.make(name, num_arms=K, dim=D, hidden_sizes=4)
        assert agent.name == name


def test_push_keeps_stored_inputs_of_the_form():
    """ "disjoint" stores the context; predictions rebuild e_a (x) x."""
    network = make_network("disjoint", K, D, (8,))
    params = network.init(jax.random.key(0))
    env, env_params = _env()
    obs, _ = env.reset(jax.random.key(1), env_params)
    x = network.stored_input(obs, jnp.int32(2))
    np.testing.assert_array_equal(np.asarray(x), np.asarray(obs.context))
    direct = network._model(params)(jnp.kron(jnp.eye(K)[2], obs.context))[0]
    np.testing.assert_allclose(
        float(network.predict_taken(params, x, jnp.int32(2))), float(direct)
    )


def test_train_config_picks_a_factorys_training_arguments():
    arguments = {"num_arms": 3, "nu": 0.5, "hidden_sizes": (4,), "train_every": 7}
    train = TrainConfig.pick(arguments)
    assert train.hidden_sizes == (4,) and train.train_every == 7
    assert train.weight_decay == TrainConfig().weight_decay  # not given: default
    with pytest.raises(dataclasses.FrozenInstanceError):
        train.train_every = 1  # type: ignore[misc]


def test_neural_ts_propensities_on_request_match_its_draws():
    """Without `propensity_samples` NeuralTS has no action_probs; with 4,000 they
    sum to one and each is within 0.04 (about 5 binomial standard deviations of
    2,000 act draws plus the estimate's own) of the frequency of `act`."""
    import jax
    import jax.numpy as jnp

    from agents import neural
    from bandits.types import Observation

    assert neural.neural_ts(num_arms=3, dim=4).action_probs is None
    agent = neural.neural_ts(
        num_arms=3, dim=4, nu=2.0, hidden_sizes=(8,), propensity_samples=4_000
    )
    state = agent.init(jax.random.key(0))
    obs = Observation(
        context=jnp.asarray([0.3, -1.0, 0.5, 2.0]),
        arms=jnp.zeros((3, 0)),
        mask=jnp.ones(3, bool),
    )
    probs = agent.action_probs(jax.random.key(1), state, obs)
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-6)
    draws = jax.vmap(lambda k: agent.act(k, state, obs))(
        jax.random.split(jax.random.key(2), 2_000)
    )
    freq = jnp.bincount(draws, length=3) / 2_000
    assert float(jnp.abs(freq - probs).max()) < 0.04
    assert float(probs.max()) < 0.95  # the posterior is wide enough to mix
