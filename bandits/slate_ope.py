"""Slate off-policy estimators: the value of a ranking policy from another's logs.

A slate log holds n events: the context x_i, the logged slate s_i = (s_i1, ...,
s_iL) drawn from the logging policy pi_0(. | x_i), the click c_il at every
position and the slate's reward r_i. The estimators are pure functions of
arrays (jittable, vmappable over log replicates) and return `ope.Estimate`: the
mean of per-event terms with a normal 95% interval, as the single-item
estimators of `bandits.ope` do.

    clicks       (n, L)        c_il, the click (per-position reward) at position l
    reward       (n,)          r_i, the slate's reward
    slate        (n, L)        s_i, the logged slate (int)
    propensity   (n, L)        pi_0(s_il at l | x_i), the logging policy's
                               probability of the logged item at each position
    target       (n, L, K)     pi(k at l | x_i), the target's position marginals
    prefix_propensity (n, L)   pi_0(s_i1, ..., s_il | x_i), of each logged prefix
    target_prefix     (n, L)   pi(s_i1, ..., s_il | x_i)
    gram         (n, L K, L K) Gamma(x_i) = E_{pi_0}[1_s 1_s^T | x_i], 1_s the
                               indicator of (position, item) pairs, (l, k) at l K + k

Estimators, each unbiased under its own assumption about how clicks depend on
the slate (w_il the weight of position l of event i):

  independent IPS   mean_i sum_l w_il c_il,  w_il = pi(s_il at l) / pi_0(s_il at l)
      Unbiased for the expected total clicks when the click at a position
      depends only on the item there and the position (the position-based
      model: E[c_l] = kappa_l a_{s_l}). Li, Kim & Zitouni (2018) call it IIPS.
  RIPS              mean_i sum_l W_il c_il,  W_il = pi(s_i,1:l) / pi_0(s_i,1:l)
      Reward-interaction IPS (McInerney et al. 2020): unbiased when the click
      at position l depends only on the items at positions 1..l (a user
      scanning from the top: the cascade and the DCM, and the PBM too). This is
      the unnormalised form; it estimates E_pi[sum_l c_l], the slate reward
      of the cascade (at most one click) and the PBM (the number of clicks).
  pseudo-inverse    mean_i r_i q_i^T Gamma_i^+ 1_{s_i},  q_i = E_pi[1_s | x_i]
      (Swaminathan et al. 2017): unbiased when the slate reward is additive
      over (position, item) pairs, E[r | x, s] = sum_l phi_x(l, s_l) (the PBM),
      and every slate pi plays has pi_0 > 0 (then q_i lies in the range of
      Gamma_i). With L = 1 it is IPS.

Slates the logging policies of `envs.slate_logged` play are epsilon-uniform
mixtures around a deterministic slate g(x): pi_0(s | x) = epsilon U(s) +
(1 - epsilon) 1[s = g(x)], U uniform over ordered slates of L distinct allowed
items (epsilon = 1: uniformly random slates; epsilon = 0: a deterministic
policy). `mixture_marginals`, `mixture_prefix_probabilities`,
`mixture_slate_probability` and `mixture_gram` give their exact inputs above.

Inputs are checked (`check_slate_inputs`) when concrete; under `jit` or `vmap`
the checks are skipped.

References:
  Li, Kim & Zitouni (2018), "Offline evaluation of ranking policies with click
  models", KDD (the independent, item-position estimator).
  McInerney, Brost, Chandar, Mehrotra & Carterette (2020), "Counterfactual
  evaluation of slate recommendations with sequential reward interactions",
  KDD (RIPS).
  Swaminathan, Krishnamurthy, Agarwal, Dudik, Langford, Jose & Zitouni (2017),
  "Off-policy evaluation for slate recommendation", NeurIPS (the pseudo-inverse
  estimator).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from bandits.linalg import psd_solve
from bandits.ope import (
    Estimate,
    _concrete,
    _finite,
    check_event_lengths,
    mean_estimate,
)
from bandits.validation import BanditConfigError

# ---------------------------------------------------------------------------
# Checks


def check_slate_inputs(**arrays) -> None:
    """Raises `BanditConfigError` naming the first malformed input.

    Keyword arguments are any of the names of the module docstring; each is
    checked for its rank, one length n, one L and one K across inputs,
    finiteness, and probabilities in range (propensities in (0, 1], target
    probabilities in [0, 1]).
    """
    ranks = {
        "clicks": 2,
        "reward": 1,
        "slate": 2,
        "propensity": 2,
        "target": 3,
        "prefix_propensity": 2,
        "target_prefix": 2,
        "gram": 3,
    }
    given = {k: np.asarray(v) for k, v in arrays.items() if v is not None}
    for name, values in given.items():
        if name not in ranks:
            raise BanditConfigError(f"unknown slate input {name!r}")
        if values.ndim != ranks[name]:
            raise BanditConfigError.about(
                name, f"must have {ranks[name]} axes, got shape {values.shape}"
            )
    check_event_lengths(given)
    positions = {n: given[n].shape[1] for n in given if n not in ("reward", "gram")}
    if len(set(positions.values())) > 1:
        listed = ", ".join(f"{k} {v}" for k, v in positions.items())
        raise BanditConfigError(
            f"inputs must have one number of positions L, got {listed}"
        )
    if "target" in given and "gram" in given:
        width = given["target"].shape[1] * given["target"].shape[2]
        if given["gram"].shape[1:] != (width, width):
            raise BanditConfigError.about(
                "gram",
                f"must have shape (n, L K, L K) = (n, {width}, {width}) for the "
                f"target's L and K, got {given['gram'].shape}",
            )
    for name, values in given.items():
        if name != "slate":
            _finite(name, values)
    for name in ("propensity", "prefix_propensity"):
        if name in given:
            p = given[name]
            bad = np.argwhere(~((p > 0) & (p <= 1)))
            if bad.size:
                event = tuple(int(i) for i in bad[0])
                raise BanditConfigError.about(
                    name, f"must be in (0, 1], got {p[event]!r} at (event, l) {event}"
                )
    for name in ("target", "target_prefix"):
        if name in given:
            p = given[name]
            if ((p < 0) | (p > 1)).any():
                raise BanditConfigError.about(name, "must hold probabilities in [0, 1]")
    if "slate" in given:
        s = given["slate"]
        if not np.issubdtype(s.dtype, np.integer):
            raise BanditConfigError.about(
                "slate", f"must hold integers, got dtype {s.dtype}"
            )
        if "target" in given:
            k = given["target"].shape[2]
            if ((s < 0) | (s >= k)).any():
                raise BanditConfigError.about("slate", f"must hold items in [0, {k})")


def _checked(**arrays) -> None:
    if _concrete(*arrays.values()):
        check_slate_inputs(**arrays)


# ---------------------------------------------------------------------------
# Estimators


def position_weights(slate, propensity, target) -> jax.Array:
    """w_il = pi(s_il at l | x_i) / pi_0(s_il at l | x_i), (n, L)."""
    taken = jnp.take_along_axis(target, slate[..., None].astype(jnp.int32), axis=2)
    return taken[..., 0] / propensity


def independent_ips(clicks, slate, propensity, target) -> Estimate:
    """Independent (item-position) IPS: mean_i sum_l w_il c_il. Unbiased for
    the expected total clicks under the position-based model."""
    _checked(clicks=clicks, slate=slate, propensity=propensity, target=target)
    w = position_weights(slate, propensity, target)
    return mean_estimate(jnp.sum(w * clicks, axis=1))


def rips(clicks, prefix_propensity, target_prefix) -> Estimate:
    """Reward-interaction IPS (McInerney et al. 2020), unnormalised:
    mean_i sum_l (pi(s_i,1:l) / pi_0(s_i,1:l)) c_il. Unbiased for the expected
    total clicks when a position's click depends on the items above it and
    itself only (cascade, DCM, PBM)."""
    _checked(
        clicks=clicks,
        prefix_propensity=prefix_propensity,
        target_prefix=target_prefix,
    )
    w = target_prefix / prefix_propensity
    return mean_estimate(jnp.sum(w * clicks, axis=1))


def pseudo_inverse_weights(slate, gram, target) -> jax.Array:
    """w_i = q_i^T Gamma_i^+ 1_{s_i}, (n,), with q_i the target's (L K,)
    position marginals and Gamma_i^+ the Moore-Penrose pseudo-inverse."""
    n, num_positions, num_items = target.shape
    q = target.reshape(n, num_positions * num_items)
    flat = jnp.arange(num_positions) * num_items + slate.astype(jnp.int32)
    # u_i = Gamma_i^+ q_i, as any solution of Gamma_i u = q_i: q_i and the
    # logged 1_{s_i} lie in the range of Gamma_i (the target shows only slates
    # the logger can show), and on that range every solution gives the same
    # q^T Gamma^+ 1_s (`bandits.linalg.psd_solve`; no LAPACK eigendecomposition).
    u = jax.vmap(psd_solve)(gram, q.astype(gram.dtype))
    return jnp.sum(jnp.take_along_axis(u, flat, axis=1), axis=1)


def pseudo_inverse(reward, slate, gram, target) -> Estimate:
    """The pseudo-inverse estimator (Swaminathan et al. 2017):
    mean_i r_i q_i^T Gamma_i^+ 1_{s_i}. Unbiased for additive slate rewards."""
    _checked(reward=reward, slate=slate, gram=gram, target=target)
    return mean_estimate(reward * pseudo_inverse_weights(slate, gram, target))


SLATE_ESTIMATORS: dict[str, Callable[..., Estimate]] = {
    "independent_ips": independent_ips,
    "rips": rips,
    "pseudo_inverse": pseudo_inverse,
}


# ---------------------------------------------------------------------------
# Epsilon-uniform mixtures around a deterministic slate (one event)


def _allowed_count(mask: jax.Array) -> jax.Array:
    return jnp.sum(mask).astype(jnp.float32)


def _uniform_prefix(mask: jax.Array, slate: jax.Array) -> jax.Array:
    """U(s_1:l), (L,): 1 / (m (m-1) ... (m-l+1)) for prefixes of distinct allowed
    items (m allowed), else 0."""
    num_positions = slate.shape[0]
    m = _allowed_count(mask)
    ways = jnp.cumprod(m - jnp.arange(num_positions, dtype=jnp.float32))
    repeated = jnp.tril(slate[:, None] == slate[None, :], k=-1).any(axis=1)
    valid = jnp.cumsum(~mask[slate] | repeated) == 0
    return jnp.where(valid & (ways > 0), 1.0 / jnp.where(ways > 0, ways, 1.0), 0.0)


def mixture_prefix_probabilities(mask, greedy, epsilon, slate) -> jax.Array:
    """pi_0(s_1:l), (L,), of pi_0 = epsilon U + (1 - epsilon) 1[. = greedy]."""
    same = jnp.cumprod(slate == greedy).astype(jnp.float32)
    return epsilon * _uniform_prefix(mask, slate) + (1.0 - epsilon) * same


def mixture_slate_probability(mask, greedy, epsilon, slate) -> jax.Array:
    """pi_0(s) of the whole slate (the last prefix)."""
    return mixture_prefix_probabilities(mask, greedy, epsilon, slate)[-1]


def mixture_marginals(mask, greedy, epsilon) -> jax.Array:
    """pi_0(k at l), (L, K): epsilon 1[k allowed] / m + (1 - epsilon) 1[k = g_l]."""
    num_items = mask.shape[0]
    uniform = mask.astype(jnp.float32) / jnp.maximum(_allowed_count(mask), 1.0)
    chosen = jax.nn.one_hot(greedy, num_items, dtype=jnp.float32)
    return epsilon * uniform[None, :] + (1.0 - epsilon) * chosen


def mixture_gram(mask, greedy, epsilon) -> jax.Array:
    """Gamma = E[1_s 1_s^T], (L K, L K), (l, k) at index l K + k.

    Uniform part: P(k at l, k' at l') = 1[k = k'] / m for l = l', and
    1[k != k'] / (m (m - 1)) for l != l' (k, k' allowed); the greedy part is
    1_g 1_g^T.
    """
    num_positions, num_items = greedy.shape[0], mask.shape[0]
    m = _allowed_count(mask)
    a = mask.astype(jnp.float32)
    same_position = jnp.diag(a) / jnp.maximum(m, 1.0)
    pair = (jnp.outer(a, a) - jnp.diag(a)) / jnp.maximum(m * (m - 1.0), 1.0)
    eye = jnp.eye(num_positions, dtype=bool)
    uniform = jnp.where(eye[:, None, :, None], same_position[None, :, None, :], 0.0)
    uniform = uniform + jnp.where(eye[:, None, :, None], 0.0, pair[None, :, None, :])
    width = num_positions * num_items
    one_hot = jax.nn.one_hot(greedy, num_items, dtype=jnp.float32).reshape(width)
    return epsilon * uniform.reshape(width, width) + (1.0 - epsilon) * jnp.outer(
        one_hot, one_hot
    )
