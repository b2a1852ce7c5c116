"""One simulated step's record (`Trajectory` row): the reward the agent learns
from, and exact pseudo-regret against the best allowed arm or the optimal slate,
with NDCG for slates. Pure functions of one round, used inside the simulation
loop (`bandits.simulation`) and by the Gymnasium shells."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bandits.types import Feedback, Observation, SlateFeedback, SlateRecord, Trajectory


def agent_reward(feedback: Feedback) -> jax.Array:
    """What the agent's `update` learns from: the sampled reward of the arm, or
    for a slate the (L,) click of every position."""
    slate = getattr(feedback, "slate", None)
    return feedback.reward if slate is None else slate.clicks


def record(
    obs: Observation,
    action: jax.Array,
    reward: jax.Array,
    expected: jax.Array,
    slate: SlateFeedback | None = None,
) -> Trajectory:
    """Exact pseudo-regret of one step against the best allowed arm (or slate)."""
    if slate is not None:
        return slate_record(obs, action, reward, expected, slate)
    best_arm, best, regret = pseudo_regret(expected, obs.mask, action)
    chosen = expected[action]
    return Trajectory(
        action=action,
        reward=jnp.asarray(reward, expected.dtype),
        expected_reward=chosen,
        optimal_expected_reward=best,
        regret=regret,
        optimal=(action == best_arm) | (chosen >= best),
    )


def pseudo_regret(
    expected: jax.Array, mask: jax.Array, action: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(best allowed arm, its expected reward, regret of `action`) for one round.

    Playing the best arm is exactly zero regret, even if XLA recomputes the
    expected rewards in two fusions that round differently.
    """
    allowed = jnp.where(mask, expected, -jnp.inf)
    best_arm = jnp.argmax(allowed).astype(jnp.int32)
    best = allowed[best_arm]
    regret = jnp.where(
        action == best_arm, jnp.zeros_like(best), best - expected[action]
    )
    return best_arm, best, regret


def slate_pseudo_regret(
    slate: SlateFeedback, action: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(optimal slate, its expected reward, regret of the (L,) `action`).

    Regret is exactly zero for the env's optimal slate, and never below zero:
    another ordering of an optimal slate (every ordering of the top L items is
    optimal under the cascade model) may round its expected reward a few ulps
    above the optimal one's.
    """
    best = slate.optimal_expected_reward
    same = jnp.all(action == slate.optimal_slate)
    gap = jnp.maximum(best - slate.expected_reward, jnp.zeros_like(best))
    return slate.optimal_slate, best, jnp.where(same, jnp.zeros_like(best), gap)


def slate_ndcg(relevance: jax.Array, mask: jax.Array, slate: jax.Array) -> jax.Array:
    """NDCG@L of an ordered slate: DCG / IDCG with linear gains.

    DCG = sum_l rel(s_l) / log2(l + 1) over positions l = 1..L, and IDCG the
    DCG of the L most relevant allowed items in descending order (the ideal
    slate). Masked items have relevance 0. With no relevance anywhere (IDCG = 0)
    every slate is ideal: 1.

    Args:
      relevance: (K,) non-negative relevance of every item (a slate env's
        attractions, `Feedback.expected_rewards`).
      mask: (K,) bool, items that may be shown.
      slate: (L,) int32 item indices, position 1 first.

    Returns:
      A scalar in [0, 1] (for distinct allowed items).
    """
    size = slate.shape[-1]
    discount = 1.0 / jnp.log2(jnp.arange(2, size + 2, dtype=relevance.dtype))
    relevance = jnp.where(mask, relevance, 0.0)  # a masked item is never relevant
    dcg = jnp.sum(relevance[slate] * discount)
    ideal, _ = jax.lax.top_k(relevance, size)
    idcg = jnp.sum(ideal * discount)
    return jnp.where(idcg > 0, dcg / jnp.where(idcg > 0, idcg, 1.0), 1.0)


def slate_record(
    obs: Observation,
    action: jax.Array,
    reward: jax.Array,
    attraction: jax.Array,
    slate: SlateFeedback,
) -> Trajectory:
    """The `Trajectory` row of one slate step: exact slate pseudo-regret from the
    env's closed forms, plus the per-position record."""
    optimal_slate, best, regret = slate_pseudo_regret(slate, action)
    chosen = slate.expected_reward
    return Trajectory(
        action=action,
        reward=jnp.asarray(reward, chosen.dtype),
        expected_reward=chosen,
        optimal_expected_reward=best,
        regret=regret,
        optimal=jnp.all(action == optimal_slate) | (chosen >= best),
        slate=SlateRecord(
            clicks=jnp.asarray(slate.clicks, chosen.dtype),
            examined=jnp.asarray(slate.examined, bool),
            expected_clicks=slate.expected_clicks,
            ndcg=slate_ndcg(attraction, obs.mask, action),
        ),
    )
