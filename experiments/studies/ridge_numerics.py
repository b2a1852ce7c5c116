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
    bandits run ridge_numerics                    # 1 and 2, the config as it is

The cases are `experiments/configs/ridge_numerics.toml`. Every case of 1, every
agent of 2 and the warm start of 3 is a cell of the study runner
(`experiments.execute.cells`): they run side by side in worker processes and
are stored in `<out>/cells/` as they finish (`--out`, default
`results/ridge_numerics`); a rerun computes only what is missing or changed.
`summary.md` holds the tables, from every cell in the folder.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np

import agents
import bandits
import envs
from agents.exploration import masked_argmax
from agents.ridge import mean_and_width
from bandits.types import Agent, Observation
from bandits.validation import BanditConfigError, non_negative_int, positive_int, real
from experiments.cli import run_command
from experiments.config import checks
from experiments.config.checks import check_keys, table
from experiments.config.sources import parse_toml, read_source
from experiments.execute import compile_cache
from experiments.execute.cells import Cell, command
from experiments.store import storage

if TYPE_CHECKING:
    from envs.classification import ClassificationEnv
    from envs.recommendation import RecommendationEnv

KINDS = ("onehot", "collinear", "gaussian", "graded")
HELD_OUT = 2_000
MUSHROOM_AGENTS = {
    "float32": "linucb, float32 (shipped)",
    "float64": "linucb, float64",
    "sherman_morrison": "Sherman-Morrison, float32",
}
QUICK = {"horizon": 500, "seeds": 2, "n": 2_000, "cases": 2}


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


def accuracy_row(kind: str, n: int, d: int, scale: float, seed: int = 0) -> dict:
    """Prediction and width errors against a float64 direct solve, one case."""
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
    row: dict[str, str | float] = {"case": f"{kind}, n={n:,}, f={f}, scale={scale:g}"}
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
    return row


def mushroom_mistakes(agent: str, horizon: int, seeds: int) -> list[float]:
    """Mistakes (regret) at `horizon` per seed on mushroom for one of the three
    LinUCBs (`MUSHROOM_AGENTS`)."""
    env, params = envs.make("Classification-v0", dataset="mushroom")
    K, d = env.num_arms, cast("ClassificationEnv", env).dim
    make = {
        "float32": lambda: agents.linucb(K, d),
        "float64": lambda: agents.linucb(K, d, dtype="float64"),
        "sherman_morrison": lambda: sherman_morrison_linucb(K, d),
    }[agent]
    with jax.enable_x64(agent == "float64"):
        traj = bandits.run(env, make(), horizon=horizon, seeds=seeds, params=params)
        return np.asarray(traj.regret, np.float64).sum(axis=1).tolist()


def warm_start_error(logs: str, env_id: str, events: int) -> dict[str, float]:
    """Relative error of a float32 warm start's theta_hat and its predictions
    on the logged (chosen) items, against a float64 direct ridge solve."""
    from agents.features import context_cross_items
    from agents.warm_start import warm_start
    from envs.logged import read_columns

    # the env of warm-start logs is a recommendation env (item features)
    env = cast("RecommendationEnv", envs.make_env(env_id))
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


# ---------------------------------------------------------------------------
# The study runner's side


def read(data: Mapping[str, Any]) -> dict[str, Any]:
    """The study's settings from a TOML document
    (`experiments/configs/ridge_numerics.toml`), checked."""
    check_keys(data, ("study", "name", "output", "seed", "cases", "mushroom",
                      "warm_start"), "the study config")  # fmt: skip
    cases = []
    for i, case in enumerate(data.get("cases", [])):
        where = f"cases[{i}]"
        case = table(where, case)
        check_keys(case, ("kind", "n", "d", "scale"), where,
                   required=("kind", "n", "d"))  # fmt: skip
        if case["kind"] not in KINDS:
            raise BanditConfigError.about(
                f"{where}.kind", f"must be one of {list(KINDS)}, got {case['kind']!r}"
            )
        cases.append({
            "kind": case["kind"], "n": positive_int(f"{where}.n", case["n"]),
            "d": positive_int(f"{where}.d", case["d"]),
            "scale": real(f"{where}.scale", case.get("scale", 1.0), low=0.0,
                          low_open=True),
        })  # fmt: skip
    mushroom = dict(table("mushroom", data.get("mushroom", {})))
    check_keys(mushroom, ("horizon", "seeds", "agents"), "[mushroom]")
    agents_ = list(mushroom.get("agents", list(MUSHROOM_AGENTS)))
    for name in agents_:
        if name not in MUSHROOM_AGENTS:
            raise BanditConfigError.about(
                "mushroom.agents",
                f"must be among {list(MUSHROOM_AGENTS)}, got {name!r}",
            )
    settings: dict[str, Any] = {
        "output": str(data.get("output", "results/ridge_numerics")),
        "seed": non_negative_int("seed", data.get("seed", 0)),
        "cases": cases,
        "mushroom": {
            "horizon": positive_int(
                "mushroom.horizon", mushroom.get("horizon", 60_000)
            ),
            "seeds": positive_int("mushroom.seeds", mushroom.get("seeds", 4)),
            "agents": agents_,
        },
        "warm_start": None,
    }
    if "warm_start" in data:
        warm = dict(table("warm_start", data["warm_start"]))
        check_keys(warm, ("logs", "env", "events"), "[warm_start]", required=("logs",))
        settings["warm_start"] = {
            "logs": str(warm["logs"]),
            "env": str(warm.get("env", "ContextualRec-v0")),
            "events": positive_int("warm_start.events", warm.get("events", 450_000)),
        }
    return settings


