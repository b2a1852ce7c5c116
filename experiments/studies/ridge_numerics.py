"""Study: are the ridge agents' statistics exact in float32 over long runs?

Two measurements, printed as Markdown tables (docs/numerics.md shows them):

1. Held-out predictions x^T theta_hat and widths sqrt(x^T A^{-1} x) after n
   updates on hard feature distributions, relative to a float64 direct solve, for
   the shipped ridge core (`agents.linucb`, float32) and for the Sherman-Morrison
   inverse the agents used before (`sherman_morrison_linucb`, float32).
2. Mushroom (`Classification-v0`), LinUCB with default settings, mistakes at
   T = 60,000 for 4 seeds: the shipped agent in float32 and float64, and the
   Sherman-Morrison agent in float32.
3. With `--logs PATH --env ID`: `linucb_context_items` (the pretrain/fine-tune
   study's settings) warm-started in float32 from the first `--events` logged
   events of a study's logs, its theta_hat against a float64 direct solve of the
   same ridge regression.

    python -m experiments.studies.ridge_numerics  # 1 and 2, about 1 minute
    python -m experiments.studies.ridge_numerics --quick        # smoke run
    python -m experiments.studies.ridge_numerics --logs \
        results/pretrain_finetune/ContextualRec-v0/logs.parquet --env ContextualRec-v0
"""

from __future__ import annotations

import argparse
import functools
import platform
import time
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import agents
import bandits
import envs
from agents.exploration import masked_argmax
from agents.ridge import mean_and_width
from bandits.types import Agent, Observation

CASES = (
    # (kind, n, d, scale)
    ("onehot", 100_000, 120, 1.0),
    ("onehot", 300_000, 120, 1.0),
    ("collinear", 100_000, 64, 1.0),
    ("collinear", 100_000, 64, 1e3),
    ("gaussian", 100_000, 32, 1e3),
    ("gaussian", 100_000, 32, 1e-3),
    ("graded", 100_000, 16, 1.0),
)
HELD_OUT = 2_000


class ShermanMorrisonState(NamedTuple):
    precision_inv: jax.Array  # (K, d, d)  A_k^{-1}, rank-one updated
    b: jax.Array  # (K, d)
    theta_hat: jax.Array  # (K, d)


def sherman_morrison_linucb(num_arms: int, dim: int, alpha: float = 1.0) -> Agent:
    """Disjoint LinUCB with a float32 Sherman-Morrison inverse (the former scheme).

    A reference for measurements only: its inverse drifts over long runs. It keeps
    A_k^{-1} and updates A^{-1} <- A^{-1} - u u^T / (1 + x^T u), u = A^{-1} x, and
    theta_hat = A^{-1} b.
    """

    def init(key):
        del key
        eye = jnp.eye(dim, dtype=jnp.float32)
        return ShermanMorrisonState(
            jnp.broadcast_to(eye, (num_arms, dim, dim)),
            jnp.zeros((num_arms, dim), jnp.float32),
            jnp.zeros((num_arms, dim), jnp.float32),
        )

    def width(state, x):
        return jnp.sqrt(
            jnp.maximum(jnp.sum((state.precision_inv @ x) * x, axis=-1), 0.0)
        )

    def act(key, state, obs):
        del key
        x = obs.context.astype(jnp.float32)
        scores = state.theta_hat @ x + alpha * width(state, x)
        return masked_argmax(scores, obs.mask)

    def update(key, state, obs, action, reward):
        del key
        x = obs.context.astype(jnp.float32)
        A_inv = state.precision_inv[action]
        u = A_inv @ x
        A_inv = A_inv - jnp.outer(u, u) / (1.0 + x @ u)
        b = state.b[action] + reward * x
        return ShermanMorrisonState(
            state.precision_inv.at[action].set(A_inv),
            state.b.at[action].set(b),
            state.theta_hat.at[action].set(A_inv @ b),
        )

    def predict(state, obs):
        return state.theta_hat @ obs.context.astype(jnp.float32)

    return Agent(init, act, update, name="linucb_sherman_morrison", predict=predict)


