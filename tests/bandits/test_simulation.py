"""The simulation loop: determinism, seed bookkeeping, shapes, regret, input checks."""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
import bandits
import envs
from bandits import Agent, BanditConfigError, NonFiniteAgentStateError

NUM_ARMS, DIM, HORIZON = 4, 3, 60

# One agent object shared by the tests below, so `bandits.run` reuses its compiled
# program (cached per env, agent, horizon) instead of compiling one per test.
LINTS = agents.lints(NUM_ARMS, DIM)
simulate = jax.jit(bandits.simulate, static_argnums=(1, 3, 4))


def _env():
    return envs.make("Linear-v0", num_arms=NUM_ARMS, dim=DIM)


def _assert_trajectories_identical(a, b):
    for field, x, y in zip(a._fields, a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=field)


def _assert_trajectories_close(a, b):
    """Actions exactly, floats to float32 rounding (for programs fused differently)."""
    for field, x, y in zip(a._fields, a, b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if np.issubdtype(x.dtype, np.inexact):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=field)
        else:
            np.testing.assert_array_equal(x, y, err_msg=field)


def _row(trajectory, i):
    return jax.tree_util.tree_map(lambda leaf: leaf[i], trajectory)


# --- determinism and seeds ----------------------------------------------------


def test_same_seeds_give_bit_identical_runs():
    """Two separately built (so separately compiled) agents, same seeds."""
    env, params = _env()
    first = bandits.run(
        env, agents.lints(NUM_ARMS, DIM), horizon=HORIZON, seeds=4, params=params
    )
    second = bandits.run(
        env, agents.lints(NUM_ARMS, DIM), horizon=HORIZON, seeds=4, params=params
    )
    _assert_trajectories_identical(first, second)
    _assert_trajectories_identical(
        first, bandits.run(env, LINTS, horizon=HORIZON, seeds=4)
    )


def test_different_seeds_differ():
    env, _ = _env()
    traj = bandits.run(env, LINTS, horizon=HORIZON, seeds=2)
    rewards = np.asarray(traj.reward)
    assert not np.array_equal(rewards[0], rewards[1])
    assert not np.array_equal(np.asarray(traj.action)[0], np.asarray(traj.action)[1])


def test_explicit_seed_list_matches_rows_of_a_seed_count():
    env, _ = _env()
    all_four = bandits.run(env, LINTS, horizon=HORIZON, seeds=4)
    only_three = bandits.run(env, LINTS, horizon=HORIZON, seeds=[3])
    _assert_trajectories_identical(_row(only_three, 0), _row(all_four, 3))
    reordered = bandits.run(env, LINTS, horizon=HORIZON, seeds=[2, 0])
    _assert_trajectories_identical(_row(reordered, 0), _row(all_four, 2))
    _assert_trajectories_identical(_row(reordered, 1), _row(all_four, 0))


def test_simulate_equals_a_row_of_run():
    """`run` gives seed s the key split(key(s))[1] for the run ([0] draws params)."""
    env, params = _env()
    batch = bandits.run(env, LINTS, horizon=HORIZON, seeds=[5, 3])
    _, key_run = jax.random.split(jax.random.key(3))
    single = simulate(key_run, env, params, LINTS, HORIZON)
    _assert_trajectories_identical(single, _row(batch, 1))


def test_direct_seed_keys_run_each_seed_key_as_simulate_does():
    """`seed_key="direct"`: seed s runs on key(s) itself, in `run` and `sweep`
    (the same actions; floats to float32 rounding, since a batch of two and one
    stream are two programs that another CPU may fuse differently)."""
    env, params = _env()
    batch = bandits.run(env, LINTS, horizon=HORIZON, seeds=[5, 3], seed_key="direct")
    single = simulate(jax.random.key(3), env, params, LINTS, HORIZON)
    _assert_trajectories_close(single, _row(batch, 1))
    swept = bandits.sweep(
        env,
        functools.partial(agents.lints, num_arms=NUM_ARMS, dim=DIM),
        {"v": [0.5]},
        horizon=HORIZON,
        seeds=[5, 3],
        seed_key="direct",
    )
    # v traced in the sweep, a constant in the run: float32 rounding apart.
    _assert_trajectories_close(_row(swept, 0), batch)


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"seed_key": "whole"}, "must be one of 'split', 'direct'"),
        ({"seed_key": "direct", "resample_params": True}, "resample_params"),
    ],
)
def test_bad_seed_key_is_refused(kwargs, problem):
    env, _ = _env()
    with pytest.raises(BanditConfigError, match=problem):
        bandits.run(env, LINTS, horizon=HORIZON, seeds=2, **kwargs)


