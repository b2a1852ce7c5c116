"""`Classification-v0` and the dataset loaders."""

from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from bandits.validation import BanditConfigError
from envs import classification as cls

HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None

# Rows, columns after encoding, and class counts documented by UCI.
UCI_SHAPES = {
    "mushroom": (8124, 117, [4208, 3916]),
    "shuttle": (58000, 9, [45586, 50, 171, 8903, 3267, 10, 13]),
    "adult": (48842, 108, [37155, 11687]),
    "magic": (19020, 10, [12332, 6688]),
}


@pytest.mark.parametrize("name", sorted(UCI_SHAPES))
def test_uci_loaders_match_the_documented_counts(name):
    rows, columns, counts = UCI_SHAPES[name]
    data = cls.load_dataset(name)
    assert data.features.shape == (rows, columns)
    assert data.features.dtype == np.float32 and np.all(np.isfinite(data.features))
    np.testing.assert_array_equal(np.bincount(data.labels), counts)
    assert data.num_classes == len(counts)


@pytest.mark.skipif(not HAS_SKLEARN, reason="scikit-learn (extra 'datasets') absent")
@pytest.mark.parametrize(
    ("name", "shape", "classes"),
    [
        ("digits", (1797, 64), 10),
        ("wine", (178, 13), 3),
        ("breast_cancer", (569, 30), 2),
    ],
)
def test_sklearn_loaders(name, shape, classes):
    data = cls.load_dataset(name)
    assert data.features.shape == shape and data.num_classes == classes


@pytest.mark.skipif(HAS_SKLEARN, reason="scikit-learn is installed")
def test_sklearn_loaders_explain_the_missing_extra():
    with pytest.raises(BanditConfigError, match="datasets"):
        cls.load_dataset("digits")


def _toy(name="toy-4x2"):
    features = np.asarray([[0.0, 1.0], [2.0, 0.0], [4.0, 1.0], [6.0, 0.0]], np.float32)
    labels = np.asarray([0, 1, 2, 1])
    cls.register_dataset(name, features, labels)
    return features, labels


def test_rows_are_a_per_stream_permutation_with_one_hot_expected_rewards():
    features, labels = _toy()
    env, params = envs.make("Classification-v0", dataset="toy-4x2")
    assert env.num_arms == 3 and env.num_rows == 4
    scaled = cls.scale_features(features, "standardize", 5.0)
    orders = []
    for seed in range(3):
        obs, state = env.reset(jax.random.key(seed), params)
        seen = []
        for t in range(4):
            row = int(
                np.flatnonzero((scaled == np.asarray(obs.context)).all(axis=1))[0]
            )
            seen.append(row)
            obs, state, fb = env.step(jax.random.key(t), state, jnp.int32(1), params)
            np.testing.assert_array_equal(
                np.asarray(fb.expected_rewards), np.eye(3)[labels[row]]
            )
            assert float(fb.reward) == float(labels[row] == 1)
        assert sorted(seen) == [0, 1, 2, 3]  # each row once per pass
        orders.append(seen)
    assert len({tuple(o) for o in orders}) > 1  # seeds shuffle differently


def test_scaling_standardizes_numeric_columns_keeps_one_hot_and_clips():
    x = np.asarray([[0.0, 1.0], [0.0, 0.0], [100.0, 1.0], [0.0, 0.0]] * 10)
    z = cls.scale_features(x, "standardize", 1.5)
    np.testing.assert_array_equal(z[:, 1], x[:, 1])  # binary column unchanged
    assert np.abs(z[:, 0]).max() == pytest.approx(1.5)  # the outlier is clipped
    u = cls.scale_features(x, "unit_norm", 5.0)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("scaling", ["standardize", "unit_norm"])
def test_observations_respect_the_spec_bounds(scaling):
    env, params = envs.make("Classification-v0", dataset="magic", scaling=scaling)
    spec = env.observation_spec()["context"]
    assert np.abs(np.asarray(params.features)).max() <= spec.high
    assert spec.shape == (10,) and spec.low == -spec.high


def test_disjoint_encoding_puts_x_in_the_arms_block():
    _toy()
    env, params = envs.make("Classification-v0", dataset="toy-4x2", encoding="disjoint")
    obs, _ = env.reset(jax.random.key(0), params)
    arms = np.asarray(obs.arms)
    assert arms.shape == (3, 6)
    for k in range(3):
        block = np.zeros((3, 2))
        block[k] = np.asarray(obs.context)
        np.testing.assert_array_equal(arms[k], block.ravel())
    assert env.observation_spec()["arms"].shape == (3, 6)


def test_mushroom_showdown_rewards():
    env, params = envs.make("Classification-v0", dataset="mushroom", reward="mushroom")
    labels = np.asarray(params.labels)
    _, state = env.reset(jax.random.key(0), params)
    row = int(state.order[0])
    keys = jax.random.split(jax.random.key(1), 4000)

    def rewards(action):
        step = jax.vmap(lambda k: env.step(k, state, jnp.int32(action), params)[2])
        return step(keys)

    eat, skip = rewards(1), rewards(0)
    np.testing.assert_array_equal(np.asarray(skip.reward), 0.0)
    poisonous = labels[row] == 1
    expected = -15.0 if poisonous else 5.0
    np.testing.assert_array_equal(np.asarray(eat.expected_rewards[0]), [0.0, expected])
    values = set(np.asarray(eat.reward).tolist())
    assert values == ({5.0, -35.0} if poisonous else {5.0})
    # find a poisonous row and check P(-35) = 1/2 (s.e. 0.008 at n = 4000; 5 s.e.)
    poison_row = int(np.flatnonzero(labels == 1)[0])
    state = state.replace(order=state.order.at[0].set(poison_row))
    eaten = np.asarray(rewards(1).reward)
    assert abs(np.mean(eaten == -35.0) - 0.5) < 0.04
    np.testing.assert_allclose(eaten.mean(), -15.0, atol=0.8)


def test_bad_configuration_raises_naming_the_field():
    with pytest.raises(BanditConfigError, match="dataset"):
        cls.classification(dataset="iris-but-missing")
    with pytest.raises(BanditConfigError, match="reward"):
        cls.classification(dataset="magic", reward="mushroom")
    with pytest.raises(BanditConfigError, match="encoding"):
        cls.classification(encoding="onehot")
    with pytest.raises(BanditConfigError, match="taken"):
        cls.register_dataset("magic", np.zeros((2, 1)), np.asarray([0, 1]))
    with pytest.raises(BanditConfigError, match="features"):
        cls.register_dataset("bad", np.zeros((3,)), np.asarray([0, 1, 1]))


def test_fingerprint_is_stable():
    assert cls.fingerprint("mushroom") == cls.fingerprint("mushroom")
    assert len(cls.fingerprint("magic")) == 16
