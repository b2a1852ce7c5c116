"""Slate environments (`envs.slate`): click models, exact values, optimal slates,
the Gymnasium slate shell and bad input.

Programs are few and small: the Monte Carlo checks vmap one `env.step` per click
model over keys on a 6-item linear slate env; the brute-force checks run NumPy
against one jitted evaluation per click model.
"""

from __future__ import annotations

import itertools
import math

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from bandits.validation import BanditConfigError
from envs import slate as slate_env
from envs.gym import SLATE_INFO_KEYS

K, L = 6, 3
KAPPA = (1.0, 0.6, 0.3)
TERMINATION = (0.9, 0.5, 0.2)
MODEL_KWARGS = {
    "pbm": {"kappa": KAPPA},
    "cascade": {},
    "dcm": {"termination": TERMINATION},
}
DRAWS = 20_000
Z_MAX = 4.5


def _env(click_model: str, **kwargs):
    return envs.make(
        "LinearSlate-v0",
        num_arms=K,
        dim=3,
        scale=2.0,
        slate_size=L,
        click_model=click_model,
        **{**MODEL_KWARGS[click_model], **kwargs},
    )


def _reference_value(click_model: str, a: np.ndarray, kappa, termination) -> float:
    """E[r] of a slate with attractions a, in float64, from the model's definition."""
    a = np.asarray(a, np.float64)
    if click_model == "pbm":
        return float(np.sum(np.asarray(kappa) * a))
    v = np.ones_like(a) if click_model == "cascade" else np.asarray(termination)
    return float(1.0 - np.prod(1.0 - v * a))


def _reference_clicks(click_model: str, a: np.ndarray, kappa, termination):
    """E[click_l] and P(examine l), float64, by scanning the positions."""
    a = np.asarray(a, np.float64)
    if click_model == "pbm":
        exam = np.asarray(kappa, np.float64)
        return exam * a, exam
    v = np.ones_like(a) if click_model == "cascade" else np.asarray(termination)
    exam = np.ones_like(a)
    for position in range(1, len(a)):
        exam[position] = exam[position - 1] * (1.0 - v[position - 1] * a[position - 1])
    return exam * a, exam


# ---------------------------------------------------------------------------
# Exact expected values against Monte Carlo


@pytest.fixture(scope="module", params=list(MODEL_KWARGS))
def monte_carlo(request):
    """20,000 independent user scans of one slate in one state, by `env.step`."""
    click_model = request.param
    env, params = _env(click_model)
    _, state = env.reset(jax.random.key(3), params)
    action = jnp.asarray([4, 0, 2], jnp.int32)
    keys = jax.random.split(jax.random.key(11), DRAWS)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, None, None, None)))
    _, _, feedback = step(keys, state, action, params)
    attraction = np.asarray(env.expected_rewards(state, params))[np.asarray(action)]
    return click_model, params, attraction, jax.device_get(feedback)


def _z(mean: np.ndarray, p: np.ndarray, variance: np.ndarray) -> np.ndarray:
    return np.abs(mean - p) / np.sqrt(np.maximum(variance, 1e-12) / DRAWS)


def test_expected_slate_reward_matches_monte_carlo(monte_carlo):
    """The closed-form E[r] against the mean of 20,000 sampled rewards.

    Tolerance: |z| < 4.5 with the reward's exact variance (Bernoulli for the
    cascade and DCM rewards; a sum of independent Bernoullis for PBM clicks).
    The draws are at fixed seeds, so the test is deterministic; 4.5 standard
    errors would be exceeded by chance with probability ~7e-6 per check, so a
    failure means a wrong formula, not bad luck. A formula error of 0.01 in a
    value near 0.5 is 2.8 standard errors at this sample size, 0.02 is 5.7.
    """
    click_model, params, attraction, feedback = monte_carlo
    kappa, termination = np.asarray(params.kappa), np.asarray(params.termination)
    exact = np.asarray(feedback.slate.expected_reward)
    assert np.all(exact == exact[0])  # the same slate and state in every draw
    expected = _reference_value(click_model, attraction, kappa, termination)
    np.testing.assert_allclose(exact[0], expected, rtol=1e-5)
    reward = np.asarray(feedback.reward, np.float64)
    if click_model == "pbm":
        p = kappa * attraction
        variance = np.sum(p * (1 - p))
    else:
        variance = expected * (1 - expected)
    assert _z(reward.mean(), expected, variance) < Z_MAX


