"""Contracts of the exploration rules in `agents.exploration`.

Golden values on tiny hand-computed beliefs; `probs` is a distribution that is 0
on masked arms; `sample` frequencies over 4,000 fixed keys match `probs`; the
deterministic rules ignore the key; `jit(f) == f`.

Statistical tolerance: with n = 4,000 draws an empirical frequency has standard
error sqrt(p (1 - p) / n) <= 0.0079; the checks allow 0.04 (about 5 standard
errors, or 3.6 for the difference of two independent Monte Carlo estimates).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.exploration import (
    UCB,
    EnsembleChoice,
    EpsilonGreedy,
    GaussianScores,
    GaussianWeights,
    Greedy,
    MemberScores,
    Thompson,
    masked_argmax,
    point_estimate,
)

DRAWS = 4000
TOLERANCE = 0.04

MEAN = jnp.array([0.1, 0.9, 0.5, 0.2, 0.45])
WIDTH = jnp.array([0.3, 0.1, 0.05, 0.4, 0.2])
MASK = jnp.array([True, False, True, True, True])
FEATURES = jnp.array(
    [[1.0, 0.0, 0.5], [0.0, 1.0, 0.0], [0.5, 0.5, 0.5], [1.0, -1.0, 0.0], [0.2, 0, 1]]
)
W_HAT = jnp.array([0.2, 0.6, 0.1])
ROOT = jnp.array([[0.5, 0.1, 0.0], [0.0, 0.4, -0.2], [0.0, 0.0, 0.3]])
MEMBERS = jnp.array(
    [
        [0.1, 0.9, 0.5, 0.2, 0.0],  # greedy among allowed: 2
        [0.8, 0.9, 0.5, 0.2, 0.0],  # 0
        [0.1, 0.9, 0.5, 0.7, 0.0],  # 3
        [0.1, 0.9, 0.6, 0.2, 0.0],  # 2
    ]
)

CASES = {
    "greedy": (Greedy(), MEAN),
    "greedy-scores": (Greedy(), GaussianScores(MEAN, WIDTH)),
    "greedy-weights": (Greedy(), GaussianWeights(FEATURES, W_HAT, ROOT)),
    "epsilon": (EpsilonGreedy(0.3), MEAN),
    "epsilon-divide-last": (EpsilonGreedy(0.3, divide_last=True), MEAN),
    "ucb-scores": (UCB(2.0), GaussianScores(MEAN, WIDTH)),
    "ucb-weights": (UCB(1.0), GaussianWeights(FEATURES, W_HAT, ROOT)),
    "thompson-scores": (Thompson(1.0, samples=DRAWS), GaussianScores(MEAN, WIDTH)),
    "thompson-weights": (
        Thompson(1.0, samples=DRAWS),
        GaussianWeights(FEATURES, W_HAT, ROOT),
    ),
    "thompson-weights-batched": (
        Thompson(1.0, samples=DRAWS, batched_probs=True),
        GaussianWeights(FEATURES, W_HAT, ROOT),
    ),
    "ensemble": (EnsembleChoice(4), MemberScores.stacked(MEMBERS)),
}
DETERMINISTIC = (
    "greedy",
    "greedy-scores",
    "greedy-weights",
    "ucb-scores",
    "ucb-weights",
)


def _frequencies(rule, belief, mask=MASK) -> np.ndarray:
    keys = jax.random.split(jax.random.key(11), DRAWS)
    actions = jax.jit(jax.vmap(lambda k: rule.sample(k, belief, mask)))(keys)
    return np.bincount(np.asarray(actions), minlength=mask.shape[0]) / DRAWS


@pytest.mark.parametrize("name", sorted(CASES))
def test_probs_are_a_distribution_zero_on_masked_arms(name):
    rule, belief = CASES[name]
    probs = np.asarray(rule.probs(jax.random.key(0), belief, MASK))
    assert probs.shape == (5,)
    assert np.all(probs >= 0.0) and probs[1] == 0.0
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_sample_frequencies_match_probs(name):
    rule, belief = CASES[name]
    probs = np.asarray(rule.probs(jax.random.key(1), belief, MASK))
    frequencies = _frequencies(rule, belief)
    assert frequencies[1] == 0.0  # never a masked arm
    np.testing.assert_allclose(frequencies, probs, atol=TOLERANCE)


@pytest.mark.parametrize("name", sorted(CASES))
def test_jit_equals_eager(name):
    rule, belief = CASES[name]
    key = jax.random.key(3)
    sample = jax.jit(lambda k: rule.sample(k, belief, MASK))
    assert int(sample(key)) == int(rule.sample(key, belief, MASK))
    probs = jax.jit(lambda k: rule.probs(k, belief, MASK))
    np.testing.assert_allclose(
        probs(key), rule.probs(key, belief, MASK), rtol=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_greedy_and_ucb_ignore_the_key(name):
    rule, belief = CASES[name]
    actions = {int(rule.sample(jax.random.key(i), belief, MASK)) for i in range(8)}
    assert len(actions) == 1
    probs = np.asarray(rule.probs(jax.random.key(5), belief, MASK))
    np.testing.assert_array_equal(probs, np.eye(5)[actions.pop()])


def test_masked_argmax_golden():
    scores = jnp.array([3.0, 5.0, 5.0, 1.0])
    assert int(masked_argmax(scores, jnp.array([True, True, True, True]))) == 1
    assert int(masked_argmax(scores, jnp.array([True, False, True, True]))) == 2
    assert int(masked_argmax(scores, jnp.array([False, False, False, True]))) == 3
    assert masked_argmax(scores, jnp.ones(4, bool)).dtype == jnp.int32


def test_greedy_golden():
    # Arm 1 has the highest mean but is masked: the best allowed arm is 2.
    assert int(Greedy().sample(None, MEAN, MASK)) == 2
    weights = GaussianWeights(FEATURES, W_HAT, ROOT)
    expected = int(np.argmax(np.where(MASK, np.asarray(FEATURES) @ W_HAT, -np.inf)))
    assert int(Greedy().sample(None, weights, MASK)) == expected


@pytest.mark.parametrize("divide_last", [False, True])
def test_epsilon_greedy_probs_closed_form(divide_last):
    """pi = 0.3 / 4 on each of the 4 allowed arms, plus 0.7 on the greedy arm 2."""
    probs = EpsilonGreedy(0.3, divide_last).probs(None, MEAN, MASK)
    np.testing.assert_allclose(
        probs, [0.075, 0.0, 0.775, 0.075, 0.075], rtol=1e-6, atol=0
    )
    assert EpsilonGreedy(0.0, divide_last).probs(None, MEAN, MASK)[2] == 1.0


def test_epsilon_greedy_probs_with_one_allowed_arm_is_one_hot():
    mask = jnp.array([False, False, False, True, False])
    probs = EpsilonGreedy(0.5).probs(None, MEAN, mask)
    np.testing.assert_array_equal(probs, [0.0, 0.0, 0.0, 1.0, 0.0])


def test_ucb_golden():
    # mean + 2 width = [0.7, 1.1, 0.6, 1.0, 0.85]; arm 1 masked, so arm 3.
    assert int(UCB(2.0).sample(None, GaussianScores(MEAN, WIDTH), MASK)) == 3
    # alpha = 0 is greedy.
    assert int(UCB(0.0).sample(None, GaussianScores(MEAN, WIDTH), MASK)) == 2


def test_gaussian_weights_marginals_match_numpy():
    X, w, R = (np.asarray(a, np.float64) for a in (FEATURES, W_HAT, ROOT))
    mean, width = GaussianWeights(FEATURES, W_HAT, ROOT).marginals()
    np.testing.assert_allclose(mean, X @ w, rtol=1e-6)
    np.testing.assert_allclose(width, np.sqrt(np.diag(X @ R.T @ R @ X.T)), rtol=1e-6)
    np.testing.assert_array_equal(point_estimate(GaussianScores(MEAN, WIDTH)), MEAN)


@pytest.mark.parametrize("batched", [False, True])
def test_gaussian_weights_draws_have_the_posterior_moments(batched):
    """Draws of Phi w~, w~ ~ N(w_hat, nu^2 R^T R): mean Phi w_hat, covariance
    nu^2 Phi R^T R Phi^T (4,000 draws; tolerance ~5 standard errors)."""
    belief = GaussianWeights(FEATURES, W_HAT, ROOT)
    nu = 0.5
    if batched:
        draws = belief.draws(jax.random.key(4), nu, DRAWS)
    else:
        keys = jax.random.split(jax.random.key(4), DRAWS)
        draws = jax.vmap(lambda k: belief.draw(k, nu))(keys)
    draws = np.asarray(draws, np.float64)
    X, w, R = (np.asarray(a, np.float64) for a in (FEATURES, W_HAT, ROOT))
    covariance = nu**2 * X @ R.T @ R @ X.T
    np.testing.assert_allclose(draws.mean(axis=0), X @ w, atol=0.02)
    np.testing.assert_allclose(np.cov(draws.T), covariance, atol=0.01)


def test_thompson_with_zero_scale_is_greedy():
    for belief in (GaussianScores(MEAN, WIDTH), GaussianWeights(FEATURES, W_HAT, ROOT)):
        expected = int(Greedy().sample(None, belief, MASK))
        for i in range(4):
            assert (
                int(Thompson(0.0).sample(jax.random.key(i), belief, MASK)) == expected
            )


def test_thompson_probs_estimators_agree():
    belief = GaussianWeights(FEATURES, W_HAT, ROOT)
    split = Thompson(1.0, samples=DRAWS).probs(jax.random.key(6), belief, MASK)
    batched = Thompson(1.0, samples=DRAWS, batched_probs=True).probs(
        jax.random.key(7), belief, MASK
    )
    np.testing.assert_allclose(split, batched, atol=TOLERANCE)


def test_thompson_draws_in_the_given_dtype():
    belief = GaussianScores(MEAN, WIDTH)
    assert belief.draw(jax.random.key(0), 1.0, "float32").dtype == jnp.float32
    with jax.enable_x64(True):
        mean64 = MEAN.astype(jnp.float64)
        draw = GaussianScores(mean64, WIDTH).draw(jax.random.key(0), 1.0, "float64")
        assert draw.dtype == jnp.float64


def test_ensemble_choice_probs_golden():
    """Members' greedy arms among the allowed: 2, 0, 3, 2."""
    probs = EnsembleChoice(4).probs(None, MemberScores.stacked(MEMBERS), MASK)
    np.testing.assert_array_equal(probs, [0.25, 0.0, 0.5, 0.25, 0.0])


def test_ensemble_choice_scores_only_the_drawn_member():
    evaluated = []

    def member(m):
        evaluated.append(m)
        return MEMBERS[m]

    def every():
        raise AssertionError("sample must not score every member")

    action = EnsembleChoice(4).sample(
        jax.random.key(0), MemberScores(member, every), MASK
    )
    assert len(evaluated) == 1
    assert int(action) == int(masked_argmax(MEMBERS[evaluated[0]], MASK))


def test_rules_are_immutable_and_hashable_values():
    assert UCB(1.0) == UCB(1.0) and hash(Greedy()) == hash(Greedy())
    with pytest.raises(AttributeError):
        UCB(1.0).alpha = 2.0  # type: ignore[misc]
