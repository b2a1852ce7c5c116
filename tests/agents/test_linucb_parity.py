"""Parity of `agents.linucb` with a plain NumPy float64 LinUCB.

How the two runs see the same stream: the contexts (and arm features), the expected
rewards of every arm and the reward noise of a `Linear-v0` (or
`LinearArmFeatures-v0`) instance are first recorded by stepping the env itself. A
`ReplayEnv` then serves that recorded stream through the env protocol, so the
project's agent runs through `bandits.simulate` and the NumPy reference loops
over the same arrays: the observation at round t and the noise added to the
chosen arm's mean are the same whichever arm either of them picks. (In these envs
neither the next context nor the noise depends on the action, so the replay is
the env's own stream.) The reference computes its own rewards and regret from
the env's parameters in NumPy.

Both sides run in float64 (`jax.enable_x64`), so scores differ only by rounding
(~1e-13) and the argmax, including the exact ties of never-played arms (lowest
index first), agrees at every round.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import agents
import bandits
import envs
from bandits import Feedback, Observation


class ReplayParams(NamedTuple):
    contexts: jax.Array  # (T + 1, d)
    arms: jax.Array  # (T + 1, K, p)
    expected: jax.Array  # (T + 1, K)  expected reward of every arm
    noise: jax.Array  # (T + 1,)  reward noise added to the chosen arm's mean


@dataclasses.dataclass(frozen=True)
class ReplayEnv:
    """Serves a recorded stream; the reward is expected[t, a] + noise[t]."""

    arms_count: int

    @property
    def num_arms(self) -> int:
        return self.arms_count

    def default_params(self):
        raise NotImplementedError("pass the recorded ReplayParams")

    def sample_params(self, key):
        raise NotImplementedError("pass the recorded ReplayParams")

    def _observe(self, t, params):
        return Observation(
            context=params.contexts[t],
            arms=params.arms[t],
            mask=jnp.ones((self.arms_count,), bool),
        )

    def reset(self, key, params):
        del key
        t = jnp.zeros((), jnp.int32)
        return self._observe(t, params), t

    def step(self, key, state, action, params):
        del key
        expected = params.expected[state]
        reward = expected[action] + params.noise[state]
        return (
            self._observe(state + 1, params),
            state + 1,
            Feedback(reward, expected),
        )

    def observation_spec(self):
        return {}


def _record_stream(env, env_params, horizon: int, seed: int) -> ReplayParams:
    """Steps `env` (always pulling arm 0) and records what every round showed."""

    def step(carry, key):
        obs, state = carry
        next_obs, state, feedback = env.step(key, state, jnp.int32(0), env_params)
        noise = feedback.reward - feedback.expected_rewards[0]
        return (next_obs, state), (obs, feedback.expected_rewards, noise)

    key_reset, key_steps = jax.random.split(jax.random.key(seed))
    obs, state = env.reset(key_reset, env_params)
    keys = jax.random.split(key_steps, horizon + 1)
    _, (observations, expected, noise) = jax.lax.scan(step, (obs, state), keys)
    return ReplayParams(observations.context, observations.arms, expected, noise)


def _run_project_linucb(stream: ReplayParams, agent, horizon: int):
    env = ReplayEnv(int(stream.expected.shape[1]))
    simulate = jax.jit(bandits.simulate, static_argnums=(1, 3, 4))
    return simulate(jax.random.key(0), env, stream, agent, horizon)


def _reference_disjoint(theta, contexts, noise, alpha, lam, horizon):
    """Li et al. (2010), Algorithm 1, with explicit A_k, b_k and linalg.solve."""
    num_arms, dim = theta.shape
    A = np.stack([lam * np.eye(dim)] * num_arms)
    b = np.zeros((num_arms, dim))
    actions, regrets = [], []
    for t in range(horizon):
        x = contexts[t]
        theta_hat = np.linalg.solve(A, b[..., None])[..., 0]
        A_inv_x = np.linalg.solve(A, np.broadcast_to(x, (num_arms, dim))[..., None])
        width = np.sqrt(np.einsum("j,kj->k", x, A_inv_x[..., 0]))
        a = int(np.argmax(theta_hat @ x + alpha * width))
        mu = theta @ x
        r = mu[a] + noise[t]
        A[a] += np.outer(x, x)
        b[a] += r * x
        actions.append(a)
        regrets.append(mu.max() - mu[a])
    return np.array(actions), np.array(regrets)


def _reference_shared(theta, theta_context, contexts, arms, noise, alpha, lam, T):
    """Shared-parameter LinUCB over per-arm features x_{t,k} = arms[t, k]."""
    dim = theta.shape[0]
    A = lam * np.eye(dim)
    b = np.zeros(dim)
    actions, regrets = [], []
    for t in range(T):
        X = arms[t]
        theta_hat = np.linalg.solve(A, b)
        width = np.sqrt(np.einsum("kj,jk->k", X, np.linalg.solve(A, X.T)))
        a = int(np.argmax(X @ theta_hat + alpha * width))
        mu = X @ theta + contexts[t] @ theta_context
        r = mu[a] + noise[t]
        A += np.outer(X[a], X[a])
        b += r * X[a]
        actions.append(a)
        regrets.append(mu.max() - mu[a])
    return np.array(actions), np.array(regrets)


def _check_parity(traj, ref_actions, ref_regrets):
    actions = np.asarray(traj.action)
    mismatch = np.flatnonzero(actions != ref_actions)
    assert mismatch.size == 0, f"first differing round {mismatch[:1]}"
    project = float(np.sum(np.asarray(traj.regret)))
    reference = float(ref_regrets.sum())
    assert reference > 0
    np.testing.assert_allclose(project, reference, rtol=1e-3)
    np.testing.assert_allclose(np.asarray(traj.regret), ref_regrets, atol=1e-9)


def test_disjoint_linucb_matches_numpy_reference():
    horizon, alpha, lam = 2000, 1.0, 1.0
    with jax.enable_x64(True):
        env, env_params = envs.make("Linear-v0", num_arms=10, dim=20)
        stream = _record_stream(env, env_params, horizon, seed=1)
        assert stream.contexts.dtype == jnp.float64
        agent = agents.linucb(
            num_arms=10, dim=20, alpha=alpha, regularization=lam, dtype="float64"
        )
        traj = _run_project_linucb(stream, agent, horizon)
        ref_actions, ref_regrets = _reference_disjoint(
            np.asarray(env_params.theta),
            np.asarray(stream.contexts),
            np.asarray(stream.noise),
            alpha,
            lam,
            horizon,
        )
    # The reference explores: it does not sit on one arm.
    assert len(np.unique(ref_actions)) == 10
    _check_parity(traj, ref_actions, ref_regrets)


def test_shared_linucb_matches_numpy_reference():
    horizon, alpha, lam = 400, 0.5, 2.0
    with jax.enable_x64(True):
        env, env_params = envs.make(
            "LinearArmFeatures-v0", num_arms=20, arm_dim=5, context_dim=3
        )
        stream = _record_stream(env, env_params, horizon, seed=2)
        agent = agents.linucb(
            num_arms=20,
            dim=5,
            alpha=alpha,
            regularization=lam,
            features="arms",
            dtype="float64",
        )
        traj = _run_project_linucb(stream, agent, horizon)
        ref_actions, ref_regrets = _reference_shared(
            np.asarray(env_params.theta),
            np.asarray(env_params.theta_context),
            np.asarray(stream.contexts),
            np.asarray(stream.arms),
            np.asarray(stream.noise),
            alpha,
            lam,
            horizon,
        )
    _check_parity(traj, ref_actions, ref_regrets)
