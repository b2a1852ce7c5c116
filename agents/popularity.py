"""The popularity baseline: recommend the candidate with the highest click-through rate.

Keeps click and view counts per catalogue item (not per arm slot, since the
candidates change every round) and scores each candidate by its smoothed
empirical click-through rate

    ctr_i = (clicks_i + w * mu_0) / (views_i + w)

with a prior mean mu_0 and prior weight w (pseudo-views). It ignores the context
and the user: the "most popular" recommender of recommendation-system evaluations.
An optimistic prior (mu_0 above typical CTRs) makes it try unseen items.

The item is identified by a column of `obs.arms` holding id / (N - 1) (the last
column of `ContextualRec-*` observations).
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


class PopularityState(NamedTuple):
    """Click and view counts per catalogue item."""

    clicks: jax.Array  # (N,)  sum of rewards when item i was recommended
    views: jax.Array  # (N,)  times item i was recommended


def item_index(obs: Observation, num_items: int, id_column: int) -> jax.Array:
    """Catalogue index of each candidate from its normalised id column, (K,)."""
    normalised = obs.arms[:, id_column]
    index = jnp.round(normalised * (num_items - 1)).astype(jnp.int32)
    return jnp.clip(index, 0, num_items - 1)


@register("popularity")
def popularity(
    num_arms: int,
    dim: int | None = None,
    num_items: int = 1000,
    id_column: int = -1,
    prior_mean: float = 0.5,
    prior_weight: float = 1.0,
    dtype: str = "float32",
) -> Agent:
    """Greedy on the smoothed per-item CTR (clicks + w mu_0) / (views + w).

    Ties (e.g. among unseen items) are broken uniformly at random;
    `action_probs` is that uniform distribution over the tied best candidates
    (exact), and `predict` each candidate's smoothed CTR.

    Args:
      num_arms: number of candidates K.
      dim: context dimension; accepted for a uniform factory signature, unused.
      num_items: catalogue size N (the env's `num_items`).
      id_column: column of `obs.arms` holding item id / (N - 1).
      prior_mean: mu_0 in [0, 1], the CTR assumed for an unseen item.
      prior_weight: w > 0, pseudo-views of the prior.
      dtype: "float32" or "float64".

    References:
      Cremonesi, Koren & Turrin (2010), "Performance of recommender algorithms on
      top-N recommendation tasks", RecSys (the most-popular baseline).

    Examples:
      >>> agent = popularity(num_arms=20, num_items=1000)
    """
    num_arms = positive_int("num_arms", num_arms)
    if dim is not None:
        positive_int("dim", dim)
    num_items = positive_int("num_items", num_items)
    real("prior_mean", prior_mean, low=0.0, high=1.0)
    real("prior_weight", prior_weight, low=0.0, low_open=True)
    dtype = _dtype(dtype)

    def init(key):
        del key
        zeros = jnp.zeros((num_items,), dtype)
        return PopularityState(clicks=zeros, views=zeros)

    def ctr(state, obs):
        items = item_index(obs, num_items, id_column)
        return (state.clicks[items] + prior_weight * prior_mean) / (
            state.views[items] + prior_weight
        )

    def tied(state, obs):
        """The allowed candidates with the highest smoothed CTR, (K,) bool."""
        scores = ctr(state, obs)
        best = jnp.max(jnp.where(obs.mask, scores, -jnp.inf))
        return obs.mask & (scores >= best)

    def act(key, state, obs):
        noise = jax.random.uniform(key, (num_arms,))
        return masked_argmax(noise, tied(state, obs))

    def action_probs(key, state, obs):
        # Uniform over the tied best candidates, as `act` breaks the ties.
        del key
        best = tied(state, obs).astype(dtype)
        return best / jnp.sum(best)

    def update(key, state, obs, action, reward):
        del key
        item = item_index(obs, num_items, id_column)[action]
        return PopularityState(
            clicks=state.clicks.at[item].add(jnp.asarray(reward, dtype)),
            views=state.views.at[item].add(jnp.ones((), dtype)),
        )

    return Agent(
        init,
        act,
        update,
        action_probs,
        name="popularity",
        predict=ctr,  # the smoothed CTR of each candidate
        num_arms=num_arms,
    )
