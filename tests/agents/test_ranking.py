"""Context-free ranking bandits (`agents.ranking`): CascadeUCB1, CascadeKL-UCB and
PBM-UCB. Golden indices on hand-computed counts, the cascade and PBM updates, the
one-hot propensities, jit/vmap contracts, bad input, and short runs on
`BernoulliSlate-v0` (Kveton et al. 2015's synthetic problem)."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
import bandits
import envs
from agents.ranking import (
    CascadeState,
    PBMState,
    bernoulli_kl,
    cascade_klucb_index,
    cascade_ucb1_index,
    kl_upper_bound,
    pbm_ucb_index,
)
from bandits.validation import BanditConfigError

K, L = 5, 3
KAPPA = (1.0, 0.5, 0.25)
NAMES = (
    ("cascade_ucb1", {}),
    ("cascade_klucb", {}),
    ("pbm_ucb", {"kappa": KAPPA}),
)


def _make(name, kwargs, num_arms=K, slate_size=L):
    return agents.make(name, num_arms=num_arms, slate_size=slate_size, **kwargs)


def _observation(mask=(True,) * K):
    return bandits.Observation(
        context=jnp.ones((1,)),
        arms=jnp.zeros((K, 0)),
        mask=jnp.asarray(mask),
    )


def _cascade_state(pulls, clicks, rounds):
    return CascadeState(
        pulls=jnp.asarray(pulls, jnp.int32),
        clicks=jnp.asarray(clicks, jnp.float32),
        rounds=jnp.asarray(rounds, jnp.int32),
    )


# ---------------------------------------------------------------------------
# Indices against hand computation


def test_cascade_ucb1_index_golden():
    state = _cascade_state([4, 1, 0, 10, 2], [1, 0, 0, 5, 2], 20)
    index = np.asarray(cascade_ucb1_index(state, jnp.float32))
    width = [math.sqrt(1.5 * math.log(20) / n) for n in (4, 1, 1, 10, 2)]
    expected = [0.25 + width[0], 0.0 + width[1], np.inf, 0.5 + width[3], 1 + width[4]]
    np.testing.assert_allclose(index, expected, rtol=1e-6)


def test_kl_upper_bound_against_a_float64_reference():
    """The bisection's q satisfies the constraint and is within 1e-6 of the
    largest q that does (a float64 bisection of 200 halvings in NumPy)."""

    def reference(p, n, budget):
        low, high = p, 1.0
        for _ in range(200):
            mid = 0.5 * (low + high)
            with np.errstate(divide="ignore"):
                kl = sum(
                    a * math.log(a / b) if a > 0 else 0.0
                    for a, b in ((p, mid), (1 - p, 1 - mid))
                )
            low, high = (mid, high) if n * kl <= budget else (low, mid)
        return low

    cases = [
        (0.0, 3, 1.5),
        (0.25, 4, 2.0),
        (0.5, 100, 5.0),
        (0.9, 7, 0.1),
        (1.0, 2, 3.0),
    ]
    mean, count, budget = (
        jnp.asarray(c, jnp.float32) for c in zip(*cases, strict=True)
    )
    q = np.asarray(kl_upper_bound(mean, count, budget))
    for value, (p, n, b) in zip(q, cases, strict=True):
        assert value == pytest.approx(reference(p, n, b), abs=1e-6)
        assert n * float(bernoulli_kl(jnp.float32(p), jnp.float32(value))) <= b + 1e-5
        assert p <= value <= 1.0


def test_cascade_klucb_index_budget_and_unobserved_items():
    """budget = log(t - 1) + 3 log log(t - 1) at t - 1 = 100 (log log counted
    from t - 1 >= e, so 0 at t - 1 = 2); +inf for an item never observed."""
    state = _cascade_state([5, 0, 20, 1, 1], [1, 0, 10, 0, 1], 100)
    index = np.asarray(cascade_klucb_index(state, jnp.float32))
    budget = math.log(100) + 3 * math.log(math.log(100))
    means = jnp.asarray([0.2, 0.0, 0.5, 0.0, 1.0])
    counts = jnp.asarray([5.0, 1.0, 20.0, 1.0, 1.0])
    expected = np.array(kl_upper_bound(means, counts, jnp.float32(budget)))
    expected[1] = np.inf
    np.testing.assert_allclose(index, expected, rtol=1e-6)
    assert index[4] == 1.0  # a mean of 1 has nothing above it
    early = np.asarray(
        cascade_klucb_index(state._replace(rounds=jnp.int32(2)), jnp.float32)
    )
    expected = np.asarray(kl_upper_bound(means, counts, jnp.float32(math.log(2))))
    np.testing.assert_allclose(early[[0, 2, 3]], expected[[0, 2, 3]], rtol=1e-6)


def test_pbm_ucb_index_golden():
    state = PBMState(
        shows=jnp.asarray([4, 0, 2, 1, 8], jnp.int32),
        exposure=jnp.asarray([2.5, 0.0, 2.0, 0.25, 4.0]),
        clicks=jnp.asarray([1.0, 0.0, 1.0, 0.0, 3.0]),
        rounds=jnp.asarray(50, jnp.int32),
    )
    delta = 1.5 * math.log(50)
    index = np.asarray(pbm_ucb_index(state, 0.5, jnp.float32))
    expected = [
        s / e + math.sqrt(n * delta / (2 * e * e)) if n else np.inf
        for n, e, s in ((4, 2.5, 1), (0, 0, 0), (2, 2, 1), (1, 0.25, 0), (8, 4, 3))
    ]
    np.testing.assert_allclose(index, expected, rtol=1e-6)


# ---------------------------------------------------------------------------
# Updates


@pytest.mark.parametrize("name", ["cascade_ucb1", "cascade_klucb"])
def test_cascade_update_counts_positions_down_to_the_first_click(name):
    agent = _make(name, {})
    state = agent.init(jax.random.key(0))
    obs = _observation()
    slate = jnp.asarray([3, 0, 4], jnp.int32)
    state = agent.update(None, state, obs, slate, jnp.asarray([0.0, 1.0, 0.0]))
    np.testing.assert_array_equal(state.pulls, [1, 0, 0, 1, 0])
    np.testing.assert_array_equal(state.clicks, [1, 0, 0, 0, 0])
    state = agent.update(None, state, obs, slate, jnp.zeros(3))
    np.testing.assert_array_equal(state.pulls, [2, 0, 0, 2, 1])
    np.testing.assert_array_equal(state.clicks, [1, 0, 0, 0, 0])
    assert int(state.rounds) == 2
    # predict: each item's click rate when examined, 0 where never examined.
    np.testing.assert_allclose(agent.predict(state, obs), [0.5, 0, 0, 0, 0])


def test_pbm_update_adds_every_position_with_its_kappa():
    agent = _make("pbm_ucb", {"kappa": KAPPA})
    state = agent.init(jax.random.key(0))
    slate = jnp.asarray([3, 0, 4], jnp.int32)
    state = agent.update(None, state, _observation(), slate, jnp.asarray([0.0, 1, 1]))
    np.testing.assert_array_equal(state.shows, [1, 0, 0, 1, 1])
    np.testing.assert_allclose(state.exposure, [0.5, 0, 0, 1.0, 0.25])
    np.testing.assert_array_equal(state.clicks, [1, 0, 0, 0, 1])
    # predict: the exposure-corrected attraction S_k / N~_k, 0 where never shown.
    np.testing.assert_allclose(agent.predict(state, _observation()), [2, 0, 0, 0, 4])


@pytest.mark.parametrize(("name", "kwargs"), NAMES)
def test_unobserved_items_come_first_and_masked_items_never(name, kwargs):
    agent = _make(name, kwargs)
    state = agent.init(jax.random.key(0))
    obs = _observation((True, False, True, True, True))
    first = agent.act(None, state, obs)
    np.testing.assert_array_equal(first, [0, 2, 3])
    state = agent.update(None, state, obs, first, jnp.zeros(3))
    second = np.asarray(agent.act(None, state, obs))
    assert second[0] == 4 and 1 not in second


# ---------------------------------------------------------------------------
# Propensities and contracts


def _states(agent):
    """Three states: fresh, after 3 and after 9 updates on random slates."""
    obs = _observation()
    state = agent.init(jax.random.key(0))
    out = [state]
    for t in range(9):
        key = jax.random.key(t)
        slate = jax.random.permutation(key, K)[:L].astype(jnp.int32)
        clicks = jax.random.bernoulli(jax.random.fold_in(key, 1), 0.4, (L,))
        state = agent.update(None, state, obs, slate, clicks.astype(jnp.float32))
        if t in (2, 8):
            out.append(state)
    return out


@pytest.mark.parametrize(("name", "kwargs"), NAMES)
def test_propensities_are_the_one_hot_of_the_deterministic_slate(name, kwargs):
    agent = _make(name, kwargs)
    obs = _observation((True, True, False, True, True))
    slates = jnp.asarray(list(itertools.permutations(range(K), L)), jnp.int32)
    probability = jax.jit(
        jax.vmap(agent.slate_probability, in_axes=(None, None, None, 0))
    )
    for state in _states(agent):
        slate = np.asarray(agent.act(jax.random.key(1), state, obs))
        assert len(set(slate.tolist())) == L and 2 not in slate
        probs = np.asarray(probability(jax.random.key(2), state, obs, slates))
        assert probs.sum() == 1.0
        assert tuple(np.asarray(slates)[probs.argmax()]) == tuple(slate)
        one_hot = np.zeros((L, K))
        one_hot[np.arange(L), slate] = 1.0
        np.testing.assert_array_equal(agent.action_probs(None, state, obs), one_hot)


@pytest.mark.parametrize(("name", "kwargs"), NAMES)
def test_jit_and_vmap_equal_eager(name, kwargs):
    agent = _make(name, kwargs)
    obs = _observation()
    states = _states(agent)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    eager = [agent.act(None, s, obs) for s in states]
    jitted = [jax.jit(agent.act)(None, s, obs) for s in states]
    mapped = jax.vmap(agent.act, in_axes=(None, 0, None))(None, stacked, obs)
    np.testing.assert_array_equal(np.stack(eager), np.stack(jitted))
    np.testing.assert_array_equal(np.stack(eager), mapped)
    clicks = jnp.asarray([0.0, 1.0, 1.0])
    slate = jnp.asarray([4, 2, 0], jnp.int32)
    eager_update = [agent.update(None, s, obs, slate, clicks) for s in states]
    mapped_update = jax.vmap(agent.update, in_axes=(None, 0, None, None, None))(
        None, stacked, obs, slate, clicks
    )
    for i, state in enumerate(eager_update):
        jitted_state = jax.jit(agent.update)(None, states[i], obs, slate, clicks)
        for a, b, c in zip(
            jax.tree.leaves(state),
            jax.tree.leaves(jitted_state),
            jax.tree.leaves(mapped_update),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c[i])


def test_bad_input_names_the_field():
    with pytest.raises(BanditConfigError, match="slate_size must be <= num_arms = 4"):
        agents.make("cascade_ucb1", num_arms=4, slate_size=5)
    with pytest.raises(BanditConfigError, match="slate_size must be a positive"):
        agents.make("cascade_klucb", num_arms=4, slate_size=0)
    with pytest.raises(BanditConfigError, match=r"needs hyperparameter.*'kappa'"):
        agents.make("pbm_ucb", num_arms=4, slate_size=2)
    for kappa, message in (
        ((1.0,), "kappa must have slate_size = 2 entries"),
        ((1.0, 0.0), r"kappa\[1\] must be in \(0, 1\]"),
        ((1.0, 1.5), r"kappa\[1\] must be in \(0, 1\]"),
        ((0.5, 0.9), "kappa must be non-increasing"),
        ("0.5", "kappa must be a list"),
    ):
        with pytest.raises(BanditConfigError, match=message):
            agents.make("pbm_ucb", num_arms=4, slate_size=2, kappa=kappa)
    with pytest.raises(BanditConfigError, match="epsilon"):
        agents.make("pbm_ucb", num_arms=4, slate_size=2, kappa=(1, 1), epsilon=-1)


# ---------------------------------------------------------------------------
# Runs on the synthetic cascading-bandit problem


def test_bernoulli_slate_instances():
    env, params = envs.make("BernoulliSlate-v0", num_arms=8, slate_size=3, gap=0.1)
    means = np.asarray(params.base.means)
    assert sorted(means.tolist()) == pytest.approx([0.1] * 5 + [0.2] * 3)
    assert not (means[:3] == 0.2).all()  # the default order is not the index order
    other = np.asarray(env.sample_params(jax.random.key(5)).base.means)
    assert sorted(other.tolist()) == sorted(means.tolist())
    with pytest.raises(BanditConfigError, match="gap"):
        envs.make("BernoulliSlate-v0", attraction=0.2, gap=0.3)


@pytest.fixture(scope="module")
def cascade_runs():
    """Final cumulative regret over 4 seeds at T = 1,000 and 4,000 (K = 16, L = 2,
    p = 0.2, gap = 0.15, a fresh instance per seed)."""
    env, _ = envs.make("BernoulliSlate-v0", num_arms=16, slate_size=2)
    out = {}
    for name in ("random_slate", "cascade_ucb1", "cascade_klucb"):
        agent = agents.make(name, num_arms=16, slate_size=2)
        traj = bandits.run(env, agent, horizon=4000, seeds=4, resample_params=True)
        regret = np.cumsum(np.asarray(traj.regret, np.float64), axis=1)
        out[name] = regret[:, [999, 3999]]
    return out


def test_cascade_agents_learn_the_synthetic_problem(cascade_runs):
    """Both beat random slates at T = 4,000 (measured: random 909, CascadeUCB1
    463, CascadeKL-UCB 206), KL-UCB beats UCB1 (the paper's ordering), and
    regret grows sublinearly: the last 3,000 rounds cost less than 2 times the
    first 1,000 (a linear learner's ratio is 3)."""
    random, ucb1, klucb = (
        cascade_runs[n] for n in ("random_slate", "cascade_ucb1", "cascade_klucb")
    )
    assert ucb1[:, 1].mean() < 0.6 * random[:, 1].mean()
    assert klucb[:, 1].mean() < 0.6 * ucb1[:, 1].mean()
    for regret in (ucb1, klucb):
        later = regret[:, 1] - regret[:, 0]
        assert later.mean() < 2.0 * regret[:, 0].mean()


def test_pbm_ucb_beats_cascade_ucb1_under_the_pbm():
    """With the examination probabilities known, PBM-UCB uses every position's
    click; CascadeUCB1 (built for the cascade) discards those below the first
    click, and learns slower (4 seeds, T = 3,000)."""
    kappa = (1.0, 0.6, 0.3)
    env, _ = envs.make(
        "BernoulliSlate-v0", num_arms=12, slate_size=3, click_model="pbm", kappa=kappa
    )
    totals = {}
    for name, kwargs in (("cascade_ucb1", {}), ("pbm_ucb", {"kappa": kappa})):
        agent = agents.make(name, num_arms=12, slate_size=3, **kwargs)
        traj = bandits.run(env, agent, horizon=3000, seeds=4, resample_params=True)
        totals[name] = np.asarray(traj.regret).sum(axis=1).mean()
    assert totals["pbm_ucb"] < totals["cascade_ucb1"]
