"""Context-free agents: uniform random, UCB1 and Beta-Bernoulli Thompson sampling.

These agents ignore `obs.context` and `obs.arms`; they keep per-arm statistics only
and so compete with the best single arm, not the best arm per context. On a
contextual environment their regret against the per-context oracle grows linearly;
they are the baselines that a contextual agent must beat.

Every factory accepts `dim` so that callers (the experiment runner, sweeps) can
build any agent with the same `num_arms=..., dim=...` keywords; here `dim` is
checked when given and otherwise unused.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from agents.exploration import masked_argmax
from agents.linear import _dtype
from agents.registry import register
from bandits.types import Agent, Observation
from bandits.validation import positive_int, real


class RandomState(NamedTuple):
    """Bookkeeping of the uniform policy (it learns nothing)."""

    pulls: jax.Array  # (K,) int32  times each arm was played


class UCB1State(NamedTuple):
    """Per-arm counts and reward sums of UCB1."""

    pulls: jax.Array  # (K,) int32  n_k, times arm k was played
    reward_sums: jax.Array  # (K,)  sum of the rewards observed on arm k


class BetaBernoulliState(NamedTuple):
    """Beta posterior parameters per arm."""

    alpha: jax.Array  # (K,)  prior_alpha + successes of arm k
    beta: jax.Array  # (K,)  prior_beta + failures of arm k


def _check_arms_and_dim(num_arms, dim) -> int:
    """Validates `num_arms` and, when given, the (unused) `dim`."""
    num_arms = positive_int("num_arms", num_arms)
    if dim is not None:
        positive_int("dim", dim)
    return num_arms


def _uniform_over_allowed(mask: jax.Array, dtype) -> jax.Array:
    """pi(k) = 1[k allowed] / |allowed|, (K,)."""
    allowed = mask.astype(dtype)
    return allowed / jnp.sum(allowed)


def _count_pull(pulls: jax.Array, action: jax.Array) -> jax.Array:
    return pulls.at[action].add(jnp.ones((), pulls.dtype))


@register("random")
def random(num_arms: int, dim: int | None = None, dtype: str = "float32") -> Agent:
    """Uniform random policy over the allowed arms.

    pi(k | x) = 1[k in allowed(x)] / |allowed(x)|, independent of x and of the past.
    Its expected per-step regret is the gap between the best arm and the mean arm,
    so cumulative regret grows linearly: the floor every agent must clear.

    Args:
      num_arms: number of arms K.
      dim: context dimension; accepted for a uniform factory signature, unused.
      dtype: "float32" or "float64", the dtype of `action_probs`.

    Returns:
      An `Agent` with exact `action_probs`. Every observation must allow at least
      one arm.

    Examples:
      >>> agent = random(num_arms=10)
    """
    num_arms = _check_arms_and_dim(num_arms, dim)
    dtype = _dtype(dtype)

    def init(key):
        del key
        return RandomState(pulls=jnp.zeros((num_arms,), jnp.int32))

    def action_probs(key, state, obs: Observation):
        del key, state
        return _uniform_over_allowed(obs.mask, dtype)

    def act(key, state, obs: Observation):
        probs = action_probs(None, state, obs)
        return jax.random.choice(key, num_arms, p=probs).astype(jnp.int32)

    def update(key, state, obs, action, reward):
        del key, obs, reward
        return RandomState(pulls=_count_pull(state.pulls, action))

    return Agent(init, act, update, action_probs, name="random", num_arms=num_arms)


@register("ucb1")
def ucb1(
    num_arms: int, dim: int | None = None, c: float = 2.0, dtype: str = "float32"
) -> Agent:
    """UCB1: play every arm once, then argmax_k mu_hat_k + sqrt(c ln n / n_k).

    mu_hat_k is the empirical mean reward of arm k, n_k its number of plays and n
    the total number of plays. Arms never played score +inf, so each allowed arm is
    played once first (lowest index first); masked arms are never played. With
    rewards in [0, 1] and c = 2 this is UCB1 of Auer et al., whose expected regret
    is O(sum_k ln(T) / Delta_k). Rewards on another range [a, b] need c scaled by
    (b - a)^2 for the same guarantee.

    Args:
      num_arms: number of arms K.
      dim: context dimension; accepted for a uniform factory signature, unused.
      c: exploration scale, >= 0 (0 is the greedy empirical-mean policy).
      dtype: "float32" or "float64" for the statistics.

    Returns:
      An `Agent` whose `action_probs` is the one-hot of its (deterministic)
      action and whose `predict` is mu_hat (0 for an arm never played).

    References:
      Auer, Cesa-Bianchi & Fischer (2002), "Finite-time analysis of the multiarmed
      bandit problem", Machine Learning 47. (Figure 1, UCB1.)

    Examples:
      >>> agent = ucb1(num_arms=10, c=2.0)
    """
    num_arms = _check_arms_and_dim(num_arms, dim)
    real("c", c, low=0.0)
    dtype = _dtype(dtype)

    def init(key):
        del key
        return UCB1State(
            pulls=jnp.zeros((num_arms,), jnp.int32),
            reward_sums=jnp.zeros((num_arms,), dtype),
        )

    def act(key, state, obs: Observation):
        del key
        played = state.pulls > 0
        n_k = state.pulls.astype(dtype)
        n = jnp.maximum(jnp.sum(n_k), 1.0)
        safe_n_k = jnp.where(played, n_k, 1.0)
        mu_hat = state.reward_sums / safe_n_k
        index = mu_hat + jnp.sqrt(c * jnp.log(n) / safe_n_k)
        return masked_argmax(jnp.where(played, index, jnp.inf), obs.mask)

    def action_probs(key, state, obs):
        return jax.nn.one_hot(act(key, state, obs), num_arms, dtype=dtype)

    def update(key, state, obs, action, reward):
        del key, obs
        reward = jnp.asarray(reward, dtype)
        return UCB1State(
            pulls=_count_pull(state.pulls, action),
            reward_sums=state.reward_sums.at[action].add(reward),
        )

    def predict(state, obs):
        # mu_hat_k; an arm never played has no estimate and is given 0.
        del obs
        return state.reward_sums / jnp.maximum(state.pulls, 1).astype(dtype)

    return Agent(
        init,
        act,
        update,
        action_probs,
        name="ucb1",
        predict=predict,
        num_arms=num_arms,
    )


@register("thompson_bernoulli")
def thompson_bernoulli(
    num_arms: int,
    dim: int | None = None,
    prior_alpha: float = 1.0,
    prior_beta: float = 1.0,
    propensity_samples: int = 1000,
    dtype: str = "float32",
) -> Agent:
    """Beta-Bernoulli Thompson sampling: mu_k ~ Beta(alpha_k, beta_k), play the best.

    Each arm's success probability has a Beta(prior_alpha, prior_beta) prior. After
    playing arm k with reward r in [0, 1], a Bernoulli trial r_tilde ~ Bernoulli(r)
    is drawn (from the update key) and the posterior becomes

        alpha_k <- alpha_k + r_tilde,   beta_k <- beta_k + 1 - r_tilde.

    For binary rewards r_tilde = r exactly. For fractional rewards this is the
    Bernoulli trick of Agrawal & Goyal (2012), which keeps the conjugate update and
    the regret bound of the binary case since E[r_tilde] = r. Rewards outside [0, 1]
    act as if clipped to [0, 1].

    `action_probs` has no closed form (the probability that arm k's draw is the
    largest); it is estimated from `propensity_samples` posterior draws, so each
    entry has standard error at most 0.5 / sqrt(propensity_samples).

    Args:
      num_arms: number of arms K.
      dim: context dimension; accepted for a uniform factory signature, unused.
      prior_alpha: prior pseudo-successes, > 0.
      prior_beta: prior pseudo-failures, > 0.
      propensity_samples: Monte Carlo draws behind `action_probs`, >= 1.
      dtype: "float32" or "float64" for the posterior parameters.

    Returns:
      An `Agent` with Monte Carlo `action_probs` and the posterior mean
      alpha_k / (alpha_k + beta_k) as `predict`.

    References:
      Thompson (1933), "On the likelihood that one unknown probability exceeds
      another in view of the evidence of two samples", Biometrika 25.
      Agrawal & Goyal (2012), "Analysis of Thompson sampling for the multi-armed
      bandit problem", COLT. (Algorithm 2, general rewards in [0, 1].)

    Examples:
      >>> agent = thompson_bernoulli(num_arms=10, prior_alpha=1.0, prior_beta=1.0)
    """
    num_arms = _check_arms_and_dim(num_arms, dim)
    real("prior_alpha", prior_alpha, low=0.0, low_open=True)
    real("prior_beta", prior_beta, low=0.0, low_open=True)
    propensity_samples = positive_int("propensity_samples", propensity_samples)
    dtype = _dtype(dtype)

    def init(key):
        del key
        ones = jnp.ones((num_arms,), dtype)
        return BetaBernoulliState(alpha=prior_alpha * ones, beta=prior_beta * ones)

    def act(key, state, obs: Observation):
        mu_tilde = jax.random.beta(key, state.alpha, state.beta, dtype=dtype)
        return masked_argmax(mu_tilde, obs.mask)

    def action_probs(key, state, obs: Observation):
        keys = jax.random.split(key, propensity_samples)
        actions = jax.vmap(act, in_axes=(0, None, None))(keys, state, obs)
        counts = jnp.zeros((num_arms,), dtype).at[actions].add(1.0)
        return counts / propensity_samples

    def update(key, state, obs, action, reward):
        del obs
        reward = jnp.clip(jnp.asarray(reward, dtype), 0.0, 1.0)
        success = jax.random.bernoulli(key, reward).astype(dtype)
        return BetaBernoulliState(
            alpha=state.alpha.at[action].add(success),
            beta=state.beta.at[action].add(1.0 - success),
        )

    def predict(state, obs):
        # The posterior mean alpha_k / (alpha_k + beta_k).
        del obs
        return state.alpha / (state.alpha + state.beta)

    return Agent(
        init,
        act,
        update,
        action_probs,
        name="thompson_bernoulli",
        predict=predict,
        num_arms=num_arms,
    )
