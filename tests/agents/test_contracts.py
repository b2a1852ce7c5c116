"""Contracts every registered agent must honour.

Parametrized over `agents.registered()` at collection time, so an agent added by a
new module is covered as soon as `agents/__init__.py` imports it. Each agent is
built with `num_arms` and `dim` only (its other hyperparameters at their defaults)
on a small `Linear-v0` (or, for agents that read item features from `obs.arms`,
on `LinearArmFeatures-v0`); agents with a `features` hyperparameter are also built
with `features="arms"` on `LinearArmFeatures-v0`. Slate agents (a `slate_size`
hyperparameter) are built with `slate_size=2` (PBM-UCB with kappa = (1, 0.5)) on
`LinearSlate-v0` (K = 5, d = 4, cascade clicks) and learn from the per-position
clicks, as in the kernel.

Checked: `jit(f) == f` for init/act/update/action_probs; `vmap(f)(xs) ==
stack([f(x) for x in xs])` for act/update/action_probs; state structure, shapes and
dtypes are preserved by `update`; actions are int32 scalars on allowed arms;
`action_probs` are a distribution that is zero on masked arms and matches the
frequencies of `act`; `predict`, where an agent has it, gives K finite floats,
the same jitted, eager and under vmap. For slates: actions are (L,) int32
arrays of distinct allowed items; `action_probs` is (L, K), one such
distribution per position, matching the per-position frequencies of `act`;
`slate_probability` sums to one over every ordered slate and its per-position
marginals are `action_probs`.
"""

from __future__ import annotations

import inspect
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
import envs
from bandits.records import agent_reward

NUM_ARMS = 5
DIM = 4
ARM_DIM = 4
CONTEXT_DIM = 3
SLATE_SIZE = 2
ROLLOUT_STEPS = 8
STATE_STEPS = (0, 3, 7)  # states after this many updates, used as a small batch
# One mask per state. The last state (past every agent's forced initial pulls,
# 5 = K rounds) keeps three allowed arms, so epsilon mixing and sampling show in
# its `action_probs`; the single-arm mask goes to a state during the forced pulls.
MASKS = (
    (True, True, True, True, True),
    (False, False, False, True, False),
    (True, False, True, False, True),
)
# Slates need at least L allowed items: exactly L in the middle state.
SLATE_MASKS = (
    (True, True, True, True, True),
    (False, True, False, True, False),
    (True, False, True, False, True),
)
# Per-position clicks handed to a slate agent's update (one per state).
SLATE_CLICKS = ((0.0, 1.0), (1.0, 0.0), (0.0, 0.0))


def _cases() -> list:
    params = []
    for name in sorted(agents.registered()):
        hyper = agents.hyperparameters(name)
        given = ("num_arms", "dim", "slate_size", "kappa")
        missing = [
            k
            for k, v in hyper.items()
            if v is inspect.Parameter.empty and k not in given
        ]
        marks = ()
        if missing:
            marks = pytest.mark.skip(
                reason=f"agent {name!r} needs hyperparameters {missing} beyond "
                "num_arms and dim"
            )
        if "slate_size" in hyper:
            params.append(
                pytest.param((name, "slate"), id=f"{name}-slate", marks=marks)
            )
            continue
        params.append(
            pytest.param((name, "context"), id=f"{name}-context", marks=marks)
        )
        if "features" in hyper:
            params.append(pytest.param((name, "arms"), id=f"{name}-arms", marks=marks))
    return params


def _linear_env():
    return envs.make("Linear-v0", num_arms=NUM_ARMS, dim=DIM)


def _arm_features_env():
    return envs.make(
        "LinearArmFeatures-v0",
        num_arms=NUM_ARMS,
        arm_dim=ARM_DIM,
        context_dim=CONTEXT_DIM,
    )