def test_expected_clicks_and_examination_match_monte_carlo(monte_carlo):
    """Per position: the closed-form E[click_l] and P(examine l) against the
    frequencies of 20,000 scans (|z| < 4.5, Bernoulli variances; see above)."""
    click_model, params, attraction, feedback = monte_carlo
    kappa, termination = np.asarray(params.kappa), np.asarray(params.termination)
    clicks, exam = _reference_clicks(click_model, attraction, kappa, termination)
    np.testing.assert_allclose(
        np.asarray(feedback.slate.expected_clicks[0]), clicks, rtol=1e-5
    )
    for observed, p in (
        (np.asarray(feedback.slate.clicks, np.float64), clicks),
        (np.asarray(feedback.slate.examined, np.float64), exam),
    ):
        assert (_z(observed.mean(axis=0), p, p * (1 - p)) < Z_MAX).all()


def test_cascade_clicks_at_most_once_and_examines_down_to_the_click(monte_carlo):
    click_model, _, _, feedback = monte_carlo
    clicks = np.asarray(feedback.slate.clicks, bool)
    examined = np.asarray(feedback.slate.examined)
    assert not (clicks & ~examined).any()  # a click needs an examination
    if click_model == "pbm":
        np.testing.assert_array_equal(feedback.reward, clicks.sum(axis=1))
        return
    assert examined[:, 0].all()
    # Examination is a prefix of the slate.
    assert (np.diff(examined.astype(int), axis=1) <= 0).all()
    if click_model == "cascade":
        assert (clicks.sum(axis=1) <= 1).all()
        np.testing.assert_array_equal(feedback.reward, clicks.any(axis=1))
        # Examined down to the first click, or everything without one.
        last = np.where(clicks.any(axis=1), clicks.argmax(axis=1), L - 1)
        np.testing.assert_array_equal(examined.sum(axis=1), last + 1)
    else:  # DCM: satisfied implies a click; several clicks happen
        assert (np.asarray(feedback.reward) <= clicks.any(axis=1)).all()
        assert (clicks.sum(axis=1) > 1).any()


# ---------------------------------------------------------------------------
# Closed forms and the optimal slate against brute force


def _all_slates(num_items: int, size: int) -> np.ndarray:
    return np.asarray(list(itertools.permutations(range(num_items), size)), np.int32)


BRUTE_K, BRUTE_L = 5, 3


@pytest.mark.parametrize("click_model", list(MODEL_KWARGS))
def test_optimal_slate_is_the_best_of_all_slates(click_model):
    """Brute force over all 60 ordered slates of 3 out of 5 items, for random
    attractions, ties, and a masked item: the env's optimal slate reaches the
    largest value (float64 reference, within float32 rounding) and every slate's
    closed form matches the reference."""
    env = slate_env.SlateEnv(
        envs.make_env("LinearBernoulli-v0", num_arms=BRUTE_K, dim=2),
        BRUTE_L,
        click_model,
        **{k: v for k, v in MODEL_KWARGS[click_model].items()},
    )
    params = env.default_params()
    kappa, termination = np.asarray(params.kappa), np.asarray(params.termination)
    slates = _all_slates(BRUTE_K, BRUTE_L)

    @jax.jit
    def evaluate(attraction, mask):
        shown = jnp.where(mask[slates], attraction[slates], 0.0)
        values = jax.vmap(lambda a: env.slate_value(a, params))(shown)
        best = slate_env.optimal_slate(attraction, mask, BRUTE_L)
        return values, best, env.slate_value(attraction[best], params)

    rng = np.random.default_rng(0)
    cases = [rng.uniform(size=BRUTE_K) for _ in range(6)]
    cases.append(np.array([0.5, 0.2, 0.5, 0.7, 0.2]))  # ties
    cases.append(np.array([0.9, 0.0, 0.0, 0.0, 0.0]))  # fewer attractive than L
    all_allowed = np.ones(BRUTE_K, bool)
    one_masked = np.array([True, True, False, True, True])
    for attraction in cases:
        for mask in (all_allowed, one_masked):
            values, best, best_value = evaluate(
                jnp.asarray(attraction, jnp.float32), jnp.asarray(mask)
            )
            effective = np.where(mask, attraction, 0.0)
            reference = np.array(
                [
                    _reference_value(click_model, effective[s], kappa, termination)
                    for s in slates
                ]
            )
            np.testing.assert_allclose(values, reference, rtol=1e-5, atol=1e-6)
            best = np.asarray(best)
            assert mask[best].all()
            assert len(set(best.tolist())) == BRUTE_L
            assert float(best_value) == pytest.approx(reference.max(), abs=1e-6)
            assert float(best_value) >= float(np.max(values)) - 1e-6


