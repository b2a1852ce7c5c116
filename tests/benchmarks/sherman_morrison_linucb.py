"""The previous LinUCB statistics, a float32 Sherman-Morrison inverse, as a speed
reference only (it drifts over long runs; see docs/numerics.md).

The benchmark runs it beside `agents.linucb` to report what exact statistics
cost: the same act (K mat-vecs) and a rank-one update of A^{-1} with
theta_hat = A^{-1} b, no compensated sums and no re-factorisation.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from bandits.types import Agent


class SMState(NamedTuple):
    precision_inv: jax.Array  # (K, d, d)
    b: jax.Array  # (K, d)
    theta_hat: jax.Array  # (K, d)


def sherman_morrison_linucb(num_arms: int, dim: int, alpha: float = 1.0) -> Agent:
    def init(key):
        del key
        eye = jnp.eye(dim, dtype=jnp.float32)
        return SMState(
            jnp.broadcast_to(eye, (num_arms, dim, dim)),
            jnp.zeros((num_arms, dim), jnp.float32),
            jnp.zeros((num_arms, dim), jnp.float32),
        )

    def act(key, state, obs):
        del key
        x = obs.context.astype(jnp.float32)
        variance = jnp.sum((state.precision_inv @ x) * x, axis=-1)
        scores = state.theta_hat @ x + alpha * jnp.sqrt(jnp.maximum(variance, 0.0))
        return jnp.argmax(jnp.where(obs.mask, scores, -jnp.inf)).astype(jnp.int32)

    def update(key, state, obs, action, reward):
        del key
        x = obs.context.astype(jnp.float32)
        A_inv = state.precision_inv[action]
        u = A_inv @ x
        A_inv = A_inv - jnp.outer(u, u) / (1.0 + x @ u)
        b = state.b[action] + reward * x
        return SMState(
            state.precision_inv.at[action].set(A_inv),
            state.b.at[action].set(b),
            state.theta_hat.at[action].set(A_inv @ b),
        )

    return Agent(init, act, update, name="linucb_sherman_morrison")