def _build(name: str, form: str):
    """The agent on the first small env it runs on.

    `features="arms"` agents use `LinearArmFeatures-v0`. Other agents try
    `Linear-v0` (dim = context dim), then `LinearArmFeatures-v0` (dim = context
    dim; for agents that read item features from `obs.arms`). An agent that runs
    on neither fails the test with both errors.
    """
    if form == "slate":
        env, env_params = envs.make(
            "LinearSlate-v0", num_arms=NUM_ARMS, dim=DIM, slate_size=SLATE_SIZE
        )
        extra = {"slate_size": SLATE_SIZE}
        if "kappa" in agents.hyperparameters(name):
            extra["kappa"] = (1.0, 0.5)
        agent = agents.make(name, num_arms=NUM_ARMS, dim=DIM, **extra)
        return env, env_params, agent
    if form == "arms":
        env, env_params = _arm_features_env()
        agent = agents.make(name, num_arms=NUM_ARMS, dim=ARM_DIM, features="arms")
        return env, env_params, agent
    errors = []
    for make_env, dim in ((_linear_env, DIM), (_arm_features_env, CONTEXT_DIM)):
        env, env_params = make_env()
        try:
            agent = agents.make(name, num_arms=NUM_ARMS, dim=dim)
            obs, _ = jax.eval_shape(env.reset, jax.random.key(0), env_params)
            state = jax.eval_shape(agent.init, jax.random.key(2))
            jax.eval_shape(agent.act, jax.random.key(1), state, obs)  # traces only
        except Exception as error:  # reported below if no env fits
            errors.append(f"{type(env).__name__}: {type(error).__name__}: {error}")
            continue
        return env, env_params, agent
    pytest.fail(f"agent {name!r} runs on none of the contract envs: {errors}")


def _rollout(env, env_params, agent, steps: int, seed: int = 0):
    """Observations and the agent state held before acting on each of them."""
    key = jax.random.key(seed)
    key_reset, key_init, key = jax.random.split(key, 3)
    obs, env_state = jax.jit(env.reset)(key_reset, env_params)
    state = jax.jit(agent.init)(key_init)
    act, update, step = jax.jit(agent.act), jax.jit(agent.update), jax.jit(env.step)
    observations, states = [], []
    for t in range(steps):
        observations.append(obs)
        states.append(state)
        key_act, key_env, key_update = jax.random.split(jax.random.fold_in(key, t), 3)
        action = act(key_act, state, obs)
        next_obs, env_state, feedback = step(key_env, env_state, action, env_params)
        state = update(key_update, state, obs, action, agent_reward(feedback))
        obs = next_obs
    observations.append(obs)
    states.append(state)
    return observations, states


