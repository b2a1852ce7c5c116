"""Linear bandits: one ridge core composed with four exploration rules.

Every agent here is the ridge-regression core of `agents.ridge` plus a rule from
`agents.exploration`; only the rule differs:

    linucb          UCB(alpha)           argmax_k mu_k + alpha sigma_k
    lin_greedy      Greedy()             argmax_k mu_k
    lints           Thompson(v)          argmax_k of one posterior draw
    epsilon_greedy  EpsilonGreedy(eps)   uniform w.p. eps, else greedy

Per parameter block m the core keeps

    A_m = lambda I + sum_t x_t x_t^T,  b_m = sum_t r_t x_t,  theta_hat_m = A_m^{-1} b_m

in O(f^2) per round, exact in float32 over long runs (a square root of A_m^{-1}
updated by Potter's formula and re-factorised from compensated sums every
`refactor_every` rounds; see `agents.ridge` and docs/numerics.md), and hands the
rule its belief about the arms (`agents.ridge.ridge_belief`): the estimate
mu_k = x_k^T theta_hat and the width sigma_k = sqrt(x_k^T A^{-1} x_k).

Two feature forms (`features=`):
  * "context" (disjoint): one block per arm, x = obs.context (d features); the
    belief is independent per-arm Gaussians (`GaussianScores`);
  * "arms" (shared): one block for all arms, x_k = obs.arms[k] (p features), the
    "action-dependent features" form of Vowpal Wabbit and TF-Agents per-arm
    agents; the belief is a Gaussian over the shared theta (`GaussianWeights`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from agents.exploration import (
    UCB,
    EpsilonGreedy,
    Exploration,
    Greedy,
    Thompson,
)
from agents.registry import declared_shapes, register
from agents.ridge import (
    REFACTOR_EVERY,
    RidgeState,
    block_and_features,
    mean_and_width,
    ridge_add,
    ridge_belief,
    ridge_init,
)
from bandits.types import Agent, Observation
from bandits.validation import BanditConfigError, choice, positive_int, real

FEATURE_FORMS = ("context", "arms")
DTYPES = ("float32", "float64")


def _check_common(
    num_arms, dim, regularization, features, refactor_every
) -> tuple[int, int, int]:
    num_arms = positive_int("num_arms", num_arms)
    dim = positive_int("dim", dim)
    choice("features", features, FEATURE_FORMS)
    if not isinstance(regularization, jax.core.Tracer) and float(regularization) == 0:
        raise BanditConfigError.about(
            "regularization",
            "must be > 0 (it makes A = lambda I + X^T X invertible), got 0",
        )
    real("regularization", regularization, low=0.0, low_open=True)
    refactor_every = positive_int("refactor_every", refactor_every)
    return num_arms, dim, refactor_every


def _ridge_agent(
    name: str,
    rule: Exploration,
    num_arms: int,
    dim: int,
    regularization,
    features: str,
    dtype: str,
    refactor_every: int,
) -> Agent:
    """An `Agent` from the shared ridge core and an exploration rule.

    init, update and predict are the core's; `act` and `action_probs` hand the
    rule the core's belief about the observation's arms (`ridge_belief`).
    """
    num_arms, dim, refactor_every = _check_common(
        num_arms, dim, regularization, features, refactor_every
    )
    jdtype = _dtype(dtype)
    blocks = num_arms if features == "context" else 1

    def init(key):
        del key
        return ridge_init(blocks, dim, regularization, jdtype)

    def act(key, state, obs):
        return rule.sample(key, ridge_belief(state, obs, features), obs.mask)

    def action_probs(key, state, obs):
        return rule.probs(key, ridge_belief(state, obs, features), obs.mask)

    def update(key, state, obs, action, reward):
        del key
        block, x = block_and_features(obs, action, features, jdtype)
        return ridge_add(state, block, x, reward, refactor_every)

    def predict(state: RidgeState, obs: Observation) -> jax.Array:
        return mean_and_width(state, obs, features)[0]

    return Agent(
        init,
        act,
        update,
        action_probs,
        name=name,
        predict=predict,
        **declared_shapes(num_arms, dim, features),
    )


@register("linucb")
def linucb(
    num_arms: int,
    dim: int,
    alpha: float = 1.0,
    regularization: float = 1.0,
    features: str = "context",
    dtype: str = "float32",
    refactor_every: int = REFACTOR_EVERY,
) -> Agent:
    """LinUCB: play argmax_k x_k^T theta_hat + alpha sqrt(x_k^T A^{-1} x_k).

    The ridge core with the `UCB(alpha)` rule; `action_probs` is the one-hot of
    the (deterministic) action.

    Args:
      num_arms: number of arms K.
      dim: feature dimension (d for "context", p for "arms").
      alpha: exploration scale, >= 0 (0 is the greedy ridge policy).
      regularization: ridge lambda > 0.
      features: "context" (disjoint, one theta per arm) or "arms" (shared theta
        over per-arm features).
      dtype: "float32" or "float64" (float64 needs `jax_enable_x64`).
      refactor_every: rounds between re-factorisations of the ridge statistics
        from their compensated sums (see `agents.ridge`).

    References:
      Li, Chu, Langford & Schapire (2010), "A contextual-bandit approach to
      personalized news article recommendation", WWW. (Algorithm 1, disjoint.)

    Examples:
      >>> agent = linucb(num_arms=10, dim=20, alpha=1.0)
    """
    real("alpha", alpha, low=0.0)
    return _ridge_agent(
        "linucb", UCB(alpha), num_arms, dim, regularization, features, dtype,
        refactor_every,
    )  # fmt: skip


@register("lin_greedy")
def lin_greedy(
    num_arms: int,
    dim: int,
    regularization: float = 1.0,
    features: str = "context",
    dtype: str = "float32",
    refactor_every: int = REFACTOR_EVERY,
) -> Agent:
    """Greedy ridge regression: argmax_k x_k^T theta_hat, no exploration bonus.

    The baseline that exploration must beat; it can lock onto a wrong arm. The
    ridge core with the `Greedy()` rule. Arguments as for `linucb`.
    """
    return _ridge_agent(
        "lin_greedy", Greedy(), num_arms, dim, regularization, features, dtype,
        refactor_every,
    )  # fmt: skip


@register("lints")
def lints(
    num_arms: int,
    dim: int,
    v: float = 0.5,
    regularization: float = 1.0,
    features: str = "context",
    dtype: str = "float32",
    propensity_samples: int = 1000,
    refactor_every: int = REFACTOR_EVERY,
) -> Agent:
    """Linear Thompson sampling: theta_tilde ~ N(theta_hat, v^2 A^{-1}), play the best.

    The ridge core with the `Thompson(v)` rule. For "context" (disjoint) features
    each arm's parameters are independent, so the sampled score
    x^T theta_tilde_k ~ N(x^T theta_hat_k, v^2 x^T A_k^{-1} x) is drawn directly
    in O(K d^2). For "arms" the shared theta_tilde = theta_hat + v R^T z,
    z ~ N(0, I), is drawn through the root R (R^T R = A^{-1}) the ridge core
    keeps, in O(p^2).

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
      refactor_every: as for `linucb`.

    References:
      Agrawal & Goyal (2013), "Thompson sampling for contextual bandits with
      linear payoffs", ICML.
    """
    real("v", v, low=0.0)
    propensity_samples = positive_int("propensity_samples", propensity_samples)
    rule = Thompson(v, propensity_samples, dtype=dtype)  # draws in the core's dtype
    return _ridge_agent(
        "lints", rule, num_arms, dim, regularization, features, dtype, refactor_every
    )


@register("epsilon_greedy")
def epsilon_greedy(
    num_arms: int,
    dim: int,
    epsilon: float = 0.1,
    regularization: float = 1.0,
    features: str = "context",
    dtype: str = "float32",
    refactor_every: int = REFACTOR_EVERY,
) -> Agent:
    """Epsilon-greedy on a ridge reward model, with exact action probabilities.

    With probability epsilon play uniformly among allowed arms, otherwise the greedy
    arm, so pi(k | x) = epsilon / |allowed| + (1 - epsilon) 1[k = greedy]: the
    ridge core with the `EpsilonGreedy(epsilon)` rule. Other arguments as for
    `linucb`.

    References:
      Sutton & Barto (2018), "Reinforcement Learning: An Introduction", 2.2.
    """
    real("epsilon", epsilon, low=0.0, high=1.0)
    return _ridge_agent(
        "epsilon_greedy", EpsilonGreedy(epsilon), num_arms, dim, regularization,
        features, dtype, refactor_every,
    )  # fmt: skip


def _dtype(name: str):
    choice("dtype", name, DTYPES)
    if name == "float64" and jax.dtypes.canonicalize_dtype(jnp.float64) != jnp.float64:
        raise BanditConfigError(
            "dtype='float64' needs 64-bit JAX: set JAX_ENABLE_X64=1 or use "
            "`with jax.enable_x64(True):`"
        )
    return jnp.float64 if name == "float64" else jnp.float32
