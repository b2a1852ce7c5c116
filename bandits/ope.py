"""Off-policy estimators: the value of a target policy from another policy's logs.

Every estimator is a pure function of arrays over n logged events (jittable,
vmappable over log replicates):

  reward      (n,)    r_i, the logged reward
  action      (n,)    a_i, the logged action (int)
  propensity  (n,)    pi_0(a_i | x_i), the logging policy's probability of a_i
  target      (n, K)  pi(. | x_i), the target policy's probability of every action
  reward_hat  (n, K)  q(x_i, .), a reward model's estimate for every action
                      (direct method and the doubly robust family only)

and returns an `Estimate`: the value, a 95% interval and its standard error. The
interval is normal, from the per-event terms whose mean the estimator is (for the
self-normalised estimators, from their linearisation, the delta method), so it
is one pass over the events; `bootstrap` gives a percentile interval by resampling
events instead.

With the importance weight w_i = pi(a_i | x_i) / pi_0(a_i | x_i) and the model's
value of the target policy q_pi(x_i) = sum_a pi(a | x_i) q(x_i, a):

  DM      mean q_pi(x_i)                                   (Dudik et al. 2011)
  IPS     mean w_i r_i                                     (Horvitz & Thompson 1952)
  clipped mean min(w_i, M) r_i                             (Bottou et al. 2013)
  SNIPS   sum w_i r_i / sum w_i                            (Swaminathan & Joachims 2015)
  DR      mean q_pi(x_i) + w_i (r_i - q(x_i, a_i))         (Dudik et al. 2011)
  SNDR    mean q_pi(x_i) + sum w_i (r_i - q_i) / sum w_i
  Switch-DR  DR whose correction is switched off where w_i > tau (the form Open
          Bandit Pipeline implements; Wang, Agarwal & Dudik 2017 switch to the
          model over every action whose weight exceeds tau)
  DRos    DR with the weight shrunk to lambda w / (w^2 + lambda) (Su, Dimakopoulou,
          Krishnamurthy & Dudik 2020, optimistic shrinkage)

Inputs are checked (`check_inputs`) when they are concrete arrays: lengths,
propensities in (0, 1], target probabilities summing to 1 over the actions,
finite rewards and estimates, actions in [0, K). Under `jit` or `vmap` the checks
are skipped; check the logs once outside (`check_inputs`) before a compiled loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bandits.validation import BanditConfigError, real

Z_95 = 1.959963984540054  # the 0.975 quantile of the standard normal
PROBABILITY_TOLERANCE = 1e-4  # |sum_a pi(a | x) - 1| allowed (float32 rounding)


class Estimate(NamedTuple):
    """An estimate of a policy's value and its 95% interval."""

    value: jax.Array
    low: jax.Array
    high: jax.Array
    std_error: jax.Array


# ---------------------------------------------------------------------------
# Checks


def _concrete(*arrays: Any) -> bool:
    return not any(isinstance(a, jax.core.Tracer) for a in arrays)


