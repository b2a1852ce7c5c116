"""Feature maps for shared-parameter agents, and LinUCB over item (x context) features.

When the candidates change every round (recommendation), an agent cannot keep one
parameter block per arm; it keeps one shared parameter over per-candidate feature
vectors phi(x, a_k) (the "action-dependent features" form). This module builds such
vectors from an observation and wraps any `features="arms"` agent so that it sees
them in place of `obs.arms`:

  * item features only (context-blind):  phi_k = a_k[:m]
  * context x item (context-aware):      phi_k = [a_k[:m], vec(x a_k[:c]^T)]

where x = obs.context (d,), a_k = obs.arms[k], m = `item_dim` leading item columns
and c = `cross_dim` leading columns crossed with the context. With c one-hot
category columns, vec(x a_k[:c]^T) holds x in the block of item k's category, so a
linear model learns one context effect per category (f = m + c d features).

References:
  Li, Chu, Langford & Schapire (2010), "A contextual-bandit approach to
  personalized news article recommendation", WWW (hybrid LinUCB, section 3.2:
  shared features built from user and article features).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from agents.linear import linucb
from agents.registry import register
from agents.ridge import REFACTOR_EVERY
from bandits.types import Agent, Observation
from bandits.validation import BanditConfigError, positive_int, real

FeatureMap = Callable[[Observation], jax.Array]


def item_columns(obs: Observation, item_dim: int) -> jax.Array:
    """phi_k = a_k[:m], the first `item_dim` columns of `obs.arms`, (K, m)."""
    _check_columns(obs, item_dim)
    return obs.arms[:, :item_dim]


def context_cross_items(
    obs: Observation,
    context_dim: int,
    item_dim: int,
    cross_dim: int,
    cross_scale: float = 1.0,
) -> jax.Array:
    """phi_k = [a_k[:m], gamma vec(x a_k[:c]^T)], (K, m + c d).

    Args:
      obs: one observation (context (d,), arms (K, p)).
      context_dim: expected d, checked against `obs.context` at trace time.
      item_dim: m, leading columns of `obs.arms` used as item features.
      cross_dim: c <= m, leading item columns crossed with the context.
      cross_scale: gamma > 0; scaling the crossed block by gamma is ridge with
        penalty lambda / gamma^2 on its weights.
    """
    _check_columns(obs, item_dim)
    if obs.context.shape[-1] != context_dim:
        raise BanditConfigError.about(
            "dim",
            f"must equal the env's context dimension {obs.context.shape[-1]}, "
            f"got {context_dim}",
        )
    items = obs.arms[:, :item_dim]
    crossed = items[:, :cross_dim, None] * obs.context[None, None, :]
    crossed = cross_scale * crossed.reshape(items.shape[0], -1)
    return jnp.concatenate([items, crossed], axis=1)


def cross_items_for(env: Any, cross_scale: float = 0.05) -> FeatureMap:
    """`context_cross_items` for a recommendation env (`ContextualRec-*`): its
    item columns, and the context crossed with the item's category one-hot
    (`env.context_dim`, `item_dim`, `num_categories`), the crossed block scaled
    by `cross_scale`. Width `env.item_dim + env.num_categories * env.context_dim`."""
    return functools.partial(
        context_cross_items,
        context_dim=env.context_dim,
        item_dim=env.item_dim,
        cross_dim=env.num_categories,
        cross_scale=cross_scale,
    )


def _check_columns(obs: Observation, item_dim: int) -> None:
    columns = obs.arms.shape[-1]
    if item_dim > columns:
        raise BanditConfigError.about(
            "item_dim",
            f"must be <= the env's arm-feature columns ({columns}), got {item_dim}",
        )


def with_arm_features(
    agent: Agent, feature_map: FeatureMap, name: str, context_dim: int | None = None
) -> Agent:
    """`agent` acting and learning on `obs.arms = feature_map(obs)`.

    `agent` must be a shared-parameter agent over `obs.arms` (e.g. `linucb(...,
    features="arms")`) whose dimension equals the feature map's output width.
    The result declares `agent`'s number of arms and `context_dim` (the width of
    `obs.context` the feature map reads, if any); it declares no `arm_dim`, since
    the map reads some leading columns of `obs.arms` only.
    """

    def mapped(obs: Observation) -> Observation:
        return obs._replace(arms=feature_map(obs))

    def act(key, state, obs):
        return agent.act(key, state, mapped(obs))

    def update(key, state, obs, action, reward):
        return agent.update(key, state, mapped(obs), action, reward)

    action_probs = None
    if agent.action_probs is not None:

        def action_probs(key, state, obs):
            return agent.action_probs(key, state, mapped(obs))

    predict = None
    if agent.predict is not None:

        def predict(state, obs):
            return agent.predict(state, mapped(obs))

    return Agent(
        agent.init,
        act,
        update,
        action_probs,
        name=name,
        predict=predict,
        num_arms=agent.num_arms,
        context_dim=context_dim,
    )


@register("linucb_items")
def linucb_items(
    num_arms: int,
    dim: int | None = None,
    item_dim: int = 1,
    alpha: float = 1.0,
    regularization: float = 1.0,
    dtype: str = "float32",
    refactor_every: int = REFACTOR_EVERY,
) -> Agent:
    """Context-blind LinUCB on item features: phi_k = a_k[:item_dim].

    Shared-parameter LinUCB, argmax_k phi_k^T theta_hat + alpha sqrt(phi_k^T A^{-1}
    phi_k), that ignores `obs.context`.

    Args:
      num_arms: number of candidates K.
      dim: context dimension; accepted for a uniform factory signature, unused.
      item_dim: leading columns of `obs.arms` used as features (for
        `ContextualRec-*` envs: `env.item_dim`, which drops the item-id column).
      alpha: exploration scale >= 0.
      regularization: ridge lambda > 0.
      dtype: "float32" or "float64".
      refactor_every: as for `linucb`.

    References:
      Li et al. (2010), WWW.

    Examples:
      >>> agent = linucb_items(num_arms=20, item_dim=13, alpha=0.5)
    """
    if dim is not None:
        positive_int("dim", dim)
    item_dim = positive_int("item_dim", item_dim)
    base = linucb(
        num_arms,
        item_dim,
        alpha=alpha,
        regularization=regularization,
        features="arms",
        dtype=dtype,
        refactor_every=refactor_every,
    )
    feature_map = functools.partial(item_columns, item_dim=item_dim)
    return with_arm_features(base, feature_map, name="linucb_items")


@register("linucb_context_items")
def linucb_context_items(
    num_arms: int,
    dim: int,
    item_dim: int = 1,
    cross_dim: int | None = None,
    cross_scale: float = 1.0,
    alpha: float = 1.0,
    regularization: float = 1.0,
    dtype: str = "float32",
    refactor_every: int = REFACTOR_EVERY,
) -> Agent:
    """Context-aware LinUCB on [item features, context x item features].

    phi_k = [a_k[:m], vec(x a_k[:c]^T)] with m = `item_dim`, c = `cross_dim`,
    f = m + c d shared parameters; LinUCB scores phi_k^T theta_hat + alpha
    sqrt(phi_k^T A^{-1} phi_k). Cost per round O(K f^2).

    Args:
      num_arms: number of candidates K.
      dim: context dimension d (the length of `obs.context`).
      item_dim: m, leading columns of `obs.arms` used as item features.
      cross_dim: c <= m, leading item columns crossed with the context (for
        `ContextualRec-*` envs, `env.num_categories`: the one-hot category);
        default m.
      cross_scale: gamma > 0, scale of the crossed block: a ridge penalty
        lambda / gamma^2 on the context-effect weights (gamma < 1 shrinks them
        toward 0, a prior that context effects are small).
      alpha: exploration scale >= 0.
      regularization: ridge lambda > 0.
      dtype: "float32" or "float64".
      refactor_every: as for `linucb`.

    References:
      Li et al. (2010), WWW (hybrid LinUCB, section 3.2).

    Examples:
      >>> agent = linucb_context_items(num_arms=20, dim=19, item_dim=13, cross_dim=8)
    """
    dim = positive_int("dim", dim)
    item_dim = positive_int("item_dim", item_dim)
    cross_dim = item_dim if cross_dim is None else positive_int("cross_dim", cross_dim)
    if cross_dim > item_dim:
        raise BanditConfigError.about(
            "cross_dim", f"must be <= item_dim ({item_dim}), got {cross_dim}"
        )
    base = linucb(
        num_arms,
        item_dim + cross_dim * dim,
        alpha=alpha,
        regularization=regularization,
        features="arms",
        dtype=dtype,
        refactor_every=refactor_every,
    )
    real("cross_scale", cross_scale, low=0.0, low_open=True)
    feature_map = functools.partial(
        context_cross_items,
        context_dim=dim,
        item_dim=item_dim,
        cross_dim=cross_dim,
        cross_scale=cross_scale,
    )
    return with_arm_features(
        base, feature_map, name="linucb_context_items", context_dim=dim
    )
