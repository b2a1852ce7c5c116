"""Rank-one linear algebra: golden values and property tests against NumPy.

Property tests draw well-conditioned SPD matrices A = M M^T + I with entries of M
in [-1, 1] (so the eigenvalues lie in [1, 1 + d^2] and cond(A) <= 37 for d <= 6)
and vectors with entries in [-2, 2]. Tolerances are relative to the largest entry
of the expected result:

* float64 (`jax.enable_x64`): 1e-10, i.e. ~5e5 ulps, for matrices whose
  condition number and update size amplify rounding by at most ~1e3;
* float32: 1e-4, i.e. ~1e3 ulps of float32 (eps = 1.2e-7), same reasoning.

Hypothesis runs derandomized, so every run checks the same examples.
"""

from __future__ import annotations

import jax
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bandits import linalg

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)
TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}

sherman_morrison = jax.jit(linalg.sherman_morrison)
cholesky_update = jax.jit(linalg.cholesky_update)
cholesky_solve = jax.jit(linalg.cholesky_solve)


@st.composite
def spd_and_vector(draw):
    """(A, x, w): A (d, d) SPD with cond <= 37, x (d,), w >= 0."""
    d = draw(st.integers(1, 6))
    unit = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False)
    M = draw(hnp.arrays(np.float64, (d, d), elements=unit))
    x = 2.0 * draw(hnp.arrays(np.float64, (d,), elements=unit))
    w = draw(st.floats(0.0, 3.0, allow_nan=False))
    return M @ M.T + np.eye(d), x, w


def _assert_close(actual, expected, dtype):
    actual = np.asarray(actual)
    assert actual.dtype == dtype
    scale = max(np.max(np.abs(expected)), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE[dtype] * scale)


def _check_sherman_morrison(A, x, w, dtype):
    A_inv = np.linalg.inv(A)
    expected = np.linalg.inv(A + w * np.outer(x, x))
    actual = sherman_morrison(A_inv.astype(dtype), x.astype(dtype), w)
    _assert_close(actual, expected, dtype)


def _check_cholesky_update(A, x, dtype):
    L = np.linalg.cholesky(A)
    expected = np.linalg.cholesky(A + np.outer(x, x))
    actual = cholesky_update(L.astype(dtype), x.astype(dtype))
    _assert_close(actual, expected, dtype)
    assert np.all(np.triu(np.asarray(actual), 1) == 0)


def _check_cholesky_solve(A, x, dtype):
    L = np.linalg.cholesky(A)
    expected = np.linalg.solve(A, x)
    actual = cholesky_solve(L.astype(dtype), x.astype(dtype))
    _assert_close(actual, expected, dtype)


# --- golden values on a 2x2 case computed by hand -----------------------------


def test_sherman_morrison_golden_2x2():
    """A = diag(2, 1), x = (1, 1): (A + x x^T)^{-1} = [[3, 1], [1, 2]]^{-1}.

    = [[2, -1], [-1, 3]] / 5 = [[0.4, -0.2], [-0.2, 0.6]].
    """
    A_inv = np.array([[0.5, 0.0], [0.0, 1.0]], np.float32)
    actual = linalg.sherman_morrison(A_inv, np.array([1.0, 1.0], np.float32))
    np.testing.assert_allclose(actual, [[0.4, -0.2], [-0.2, 0.6]], atol=1e-7)
    # weight 0 leaves the inverse unchanged; weight 2 adds 2 x x^T:
    # [[4, 2], [2, 3]]^{-1} = [[3, -2], [-2, 4]] / 8.
    np.testing.assert_array_equal(
        linalg.sherman_morrison(A_inv, np.array([1.0, 1.0], np.float32), 0.0), A_inv
    )
    np.testing.assert_allclose(
        linalg.sherman_morrison(A_inv, np.array([1.0, 1.0], np.float32), 2.0),
        [[0.375, -0.25], [-0.25, 0.5]],
        atol=1e-7,
    )


def test_cholesky_update_golden_2x2():
    """L = diag(3, 4), x = (4, 5): L L^T + x x^T = [[25, 20], [20, 41]].

    Its factor is [[5, 0], [4, 5]] (5^2 = 25, 5 * 4 = 20, 4^2 + 5^2 = 41).
    """
    L = np.array([[3.0, 0.0], [0.0, 4.0]], np.float32)
    actual = linalg.cholesky_update(L, np.array([4.0, 5.0], np.float32))
    np.testing.assert_allclose(actual, [[5.0, 0.0], [4.0, 5.0]], atol=1e-6)


def test_cholesky_solve_golden_2x2():
    """[[25, 20], [20, 41]] z = (45, 61) has z = (1, 1)."""
    L = np.array([[5.0, 0.0], [4.0, 5.0]], np.float32)
    actual = linalg.cholesky_solve(L, np.array([45.0, 61.0], np.float32))
    np.testing.assert_allclose(actual, [1.0, 1.0], atol=1e-6)


def test_jittered_cholesky_of_a_singular_matrix():
    """x x^T is singular; the jitter makes it factorizable and changes it by
    jitter * max(mean(diag), 1) I only."""
    x = np.array([1.0, 2.0, 2.0], np.float32)
    A = np.outer(x, x)  # mean diagonal 3
    L = np.asarray(linalg.jittered_cholesky(A, jitter=1e-3))
    assert np.all(np.isfinite(L))
    np.testing.assert_allclose(L @ L.T, A + 3e-3 * np.eye(3), atol=1e-5)


# --- properties, float64 ------------------------------------------------------


@PROPERTY_SETTINGS
@given(spd_and_vector())
def test_sherman_morrison_equals_direct_inverse_float64(case):
    A, x, w = case
    with jax.enable_x64(True):
        _check_sherman_morrison(A, x, w, np.float64)


@PROPERTY_SETTINGS
@given(spd_and_vector())
def test_cholesky_update_equals_refactorization_float64(case):
    A, x, _ = case
    with jax.enable_x64(True):
        _check_cholesky_update(A, x, np.float64)


@PROPERTY_SETTINGS
@given(spd_and_vector())
def test_cholesky_solve_solves_float64(case):
    A, x, _ = case
    with jax.enable_x64(True):
        _check_cholesky_solve(A, x, np.float64)


# --- properties, float32 ------------------------------------------------------


@PROPERTY_SETTINGS
@given(spd_and_vector())
def test_sherman_morrison_equals_direct_inverse_float32(case):
    A, x, w = case
    _check_sherman_morrison(A, x, w, np.float32)


@PROPERTY_SETTINGS
@given(spd_and_vector())
def test_cholesky_update_equals_refactorization_float32(case):
    A, x, _ = case
    _check_cholesky_update(A, x, np.float32)


@PROPERTY_SETTINGS
@given(spd_and_vector())
def test_cholesky_solve_solves_float32(case):
    A, x, _ = case
    _check_cholesky_solve(A, x, np.float32)


def test_repeated_sherman_morrison_tracks_the_ridge_inverse_float32():
    """500 updates from (1 I)^{-1} stay within 1e-4 (relative to the largest entry)
    of inv(I + X^T X) computed in float64: the error does not accumulate past the
    float32 tolerance over a LinUCB-length run of one arm."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1.0, 1.0, size=(500, 8))

    def body(A_inv, x):
        return linalg.sherman_morrison(A_inv, x), None

    A_inv, _ = jax.lax.scan(body, np.eye(8, dtype=np.float32), X.astype(np.float32))
    _assert_close(A_inv, np.linalg.inv(np.eye(8) + X.T @ X), np.float32)