def check_event_lengths(given: Mapping[str, Any]) -> None:
    """Every input has the same, non-zero number of events n (its first axis).

    Raises:
      BanditConfigError: naming each input's length, or n = 0.
    """
    lengths = {name: values.shape[0] for name, values in given.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{k} {v}" for k, v in lengths.items())
        raise BanditConfigError(
            f"inputs must have one length n per event, got {listed}"
        )
    if lengths and next(iter(lengths.values())) == 0:
        raise BanditConfigError("the logs hold no events (n = 0)")


def check_inputs(
    reward=None, action=None, propensity=None, target=None, reward_hat=None
) -> None:
    """Raises `BanditConfigError` naming the first input that is malformed.

    Any argument may be omitted; what is given is checked against the others
    (lengths n, the number of actions K).
    """
    given = {
        name: np.asarray(value)
        for name, value in (
            ("reward", reward),
            ("action", action),
            ("propensity", propensity),
            ("target", target),
            ("reward_hat", reward_hat),
        )
        if value is not None
    }
    shapes = {
        "reward": 1,
        "action": 1,
        "propensity": 1,
        "target": 2,
        "reward_hat": 2,
    }
    for name, values in given.items():
        if values.ndim != shapes[name]:
            what = "(n,)" if shapes[name] == 1 else "(n, K)"
            raise BanditConfigError.about(
                name, f"must have shape {what}, got shape {values.shape}"
            )
    check_event_lengths(given)
    widths = {n: given[n].shape[1] for n in ("target", "reward_hat") if n in given}
    if len(set(widths.values())) > 1:
        raise BanditConfigError(
            f"target and reward_hat must have the same number of actions K, got "
            f"{widths['target']} and {widths['reward_hat']}"
        )
    for name in ("reward", "propensity", "target", "reward_hat"):
        if name in given:
            _finite(name, given[name])
    if "propensity" in given:
        p = given["propensity"]
        bad = np.flatnonzero(~((p > 0) & (p <= 1)))
        if bad.size:
            raise BanditConfigError.about(
                "propensity",
                f"must be in (0, 1], got {p[bad[0]]!r} at event {bad[0]}",
            )
    if "target" in given:
        _check_probabilities(given["target"])
    if "action" in given:
        a = given["action"]
        if not np.issubdtype(a.dtype, np.integer):
            raise BanditConfigError.about(
                "action", f"must hold integers, got dtype {a.dtype}"
            )
        if widths:
            k = next(iter(widths.values()))
            bad = np.flatnonzero((a < 0) | (a >= k))
            if bad.size:
                raise BanditConfigError.about(
                    "action",
                    f"must be in [0, {k}), got {a[bad[0]]} at event {bad[0]}",
                )


def _finite(name: str, values: np.ndarray) -> None:
    if not np.issubdtype(values.dtype, np.number) or np.issubdtype(
        values.dtype, np.complexfloating
    ):
        raise BanditConfigError.about(name, f"must be real numbers, got {values.dtype}")
    bad = np.flatnonzero(~np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1))
    if bad.size:
        raise BanditConfigError.about(
            name, f"must be finite, got a non-finite value at event {bad[0]}"
        )


def _check_probabilities(target: np.ndarray) -> None:
    bad = np.flatnonzero((target < 0).any(axis=1) | (target > 1).any(axis=1))
    if bad.size:
        raise BanditConfigError.about(
            "target", f"must hold probabilities in [0, 1], not at event {bad[0]}"
        )
    total = target.astype(np.float64).sum(axis=1)
    bad = np.flatnonzero(np.abs(total - 1.0) > PROBABILITY_TOLERANCE)
    if bad.size:
        raise BanditConfigError.about(
            "target",
            f"must sum to 1 over the actions of each event, got {total[bad[0]]:.6g} "
            f"at event {bad[0]}",
        )


def _threshold(field: str, value) -> None:
    """A positive number; +inf allowed (the estimator's limit without the option)."""
    if _concrete(value) and not (isinstance(value, float) and value == np.inf):
        real(field, value, low=0.0, low_open=True)


def _checked(reward, action, propensity, target, reward_hat=None) -> None:
    if _concrete(reward, action, propensity, target, reward_hat):
        check_inputs(reward, action, propensity, target, reward_hat)


# ---------------------------------------------------------------------------
# Building blocks


def importance_weights(action, propensity, target) -> jax.Array:
    """w_i = pi(a_i | x_i) / pi_0(a_i | x_i), (n,)."""
    taken = jnp.take_along_axis(target, action[:, None].astype(jnp.int32), axis=1)
    return taken[:, 0] / propensity


def model_value(target, reward_hat) -> jax.Array:
    """q_pi(x_i) = sum_a pi(a | x_i) q(x_i, a), (n,)."""
    return jnp.sum(target * reward_hat, axis=1)


def mean_estimate(terms: jax.Array) -> Estimate:
    """The mean of per-event terms with a normal 95% interval."""
    n = terms.shape[0]
    value = jnp.mean(terms)
    se = jnp.std(terms, ddof=1) / jnp.sqrt(n) if n > 1 else jnp.zeros_like(value)
    return Estimate(value, value - Z_95 * se, value + Z_95 * se, se)


