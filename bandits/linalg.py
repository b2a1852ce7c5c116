"""Linear algebra for ridge statistics that stay exact over millions of updates.

A ridge (or Gaussian-posterior) learner needs A^{-1} x and x^T A^{-1} x for
A = lambda I + sum_t w_t x_t x_t^T after every update. Updating A^{-1} itself by
Sherman-Morrison is O(d^2) but not backward stable: with one-hot, collinear or
badly scaled features its float32 rounding errors grow until decisions change.
The primitives here support the scheme used by `agents.ridge`, measured in
docs/numerics.md:

* `compensated_add`: Kahan summation, with which the ridge core folds its
  recent sums into A and b, so they stay within a few ulps of their exact sums;
* `potter_update`: a root R of A^{-1} (R^T R = A^{-1}) updated by Potter's
  rank-one formula between re-factorisations (O(d^2), positive semi-definite by
  construction, far smaller drift than Sherman-Morrison);
* `inverse_factor`: R re-factorised from the accumulated A (a Cholesky factor
  that tolerates numerically dependent columns, then a triangular inverse),
  which removes any drift;
* `spd_solve`: A^{-1} b from that factor, for the offline fits (reward models
  of off-policy evaluation), so no compiled program calls LAPACK;
* `psd_solve`: a solution of A x = b for a singular positive semi-definite A
  (the slate pseudo-inverse estimator's Gram matrices), in place of a LAPACK
  eigendecomposition.

Everything is written in plain array operations under `fori_loop`, so it jits,
vmaps and runs under `lax.cond` without a LAPACK custom call.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def compensated_add(
    total: ArrayLike, residual: ArrayLike, term: ArrayLike
) -> tuple[jax.Array, jax.Array]:
    """Kahan summation step: `total + term` with the rounding carried in `residual`.

    Returns `(total', residual')`; `total' - residual'` is the compensated sum.
    Its error stays O(eps) relative to the terms' magnitudes, where a plain
    float32 running sum loses O(n eps) after n terms.

    References:
      Kahan (1965), "Further remarks on reducing truncation errors", CACM 8(1).
    """
    total = jnp.asarray(total)
    corrected = jnp.asarray(term, total.dtype) - residual
    new_total = total + corrected
    return new_total, (new_total - total) - corrected


def potter_update(
    R: ArrayLike, x: ArrayLike, weight: ArrayLike = 1.0
) -> tuple[jax.Array, jax.Array]:
    """Root of (A + w x x^T)^{-1} from R with R^T R = A^{-1}, in O(d^2).

    R is the transposed square root of the covariance (S = R^T, S S^T = A^{-1};
    after a re-factorisation R = L^{-1} for A = L L^T), stored this way so that
    the exploration width |R x| = sqrt(x^T A^{-1} x) is a plain mat-vec. With
    v = R x, u = R^T v (= A^{-1} x), s = w v^T v and q = sqrt(1 + s),

        R' = R - w v u^T / (q (1 + q)),   R'^T R' = (A + w x x^T)^{-1},

    and the Kalman gain (A + w x x^T)^{-1} x = u / q^2 comes for free.

    Args:
      R: (d, d) root with R^T R = A^{-1}.
      x: (d,) vector.
      weight: non-negative scalar w.

    Returns:
      `(R', gain)`: the (d, d) updated root and the (d,) vector
      (A + w x x^T)^{-1} x.

    References:
      Potter & Stern (1963), "Statistical filtering of space navigation
      measurements"; Bierman (1977), "Factorization Methods for Discrete
      Sequential Estimation", chapter V.
    """
    R = jnp.asarray(R)
    x = jnp.asarray(x, R.dtype)
    v = R @ x
    u = R.T @ v
    q2 = 1.0 + weight * (v @ v)
    q = jnp.sqrt(q2)
    R_new = R - (weight / (q * (1.0 + q))) * jnp.outer(v, u)
    return R_new, u / q2


def cholesky_lower(A: ArrayLike) -> jax.Array:
    """Lower factor L (L L^T ~= A) of a symmetric positive semi-definite matrix.

    Column by column (Cholesky-Banachiewicz) under `fori_loop`. A column whose
    Schur complement s_j falls to 4 eps A_jj or below is, to the precision A is
    stored in, a linear combination of the earlier columns (exactly collinear
    features, or one-hot groups beside an intercept, at a scale where
    n |x|^2 / lambda exceeds 1 / eps). Its pivot is then noise: it is clamped at
    sqrt(4 eps A_jj) and the column's entries below the diagonal are dropped, so
    the noise neither divides by a tiny pivot nor spreads to later columns. For
    vectors in the span of the data (every context the data came from) the
    factor then gives A^{-1} x to float precision, where a plain float32
    Cholesky returns NaN (measured in docs/numerics.md).
    """
    A = jnp.asarray(A)
    d = A.shape[0]
    rows = jnp.arange(d)
    relative_floor = 4 * jnp.finfo(A.dtype).eps

    def column(j, L):
        s = A[:, j] - L @ L[j]
        floor = relative_floor * A[j, j]
        dependent = s[j] <= floor
        pivot = jnp.sqrt(jnp.maximum(s[j], floor))
        below = jnp.where((rows > j) & ~dependent, s / pivot, 0.0)
        return L.at[:, j].set(below.at[j].set(pivot))

    return jax.lax.fori_loop(0, d, column, jnp.zeros_like(A))


def lower_inverse(L: ArrayLike) -> jax.Array:
    """L^{-1} for a lower-triangular L by forward substitution, row by row."""
    L = jnp.asarray(L)
    d = L.shape[0]
    eye = jnp.eye(d, dtype=L.dtype)

    def row(i, X):
        # rows >= i of X are still zero, so L[i] @ X only sums over k < i
        return X.at[i].set((eye[i] - L[i] @ X) / L[i, i])

    return jax.lax.fori_loop(0, d, row, jnp.zeros_like(L))


def inverse_factor(A: ArrayLike) -> jax.Array:
    """Lower-triangular R = L^{-1} with R^T R = A^{-1}, for A = L L^T.

    The re-factorisation step: backward stable, so R is accurate to a few ulps
    relative to A whatever the rank-one history that built A. One loop computes
    both factors: once column j of L is known, row j of L is complete, and row j
    of L^{-1} follows by forward substitution. The arithmetic is that of
    `lower_inverse(cholesky_lower(A))`, with half the loop trips.
    """
    A = jnp.asarray(A)
    A = 0.5 * (A + A.T)
    d = A.shape[0]
    rows = jnp.arange(d)
    eye = jnp.eye(d, dtype=A.dtype)
    relative_floor = 4 * jnp.finfo(A.dtype).eps

    def step(j, carry):
        L, X = carry
        s = A[:, j] - L @ L[j]
        floor = relative_floor * A[j, j]
        dependent = s[j] <= floor
        pivot = jnp.sqrt(jnp.maximum(s[j], floor))
        below = jnp.where((rows > j) & ~dependent, s / pivot, 0.0)
        L = L.at[:, j].set(below.at[j].set(pivot))
        # rows >= j of X are still zero, so L[j] @ X only sums over k < j
        X = X.at[j].set((eye[j] - L[j] @ X) / pivot)
        return L, X

    zeros = jnp.zeros_like(A)
    return jax.lax.fori_loop(0, d, step, (zeros, zeros))[1]


def spd_solve(A: ArrayLike, b: ArrayLike) -> jax.Array:
    """x = A^{-1} b for a symmetric positive definite A (d, d), b (d,) or (d, m).

    x = R^T (R b) with R = `inverse_factor(A)`: plain array operations, no
    LAPACK custom call. That is the point: jaxlib's batched LAPACK kernels split
    their batch over XLA's intra-op thread pool and block a pool thread until
    the parts finish, so two such calls that XLA runs at the same time (two
    independent solves in one program) can wait on each other for ever when the
    pool has as many threads as there are calls (seen on a 2-core machine, see
    docs/ope.md). The error is that of a backward-stable solve, a few ulps
    times the condition number of A; a numerically dependent column is
    handled as in `cholesky_lower`.
    """
    R = inverse_factor(A)
    return R.T @ (R @ jnp.asarray(b, R.dtype))


def psd_solve(A: ArrayLike, b: ArrayLike, rtol: float | None = None) -> jax.Array:
    """A solution x of A x = b for a symmetric positive semi-definite, possibly
    singular, A (d, d) and b (d,) in the range of A.

    A Cholesky factor that skips dependent columns: a column whose Schur
    complement is at most `rtol * max_j A_jj` (default d eps) is, to the
    precision A is stored in, a combination of the earlier ones; it is left out
    and its unknown set to 0. The rest is the factor of a full-rank principal
    block, solved by forward and back substitution. For b in the range of A
    this is an exact solution, so for every y in the range of A,
    y^T x = y^T A^+ b: the value the Moore-Penrose pseudo-inverse gives, without
    an eigendecomposition (no LAPACK call, see `spd_solve`). Unlike
    `cholesky_lower`, which clamps a dependent pivot (A there is a ridge
    matrix, lambda I or more), a zero row or column (an item never shown) is
    fine.
    """
    A = jnp.asarray(A)
    A = 0.5 * (A + A.T)
    b = jnp.asarray(b, A.dtype)
    d = A.shape[0]
    rows = jnp.arange(d)
    if rtol is None:
        rtol = d * float(jnp.finfo(A.dtype).eps)
    floor = rtol * jnp.max(jnp.diagonal(A))

    def column(j, L):
        s = A[:, j] - L @ L[j]
        keep = s[j] > floor
        pivot = jnp.sqrt(jnp.where(keep, s[j], 1.0))
        entries = jnp.where((rows >= j) & keep, s / pivot, 0.0)
        return L.at[:, j].set(entries.at[j].set(jnp.where(keep, pivot, 0.0)))

    L = jax.lax.fori_loop(0, d, column, jnp.zeros_like(A))
    diagonal = jnp.diagonal(L)
    kept = diagonal > 0
    safe = jnp.where(kept, diagonal, 1.0)

    def forward(i, y):  # L y = b; entries of y at and after i are still 0
        return y.at[i].set(jnp.where(kept[i], (b[i] - L[i] @ y) / safe[i], 0.0))

    def backward(step, x):  # L^T x = y; entries of x at and before i are still 0
        i = d - 1 - step
        return x.at[i].set(jnp.where(kept[i], (y[i] - L[:, i] @ x) / safe[i], 0.0))

    y = jax.lax.fori_loop(0, d, forward, jnp.zeros_like(b))
    return jax.lax.fori_loop(0, d, backward, jnp.zeros_like(b))
