"""Rank-one updates for the O(d^2) per-step cost that linear bandits need."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def sherman_morrison(A_inv: ArrayLike, x: ArrayLike, weight: ArrayLike = 1.0):
    """Inverse of `A + weight * x x^T` from `A^{-1}` in O(d^2).

    (A + w x x^T)^{-1} = A^{-1} - w (A^{-1} x)(A^{-1} x)^T / (1 + w x^T A^{-1} x)

    Args:
      A_inv: (d, d) symmetric inverse of a positive-definite matrix.
      x: (d,) vector.
      weight: non-negative scalar weight of the rank-one term.

    Returns:
      The (d, d) updated inverse.

    References:
      Sherman & Morrison (1950), "Adjustment of an inverse matrix corresponding to
      a change in one element of a given matrix".
    """
    A_inv = jnp.asarray(A_inv)
    x = jnp.asarray(x, A_inv.dtype)
    u = A_inv @ x
    denominator = 1.0 + weight * (x @ u)
    return A_inv - (weight / denominator) * jnp.outer(u, u)


def cholesky_update(L: ArrayLike, x: ArrayLike) -> jax.Array:
    """Lower Cholesky factor of `L L^T + x x^T` in O(d^2).

    A sequence of Givens-like rotations, one per column, run under `lax.fori_loop`
    so the shape stays static under `jit`.

    Args:
      L: (d, d) lower-triangular Cholesky factor with positive diagonal.
      x: (d,) vector.

    Returns:
      The (d, d) lower-triangular factor of the updated matrix.

    References:
      Golub & Van Loan, "Matrix Computations", 4th ed., section 6.5.4.
    """
    L = jnp.asarray(L)
    x = jnp.asarray(x, L.dtype)
    d = L.shape[0]
    rows = jnp.arange(d)

    def column(k, carry):
        L, x = carry
        l_kk = L[k, k]
        r = jnp.sqrt(l_kk * l_kk + x[k] * x[k])
        c = r / l_kk
        s = x[k] / l_kk
        below = rows > k
        new_col = jnp.where(below, (L[:, k] + s * x) / c, L[:, k])
        new_col = new_col.at[k].set(r)
        x = jnp.where(below, c * x - s * new_col, x)
        return L.at[:, k].set(new_col), x

    L, _ = jax.lax.fori_loop(0, d, column, (L, x))
    return jnp.asarray(L)


def cholesky_solve(L: ArrayLike, b: ArrayLike) -> jax.Array:
    """Solves `(L L^T) z = b` with two triangular solves."""
    L = jnp.asarray(L)
    b = jnp.asarray(b, L.dtype)
    y = jax.scipy.linalg.solve_triangular(L, b, lower=True)
    return jax.scipy.linalg.solve_triangular(L.T, y, lower=False)


def jittered_cholesky(A: ArrayLike, jitter: float = 1e-6) -> jax.Array:
    """Cholesky factor of a symmetric matrix after adding `jitter * mean(diag)` I.

    Use where accumulated rounding may have cost the matrix its definiteness.
    """
    A = jnp.asarray(A)
    A = 0.5 * (A + A.T)
    scale = jnp.maximum(jnp.mean(jnp.diag(A)), 1.0)
    return jnp.linalg.cholesky(A + jitter * scale * jnp.eye(A.shape[0], dtype=A.dtype))