def test_resample_params_draws_one_instance_per_seed():
    env, _ = _env()
    seeds = [0, 1]
    resampled = bandits.run(
        env, LINTS, horizon=HORIZON, seeds=seeds, resample_params=True
    )
    shared = bandits.run(env, LINTS, horizon=HORIZON, seeds=seeds)
    for i, seed in enumerate(seeds):
        key_params, key_run = jax.random.split(jax.random.key(seed))
        instance = env.sample_params(key_params)
        expected = simulate(key_run, env, instance, LINTS, HORIZON)
        # The instance is drawn inside the compiled program here and op by op
        # above, so its floats may differ in the last bit.
        _assert_trajectories_close(_row(resampled, i), expected)
        # Same keys, different instance: the expected rewards differ.
        assert not np.array_equal(
            np.asarray(resampled.expected_reward)[i],
            np.asarray(shared.expected_reward)[i],
        )
    # The two seeds' instances differ from each other.
    instances = [
        env.sample_params(jax.random.split(jax.random.key(s))[0]) for s in seeds
    ]
    assert not np.allclose(instances[0].theta, instances[1].theta)


# --- shapes and regret --------------------------------------------------------


def test_trajectory_shapes_and_regret():
    env, params = _env()
    seeds, horizon = 4, HORIZON
    traj = bandits.run(env, LINTS, horizon=horizon, seeds=seeds)
    assert traj.slate is None  # a single-item env keeps no slate record
    for field, leaf in zip(traj._fields, traj, strict=True):
        if field != "slate":
            assert np.shape(leaf) == (seeds, horizon), field
    assert traj.action.dtype == jnp.int32
    assert traj.optimal.dtype == jnp.bool_
    regret = np.asarray(traj.regret)
    assert (regret >= 0).all()
    np.testing.assert_array_equal(
        regret, np.asarray(traj.optimal_expected_reward - traj.expected_reward)
    )
    np.testing.assert_array_equal(np.asarray(traj.optimal), regret == 0)
    single = bandits.simulate(
        jax.random.key(0), env, params, agents.random(NUM_ARMS), 7
    )
    for field, leaf in zip(single._fields, single, strict=True):
        if field != "slate":
            assert np.shape(leaf) == (7,), field


def test_regret_is_against_the_best_arm_of_each_context():
    """Recompute expected rewards theta_k . x from the env's parameters."""
    env, params = _env()
    traj = simulate(jax.random.key(1), env, params, LINTS, HORIZON)
    obs, _state = env.reset(jax.random.split(jax.random.key(1), 3)[0], params)
    mu = np.asarray(params.theta) @ np.asarray(obs.context)
    assert float(traj.optimal_expected_reward[0]) == pytest.approx(mu.max(), rel=1e-6)
    chosen = int(traj.action[0])
    assert float(traj.expected_reward[0]) == pytest.approx(mu[chosen], rel=1e-6)


# --- input checks -------------------------------------------------------------


class _Spy:
    """Counts how often the agent's functions are traced or called."""

    def __init__(self):
        self.calls = 0
        inner = agents.random(NUM_ARMS)

        def init(key):
            self.calls += 1
            return inner.init(key)

        self.agent = inner._replace(init=init, name="spy")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"horizon": 0, "seeds": 2}, "horizon"),
        ({"horizon": -1, "seeds": 2}, "horizon"),
        ({"horizon": 2.5, "seeds": 2}, "horizon"),
        ({"horizon": True, "seeds": 2}, "horizon"),
        ({"horizon": 10, "seeds": 0}, "seeds"),
        ({"horizon": 10, "seeds": []}, "seeds"),
        ({"horizon": 10, "seeds": [-1]}, "seeds"),
        ({"horizon": 10, "seeds": "abc"}, "seeds"),
        ({"horizon": 10, "seeds": "12"}, "seeds"),
        ({"horizon": 10, "seeds": [1.5]}, "seeds"),
        ({"horizon": 10, "seeds": True}, "seeds"),
        ({"horizon": 10, "seeds": [2**32]}, "seeds"),
    ],
)
def test_bad_run_input_raises_before_compute(kwargs, field):
    env, _ = _env()
    spy = _Spy()
    with pytest.raises(BanditConfigError, match=field):
        bandits.run(env, spy.agent, **kwargs)
    assert spy.calls == 0


class _BrokenState(NamedTuple):
    t: jax.Array  # () int32  rounds seen
    value: jax.Array  # () float32  becomes NaN at round 5 if the reward there is > 0


def _broken_agent() -> Agent:
    """Plays arm 0; its state turns NaN after the update of round 5 when r_5 > 0."""

    def init(key):
        del key
        return _BrokenState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32))

    def act(key, state, obs):
        del key, state, obs
        return jnp.zeros((), jnp.int32)

    def update(key, state, obs, action, reward):
        del key, obs, action
        poisoned = (state.t == 5) & (reward > 0)
        value = jnp.where(poisoned, jnp.nan, state.value)
        return _BrokenState(state.t + 1, value)

    return Agent(init, act, update, name="broken")