def test_cascade_value_ignores_the_order_to_the_last_bit():
    """Every ordering of one set has the same cascade value (sorted product), so
    the regret of an optimal set in another order is exactly zero."""
    a = jnp.asarray([0.31, 0.07, 0.66], jnp.float32)
    ones = jnp.ones(3)
    values = {
        float(slate_env.expected_slate_reward("cascade", a[jnp.asarray(p)], ones, ones))
        for p in itertools.permutations(range(3))
    }
    assert len(values) == 1


def test_dcm_with_certain_stops_is_the_cascade():
    a = jnp.asarray([0.2, 0.5, 0.1, 0.4], jnp.float32)
    ones = jnp.ones(4)
    for f in (slate_env.expected_slate_reward, slate_env.expected_clicks):
        np.testing.assert_array_equal(
            f("dcm", a, ones, ones), f("cascade", a, ones, ones)
        )


def test_kappa_and_termination_are_drawn_per_instance_non_increasing():
    env = envs.make_env("LinearSlate-v0", click_model="pbm", slate_size=4)
    first = env.sample_params(jax.random.key(0)).kappa
    second = env.sample_params(jax.random.key(1)).kappa
    assert not np.array_equal(first, second)
    for kappa in (first, second, env.default_params().kappa):
        kappa = np.asarray(kappa)
        assert kappa[0] == 1.0 and (np.diff(kappa) <= 0).all()
        assert ((kappa >= 0) & (kappa <= 1)).all()
    dcm = envs.make_env("LinearSlate-v0", click_model="dcm", slate_size=4)
    v = np.asarray(dcm.default_params().termination)
    assert (np.diff(v) <= 0).all() and ((v >= 0) & (v <= 1)).all()
    np.testing.assert_array_equal(dcm.default_params().kappa, np.ones(4))


def test_default_instance_is_the_single_item_presets():
    """The slate preset's default instance keeps the single-item preset's
    catalogue and population (the same `default_params`)."""
    kwargs = {"num_users": 40, "num_items": 80}
    slate, slate_params = envs.make("ContextualRecSlate-ColdStart-v0", **kwargs)
    single, single_params = envs.make("ContextualRec-ColdStart-v0", **kwargs)
    assert slate.base == single
    for a, b in zip(
        jax.tree.leaves(slate_params.base), jax.tree.leaves(single_params), strict=True
    ):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------
# The recommendation slate presets


def test_recommendation_slate_records_only_examined_positions():
    """After a cascade slate, the user's history gains the examined positions,
    top first (so the last examined is the most recent), with their clicks."""
    env, params = envs.make(
        "ContextualRecSlate-v0", num_users=30, num_items=60, click_model="cascade"
    )
    _, state = env.reset(jax.random.key(0), params)
    user = int(state.base.user)
    slate = np.flatnonzero(np.asarray(state.mask))[:5].astype(np.int32)
    step = jax.jit(env.step)
    for seed in range(6):
        _, after, feedback = step(
            jax.random.key(seed), state, jnp.asarray(slate), params
        )
        examined = np.asarray(feedback.slate.examined)
        clicks = np.asarray(feedback.slate.clicks, bool)
        n = int(examined.sum())
        shown = np.asarray(state.base.candidates)[slate][:n]
        np.testing.assert_array_equal(
            np.asarray(after.base.history_items[user])[:n], shown[::-1]
        )
        np.testing.assert_array_equal(
            np.asarray(after.base.history_clicks[user])[:n], clicks[:n][::-1]
        )
        before_valid = int(np.asarray(state.base.history_valid[user]).sum())
        after_valid = int(np.asarray(after.base.history_valid[user]).sum())
        assert after_valid == min(before_valid + n, env.base.history_length)


# ---------------------------------------------------------------------------
# The Gymnasium slate shell


