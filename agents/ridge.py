"""Ridge-regression statistics per parameter block, exact in float32 over long runs.

Per block m (one per arm for disjoint features, one shared otherwise):

    A_m = lambda I + sum_t x_t x_t^T,  b_m = sum_t r_t x_t,  theta_hat_m = A_m^{-1} b_m

The state keeps
  * a root R_m of A_m^{-1} (R_m^T R_m = A_m^{-1}), updated per round by Potter's
    rank-one formula, so the width sqrt(x^T A^{-1} x) = |R x| is one mat-vec;
  * theta_hat_m, updated per round by the recursive-least-squares step
    theta <- theta + A'^{-1} x (r - x^T theta), which corrects with the residual;
  * A_m and b_m in two levels: plain sums of the rounds since the last
    re-factorisation, folded into Kahan-compensated totals at each one;
  * a round counter: every `refactor_every` updates every block's R_m and
    theta_hat_m are recomputed from the totals (a Cholesky factor that tolerates
    numerically dependent columns, a triangular inverse and a solve), which
    resets any accumulated rounding.

`ridge_belief` turns the statistics into what an exploration rule of
`agents.exploration` acts on: per-arm `GaussianScores` (one block per arm) or
`GaussianWeights` over the shared block; the agents of `agents.linear` are this
core composed with such a rule.

The counter does not depend on the data, so under `vmap` over seeds it stays one
unbatched scalar and the periodic re-factorisation is a real branch, not a
per-step `select`: it costs M f^3 every `refactor_every` rounds.

Why this scheme (docs/numerics.md has the measurements): a float32 inverse updated
by Sherman-Morrison drifts by orders of magnitude with one-hot or collinear
features (it cancels O(1) entries to get O(1/n) ones); Potter's root drifts far
less, and the periodic re-factorisation from accurately summed A_m bounds what is
left, keeping predictions and widths within ~1e-6 of a float64 direct solve after
10^5-10^6 updates. The per-round work is that of a Sherman-Morrison update plus
two additions.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from agents.exploration import GaussianScores, GaussianWeights
from bandits.linalg import compensated_add, inverse_factor, potter_update
from bandits.types import Observation

# Rounds between re-factorisations. Measured (docs/numerics.md): at 1,024 the
# worst case of the accuracy table stays below 1e-5 relative of a float64 solve
# while the periodic cost falls to a quarter of what 256 cost.
REFACTOR_EVERY = 1024


class RidgeState(NamedTuple):
    """Sufficient statistics of per-block ridge regression (M blocks, f features)."""

    root: jax.Array  # (M, f, f)  R_m with R_m^T R_m = A_m^{-1}
    theta_hat: jax.Array  # (M, f)  A_m^{-1} b_m
    precision: jax.Array  # (M, f, f)  A_m at the last re-factorisation, Kahan sum
    precision_residual: jax.Array  # (M, f, f)  its Kahan compensation
    recent_precision: jax.Array  # (M, f, f)  sum x x^T since then
    b: jax.Array  # (M, f)  b_m at the last re-factorisation, Kahan sum
    b_residual: jax.Array  # (M, f)  its Kahan compensation
    recent_b: jax.Array  # (M, f)  sum r x since then
    updates: jax.Array  # ()  int32 rounds seen (drives the re-factorisation)


def ridge_init(num_blocks: int, dim: int, regularization, dtype) -> RidgeState:
    """The prior state: A_m = lambda I, b_m = 0 for every block."""
    lam = jnp.asarray(regularization, dtype)
    eye = jnp.eye(dim, dtype=dtype)
    square = (num_blocks, dim, dim)
    zeros = jnp.zeros(square, dtype)
    vector = jnp.zeros((num_blocks, dim), dtype)
    return RidgeState(
        root=jnp.broadcast_to(eye / jnp.sqrt(lam), square),
        theta_hat=vector,
        precision=jnp.broadcast_to(eye * lam, square),
        precision_residual=zeros,
        recent_precision=zeros,
        b=vector,
        b_residual=vector,
        recent_b=vector,
        updates=jnp.zeros((), jnp.int32),
    )


def ridge_totals(state: RidgeState) -> tuple[jax.Array, jax.Array]:
    """(A, b), each block's exact statistics to float precision, (M, f, f), (M, f)."""
    A = state.precision - state.precision_residual + state.recent_precision
    b = state.b - state.b_residual + state.recent_b
    return A, b


