"""Study: cumulative regret of neural bandits on UCI classification bandits.

Runs LinUCB, NeuralUCB, NeuralTS and neural-linear on `Classification-v0` for the
mushroom, shuttle, adult and MAGIC telescope datasets (one arm per class, reward 1
for the right class, so cumulative regret counts mistakes), T = 10,000 rounds,
`--trials` seeds each with its own row order, and prints mean +/- standard error
beside the NeuralTS paper's numbers.

Reference (printed as "unverified"): Zhang, Zhou, Li & Gu (2021), "Neural Thompson
sampling", ICLR, Table 2, NeuralTS row: adult 1.76e3, magic 2.01e3, mushroom 115,
shuttle 232. These values could not be checked against the paper itself here; they
match a third-party leaderboard's attribution to the paper, which also gives
T = 10,000 for adult and shuttle and T = 8,124 (the dataset size) for mushroom. We
report mushroom at both 8,124 and 10,000 rounds. The paper's features, encoding and
tuning differ from ours (it tunes each agent by grid search), so the comparison is
indicative only.

    python -m experiments.studies.uci_neural                        # full run
    python -m experiments.studies.uci_neural --datasets mushroom --agents linucb
    python -m experiments.studies.uci_neural --quick --out /tmp/uci.jsonl  # smoke

Results are appended to `--out` (JSON Lines, one record per dataset and agent) as
each finishes; a rerun skips the cells already there.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

import agents
import bandits
import envs
from agents import neural
from bandits.validation import BanditConfigError, positive_int
from envs.classification import fingerprint
from experiments.studies.wheel_showdown import append_records, load_records

DATASETS = ("mushroom", "shuttle", "adult", "magic")
AGENTS = ("linucb", "neural_ucb", "neural_ts", "neural_linear")
# Zhang et al. (2021), Table 2, NeuralTS (unverified here, see module docstring).
REFERENCE_NEURAL_TS = {
    "adult": 1.76e3,
    "magic": 2.01e3,
    "mushroom": 115.0,
    "shuttle": 232.0,
}
REFERENCE_HORIZON = {
    "adult": 10_000,
    "magic": 10_000,
    "mushroom": 8_124,
    "shuttle": 10_000,
}


@dataclasses.dataclass(frozen=True)
class Args:
    """Command-line arguments of the UCI study."""

    out: str = "results/uci_neural.jsonl"
    """JSON Lines file the per-(dataset, agent) records are appended to."""
    datasets: tuple[str, ...] = DATASETS
    """Datasets to run, from `DATASETS`."""
    agents: tuple[str, ...] = AGENTS
    """Agents to run, from `AGENTS`."""
    horizon: int = 10_000
    """Rounds per trial T."""
    trials: int = 10
    """Seeds (0..trials-1) per dataset and agent."""
    scaling: str = "standardize"
    """Feature scaling of `Classification-v0` ("standardize" or "unit_norm")."""
    quick: bool = False
    """Smoke settings: mushroom only, 300 rounds, 2 trials."""


def make_agent(name: str, num_arms: int, dim: int) -> bandits.Agent:
    """The agents with the hyperparameters used for the table."""
    network = dict(hidden_sizes=(100,), train_every=50, train_steps=50, batch_size=64)
    if name == "linucb":
        return agents.linucb(num_arms=num_arms, dim=dim, alpha=1.0)
    if name == "neural_ucb":
        return neural.neural_ucb(num_arms=num_arms, dim=dim, nu=0.1, **network)
    if name == "neural_ts":
        return neural.neural_ts(num_arms=num_arms, dim=dim, nu=0.1, **network)
    if name == "neural_linear":
        return neural.neural_linear(
            num_arms=num_arms, dim=dim, hidden_sizes=(100,), train_every=50,
            train_steps=50, batch_size=64,
        )  # fmt: skip
    raise BanditConfigError(
        f"unknown agent {name!r}; choose from {', '.join(map(repr, AGENTS))}"
    )


def run_cell(dataset: str, name: str, args: Args) -> dict:
    env, params = envs.make("Classification-v0", dataset=dataset, scaling=args.scaling)
    agent = make_agent(name, env.num_arms, env.dim)
    start = time.perf_counter()
    trajectory = bandits.run(
        env, agent, horizon=args.horizon, seeds=args.trials, params=params
    )
    cumulative = np.cumsum(np.asarray(trajectory.regret, np.float64), axis=1)
    seconds = time.perf_counter() - start
    final = cumulative[:, -1]
    n = final.size
    record = {
        "dataset": dataset,
        "agent": name,
        "horizon": args.horizon,
        "trials": n,
        "scaling": args.scaling,
        "regret_mean": float(final.mean()),
        "regret_se": float(final.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
        "regret": [float(v) for v in final],
        "reference_neural_ts": REFERENCE_NEURAL_TS[dataset],
        "reference_horizon": REFERENCE_HORIZON[dataset],
        "reference_verified": False,
        "rows": env.num_rows,
        "fingerprint": fingerprint(dataset),
        "seconds": seconds,
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, jax "
        f"{jax.__version__} on {jax.default_backend()}",
    }
    at = REFERENCE_HORIZON[dataset]
    if at < args.horizon:
        early = cumulative[:, at - 1]
        record["regret_at_reference_horizon_mean"] = float(early.mean())
        record["regret_at_reference_horizon_se"] = (
            float(early.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
        )
    return record


def format_table(records: list[dict], datasets: Sequence[str]) -> str:
    lines = [
        "| agent | " + " | ".join(datasets) + " |",
        "|" + " --- |" * (len(datasets) + 1),
    ]
    cells = {(r["agent"], r["dataset"]): r for r in records}
    for name in AGENTS:
        if not any((name, d) in cells for d in datasets):
            continue
        row = []
        for d in datasets:
            r = cells.get((name, d))
            if r is None:
                row.append("-")
                continue
            text = f"{r['regret_mean']:.0f} +/- {r['regret_se']:.0f}"
            if "regret_at_reference_horizon_mean" in r:
                text += (
                    f" ({r['regret_at_reference_horizon_mean']:.0f} at "
                    f"T={r['reference_horizon']})"
                )
            row.append(text)
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    reference = [
        f"{REFERENCE_NEURAL_TS[d]:.4g} (T={REFERENCE_HORIZON[d]})" for d in datasets
    ]
    lines.append(
        "| NeuralTS, Zhang et al. 2021 (unverified) | " + " | ".join(reference) + " |"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> Args:
    defaults = Args()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=defaults.out)
    parser.add_argument("--datasets", nargs="+", default=None, choices=DATASETS)
    parser.add_argument("--agents", nargs="+", default=None, choices=AGENTS)
    parser.add_argument("--horizon", type=int, default=None)
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--scaling", default=defaults.scaling)
    parser.add_argument("--quick", action="store_true")
    ns = parser.parse_args(argv)
    base = Args(datasets=("mushroom",), horizon=300, trials=2) if ns.quick else defaults
    args = Args(
        out=ns.out,
        datasets=tuple(ns.datasets) if ns.datasets else base.datasets,
        agents=tuple(ns.agents) if ns.agents else base.agents,
        horizon=ns.horizon or base.horizon,
        trials=ns.trials or base.trials,
        scaling=ns.scaling,
        quick=ns.quick,
    )
    positive_int("horizon", args.horizon)
    positive_int("trials", args.trials)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    key = ("dataset", "agent", "horizon", "trials", "scaling")
    done = {tuple(r[k] for k in key) for r in load_records(out)}
    for dataset in args.datasets:
        for name in args.agents:
            cell = (dataset, name, args.horizon, args.trials, args.scaling)
            if cell in done:
                continue
            record = run_cell(dataset, name, args)
            append_records(out, [record])
            print(
                f"{dataset:9s} {name:14s} {record['regret_mean']:9.1f} +/- "
                f"{record['regret_se']:.1f}  ({record['seconds']:.0f} s)",
                flush=True,
            )
    wanted = [
        r
        for r in load_records(out)
        if (r["horizon"], r["trials"], r["scaling"])
        == (args.horizon, args.trials, args.scaling)
    ]
    print(
        f"\nUCI bandits, cumulative regret at T={args.horizon}, {args.trials} trials, "
        f"mean +/- s.e. ({args.scaling} features)\n"
    )
    print(format_table(wanted, args.datasets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
