"""Slate agents: choose an ordered list of L distinct items out of K (`envs.slate`).

A slate agent's `act` returns an (L,) int32 array, position 1 first; its
`update` receives the (L,) click of every position as its reward.

    random_slate          a uniformly random ordered slate of allowed items
    top_l_linucb          the L allowed items of largest LinUCB index, largest first
    epsilon_greedy_slate  a random slate w.p. epsilon, else the L best ridge means
    cascade_linucb        CascadeLinUCB (Zong et al. 2016)
    cascade_lints         CascadeLinTS (Zong et al. 2016)

The ridge agents score items with the ridge core of `agents.ridge` (disjoint
"context" features, one block per item, or shared "arms" features). The first
three ignore the position an item was shown at (the naive baselines that
position-aware agents must beat): after a slate they add every shown item with
its click as one observation (x_{s_l}, c_l), examined or not, so under a
cascade an unclicked item below the first click, never seen, still counts as a
miss. The cascade agents add only the positions down to the first click.

Propensities: `action_probs(key, state, obs)` is the (L, K) probability of item
k at position l; `slate_probability(key, state, obs, slate)` the exact
probability of a whole slate, for slate off-policy evaluation. A uniformly
random ordered slate of L out of n allowed items has probability
1 / (n (n - 1) ... (n - L + 1)).

References:
  Li, Chu, Langford & Schapire (2010), "A contextual-bandit approach to
  personalized news article recommendation", WWW (LinUCB).
  Zong, Ni, Sung, Ke, Wen & Kveton (2016), "Cascading bandits for large-scale
  recommendation problems", UAI (the top-L LinUCB baseline they compare with).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from agents.linear import _check_common, _dtype
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
from bandits.validation import BanditConfigError, positive_int, real


class RandomSlateState(NamedTuple):
    """Shows per item (what a random policy can keep)."""

    shows: jax.Array  # (K,) int32  times each item was shown


# ---------------------------------------------------------------------------
# Helpers: slates from scores, uniform slates and their probabilities


def top_slate(scores: jax.Array, mask: jax.Array, slate_size: int) -> jax.Array:
    """The `slate_size` allowed items of highest score, highest first, (L,) int32.

    Ties go to the lower index; with fewer than L allowed items the slate is
    filled with masked ones.
    """
    _, slate = jax.lax.top_k(jnp.where(mask, scores, -jnp.inf), slate_size)
    return slate.astype(jnp.int32)


def uniform_slate(key: jax.Array, mask: jax.Array, slate_size: int) -> jax.Array:
    """A uniformly random ordered slate of distinct allowed items, (L,) int32.

    The top L of independent Gumbel noise: every ordering of every L-subset of
    the allowed items is equally likely.
    """
    noise = jax.random.gumbel(key, mask.shape)
    return top_slate(noise, mask, slate_size)


def uniform_slate_probability(
    mask: jax.Array, slate_size: int, slate: jax.Array
) -> jax.Array:
    """P(`uniform_slate` plays `slate`) = 1 / (n (n-1) ... (n-L+1)) for a slate
    of L distinct allowed items (n allowed), else 0."""
    n = jnp.sum(mask).astype(jnp.float32)
    ways = jnp.prod(n - jnp.arange(slate_size, dtype=jnp.float32))
    valid = jnp.all(mask[slate]) & _distinct(slate) & (n >= slate_size)
    return jnp.where(valid, 1.0 / jnp.where(valid, ways, 1.0), 0.0)


def uniform_position_probs(mask: jax.Array, slate_size: int) -> jax.Array:
    """(L, K): under `uniform_slate`, each allowed item is at each position with
    probability 1 / n."""
    row = mask.astype(jnp.float32) / jnp.maximum(jnp.sum(mask), 1)
    return jnp.broadcast_to(row, (slate_size, mask.shape[0]))


def slate_one_hot(slate: jax.Array, num_items: int) -> jax.Array:
    """(L, K) with a 1 at (l, s_l)."""
    return jax.nn.one_hot(slate, num_items, dtype=jnp.float32)


def _distinct(slate: jax.Array) -> jax.Array:
    same = slate[:, None] == slate[None, :]
    return jnp.sum(same) == slate.shape[0]


def _check_slate_size(slate_size, num_arms: int) -> int:
    slate_size = positive_int("slate_size", slate_size)
    if slate_size > num_arms:
        raise BanditConfigError.about(
            "slate_size",
            f"must be <= num_arms = {num_arms} (a slate shows distinct items), "
            f"got {slate_size}",
        )
    return slate_size


# ---------------------------------------------------------------------------
# Agents


@register("random_slate")
def random_slate(num_arms: int, slate_size: int, dim: int | None = None) -> Agent:
    """Uniformly random ordered slates of L distinct allowed items.

    pi(s | x) = 1 / (n (n-1) ... (n-L+1)) for every ordered slate of allowed
    items (n allowed), independent of x and of the past: the regret floor.

    Args:
      num_arms: number of candidates K.
      slate_size: L, 1 <= L <= K.
      dim: accepted for a uniform factory signature, unused.

    Examples:
      >>> agent = random_slate(num_arms=10, slate_size=3)
    """
    num_arms = positive_int("num_arms", num_arms)
    slate_size = _check_slate_size(slate_size, num_arms)
    if dim is not None:
        positive_int("dim", dim)

    def init(key):
        del key
        return RandomSlateState(shows=jnp.zeros((num_arms,), jnp.int32))

    def act(key, state, obs: Observation):
        del state
        return uniform_slate(key, obs.mask, slate_size)

    def update(key, state, obs, action, reward):
        del key, obs, reward
        return RandomSlateState(shows=state.shows.at[action].add(1))

    def action_probs(key, state, obs: Observation):
        del key, state
        return uniform_position_probs(obs.mask, slate_size)

    def slate_probability(key, state, obs: Observation, slate):
        del key, state
        return uniform_slate_probability(obs.mask, slate_size, slate)

    return Agent(
        init,
        act,
        update,
        action_probs,
        name="random_slate",
        num_arms=num_arms,
        slate_size=slate_size,
        slate_probability=slate_probability,
    )


def _ridge_slate_agent(
    name: str,
    num_arms: int,
    dim: int,
    slate_size: int,
    regularization,
    features: str,
    dtype: str,
    refactor_every: int,
    scores,
    epsilon=None,
    cascade: bool = False,
    sampled: bool = False,
) -> Agent:
    """A slate agent on the ridge core: `scores(key, state, obs) -> (K,)` ranks
    the items; with `epsilon` a uniformly random slate is played w.p. epsilon.

    `cascade`: update only with the positions a cascade user examined (down to
    the first click), else with every shown position. `sampled`: the scores use
    the key (Thompson sampling), so no closed-form propensities."""
    num_arms, dim, refactor_every = _check_common(
        num_arms, dim, regularization, features, refactor_every
    )
    slate_size = _check_slate_size(slate_size, num_arms)
    jdtype = _dtype(dtype)
    blocks = num_arms if features == "context" else 1

    def init(key):
        del key
        return ridge_init(blocks, dim, regularization, jdtype)

    def greedy(state, obs, key=None):
        return top_slate(scores(key, state, obs), obs.mask, slate_size)

    def act(key, state, obs):
        if epsilon is None:
            return greedy(state, obs, key)
        best = greedy(state, obs)
        key_explore, key_slate = jax.random.split(key)
        explore = jax.random.uniform(key_explore) < epsilon
        return jnp.where(explore, uniform_slate(key_slate, obs.mask, slate_size), best)

    def update(key, state, obs, action, reward):
        del key
        clicks = jnp.broadcast_to(jnp.asarray(reward, jdtype), (slate_size,))
        seen = jnp.ones((slate_size,), jdtype)
        if cascade:
            seen = cascade_observed(clicks).astype(jdtype)

        def add(state, position):
            item, click, weight = position
            block, x = block_and_features(obs, item, features, jdtype)
            # An unobserved position adds x = 0: exactly no change to A, b,
            # the root or theta_hat (the round counter still moves, so the
            # re-factorisation schedule stays independent of the data).
            return ridge_add(
                state, block, weight * x, weight * click, refactor_every
            ), None

        state, _ = jax.lax.scan(add, state, (action, clicks, seen))
        return state

    def action_probs(key, state, obs):
        del key
        chosen = slate_one_hot(greedy(state, obs), num_arms)
        if epsilon is None:
            return chosen
        return (
            epsilon * uniform_position_probs(obs.mask, slate_size)
            + (1.0 - epsilon) * chosen
        )

    def slate_probability(key, state, obs, slate):
        del key
        same = jnp.all(slate == greedy(state, obs)).astype(jnp.float32)
        if epsilon is None:
            return same
        uniform = uniform_slate_probability(obs.mask, slate_size, slate)
        return epsilon * uniform + (1.0 - epsilon) * same

    def predict(state: RidgeState, obs: Observation) -> jax.Array:
        return mean_and_width(state, obs, features)[0]

    return Agent(
        init,
        act,
        update,
        None if sampled else action_probs,
        name=name,
        predict=predict,
        slate_size=slate_size,
        slate_probability=None if sampled else slate_probability,
        **declared_shapes(num_arms, dim, features),
    )


def cascade_observed(clicks: jax.Array) -> jax.Array:
    """(L,) bool: the positions a cascade user examined, down to and including
    the first click (all L without a click)."""
    clicked = clicks > 0
    return (jnp.cumsum(clicked) - clicked) == 0


@register("top_l_linucb")
def top_l_linucb(
    num_arms: int,
    dim: int,
    slate_size: int,
    alpha: float = 1.0,
    regularization: float = 1.0,
    features: str = "context",
    dtype: str = "float32",
    refactor_every: int = REFACTOR_EVERY,
) -> Agent:
    """Top-L LinUCB: the L items of largest x_k^T theta_hat + alpha sigma_k.

    Ignores position: every shown item is a ridge observation of its click,
    whether or not the user examined it (the naive slate baseline). Deterministic,
    so `action_probs` is the one-hot of the slate per position and
    `slate_probability` is 1 for that slate.

    Args:
      num_arms: number of candidates K.
      dim: feature dimension (d for "context", p for "arms").
      slate_size: L, 1 <= L <= K.
      alpha: exploration scale, >= 0.
      regularization: ridge lambda > 0.
      features: "context" (one theta per item) or "arms" (shared theta over
        `obs.arms` rows).
      dtype: "float32" or "float64".
      refactor_every: as for `linucb`.

    References:
      Li, Chu, Langford & Schapire (2010), WWW; Zong et al. (2016), UAI.

    Examples:
      >>> agent = top_l_linucb(num_arms=10, dim=5, slate_size=3)
    """
    real("alpha", alpha, low=0.0)

    def scores(key, state, obs):
        del key
        mean, width = mean_and_width(state, obs, features)
        return mean + alpha * width

    return _ridge_slate_agent(
        "top_l_linucb", num_arms, dim, slate_size, regularization, features, dtype,
        refactor_every, scores,
    )  # fmt: skip


@register("epsilon_greedy_slate")
def epsilon_greedy_slate(
    num_arms: int,
    dim: int,
    slate_size: int,
    epsilon: float = 0.1,
    regularization: float = 1.0,
    features: str = "context",
    dtype: str = "float32",
    refactor_every: int = REFACTOR_EVERY,
) -> Agent:
    """Epsilon-greedy slates: w.p. epsilon a uniformly random slate, else the L
    items of largest ridge mean, largest first.

    Exact propensities: pi(s) = epsilon / (n (n-1) ... (n-L+1)) + (1 - epsilon)
    1[s = greedy slate], and per position pi_l(k) = epsilon / n + (1 - epsilon)
    1[k = greedy_l]. Position is ignored as in `top_l_linucb`; other arguments
    as there.

    Examples:
      >>> agent = epsilon_greedy_slate(num_arms=10, dim=5, slate_size=3)
    """
    real("epsilon", epsilon, low=0.0, high=1.0)

    def scores(key, state, obs):
        del key
        return mean_and_width(state, obs, features)[0]

    return _ridge_slate_agent(
        "epsilon_greedy_slate", num_arms, dim, slate_size, regularization, features,
        dtype, refactor_every, scores, epsilon=epsilon,
    )  # fmt: skip


@register("cascade_linucb")
def cascade_linucb(
    num_arms: int,
    dim: int,
    slate_size: int,
    alpha: float = 1.0,
    sigma: float = 1.0,
    features: str = "context",
    dtype: str = "float32",
    refactor_every: int = REFACTOR_EVERY,
) -> Agent:
    """CascadeLinUCB (Zong et al. 2016, Algorithm 2): the L items of largest
    U(e) = min(x_e^T theta_bar + c sqrt(x_e^T M^{-1} x_e), 1), learning only from
    the positions a cascade user examined.

    The paper keeps M = I + sigma^{-2} sum x x^T and B = sum x 1[click], so
    theta_bar = sigma^{-2} M^{-1} B is ridge regression with lambda = sigma^2
    and sqrt(x^T M^{-1} x) = sigma * sqrt(x^T (sigma^2 I + X^T X)^{-1} x): the
    ridge core with `regularization = sigma^2`, its width scaled by sigma, and
    c = `alpha`. After a round with its first click at position C (C = L
    without a click), the items at positions 1..C are added with their clicks
    (1 at C, 0 above); the positions below were not examined. Items are ranked
    by the unclipped index: a slate sorted by it is sorted by U too, so it is
    one of the paper's tie-breaks among items whose U is clipped at 1.
    Deterministic: one-hot `action_probs`, `slate_probability` 1 for its slate.

    Args:
      num_arms: number of candidates K.
      dim: feature dimension (d for "context": one theta per item over the
        context, the block-diagonal form of the paper's x_e; p for "arms": the
        paper's shared theta over item features `obs.arms`).
      slate_size: L, 1 <= L <= K.
      alpha: c in the paper, >= 0.
      sigma: sigma in the paper, > 0.
      features, dtype, refactor_every: as for `top_l_linucb`.

    References:
      Zong, Ni, Sung, Ke, Wen & Kveton (2016), "Cascading bandits for
      large-scale recommendation problems", UAI.

    Examples:
      >>> agent = cascade_linucb(num_arms=10, dim=5, slate_size=3)
    """
    real("alpha", alpha, low=0.0)
    real("sigma", sigma, low=0.0, low_open=True)

    def scores(key, state, obs):
        del key
        mean, width = mean_and_width(state, obs, features)
        return mean + alpha * sigma * width

    return _ridge_slate_agent(
        "cascade_linucb", num_arms, dim, slate_size, sigma * sigma, features, dtype,
        refactor_every, scores, cascade=True,
    )  # fmt: skip


@register("cascade_lints")
def cascade_lints(
    num_arms: int,
    dim: int,
    slate_size: int,
    sigma: float = 1.0,
    features: str = "context",
    dtype: str = "float32",
    refactor_every: int = REFACTOR_EVERY,
) -> Agent:
    """CascadeLinTS (Zong et al. 2016, Algorithm 1): draw
    theta_t ~ N(theta_bar, M^{-1}) and show the L items of largest x_e^T theta_t,
    learning only from the positions a cascade user examined.

    With M = I + sigma^{-2} sum x x^T, M^{-1} = sigma^2 (sigma^2 I + X^T X)^{-1}:
    the ridge core with `regularization = sigma^2` and its posterior draw scaled
    by sigma. Updates as `cascade_linucb`. The slate probabilities of a posterior
    draw have no closed form: no `action_probs` or `slate_probability`.

    Args:
      num_arms, dim, slate_size, features, dtype, refactor_every: as for
        `cascade_linucb`.
      sigma: sigma in the paper, > 0.

    References:
      Zong, Ni, Sung, Ke, Wen & Kveton (2016), UAI.

    Examples:
      >>> agent = cascade_lints(num_arms=10, dim=5, slate_size=3)
    """
    real("sigma", sigma, low=0.0, low_open=True)
    jdtype = _dtype(dtype)

    def scores(key, state, obs):
        return ridge_belief(state, obs, features).draw(key, sigma, jdtype)

    return _ridge_slate_agent(
        "cascade_lints", num_arms, dim, slate_size, sigma * sigma, features, dtype,
        refactor_every, scores, cascade=True, sampled=True,
    )  # fmt: skip
