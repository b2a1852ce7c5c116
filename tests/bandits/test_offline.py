"""Target-policy probabilities, reward models with cross-fitting, replay evaluation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
import envs
from agents.warm_start import warm_start
from bandits import offline
from bandits.validation import BanditConfigError
from envs import logged

K, D = 4, 6


@pytest.fixture(scope="module")
def uniform_logs():
    env, params = envs.make("Linear-v0", num_arms=K, dim=D)
    data = logged.generate(jax.random.key(3), env, params, logged.uniform(), 6_000)
    return env, params, data


def test_policy_probs_use_action_probs_and_monte_carlo_agrees(uniform_logs):
    """An agent with `action_probs` gives them exactly; the same agent without
    them is estimated from 4,000 draws per event, each frequency within 0.035
    (4.4 binomial standard deviations at p = 1/2) of the exact probability."""
    _, _, data = uniform_logs
    agent = agents.epsilon_greedy(num_arms=K, dim=D, epsilon=0.3)
    warm = warm_start(agent, data.take(slice(0, 2_000)))
    state = warm.init(jax.random.key(0))
    obs = jax.tree.map(jnp.asarray, data.take(slice(2_000, 2_050)).observations())
    exact = offline.policy_probs(warm, state, obs, jax.random.key(1))
    expected = jax.vmap(lambda o: warm.action_probs(jax.random.key(1), state, o))(obs)
    np.testing.assert_allclose(np.asarray(exact), np.asarray(expected), atol=1e-6)
    assert np.asarray(exact).max() > 0.7  # epsilon mixing shows, not one-hot
    sampled = offline.policy_probs(
        warm._replace(action_probs=None), state, obs, jax.random.key(2), samples=4_000
    )
    np.testing.assert_allclose(np.asarray(sampled).sum(axis=1), 1.0, atol=1e-6)
    assert np.abs(np.asarray(sampled) - np.asarray(exact)).max() < 0.035


def test_ridge_model_matches_a_float64_solve():
    rng = np.random.default_rng(0)
    n = 500
    X = rng.normal(size=(n, K, 3)).astype(np.float32)
    action = rng.integers(0, K, n).astype(np.int32)
    reward = rng.normal(size=n).astype(np.float32)
    model = offline.ridge_model(K, regularization=2.0)
    params = model.fit(jnp.asarray(X), jnp.asarray(action), jnp.asarray(reward))
    for arm in range(K):
        rows = action == arm
        Z = np.concatenate([X[rows, arm], np.ones((rows.sum(), 1))], axis=1)
        Z = Z.astype(np.float64)
        want = np.linalg.solve(2.0 * np.eye(4) + Z.T @ Z, Z.T @ reward[rows])
        np.testing.assert_allclose(np.asarray(params[arm]), want, rtol=1e-4, atol=1e-5)
    shared = offline.ridge_model(K, regularization=2.0, shared=True)
    p = shared.fit(jnp.asarray(X), jnp.asarray(action), jnp.asarray(reward))
    assert shared.predict(p, jnp.asarray(X)).shape == (n, K)


def test_logistic_model_reaches_the_optimum():
    """At the fitted weights the gradient of the regularised log-likelihood,
    computed in float64, is below 1e-3 of its value at zero."""
    rng = np.random.default_rng(1)
    n = 2_000
    X = rng.normal(size=(n, K, 3)).astype(np.float32)
    action = rng.integers(0, K, n).astype(np.int32)
    truth = rng.normal(size=(K, 3))
    p = 1 / (1 + np.exp(-np.einsum("nf,nf->n", X[np.arange(n), action], truth[action])))
    reward = (rng.uniform(size=n) < p).astype(np.float32)
    model = offline.logistic_model(K, regularization=1.0)
    w = np.asarray(model.fit(jnp.asarray(X), jnp.asarray(action), jnp.asarray(reward)))
    for arm in range(K):
        rows = action == arm
        Z = np.concatenate([X[rows, arm], np.ones((rows.sum(), 1))], axis=1)
        Z = Z.astype(np.float64)

        def grad(v, Z=Z, rows=rows):
            q = 1 / (1 + np.exp(-Z @ v))
            return Z.T @ (q - reward[rows]) + v

        assert np.linalg.norm(grad(w[arm])) < 1e-3 * np.linalg.norm(grad(0 * w[arm]))
    predictions = model.predict(jnp.asarray(w), jnp.asarray(X))
    assert float(predictions.min()) > 0 and float(predictions.max()) < 1


@pytest.mark.parametrize("make", [offline.ridge_model, offline.logistic_model])
def test_a_zero_one_weight_fits_the_selected_events(make):
    """`fit` with a 0/1 weight per event gives the model of the selected events
    alone (the cross-fitting folds of the OPE benchmark use it); the two sums
    differ in float32 order only, hence rtol 1e-4 on parameters of order 1."""
    rng = np.random.default_rng(4)
    n = 600
    X = jnp.asarray(rng.normal(size=(n, K, 3)), jnp.float32)
    action = jnp.asarray(rng.integers(0, K, n), jnp.int32)
    reward = jnp.asarray(rng.uniform(size=n) < 0.4, jnp.float32)
    keep = rng.uniform(size=n) < 0.5
    for shared in (False, True):
        model = make(K, shared=shared)
        weighted = model.fit(X, action, reward, jnp.asarray(keep, jnp.float32))
        subset = model.fit(X[keep], action[keep], reward[keep])
        np.testing.assert_allclose(weighted, subset, rtol=1e-4, atol=1e-5)
        everything = model.fit(X, action, reward)
        assert np.abs(np.asarray(everything) - np.asarray(subset)).max() > 1e-3


def test_cross_fit_never_scores_an_event_with_a_model_that_saw_it():
    """Changing one event's reward changes the predictions of the other folds'
    events but not its own row."""
    rng = np.random.default_rng(2)
    n = 300
    X = jnp.asarray(rng.normal(size=(n, K, 3)).astype(np.float32))
    action = jnp.asarray(rng.integers(0, K, n).astype(np.int32))
    reward = jnp.asarray(rng.normal(size=n).astype(np.float32))
    model = offline.ridge_model(K)
    key = jax.random.key(0)
    before = offline.cross_fit(model, X, action, reward, key, folds=5)
    after = offline.cross_fit(model, X, action, reward.at[7].add(100.0), key, folds=5)
    changed = np.flatnonzero(np.abs(np.asarray(after - before)).max(axis=1) > 1e-3)
    assert 7 not in changed
    assert changed.size > 0.5 * n  # the other four folds all moved
    with pytest.raises(BanditConfigError) as err:
        offline.cross_fit(model, X[:3], action[:3], reward[:3], key, folds=5)
    assert err.value.field == "folds"


def fixed_policy(theta):
    """Greedy on a known linear score: never learns (update is the identity)."""

    def act(key, state, obs):
        del key, state
        return jnp.argmax(obs.arms @ theta).astype(jnp.int32)

    return agents.make("random", num_arms=K)._replace(
        act=act, update=lambda key, s, obs, a, r: s, action_probs=None
    )


def test_replay_of_a_fixed_policy_is_unbiased_on_uniform_logs(uniform_logs):
    """Its replay value is within 3 standard errors of its exact value on the
    logged contexts (mean of the env's expected reward of its choice); about
    1/K of the events are accepted; weighting by 1/propensity changes nothing
    when the logger is uniform."""
    _, _, data = uniform_logs
    rng = np.random.default_rng(4)
    theta = jnp.asarray(rng.normal(size=data.arms.shape[2]).astype(np.float32))
    policy = fixed_policy(theta)
    obs = jax.tree.map(jnp.asarray, data.observations())
    result = offline.replay(policy, jax.random.key(0), obs, data.action, data.reward)
    choice = np.argmax(data.arms @ np.asarray(theta), axis=1)
    truth = data.expected_rewards[np.arange(len(data)), choice].mean()
    est = result.estimate
    assert abs(float(est.value) - truth) < 3 * float(est.std_error)
    assert abs(int(result.accepted) - len(data) / K) < 4 * np.sqrt(len(data) / K)
    weighted = offline.replay(
        policy, jax.random.key(0), obs, data.action, data.reward, data.propensity,
        weighted=True,
    )  # fmt: skip
    assert float(weighted.estimate.value) == pytest.approx(float(est.value), rel=1e-6)


def test_weighted_replay_corrects_a_non_uniform_logger():
    """Logs of a softmax policy on the noisy oracle (temperature 1: propensities
    from 0.03 to 0.9): plain replay of a fixed policy is off by more than 3
    standard errors; the 1/propensity-weighted replay is within 3 of the exact
    value."""
    env, params = envs.make("Linear-v0", num_arms=K, dim=D)
    policy_log = logged.softmax_noisy_oracle(temperature=1.0)
    data = logged.generate(jax.random.key(5), env, params, policy_log, 20_000)
    rng = np.random.default_rng(6)
    theta = jnp.asarray(rng.normal(size=data.arms.shape[2]).astype(np.float32))
    policy = fixed_policy(theta)
    obs = jax.tree.map(jnp.asarray, data.observations())
    choice = np.argmax(data.arms @ np.asarray(theta), axis=1)
    truth = data.expected_rewards[np.arange(len(data)), choice].mean()
    args = (policy, jax.random.key(0), obs, data.action, data.reward, data.propensity)
    plain = offline.replay(*args).estimate
    weighted = offline.replay(*args, weighted=True).estimate
    assert abs(float(weighted.value) - truth) < 3 * float(weighted.std_error)
    assert abs(float(plain.value) - truth) > 3 * float(plain.std_error)


def test_replay_lets_a_learning_agent_learn(uniform_logs):
    """LinUCB replayed on uniform logs learns from accepted events: its replay
    value beats uniform play's (the logs' mean reward) by 5 standard errors."""
    _, _, data = uniform_logs
    agent = agents.linucb(num_arms=K, dim=D)
    obs = jax.tree.map(jnp.asarray, data.observations())
    result = offline.replay(agent, jax.random.key(0), obs, data.action, data.reward)
    uniform_value = data.reward.mean()
    assert float(result.estimate.value) > uniform_value + 5 * float(
        result.estimate.std_error
    )


def test_replay_input_errors(uniform_logs):
    _, _, data = uniform_logs
    agent = agents.linucb(num_arms=K, dim=D)
    obs = jax.tree.map(jnp.asarray, data.observations())
    with pytest.raises(BanditConfigError) as err:
        offline.replay(agent, jax.random.key(0), obs, data.action, data.reward,
                       weighted=True)  # fmt: skip
    assert err.value.field == "propensity"
    with pytest.raises(BanditConfigError) as err:
        offline.policy_probs(agent, None, obs, jax.random.key(0), samples=0)
    assert err.value.field == "samples"


def test_an_agents_predict_as_a_cross_fitted_reward_model(uniform_logs):
    """LinUCB's ridge estimate as the reward model: fitted by its own updates on
    the other folds, it predicts each held-out event's expected rewards far
    better than a constant does, and never from a model that saw the event."""
    _, _, data = uniform_logs
    agent = agents.linucb(num_arms=K, dim=D)
    model = offline.agent_model(agent)
    obs = jax.tree.map(jnp.asarray, data.take(slice(0, 2_000)).observations())
    action = jnp.asarray(data.action[:2_000])
    reward = jnp.asarray(data.reward[:2_000])
    key = jax.random.key(1)
    hat = np.asarray(offline.cross_fit(model, obs, action, reward, key, folds=4))
    truth = data.expected_rewards[:2_000]
    assert hat.shape == truth.shape
    model_error = np.mean((hat - truth) ** 2)
    constant_error = np.mean((truth - truth.mean()) ** 2)
    assert model_error < 0.2 * constant_error, (model_error, constant_error)
    moved = np.asarray(
        offline.cross_fit(model, obs, action, reward.at[5].add(50.0), key, folds=4)
    )
    assert np.allclose(moved[5], hat[5])  # its own fold's model never saw it
    with pytest.raises(BanditConfigError, match="has no predict"):
        offline.agent_model(agents.make("random", num_arms=K))


def test_a_neural_agents_predict_as_a_cross_fitted_reward_model():
    """NeuralTS's network as the reward model, cross-fitted on 2,000 uniform
    events of a linear bandit with noise 0.1 (the network has ~500 weights, so
    with noise 1 it needs far more events): its squared error against the exact
    expected rewards is under 5% of a constant's. Measured 1.1% (NeuralTS) and
    0.9% (neural-linear), LinUCB 0.03%."""
    env, params = envs.make("Linear-v0", num_arms=K, dim=D, noise_std=0.1)
    data = logged.generate(jax.random.key(3), env, params, logged.uniform(), 2_000)
    model = offline.agent_model(agents.make("neural_ts", num_arms=K, dim=D))
    obs = jax.tree.map(jnp.asarray, data.observations())
    action, reward = jnp.asarray(data.action), jnp.asarray(data.reward)
    hat = offline.cross_fit(model, obs, action, reward, jax.random.key(1), folds=4)
    truth = data.expected_rewards
    model_error = np.mean((np.asarray(hat) - truth) ** 2)
    constant_error = np.mean((truth - truth.mean()) ** 2)
    assert model_error < 0.05 * constant_error, (model_error, constant_error)


@pytest.mark.parametrize("make", [offline.ridge_model, offline.logistic_model])
def test_reward_model_fits_call_no_lapack(make):
    """The fits compile to plain arithmetic (`linalg.spd_solve`), so a program
    that fits several models at once, such as the OPE benchmark's replicate
    program, cannot deadlock in jaxlib's LAPACK kernels (docs/ope.md)."""
    features = jnp.zeros((8, K, 3), jnp.float32)
    action = jnp.zeros(8, jnp.int32)
    fit = jax.jit(jax.vmap(make(K).fit, in_axes=(None, None, 0)))
    lowered = fit.lower(features, action, jnp.zeros((2, 8), jnp.float32))
    assert "lapack" not in lowered.as_text().lower()
