"""Pretraining, checkpoints, prediction metrics and warm starts from logged data.

Logged data comes from a small recommendation env (a few hundred events), so
every test here compiles small programs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
import envs
from agents import pretrain as pt
from agents import transformer as tf
from agents.transformer_model import TransformerConfig
from agents.warm_start import maybe_warm_start, replay_logged, warm_start
from bandits.validation import BanditConfigError
from envs import logged

SMALL = dict(num_items=40, num_users=60, num_candidates=5, history_length=3)


@pytest.fixture(scope="module")
def env_params():
    return envs.make("ContextualRec-v0", **SMALL)


@pytest.fixture(scope="module")
def cfg(env_params):
    env, _ = env_params
    return TransformerConfig(
        num_arms=env.num_arms,
        context_fields=(env.context_dim,),
        arm_features=env.item_dim,
        arm_columns=env.item_dim + 1,
        history_length=env.history_length,
        history_features=env.item_dim + 1,
        num_items=env.num_items,
        width=8,
        depth=1,
        heads=2,
    )


@pytest.fixture(scope="module")
def logs(env_params):
    env, params = env_params
    key = jax.random.key(0)
    return {
        "uniform": logged.generate(
            key, env, params, logged.uniform(), 256, num_streams=8
        ),
        "oracle": logged.generate(
            key,
            env,
            params,
            logged.softmax_noisy_oracle(0.05, 0.05),
            256,
            num_streams=8,
        ),
    }


def _batch(data, n=64):
    columns = ("context", "arms", "mask", "history", "history_mask", "action", "reward")
    batch = {name: jnp.asarray(getattr(data, name)[:n]) for name in columns}
    batch["propensity"] = jnp.asarray(data.propensity[:n])
    return batch


def test_ips_weighted_loss_equals_unweighted_under_a_uniform_logger(cfg, logs):
    graphdef, params = tf.split_model(cfg, 1)
    key = jax.random.key(2)
    for name, equal in (("uniform", True), ("oracle", False)):
        batch = _batch(logs[name])
        weighted, _ = pt.pretrain_loss(key, graphdef, params, batch, ips=True)
        plain, _ = pt.pretrain_loss(key, graphdef, params, batch, ips=False)
        # Uniform logger: every weight is 1 / (|allowed| * 1/|allowed|) = 1, equal
        # up to float32 rounding of that product; a near-greedy logger differs.
        assert np.isclose(weighted, plain, rtol=1e-6) == equal, name


def test_ips_weights_golden_values():
    propensity = jnp.array([0.25, 0.05, 0.5])
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]], bool)
    # 1 / (4 * 0.25) = 1; 1 / (4 * 0.05) = 5 -> clipped to 3; 1 / (2 * 0.5) = 1.
    np.testing.assert_allclose(pt.ips_weights(propensity, mask, 3.0), [1.0, 3.0, 1.0])


def test_pretraining_lowers_the_loss(cfg, logs):
    result = pt.pretrain(
        jax.random.key(0), cfg, logs["uniform"], epochs=8, batch_size=32, progress=False
    )
    assert result.losses.shape == (8 * (256 // 32),)
    first, last = result.click_losses[:8].mean(), result.click_losses[-8:].mean()
    assert last < first - 0.05  # a clear drop on a tiny data set (memorisation)
    assert np.any(result.history_losses > 0)


def test_checkpoint_round_trips_bit_exactly(cfg, tmp_path):
    _, params = tf.split_model(cfg, 7)
    path = pt.save_checkpoint(tmp_path / "model.npz", cfg, params)
    loaded_cfg, loaded = pt.load_checkpoint(path)
    assert loaded_cfg == cfg
    leaves, loaded_leaves = jax.tree.leaves(params), jax.tree.leaves(loaded)
    assert len(leaves) == len(loaded_leaves)
    for a, b in zip(leaves, loaded_leaves, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert jax.tree.structure(params) == jax.tree.structure(loaded)
    # The registered factory builds an agent from the checkpoint.
    agent = tf.transformer(
        num_arms=cfg.num_arms,
        dim=cfg.context_dim,
        arm_features=cfg.arm_features,
        arm_columns=cfg.arm_columns,
        history_length=cfg.history_length,
        history_features=cfg.history_features,
        num_items=cfg.num_items,
        width=8,
        depth=1,
        checkpoint=str(path),
    )
    state = agent.init(jax.random.key(0))
    np.testing.assert_array_equal(
        np.asarray(tf.head_of(state.params)), np.asarray(tf.head_of(params))
    )


def test_checkpoint_errors(cfg, tmp_path):
    _, params = tf.split_model(cfg, 7)
    path = pt.save_checkpoint(tmp_path / "model.npz", cfg, params)
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays["param:click_head/bias"] = np.zeros((2,), np.float32)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(BanditConfigError, match="click_head/bias"):
        pt.load_checkpoint(bad)
    np.savez(tmp_path / "plain.npz", x=np.zeros(2))
    with pytest.raises(BanditConfigError, match="not a transformer checkpoint"):
        pt.load_checkpoint(tmp_path / "plain.npz")
    with pytest.raises(BanditConfigError, match="architecture differs"):
        tf.transformer(
            num_arms=cfg.num_arms,
            dim=cfg.context_dim,
            arm_features=cfg.arm_features,
            width=16,
            checkpoint=str(path),
        )


def test_prediction_metrics_golden_values():
    y = np.array([1, 0, 1, 0, 1])
    p = np.array([0.9, 0.6, 0.4, 0.1, 0.7])
    m = pt.prediction_metrics(y, p, expected=np.array([0.8, 0.5, 0.5, 0.2, 0.6]))
    # predicted positives {0, 1, 4}: TP = 2, FP = 1, FN = 1.
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # Positive-negative pairs ranked correctly: (.9>.6, .9>.1, .4<.6, .4>.1,
    # .7>.6, .7>.1) = 5 of 6.
    assert m["roc_auc"] == pytest.approx(5 / 6)
    expected_log_loss = -np.mean(
        np.log([0.9, 0.4, 0.4, 0.9, 0.7])  # log P(observed label)
    )
    assert m["log_loss"] == pytest.approx(expected_log_loss)
    assert m["mse"] == pytest.approx(np.mean((p - y) ** 2))
    assert m["mse_expected"] == pytest.approx(np.mean([0.01, 0.01, 0.01, 0.01, 0.01]))


def test_predict_logged_matches_the_model(cfg, logs):
    graphdef, params = tf.split_model(cfg, 3)
    data = logs["uniform"].take(slice(0, 10))
    p = pt.predict_logged(graphdef, params, data, batch_size=4)
    obs = jax.tree.map(lambda x: x[3], data.observations())
    expected = jax.nn.sigmoid(tf.logits(graphdef, params, obs)[data.action[3]])
    np.testing.assert_allclose(p[3], expected, rtol=1e-5)


# ---------------------------------------------------------------------------
# Warm starts


def _linucb(env):
    return agents.linucb(env.num_arms, env.item_dim + 1, alpha=0.5, features="arms")


def test_replay_equals_a_python_loop_of_updates(env_params, logs):
    env, _ = env_params
    agent = _linucb(env)
    data = logs["oracle"].take(slice(0, 37))
    key = jax.random.key(4)
    state = agent.init(jax.random.key(0))
    replayed = replay_logged(key, agent, state, data, chunk_size=16)  # 3 chunks
    looped = state
    for i in range(len(data)):
        obs = jax.tree.map(lambda x, i=i: x[i], data.observations())
        looped = agent.update(
            jax.random.fold_in(key, i), looped, obs, data.action[i], data.reward[i]
        )
    for a, b in zip(jax.tree.leaves(replayed), jax.tree.leaves(looped), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_warm_start_from_a_path_equals_from_the_dataset(env_params, logs, tmp_path):
    env, _ = env_params
    data = logs["oracle"]
    path = logged.save(data, tmp_path / "logs.parquet")
    from_path = warm_start(_linucb(env), str(path))
    from_data = warm_start(_linucb(env), data)
    assert from_path.name == "linucb_warm"
    a, b = from_path.init(jax.random.key(1)), from_data.init(jax.random.key(2))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    # The replay moved the statistics: 256 rank-one updates of A^{-1}.
    cold = _linucb(env).init(jax.random.key(0))
    assert not np.allclose(a.root, cold.root)
    assert maybe_warm_start(_linucb(env), None).name == "linucb"
    with pytest.raises(BanditConfigError, match="warm_start must be a path"):
        maybe_warm_start(_linucb(env), 3)
    with pytest.raises(BanditConfigError, match="does not exist"):
        warm_start(_linucb(env), str(tmp_path / "missing.parquet"))


@pytest.mark.parametrize(
    ("chunk_size", "max_events"), [(7, None), (16, 37), (64, None)]
)
def test_a_streamed_replay_equals_the_one_from_memory(
    env_params, logs, tmp_path, chunk_size, max_events
):
    """A warm start from a Parquet path reads one chunk at a time
    (`bandits.files.iter_logged`); its state is bit for bit the one from the
    same events in memory, for chunk sizes that do and do not divide the 256
    events, with `max_events`, and from a file written in row groups of 5
    events (so that the reader must join and split pyarrow's batches).
    Exact: both run the same compiled replay on the same chunks of the same
    values on one machine; only where the values come from differs."""
    import pyarrow.parquet as pq

    env, _ = env_params
    data = logs["oracle"]
    path = logged.save(data, tmp_path / "logs.parquet")
    small_groups = tmp_path / "groups.parquet"
    pq.write_table(pq.read_table(path), small_groups, row_group_size=5)
    key = jax.random.key(4)
    start = _linucb(env).init(jax.random.key(0))
    options = {"chunk_size": chunk_size, "max_events": max_events}
    want = replay_logged(key, _linucb(env), start, data, **options)
    for source in (str(path), str(small_groups)):
        got = replay_logged(key, _linucb(env), start, source, **options)
        for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_array_equal(x, y)


def test_iter_logged_gives_exact_batches_and_a_bad_event_is_refused_first(
    logs, tmp_path
):
    """Batches of exactly `batch_size` events (the last shorter) that together
    are `read_logged`'s arrays; a bad event late in the file is refused with
    its row and the file's count of bad rows before a streamed warm start
    computes anything."""
    import pyarrow.parquet as pq

    from bandits import files

    data = logs["uniform"]
    path = logged.save(data, tmp_path / "logs.parquet")
    grouped = tmp_path / "groups.parquet"
    pq.write_table(pq.read_table(path), grouped, row_group_size=5)
    names = ("context", "arms", "mask", "history", "action", "reward")
    whole, _ = files.read_logged(grouped, names)
    batches = list(files.iter_logged(grouped, names, batch_size=12))
    assert [first for first, _ in batches] == list(range(0, 256, 12))
    assert [len(b["action"]) for _, b in batches] == [12] * 21 + [4]
    for name in names:
        joined = np.concatenate([b[name] for _, b in batches])
        np.testing.assert_array_equal(joined, whole[name])
    arrays = {k: np.array(v) for k, v in data.columns().items()}
    arrays["reward"][[200, 250]] = np.nan
    bad = files.write_logged(tmp_path / "bad.parquet", arrays, {})
    replayed = []
    agent = agents.linucb(data.mask.shape[1], data.arms.shape[2], features="arms")
    agent = agent._replace(update=lambda *a: replayed.append(1) or a[1])
    with pytest.raises(BanditConfigError, match=r"row 200 is nan.*\(2 bad row"):
        replay_logged(jax.random.key(0), agent, None, str(bad), chunk_size=16)
    assert not replayed


class _KilledError(Exception):
    """Stands for a kill between two compiled calls."""


def test_an_interrupted_pretraining_resumes_to_the_same_parameters(
    cfg, logs, tmp_path, monkeypatch
):
    """With `resume`, progress is saved (here after every call); a run stopped
    after 3 of its 8 calls and run again continues from the saved state, to the
    parameters and loss curves of an uninterrupted run, bit for bit. A file of
    other settings (another seed, other data) is not resumed from."""
    from agents import resumable

    options = dict(epochs=2, batch_size=16, steps_per_call=4, progress=False)
    whole = pt.pretrain(jax.random.key(3), cfg, logs["oracle"], **options)
    monkeypatch.setattr(resumable, "SAVE_EVERY_S", 0.0)
    real_call, calls = resumable._call, []

    def stopping(run, carry, args):
        calls.append(1)
        if len(calls) == 4:
            raise _KilledError
        return real_call(run, carry, args)

    path = tmp_path / "pretrain.partial.npz"
    monkeypatch.setattr(resumable, "_call", stopping)
    with pytest.raises(_KilledError):
        pt.pretrain(jax.random.key(3), cfg, logs["oracle"], resume=path, **options)
    assert path.is_file()
    monkeypatch.setattr(resumable, "_call", real_call)
    resumed_calls = []
    monkeypatch.setattr(
        resumable,
        "_call",
        lambda run, carry, args: resumed_calls.append(1) or real_call(run, carry, args),
    )
    again = pt.pretrain(jax.random.key(3), cfg, logs["oracle"], resume=path, **options)
    assert len(resumed_calls) == 16 * 2 // 4 - 3  # (256 // 16) x 2 steps, 4 a call
    leaves = jax.tree.leaves(whole.params), jax.tree.leaves(again.params)
    for a, b in zip(*leaves, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(whole.losses, again.losses)
    np.testing.assert_array_equal(whole.history_losses, again.history_losses)
    # The saved state is of this training only: another seed or other data
    # start afresh (all calls run).
    for key, data in ((4, logs["oracle"]), (3, logs["uniform"])):
        resumed_calls.clear()
        pt.pretrain(jax.random.key(key), cfg, data, resume=path, **options)
        assert len(resumed_calls) == 8
    path.write_bytes(b"not an npz")
    resumed_calls.clear()
    pt.pretrain(jax.random.key(3), cfg, logs["oracle"], resume=path, **options)
    assert len(resumed_calls) == 8
