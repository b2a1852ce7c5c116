"""Contracts of the context-aware recommendation simulator (`ContextualRec-*`).

Small configurations (few users and items) keep compile and run times low; the
100,000-item preset is exercised for static shapes only. Gymnasium's `check_env`
runs over every preset in `tests/envs/test_gym.py` (parametrized over
`envs.registered()`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import agents
import bandits
import envs
from bandits.validation import BanditConfigError
from envs import recommendation_context as rec_context
from envs import recommendation_model as model
from envs.recommendation import KNOWN_DEVICES, KNOWN_LOCATIONS, RecommendationEnv

PRESETS = (
    "ContextualRec-v0",
    "ContextualRec-ColdStart-v0",
    "ContextualRec-Drift-v0",
    "ContextualRec-LargeCatalog-v0",
)
SMALL = dict(num_items=200, num_users=300, num_candidates=8, history_length=4)


def _small(**overrides):
    return envs.make("ContextualRec-v0", **{**SMALL, **overrides})


def _rollout(env, params, key, steps):
    """Observations, states and feedback of `steps` random-action steps, stacked."""

    def body(carry, key_t):
        obs, state = carry
        key_act, key_env = jax.random.split(key_t)
        action = jax.random.randint(key_act, (), 0, env.num_arms)
        next_obs, state, feedback = env.step(key_env, state, action, params)
        return (next_obs, state), (obs, feedback)

    key_reset, key_steps = jax.random.split(key)
    obs, state = env.reset(key_reset, params)
    (_, state), (observations, feedback) = jax.lax.scan(
        body, (obs, state), jax.random.split(key_steps, steps)
    )
    return observations, state, feedback


# ---------------------------------------------------------------------------
# Registration, observation spec, bounds


def test_presets_are_registered_with_their_settings():
    registered = envs.registered()
    for env_id in PRESETS:
        assert env_id in registered
    assert envs.make_env("ContextualRec-LargeCatalog-v0").num_items == 100_000
    cold = envs.make_env("ContextualRec-ColdStart-v0")
    assert not cold.warm_start and cold.new_user_rate > 0
    drift = envs.make_env("ContextualRec-Drift-v0")
    assert drift.drift_shift_steps and drift.drift_rotation > 0


@pytest.mark.parametrize(
    ("encoding", "overrides"),
    [
        ("onehot", {}),
        ("raw", {"warm_start": False, "new_user_rate": 0.3}),
        ("onehot", {"season_amplitude": 1.0, "drift_shift_steps": (100,)}),
    ],
)
def test_observations_match_the_spec_and_stay_in_bounds(encoding, overrides):
    env, params = _small(context_encoding=encoding, drift_rotation=0.5, **overrides)
    observations, _, feedback = jax.jit(_rollout, static_argnums=(0, 3))(
        env, params, jax.random.key(0), 300
    )
    spec = env.observation_spec()
    assert set(spec) == {"context", "arms", "mask", "history", "history_mask"}
    for name, entry in spec.items():
        value = np.asarray(getattr(observations, name))
        assert value.shape[1:] == entry.shape, name
        assert value.dtype == np.dtype(entry.dtype), name
        assert np.all(value >= entry.low) and np.all(value <= entry.high), name
    assert env.context_dim == (19 if encoding == "onehot" else 7)
    p = np.asarray(feedback.expected_rewards)
    assert np.all((p > 0) & (p < 1))
    assert np.all(np.asarray(observations.mask).any(axis=1))


def test_arm_layout_and_item_id_column():
    env, params = _small()
    obs, state = env.reset(jax.random.key(1), params)
    layout = env.arm_layout()
    arms = np.asarray(obs.arms)
    ids = np.round(arms[:, layout["item_id"]][:, 0] * (env.num_items - 1)).astype(int)
    np.testing.assert_array_equal(ids, np.asarray(state.candidates))
    category = np.argmax(arms[:, layout["category"]], axis=1)
    np.testing.assert_array_equal(
        category, np.asarray(params.item_category)[np.asarray(state.candidates)]
    )
    assert env.item_dim == layout["item_id"].start


def test_duplicate_candidates_are_masked():
    env, params = envs.make(
        "ContextualRec-v0", num_items=20, num_users=50, num_candidates=20
    )
    observations, _, _ = jax.jit(_rollout, static_argnums=(0, 3))(
        env, params, jax.random.key(2), 50
    )
    mask = np.asarray(observations.mask)
    ids = np.round(np.asarray(observations.arms)[..., -1] * 19).astype(int)
    for row_ids, row_mask in zip(ids, mask, strict=True):
        assert len(set(row_ids[row_mask])) == row_mask.sum()  # allowed are distinct
        assert set(row_ids[row_mask]) == set(row_ids)  # every item stays reachable
    assert (~mask).any()


# ---------------------------------------------------------------------------
# Rewards are the documented click probabilities


def test_monte_carlo_click_rates_match_expected_rewards():
    env, params = _small()
    _, state = env.reset(jax.random.key(3), params)
    expected = np.asarray(env.expected_rewards(state, params))
    n = 20_000
    keys = jax.random.split(jax.random.key(4), n)
    arms = range(env.num_arms)

    def clicks(action):
        step = jax.vmap(lambda k: env.step(k, state, action, params)[2].reward)
        return np.asarray(jax.jit(step)(keys))

    for k in arms:
        rate = clicks(jnp.int32(k)).mean()
        # Two-sided binomial interval at family-wise level 1e-4 over the K arms
        # (Bonferroni): a correct env fails this with probability < 1e-4.
        z = scipy.stats.norm.ppf(1 - 1e-4 / (2 * env.num_arms))
        half = z * math.sqrt(expected[k] * (1 - expected[k]) / n)
        assert abs(rate - expected[k]) <= half + 1e-9, (k, rate, expected[k])


def test_feedback_expected_rewards_are_those_of_the_acted_on_state():
    env, params = _small()
    _, state = env.reset(jax.random.key(5), params)
    before = env.expected_rewards(state, params)
    _, _, feedback = env.step(jax.random.key(6), state, jnp.int32(2), params)
    np.testing.assert_array_equal(feedback.expected_rewards, before)
    same = env.expected_rewards_in(
        state,
        params,
        state.situation,
        params.user_age[state.user],
        params.user_region[state.user],
    )
    np.testing.assert_allclose(same, before, rtol=1e-6)


def test_logits_follow_the_documented_formula():
    env, params = _small(boredom_weight=0.7)
    _, state = env.reset(jax.random.key(7), params)
    state = state.replace(boredom=state.boredom.at[state.user].set(0.5))
    u, items = int(state.user), np.asarray(state.candidates)
    cat = np.asarray(params.item_category)[items]
    sit = state.situation
    angle = 2 * np.pi * float(sit.hour) / 24
    g = (
        np.asarray(params.effect_time)[cat] @ np.array([np.sin(angle), np.cos(angle)])
        + np.asarray(params.effect_weekend)[cat] * float(sit.weekend)
        + np.asarray(params.effect_device)[cat, int(sit.device)]
        + np.asarray(params.effect_location)[cat, int(sit.location)]
        + np.asarray(params.effect_age)[cat, int(params.user_age[u])]
        + np.asarray(params.effect_region_item)[int(params.user_region[u]), items]
    )
    z = (
        env.base_logit
        + env.preference_weight
        * (np.asarray(params.item_latent)[items] @ np.asarray(state.preference[u]))
        + env.popularity_weight * np.asarray(params.item_popularity)[items]
        + env.context_strength * g
        - env.boredom_weight * 0.5  # t = last visit = 0: no decay yet
    )
    np.testing.assert_allclose(
        env.expected_rewards(state, params), 1 / (1 + np.exp(-z)), rtol=1e-5, atol=1e-6
    )


# ---------------------------------------------------------------------------
# Context strength


def _oracles(env, params, key, arrivals=256, contexts=128):
    """Context-aware and context-blind oracle choices per arrival.

    The blind oracle averages the click probability of each candidate over
    situations and demographics drawn from the population (same user taste,
    history and candidates).
    """

    def one(key):
        key_reset, key_sit, key_user = jax.random.split(key, 3)
        _, state = env.reset(key_reset, params)
        aware = env.expected_rewards(state, params)
        situations = jax.vmap(env.sample_situation, in_axes=(0, None))(
            jax.random.split(key_sit, contexts), state.t
        )
        others = rec_context.inverse_cdf(
            params.user_cdf, jax.random.uniform(key_user, (contexts,))
        )
        blind = jax.vmap(env.expected_rewards_in, in_axes=(None, None, 0, 0, 0))(
            state,
            params,
            situations,
            params.user_age[others],
            params.user_region[others],
        ).mean(axis=0)
        choose = lambda p: jnp.argmax(jnp.where(state.mask, p, -1.0))
        return aware, blind, choose(aware), choose(blind)

    return jax.jit(jax.vmap(one))(jax.random.split(key, arrivals))


def test_at_zero_context_strength_aware_and_blind_oracles_coincide():
    env, params = _small(context_strength=0.0)
    aware, blind, best_aware, best_blind = _oracles(env, params, jax.random.key(8))
    np.testing.assert_allclose(aware, blind, rtol=1e-5)
    np.testing.assert_array_equal(best_aware, best_blind)
    # The same check must be able to fail: at full strength the context changes
    # the best candidate for a sizeable share of arrivals.
    env, params = _small(context_strength=1.0)
    _, _, best_aware, best_blind = _oracles(env, params, jax.random.key(8))
    assert np.mean(np.asarray(best_aware) != np.asarray(best_blind)) > 0.2


def test_context_strength_scales_the_context_effect():
    logits = []
    for s in (0.0, 0.5, 1.0):
        env, params = _small(context_strength=s)
        _, state = env.reset(jax.random.key(9), params)
        logits.append(np.asarray(model.click_logits(state, params, env)))
    np.testing.assert_allclose(
        logits[1] - logits[0], 0.5 * (logits[2] - logits[0]), atol=1e-5
    )
    assert np.abs(logits[2] - logits[0]).max() > 0.1


# ---------------------------------------------------------------------------
# History, interest drift and boredom


@pytest.mark.parametrize("rotation", [0.0, 0.7])
def test_a_click_moves_taste_toward_the_item(rotation):
    eta = 0.3
    env, params = _small(
        boredom_weight=0.0,
        interest_drift=eta,
        context_strength=0.5,
        drift_rotation=rotation,
    )
    _, state = env.reset(jax.random.key(10), params)
    state = state.replace(t=jnp.int32(500))  # ~2 days: a rotated frame if drifting
    item = state.candidates[0]
    before = np.asarray(model.click_logits(state, params, env))
    after = np.asarray(
        model.click_logits(env.consume(state, params, item, True), params, env)
    )
    v = np.asarray(params.item_latent)
    items = np.asarray(state.candidates)
    p = np.asarray(model.effective_preference(state, state.user, env))
    # Documented: the affinity of item j changes by eta (<v_i, v_j> - <p_u, v_j>),
    # p_u the effective (rotated) taste.
    predicted = env.preference_weight * eta * (v[items] @ v[int(item)] - v[items] @ p)
    np.testing.assert_allclose(after - before, predicted, atol=1e-5)
    assert after[0] > before[0]  # the consumed item itself gains
    unclicked = model.click_logits(env.consume(state, params, item, False), params, env)
    np.testing.assert_allclose(unclicked, before, atol=1e-6)


def test_boredom_lowers_the_clicked_category_then_decays():
    beta, half_life_days = 0.8, 1.0
    env, params = _small(
        interest_drift=0.0, boredom_weight=beta, boredom_half_life_days=half_life_days
    )
    _, state = env.reset(jax.random.key(11), params)
    item = state.candidates[0]
    same = np.asarray(params.item_category)[np.asarray(state.candidates)] == int(
        params.item_category[item]
    )
    before = np.asarray(model.click_logits(state, params, env))
    bored = env.consume(state, params, item, True)
    drop = before - np.asarray(model.click_logits(bored, params, env))
    np.testing.assert_allclose(drop[same], beta, atol=1e-5)
    np.testing.assert_allclose(drop[~same], 0.0, atol=1e-6)
    later = bored.replace(t=bored.t + int(half_life_days * env.steps_per_day))
    drop_later = before - np.asarray(model.click_logits(later, params, env))
    np.testing.assert_allclose(drop_later[same], beta / 2, atol=1e-5)


def test_history_records_the_interaction_most_recent_first():
    env, params = _small(warm_start=False)
    obs, state = env.reset(jax.random.key(12), params)
    assert not np.asarray(obs.history_mask).any()
    first, second = state.candidates[1], state.candidates[2]
    state = env.consume(state, params, first, True)
    state = env.consume(state, params, second, False)
    obs = env.observe(state, params)
    mask = np.asarray(obs.history_mask)
    np.testing.assert_array_equal(
        mask, [True, True] + [False] * (env.history_length - 2)
    )
    history = np.asarray(obs.history)
    features = np.asarray(params.item_features)
    np.testing.assert_allclose(history[0], np.append(features[int(second)], 0.0))
    np.testing.assert_allclose(history[1], np.append(features[int(first)], 1.0))
    np.testing.assert_array_equal(history[2:], 0.0)


def test_cold_start_and_new_users_have_no_history():
    env, params = envs.make("ContextualRec-ColdStart-v0", **SMALL)
    assert not np.asarray(params.history_valid).any()
    _, warm_params = _small()
    assert np.asarray(warm_params.history_valid).any()
    # Every arrival is a new user: no history is ever visible.
    env, params = _small(new_user_rate=1.0)
    observations, _, _ = _rollout(env, params, jax.random.key(13), 100)
    assert not np.asarray(observations.history_mask).any()


def test_abrupt_shift_rotates_tastes_at_the_given_step():
    env, params = _small(
        drift_shift_steps=(50,), drift_shift_angle=math.pi / 2, boredom_weight=0.0
    )
    _, state = env.reset(jax.random.key(14), params)
    logits = {
        t: np.asarray(model.click_logits(state.replace(t=jnp.int32(t)), params, env))
        for t in (48, 49, 50)
    }
    np.testing.assert_allclose(logits[48], logits[49], atol=1e-6)
    assert np.abs(logits[50] - logits[49]).max() > 0.1
    np.testing.assert_allclose(model.drift_angle(jnp.int32(50), env), math.pi / 2)
    # A quarter turn in every latent plane makes tastes orthogonal to the old ones.
    x = jax.random.normal(jax.random.key(15), (env.latent_dim,))
    assert abs(float(model.rotate(x, jnp.float32(math.pi / 2)) @ x)) < 1e-5


def test_weekly_season_has_a_seven_day_period():
    env, params = _small(season_amplitude=1.0, boredom_weight=0.0)
    _, state = env.reset(jax.random.key(16), params)
    week = 7 * env.steps_per_day
    at = lambda t: np.asarray(
        model.click_logits(state.replace(t=jnp.int32(t)), params, env)
    )
    np.testing.assert_allclose(at(3), at(3 + week), atol=1e-4)
    assert np.abs(at(3) - at(3 + week // 2)).max() > 0.1


# ---------------------------------------------------------------------------
# Determinism and static shapes


def test_same_seed_same_run_bit_for_bit():
    env, params = _small()
    agent = agents.make("random", num_arms=env.num_arms)
    first = bandits.run(env, agent, horizon=50, seeds=[3, 4], params=params)
    again = bandits.run(env, agent, horizon=50, seeds=[3, 4], params=params)
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)
    other = bandits.run(env, agent, horizon=50, seeds=[5, 6], params=params)
    assert not np.array_equal(first.action, other.action)
    p1 = env.sample_params(jax.random.key(0))
    p2 = envs.make_env("ContextualRec-v0", **SMALL).default_params()
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2), strict=True):
        np.testing.assert_array_equal(a, b)


def test_large_catalog_shapes_are_static_under_jit_and_vmap():
    env, params = envs.make("ContextualRec-LargeCatalog-v0", num_users=1000)
    assert params.item_latent.shape == (100_000, env.latent_dim)
    seeds = 3
    keys = jax.random.split(jax.random.key(17), seeds)
    reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    obs, state = reset(keys, params)
    spec = env.observation_spec()
    for _ in range(3):
        actions = jnp.zeros((seeds,), jnp.int32)
        obs, state, feedback = step(keys, state, actions, params)
        for name, entry in spec.items():
            assert getattr(obs, name).shape == (seeds, *entry.shape), name
        assert feedback.expected_rewards.shape == (seeds, env.num_arms)
    assert step._cache_size() == 1  # one trace: the shapes never changed
    ids = np.round(np.asarray(obs.arms)[..., -1] * 99_999).astype(int)
    np.testing.assert_array_equal(ids, np.asarray(state.candidates))


# ---------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"num_items": -5}, "num_items"),
        ({"num_users": 0}, "num_users"),
        ({"num_candidates": -1}, "num_candidates"),
        ({"history_length": 0}, "history_length"),
        ({"num_content_features": -1}, "num_content_features"),
        ({"num_items": 10, "num_candidates": 11}, "num_candidates"),
        ({"context_strength": 1.5}, "context_strength"),
        ({"context_strength": -0.1}, "context_strength"),
        ({"new_user_rate": 2.0}, "new_user_rate"),
        ({"interest_drift": -0.5}, "interest_drift"),
        ({"popular_fraction": 1.2}, "popular_fraction"),
        ({"devices": ["mobile", "phone"]}, "devices"),
        ({"devices": "mobile"}, "devices"),
        ({"devices": []}, "devices"),
        ({"locations": ["home", "moon"]}, "locations"),
        ({"locations": ["home", "home"]}, "locations"),
        ({"context_encoding": "binary"}, "context_encoding"),
        ({"drift_shift_steps": [10, -3]}, "drift_shift_steps"),
        ({"boredom_half_life_days": 0.0}, "boredom_half_life_days"),
        ({"warm_start": "yes"}, "warm_start"),
    ],
)
def test_bad_input_names_the_field_before_compute(overrides, field, monkeypatch):
    def no_compute(*args, **kwargs):
        raise AssertionError("computed before validating")

    monkeypatch.setattr(model, "sample_instance", no_compute)
    with pytest.raises(BanditConfigError, match=field):
        envs.make("ContextualRec-v0", **overrides)


def test_unknown_names_list_the_allowed_ones():
    with pytest.raises(BanditConfigError) as info:
        envs.make_env("ContextualRec-v0", devices=["smartwatch"])
    for name in KNOWN_DEVICES:
        assert name in str(info.value)
    with pytest.raises(BanditConfigError) as info:
        envs.make_env("ContextualRec-v0", locations=["office"])
    for name in KNOWN_LOCATIONS:
        assert name in str(info.value)


def test_config_lists_become_hashable_tuples_and_subsets_renormalise():
    env, params = _small(
        devices=["tv", "mobile"], locations=["work"], drift_shift_steps=[7]
    )
    assert env.devices == ("tv", "mobile") and env.drift_shift_steps == (7,)
    hash(env)
    assert env == RecommendationEnv(
        **SMALL, devices=("tv", "mobile"), locations=("work",), drift_shift_steps=(7,)
    )
    location, device = rec_context.situational_tables(env)
    np.testing.assert_allclose(location.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(device.sum(-1), 1.0, rtol=1e-6)
    observations, _, _ = _rollout(env, params, jax.random.key(18), 100)
    context = np.asarray(observations.context)
    assert env.context_dim == 3 + 2 + 1 + env.num_age_bands + env.num_regions
    np.testing.assert_array_equal(context[:, 5], 1.0)  # the only location, one-hot


def test_large_catalog_arrays_for_64_seeds_fit_in_2_gib():
    env = envs.make_env("ContextualRec-LargeCatalog-v0")
    params = jax.eval_shape(env.sample_params, jax.random.key(0))
    _, state = jax.eval_shape(env.reset, jax.random.key(0), params)
    nbytes = lambda tree: sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))
    # Params are shared by the seeds (`bandits.run` passes them unbatched); the
    # state is per seed. Measured: 15.8 MB of params, 1.6 MB of state per seed (118 MB).
    total = nbytes(params) + 64 * nbytes(state)
    assert nbytes(state) < 4 * 2**20
    assert total < 2**31, total
    # The per-seed state does not grow with the catalogue.
    small = envs.make_env("ContextualRec-v0")
    _, small_state = jax.eval_shape(
        small.reset,
        jax.random.key(0),
        jax.eval_shape(small.sample_params, jax.random.key(0)),
    )
    assert nbytes(small_state) == nbytes(state)


@pytest.mark.parametrize("encoding", ["onehot", "raw"])
def test_context_fields_partition_the_context(encoding):
    env = envs.make_env("ContextualRec-v0", context_encoding=encoding)
    fields = env.context_fields
    assert sum(fields) == env.context_dim == env.observation_spec()["context"].shape[0]
    expected = (2, 1, 1, 1, 1, 1) if encoding == "raw" else (2, 1, *fields[2:])
    assert fields == expected and len(fields) == 6
