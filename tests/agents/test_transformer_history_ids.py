"""History item ids in the transformer: h_j = W_h y_j + b_h + P_j + E[id_j].

On `ContextualRec-Sequential-v0` every history row ends with the shown item's
id / (N - 1); `TransformerConfig.history_id_column` makes the model add that
item's row of the candidates' embedding table E to its history token. A tiny
architecture (width 8, one block) keeps the compile times short.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import envs
from agents import pretrain as pt
from agents import transformer as tf
from agents.transformer_model import TransformerConfig
from bandits.types import Observation
from bandits.validation import BanditConfigError
from experiments.config.start import checkpoint_kwargs

ARCH = {"width": 8, "depth": 1, "heads": 1, "mlp_ratio": 1}
SEQUENTIAL = "ContextualRec-Sequential-v0"


@pytest.fixture(scope="module")
def sequential():
    """The preset, a model reading history ids, and an arrival whose history
    has both valid and padded rows (plus the env state behind it)."""
    env, params = envs.make(SEQUENTIAL)
    cfg = tf.config_for_env(env, **ARCH)
    reset = jax.jit(env.reset)
    for seed in range(50):
        obs, state = reset(jax.random.key(seed), params)
        valid = int(np.sum(obs.history_mask))
        if 2 <= valid < env.history_length:
            return env, cfg, obs, state
    raise AssertionError("no arrival with a partly filled history in 50 resets")


def _with_history_id(obs: Observation, row: int, item: int, num_items: int):
    history = obs.history.at[row, -1].set(item / (num_items - 1))
    return obs._replace(history=history)


def _blind_history_layer(params, column: int):
    """The same parameters with W_h's row for `column` zeroed, so the id reaches
    the model only through E (if at all)."""
    flat = []
    for path, variable in nnx.to_flat_state(params):
        value = variable.get_value()
        if path == ("history_embed", "kernel"):
            value = value.at[column].set(0.0)
        flat.append((path, variable.replace(value)))
    return nnx.from_flat_state(flat)


def test_config_for_env_embeds_history_ids_where_the_rows_carry_them():
    with_ids = tf.config_for_env(envs.make_env(SEQUENTIAL), **ARCH)
    assert with_ids.history_id_column == -1
    assert (
        tf.config_for_env(envs.make_env("ContextualRec-v0")).history_id_column is None
    )
    off = tf.config_for_env(envs.make_env(SEQUENTIAL), history_id_column=None)
    assert off.history_id_column is None


def test_history_ids_are_the_items_shown(sequential):
    """The id column decodes to the env's history items (same index as E's rows
    for candidates): exact integer equality."""
    _, cfg, obs, state = sequential
    model = tf.build_model(cfg, jax.random.key(0))
    user = int(state.user)
    valid = np.asarray(obs.history_mask)
    decoded = np.asarray(model.history_item_ids(obs.history))
    shown = np.asarray(state.history_items[user])
    np.testing.assert_array_equal(decoded[valid], shown[valid])
    candidates = np.asarray(model.item_ids(obs.arms))
    np.testing.assert_array_equal(candidates, np.asarray(state.candidates))


def test_shapes_and_jit_on_the_sequential_preset(sequential):
    env, cfg, obs, _ = sequential
    graphdef, params = tf.split_model(cfg, 0)
    eager = tf.logits(graphdef, params, obs)
    jitted = jax.jit(tf.logits, static_argnums=0)(graphdef, params, obs)
    assert eager.shape == (env.num_arms,)
    # jit may fuse and reorder float32 sums: agreement to 1e-5, not bit for bit.
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), atol=1e-5)
    phi = jax.jit(tf.embeddings, static_argnums=0)(graphdef, params, obs)
    assert phi.shape == (env.num_arms, cfg.embed_dim)
    agent = tf.policy(cfg, params, exploration="ts", finetune=False)
    key = jax.random.key(1)
    agent_state = agent.init(key)
    action = jax.jit(agent.act)(key, agent_state, obs)
    assert action.shape == () and bool(obs.mask[action])
    updated = jax.jit(agent.update)(key, agent_state, obs, action, 1.0)
    assert int(updated.step) == 1


def test_changing_only_a_history_id_changes_the_logits(sequential):
    """With W_h blind to the id column, a history row's id reaches the logits
    through E[id_j] alone: with the field set a new id moves them; with the field
    None (same parameters) the logits are bit for bit the same, and a padded
    row's id never matters (padded rows are masked attention keys)."""
    env, cfg, obs, _ = sequential
    valid = np.flatnonzero(np.asarray(obs.history_mask))
    padded = np.flatnonzero(~np.asarray(obs.history_mask))
    row, old_item = (
        int(valid[0]),
        round(float(obs.history[valid[0], -1]) * (env.num_items - 1)),
    )
    new_item = (old_item + 500) % env.num_items
    changed = _with_history_id(obs, row, new_item, env.num_items)
    graphdef, params = tf.split_model(cfg, 0)
    params = _blind_history_layer(params, cfg.history_features - 1)
    base = np.asarray(tf.logits(graphdef, params, obs))
    moved = np.asarray(tf.logits(graphdef, params, changed))
    # E rows are N(0, 0.02^2) per entry; a change far below 1e-4 would mean the
    # embedding is not added at all.
    assert np.max(np.abs(moved - base)) > 1e-4
    pad_changed = _with_history_id(obs, int(padded[0]), new_item, env.num_items)
    np.testing.assert_array_equal(
        np.asarray(tf.logits(graphdef, params, pad_changed)), base
    )
    off = dataclasses.replace(cfg, history_id_column=None)
    graphdef_off, _ = tf.split_model(off, 0)
    np.testing.assert_array_equal(
        np.asarray(tf.logits(graphdef_off, params, changed)),
        np.asarray(tf.logits(graphdef_off, params, obs)),
    )


