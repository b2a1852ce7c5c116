"""Logged datasets: generation under each logging policy, propensities, Parquet I/O.

A small recommendation configuration keeps compile times low; `Linear-v0` checks
that any env (one without behaviour history) can be logged.
"""

from __future__ import annotations

import dataclasses
import json
import re

import jax
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import agents
import envs
from agents.warm_start import read_events
from bandits import files
from bandits.validation import BanditConfigError
from envs import logged

SMALL = dict(num_items=60, num_users=80, num_candidates=6, history_length=4)
POLICIES = {
    "uniform": logged.uniform(),
    "popularity": logged.epsilon_greedy_popularity(epsilon=0.3),
    "oracle": logged.softmax_noisy_oracle(temperature=0.05, noise_std=0.05),
}


@pytest.fixture(scope="module")
def rec():
    return envs.make("ContextualRec-v0", **SMALL)


@pytest.fixture(scope="module")
def datasets(rec):
    env, params = rec
    return {
        name: logged.generate(
            jax.random.key(3), env, params, policy, 250, num_streams=8, chunk_steps=8
        )
        for name, policy in POLICIES.items()
    }


@pytest.mark.parametrize("name", list(POLICIES))
def test_shapes_and_propensities(rec, datasets, name):
    env, _ = rec
    data = datasets[name]
    K, H = env.num_arms, env.history_length
    n = 250
    assert len(data) == n
    assert data.context.shape == (n, env.context_dim)
    assert data.arms.shape == (n, K, env.item_dim + 1)
    assert data.history.shape == (n, H, env.item_dim + 1)
    assert data.history_mask.shape == (n, H) and data.history_mask.dtype == bool
    assert data.action.dtype == np.int32 and data.reward.dtype == np.float32
    rows = np.arange(n)
    # The logged propensity is the logging distribution at the logged action.
    np.testing.assert_array_equal(data.propensity, data.action_probs[rows, data.action])
    np.testing.assert_allclose(data.action_probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(data.action_probs[~data.mask] == 0.0)
    assert np.all(data.mask[rows, data.action])
    assert np.all(data.propensity > 0)
    assert set(np.unique(data.reward)) <= {0.0, 1.0}
    # Exact click probabilities of the shown candidates, in [0, 1].
    assert np.all((data.expected_rewards >= 0) & (data.expected_rewards <= 1))


def test_uniform_propensity_is_one_over_allowed(datasets):
    data = datasets["uniform"]
    np.testing.assert_allclose(data.propensity, 1.0 / data.mask.sum(axis=1), rtol=1e-6)


def test_popularity_policy_favours_the_most_popular_allowed_arm(datasets):
    data = datasets["popularity"]
    popularity = np.where(data.mask, data.arms[:, :, -2], -np.inf)
    greedy = popularity.argmax(axis=1)
    allowed = data.mask.sum(axis=1)
    expected = 0.3 / allowed + 0.7
    np.testing.assert_allclose(
        data.action_probs[np.arange(len(data)), greedy], expected, rtol=1e-5
    )


def test_oracle_policy_earns_more_than_uniform(datasets):
    # Averaging exact click probabilities of the logged actions over 250 events:
    # a near-greedy oracle logger must beat uniform by a wide margin.
    def value(d):
        return d.expected_rewards[np.arange(len(d)), d.action].mean()

    assert value(datasets["oracle"]) > value(datasets["uniform"]) + 0.05


def test_events_are_step_major_and_streams_interleave(datasets):
    data = datasets["uniform"]
    assert np.all(np.diff(data.step) >= 0)
    np.testing.assert_array_equal(data.stream[:8], np.arange(8))
    np.testing.assert_array_equal(data.step[:8], 0)


def test_same_key_same_data_and_chunking_does_not_matter(rec):
    env, params = rec
    policy = POLICIES["oracle"]
    a = logged.generate(
        jax.random.key(5), env, params, policy, 40, num_streams=4, chunk_steps=3
    )
    b = logged.generate(
        jax.random.key(5), env, params, policy, 40, num_streams=4, chunk_steps=10
    )
    for name, value in a.columns().items():
        np.testing.assert_array_equal(value, getattr(b, name), err_msg=name)
    c = logged.generate(jax.random.key(6), env, params, policy, 40, num_streams=4)
    assert not np.array_equal(a.action, c.action)


def test_parquet_round_trip_is_exact(datasets, tmp_path):
    data = datasets["oracle"]
    path = logged.save(data, tmp_path / "logs.parquet")
    back = logged.load(path)
    assert set(back.columns()) == set(data.columns())
    for name, value in data.columns().items():
        loaded = getattr(back, name)
        assert loaded.dtype == value.dtype, name
        np.testing.assert_array_equal(loaded, value, err_msg=name)
    assert back.metadata["policy"] == data.metadata["policy"]


def test_env_without_history_logs_and_round_trips(tmp_path):
    env, params = envs.make("Linear-v0", num_arms=4, dim=3)
    data = logged.generate(
        jax.random.key(0), env, params, logged.uniform(), 30, num_streams=2
    )
    assert data.history is None and data.history_mask is None
    path = logged.save(data, tmp_path / "lin.parquet")
    back = logged.load(path)
    assert back.history is None
    np.testing.assert_array_equal(back.context, data.context)
    # The agents' reader (warm starts, pretraining) sees the same arrays.
    events = read_events(path, ("context", "arms", "mask", "history", "action"))
    assert "history" not in events and events["arms"].shape == (30, 4, 0)
    np.testing.assert_array_equal(events["action"], data.action)


def test_agent_logging_policy_records_the_agents_propensities(rec):
    env, params = rec
    agent = agents.epsilon_greedy(
        num_arms=env.num_arms, dim=env.item_dim + 1, epsilon=0.5, features="arms"
    )
    data = logged.generate(
        jax.random.key(1), env, params, logged.from_agent(agent), 64, num_streams=2
    )
    # epsilon-greedy: every allowed arm has probability >= epsilon / |allowed|.
    allowed = data.mask.sum(axis=1)
    assert np.all(data.propensity >= 0.5 / allowed - 1e-6)
    assert data.metadata["policy"] == "agent_epsilon_greedy"


def test_split_take_and_concatenate(datasets):
    data = datasets["uniform"]
    first, last = data.split(0.8)
    assert len(first) == 200 and len(last) == 50
    joined = logged.concatenate([first, last])
    np.testing.assert_array_equal(joined.arms, data.arms)
    assert data.summary()["events"] == 250


def test_bad_inputs_raise_before_compute(rec, tmp_path):
    env, params = rec
    with pytest.raises(BanditConfigError, match="num_events"):
        logged.generate(jax.random.key(0), env, params, logged.uniform(), 0)
    with pytest.raises(BanditConfigError, match="epsilon"):
        logged.epsilon_greedy_popularity(epsilon=0.0)
    with pytest.raises(BanditConfigError, match="temperature"):
        logged.softmax_noisy_oracle(temperature=0.0)
    with pytest.raises(BanditConfigError, match="action_probs"):
        logged.from_agent(agents.linucb(num_arms=3, dim=2)._replace(action_probs=None))
    with pytest.raises(BanditConfigError, match="does not exist"):
        logged.load(tmp_path / "missing.parquet")
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), other)
    with pytest.raises(BanditConfigError, match="not a logged dataset"):
        logged.load(other)


