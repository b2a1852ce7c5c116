"""Contracts of the transformer policy: masking, static shapes, heads, validation.

A tiny architecture (width 8, one block) and a small recommendation env keep the
compile times short.
"""

from __future__ import annotations

import dataclasses
import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
import bandits
import envs
from agents import exploration as rules
from agents import transformer as tf
from agents.transformer_model import TransformerConfig, field_selector
from bandits.types import Observation
from bandits.validation import BanditConfigError

K, H, D_CTX, P = 5, 4, 6, 4  # candidates, history, context, item features
CFG = TransformerConfig(
    num_arms=K,
    context_fields=(2, 1, 3),
    arm_features=P,
    arm_columns=P + 1,
    history_length=H,
    history_features=P + 1,
    num_items=30,
    width=8,
    depth=1,
    heads=2,
)


def _obs(key, history_valid=2, allowed=None) -> Observation:
    k1, k2, k3 = jax.random.split(key, 3)
    ids = jnp.arange(K, dtype=jnp.float32) / 29.0
    arms = jnp.concatenate([jax.random.uniform(k2, (K, P)), ids[:, None]], axis=1)
    return Observation(
        context=jax.random.normal(k1, (D_CTX,)),
        arms=arms,
        mask=jnp.ones((K,), bool) if allowed is None else jnp.asarray(allowed),
        history=jax.random.uniform(k3, (H, P + 1)),
        history_mask=jnp.arange(H) < history_valid,
    )


@pytest.fixture(scope="module")
def model():
    return tf.split_model(CFG, 0)


def test_padded_history_rows_are_hidden(model):
    graphdef, params = model
    obs = _obs(jax.random.key(0), history_valid=2)
    base = tf.logits(graphdef, params, obs)
    # Changing the padded rows (2, 3) leaves every candidate's logit bit-identical.
    noisy = obs._replace(history=obs.history.at[2:].set(123.0))
    np.testing.assert_array_equal(tf.logits(graphdef, params, noisy), base)
    # Changing a valid row does change them (the test can fail).
    changed = obs._replace(history=obs.history.at[0].set(3.0))
    assert not np.allclose(tf.logits(graphdef, params, changed), base)


def test_unavailable_candidates_are_hidden_from_the_others(model):
    graphdef, params = model
    allowed = np.array([True, True, False, True, True])
    obs = _obs(jax.random.key(1), allowed=allowed)
    base = tf.logits(graphdef, params, obs)
    noisy = obs._replace(arms=obs.arms.at[2, :P].set(-7.0))
    np.testing.assert_array_equal(
        tf.logits(graphdef, params, noisy)[allowed], base[allowed]
    )


def test_scores_are_permutation_equivariant_over_candidates(model):
    graphdef, params = model
    obs = _obs(jax.random.key(2))
    perm = np.array([3, 0, 4, 1, 2])
    permuted = obs._replace(arms=obs.arms[perm], mask=obs.mask[perm])
    np.testing.assert_allclose(
        tf.logits(graphdef, params, permuted),
        tf.logits(graphdef, params, obs)[perm],
        rtol=1e-5,
        atol=1e-6,
    )


def test_shapes_static_under_jit_and_vmap(model):
    graphdef, params = model
    obs = _obs(jax.random.key(3))
    eager = tf.logits(graphdef, params, obs)
    jitted = jax.jit(tf.logits, static_argnums=0)(graphdef, params, obs)
    assert eager.shape == jitted.shape == (K,)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-6)
    batch = jax.vmap(_obs, in_axes=(0, None))(jax.random.split(jax.random.key(4), 3), 2)
    stacked = jnp.stack(
        [
            tf.logits(graphdef, params, jax.tree.map(operator.itemgetter(i), batch))
            for i in range(3)
        ]
    )
    vmapped = jax.vmap(tf.logits, in_axes=(None, None, 0))(graphdef, params, batch)
    assert vmapped.shape == (3, K)
    np.testing.assert_allclose(vmapped, stacked, rtol=1e-5, atol=1e-6)
    phi = tf.embeddings(graphdef, params, obs)
    assert phi.shape == (K, CFG.width + 1)
    np.testing.assert_array_equal(phi[:, -1], 1.0)