def cells(settings: Mapping[str, Any]) -> list[Cell]:
    """A cell per accuracy case, per mushroom agent, and the warm start."""
    out = []
    for case in settings["cases"]:
        spec = {"part": "accuracy", **case, "seed": settings["seed"]}
        shape = f"n={case['n']} d={case['d']} scale={case['scale']:g}"
        out.append(Cell(f"accuracy | {case['kind']} {shape}", spec))
    mushroom = settings["mushroom"]
    for agent in mushroom["agents"]:
        spec = {"part": "mushroom", "agent": agent, "horizon": mushroom["horizon"],
                "seeds": mushroom["seeds"]}  # fmt: skip
        out.append(Cell(f"mushroom | {agent} | T={mushroom['horizon']}", spec))
    warm = settings["warm_start"]
    if warm is not None:
        path = Path(warm["logs"])
        if not path.is_file():
            raise BanditConfigError.about("warm_start.logs", f"no file {str(path)!r}")
        spec = {"part": "warm_start", **warm,
                "logs_sha256": storage.file_checksum(path)[1]}  # fmt: skip
        out.append(Cell(f"warm start | {warm['env']} | {warm['events']} events", spec))
    return out


def run_cell(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The record of one cell, in a worker process."""
    part = spec["part"]
    if part == "accuracy":
        row = accuracy_row(spec["kind"], spec["n"], spec["d"], spec["scale"],
                           spec["seed"])  # fmt: skip
        return [{"part": part, **row}]
    if part == "mushroom":
        mistakes = mushroom_mistakes(spec["agent"], spec["horizon"], spec["seeds"])
        return [{"part": part, "agent": MUSHROOM_AGENTS[spec["agent"]],
                 "horizon": spec["horizon"], "mistakes": mistakes}]  # fmt: skip
    errors = warm_start_error(spec["logs"], spec["env"], spec["events"])
    return [{"part": part, "env": spec["env"], "events": spec["events"], **errors}]


def report(records: Sequence[Mapping[str, Any]], out: Path) -> list[Path]:
    """`summary.md`: the tables of every cell in the folder."""
    lines = [
        "# Ridge statistics in float32 against a float64 direct solve\n",
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}; "
        f"jax {jax.__version__}.\n",
    ]
    rows = [r for r in records if r["part"] == "accuracy"]
    if rows:
        lines += [
            "| case | prediction, exact | width, exact | prediction, S-M "
            "| width, S-M |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['case']} | {_fmt(r['exact_prediction'])} | {_fmt(r['exact_width'])}"
            f" | {_fmt(r['sherman_morrison_prediction'])}"
            f" | {_fmt(r['sherman_morrison_width'])} |"
            for r in rows
        ]
    for horizon in sorted({r["horizon"] for r in records if r["part"] == "mushroom"}):
        lines += [
            f"\nMushroom, LinUCB defaults, mistakes at T = {horizon:,} per seed:\n",
            "| agent | mistakes per seed | mean |",
            "|---|---|---|",
        ]
        for r in records:
            if r["part"] == "mushroom" and r["horizon"] == horizon:
                per_seed = ", ".join(f"{v:.0f}" for v in r["mistakes"])
                lines.append(f"| {r['agent']} | {per_seed} | "
                             f"{np.mean(r['mistakes']):.1f} |")  # fmt: skip
    for r in records:
        if r["part"] == "warm_start":
            lines.append(
                f"\n{r['env']}, linucb_context_items warm-started on "
                f"{r['events']:,} events (float32) against a float64 direct solve: "
                f"theta_hat {r['theta']:.1e}, predictions {r['predictions']:.1e} "
                "(relative)."
            )
    return [storage.atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")]


def describe(records: Sequence[Mapping[str, Any]]) -> str:
    r = records[0]
    if r["part"] == "accuracy":
        return (f"prediction {_fmt(r['exact_prediction'])}, "
                f"S-M {_fmt(r['sherman_morrison_prediction'])}")  # fmt: skip
    if r["part"] == "mushroom":
        return f"mistakes {', '.join(f'{v:.0f}' for v in r['mistakes'])}"
    return f"theta_hat {r['theta']:.1e}, predictions {r['predictions']:.1e}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="ridge_numerics")
    parser.add_argument("--out", help="results folder (default: the config's)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--logs", help="a study's logs.parquet: warm-start check only")
    parser.add_argument("--env", default="ContextualRec-v0", help="env of --logs")
    parser.add_argument(
        "--events", type=checks.positive_option, default=450_000, help="events replayed"
    )
    parser.add_argument("--workers", type=checks.positive_option, metavar="N",
                        help="worker processes (default: one per core)")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    args = parser.parse_args(argv)
    try:
        text, origin, _ = read_source(args.config)
        data = parse_toml(text, origin)
        if args.logs:
            data["cases"], data["mushroom"] = [], {"agents": []}
            data["warm_start"] = {"logs": args.logs, "env": args.env,
                                  "events": args.events}  # fmt: skip
        if args.quick:
            # The first cases that differ once n is cut to QUICK["n"].
            shrunk = {json.dumps({**c, "n": QUICK["n"]}, sort_keys=True): None
                      for c in data.get("cases", [])}  # fmt: skip
            data["cases"] = [json.loads(c) for c in shrunk][: QUICK["cases"]]
            mushroom = {"horizon": QUICK["horizon"], "seeds": QUICK["seeds"]}
            data["mushroom"] = {**data.get("mushroom", {}), **mushroom}
        settings = read(data)
    except BanditConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    compile_cache.enable()
    out = Path(args.out or settings["output"])
    result = command("ridge_numerics", settings, out, args.workers, args.quiet)
    if isinstance(result, int):
        return result
    print((out / "summary.md").read_text())
    print(f"computed {len(result.computed)} cell(s), reused {len(result.reused)}")
    return 0


if __name__ == "__main__":
    run_command(lambda: main(sys.argv[1:]))