def test_one_reader_checks_format_and_version_for_envs_and_agents(tmp_path):
    """`logged.load` and the agents' `read_events` share `bandits.files`: both
    refuse a file of another format version or one that is not Parquet, with
    the path in the message."""
    env, params = envs.make("Linear-v0", num_arms=3, dim=2)
    data = logged.generate(
        jax.random.key(0), env, params, logged.uniform(), 8, num_streams=2
    )
    path = logged.save(data, tmp_path / "v1.parquet")
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[files.FORMAT_KEY])
    meta["version"] = files.FORMAT_VERSION + 1
    future = tmp_path / "future.parquet"
    pq.write_table(
        table.replace_schema_metadata({files.FORMAT_KEY: json.dumps(meta).encode()}),
        future,
    )
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    for read in (logged.load, lambda p: read_events(p, ("context", "action"))):
        with pytest.raises(BanditConfigError, match="format version 2"):
            read(future)
        with pytest.raises(BanditConfigError, match="not a readable Parquet file"):
            read(garbage)
        read(path)  # the version written today reads back


def test_oracle_policy_refuses_an_env_without_expected_rewards():
    """The Env protocol includes `expected_rewards`; a duck-typed env that lacks
    it is refused before any compute, naming the method."""
    env, params = envs.make("Linear-v0", num_arms=3, dim=2)

    class NoOracle:
        num_arms = env.num_arms

        def __getattr__(self, name):
            if name == "expected_rewards":
                raise AttributeError(name)
            return getattr(env, name)

    with pytest.raises(BanditConfigError, match="expected_rewards"):
        logged.generate(
            jax.random.key(0), NoOracle(), params, logged.softmax_noisy_oracle(), 8
        )


def _real_log(data):
    """`data` as real logs have it: no full distribution, no exact rewards, a slot."""
    position = (np.arange(len(data)) % 3).astype(np.int32)
    return dataclasses.replace(
        data, action_probs=None, expected_rewards=None, position=position
    )


def test_real_logs_without_oracle_columns_round_trip_with_position(datasets, tmp_path):
    """Real logs (the Open Bandit Dataset) record neither `action_probs` nor
    `expected_rewards`; they are None in memory, absent from the file, and None
    again on load. `position` is kept exactly."""
    real = _real_log(datasets["uniform"])
    assert "action_probs" not in real.columns() and "position" in real.columns()
    path = logged.save(real, tmp_path / "real.parquet")
    assert "expected_rewards" not in files.read_logged_shapes(path)
    back = logged.load(path)
    assert back.action_probs is None and back.expected_rewards is None
    assert back.position.dtype == np.int32
    np.testing.assert_array_equal(back.position, real.position)
    np.testing.assert_array_equal(back.propensity, real.propensity)
    summary = back.summary()
    assert "oracle_ctr" not in summary and summary["events"] == 250
    first, last = back.split(0.5)
    assert last.position[0] == real.position[125] and first.action_probs is None
    # Simulated logs keep every column and gain no position.
    sim = logged.load(logged.save(datasets["uniform"], tmp_path / "sim.parquet"))
    assert sim.position is None and "oracle_ctr" in sim.summary()


def test_required_columns_stay_required_and_mixed_logs_are_refused(datasets, tmp_path):
    real = _real_log(datasets["uniform"])
    columns = dict(real.columns())
    del columns["propensity"]
    path = files.write_logged(tmp_path / "nopropensity.parquet", columns, {})
    with pytest.raises(
        BanditConfigError, match=r"missing column\(s\) \['propensity'\]"
    ):
        logged.load(path)
    with pytest.raises(BanditConfigError, match="'action_probs' is in dataset"):
        logged.concatenate([real, datasets["uniform"]])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.array([-1] * 250, np.int32), "column 'position' row 0 is -1"),
        (np.zeros(250, np.float32), "'position' must hold integers"),
    ],
)
def test_bad_positions_are_refused(datasets, value, message):
    with pytest.raises(BanditConfigError, match=re.escape(message)):
        files.check_logged_events({"position": value}, "logs")