def test_masked_history_rows_hide_their_id(sequential):
    """The masked-history objective replaces a row's whole input, its item
    embedding included, by the mask token: the id of a masked row cannot leak
    into any output (bit for bit)."""
    env, cfg, obs, _ = sequential
    row = int(np.flatnonzero(np.asarray(obs.history_mask))[0])
    changed = _with_history_id(obs, row, 7, env.num_items)
    changed = changed._replace(history=changed.history.at[row].set(0.3))
    model = tf.build_model(cfg, jax.random.key(0))
    token_mask = jnp.zeros((env.history_length,)).at[row].set(1.0)
    phi, out = model.encode(obs, token_mask)
    phi_changed, out_changed = model.encode(changed, token_mask)
    np.testing.assert_array_equal(np.asarray(phi_changed), np.asarray(phi))
    np.testing.assert_array_equal(np.asarray(out_changed), np.asarray(out))


def test_pretraining_step_learns_history_item_embeddings(sequential):
    """One gradient of the pretraining click loss reaches E through the history
    ids: rows of items seen only in histories (never as candidates) get a
    gradient. (No masked-history term here: a masked row hides its id.)"""
    env, cfg, obs, _ = sequential
    graphdef, params = tf.split_model(cfg, 0)
    batch = {
        "context": obs.context[None],
        "arms": obs.arms[None],
        "mask": obs.mask[None],
        "history": obs.history[None],
        "history_mask": obs.history_mask[None],
        "action": jnp.zeros((1,), jnp.int32),
        "reward": jnp.ones((1,)),
        "propensity": jnp.full((1,), 1.0 / env.num_arms),
    }
    key = jax.random.key(0)
    grads = jax.grad(
        lambda p: pt.pretrain_loss(key, graphdef, p, batch, ssl_weight=0.0)[0]
    )(params)
    table = np.asarray(grads["item_embed"]["table"][...])
    model = tf.build_model(cfg, jax.random.key(0))
    seen = np.asarray(model.history_item_ids(obs.history))[np.asarray(obs.history_mask)]
    only_history = sorted(set(seen.tolist()) - set(model.item_ids(obs.arms).tolist()))
    assert only_history, "the fixture's history should hold non-candidate items"
    assert np.all(np.abs(table[only_history]).sum(axis=1) > 0)
    off = dataclasses.replace(cfg, history_id_column=None)
    graphdef_off, params_off = tf.split_model(off, 0)
    grads_off = jax.grad(
        lambda p: pt.pretrain_loss(key, graphdef_off, p, batch, ssl_weight=0.0)[0]
    )(params_off)
    table_off = np.asarray(grads_off["item_embed"]["table"][...])
    assert np.all(table_off[only_history] == 0.0)