def ridge_refactor(state: RidgeState) -> RidgeState:
    """Folds the recent sums into the totals, then recomputes every R_m and
    theta_hat_m from them."""
    A, A_res = compensated_add(
        state.precision, state.precision_residual, state.recent_precision
    )
    b, b_res = compensated_add(state.b, state.b_residual, state.recent_b)
    R = jax.vmap(inverse_factor)(A - A_res)
    theta = jnp.einsum("mji,mj->mi", R, jnp.einsum("mij,mj->mi", R, b - b_res))
    return RidgeState(
        root=R,
        theta_hat=theta,
        precision=A,
        precision_residual=A_res,
        recent_precision=jnp.zeros_like(A),
        b=b,
        b_residual=b_res,
        recent_b=jnp.zeros_like(b),
        updates=state.updates,
    )


def ridge_add(
    state: RidgeState, block, x: jax.Array, reward, refactor_every: int
) -> RidgeState:
    """Adds one (x, r) to block `block`: O(f^2), plus the periodic re-factorisation."""
    dtype = state.b.dtype
    x = x.astype(dtype)
    reward = jnp.asarray(reward, dtype)
    R, gain = potter_update(state.root[block], x)
    theta = state.theta_hat[block]
    theta = theta + gain * (reward - x @ theta)
    updates = state.updates + 1
    # `block` is an arm of the round (or 0), so in bounds: promising it lets
    # XLA write the block in place instead of guarding the whole (M, ...) array.
    inside = "promise_in_bounds"
    state = state._replace(
        root=state.root.at[block].set(R, mode=inside),
        theta_hat=state.theta_hat.at[block].set(theta, mode=inside),
        recent_precision=state.recent_precision.at[block].add(
            jnp.outer(x, x), mode=inside
        ),
        recent_b=state.recent_b.at[block].add(reward * x, mode=inside),
        updates=updates,
    )
    # A 0- or 1-trip loop rather than `lax.cond`: XLA updates a loop's carried
    # buffers in place, where a conditional copies the whole state every round.
    trips = (updates % refactor_every == 0).astype(jnp.int32)
    return jax.lax.fori_loop(0, trips, lambda _, s: ridge_refactor(s), state)


def ridge_belief(
    state: RidgeState, obs: Observation, features: str
) -> GaussianScores | GaussianWeights:
    """What the ridge statistics say about the arms of `obs`, for an exploration rule.

    For "context" arm k scores the shared context x with its own block k:
    independent `GaussianScores` with mean x^T theta_hat_k and width
    sqrt(x^T A_k^{-1} x). For "arms" every arm's features x_k go through the one
    shared block: `GaussianWeights` over theta ~ N(theta_hat, A^{-1}) with root R.
    """
    dtype = state.b.dtype
    if features == "context":
        x = obs.context.astype(dtype)
        mean = state.theta_hat @ x
        root = state.root @ x  # (K, f): R_k x
        return GaussianScores(mean, jnp.sqrt(jnp.sum(root * root, axis=-1)))
    X = obs.arms.astype(dtype)
    return GaussianWeights(X, state.theta_hat[0], state.root[0])


def mean_and_width(
    state: RidgeState, obs: Observation, features: str
) -> tuple[jax.Array, jax.Array]:
    """Per-arm ridge estimate x_k^T theta_hat and width sqrt(x_k^T A^{-1} x_k), (K,)."""
    return ridge_belief(state, obs, features).marginals()


def block_and_features(
    obs: Observation, action: jax.Array, features: str, dtype
) -> tuple[jax.Array, jax.Array]:
    """The block that explains `action` and the feature vector it is updated with."""
    if features == "context":
        return action, obs.context.astype(dtype)
    return jnp.zeros((), jnp.int32), obs.arms[action].astype(dtype)