@pytest.mark.parametrize("wide_cross", [0, 2])
def test_head_vector_reproduces_the_logits(wide_cross):
    # The agent's head starts at head_of(params): w^T embeddings_k must equal the
    # network's logit_k, with and without the wide part.
    cfg = dataclasses.replace(CFG, wide_cross=wide_cross)
    graphdef, params = tf.split_model(cfg, 5)
    obs = _obs(jax.random.key(8))
    phi = tf.embeddings(graphdef, params, obs)
    assert phi.shape == (K, cfg.width + 1 + (P + wide_cross * D_CTX) * (wide_cross > 0))
    np.testing.assert_allclose(
        phi @ tf.head_of(params), tf.logits(graphdef, params, obs), rtol=1e-5, atol=1e-5
    )
    if wide_cross:  # the wide part is [a[:m], vec(a[:c] x^T)]
        np.testing.assert_allclose(
            phi[:, cfg.width + 1 : cfg.width + 1 + P], obs.arms[:, :P]
        )
        crossed = phi[:, cfg.width + 1 + P :].reshape(K, wide_cross, D_CTX)
        np.testing.assert_allclose(
            crossed,
            obs.arms[:, :wide_cross, None] * obs.context[None, None, :],
            rtol=1e-6,
        )


def test_field_selector_golden():
    np.testing.assert_array_equal(
        field_selector((2, 1)), [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    )


def test_ekf_step_matches_a_numpy_newton_step():
    # Tiny hand-checkable case: Sigma_new = (Sigma^-1 + p(1-p) phi phi^T)^-1 and
    # w_new = w + Sigma_new phi (r - p).
    mean = np.array([0.2, -0.1, 0.3], np.float32)
    cov = np.diag([0.5, 1.0, 2.0]).astype(np.float32)
    phi = np.array([1.0, 2.0, -1.0], np.float32)
    p = 1 / (1 + np.exp(-(phi @ mean)))
    cov_ref = np.linalg.inv(np.linalg.inv(cov) + p * (1 - p) * np.outer(phi, phi))
    mean_ref = mean + cov_ref @ phi * (1.0 - p)
    precision = np.linalg.inv(cov)
    root = np.linalg.cholesky(cov).T  # R^T R = Sigma
    new_mean, new_root, new_precision, residual = tf._ekf_step(
        jnp.asarray(mean),
        jnp.asarray(root),
        jnp.asarray(precision),
        jnp.zeros((3, 3), jnp.float32),
        phi,
        1.0,
        1.0,
    )
    new_root = np.asarray(new_root)
    np.testing.assert_allclose(new_root.T @ new_root, cov_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(new_precision - residual),
        precision + p * (1 - p) * np.outer(phi, phi),
        rtol=1e-6,
    )
    np.testing.assert_allclose(new_mean, mean_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("exploration", ["ts", "ensemble", "epsilon", "greedy"])
def test_agent_contract(exploration):
    agent = tf.policy(
        CFG, exploration=exploration, finetune=False, ensemble_size=3, epsilon=0.2
    )
    state = agent.init(jax.random.key(0))
    allowed = np.array([True, False, True, True, True])
    obs = _obs(jax.random.key(5), allowed=allowed)
    act = jax.jit(agent.act)
    for i in range(5):
        action = act(jax.random.key(i), state, obs)
        assert action.dtype == jnp.int32 and allowed[int(action)]
    probs = np.asarray(agent.action_probs(jax.random.key(9), state, obs))
    assert probs.shape == (K,) and probs[1] == 0.0
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)
    if exploration == "epsilon":  # exact: 0.2 / 4 everywhere + 0.8 on the greedy arm
        assert np.isclose(np.sort(probs)[1], 0.05) and np.isclose(probs.max(), 0.85)
    if exploration == "greedy":
        assert probs[int(act(jax.random.key(0), state, obs))] == 1.0
    prediction = agent.predict(state, obs)
    assert prediction.shape == (K,) and np.all((prediction > 0) & (prediction < 1))
    new = jax.jit(agent.update)(jax.random.key(1), state, obs, jnp.int32(2), 1.0)
    assert int(new.step) == 1 and int(new.buffer.size) == 1
    # A click on arm 2 raises its predicted click probability.
    assert agent.predict(new, obs)[2] > prediction[2]


def test_finetuning_retrains_on_schedule_and_frozen_does_not():
    tuned = tf.policy(CFG, finetune=True, train_every=3, train_steps=2, batch_size=4)
    frozen = tf.policy(CFG, finetune=False)
    obs = _obs(jax.random.key(6))
    for agent, changes in ((tuned, True), (frozen, False)):
        state = agent.init(jax.random.key(0))
        update = jax.jit(agent.update)
        before = jax.tree.leaves(state.params)
        for t in range(3):
            state = update(jax.random.key(t), state, obs, jnp.int32(t), 1.0)
            same = all(
                np.array_equal(a, b)
                for a, b in zip(before, jax.tree.leaves(state.params), strict=True)
            )
            # Parameters move only at the third update (step 3 = train_every).
            assert same == (t < 2 or not changes)


@pytest.mark.slow
def test_runs_in_bandits_run_and_is_deterministic():
    env, params = envs.make(
        "ContextualRec-v0",
        num_items=40,
        num_users=50,
        num_candidates=K,
        history_length=H,
    )
    cfg = dataclasses.replace(
        CFG,
        context_fields=(env.context_dim,),
        arm_features=env.item_dim,
        arm_columns=env.item_dim + 1,
        history_features=env.item_dim + 1,
        num_items=env.num_items,
    )
    agent = tf.policy(cfg, finetune=True, train_every=10, train_steps=2, batch_size=8)
    a = bandits.run(env, agent, horizon=25, seeds=2, params=params)
    b = bandits.run(env, agent, horizon=25, seeds=2, params=params)
    assert a.action.shape == (2, 25)
    np.testing.assert_array_equal(a.action, b.action)
    assert np.all(np.isfinite(np.asarray(a.regret)))


def test_config_json_round_trip():
    assert TransformerConfig.from_json(CFG.to_json()) == CFG


def test_registered_factory_and_bad_inputs_raise():
    agent = agents.make(
        "transformer", num_arms=K, dim=D_CTX, arm_features=P, width=8, depth=1
    )
    assert agent.name == "transformer_ts"
    kwargs = dict(num_arms=K, dim=D_CTX, arm_features=P)
    with pytest.raises(BanditConfigError, match="context_fields must sum to dim"):
        tf.transformer(**kwargs, context_fields=(2, 2))
    with pytest.raises(BanditConfigError, match="width must be divisible by heads"):
        tf.transformer(**kwargs, width=10, heads=3)
    with pytest.raises(BanditConfigError, match="exploration"):
        tf.transformer(**kwargs, exploration="ucb")
    with pytest.raises(BanditConfigError, match="finetune=False"):
        tf.transformer(**kwargs, quantization="int8")
    with pytest.raises(BanditConfigError, match="wide_cross"):
        tf.transformer(**kwargs, wide_cross=P + 1)
    with pytest.raises(BanditConfigError, match="prior_precision"):
        tf.transformer(**kwargs, prior_precision=0.0)
    with pytest.raises(BanditConfigError, match="does not exist"):
        tf.transformer(**kwargs, checkpoint="/nonexistent/checkpoint.npz")


def test_policy_options_are_one_validated_config():
    """`transformer` lists every `PolicyConfig` field as a keyword with its
    default; `policy` validates its options through the same config."""
    hyper = agents.hyperparameters("transformer")
    for field in dataclasses.fields(tf.PolicyConfig):
        assert hyper[field.name] == field.default
    with pytest.raises(BanditConfigError, match="nu"):
        tf.policy(CFG, nu=-1.0)
    with pytest.raises(TypeError, match="no_such_option"):
        tf.policy(CFG, no_such_option=1)
    with pytest.raises(BanditConfigError, match="no_such_option"):
        agents.make(
            "transformer", num_arms=K, dim=D_CTX, arm_features=P, no_such_option=1
        )


@pytest.mark.parametrize(
    "exploration, rule",
    [
        ("ts", rules.Thompson),
        ("ensemble", rules.EnsembleChoice),
        ("epsilon", rules.EpsilonGreedy),
        ("greedy", rules.Greedy),
    ],
)
def test_exploration_string_picks_one_rule_at_build_time(exploration, rule):
    config = tf.PolicyConfig(exploration=exploration, ensemble_size=3)
    assert type(tf.exploration_rule(config)) is rule


def test_config_for_env_takes_every_shape_from_the_env():
    from agents.transformer import config_for_env

    env = envs.make_env("ContextualRec-v0")
    cfg = config_for_env(env, width=32, depth=1, heads=2)
    assert cfg.context_fields == env.context_fields
    assert (cfg.num_arms, cfg.arm_features, cfg.num_items) == (
        env.num_arms,
        env.item_dim,
        env.num_items,
    )
    assert cfg.history_length == env.history_length and cfg.width == 32


def test_config_for_env_reads_history_rows_with_item_ids():
    """`ContextualRec-Sequential-v0` appends the item id to every history row;
    the transformer's history layer takes the env's `history_dim` columns
    (shapes only: `eval_shape` traces act without compiling it)."""
    env, params = envs.make("ContextualRec-Sequential-v0")
    assert env.history_dim == env.item_dim + 2
    cfg = tf.config_for_env(env, width=16, depth=1, heads=2)
    assert cfg.history_features == env.history_dim
    agent = tf.policy(cfg, exploration="ts")
    key = jax.random.key(0)
    obs, _ = env.reset(key, params)
    state = jax.eval_shape(agent.init, key)
    action = jax.eval_shape(agent.act, key, state, obs)
    assert action.shape == () and jnp.issubdtype(action.dtype, jnp.integer)
