"""A hand-written NumPy LinUCB with Sherman-Morrison updates: the speed reference.

This is what a careful researcher writes without JAX: one Python iteration per
round, vectorised over arms with NumPy, O(K d^2) per round.
"""

from __future__ import annotations

import numpy as np


def numpy_linucb_rounds(
    horizon: int, num_arms: int, dim: int, alpha: float = 1.0, seed: int = 0
) -> float:
    """Runs LinUCB on a disjoint linear Gaussian bandit; returns cumulative regret."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(num_arms, dim)) / np.sqrt(dim)
    A_inv = np.repeat(np.eye(dim)[None], num_arms, axis=0)
    b = np.zeros((num_arms, dim))
    theta_hat = np.zeros((num_arms, dim))
    regret = 0.0
    for _ in range(horizon):
        x = rng.uniform(-1.0, 1.0, size=dim)
        variance = (A_inv @ x) @ x
        ucb = theta_hat @ x + alpha * np.sqrt(np.maximum(variance, 0.0))
        k = int(np.argmax(ucb))
        means = theta @ x
        reward = means[k] + rng.normal()
        regret += means.max() - means[k]
        u = A_inv[k] @ x
        A_inv[k] -= np.outer(u, u) / (1.0 + x @ u)
        b[k] += reward * x
        theta_hat[k] = A_inv[k] @ b[k]
    return regret