def _stack(trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def _assert_trees_equal(actual, expected):
    """Integers and booleans exactly; floats up to rounding.

    XLA may fuse and reorder floating-point operations differently inside a jitted
    or vmapped program than op by op, so float leaves agree to a few ulps of
    float32 rather than bit for bit (relative 1e-5, absolute 1e-6).
    """
    actual_leaves, actual_def = jax.tree_util.tree_flatten(actual)
    expected_leaves, expected_def = jax.tree_util.tree_flatten(expected)
    assert actual_def == expected_def
    for a, e in zip(actual_leaves, expected_leaves, strict=True):
        a, e = np.asarray(a), np.asarray(e)
        assert a.shape == e.shape
        assert a.dtype == e.dtype
        if np.issubdtype(e.dtype, np.inexact):
            np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(a, e)


class Case:
    """One agent on its contract env, with a batch of (key, state, obs) triples
    with varied masks, and its functions compiled once for every test.

    The reference for the vmap tests is the jitted per-example result; the jitted
    functions themselves are checked against op-by-op execution (`eager_*`) in
    the jit tests, so every comparison chains back to un-jitted code.
    """

    REWARDS = (0.0, 1.0, -0.5)

    def __init__(self, agent, batch):
        self.agent, self.batch = agent, batch
        self.act = jax.jit(agent.act)
        self.update = jax.jit(agent.update)
        self.actions = [self.act(k, s, o) for k, s, o in batch]
        rewards = self.REWARDS if agent.slate_size is None else SLATE_CLICKS
        self.rewards = [jnp.asarray(r, jnp.float32) for r in rewards]
        self.updated = [
            self.update(k, s, o, a, r)
            for (k, s, o), a, r in zip(batch, self.actions, self.rewards, strict=True)
        ]
        self.probs = None
        if agent.action_probs is not None:
            self.action_probs = jax.jit(agent.action_probs)
            self.probs = [self.action_probs(k, s, o) for k, s, o in batch]

    def many_actions(self, i: int) -> np.ndarray:
        """4,000 draws of `act` on batch element i (keys fixed per element)."""
        if not hasattr(self, "_act_many"):
            self._act_many = jax.jit(jax.vmap(self.agent.act, in_axes=(0, None, None)))
        _, state, obs = self.batch[i]
        keys = jax.random.split(jax.random.key(200 + i), 4000)
        return np.asarray(self._act_many(keys, state, obs))

    def stacked_batch(self):
        return tuple(_stack(column) for column in zip(*self.batch, strict=True))


@pytest.fixture(scope="module", params=_cases())
def case(request):
    name, form = request.param
    env, env_params, agent = _build(name, form)
    observations, states = _rollout(env, env_params, agent, ROLLOUT_STEPS)
    keys = jax.random.split(jax.random.key(42), len(STATE_STEPS))
    batch = []
    masks = MASKS if form != "slate" else SLATE_MASKS
    for i, step in enumerate(STATE_STEPS):
        obs = observations[step]._replace(mask=jnp.asarray(masks[i]))
        batch.append((keys[i], states[step], obs))
    return Case(agent, batch)


def test_init_is_deterministic_and_jittable(case):
    agent = case.agent
    key = jax.random.key(7)
    _assert_trees_equal(jax.jit(agent.init)(key), agent.init(key))
    _assert_trees_equal(agent.init(key), agent.init(key))


def test_jit_act_equals_act(case):
    for (key, state, obs), action in zip(case.batch, case.actions, strict=True):
        _assert_trees_equal(action, case.agent.act(key, state, obs))


def test_act_returns_int32_scalar(case):
    """An int32 scalar, or for a slate agent an (L,) int32 array of distinct
    items."""
    size = case.agent.slate_size
    for action in case.actions:
        assert action.shape == (() if size is None else (size,))
        assert action.dtype == jnp.int32
        if size is not None:
            assert len(set(np.asarray(action).tolist())) == size, action


def test_jit_update_equals_update(case):
    for (key, state, obs), action, reward, updated in zip(
        case.batch, case.actions, case.rewards, case.updated, strict=True
    ):
        _assert_trees_equal(updated, case.agent.update(key, state, obs, action, reward))


def test_update_preserves_state_structure(case):
    for (_, state, _), new_state in zip(case.batch, case.updated, strict=True):
        assert jax.tree_util.tree_structure(new_state) == (
            jax.tree_util.tree_structure(state)
        )
        for new, old in zip(
            jax.tree_util.tree_leaves(new_state),
            jax.tree_util.tree_leaves(state),
            strict=True,
        ):
            assert jnp.shape(new) == jnp.shape(old)
            assert jnp.asarray(new).dtype == jnp.asarray(old).dtype


def test_vmap_act_equals_stacked_act(case):
    keys, states, observations = case.stacked_batch()
    actual = jax.vmap(case.agent.act)(keys, states, observations)
    _assert_trees_equal(actual, jnp.stack(case.actions))


def test_vmap_update_equals_stacked_update(case):
    keys, states, observations = case.stacked_batch()
    actual = jax.vmap(case.agent.update)(
        keys, states, observations, jnp.stack(case.actions), jnp.stack(case.rewards)
    )
    _assert_trees_equal(actual, _stack(case.updated))


def test_act_never_picks_a_masked_arm(case):
    for i, (_, _, obs) in enumerate(case.batch):
        actions = case.many_actions(i)
        mask = np.asarray(obs.mask)
        assert mask[actions].all(), f"picked masked arms {actions[~mask[actions]]}"


def test_predict_is_finite_per_arm_under_jit_and_vmap(case):
    """`predict(state, obs)`, the agent's reward model, needs no key: one finite
    float per arm, the same jitted, op by op and batched."""
    predict = case.agent.predict
    if predict is None:
        pytest.skip(f"agent {case.agent.name!r} exposes no predict")
    jitted = jax.jit(predict)
    values = [jitted(state, obs) for _, state, obs in case.batch]
    for (_, state, obs), value in zip(case.batch, values, strict=True):
        assert value.shape == (NUM_ARMS,)
        assert jnp.issubdtype(value.dtype, jnp.floating)
        assert np.isfinite(np.asarray(value)).all()
        _assert_trees_equal(value, predict(state, obs))
    _, states, observations = case.stacked_batch()
    _assert_trees_equal(jax.vmap(predict)(states, observations), jnp.stack(values))


def _needs_action_probs(case):
    if case.probs is None:
        pytest.skip(f"agent {case.agent.name!r} exposes no action_probs")


def test_jit_and_vmap_action_probs(case):
    _needs_action_probs(case)
    for (key, state, obs), probs in zip(case.batch, case.probs, strict=True):
        _assert_trees_equal(probs, case.agent.action_probs(key, state, obs))
    keys, states, observations = case.stacked_batch()
    _assert_trees_equal(
        jax.vmap(case.agent.action_probs)(keys, states, observations),
        jnp.stack(case.probs),
    )


def test_action_probs_are_a_distribution_over_allowed_arms(case):
    _needs_action_probs(case)
    size = case.agent.slate_size
    for (_, _, obs), probs in zip(case.batch, case.probs, strict=True):
        probs = np.asarray(probs)
        assert probs.shape == ((NUM_ARMS,) if size is None else (size, NUM_ARMS))
        assert (probs >= 0).all()
        np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=0, atol=1e-5)
        assert (probs[..., ~np.asarray(obs.mask)] == 0).all()