def test_non_finite_state_names_agent_seed_and_step():
    env, _ = _env()
    agent = _broken_agent()
    seeds = list(range(10, 18))
    traj = bandits.run(env, agent, horizon=20, seeds=seeds, check_finite=False)
    positive = np.asarray(traj.reward)[:, 5] > 0
    assert positive.any()
    assert not positive.all(), "pick seeds where only some runs break"
    first_bad_seed = seeds[int(np.flatnonzero(positive)[0])]
    message = re.escape("'broken'") + r".*seed " + str(first_bad_seed) + r", step 5\b"
    with pytest.raises(NonFiniteAgentStateError, match=message) as info:
        bandits.run(env, agent, horizon=20, seeds=seeds)
    assert f"{int(positive.sum())} of {len(seeds)}" in str(info.value)


def test_record_regret_is_exactly_zero_for_the_best_allowed_arm():
    from bandits.records import record
    from bandits.types import Observation

    expected = jnp.asarray([0.3, 0.9, 1.2, 0.7], jnp.float32)
    mask = jnp.asarray([True, True, False, True])  # arm 2 is best but not allowed
    obs = Observation(
        context=jnp.zeros(2), arms=jnp.zeros((4, 1)), mask=mask, history=None
    )
    best = record(obs, jnp.int32(1), 0.0, expected)
    assert float(best.regret) == 0.0 and bool(best.optimal)
    assert float(best.optimal_expected_reward) == pytest.approx(0.9)
    worse = record(obs, jnp.int32(3), 0.0, expected)
    assert float(worse.regret) == pytest.approx(0.2) and not bool(worse.optimal)


@pytest.mark.slow
def test_keeping_final_states_leaves_the_trajectory_bit_identical():
    env, params = envs.make("Linear-v0", num_arms=4, dim=5)
    agent = agents.lints(num_arms=4, dim=5)
    plain = bandits.run(env, agent, horizon=60, seeds=[3, 1, 4], params=params)
    kept, states = bandits.run_with_states(
        env, agent, horizon=60, seeds=[3, 1, 4], states_of=[4, 3], params=params
    )
    for field in plain._fields:
        np.testing.assert_array_equal(getattr(kept, field), getattr(plain, field))
    assert states.root.shape == (2, 4, 5, 5)
    # Row 0 is seed 4's state: b sums reward * context over the pulls, so its
    # arms' b are non-zero after 60 rounds, and the two seeds' states differ.
    assert np.abs(np.asarray(states.theta_hat[0])).sum() > 0
    assert not np.allclose(states.theta_hat[0], states.theta_hat[1])
    _, none = bandits.run_with_states(
        env, agent, horizon=60, seeds=[3, 1, 4], states_of=[], params=params
    )
    assert none is None

    def agent_fn(**kw):
        return agents.lints(num_arms=4, dim=5, **kw)

    swept = bandits.sweep(
        env, agent_fn, {"v": [0.1, 1.0]}, horizon=60, seeds=[3, 1], params=params
    )
    swept_kept, swept_states = bandits.sweep_with_states(
        env,
        agent_fn,
        {"v": [0.1, 1.0]},
        horizon=60,
        seeds=[3, 1],
        states_of=[1],
        params=params,
    )
    for field in swept._fields:
        np.testing.assert_array_equal(getattr(swept_kept, field), getattr(swept, field))
    assert swept_states.b.shape == (2, 1, 4, 5)


def test_final_states_of_an_unknown_seed_is_refused():
    env, params = envs.make("Linear-v0", num_arms=4, dim=5)
    agent = agents.linucb(num_arms=4, dim=5)
    with pytest.raises(bandits.BanditConfigError, match="states_of: 7 is not one"):
        bandits.run_with_states(
            env, agent, horizon=5, seeds=[0, 1], states_of=[7], params=params
        )


def test_program_cache_is_bounded():
    """Building (not compiling) more run programs than the cache holds keeps at
    most `PROGRAM_CACHE_SIZE` of them, so a long session stays bounded."""
    from bandits import simulation

    env, _ = envs.make("Linear-v0", num_arms=3, dim=2)
    agent = agents.random(num_arms=3, dim=2)
    for horizon in range(1, simulation.PROGRAM_CACHE_SIZE + 10):
        simulation._run_compiled(env, agent, horizon, False, "split", False, ())
    info = simulation._run_compiled.cache_info()
    assert info.maxsize == simulation.PROGRAM_CACHE_SIZE
    assert info.currsize <= simulation.PROGRAM_CACHE_SIZE