def test_checkpoint_round_trip_keeps_the_field(sequential, tmp_path):
    env, cfg, obs, _ = sequential
    graphdef, params = tf.split_model(cfg, 3)
    path = pt.save_checkpoint(tmp_path / "ids.npz", cfg, params)
    with np.load(path, allow_pickle=False) as stored:
        assert json.loads(str(stored["config"]))["history_id_column"] == -1
    loaded_cfg, loaded = pt.load_checkpoint(path)
    assert loaded_cfg == cfg and loaded_cfg.history_id_column == -1
    for (p, a), (q, b) in zip(
        nnx.to_flat_state(params), nnx.to_flat_state(loaded), strict=True
    ):
        assert p == q
        np.testing.assert_array_equal(np.asarray(a.get_value()), b.get_value())
    np.testing.assert_array_equal(
        np.asarray(tf.logits(graphdef, loaded, obs)),
        np.asarray(tf.logits(graphdef, params, obs)),
    )
    shapes = checkpoint_kwargs(cfg)
    assert shapes["history_id_column"] == -1
    agent = tf.transformer(**shapes, checkpoint=str(path), finetune=False)
    assert agent.num_arms == env.num_arms
    with pytest.raises(BanditConfigError, match="history_id_column"):
        tf.transformer(**{**shapes, "history_id_column": None}, checkpoint=str(path))


def test_checkpoint_written_before_the_field_loads_as_none(tmp_path):
    """A checkpoint whose config JSON has no `history_id_column` (as written
    before it existed) loads with the field None and the same parameters."""
    env = envs.make_env("ContextualRec-v0", history_length=3)
    cfg = tf.config_for_env(env, **ARCH)
    _, params = tf.split_model(cfg, 5)
    path = pt.save_checkpoint(tmp_path / "new.npz", cfg, params)
    with np.load(path, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    config = json.loads(str(arrays["config"]))
    del config["history_id_column"]
    arrays["config"] = np.asarray(json.dumps(config, sort_keys=True))
    old = tmp_path / "old.npz"
    with open(old, "wb") as handle:
        np.savez(handle, **arrays)
    loaded_cfg, loaded = pt.load_checkpoint(old)
    assert loaded_cfg.history_id_column is None and loaded_cfg == cfg
    for (_, a), (_, b) in zip(
        nnx.to_flat_state(params), nnx.to_flat_state(loaded), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a.get_value()), b.get_value())


# Logits of `tf.split_model(config_for_env(ContextualRec-v0, **ARCH), 0)` on
# `env.reset(key(0), default params)`, recorded with the model as it was before
# `history_id_column` existed. Same parameter draws; 1e-5 absorbs float32
# rounding differences between CPUs, while any change to the model (an added
# embedding is ~0.02 per entry) moves logits far more.
LOGITS_BEFORE = np.array(
    [
        1.0479198,
        1.3730328,
        -0.1034719,
        2.2394042,
        2.1359997,
        1.4045187,
        1.5473816,
        1.4694222,
        1.5812844,
        -0.9642142,
        1.4307899,
        1.5540173,
        1.8148738,
        0.0995782,
        1.9437461,
        2.1363239,
        0.8453697,
        1.2794219,
        1.3138008,
        1.5418491,
    ]
)


def test_without_the_field_the_model_is_the_one_before():
    env, params = envs.make("ContextualRec-v0")
    cfg = tf.config_for_env(env, **ARCH)
    assert cfg.history_id_column is None
    graphdef, theta = tf.split_model(cfg, 0)
    paths = [path for path, _ in nnx.to_flat_state(theta)]
    assert not any("history_id" in str(path) for path in paths)
    obs, _ = env.reset(jax.random.key(0), params)
    got = np.asarray(tf.logits(graphdef, theta, obs))
    np.testing.assert_allclose(got, LOGITS_BEFORE, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"history_id_column": 5}, "must index one of the 5 history columns"),
        ({"history_id_column": -6}, "must index one of the 5 history columns"),
        ({"history_id_column": True}, "must be an int column index or None"),
        ({"history_id_column": 1.0}, "must be an int column index or None"),
        ({"history_id_column": "-1"}, "must be an int column index or None"),
        ({"history_id_column": -1, "num_items": 0}, "needs a history"),
        (
            {"history_id_column": -1, "history_length": 0, "history_features": 0},
            "needs a history",
        ),
    ],
)
def test_bad_history_id_column_is_a_clear_error(change, message):
    base = {
        "num_arms": 3,
        "context_fields": (2,),
        "arm_features": 4,
        "arm_columns": 5,
        "history_length": 2,
        "history_features": 5,
        "num_items": 10,
    }
    with pytest.raises(BanditConfigError, match="history_id_column") as err:
        TransformerConfig(**{**base, **change})
    assert message in str(err.value)