def _ratio_estimate(numerator_terms, weights) -> Estimate:
    """sum u_i / sum w_i with a delta-method interval: the influence of event i
    is (u_i - V w_i) / mean(w)."""
    mean_w = jnp.mean(weights)
    value = jnp.sum(numerator_terms) / jnp.sum(weights)
    influence = (numerator_terms - value * weights) / mean_w
    n = weights.shape[0]
    se = jnp.std(influence, ddof=1) / jnp.sqrt(n)
    return Estimate(value, value - Z_95 * se, value + Z_95 * se, se)


def _taken(values, action):
    return jnp.take_along_axis(values, action[:, None].astype(jnp.int32), axis=1)[:, 0]


# ---------------------------------------------------------------------------
# Estimators


def dm(reward, action, propensity, target, reward_hat) -> Estimate:
    """Direct method: the reward model's value of the target policy."""
    _checked(reward, action, propensity, target, reward_hat)
    return mean_estimate(model_value(target, reward_hat))


def ips(reward, action, propensity, target) -> Estimate:
    """Inverse propensity scoring: mean w_i r_i. Unbiased when pi_0 > 0 wherever
    pi > 0."""
    _checked(reward, action, propensity, target)
    return mean_estimate(importance_weights(action, propensity, target) * reward)


def clipped_ips(reward, action, propensity, target, max_weight=100.0) -> Estimate:
    """IPS with every weight clipped at `max_weight` (M > 0): biased, lower variance."""
    _checked(reward, action, propensity, target)
    _threshold("max_weight", max_weight)
    w = jnp.minimum(importance_weights(action, propensity, target), max_weight)
    return mean_estimate(w * reward)


def snips(reward, action, propensity, target) -> Estimate:
    """Self-normalised IPS: sum w_i r_i / sum w_i (consistent, bias O(1/n))."""
    _checked(reward, action, propensity, target)
    w = importance_weights(action, propensity, target)
    return _ratio_estimate(w * reward, w)


def dr(reward, action, propensity, target, reward_hat) -> Estimate:
    """Doubly robust: DM plus the importance-weighted residual of the model."""
    _checked(reward, action, propensity, target, reward_hat)
    w = importance_weights(action, propensity, target)
    residual = reward - _taken(reward_hat, action)
    return mean_estimate(model_value(target, reward_hat) + w * residual)


def sndr(reward, action, propensity, target, reward_hat) -> Estimate:
    """Self-normalised DR: DM plus sum w_i (r_i - q_i) / sum w_i."""
    _checked(reward, action, propensity, target, reward_hat)
    w = importance_weights(action, propensity, target)
    base = model_value(target, reward_hat)
    residual = reward - _taken(reward_hat, action)
    correction = _ratio_estimate(w * residual, w)
    value = jnp.mean(base) + correction.value
    # Influence of event i: (q_pi,i - mean q_pi) + the ratio's influence.
    n = w.shape[0]
    influence = (base - jnp.mean(base)) + (
        w * residual - correction.value * w
    ) / jnp.mean(w)
    se = jnp.std(influence, ddof=1) / jnp.sqrt(n)
    return Estimate(value, value - Z_95 * se, value + Z_95 * se, se)


def switch_dr(reward, action, propensity, target, reward_hat, tau=100.0) -> Estimate:
    """Switch-DR: DR with its correction dropped for events whose weight exceeds
    `tau` (> 0); tau = inf is DR, tau -> 0 is DM."""
    _checked(reward, action, propensity, target, reward_hat)
    _threshold("tau", tau)
    w = importance_weights(action, propensity, target)
    residual = reward - _taken(reward_hat, action)
    kept = jnp.where(w <= tau, w, 0.0)
    return mean_estimate(model_value(target, reward_hat) + kept * residual)


