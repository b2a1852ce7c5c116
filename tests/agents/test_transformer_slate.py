"""The transformer as a slate ranker (`agents.transformer_slate.slate_policy`).

A small random-initialised transformer (width 16, one block) on
`ContextualRecSlate-v0` (K = 20, L = 5): slates of distinct allowed items
through `bandits.run`, deterministic per seed; the greedy ranking is the
candidates sorted by the head's mean score; an update learns from the examined
positions only (an unexamined position leaves the state bit for bit as it
was); bad options are refused before anything is traced.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bandits
import envs
from agents import transformer as tf
from agents.transformer_model import embeddings
from agents.transformer_slate import slate_policy
from bandits.validation import BanditConfigError

ARCH = dict(width=16, depth=1, heads=2)


@pytest.fixture(scope="module")
def setting():
    env, params = envs.make("ContextualRecSlate-v0")
    cfg = tf.config_for_env(env, **ARCH)
    return env, params, cfg


def test_runs_in_bandits_run_with_distinct_allowed_items(setting):
    env, params, cfg = setting
    agent = slate_policy(cfg, slate_size=env.slate_size, nu=0.5)
    first = bandits.run(env, agent, horizon=30, seeds=2, params=params)
    second = bandits.run(env, agent, horizon=30, seeds=2, params=params)
    np.testing.assert_array_equal(first.action, second.action)
    actions = np.asarray(first.action)
    assert actions.shape == (2, 30, env.slate_size)
    assert all(len(set(row)) == env.slate_size for row in actions.reshape(-1, 5))
    regret = np.asarray(first.regret)
    assert np.isfinite(regret).all() and (regret >= 0).all()


def _state_and_obs(agent, env, params):
    obs, _ = env.reset(jax.random.key(3), params)
    return agent.init(jax.random.key(4)), obs


def test_greedy_ranks_by_the_head_mean(setting):
    env, params, cfg = setting
    agent = slate_policy(cfg, slate_size=5, exploration="greedy")
    state, obs = _state_and_obs(agent, env, params)
    slate = np.asarray(jax.jit(agent.act)(jax.random.key(0), state, obs))
    graphdef = tf._make_policy(cfg, None, tf.PolicyConfig()).graphdef
    phi = np.asarray(embeddings(graphdef, state.params, obs))
    mean = np.asarray(state.head.mean[0])
    score = np.where(np.asarray(obs.mask), phi @ mean, -np.inf)
    np.testing.assert_array_equal(slate, np.argsort(-score, kind="stable")[:5])


def test_update_learns_from_examined_positions_only(setting):
    """Clicks (0, 1, 0, 0, 0) under the cascade: positions 1-2 examined. Swapping
    the unexamined items at positions 3-5 for others gives the same state to
    the last bit; a click at position 1 instead changes the head."""
    env, params, cfg = setting
    agent = slate_policy(cfg, slate_size=5)
    state, obs = _state_and_obs(agent, env, params)
    update = jax.jit(agent.update)
    key = jax.random.key(0)
    clicks = jnp.asarray([0.0, 1.0, 0.0, 0.0, 0.0])
    one = update(key, state, obs, jnp.asarray([0, 1, 2, 3, 4], jnp.int32), clicks)
    two = update(key, state, obs, jnp.asarray([0, 1, 7, 8, 9], jnp.int32), clicks)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(two), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = update(
        key,
        state,
        obs,
        jnp.asarray([0, 1, 2, 3, 4], jnp.int32),
        jnp.asarray([1.0, 0.0, 0.0, 0.0, 0.0]),
    )
    assert not np.array_equal(np.asarray(one.head.mean), np.asarray(other.head.mean))
    assert int(one.step) == 1


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"slate_size": 0}, "slate_size"),
        ({"slate_size": 21}, "slate_size"),
        ({"slate_size": 5, "exploration": "epsilon"}, "exploration"),
        ({"slate_size": 5, "finetune": True}, "finetune"),
    ],
)
def test_bad_options_are_refused(setting, options, field):
    _, _, cfg = setting
    with pytest.raises(BanditConfigError, match=field):
        slate_policy(cfg, **options)


CONFIG_CHECKPOINT = (
    "results/pretrain_finetune/ContextualRec-v0/checkpoint_unweighted.npz"
)
"""Where `slate_transformer.toml` expects the pretrain/fine-tune checkpoint."""


def tiny_checkpoint(path):
    """A randomly initialised transformer for `ContextualRec-v0`, saved."""
    from agents import pretrain

    env, _ = envs.make("ContextualRec-v0")
    cfg = tf.config_for_env(env, width=8, depth=1, heads=1)
    _, params = tf.split_model(cfg, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    pretrain.save_checkpoint(path, cfg, params)
    return cfg, params


def test_registered_with_a_checkpoint_or_from_random_parameters(tmp_path):
    """`transformer_slate` is the slate ranker as the registry builds it: from a
    checkpoint it starts from the checkpoint's parameters; with `random_init`
    from those of the init key (the same architecture from scratch), as
    `slate_policy` without parameters does."""
    import agents
    from experiments.config.start import checkpoint_kwargs

    cfg, params = tiny_checkpoint(tmp_path / "tiny.npz")
    kwargs = {**checkpoint_kwargs(cfg), "slate_size": 5, "nu": 0.5}
    kwargs["checkpoint"] = str(tmp_path / "tiny.npz")
    key = jax.random.key(3)
    pretrained = agents.make("transformer_slate", **kwargs).init(key)
    scratch = agents.make("transformer_slate", **kwargs, random_init=True).init(key)
    reference = slate_policy(cfg, slate_size=5, nu=0.5).init(key)
    leaves = jax.tree.leaves

    def same(a, b):
        return all(
            np.array_equal(x, y) for x, y in zip(leaves(a), leaves(b), strict=True)
        )

    assert same(pretrained.params, params)
    assert same(scratch.params, reference.params)
    assert not same(scratch.params, pretrained.params)


@pytest.mark.slow
def test_the_slate_transformer_config_runs_in_the_slates_study(
    tmp_path, monkeypatch, capsys
):
    """`python -m experiments.studies.slates --config slate_transformer --early
    N` end to end with a tiny randomly initialised checkpoint where the config
    expects the study's (the code path, not its numbers); without it, one
    error line naming the field."""
    from experiments.studies import slates

    monkeypatch.chdir(tmp_path)
    argv = ["--config", "slate_transformer", "--horizon", "20", "--seeds", "2"]
    argv += ["--out", str(tmp_path / "out"), "--quiet"]
    assert slates.main([*argv, "--early", "10"]) == 2
    assert "checkpoint" in capsys.readouterr().err
    tiny_checkpoint(tmp_path / CONFIG_CHECKPOINT)
    assert slates.main([*argv, "--early", "10"]) == 0
    table = capsys.readouterr().out
    for label in ("pretrained + TS", "scratch + TS", "CascadeLinUCB", "Random"):
        assert label in table
    assert "Regret at t = " in table
