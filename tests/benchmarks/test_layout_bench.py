"""LinUCB against the hardware: achieved FLOP/s, and the seed layout.

Setting (speed issue, item 4): LinUCB on Linear-v0, d = 20, K = 10, 64 seeds,
T = 10,000, as in `test_linucb_bench.py`. Three measurements in one run:

1. The machine's practical peak: a 2048 x 2048 float32 matrix product through
   XLA (its tuned GEMM, all cores), in GFLOP/s.
2. What `bandits.run` achieves: rounds per second times the arithmetic of one
   LinUCB round (`linucb_flops_per_round`, written out below), as a fraction of
   that peak.
3. The dominant kernel of a round (the K widths |R_k x|, the argmax, and a
   Potter update of the chosen arm's root) over 64 seeds as a `lax.scan`, in
   three layouts of the roots: seeds outermost, (S, K, f, f), written per seed
   and vmapped (what the agents do); seeds innermost, (K, f, f, S), with the
   mat-vecs as `einsum`s (XLA's dot with the seed axis as a minor batch
   dimension); and seeds innermost with the mat-vecs as broadcast multiplies and
   sums (elementwise code that vectorises across seeds, the layout's usual
   motivation). The chosen arm differs between seeds, so the innermost layouts
   update through a one-hot mask over the arms. All three compute the same
   numbers (checked on a short run).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import agents
import bandits
import envs
from bandits.linalg import potter_update
from tests.benchmarks.conftest import best_time, interleaved_best_times

NUM_ARMS, DIM, SEEDS, HORIZON = 10, 20, 64, 10_000
KERNEL_STEPS = 500
GEMM_SIZE = 2048


def linucb_flops_per_round(num_arms: int, dim: int) -> int:
    """Floating-point operations of one LinUCB round of one seed (d = `dim`, K =
    `num_arms`, disjoint features), counting a multiply-add as 2.

    act: means theta_k^T x (2 K d) and widths |R_k x| (2 K d^2 for the mat-vecs,
    2 K d for the squares and sums); update of the played arm: Potter's v = R x,
    u = R^T v and R - c v u^T (3 x 2 d^2), theta + gain (r - x^T theta) (4 d),
    the recent sum of x x^T (2 d^2) and of r x (2 d); the environment's K
    expected rewards (2 K d). The re-factorisation (about K d^3 every 1,024
    rounds, under 1% here) and the random draws are left out.
    """
    k, d = num_arms, dim
    act = 2 * k * d + 2 * k * d * d + 2 * k * d
    update = 6 * d * d + 4 * d + 2 * d * d + 2 * d
    env = 2 * k * d
    return act + update + env


def test_linucb_against_machine_peak(benchmark, record_ratio):
    a = jnp.ones((GEMM_SIZE, GEMM_SIZE), jnp.float32) / GEMM_SIZE
    gemm = jax.jit(lambda x, y: x @ y)
    gemm_seconds = best_time(lambda: gemm(a, a), repeats=5)
    peak = 2 * GEMM_SIZE**3 / gemm_seconds

    env, params = envs.make("Linear-v0", num_arms=NUM_ARMS, dim=DIM)
    agent = agents.linucb(num_arms=NUM_ARMS, dim=DIM, alpha=1.0)

    def run():
        return bandits.run(env, agent, horizon=HORIZON, seeds=SEEDS, params=params)

    run_seconds = best_time(run)
    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    rounds_per_s = SEEDS * HORIZON / run_seconds
    achieved = rounds_per_s * linucb_flops_per_round(NUM_ARMS, DIM)
    record_ratio(
        "linucb_flops_fraction_of_gemm_peak",
        achieved / peak,
        linucb_gflops=achieved / 1e9,
        gemm_gflops=peak / 1e9,
        linucb_rounds_per_s=rounds_per_s,
        flops_per_round=linucb_flops_per_round(NUM_ARMS, DIM),
    )
    assert achieved > 0 and peak > 0


def _step_outer(R, x):
    """Seeds outermost: per seed, R (K, f, f), x (f,); vmapped over seeds."""

    def one(R, x):
        width = jnp.sqrt(jnp.sum((R @ x) ** 2, axis=-1))
        k = jnp.argmax(width)
        return R.at[k].set(potter_update(R[k], x)[0]), width

    return jax.vmap(one)(R, x)


def _step_inner_einsum(R, x):
    """Seeds innermost: R (K, f, f, S), x (S, f); mat-vecs as einsums, Potter's
    update (`bandits.linalg.potter_update`) written out for this layout."""
    xt = x.T
    width = jnp.sqrt(jnp.sum(jnp.einsum("kijs,js->kis", R, xt) ** 2, axis=1))
    onehot = jax.nn.one_hot(jnp.argmax(width, axis=0), NUM_ARMS, axis=0)
    chosen = jnp.einsum("ks,kijs->ijs", onehot, R)
    v = jnp.einsum("ijs,js->is", chosen, xt)
    u = jnp.einsum("ijs,is->js", chosen, v)
    c = 1.0 / ((q := jnp.sqrt(1.0 + jnp.sum(v * v, axis=0))) * (1.0 + q))
    delta = c * v[:, None, :] * u[None, :, :]
    return R - onehot[:, None, None, :] * delta[None], width.T


def _step_inner_elementwise(R, x):
    """Seeds innermost, mat-vecs as broadcast multiplies and sums."""
    xt = x.T
    Rx = jnp.sum(R * xt[None, None, :, :], axis=2)
    width = jnp.sqrt(jnp.sum(Rx * Rx, axis=1))
    onehot = jax.nn.one_hot(jnp.argmax(width, axis=0), NUM_ARMS, axis=0, dtype=R.dtype)
    chosen = jnp.sum(R * onehot[:, None, None, :], axis=0)
    v = jnp.sum(chosen * xt[None, :, :], axis=1)
    u = jnp.sum(chosen * v[:, None, :], axis=0)
    c = 1.0 / ((q := jnp.sqrt(1.0 + jnp.sum(v * v, axis=0))) * (1.0 + q))
    delta = c * v[:, None, :] * u[None, :, :]
    return R - onehot[:, None, None, :] * delta[None], width.T


def _scan(step):
    return jax.jit(lambda R, xs: jax.lax.scan(step, R, xs))


def test_seed_layouts(benchmark, record_ratio):
    xs = jax.random.normal(jax.random.key(0), (KERNEL_STEPS, SEEDS, DIM))
    eye = jnp.eye(DIM, dtype=jnp.float32)
    outer = jnp.broadcast_to(eye, (SEEDS, NUM_ARMS, DIM, DIM))
    inner = jnp.transpose(outer, (1, 2, 3, 0))
    programs = {
        "outer": (_scan(_step_outer), outer),
        "inner_einsum": (_scan(_step_inner_einsum), inner),
        "inner_elementwise": (_scan(_step_inner_elementwise), inner),
    }
    # Same numbers: widths of the first steps agree to float32 rounding (later
    # steps can pick another arm on a near tie, so only a short run is compared).
    short = xs[:20]
    widths = {
        name: np.asarray(program(R, short)[1])
        for name, (program, R) in programs.items()
    }
    for name in ("inner_einsum", "inner_elementwise"):
        np.testing.assert_allclose(widths[name], widths["outer"], rtol=1e-4)

    seconds = interleaved_best_times(
        [lambda p=p, R=R: p(R, xs) for p, R in programs.values()], repeats=3
    )
    benchmark.pedantic(
        lambda: jax.block_until_ready(programs["outer"][0](outer, xs)), rounds=3
    )
    rates = {
        name: SEEDS * KERNEL_STEPS / s
        for name, s in zip(programs, seconds, strict=True)
    }
    for name in ("inner_einsum", "inner_elementwise"):
        record_ratio(
            f"seeds_{name}_vs_outer",
            rates[name] / rates["outer"],
            outer_rounds_per_s=rates["outer"],
            inner_rounds_per_s=rates[name],
        )
    assert all(rate > 0 for rate in rates.values())
