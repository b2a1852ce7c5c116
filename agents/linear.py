"""Linear bandits: LinUCB, linear Thompson sampling, greedy and epsilon-greedy.

Every agent here keeps ridge-regression statistics per parameter block m:

    A_m = lambda I + sum_t x_t x_t^T,  b_m = sum_t r_t x_t,  theta_hat_m = A_m^{-1} b_m

updated in O(f^2) per round with Sherman-Morrison (never an inverse per step).

Two feature forms (`features=`):
  * "context" (disjoint): one block per arm, x = obs.context (d features);
  * "arms" (shared): one block for all arms, x_k = obs.arms[k] (p features), the
    "action-dependent features" form of Vowpal Wabbit and TF-Agents per-arm agents.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from agents.registry import register
from bandits.linalg import sherman_morrison
from bandits.types import Agent, Observation
from bandits.validation import BanditConfigError, choice, positive_int, real

FEATURE_FORMS = ("context", "arms")


class RidgeState(NamedTuple):
    """Sufficient statistics of per-block ridge regression."""

    precision_inv: jax.Array  # (M, f, f)  A_m^{-1}; M = K (disjoint) or 1 (shared)
    b: jax.Array  # (M, f)  sum of reward * features
    theta_hat: jax.Array  # (M, f)  A_m^{-1} b_m


def _ridge_init(num_blocks: int, dim: int, regularization, dtype) -> RidgeState:
    eye = jnp.eye(dim, dtype=dtype) / jnp.asarray(regularization, dtype)
    return RidgeState(
        precision_inv=jnp.broadcast_to(eye, (num_blocks, dim, dim)),
        b=jnp.zeros((num_blocks, dim), dtype),
        theta_hat=jnp.zeros((num_blocks, dim), dtype),
    )


def _mean_and_variance(
    state: RidgeState, obs: Observation, features: str
) -> tuple[jax.Array, jax.Array]:
    """Per-arm ridge estimate x_k^T theta_hat and x_k^T A^{-1} x_k, both (K,)."""
    dtype = state.b.dtype
    if features == "context":
        x = obs.context.astype(dtype)
        mean = state.theta_hat @ x
        # (A_k^{-1} x) . x: a batched mat-vec that reads A^{-1} once, in its layout.
        variance = jnp.sum((state.precision_inv @ x) * x, axis=-1)
    else:
        X = obs.arms.astype(dtype)
        mean = X @ state.theta_hat[0]
        variance = jnp.sum((X @ state.precision_inv[0]) * X, axis=-1)
    return mean, jnp.maximum(variance, 0.0)


def _ridge_update(
    state: RidgeState, obs: Observation, action: jax.Array, reward, features: str
) -> RidgeState:
    """Rank-one update of the block that explains `action`."""
    dtype = state.b.dtype
    if features == "context":
        block, x = action, obs.context.astype(dtype)
    else:
        block, x = 0, obs.arms[action].astype(dtype)
    reward = jnp.asarray(reward, dtype)
    A_inv = sherman_morrison(state.precision_inv[block], x)
    b = state.b[block] + reward * x
    return RidgeState(
        precision_inv=state.precision_inv.at[block].set(A_inv),
        b=state.b.at[block].set(b),
        theta_hat=state.theta_hat.at[block].set(A_inv @ b),
    )


def masked_argmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """Index of the highest score among allowed arms (lowest index on ties)."""
    return jnp.argmax(jnp.where(mask, scores, -jnp.inf)).astype(jnp.int32)


def _check_common(num_arms, dim, regularization, features) -> tuple[int, int]:
    num_arms = positive_int("num_arms", num_arms)
    dim = positive_int("dim", dim)
    choice("features", features, FEATURE_FORMS)
    if not isinstance(regularization, jax.core.Tracer) and float(regularization) == 0:
        raise BanditConfigError(
            "regularization must be > 0 (it makes A = lambda I + X^T X invertible), "
            "got 0"
        )
    real("regularization", regularization, low=0.0, low_open=True)
    return num_arms, dim


def _blocks(num_arms: int, features: str) -> int:
    return num_arms if features == "context" else 1


def _ridge_predict(features: str):
    """`predict(state, obs)`: the ridge estimate x_k^T theta_hat of every arm, (K,)."""

    def predict(state: RidgeState, obs: Observation) -> jax.Array:
        return _mean_and_variance(state, obs, features)[0]

    return predict


@register("linucb")
def linucb(
    num_arms: int,
    dim: int,
    alpha: float = 1.0,
    regularization: float = 1.0,
    features: str = "context",
    dtype: str = "float32",
) -> Agent:
    """LinUCB: play argmax_k x_k^T theta_hat + alpha sqrt(x_k^T A^{-1} x_k).

    Args:
      num_arms: number of arms K.
      dim: feature dimension (d for "context", p for "arms").
      alpha: exploration scale, >= 0 (0 is the greedy ridge policy).
      regularization: ridge lambda > 0.
      features: "context" (disjoint, one theta per arm) or "arms" (shared theta
        over per-arm features).
      dtype: "float32" or "float64" (float64 needs `jax_enable_x64`).

    References:
      Li, Chu, Langford & Schapire (2010), "A contextual-bandit approach to
      personalized news article recommendation", WWW. (Algorithm 1, disjoint.)

    Examples:
      >>> agent = linucb(num_arms=10, dim=20, alpha=1.0)
    """
    num_arms, dim = _check_common(num_arms, dim, regularization, features)
    real("alpha", alpha, low=0.0)
    dtype = _dtype(dtype)
    blocks = _blocks(num_arms, features)

    def init(key):
        del key
        return _ridge_init(blocks, dim, regularization, dtype)

    def act(key, state, obs):
        del key
        mean, variance = _mean_and_variance(state, obs, features)
        return masked_argmax(mean + alpha * jnp.sqrt(variance), obs.mask)

    def action_probs(key, state, obs):
        # LinUCB is deterministic given its state: all mass on the UCB arm.
        return jax.nn.one_hot(act(key, state, obs), num_arms)

    def update(key, state, obs, action, reward):
        del key
        return _ridge_update(state, obs, action, reward, features)

    return Agent(
        init,
        act,
        update,
        action_probs,
        name="linucb",
        predict=_ridge_predict(features),
    )


@register("lin_greedy")
def lin_greedy(
    num_arms: int,
    dim: int,
    regularization: float = 1.0,
    features: str = "context",
    dtype: str = "float32",
) -> Agent:
    """Greedy ridge regression: argmax_k x_k^T theta_hat, no exploration bonus.

    The baseline that exploration must beat; it can lock onto a wrong arm.
    """
    num_arms, dim = _check_common(num_arms, dim, regularization, features)
    dtype = _dtype(dtype)
    blocks = _blocks(num_arms, features)

    def init(key):
        del key
        return _ridge_init(blocks, dim, regularization, dtype)

    def act(key, state, obs):
        del key
        mean, _ = _mean_and_variance(state, obs, features)
        return masked_argmax(mean, obs.mask)

    def action_probs(key, state, obs):
        return jax.nn.one_hot(act(key, state, obs), num_arms)

    def update(key, state, obs, action, reward):
        del key
        return _ridge_update(state, obs, action, reward, features)

    return Agent(
        init,
        act,
        update,
        action_probs,
        name="lin_greedy",
        predict=_ridge_predict(features),
    )


@register("lints")
def lints(
    num_arms: int,
    dim: int,
    v: float = 0.5,
    regularization: float = 1.0,
    features: str = "context",
    dtype: str = "float32",
    propensity_samples: int = 1000,
) -> Agent:
    """Linear Thompson sampling: theta_tilde ~ N(theta_hat, v^2 A^{-1}), play the best.

    For "context" (disjoint) features each arm's parameters are independent, so the
    sampled score x^T theta_tilde_k ~ N(x^T theta_hat_k, v^2 x^T A_k^{-1} x) is drawn
    directly in O(K d^2). For "arms" the shared theta_tilde is drawn through a
    Cholesky factor of A^{-1}.

    Args:
      num_arms: number of arms K.
      dim: feature dimension.
      v: posterior scale, >= 0 (Agrawal & Goyal use R sqrt(24/eps d ln(1/delta));
        smaller values work better in practice).
      regularization: ridge lambda > 0.
      features: "context" or "arms".
      dtype: "float32" or "float64".
      propensity_samples: posterior draws behind the Monte Carlo `action_probs`
        (the probability that each arm's sample is the largest has no closed
        form); each entry has standard error at most 0.5 / sqrt(samples).

    References:
      Agrawal & Goyal (2013), "Thompson sampling for contextual bandits with
      linear payoffs", ICML.
    """
    num_arms, dim = _check_common(num_arms, dim, regularization, features)
    real("v", v, low=0.0)
    propensity_samples = positive_int("propensity_samples", propensity_samples)
    dtype = _dtype(dtype)
    blocks = _blocks(num_arms, features)

    def init(key):
        del key
        return _ridge_init(blocks, dim, regularization, dtype)

    def sample_scores(key, state, obs):
        if features == "context":
            mean, variance = _mean_and_variance(state, obs, features)
            z = jax.random.normal(key, (num_arms,), dtype)
            return mean + v * jnp.sqrt(variance) * z
        cov = state.precision_inv[0]
        cov = 0.5 * (cov + cov.T) + 1e-9 * jnp.eye(dim, dtype=dtype)
        L = jnp.linalg.cholesky(cov)
        z = jax.random.normal(key, (dim,), dtype)
        theta = state.theta_hat[0] + v * (L @ z)
        return obs.arms.astype(dtype) @ theta

    def act(key, state, obs):
        return masked_argmax(sample_scores(key, state, obs), obs.mask)

    def action_probs(key, state, obs):
        keys = jax.random.split(key, propensity_samples)
        actions = jax.vmap(act, in_axes=(0, None, None))(keys, state, obs)
        counts = jnp.zeros((num_arms,), jnp.float32).at[actions].add(1.0)
        return counts / propensity_samples

    def update(key, state, obs, action, reward):
        del key
        return _ridge_update(state, obs, action, reward, features)

    return Agent(
        init,
        act,
        update,
        action_probs,
        name="lints",
        predict=_ridge_predict(features),
    )


@register("epsilon_greedy")
def epsilon_greedy(
    num_arms: int,
    dim: int,
    epsilon: float = 0.1,
    regularization: float = 1.0,
    features: str = "context",
    dtype: str = "float32",
) -> Agent:
    """Epsilon-greedy on a ridge reward model, with exact action probabilities.

    With probability epsilon play uniformly among allowed arms, otherwise the greedy
    arm, so pi(k | x) = epsilon / |allowed| + (1 - epsilon) 1[k = greedy].

    References:
      Sutton & Barto (2018), "Reinforcement Learning: An Introduction", 2.2.
    """
    num_arms, dim = _check_common(num_arms, dim, regularization, features)
    real("epsilon", epsilon, low=0.0, high=1.0)
    dtype = _dtype(dtype)
    blocks = _blocks(num_arms, features)

    def init(key):
        del key
        return _ridge_init(blocks, dim, regularization, dtype)

    def action_probs(key, state, obs):
        del key
        mean, _ = _mean_and_variance(state, obs, features)
        greedy = jax.nn.one_hot(masked_argmax(mean, obs.mask), num_arms)
        allowed = obs.mask.astype(greedy.dtype)
        uniform = allowed / jnp.sum(allowed)
        return epsilon * uniform + (1.0 - epsilon) * greedy

    def act(key, state, obs):
        key_probs, key_choice = jax.random.split(key)
        probs = action_probs(key_probs, state, obs)
        return jax.random.choice(key_choice, num_arms, p=probs).astype(jnp.int32)

    def update(key, state, obs, action, reward):
        del key
        return _ridge_update(state, obs, action, reward, features)

    return Agent(
        init,
        act,
        update,
        action_probs,
        name="epsilon_greedy",
        predict=_ridge_predict(features),
    )


def _dtype(name: str):
    choice("dtype", name, ("float32", "float64"))
    if name == "float64" and not jax.config.jax_enable_x64:
        raise BanditConfigError(
            "dtype='float64' needs 64-bit JAX: set JAX_ENABLE_X64=1 or use "
            "`with jax.enable_x64(True):`"
        )
    return jnp.float64 if name == "float64" else jnp.float32