def test_action_probs_match_act_frequencies(case):
    """The propensities are those of `act`.

    Frequencies of 4,000 draws have standard error <= 0.008; an estimated
    propensity (Monte Carlo, e.g. Thompson sampling's 1,000 draws) adds <= 0.016.
    The tolerance 0.08 is over 4 combined standard errors.
    """
    _needs_action_probs(case)
    for i in range(len(case.batch)):
        actions = case.many_actions(i).reshape(4000, -1)  # (draws, positions)
        probs = np.asarray(case.probs[i]).reshape(actions.shape[1], NUM_ARMS)
        for position in range(actions.shape[1]):
            frequencies = np.bincount(actions[:, position], minlength=NUM_ARMS) / 4000
            np.testing.assert_allclose(frequencies, probs[position], rtol=0, atol=0.08)


def _slate_cases() -> list:
    return [c for c in _cases() if c.values[0][1] == "slate"]


@pytest.mark.parametrize("case", _slate_cases(), indirect=True)
def test_slate_probability_sums_to_one_with_action_probs_as_marginals(case):
    """Over all K! / (K - L)! ordered slates: the probabilities sum to one, and
    summed over the slates with item k at position l they are action_probs[l, k]
    (exact arithmetic on probabilities, so 1e-5)."""
    if case.agent.slate_probability is None:
        pytest.skip(f"agent {case.agent.name!r} gives no slate probabilities")
    slates = jnp.asarray(
        list(itertools.permutations(range(NUM_ARMS), case.agent.slate_size)),
        jnp.int32,
    )
    probability = jax.jit(
        jax.vmap(case.agent.slate_probability, in_axes=(None, None, None, 0))
    )
    for (key, state, obs), probs in zip(case.batch, case.probs, strict=True):
        p = np.asarray(probability(key, state, obs, slates), np.float64)
        assert (p >= 0).all()
        np.testing.assert_allclose(p.sum(), 1.0, rtol=0, atol=1e-5)
        marginals = np.zeros((case.agent.slate_size, NUM_ARMS))
        for slate, weight in zip(np.asarray(slates), p, strict=True):
            marginals[np.arange(slate.size), slate] += weight
        np.testing.assert_allclose(marginals, np.asarray(probs), rtol=0, atol=1e-5)