def dros(reward, action, propensity, target, reward_hat, shrinkage=1.0) -> Estimate:
    """DR with optimistic shrinkage: the weight w becomes lambda w / (w^2 + lambda)
    (lambda = `shrinkage` > 0; lambda -> inf is DR, lambda -> 0 is DM)."""
    _checked(reward, action, propensity, target, reward_hat)
    _threshold("shrinkage", shrinkage)
    w = importance_weights(action, propensity, target)
    lam = jnp.asarray(shrinkage, w.dtype)
    shrunk = jnp.where(jnp.isinf(lam), w, lam * w / (w * w + lam))
    residual = reward - _taken(reward_hat, action)
    return mean_estimate(model_value(target, reward_hat) + shrunk * residual)


ESTIMATORS: dict[str, Callable[..., Estimate]] = {
    "dm": dm,
    "ips": ips,
    "clipped_ips": clipped_ips,
    "snips": snips,
    "dr": dr,
    "sndr": sndr,
    "switch_dr": switch_dr,
    "dros": dros,
}
NEEDS_MODEL = frozenset({"dm", "dr", "sndr", "switch_dr", "dros"})


def estimate_all(
    reward,
    action,
    propensity,
    target,
    reward_hat=None,
    names=None,
    **options,
) -> dict[str, Estimate]:
    """Every estimator in `names` (default: all that the inputs allow) on one log.

    `options` go to the estimators that take them: `max_weight` (clipped IPS),
    `tau` (Switch-DR), `shrinkage` (DRos).
    """
    if names is None:
        names = [
            n for n in ESTIMATORS if reward_hat is not None or n not in NEEDS_MODEL
        ]
    unknown = [n for n in names if n not in ESTIMATORS]
    if unknown:
        raise BanditConfigError(
            f"unknown estimator {unknown[0]!r}; choose from "
            + ", ".join(map(repr, ESTIMATORS))
        )
    if reward_hat is None and any(n in NEEDS_MODEL for n in names):
        raise BanditConfigError.about(
            "reward_hat", f"is needed by {sorted(set(names) & NEEDS_MODEL)}"
        )
    _checked(reward, action, propensity, target, reward_hat)
    keywords = {"clipped_ips": "max_weight", "switch_dr": "tau", "dros": "shrinkage"}
    unused = set(options) - set(keywords.values())
    if unused:
        raise BanditConfigError(
            f"unknown estimator option {sorted(unused)[0]!r}; the options are "
            "'max_weight', 'tau' and 'shrinkage'"
        )
    out = {}
    for name in names:
        fn = ESTIMATORS[name]
        kwargs = {}
        if name in keywords and keywords[name] in options:
            kwargs[keywords[name]] = options[keywords[name]]
        if name in NEEDS_MODEL:
            out[name] = fn(reward, action, propensity, target, reward_hat, **kwargs)
        else:
            out[name] = fn(reward, action, propensity, target, **kwargs)
    return out


# ---------------------------------------------------------------------------
# Bootstrap


def bootstrap(
    estimator: Callable[..., Estimate],
    key: jax.Array,
    reward,
    action,
    propensity,
    target,
    reward_hat=None,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    **options,
) -> Estimate:
    """`estimator`'s value with a percentile interval over `num_resamples`
    resamples of the events (with replacement); std_error is the bootstrap
    standard deviation."""
    _checked(reward, action, propensity, target, reward_hat)
    real("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    if isinstance(num_resamples, bool) or not isinstance(num_resamples, int):
        raise BanditConfigError.about(
            "num_resamples", f"must be an integer, got {num_resamples!r}"
        )
    if num_resamples < 2:
        raise BanditConfigError.about(
            "num_resamples", f"must be at least 2, got {num_resamples}"
        )
    arrays = [reward, action, propensity, target]
    if reward_hat is not None:
        arrays.append(reward_hat)
    arrays = [jnp.asarray(a) for a in arrays]
    n = arrays[0].shape[0]

    def one(k):
        rows = jax.random.randint(k, (n,), 0, n)
        return estimator(*[a[rows] for a in arrays], **options).value

    values = jax.lax.map(one, jax.random.split(key, num_resamples))
    point = estimator(*arrays, **options).value
    alpha = (1.0 - confidence) / 2.0
    low, high = jnp.quantile(values, jnp.asarray([alpha, 1.0 - alpha]))
    return Estimate(point, low, high, jnp.std(values, ddof=1))
