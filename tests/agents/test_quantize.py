"""int8 post-training quantisation: error bounds, the quantised model, its agent."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import quantize as q
from agents import transformer as tf
from agents.transformer_model import TransformerConfig
from bandits.types import Observation
from bandits.validation import BanditConfigError

CFG = TransformerConfig(
    num_arms=6,
    context_fields=(3, 2),
    arm_features=4,
    arm_columns=5,
    history_length=3,
    history_features=5,
    num_items=20,
    width=16,
    depth=2,
    heads=2,
)


def _obs(key) -> Observation:
    k1, k2, k3 = jax.random.split(key, 3)
    ids = jnp.arange(6, dtype=jnp.float32) / 19.0
    return Observation(
        context=jax.random.normal(k1, (5,)),
        arms=jnp.concatenate([jax.random.uniform(k2, (6, 4)), ids[:, None]], axis=1),
        mask=jnp.ones((6,), bool),
        history=jax.random.uniform(k3, (3, 5)),
        history_mask=jnp.array([True, True, False]),
    )


def test_symmetric_codes_and_error_bound():
    w = jax.random.normal(jax.random.key(0), (7, 5)).at[:, 3].set(0.0)
    codes, scale = q.quantize_symmetric(w, axis=-2)
    assert codes.dtype == jnp.int8 and scale.shape == (5,)
    assert int(jnp.max(jnp.abs(codes))) == 127  # the largest entry hits the range
    assert scale[3] == 1.0 and np.all(codes[:, 3] == 0)  # an all-zero column
    error = jnp.abs(q.dequantize(codes, scale, axis=-2) - w)
    # Rounding to the nearest code: |w - s q| <= s / 2 (plus float32 slack).
    assert np.all(error <= scale[None, :] / 2 + 1e-6)


def test_int8_matmul_modes_approximate_the_float_product():
    key_x, key_w = jax.random.split(jax.random.key(1))
    x = jax.random.normal(key_x, (4, 32))
    w = jax.random.normal(key_w, (32, 8)) / np.sqrt(32)
    codes, scale = q.quantize_symmetric(w, axis=-2)
    exact = x @ w
    weight_only = q.int8_matmul(x, codes, scale, "int8")
    np.testing.assert_allclose(
        weight_only, x @ q.dequantize(codes, scale, -2), rtol=1e-5, atol=1e-5
    )
    # Worst-case bounds from rounding: |x (W - s q)|_j <= sum_i |x_i| s_j / 2, and
    # quantising x adds at most sum_i (s_x / 2) (|W_ij| + s_j / 2).
    weight_bound = jnp.abs(x).sum(1, keepdims=True) * scale / 2
    assert np.all(jnp.abs(weight_only - exact) <= weight_bound + 1e-5)
    dynamic = q.int8_matmul(x, codes, scale, "int8_dynamic")
    s_x = jnp.max(jnp.abs(x), axis=1, keepdims=True) / 127
    act_bound = (s_x / 2) * (jnp.abs(w).sum(0) + 32 * scale / 2)
    assert np.all(jnp.abs(dynamic - exact) <= weight_bound + act_bound + 1e-5)
    assert not np.allclose(dynamic, weight_only)  # the modes really differ


@pytest.mark.parametrize("mode", ["int8", "int8_dynamic"])
def test_quantised_model_tracks_the_float_model(mode):
    graphdef, params = tf.split_model(CFG, 0)
    qcfg = CFG.__class__(**{**CFG.__dict__, "quantization": mode})
    qgraph, template = tf.split_model(qcfg, 0)
    qparams = q.quantize_state(params, template)
    keys = jax.random.split(jax.random.key(2), 32)
    float_logits = jax.vmap(lambda k: tf.logits(graphdef, params, _obs(k)))(keys)
    int8_logits = jax.vmap(lambda k: tf.logits(qgraph, qparams, _obs(k)))(keys)
    gap = jnp.abs(float_logits - int8_logits)
    # Tolerance: per-channel int8 keeps logits within a few hundredths here
    # (weights of scale ~1, a 2-block width-16 model).
    assert float(jnp.max(gap)) < 0.1
    agree = jnp.mean(jnp.argmax(float_logits, 1) == jnp.argmax(int8_logits, 1))
    assert float(agree) >= 0.9
    assert q.parameter_bytes(qparams) < 0.5 * q.parameter_bytes(params)


def test_quantised_agent_acts_like_the_float_agent_mostly():
    _, params = tf.split_model(CFG, 0)
    fp32 = tf.policy(CFG, params, exploration="greedy", finetune=False)
    int8 = tf.policy(
        CFG, params, exploration="greedy", finetune=False, quantization="int8"
    )
    s32, s8 = fp32.init(jax.random.key(0)), int8.init(jax.random.key(0))
    keys = jax.random.split(jax.random.key(3), 32)
    a32 = jax.vmap(lambda k: fp32.act(k, s32, _obs(k)))(keys)
    a8 = jax.vmap(lambda k: int8.act(k, s8, _obs(k)))(keys)
    assert float(jnp.mean(a32 == a8)) >= 0.9
    codes = s8.params["blocks"][0]["mlp_in"]["kernel_q"][...]
    assert codes.dtype == jnp.int8


def test_quantisation_errors():
    _, params = tf.split_model(CFG, 0)
    with pytest.raises(BanditConfigError, match="quantization"):
        q.check_quantization("int4")
    with pytest.raises(BanditConfigError, match="needs pretrained params"):
        tf.policy(CFG, None, finetune=False, quantization="int8")
    other = CFG.__class__(**{**CFG.__dict__, "width": 8, "quantization": "int8"})
    _, template = tf.split_model(other, 0)
    with pytest.raises(BanditConfigError, match="shape"):
        q.quantize_state(params, template)