def test_gym_slate_step_info():
    env = gymnasium.make(
        "bandits/LinearSlate-v0", num_arms=K, dim=3, click_model="pbm", kappa=KAPPA
    ).unwrapped
    assert isinstance(env.action_space, gymnasium.spaces.MultiDiscrete)
    assert env.action_space.nvec.tolist() == [K] * L
    env.reset(seed=5)
    action = env.action_space.sample()
    assert len(set(action.tolist())) == L and env.action_space.contains(action)
    assert not env.action_space.contains(np.array([1, 1, 2]))
    _, reward, terminated, truncated, info = env.step(action)
    assert set(info) == set(SLATE_INFO_KEYS)
    assert info["expected_rewards"].shape == (K,)
    assert info["expected_clicks"].shape == (L,)
    assert info["clicks"].shape == (L,) and info["examined"].shape == (L,)
    assert info["optimal_action"].shape == (L,)
    assert reward == float(info["clicks"].sum())  # PBM: the number of clicks
    assert not terminated and not truncated
    a = info["expected_rewards"]
    best = info["optimal_action"]
    np.testing.assert_array_equal(best, np.argsort(-a, kind="stable")[:L])
    value = float(np.dot(KAPPA, a[best]) - np.dot(KAPPA, a[action]))
    assert info["regret"] == pytest.approx(value, abs=1e-6)
    assert info["regret"] >= 0
    # The same round with the optimal slate costs nothing.
    env.reset(seed=5)
    _, _, _, _, replay = env.step(best)
    assert replay["regret"] == 0.0


def test_gym_slate_vector_env():
    vec = gymnasium.make_vec(
        "bandits/LinearSlate-v0", num_envs=3, vectorization_mode="vector_entry_point"
    )
    vec.reset(seed=0)
    actions = vec.action_space.sample()
    assert actions.shape == (3, 3)
    _, reward, _, _, info = vec.step(actions)
    assert reward.shape == (3,)
    assert info["optimal_action"].shape == (3, 3) and info["regret"].shape == (3,)
    assert (info["regret"] >= 0).all()
    with pytest.raises(ValueError, match="repeats item"):
        vec.step(np.array([[0, 1, 2], [3, 3, 4], [5, 6, 7]]))


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (np.array([1, 1, 2]), r"action \[1, 1, 2\] repeats item\(s\) \[1\]"),
        (np.array([1, 2]), "action must be a slate: 3 integers"),
        (np.array([1, 2, 10]), r"in \[0, 10\)"),
        (3, "action must be a slate"),
    ],
)
def test_gym_refuses_bad_slates(action, message):
    env = gymnasium.make("bandits/LinearSlate-v0").unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(action)


# ---------------------------------------------------------------------------
# Bad input, refused before any compute


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"slate_size": 11}, r"slate_size must be <= the number of candidates K = 10"),
        ({"slate_size": 0}, "slate_size must be a positive integer"),
        ({"slate_size": 2.0}, "slate_size must be a positive integer"),
        ({"click_model": "ubm"}, r"click_model must be one of 'pbm', 'cascade'"),
        (
            {"click_model": "pbm", "kappa": (1.0, 1.2, 0.5)},
            r"kappa\[1\] must be in \[0, 1\], got 1.2",
        ),
        (
            {"click_model": "pbm", "kappa": (1.0, -0.1, -0.2)},
            r"kappa\[1\] must be in \[0, 1\]",
        ),
        (
            {"click_model": "pbm", "kappa": (0.5, 0.9, 0.1)},
            "kappa must be non-increasing",
        ),
        ({"click_model": "pbm", "kappa": (1.0, 0.5)}, "kappa must have slate_size = 3"),
        ({"click_model": "pbm", "kappa": (1.0, math.nan, 0.1)}, r"kappa\[1\]"),
        (
            {"click_model": "cascade", "kappa": (1.0, 0.5, 0.2)},
            "'pbm' click model only",
        ),
        (
            {"click_model": "dcm", "termination": (0.2, 0.5, 0.9)},
            "termination must be non-increasing",
        ),
    ],
)
def test_bad_slate_settings_name_the_field(kwargs, message):
    with pytest.raises(BanditConfigError, match=message):
        envs.make_env("LinearSlate-v0", **kwargs)


def test_bad_settings_are_refused_by_the_gym_shell_and_the_recommendation_presets():
    with pytest.raises(BanditConfigError, match="slate_size must be <="):
        gymnasium.make("bandits/ContextualRecSlate-v0", slate_size=21)
    with pytest.raises(BanditConfigError, match="click_model"):
        envs.make_env("ContextualRecSlate-Drift-v0", click_model="position")
    with pytest.raises(BanditConfigError, match="unknown parameter"):
        envs.make_env("ContextualRecSlate-v0", slates=3)


def test_the_base_must_give_click_probabilities():
    with pytest.raises(BanditConfigError, match="reward must be 'bernoulli'"):
        slate_env.SlateEnv(envs.make_env("Linear-v0"), 2)
