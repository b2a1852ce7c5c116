"""Sequence-dependent and higher-order users for `ContextualRec-*`.

Two utility terms that a linear model of the observed context and item features
cannot summarise (`docs/recommendation_env.md`, "Sequence-dependent users"):

* the sequence term f_seq(u, i): a session intent over categories that follows a
  Markov chain driven by the user's last clicks, plus complementary item pairs
  whose attraction rises after the partner was clicked,

      w_j    = rho^j [row j of the history was clicked]      (j = 0 most recent)
      q_u    = sum_j w_j T[cat(h_j)] / sum_j w_j             (uniform if no click)
      f_seq  = beta_intent (C q_u[cat(i)] - 1)
             + beta_pair sum_j w_j [h_j = partner(i)];

* the interaction term f_int(c, u, i): a category x device x time-of-day table
  plus a fixed random three-way network over the situation, the user's taste and
  the item,

      f_int  = Y[cat(i), device, block(h)]
             + M^{-1/2} sum_m tanh(A_m . x_c) (B_m . R(theta_t) p_u) (D_m . v_i).

Both read only the arriving user's rows (history, taste), the arrival's situation
and the problem instance, so they fit the model's one-user views (the Gymnasium
shell computes rounds ahead that way, `envs.recommendation_gym`). Their tables
are drawn from `fold_in(key, 1)`, apart from every draw of today's model, so an
env with both strengths at 0 gives the same numbers as before they existed.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from envs.base import PyTreeData, pytree_dataclass
from envs.recommendation_context import HOUR_BLOCK_EDGES, Situation

SEQUENCE_DECAY = 0.5
"""rho: weight of a click j rows back in the history."""
INTENT_CONCENTRATION = 2.0
"""kappa: rows of the category transition matrix are softmax(kappa eps)."""
INTENT_WEIGHT = 1.0
"""beta_intent: logit per unit of C q - 1."""
PAIR_WEIGHT = 2.0
"""beta_pair: logit of a complementary item right after its partner's click."""
INTERACTION_UNITS = 8
"""M: hidden units of the three-way interaction network."""
HOUR_BLOCKS = len(HOUR_BLOCK_EDGES) + 1


@pytree_dataclass
class SequenceParams(PyTreeData):
    """Tables of the sequence and interaction terms (part of `RecParams`)."""

    transition: jax.Array  # (C, C)  row-stochastic T over categories
    partner: jax.Array  # (N,) int32  complementary item, -1 if none
    triple: jax.Array  # (C, n_dev, 4)  Y: category x device x hour block
    net_context: jax.Array  # (M, d_s)  A
    net_taste: jax.Array  # (M, L)  B
    net_item: jax.Array  # (M, L)  D


def situation_dim(cfg) -> int:
    """d_s, length of x_c = [sin h, cos h, weekend, onehot(device),
    onehot(location)]."""
    return 3 + len(cfg.devices) + len(cfg.locations)


def sample_sequence_params(key: jax.Array, rank: jax.Array, cfg) -> SequenceParams:
    """Draws T, Y, A, B, D from `key`; pairs items of popularity ranks 2k and
    2k + 1 (so popular items, often shown together, have popular partners)."""
    C, L, M = cfg.num_categories, cfg.latent_dim, INTERACTION_UNITS
    n_dev = len(cfg.devices)
    key_t, key_y, key_a, key_b, key_d = jax.random.split(key, 5)
    transition = jax.nn.softmax(
        INTENT_CONCENTRATION * jax.random.normal(key_t, (C, C)), axis=-1
    )
    N = rank.shape[0]
    by_rank = jnp.argsort(rank)  # by_rank[r] = the item of rank r
    mate = rank ^ 1  # the partner's rank
    partner = jnp.where(mate < N, by_rank[jnp.minimum(mate, N - 1)], -1)
    return SequenceParams(
        transition=transition,
        partner=partner.astype(jnp.int32),
        triple=jax.random.normal(key_y, (C, n_dev, HOUR_BLOCKS)),
        net_context=jax.random.normal(key_a, (M, situation_dim(cfg))),
        net_taste=jax.random.normal(key_b, (M, L)),
        net_item=jax.random.normal(key_d, (M, L)),
    )


def sequence_effect(
    tables: SequenceParams,
    item_category: jax.Array,
    history_items: jax.Array,
    history_clicked: jax.Array,
    items: jax.Array,
) -> jax.Array:
    """f_seq for each item in `items` (K,), before `sequence_strength`.

    Args:
      tables: the instance's `SequenceParams`.
      item_category: (N,) int32 cat(i).
      history_items: (H,) int32 the user's history, most recent first.
      history_clicked: (H,) bool  valid and clicked rows.
      items: (K,) int32 candidates.
    """
    H, C = history_items.shape[0], tables.transition.shape[0]
    w = jnp.where(history_clicked, SEQUENCE_DECAY ** jnp.arange(H), 0.0)
    rows = tables.transition[item_category[history_items]]  # (H, C)
    total = jnp.sum(w)
    q = jnp.where(
        total > 0, w @ rows / jnp.where(total > 0, total, 1.0), jnp.full((C,), 1 / C)
    )
    intent = C * q[item_category[items]] - 1.0
    partner = tables.partner[items]  # (K,)
    pair = jnp.sum(
        jnp.where(partner[:, None] == history_items[None, :], w[None, :], 0.0), axis=1
    )
    return INTENT_WEIGHT * intent + PAIR_WEIGHT * pair


def interaction_effect(
    tables: SequenceParams,
    item_category: jax.Array,
    item_latent: jax.Array,
    situation: Situation,
    taste: jax.Array,
    items: jax.Array,
    cfg,
) -> jax.Array:
    """f_int for each item in `items` (K,), before `interaction_strength`.

    Args:
      tables: the instance's `SequenceParams`.
      item_category: (N,) int32 cat(i).
      item_latent: (N, L) v_i.
      situation: the arrival's situation.
      taste: (L,) the effective taste R(theta_t) p_u.
      items: (K,) int32 candidates.
      cfg: the static environment configuration.
    """
    cat = item_category[items]
    block = jnp.searchsorted(jnp.asarray(HOUR_BLOCK_EDGES), situation.hour, "right")
    table = tables.triple[cat, situation.device, block]
    angle = 2.0 * jnp.pi * situation.hour / 24.0
    x_c = jnp.concatenate(
        [
            jnp.stack([jnp.sin(angle), jnp.cos(angle)]),
            situation.weekend.astype(jnp.float32)[None],
            jax.nn.one_hot(situation.device, len(cfg.devices)),
            jax.nn.one_hot(situation.location, len(cfg.locations)),
        ]
    )
    hidden = jnp.tanh(tables.net_context @ x_c) * (tables.net_taste @ taste)  # (M,)
    item_part = item_latent[items] @ tables.net_item.T  # (K, M)
    return table + item_part @ hidden / math.sqrt(INTERACTION_UNITS)
