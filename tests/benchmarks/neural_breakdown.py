"""Where a neural agent's run spends its time, and one layout tried for its training.

    python -m tests.benchmarks.neural_breakdown [--agent neural_ts] [--seeds 16]

Runs the agent of `tests/benchmarks/test_neural_bench.py` (Linear-v0, K = 4,
d = 10, T = 2,000, the disjoint encoding) through `bandits.run` with parts of its
work switched off: as shipped, without training (`train_every` beyond the
horizon), with one training step instead of 50, and with training batches of 16
rows instead of 64; best of three after a warm-up, compile excluded, so the
differences are what training and its batch size cost.

Then it times one training step's gradient (8 seeds vmapped, 64 rows, one hidden
layer of 100) with the disjoint first layer written three ways: the dense product
of the (rows, K d) encoding (as shipped), a gather of each row's (d, 100) block of
the kernel, and every arm's block followed by a selection. The gather skips the
3/4 of the dense product's multiplications that are by zero; the question is
whether that pays on this CPU.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

import bandits
import envs
from agents.neural import neural_ts, neural_ucb
from tests.benchmarks.conftest import interleaved_best_times

NUM_ARMS, DIM, HORIZON = 4, 10, 2_000
AGENTS = {"neural_ts": neural_ts, "neural_ucb": neural_ucb}
VARIANTS = {
    "as shipped": {},
    "no training": {"train_every": 10 * HORIZON},
    "1 training step": {"train_steps": 1},
    "batches of 16": {"batch_size": 16},
}


def run_times(agent_name: str, seeds: int) -> dict[str, float]:
    """Best of three runs of each variant, timed in turn (`interleaved_best_times`)."""
    env, params = envs.make("Linear-v0", num_arms=NUM_ARMS, dim=DIM)
    runs = [
        functools.partial(
            bandits.run,
            env,
            AGENTS[agent_name](num_arms=NUM_ARMS, dim=DIM, **change),
            horizon=HORIZON,
            seeds=seeds,
            params=params,
        )
        for change in VARIANTS.values()
    ]
    return dict(zip(VARIANTS, interleaved_best_times(runs, 3), strict=True))


def _loss(first_layer):
    def loss(params, x, action, reward):
        kernel, bias, head = params
        hidden = jax.nn.relu(first_layer(kernel, x, action) + bias)
        return jnp.mean((hidden @ head - reward) ** 2)

    return loss


def _dense(kernel, x, action):
    encoded = jax.vmap(lambda a, x: jnp.kron(jax.nn.one_hot(a, NUM_ARMS), x))(action, x)
    return encoded @ kernel


def _gather(kernel, x, action):
    blocks = kernel.reshape(NUM_ARMS, DIM, -1)[action]  # (rows, d, hidden)
    return jnp.einsum("bd,bdh->bh", x, blocks)


def _select(kernel, x, action):
    every = jnp.einsum("bd,kdh->bkh", x, kernel.reshape(NUM_ARMS, DIM, -1))
    return jnp.take_along_axis(every, action[:, None, None], axis=1)[:, 0]


LAYOUTS = {"dense (shipped)": _dense, "gather": _gather, "every arm, select": _select}


def step_times(seeds: int = 8, rows: int = 64, hidden: int = 100) -> dict[str, float]:
    """Microseconds per vmapped gradient of the training loss, per layout."""
    k = jax.random.split(jax.random.key(0), 5)
    params = (
        0.1 * jax.random.normal(k[0], (seeds, NUM_ARMS * DIM, hidden)),
        jnp.zeros((seeds, hidden)),
        0.1 * jax.random.normal(k[1], (seeds, hidden)),
    )
    x = jax.random.normal(k[2], (seeds, rows, DIM))
    action = jax.random.randint(k[3], (seeds, rows), 0, NUM_ARMS)
    reward = jax.random.normal(k[4], (seeds, rows))
    calls = 200

    def many(grad):
        def call():
            for _ in range(calls):
                out = grad(params, x, action, reward)
            return out

        return call

    grads = [jax.jit(jax.vmap(jax.grad(_loss(layer)))) for layer in LAYOUTS.values()]
    seconds = interleaved_best_times([many(g) for g in grads], 5)
    return {label: t / calls * 1e6 for label, t in zip(LAYOUTS, seconds, strict=True)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", choices=sorted(AGENTS), default="neural_ts")
    parser.add_argument("--seeds", type=int, default=16)
    args = parser.parse_args(argv)
    print(f"{args.agent}, {args.seeds} seeds, T = {HORIZON} (best of 3, seconds):")
    for label, seconds in run_times(args.agent, args.seeds).items():
        print(f"  {label:16s} {seconds:.3f}")
    print("one training gradient, 8 seeds x 64 rows (best of 5, microseconds):")
    for label, micros in step_times().items():
        print(f"  {label:18s} {micros:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
