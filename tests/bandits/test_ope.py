"""Off-policy estimators: hand-written NumPy formulas, statistics over log
replicates against an exact value, and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bandits import ope
from bandits.validation import BanditConfigError

Z = 1.959963984540054


def small_log(seed=0, n=9, k=3):
    rng = np.random.default_rng(seed)
    action = rng.integers(0, k, n).astype(np.int32)
    logging = rng.dirichlet(np.ones(k), n).astype(np.float32)
    propensity = logging[np.arange(n), action]
    target = rng.dirichlet(np.ones(k), n).astype(np.float32)
    reward = rng.integers(0, 2, n).astype(np.float32)
    reward_hat = rng.uniform(0, 1, (n, k)).astype(np.float32)
    return reward, action, propensity, target, reward_hat


def normal_interval(terms):
    terms = np.asarray(terms, np.float64)
    se = terms.std(ddof=1) / np.sqrt(terms.size)
    return terms.mean(), se


# ---------------------------------------------------------------------------
# Golden: each estimator against its formula written out in NumPy


def numpy_estimates(reward, action, propensity, target, reward_hat, m, tau, lam):
    """(value, standard error) per estimator, written from the definitions."""
    r, a, p = (np.asarray(v, np.float64) for v in (reward, action, propensity))
    pi, q = np.asarray(target, np.float64), np.asarray(reward_hat, np.float64)
    n = r.size
    rows = np.arange(n)
    a = a.astype(int)
    w = pi[rows, a] / p
    q_pi = (pi * q).sum(axis=1)
    q_a = q[rows, a]
    out = {}
    out["dm"] = normal_interval(q_pi)
    out["ips"] = normal_interval(w * r)
    out["clipped_ips"] = normal_interval(np.minimum(w, m) * r)
    v = (w * r).sum() / w.sum()
    infl = (w * r - v * w) / w.mean()
    out["snips"] = (v, infl.std(ddof=1) / np.sqrt(n))
    out["dr"] = normal_interval(q_pi + w * (r - q_a))
    c = (w * (r - q_a)).sum() / w.sum()
    infl = (q_pi - q_pi.mean()) + (w * (r - q_a) - c * w) / w.mean()
    out["sndr"] = (q_pi.mean() + c, infl.std(ddof=1) / np.sqrt(n))
    out["switch_dr"] = normal_interval(q_pi + np.where(w <= tau, w, 0.0) * (r - q_a))
    out["dros"] = normal_interval(q_pi + lam * w / (w**2 + lam) * (r - q_a))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_estimator_matches_its_numpy_formula(seed):
    """float32 inputs, float32 arithmetic: 1e-5 relative covers the rounding of
    sums over 9 events."""
    log = small_log(seed)
    options = dict(max_weight=1.5, tau=2.0, shrinkage=0.7)
    got = ope.estimate_all(*log, **options)
    want = numpy_estimates(*log, m=1.5, tau=2.0, lam=0.7)
    assert set(got) == set(want) == set(ope.ESTIMATORS)
    for name, (value, se) in want.items():
        est = got[name]
        np.testing.assert_allclose(float(est.value), value, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(float(est.std_error), se, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(float(est.low), value - Z * se, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            float(est.high), value + Z * se, rtol=1e-4, atol=1e-5
        )


def test_the_options_reach_their_limits():
    """Switch-DR and DRos are DR at tau = lambda = inf and DM as they go to 0;
    clipped IPS is IPS when no weight reaches the clip."""
    log = small_log(3)
    dr = ope.dr(*log).value
    dm = ope.dm(*log).value
    assert float(ope.switch_dr(*log, tau=np.inf).value) == pytest.approx(float(dr))
    assert float(ope.dros(*log, shrinkage=np.inf).value) == pytest.approx(float(dr))
    assert float(ope.switch_dr(*log, tau=1e-9).value) == pytest.approx(float(dm))
    assert float(ope.dros(*log, shrinkage=1e-12).value) == pytest.approx(
        float(dm), abs=1e-6
    )
    ips = ope.ips(*log[:4]).value
    assert float(ope.clipped_ips(*log[:4], max_weight=1e9).value) == pytest.approx(
        float(ips)
    )


def test_estimators_are_jittable_and_vmappable():
    log = [jnp.asarray(v) for v in small_log(4)]
    eager = ope.dr(*log)
    jitted = jax.jit(ope.dr)(*log)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-6)
    batched = jax.vmap(ope.dr)(*[jnp.stack([v, v]) for v in log])
    np.testing.assert_allclose(np.asarray(batched.value), float(eager.value), rtol=1e-6)
    # traced options
    values = jax.vmap(lambda t: ope.switch_dr(*log, tau=t).value)(jnp.array([1.0, 2.0]))
    assert values.shape == (2,)


def test_bootstrap_interval_contains_the_estimate_and_is_reproducible():
    log = small_log(5, n=200)
    key = jax.random.key(0)
    a = ope.bootstrap(ope.dr, key, *log, num_resamples=300)
    b = ope.bootstrap(ope.dr, key, *log, num_resamples=300)
    assert a == b or all(bool(jnp.all(x == y)) for x, y in zip(a, b, strict=True))
    assert float(a.low) < float(a.value) < float(a.high)
    assert float(a.value) == pytest.approx(float(ope.dr(*log).value))
    # the bootstrap and the normal standard error agree within 25% at n = 200
    assert float(a.std_error) == pytest.approx(float(ope.dr(*log).std_error), rel=0.25)


# ---------------------------------------------------------------------------
# Statistics over replicates, against the exact value

NUM_CONTEXTS, NUM_ACTIONS = 20, 5


def problem():
    """A finite context distribution (uniform over 20 contexts) with Bernoulli
    rewards: the value of any policy is an exact finite sum."""
    rng = np.random.default_rng(11)
    mu = rng.uniform(0.05, 0.6, (NUM_CONTEXTS, NUM_ACTIONS))
    logits = 4.0 * mu + rng.normal(0, 0.5, mu.shape)
    target = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = float((target * mu).sum(axis=1).mean())
    return mu.astype(np.float32), target.astype(np.float32), truth


def replicate_estimates(n, replicates, model_noise, seed=0):
    """All estimators on `replicates` independent logs of n events from the
    uniform logger, one compiled program (chunks of 100 replicates)."""
    mu, target_table, truth = problem()
    mu_j, target_j = jnp.asarray(mu), jnp.asarray(target_table)
    noise = np.random.default_rng(5).normal(0, 1, mu.shape).astype(np.float32)
    reward_hat_table = jnp.asarray(np.clip(mu + model_noise * noise, 0, 1))

    def one(key):
        k_ctx, k_act, k_rew = jax.random.split(key, 3)
        ctx = jax.random.randint(k_ctx, (n,), 0, NUM_CONTEXTS)
        action = jax.random.randint(k_act, (n,), 0, NUM_ACTIONS)
        reward = jax.random.bernoulli(k_rew, mu_j[ctx, action]).astype(jnp.float32)
        propensity = jnp.full((n,), 1.0 / NUM_ACTIONS)
        out = ope.estimate_all(
            reward, action, propensity, target_j[ctx], reward_hat_table[ctx]
        )
        return {k: jnp.stack(list(v)) for k, v in out.items()}

    keys = jax.random.split(jax.random.key(seed), replicates)
    out = jax.jit(lambda ks: jax.lax.map(one, ks, batch_size=100))(keys)
    return {k: np.asarray(v, np.float64) for k, v in out.items()}, truth


@pytest.fixture(scope="module")
def at_ten_thousand():
    return replicate_estimates(10_000, 2_000, model_noise=0.05)


def test_ips_and_dr_are_unbiased(at_ten_thousand):
    """Mean over 2,000 replicates within 3 standard errors of the exact value
    (a false alarm rate of 0.3% per estimator for an unbiased one)."""
    out, truth = at_ten_thousand
    for name in ("ips", "dr"):
        values = out[name][:, 0]
        se = values.std(ddof=1) / np.sqrt(values.size)
        assert abs(values.mean() - truth) < 3 * se, (name, values.mean(), truth, se)


def test_intervals_cover_the_truth_at_the_nominal_rate(at_ten_thousand):
    """95% intervals cover the exact value in 93-97% of 2,000 replicates at
    n = 10^4 (the binomial standard deviation of the rate is 0.5%, so this is
    +/- 4 of them)."""
    out, truth = at_ten_thousand
    for name in ("ips", "snips", "dr", "sndr"):
        _, low, high, _ = out[name].T
        coverage = np.mean((low <= truth) & (truth <= high))
        assert 0.93 <= coverage <= 0.97, (name, coverage)


def test_dr_has_lower_variance_than_ips_with_a_good_model(at_ten_thousand):
    """With a model within 0.05 of the truth DR removes the variance that IPS
    gets from the spread of mu over actions; the Bernoulli noise of the reward
    stays in both, so the gain is a third here (0.67 measured). A sample variance
    over 2,000 replicates is within about 3% of the true one, so 0.8 is far from
    both the measured ratio and 1."""
    out, _ = at_ten_thousand
    assert out["dr"][:, 0].var() < 0.8 * out["ips"][:, 0].var()


def test_snips_bias_shrinks_with_the_log_size():
    """SNIPS is biased at O(1/n): its mean error over 20,000 replicates at n = 5
    is more than 3 standard errors from zero, and over 4,000 replicates at
    n = 2,000 it is within 3 of them and smaller."""
    small, truth = replicate_estimates(5, 20_000, model_noise=0.05, seed=1)
    large, _ = replicate_estimates(2_000, 4_000, model_noise=0.05, seed=2)
    bias_small = small["snips"][:, 0].mean() - truth
    bias_large = large["snips"][:, 0].mean() - truth
    se_small = small["snips"][:, 0].std(ddof=1) / np.sqrt(20_000)
    se_large = large["snips"][:, 0].std(ddof=1) / np.sqrt(4_000)
    assert abs(bias_small) > 3 * se_small, (bias_small, se_small)
    assert abs(bias_large) < 3 * se_large, (bias_large, se_large)
    assert abs(bias_large) < abs(bias_small)


# ---------------------------------------------------------------------------
# Bad input: named before any compute


def _set(values, event, value):
    values = values.copy()
    values[event] = value
    return values


# (argument index in (reward, action, propensity, target, reward_hat), change)
BAD_INPUTS = {
    "propensity 0": (2, lambda p: _set(p, 4, 0.0)),
    "propensity 1.5": (2, lambda p: _set(p, 4, 1.5)),
    "target sums to 1.1": (3, lambda t: t * 1.1),
    "NaN reward": (0, lambda r: _set(r, 2, np.nan)),
    "infinite reward_hat": (4, lambda q: _set(q, 0, np.inf)),
    "action out of range": (1, lambda a: a + 3),
    "float actions": (1, lambda a: a.astype(np.float32)),
}
FIELDS = ["reward", "action", "propensity", "target", "reward_hat"]


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_names_the_field(case):
    index, change = BAD_INPUTS[case]
    log = list(small_log(6))
    log[index] = change(log[index])
    with pytest.raises(BanditConfigError) as err:
        ope.dr(*log)
    assert err.value.field == FIELDS[index], str(err.value)


def test_mismatched_lengths_are_refused():
    reward, action, propensity, target, reward_hat = small_log(7)
    with pytest.raises(BanditConfigError, match="one length n per event"):
        ope.ips(reward[:5], action, propensity, target)
    with pytest.raises(BanditConfigError, match="same number of actions"):
        ope.dr(reward, action, propensity, target, reward_hat[:, :2])


def test_estimator_options_are_checked():
    log = small_log(8)
    with pytest.raises(BanditConfigError) as err:
        ope.clipped_ips(*log[:4], max_weight=0.0)
    assert err.value.field == "max_weight"
    with pytest.raises(BanditConfigError) as err:
        ope.switch_dr(*log, tau=float("nan"))
    assert err.value.field == "tau"
    with pytest.raises(BanditConfigError, match="unknown estimator 'ipw'"):
        ope.estimate_all(*log, names=["ipw"])
    with pytest.raises(BanditConfigError) as err:
        ope.estimate_all(*log[:4], names=["dr"])
    assert err.value.field == "reward_hat"
