"""Decision latency of one jitted `act` call: transformer (fp32, int8) vs LinUCB.

Setting (pretrained-policies issue): one user, K = 20 candidates, a history of
H = 20 interactions (`ContextualRec-v0` with `history_length=20`), the default
transformer (width 32, 2 blocks, 2 heads) with its Thompson-sampling head, in
float32, int8 weight-only and int8 dynamic (int8 x int8 products), against
context x item LinUCB (`linucb_context_items`, 165 features). Latency does not
depend on the parameter values, so the transformer is randomly initialised.

All four are timed in the same run, interleaved call by call (so machine noise
hits them alike), after a warm-up; each call is waited for with
`block_until_ready`. Median and 99th percentile are recorded, and ratios against
LinUCB's median go to the `record_ratio` summary.

`test_latency_and_memory_against_model_size` does the same for four model sizes
(55k to 1.0M parameters, `SIZES`) and records the bytes of the weights and of
the whole agent state beside each latency (large-models issue).
"""

from __future__ import annotations

import time

import jax
import numpy as np
import pytest

import agents
import envs
from agents import transformer as tf
from agents.quantize import parameter_bytes
from agents.transformer import config_for_env

CALLS = 2000
WARMUP = 50


@pytest.fixture(scope="module")
def setting():
    env, params = envs.make("ContextualRec-v0", history_length=20)
    obs, _ = env.reset(jax.random.key(0), params)
    cfg = config_for_env(env)
    assert (cfg.num_arms, cfg.history_length) == (20, 20)
    _, theta = tf.split_model(cfg, 0)
    policies = {
        "transformer_fp32": tf.policy(cfg, theta, finetune=False),
        "transformer_int8": tf.policy(cfg, theta, finetune=False, quantization="int8"),
        "transformer_int8_dynamic": tf.policy(
            cfg, theta, finetune=False, quantization="int8_dynamic"
        ),
        "linucb": agents.make(
            "linucb_context_items",
            num_arms=env.num_arms,
            dim=env.context_dim,
            item_dim=env.item_dim,
            cross_dim=env.num_categories,
            alpha=0.3,
        ),
    }
    calls = {}
    for name, agent in policies.items():
        state = jax.jit(agent.init)(jax.random.key(1))
        act = jax.jit(agent.act)
        keys = jax.random.split(jax.random.key(2), CALLS + WARMUP)
        calls[name] = (act, state, keys)
    return obs, calls


def _latencies(obs, calls, count: int = CALLS) -> dict[str, np.ndarray]:
    """Seconds per call for every policy (`count` calls each after `WARMUP`),
    interleaved call by call."""
    for act, state, keys in calls.values():
        for i in range(WARMUP):
            jax.block_until_ready(act(keys[i], state, obs))
    times = {name: np.empty(count) for name in calls}
    for i in range(count):
        for name, (act, state, keys) in calls.items():
            key = keys[WARMUP + i]
            start = time.perf_counter()
            jax.block_until_ready(act(key, state, obs))
            times[name][i] = time.perf_counter() - start
    return times


def test_act_latency_fp32_int8_vs_linucb(benchmark, record_ratio, setting):
    obs, calls = setting
    times = _latencies(obs, calls)
    median = {name: float(np.median(t)) for name, t in times.items()}
    p99 = {name: float(np.quantile(t, 0.99)) for name, t in times.items()}
    act, state, keys = calls["transformer_fp32"]
    benchmark.pedantic(
        lambda: jax.block_until_ready(act(keys[0], state, obs)),
        rounds=200,
        warmup_rounds=10,
    )
    for name in ("transformer_fp32", "transformer_int8", "transformer_int8_dynamic"):
        record_ratio(
            f"{name}_vs_linucb_median_latency",
            median[name] / median["linucb"],
            median_us=median[name] * 1e6,
            p99_us=p99[name] * 1e6,
            linucb_median_us=median["linucb"] * 1e6,
            linucb_p99_us=p99["linucb"] * 1e6,
        )
    record_ratio(
        "transformer_int8_vs_fp32_median_latency",
        median["transformer_int8"] / median["transformer_fp32"],
    )
    assert all(np.all(t > 0) for t in times.values())


# Model sizes for the latency and memory table (large-models issue): (width,
# blocks, heads), from the default (55k parameters with `ContextualRec-v0`'s
# 1,000-item id table) to about a million.
SIZES = ((32, 2, 2), (64, 4, 4), (128, 4, 4), (160, 4, 4))
SIZE_CALLS, SMOKE_CALLS = 1000, 20
QUANTIZATIONS = ("none", "int8", "int8_dynamic")


def test_latency_and_memory_against_model_size(benchmark, record_ratio, setting):
    """Median and 99th-percentile latency of one `act`, the weights' bytes and the
    whole agent state's bytes, per model size and number format, against
    LinUCB's median.

    The variants of one size and LinUCB are timed interleaved call by call, as
    above; sizes one after the other. Under `--benchmark-disable` (`make
    bench-smoke`) 20 calls each, whose times are not meaningful."""
    obs, reference = setting
    env, _ = envs.make("ContextualRec-v0", history_length=20)
    calls_each = SMOKE_CALLS if benchmark.disabled else SIZE_CALLS
    for width, depth, heads in SIZES:
        cfg = config_for_env(env, width=width, depth=depth, heads=heads)
        _, theta = tf.split_model(cfg, 0)
        count = int(sum(np.size(leaf) for leaf in jax.tree.leaves(theta)))
        qcfg = config_for_env(
            env, width=width, depth=depth, heads=heads, quantization="int8"
        )
        int8_bytes = parameter_bytes(tf.split_model(qcfg, 0)[1])
        calls, weights, states = {}, {}, {}
        for quantization in QUANTIZATIONS:
            agent = tf.policy(cfg, theta, finetune=False, quantization=quantization)
            state = jax.jit(agent.init)(jax.random.key(1))
            keys = jax.random.split(jax.random.key(2), calls_each + WARMUP)
            calls[quantization] = (jax.jit(agent.act), state, keys)
            weights[quantization] = (
                parameter_bytes(theta) if quantization == "none" else int8_bytes
            )
            states[quantization] = parameter_bytes(state)
        calls["linucb"] = reference["linucb"]  # the reference, in the same loop
        times = _latencies(obs, calls, calls_each)
        median = {name: float(np.median(t)) for name, t in times.items()}
        for name in QUANTIZATIONS:
            record_ratio(
                f"transformer_{count}_params_{name}_vs_linucb_median_latency",
                median[name] / median["linucb"],
                vs_fp32=median[name] / median["none"],
                linucb_median_us=median["linucb"] * 1e6,
                width=width,
                blocks=depth,
                heads=heads,
                median_us=median[name] * 1e6,
                p99_us=float(np.quantile(times[name], 0.99)) * 1e6,
                weight_bytes=weights[name],
                state_bytes=states[name],
            )
        assert all(np.all(t > 0) for t in times.values())
    act, state, keys = calls["none"]
    benchmark.pedantic(
        lambda: jax.block_until_ready(act(keys[0], state, obs)), rounds=20
    )
