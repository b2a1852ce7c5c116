"""Slate off-policy estimators (`bandits.slate_ope`) and slate logs
(`envs.slate_logged`): the mixture propensities against enumeration of every
slate, golden values, the pseudo-inverse against a float64 NumPy solve,
unbiasedness against the exact value over hundreds of log replicates (one
compiled program each), and bad input."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from bandits import ope, slate_ope
from bandits.types import Observation
from bandits.validation import BanditConfigError
from envs import slate_logged
from envs.slate import optimal_slate

K, L, D = 5, 3, 3
KAPPA = (1.0, 0.6, 0.3)
REPLICATES, EVENTS = 400, 200


# ---------------------------------------------------------------------------
# Mixture propensities against every slate


def test_mixture_probabilities_match_enumeration_of_every_slate():
    """Over all 60 ordered slates of 3 out of 5 items (one masked): slate
    probabilities sum to 1 and vanish on masked items; position marginals,
    prefix probabilities and the Gram matrix are the sums they define."""
    mask = jnp.asarray([True, True, False, True, True])
    greedy = jnp.asarray([3, 0, 4], jnp.int32)
    epsilon = 0.3
    slates = np.asarray(list(itertools.permutations(range(K), L)), np.int32)
    prefix = jax.vmap(
        lambda s: slate_ope.mixture_prefix_probabilities(mask, greedy, epsilon, s)
    )(jnp.asarray(slates))
    probs = np.asarray(prefix[:, -1], np.float64)
    assert probs.sum() == pytest.approx(1.0, abs=1e-6)
    assert (probs[(slates == 2).any(axis=1)] == 0).all()
    np.testing.assert_allclose(
        probs[[tuple(s) for s in slates.tolist()].index((3, 0, 4))],
        epsilon / 24 + (1 - epsilon),
        rtol=1e-6,
    )
    marginals = np.zeros((L, K))
    gram = np.zeros((L * K, L * K))
    for s, p in zip(slates, probs, strict=True):
        marginals[np.arange(L), s] += p
        flat = np.zeros(L * K)
        flat[np.arange(L) * K + s] = 1.0
        gram += p * np.outer(flat, flat)
    np.testing.assert_allclose(
        slate_ope.mixture_marginals(mask, greedy, epsilon), marginals, atol=1e-6
    )
    np.testing.assert_allclose(
        slate_ope.mixture_gram(mask, greedy, epsilon), gram, atol=1e-6
    )
    for length in range(1, L + 1):
        for i, s in enumerate(slates[:10]):
            sharing = (slates[:, :length] == s[:length]).all(axis=1)
            assert float(prefix[i, length - 1]) == pytest.approx(
                probs[sharing].sum(), abs=1e-6
            )


# ---------------------------------------------------------------------------
# Golden values


def test_independent_ips_and_rips_golden():
    """Two events of L = 2 over K = 3, written out by hand."""
    clicks = jnp.asarray([[1.0, 0.0], [0.0, 1.0]])
    slate = jnp.asarray([[0, 1], [2, 0]], jnp.int32)
    propensity = jnp.asarray([[0.5, 0.25], [0.2, 0.5]])
    target = jnp.asarray(
        [
            [[0.6, 0.4, 0.0], [0.0, 0.5, 0.5]],
            [[0.1, 0.1, 0.8], [1.0, 0.0, 0.0]],
        ]
    )
    # terms: 0.6 / 0.5 * 1 + 0.5 / 0.25 * 0 = 1.2; 0 + 1.0 / 0.5 * 1 = 2.0
    estimate = slate_ope.independent_ips(clicks, slate, propensity, target)
    assert float(estimate.value) == pytest.approx(1.6)
    assert float(estimate.std_error) == pytest.approx(
        np.std([1.2, 2.0], ddof=1) / 2**0.5
    )
    prefix_propensity = jnp.asarray([[0.5, 0.1], [0.2, 0.05]])
    target_prefix = jnp.asarray([[0.6, 0.3], [0.8, 0.8]])
    # terms: 0.6 / 0.5 = 1.2; 0.8 / 0.05 = 16
    estimate = slate_ope.rips(clicks, prefix_propensity, target_prefix)
    assert float(estimate.value) == pytest.approx(8.6)
    assert float(estimate.low) < 8.6 < float(estimate.high)


def test_pseudo_inverse_with_one_position_is_ips():
    rng = np.random.default_rng(0)
    n = 7
    logging = rng.dirichlet(np.ones(K), n).astype(np.float32)
    action = rng.integers(0, K, n).astype(np.int32)
    target = rng.dirichlet(np.ones(K), n).astype(np.float32)
    reward = rng.integers(0, 2, n).astype(np.float32)
    gram = jax.vmap(jnp.diag)(jnp.asarray(logging))
    pi = slate_ope.pseudo_inverse(reward, action[:, None], gram, target[:, None, :])
    expected = ope.ips(reward, action, logging[np.arange(n), action], target)
    np.testing.assert_allclose(pi.value, expected.value, rtol=1e-5)
    np.testing.assert_allclose(pi.std_error, expected.std_error, rtol=1e-4)


def test_pseudo_inverse_weights_against_a_float64_solve():
    """q^T Gamma^+ 1_s in float32 against NumPy's float64 pinv, for uniform and
    epsilon-greedy loggers with a masked item (singular Gamma)."""
    mask = jnp.asarray([True, True, True, False, True])
    slates = jnp.asarray([[0, 1, 4], [4, 2, 0], [1, 0, 2]], jnp.int32)
    target = jax.nn.one_hot(jnp.asarray([[0, 1, 2], [4, 2, 0], [2, 1, 0]]), K)
    for epsilon, greedy in ((1.0, [0, 1, 2]), (0.4, [4, 2, 0])):
        gram = slate_ope.mixture_gram(mask, jnp.asarray(greedy, jnp.int32), epsilon)
        grams = jnp.broadcast_to(gram, (3, L * K, L * K))
        weights = slate_ope.pseudo_inverse_weights(slates, grams, target)
        inverse = np.linalg.pinv(np.asarray(gram, np.float64), hermitian=True)
        for i in range(3):
            flat = np.zeros(L * K)
            flat[np.arange(L) * K + np.asarray(slates[i])] = 1.0
            q = np.asarray(target[i], np.float64).reshape(-1)
            assert float(weights[i]) == pytest.approx(q @ inverse @ flat, abs=2e-4)


# ---------------------------------------------------------------------------
# Unbiasedness over log replicates


def _replicates(click_model, logger, target_epsilon, **env_kwargs):
    """Per replicate: estimate minus the exact value of the target over that
    replicate's logged contexts, for each estimator (R replicates of n events,
    one compiled program). The target is the epsilon-uniform mixture around
    the optimal slate reversed (worst of the top L first)."""
    env, params = envs.make(
        "LinearSlate-v0",
        num_arms=K,
        dim=D,
        slate_size=L,
        click_model=click_model,
        **env_kwargs,
    )

    def one(key):
        log = slate_logged.generate(key, env, params, logger, EVENTS)
        best = jax.vmap(optimal_slate, in_axes=(0, 0, None))(
            log.attraction, log.obs.mask, L
        )
        reverse = best[:, ::-1]
        target = jax.vmap(slate_ope.mixture_marginals, in_axes=(0, 0, None))(
            log.obs.mask, reverse, target_epsilon
        )
        target_prefix = jax.vmap(
            slate_ope.mixture_prefix_probabilities, in_axes=(0, 0, None, 0)
        )(log.obs.mask, reverse, target_epsilon, log.slate)
        gram = jax.vmap(slate_ope.mixture_gram, in_axes=(0, 0, None))(
            log.obs.mask, log.greedy, log.epsilon
        )
        if click_model == "pbm":  # linear in the position marginals
            kappa = params.kappa[:, None]
            value = jnp.mean(jnp.sum(kappa * target * log.attraction[:, None], (1, 2)))
        else:  # the expected number of clicks (the reward, for the cascade)
            assert target_epsilon == 0.0
            value = slate_logged.policy_value(
                env, params, log, reverse, total_clicks=True
            )
        estimates = {
            "independent_ips": slate_ope.independent_ips(
                log.clicks, log.slate, log.position_propensity, target
            ),
            "rips": slate_ope.rips(log.clicks, log.prefix_propensity, target_prefix),
            "pseudo_inverse": slate_ope.pseudo_inverse(
                log.reward, log.slate, gram, target
            ),
        }
        return {name: e.value - value for name, e in estimates.items()}, value

    keys = jax.random.split(jax.random.key(0), REPLICATES)
    errors, values = jax.jit(jax.vmap(one))(keys)
    return {k: np.asarray(v, np.float64) for k, v in errors.items()}, values


def _z(errors):
    return errors.mean() / (errors.std(ddof=1) / np.sqrt(errors.size))


def test_pbm_estimators_are_unbiased():
    """Under the PBM all three are unbiased for a stochastic target (epsilon
    0.3 around the reversed optimal slate) from epsilon-greedy logs (epsilon
    0.5 around a noisy oracle): the mean error over 400 replicates of 200
    events is within 3 standard errors of 0."""
    logger = slate_logged.epsilon_greedy(0.5, slate_logged.noisy_oracle(0.3))
    errors, values = _replicates("pbm", logger, 0.3, kappa=KAPPA)
    assert 0.3 < float(values.mean()) < 2.0
    for name, error in errors.items():
        assert abs(_z(error)) < 3.0, (name, error.mean(), _z(error))


def test_rips_is_unbiased_under_the_cascade_and_independent_ips_is_not():
    """Cascade clicks from uniformly random slates, a deterministic target
    (the reversed optimal slate): RIPS within 3 standard errors of the exact
    value; independent IPS, which assumes a position's click ignores the items
    above it, is off by more than 5 standard errors (it counts clicks the
    target's user would never reach)."""
    errors, _ = _replicates("cascade", slate_logged.uniform(), 0.0)
    assert abs(_z(errors["rips"])) < 3.0, _z(errors["rips"])
    assert _z(errors["independent_ips"]) > 5.0


def test_rips_estimates_the_expected_clicks_under_the_dcm():
    """Under the DCM a position's click depends on the items above it, so RIPS
    is unbiased for the expected number of clicks (not for the DCM's reward,
    a satisfied user): uniform logs, termination (0.7, 0.5, 0.3)."""
    errors, _ = _replicates(
        "dcm", slate_logged.uniform(), 0.0, termination=(0.7, 0.5, 0.3)
    )
    assert abs(_z(errors["rips"])) < 3.0, _z(errors["rips"])


def test_policy_value_golden():
    """Attractions (0.5, 0.2, 0.4, 0.1, 0.3), target slate (0, 2, 4), cascade:
    1 - 0.5 * 0.6 * 0.7 = 0.79 both as reward and as expected clicks; PBM with
    kappa (1, 0.5, 0.25): 0.5 + 0.2 + 0.075 = 0.775."""
    attraction = jnp.asarray([[0.5, 0.2, 0.4, 0.1, 0.3]])
    target = jnp.asarray([[0, 2, 4]], jnp.int32)
    observed = Observation(
        context=jnp.zeros((1, D)),
        arms=jnp.zeros((1, K, 0)),
        mask=jnp.ones((1, K), bool),
    )
    for model, kwargs, expected in (
        ("cascade", {}, 0.79),
        ("pbm", {"kappa": (1.0, 0.5, 0.25)}, 0.775),
    ):
        env, params = envs.make(
            "LinearSlate-v0",
            num_arms=K,
            dim=D,
            slate_size=L,
            click_model=model,
            **kwargs,
        )
        log = slate_logged.SlateLog(
            obs=observed,
            slate=target,
            clicks=jnp.zeros((1, L)),
            reward=jnp.zeros(1),
            propensity=jnp.ones(1),
            position_propensity=jnp.ones((1, L)),
            prefix_propensity=jnp.ones((1, L)),
            greedy=target,
            epsilon=jnp.float32(0.0),
            attraction=attraction,
        )
        for clicks in (False, True):
            value = slate_logged.policy_value(env, params, log, target, clicks)
            assert float(value) == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------------------
# Logs and contracts


_generate = jax.jit(slate_logged.generate, static_argnums=(1, 3, 4))


@pytest.fixture(scope="module")
def small_log():
    env, params = envs.make(
        "LinearSlate-v0", num_arms=K, dim=D, slate_size=L, click_model="cascade"
    )
    policy = slate_logged.epsilon_greedy(0.25, slate_logged.noisy_oracle(0.1))
    return (
        env,
        params,
        _generate(jax.random.key(3), env, params, policy, 64),
    )


def test_generated_logs_record_exact_propensities(small_log):
    env, params, log = small_log
    assert log.slate.shape == (64, L) and log.clicks.shape == (64, L)
    assert log.attraction.shape == (64, K) and log.obs.context.shape == (64, D)
    for i in range(64):
        slate = log.slate[i]
        assert len(set(np.asarray(slate).tolist())) == L
        prefix = slate_ope.mixture_prefix_probabilities(
            log.obs.mask[i], log.greedy[i], 0.25, slate
        )
        np.testing.assert_allclose(log.prefix_propensity[i], prefix)
        np.testing.assert_allclose(log.propensity[i], prefix[-1])
        marginals = slate_ope.mixture_marginals(log.obs.mask[i], log.greedy[i], 0.25)
        np.testing.assert_allclose(
            log.position_propensity[i], marginals[np.arange(L), slate]
        )
    greedy_share = float(np.mean(np.all(log.slate == log.greedy, axis=1)))
    assert 0.6 < greedy_share < 0.95  # 0.75 + 0.25 / 60
    again = _generate(
        jax.random.key(3),
        env,
        params,
        slate_logged.epsilon_greedy(0.25, slate_logged.noisy_oracle(0.1)),
        64,
    )
    for a, b in zip(jax.tree.leaves(log), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)


def test_estimators_jit_and_vmap_equal_eager(small_log):
    _, _, log = small_log
    target = jax.nn.one_hot(log.greedy, K)
    gram = jax.vmap(slate_ope.mixture_gram, in_axes=(0, 0, None))(
        log.obs.mask, log.greedy, 0.25
    )
    args = (log.reward, log.slate, gram, target)
    eager = slate_ope.pseudo_inverse(*args)
    jitted = jax.jit(slate_ope.pseudo_inverse)(*args)
    np.testing.assert_allclose(eager, jitted, rtol=1e-6)
    halves = [jax.tree.map(lambda x: x.reshape(2, 32, *x.shape[1:]), a) for a in args]
    mapped = jax.vmap(slate_ope.pseudo_inverse)(*halves)
    for half in range(2):
        one = slate_ope.pseudo_inverse(*[a[half] for a in halves])
        np.testing.assert_allclose(mapped.value[half], one.value, rtol=1e-6)


@pytest.mark.parametrize(
    ("estimator", "kwargs", "message"),
    [
        (
            "independent_ips",
            {"propensity": np.zeros((2, 2))},
            r"propensity must be in \(0, 1\]",
        ),
        ("independent_ips", {"clicks": np.ones((3, 2))}, "one length n per event"),
        ("independent_ips", {"clicks": np.ones((2, 3))}, "one number of positions L"),
        ("independent_ips", {"slate": np.asarray([[0, 7], [1, 0]])}, "items in"),
        ("independent_ips", {"target": np.full((2, 2, 3), 2.0)}, "target must hold"),
        ("rips", {"clicks": np.full((2, 2), np.nan)}, "clicks must be finite"),
        ("pseudo_inverse", {"gram": np.ones((2, 4, 4))}, r"gram must have shape"),
        ("pseudo_inverse", {"reward": np.ones((2, 1))}, "reward must have 1 axes"),
    ],
)
def test_bad_input_names_the_field(estimator, kwargs, message):
    good = {
        "clicks": np.ones((2, 2), np.float32),
        "reward": np.ones(2, np.float32),
        "slate": np.asarray([[0, 1], [2, 0]], np.int32),
        "propensity": np.full((2, 2), 0.5, np.float32),
        "target": np.full((2, 2, 3), 1 / 3, np.float32),
        "prefix_propensity": np.full((2, 2), 0.5, np.float32),
        "target_prefix": np.full((2, 2), 0.5, np.float32),
        "gram": np.ones((2, 6, 6), np.float32),
    }
    names = {
        "independent_ips": ("clicks", "slate", "propensity", "target"),
        "rips": ("clicks", "prefix_propensity", "target_prefix"),
        "pseudo_inverse": ("reward", "slate", "gram", "target"),
    }[estimator]
    arguments = {name: kwargs.get(name, good[name]) for name in names}
    with pytest.raises(BanditConfigError, match=message):
        slate_ope.SLATE_ESTIMATORS[estimator](**arguments)


def test_generate_refuses_single_item_envs_and_empty_logs():
    env, params = envs.make("Linear-v0", num_arms=K, dim=D)
    with pytest.raises(BanditConfigError, match="env must be a slate env"):
        slate_logged.generate(jax.random.key(0), env, params, slate_logged.uniform(), 5)
    slate_env, slate_params = envs.make("LinearSlate-v0")
    with pytest.raises(BanditConfigError, match="num_events"):
        slate_logged.generate(
            jax.random.key(0), slate_env, slate_params, slate_logged.uniform(), 0
        )
    with pytest.raises(BanditConfigError, match="epsilon"):
        slate_logged.epsilon_greedy(1.5, slate_logged.noisy_oracle())
