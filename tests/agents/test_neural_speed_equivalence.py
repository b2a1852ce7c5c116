"""The faster neural agents compute what the previous formulas computed.

Two pieces were rewritten for speed:

  * NeuralUCB / NeuralTS: the width sum_j g_kj^2 / Z_j from per-layer factors of
    the gradients (`Network.arm_gradient_norms`) instead of K materialised
    gradients (`jax.jacrev`, then `_squared_norm_over_z`, kept as the reference);
  * neural-linear: the refit sums only over the filled replay slots, in chunks
    (`_blr_sums`), instead of a mask over every slot (`_reference_refit` below is
    the previous code).

Each is checked against its reference, and whole runs against the regret recorded
from the code before the change (commit 2eb9b3e) on fixed seeds.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bandits
import envs
from agents import neural, neural_linear
from agents.networks import make_network
from agents.replay import ReplayBuffer, replay_valid
from bandits.linalg import inverse_factor
from bandits.types import Observation

K, D = 4, 5


def _observation(key) -> Observation:
    key_context, key_arms = jax.random.split(key)
    return Observation(
        context=jax.random.normal(key_context, (D,)),
        arms=jax.random.normal(key_arms, (K, D)),
        mask=jnp.ones((K,), bool),
    )


@pytest.mark.parametrize("form", ["context", "disjoint", "arms"])
@pytest.mark.parametrize("hidden_sizes", [(), (16,), (16, 8)])
def test_factorised_width_equals_materialised_gradients(form, hidden_sizes):
    """sum_j g_kj^2 / Z_j, factorised per layer, against the sum over `jacrev`'s
    per-arm gradients. Every term is positive, so any summation order is within
    n eps of the exact sum; with n <= 300 terms here and a few roundings per term
    both are within 2e-5 relative, hence rtol 5e-5 (observed: about 1e-7)."""
    network = make_network(form, K, D, hidden_sizes)
    for seed in range(3):
        key_params, key_z, key_obs = jax.random.split(jax.random.key(seed), 3)
        params = network.init(key_params)
        leaves, tree = jax.tree.flatten(params)
        keys = jax.random.split(key_z, len(leaves))
        z = jax.tree.unflatten(
            tree,
            [
                jax.random.uniform(k, p.shape, minval=0.5, maxval=3.0)
                for k, p in zip(keys, leaves, strict=True)
            ],
        )
        obs = _observation(key_obs)
        expected = neural._squared_norm_over_z(network.arm_gradients(params, obs), z)
        got = network.arm_gradient_norms(params, obs, z)
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=5e-5)


def _reference_refit(network, params, buffer: ReplayBuffer, lambda_prior):
    """`_blr_refit` before the change: phi of every slot, a mask on the filled ones."""
    items = buffer.items
    valid = replay_valid(buffer).astype(jnp.float32)
    phi = jax.vmap(network.embed_taken, in_axes=(None, 0, 0))(
        params, items["x"], items["action"]
    )
    blocks = jax.vmap(network.block_of)(items["action"])
    w = jax.nn.one_hot(blocks, network.num_blocks) * valid[:, None]
    h = phi.shape[-1]
    precision = lambda_prior * jnp.eye(h) + jnp.einsum("cm,ch,cg->mhg", w, phi, phi)
    precision = 0.5 * (precision + jnp.swapaxes(precision, 1, 2))
    R = jax.vmap(inverse_factor)(precision)
    r = items["reward"]
    xty = jnp.einsum("cm,c,ch->mh", w, r, phi)
    mean = jnp.einsum("mgh,mg->mh", R, jnp.einsum("mhg,mg->mh", R, xty))
    return neural_linear.BLRState(
        root=R,
        xty=xty,
        mean=mean,
        yty=jnp.einsum("cm,c->m", w, r * r),
        rounds=w.sum(axis=0),
    )


def _buffer(key, capacity: int, pushed: int) -> ReplayBuffer:
    """A ring buffer after `pushed` random rounds (wrapped if pushed > capacity);
    the unfilled slots hold large junk that must not count."""
    key_x, key_a, key_r = jax.random.split(key, 3)
    size = min(pushed, capacity)
    filled = jnp.arange(capacity) < size
    items = {
        "x": jnp.where(filled[:, None], jax.random.normal(key_x, (capacity, D)), 1e3),
        "action": jax.random.randint(key_a, (capacity,), 0, K),
        "reward": jnp.where(filled, jax.random.normal(key_r, (capacity,)), 1e3),
    }
    return ReplayBuffer(
        items=items,
        position=jnp.asarray(pushed % capacity, jnp.int32),
        size=jnp.asarray(size, jnp.int32),
    )


@pytest.mark.parametrize("form", ["context", "disjoint"])
@pytest.mark.parametrize("pushed", [0, 5, 16, 23, 30, 47])
def test_chunked_refit_equals_masked_refit(monkeypatch, form, pushed):
    """Chunks of 8 rows over a capacity of 30 (not a multiple: the last chunk is
    shifted back and overlaps), empty, partly filled, exactly one chunk, full and
    wrapped buffers. Sums of <= 30 terms in another order: rtol 1e-5; the root and
    mean go through a Cholesky of a matrix with eigenvalues >= lambda = 0.25, whose
    backward stability gives them to a few ulps times its condition number (below
    1e3 here): rtol 1e-4 with atol 1e-5."""
    monkeypatch.setattr(neural_linear, "REFIT_ROWS", 8)
    network = make_network(form, K, D, (6,))
    params = network.init(jax.random.key(1))
    buffer = _buffer(jax.random.key(pushed), 30, pushed)
    expected = _reference_refit(network, params, buffer, 0.25)
    got = jax.jit(neural_linear._blr_refit, static_argnums=0)(
        network, params, buffer, 0.25
    )
    np.testing.assert_array_equal(np.asarray(got.rounds), np.asarray(expected.rounds))
    for name in ("xty", "yty"):
        np.testing.assert_allclose(
            np.asarray(getattr(got, name)),
            np.asarray(getattr(expected, name)),
            rtol=1e-5,
            atol=1e-5,
        )
    for name in ("root", "mean"):
        np.testing.assert_allclose(
            np.asarray(getattr(got, name)),
            np.asarray(getattr(expected, name)),
            rtol=1e-4,
            atol=1e-5,
        )


# Cumulative regret of 3 seeds, Linear-v0 (K = 4, d = 5; LinearArmFeatures-v0 with
# p = 5 for "arms"), T = 200, retraining every 20 rounds, recorded from the code
# before the change (commit 2eb9b3e; identical under XLA_FLAGS=
# --xla_cpu_max_isa=AVX2). The new code gives the same actions at every step, so
# the regret matches to float32 summation (rtol 1e-5 on sums of 200 terms).
RECORDED = {
    "neural_ts disjoint": (
        neural.neural_ts,
        {},
        [80.6613, 91.56002, 72.0798],
    ),
    "neural_ts context, two layers": (
        neural.neural_ts,
        {"features": "context", "hidden_sizes": (16, 8)},
        [80.11916, 144.8788, 87.7727],
    ),
    "neural_ucb arms, paper": (
        neural.neural_ucb,
        {"features": "arms", "config": "paper", "train_steps": 5},
        [67.79579, 145.7444, 152.7949],
    ),
    "neural_linear context": (
        neural.neural_linear,
        {},
        [90.15415, 82.43092, 88.26053],
    ),
    "neural_linear disjoint, two layers": (
        neural.neural_linear,
        {"features": "disjoint", "hidden_sizes": (16, 8)},
        [75.8354, 70.89149, 107.9605],
    ),
    "neural_linear wrapped buffer, 16-row chunks": (
        neural.neural_linear,
        {"capacity": 70},
        [103.2256, 100.9549, 101.9768],
    ),
}


@pytest.mark.parametrize("case", list(RECORDED))
def test_regret_matches_the_previous_code(monkeypatch, case):
    # 70 slots in chunks of 16: five chunks, the last shifted back (no effect on
    # the other cases, whose 200-slot fills stay under one chunk of 512).
    monkeypatch.setattr(neural_linear, "REFIT_ROWS", 16)
    factory, options, regret = RECORDED[case]
    if factory is neural.neural_linear and "max_isa=SSE" in os.environ.get(
        "XLA_FLAGS", ""
    ):
        # Recorded on AVX-512 and equal under AVX2; with SSE-only code XLA rounds
        # the posterior differently and neural-linear's accept/reject gamma draw
        # can take another branch (measured: 73.13 against 70.89). The refit
        # itself is compared with the previous formula in
        # test_chunked_refit_equals_masked_refit on any CPU.
        pytest.skip("neural-linear's recorded run needs AVX2 or newer")
    options = {"hidden_sizes": (16,), **options}
    if options.get("features") == "arms":
        env, params = envs.make("LinearArmFeatures-v0", num_arms=K, arm_dim=D)
    else:
        env, params = envs.make("Linear-v0", num_arms=K, dim=D)
    agent = factory(num_arms=K, dim=D, train_every=20, **options)
    run = bandits.run(env, agent, horizon=200, seeds=3, params=params)
    got = np.asarray(run.regret).sum(axis=-1)
    np.testing.assert_allclose(got, regret, rtol=1e-5)
