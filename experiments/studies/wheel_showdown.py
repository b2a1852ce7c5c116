"""Study: the wheel bandit table of the Deep Bayesian Bandits Showdown.

Normalised cumulative regret (uniform play = 100) on `Wheel-v0` for
delta in {0.5, 0.7, 0.9, 0.95, 0.99}, horizon 80,000 and >= 10 trials, mean +/-
standard error over trials, for LinTS, neural-linear, NeuralUCB, NeuralTS, ensemble
sampling and uniform play, with the published neural-linear row of Riquelme, Tucker
& Snoek (2018) printed beside ours.

Normalisation: 100 * R_T / (T * u(delta)) per trial, with R_T the trial's
cumulative pseudo-regret (exact expected rewards) and u(delta) = 0.16 delta^2 +
39.16 (1 - delta^2) the closed-form expected regret per round of uniform play
(`envs.wheel.uniform_regret_per_step`). All deltas of one agent run as one program,
vmapped over delta and trials.

    python -m experiments.studies.wheel_showdown       # full protocol
    python -m experiments.studies.wheel_showdown --agents neural_linear --deltas 0.99
    python -m experiments.studies.wheel_showdown --quick --out /tmp/wheel.jsonl

Results are appended to `--out` (JSON Lines, one record per agent and delta) after
each agent finishes; a rerun skips the (agent, delta, horizon, trials) cells
already there, so a killed run resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import agents
import bandits
from bandits.validation import BanditConfigError, positive_int, real
from envs.wheel import WheelParams, uniform_regret_per_step, wheel

DELTAS = (0.5, 0.7, 0.9, 0.95, 0.99)
AGENTS = (
    "lints",
    "neural_linear",
    "neural_ucb",
    "neural_ts",
    "ensemble_sampling",
    "bootstrapped_ensemble",
    "uniform",
)
# Riquelme, Tucker & Snoek (2018), wheel bandit table (normalised cumulative
# regret w.r.t. uniform = 100), row NeuralLinear.
PUBLISHED_NEURAL_LINEAR = {0.5: 0.95, 0.7: 1.60, 0.9: 4.65, 0.95: 9.56, 0.99: 49.63}


@dataclasses.dataclass(frozen=True)
class Args:
    """Command-line arguments of the wheel study."""

    out: str = "results/wheel_showdown.jsonl"
    """JSON Lines file the per-(agent, delta) records are appended to."""
    deltas: tuple[float, ...] = DELTAS
    """Inner-disk radii delta."""
    horizon: int = 80_000
    """Rounds per trial T."""
    trials: int = 10
    """Independent trials (seeds 0..trials-1) per agent and delta."""
    agents: tuple[str, ...] = AGENTS
    """Agents to run, from `AGENTS`."""
    quick: bool = False
    """Smoke settings: 1,000 rounds, 2 trials, deltas 0.5 and 0.95."""


def make_agent(name: str) -> bandits.Agent:
    """The agents with the hyperparameters used for the wheel table."""
    shape = {"num_arms": 5, "dim": 2}
    if name == "lints":
        return agents.lints(**shape, v=0.5)
    if name == "neural_linear":
        # Riquelme et al. (2018): one hidden layer of 50, retrain every 50 rounds
        # with 100 steps of 512 rows, a0 = b0 = 6, lambda = 0.25, 2 initial pulls.
        return agents.make("neural_linear", **shape)
    if name == "neural_ucb":
        return agents.make("neural_ucb", **shape, nu=1.0)
    if name == "neural_ts":
        return agents.make("neural_ts", **shape, nu=1.0)
    if name in ("ensemble_sampling", "bootstrapped_ensemble"):
        return agents.make(name, **shape, num_models=10)
    if name == "uniform":
        return agents.random(**shape)
    raise BanditConfigError(
        f"unknown agent {name!r}; choose from {', '.join(map(repr, AGENTS))}"
    )


def run_agent(name: str, deltas: Sequence[float], horizon: int, trials: int):
    """Cumulative regret (len(deltas), trials) of one agent, one compiled program."""
    env = wheel()
    agent = make_agent(name)
    keys = jnp.stack([jax.random.key(seed) for seed in range(trials)])
    params = WheelParams(delta=jnp.asarray(deltas, jnp.float32))

    def one(delta_params, key):
        trajectory = bandits.simulate(key, env, delta_params, agent, horizon)
        return jnp.sum(trajectory.regret)

    program = jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None)))
    return np.asarray(program(params, keys), dtype=np.float64)


def summarise(name, delta, regrets, horizon, seconds) -> dict:
    """One table cell: normalised regret per trial, mean and standard error."""
    normalised = 100.0 * regrets / (horizon * uniform_regret_per_step(delta))
    n = normalised.size
    return {
        "agent": name,
        "delta": float(delta),
        "horizon": horizon,
        "trials": n,
        "normalised_mean": float(normalised.mean()),
        "normalised_se": float(normalised.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
        "normalised": [float(v) for v in normalised],
        "cumulative_regret": [float(v) for v in regrets],
        "published_neural_linear": PUBLISHED_NEURAL_LINEAR.get(float(delta)),
        "seconds": seconds,
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, jax "
        f"{jax.__version__} on {jax.default_backend()}",
    }


def load_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def append_records(path: Path, records: list[dict]) -> None:
    """Rewrites the file with the new records added (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in [*load_records(path), *records]]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def format_table(records: list[dict], deltas: Sequence[float]) -> str:
    """Markdown table: one row per agent, mean +/- s.e. per delta."""
    header = "| agent | " + " | ".join(f"delta={d}" for d in deltas) + " |"
    lines = [header, "|" + " --- |" * (len(deltas) + 1)]
    cells: dict[tuple[str, float], dict] = {}
    for r in records:
        cells[(r["agent"], r["delta"])] = r
    names = [a for a in AGENTS if any(k[0] == a for k in cells)]
    for name in names:
        row = []
        for d in deltas:
            r = cells.get((name, float(d)))
            row.append(
                "-"
                if r is None
                else f"{r['normalised_mean']:.2f} +/- {r['normalised_se']:.2f}"
            )
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    published = [
        f"{PUBLISHED_NEURAL_LINEAR.get(float(d), float('nan')):.2f}" for d in deltas
    ]
    lines.append("| neural_linear (published) | " + " | ".join(published) + " |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> Args:
    defaults = Args()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=defaults.out)
    parser.add_argument("--deltas", type=float, nargs="+", default=None)
    parser.add_argument("--horizon", type=int, default=None)
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--agents", nargs="+", default=None, choices=AGENTS)
    parser.add_argument("--quick", action="store_true")
    ns = parser.parse_args(argv)
    quick = Args(horizon=1_000, trials=2, deltas=(0.5, 0.95))
    base = quick if ns.quick else defaults
    args = Args(
        out=ns.out,
        deltas=tuple(ns.deltas) if ns.deltas else base.deltas,
        horizon=ns.horizon or base.horizon,
        trials=ns.trials or base.trials,
        agents=tuple(ns.agents) if ns.agents else base.agents,
        quick=ns.quick,
    )
    positive_int("horizon", args.horizon)
    positive_int("trials", args.trials)
    for d in args.deltas:
        real("deltas", d, low=0.0, high=1.0)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    done = {
        (r["agent"], r["delta"], r["horizon"], r["trials"]) for r in load_records(out)
    }
    for name in args.agents:
        todo = [
            d for d in args.deltas if (name, d, args.horizon, args.trials) not in done
        ]
        if not todo:
            continue
        start = time.perf_counter()
        regrets = run_agent(name, todo, args.horizon, args.trials)
        seconds = time.perf_counter() - start
        records = [
            summarise(name, d, regrets[i], args.horizon, seconds)
            for i, d in enumerate(todo)
        ]
        append_records(out, records)
        for r in records:
            print(
                f"{name:18s} delta={r['delta']:<5} {r['normalised_mean']:8.2f} +/- "
                f"{r['normalised_se']:.2f}  ({seconds:.0f} s for all deltas)",
                flush=True,
            )
    wanted = [
        r
        for r in load_records(out)
        if r["horizon"] == args.horizon
        and r["trials"] == args.trials
        and r["agent"] in args.agents
    ]
    print(
        f"\nWheel bandit, normalised cumulative regret (uniform = 100), "
        f"T={args.horizon}, {args.trials} trials, mean +/- s.e.\n"
    )
    print(format_table(wanted, args.deltas))
    return 0


if __name__ == "__main__":
    sys.exit(main())