def features(kind: str, n: int, d: int, scale: float, rng) -> np.ndarray:
    """Rows of a hard feature distribution, float32 (see tests/agents)."""
    if kind == "onehot":
        X = np.zeros((n, (d // 4) * 4))
        for g in range(d // 4):
            X[np.arange(n), 4 * g + rng.integers(0, 4, n)] = 1.0
    elif kind == "collinear":
        half = rng.normal(size=(n, d // 2))
        X = np.concatenate([half, half], axis=1)
    elif kind == "gaussian":
        X = rng.normal(size=(n, d))
    else:  # graded: column scales 1e-3 .. 1e3 within a row
        X = rng.normal(size=(n, d)) * np.logspace(-3, 3, d)
    return (scale * X).astype(np.float32)


def _obs(x) -> Observation:
    return Observation(x, jnp.zeros((1, 0), jnp.float32), jnp.ones((1,), bool))


@functools.partial(jax.jit, static_argnums=0)
def _learn(agent: Agent, X, rewards):
    def body(state, inputs):
        x, r = inputs
        return agent.update(jax.random.key(0), state, _obs(x), 0, r), None

    return jax.lax.scan(body, agent.init(jax.random.key(0)), (X, rewards))[0]


def _widths(agent_name: str, state, X) -> np.ndarray:
    if agent_name == "sherman_morrison":
        P = np.asarray(state.precision_inv[0], np.float64)
        return np.sqrt(np.maximum(np.sum((X @ P) * X, axis=1), 0.0))
    one = jax.jit(jax.vmap(lambda x: mean_and_width(state, _obs(x), "context")[1]))
    return np.asarray(one(jnp.asarray(X))[:, 0], np.float64)


def accuracy_rows(cases: Sequence[tuple], seed: int = 0) -> list[dict]:
    """Prediction and width errors against a float64 direct solve, per case."""
    rows = []
    for kind, n, d, scale in cases:
        rng = np.random.default_rng(seed)
        X = features(kind, n, d, scale, rng)
        held_out = features(kind, HELD_OUT, d, scale, rng)
        f = X.shape[1]
        theta_star = rng.normal(size=f) / (scale * np.sqrt(f))
        rewards = (X.astype(np.float64) @ theta_star + 0.1 * rng.normal(size=n)).astype(
            np.float32
        )
        X64, H64 = X.astype(np.float64), held_out.astype(np.float64)
        A = np.eye(f) + X64.T @ X64
        theta = np.linalg.solve(A, X64.T @ rewards.astype(np.float64))
        exact_mean = H64 @ theta
        exact_width = np.sqrt(np.sum(H64 * np.linalg.solve(A, H64.T).T, axis=1))
        row = {"case": f"{kind}, n={n:,}, f={f}, scale={scale:g}"}
        for name, agent in (
            ("sherman_morrison", sherman_morrison_linucb(1, f)),
            ("exact", agents.linucb(1, f)),
        ):
            state = _learn(agent, jnp.asarray(X), jnp.asarray(rewards))
            mean = np.asarray(
                jax.jit(jax.vmap(lambda x, s=state, a=agent: a.predict(s, _obs(x))))(
                    jnp.asarray(held_out)
                )[:, 0],
                np.float64,
            )
            width = _widths(name, state, H64)
            with np.errstate(invalid="ignore"):
                row[f"{name}_prediction"] = float(
                    np.linalg.norm(mean - exact_mean) / np.linalg.norm(exact_mean)
                )
                row[f"{name}_width"] = float(
                    np.max(np.abs(width - exact_width) / exact_width)
                )
        rows.append(row)
        print(row, flush=True)
    return rows


def mushroom_mistakes(horizon: int, seeds: int) -> dict[str, list[float]]:
    """Mistakes (regret) at `horizon` per seed on mushroom for three LinUCBs."""
    env, params = envs.make("Classification-v0", dataset="mushroom")
    K, d = env.num_arms, env.dim
    out = {}
    for label, make, x64 in (
        ("linucb, float32 (shipped)", lambda: agents.linucb(K, d), False),
        ("linucb, float64", lambda: agents.linucb(K, d, dtype="float64"), True),
        ("Sherman-Morrison, float32", lambda: sherman_morrison_linucb(K, d), False),
    ):
        with jax.enable_x64(x64):
            traj = bandits.run(env, make(), horizon=horizon, seeds=seeds, params=params)
            out[label] = np.asarray(traj.regret, np.float64).sum(axis=1).tolist()
        print(label, out[label], flush=True)
    return out


def warm_start_error(logs: str, env_id: str, events: int) -> dict[str, float]:
    """Relative error of a float32 warm start's theta_hat and its predictions
    on the logged (chosen) items, against a float64 direct ridge solve."""
    from agents.features import context_cross_items
    from agents.warm_start import warm_start
    from envs.logged import read_columns

    env = envs.make_env(env_id)
    agent = agents.make(
        "linucb_context_items",
        num_arms=env.num_arms,
        dim=env.context_dim,
        item_dim=env.item_dim,
        cross_dim=env.num_categories,
        cross_scale=0.05,
        alpha=0.3,
    )
    state = warm_start(agent, logs, max_events=events).init(jax.random.key(0))
    theta32 = np.asarray(state.theta_hat[0], np.float64)

    columns, _ = read_columns(logs, ("context", "arms", "action", "reward"))
    phi_of = jax.jit(
        jax.vmap(
            lambda x, arms, a: context_cross_items(
                Observation(x, arms, jnp.ones(arms.shape[0], bool)),
                env.context_dim,
                env.item_dim,
                env.num_categories,
                0.05,
            )[a]
        )
    )
    f = theta32.size
    A, b = np.eye(f), np.zeros(f)
    chunks = []
    for start in range(0, events, 50_000):
        stop = min(start + 50_000, events)
        phi = np.asarray(
            phi_of(
                columns["context"][start:stop],
                columns["arms"][start:stop],
                columns["action"][start:stop],
            ),
            np.float64,
        )
        A += phi.T @ phi
        b += phi.T @ columns["reward"][start:stop].astype(np.float64)
        chunks.append(phi[:: max(1, (stop - start) // 2_000)])
    theta64 = np.linalg.solve(A, b)
    sample = np.concatenate(chunks)
    return {
        "theta": float(np.linalg.norm(theta32 - theta64) / np.linalg.norm(theta64)),
        "predictions": float(
            np.linalg.norm(sample @ (theta32 - theta64))
            / np.linalg.norm(sample @ theta64)
        ),
    }


def _fmt(value: float) -> str:
    return "nan" if not np.isfinite(value) else f"{value:.1e}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--logs", help="a study's logs.parquet: warm-start check only")
    parser.add_argument("--env", default="ContextualRec-v0", help="env of --logs")
    parser.add_argument("--events", type=int, default=450_000, help="events replayed")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.logs:
        errors = warm_start_error(args.logs, args.env, args.events)
        print(
            f"{args.env}, linucb_context_items warm-started on {args.events:,} "
            f"events (float32) against a float64 direct solve: theta_hat "
            f"{errors['theta']:.1e}, predictions {errors['predictions']:.1e} "
            f"(relative); {time.perf_counter() - start:.0f} s"
        )
        return
    cases = [(k, 2_000, d, s) for k, _, d, s in CASES[:2]] if args.quick else CASES
    rows = accuracy_rows(cases)
    horizon, seeds = (500, 2) if args.quick else (60_000, 4)
    mistakes = mushroom_mistakes(horizon, seeds)
    print(
        f"\nMachine: {platform.machine()}, {platform.processor() or 'cpu'}; jax "
        f"{jax.__version__}; {time.perf_counter() - start:.0f} s\n"
    )
    print("| case | prediction, exact | width, exact | prediction, S-M | width, S-M |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['case']} | {_fmt(r['exact_prediction'])} | {_fmt(r['exact_width'])}"
            f" | {_fmt(r['sherman_morrison_prediction'])}"
            f" | {_fmt(r['sherman_morrison_width'])} |"
        )
    print(f"\nMushroom, LinUCB defaults, mistakes at T = {horizon:,} per seed:\n")
    print("| agent | mistakes per seed | mean |")
    print("|---|---|---|")
    for label, values in mistakes.items():
        per_seed = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {label} | {per_seed} | {np.mean(values):.1f} |")


if __name__ == "__main__":
    main()
