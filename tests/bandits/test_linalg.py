"""Linear algebra of the ridge statistics: golden values and property tests.

Property tests draw well-conditioned SPD matrices A = M M^T + I with entries of M
in [-1, 1] (so the eigenvalues lie in [1, 1 + d^2] and cond(A) <= 37 for d <= 6)
and vectors with entries in [-2, 2]. Tolerances are relative to the largest entry
of the expected result:

* float64 (`jax.enable_x64`): 1e-10, i.e. ~5e5 ulps, for matrices whose
  condition number and update size amplify rounding by at most ~1e3;
* float32: 1e-4, i.e. ~1e3 ulps of float32 (eps = 1.2e-7), same reasoning.

Hypothesis runs derandomized, so every run checks the same examples. The
long-run accuracy of the statistics built from these pieces (10^5-10^6 updates
with one-hot, collinear and badly scaled features) is tested against a float64
direct solve in tests/agents/test_ridge_accuracy.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bandits import linalg

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)
TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}

potter_update = jax.jit(linalg.potter_update)
inverse_factor = jax.jit(linalg.inverse_factor)
compensated_add = jax.jit(linalg.compensated_add)


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


def _check_potter(A, x, w, dtype):
    """R^T R = A^{-1} in, R'^T R' = (A + w x x^T)^{-1} and the gain out."""
    R = np.linalg.cholesky(np.linalg.inv(A)).T
    expected = np.linalg.inv(A + w * np.outer(x, x))
    R_new, gain = potter_update(R.astype(dtype), x.astype(dtype), w)
    R_new = np.asarray(R_new)
    assert R_new.dtype == dtype
    _assert_close((R_new.T @ R_new).astype(dtype), expected, dtype)
    _assert_close(gain, expected @ x, dtype)


def _check_inverse_factor(A, dtype):
    R = np.asarray(inverse_factor(A.astype(dtype)))
    assert np.all(np.triu(R, 1) == 0), "R = L^{-1} is lower triangular"
    _assert_close((R.T @ R).astype(dtype), np.linalg.inv(A), dtype)


# --- golden values computed by hand ----------------------------------------------


def test_potter_update_golden_2x2():
    """A = diag(2, 1), x = (1, 1): (A + x x^T)^{-1} = [[3, 1], [1, 2]]^{-1}.

    = [[2, -1], [-1, 3]] / 5 = [[0.4, -0.2], [-0.2, 0.6]]; the gain is that
    times x = (0.2, 0.4). Weight 0 leaves R unchanged and the gain A^{-1} x.
    """
    R = np.diag([np.sqrt(0.5), 1.0]).astype(np.float32)
    x = np.array([1.0, 1.0], np.float32)
    R_new, gain = linalg.potter_update(R, x)
    np.testing.assert_allclose(R_new.T @ R_new, [[0.4, -0.2], [-0.2, 0.6]], atol=1e-7)
    np.testing.assert_allclose(gain, [0.2, 0.4], atol=1e-7)
    R_same, gain0 = linalg.potter_update(R, x, 0.0)
    # Exact on any CPU: the update subtracts 0 * (v u^T), and x - 0 = x in IEEE.
    np.testing.assert_array_equal(R_same, R)
    np.testing.assert_allclose(gain0, [0.5, 1.0], atol=1e-7)


def test_cholesky_lower_golden_2x2():
    """[[25, 20], [20, 41]] = L L^T with L = [[5, 0], [4, 5]]."""
    A = np.array([[25.0, 20.0], [20.0, 41.0]], np.float32)
    np.testing.assert_allclose(
        linalg.cholesky_lower(A), [[5.0, 0.0], [4.0, 5.0]], atol=1e-6
    )
    np.testing.assert_allclose(
        linalg.lower_inverse(np.array([[5.0, 0.0], [4.0, 5.0]], np.float32)),
        [[0.2, 0.0], [-0.16, 0.2]],
        atol=1e-7,
    )


def test_cholesky_lower_drops_a_dependent_column():
    """x x^T is singular: column 2 is 2 x column 1, its Schur complement is 0.

    The pivot is clamped at sqrt(4 eps A_22) and nothing below it is kept, so
    the factor is finite and reproduces A up to that floor on the diagonal.
    """
    x = np.array([1.0, 2.0, 2.0], np.float32)
    A = np.outer(x, x)
    L = np.asarray(linalg.cholesky_lower(A))
    assert np.all(np.isfinite(L))
    np.testing.assert_allclose(L[:, 0], [1.0, 2.0, 2.0], atol=1e-6)
    eps = np.finfo(np.float32).eps
    np.testing.assert_allclose(np.diag(L)[1:], np.sqrt(4 * eps * 4.0), rtol=1e-3)
    np.testing.assert_allclose(L @ L.T, A, atol=1e-5)


def test_compensated_add_keeps_what_a_plain_float32_sum_loses():
    """1 + 10^6 terms of 1e-8: a float32 running sum stays 1 (each term is below
    half an ulp of 1), the compensated sum (total - residual) is 1.01 to float32
    precision."""
    total = np.float32(1.0)
    residual = np.float32(0.0)

    def body(carry, term):
        return linalg.compensated_add(*carry, term), None

    terms = np.full(10**6, 1e-8, np.float32)
    (total, residual), _ = jax.lax.scan(body, (total, residual), terms)
    plain = jax.lax.scan(lambda s, t: (s + t, None), np.float32(1.0), terms)[0]
    assert float(plain) == 1.0
    np.testing.assert_allclose(float(total - residual), 1.01, rtol=1e-6)


# --- properties -----------------------------------------------------------------


@PROPERTY_SETTINGS
@given(spd_and_vector())
def test_potter_update_equals_direct_inverse_float64(case):
    A, x, w = case
    with jax.enable_x64(True):
        _check_potter(A, x, w, np.float64)


@PROPERTY_SETTINGS
@given(spd_and_vector())
def test_potter_update_equals_direct_inverse_float32(case):
    A, x, w = case
    _check_potter(A, x, w, np.float32)


@PROPERTY_SETTINGS
@given(spd_and_vector())
def test_inverse_factor_is_a_square_root_of_the_inverse_float64(case):
    A, _, _ = case
    with jax.enable_x64(True):
        _check_inverse_factor(A, np.float64)


@PROPERTY_SETTINGS
@given(spd_and_vector())
def test_inverse_factor_is_a_square_root_of_the_inverse_float32(case):
    A, _, _ = case
    _check_inverse_factor(A, np.float32)


@PROPERTY_SETTINGS
@given(spd_and_vector())
def test_inverse_factor_is_the_inverse_of_the_cholesky_factor(case):
    """The fused loop does the arithmetic of `lower_inverse(cholesky_lower(A))`.

    Different programs, so XLA may order operations differently: float32
    rounding (relative 1e-5 of the largest entry) rather than bit equality.
    """
    A, _, _ = case
    A = np.asarray(A, np.float32)
    expected = np.asarray(linalg.lower_inverse(linalg.cholesky_lower(0.5 * (A + A.T))))
    actual = np.asarray(linalg.inverse_factor(A))
    np.testing.assert_allclose(
        actual, expected, rtol=0, atol=1e-5 * np.abs(expected).max()
    )


def test_inverse_factor_drops_a_dependent_column():
    """The dependent column of `test_cholesky_lower_drops_a_dependent_column`:
    finite, lower triangular, and R x still gives x^T A^{-1} x for x in the
    span (here A = x x^T + I, so x^T A^{-1} x = |x|^2 / (1 + |x|^2))."""
    x = np.array([1.0, 2.0, 2.0], np.float32)
    R = np.asarray(
        linalg.inverse_factor(np.outer(x, x) * 1e8 + np.eye(3, dtype=np.float32))
    )
    assert np.all(np.isfinite(R))
    np.testing.assert_array_equal(np.triu(R, 1), 0.0)
    np.testing.assert_allclose(np.sum((R @ x) ** 2), 9.0 / (1.0 + 9e8), rtol=1e-3)


def _check_spd_solve(A, b, dtype):
    with jax.enable_x64(dtype == np.float64):
        x = np.asarray(jax.jit(linalg.spd_solve)(A.astype(dtype), b.astype(dtype)))
    _assert_close(x, np.linalg.solve(A, b), dtype)


@PROPERTY_SETTINGS
@given(spd_and_vector(), st.integers(0, 3))
def test_spd_solve_equals_a_direct_solve(case, columns):
    """One right-hand side (columns = 0) or a (d, columns) block, in both dtypes."""
    A, x, _ = case
    b = x if columns == 0 else np.outer(x, np.arange(1.0, columns + 1.0))
    _check_spd_solve(A, b, np.float64)
    _check_spd_solve(A, b, np.float32)


def test_spd_solve_calls_no_lapack():
    """The compiled solve is plain arithmetic: jaxlib's LAPACK kernels (what
    `jnp.linalg.solve` lowers to on the CPU) block XLA's intra-op threads, and
    two of them in one program can deadlock a 2-thread pool (docs/ope.md).
    The lowered program is checked (a compiled one may come from the persistent
    cache, whose text is not kept); `jnp.linalg.solve` shows up there as a
    LAPACK custom call, so the check can fail."""
    A = np.eye(4, dtype=np.float32)
    b = np.ones((3, 4), np.float32)
    ours = jax.jit(jax.vmap(linalg.spd_solve, in_axes=(None, 0))).lower(A, b)
    theirs = jax.jit(jax.vmap(jnp.linalg.solve, in_axes=(None, 0))).lower(A, b)
    assert "lapack" not in ours.as_text().lower()
    assert "lapack" in theirs.as_text().lower()


@st.composite
def singular_psd(draw):
    """(A, b, Y): A (d, d) PSD of rank r <= d with non-zero eigenvalues in
    [1, 10] (so the pseudo-inverse is well conditioned on its range), possibly
    with a zero row and column (an item never shown) inserted; b = A z in its
    range; the columns of Y (d, 3) in its range too."""
    d = draw(st.integers(1, 7))
    rank = draw(st.integers(1, d))
    unit = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False)
    M = draw(hnp.arrays(np.float64, (d, d), elements=unit)) + 3.0 * np.eye(d)
    Q = np.linalg.qr(M)[0][:, :rank]
    eigenvalues = draw(hnp.arrays(np.float64, (rank,), elements=st.floats(1, 10)))
    A = (Q * eigenvalues) @ Q.T
    if draw(st.booleans()):
        at = draw(st.integers(0, d))
        A = np.insert(np.insert(A, at, 0.0, axis=0), at, 0.0, axis=1)
    z = draw(hnp.arrays(np.float64, (A.shape[0], 4), elements=unit))
    return A, A @ z[:, 0], A @ z[:, 1:]


def _check_psd_solve(A, b, Y, dtype):
    with jax.enable_x64(dtype == np.float64):
        x = np.asarray(jax.jit(linalg.psd_solve)(A.astype(dtype), b.astype(dtype)))
    assert np.all(np.isfinite(x))
    # Any solution of A x = b gives the pseudo-inverse's value on the range.
    x64 = x.astype(np.float64)
    _assert_close((Y.T @ x64).astype(dtype), Y.T @ np.linalg.pinv(A) @ b, dtype)
    _assert_close((A @ x64).astype(dtype), b, dtype)


@PROPERTY_SETTINGS
@given(singular_psd())
def test_psd_solve_gives_the_pseudo_inverse_on_the_range(case):
    A, b, Y = case
    _check_psd_solve(A, b, Y, np.float64)
    _check_psd_solve(A, b, Y, np.float32)


def test_psd_solve_golden_singular():
    """A = [[1, 1, 0], [1, 1, 0], [0, 0, 0]]: column 2 repeats column 1 and
    column 3 is empty; the second and third unknowns are set to 0, so
    A x = (2, 2, 0) gives x = (2, 0, 0), and y^T x = y^T A^+ b = 2 y_1 + ... for
    y = (1, 1, 0): 2, as (1, 1, 0) A^+ (2, 2, 0) = 2."""
    A = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
    x = np.asarray(linalg.psd_solve(A, np.array([2.0, 2.0, 0.0], np.float32)))
    np.testing.assert_allclose(x, [2.0, 0.0, 0.0], atol=1e-6)
    assert float(np.array([1.0, 1.0, 0.0]) @ x) == pytest.approx(2.0, abs=1e-6)


def test_psd_solve_calls_no_lapack():
    """As `spd_solve`: `jnp.linalg.pinv` lowers to a LAPACK eigendecomposition
    (or SVD), so the check can fail."""
    A = np.eye(4, dtype=np.float32)
    b = np.ones((3, 4), np.float32)
    ours = jax.jit(jax.vmap(linalg.psd_solve, in_axes=(None, 0))).lower(A, b)

    def pinv_solve(A, b):
        return jnp.linalg.pinv(A, hermitian=True) @ b

    theirs = jax.jit(jax.vmap(pinv_solve, in_axes=(None, 0))).lower(A, b)
    assert "lapack" not in ours.as_text().lower()
    assert "lapack" in theirs.as_text().lower()


def test_no_compiled_library_code_calls_a_lapack_routine():
    """jaxlib's LAPACK kernels can deadlock XLA's intra-op pool when a program
    runs two at once (docs/ope.md), so library code solves with `spd_solve`
    and `psd_solve`. A static guard: no `jnp.linalg` / `jax.scipy.linalg`
    routine that lowers to LAPACK appears in the packages (NumPy's float64
    reference solves of the numerics study run outside JAX and are allowed)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    routine = re.compile(
        r"(jnp|jax\.numpy|jax\.scipy|lax)\.linalg\.(solve|inv|pinv|cholesky|eigh|eig|"
        r"svd|qr|lstsq|det|slogdet|lu|solve_triangular|cho_solve|cho_factor)\b"
    )
    found = [
        f"{path.relative_to(root)}:{number}"
        for package in ("agents", "bandits", "envs", "experiments")
        for path in sorted((root / package).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if routine.search(line)
    ]
    assert not found, found
