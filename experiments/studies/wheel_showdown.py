"""Study: the wheel bandit table of the Deep Bayesian Bandits Showdown.

The study is a config, `experiments/configs/wheel_showdown.toml`: LinTS,
neural-linear, NeuralUCB, NeuralTS, ensemble sampling, the bootstrapped ensemble
and uniform play on `Wheel-v0`, with an `[env]` grid over the inner-disk radius
delta in {0.5, 0.7, 0.9, 0.95, 0.99}, horizon 80,000 and 10 trials (seeds 0..9).
It runs through the experiment platform like any config, so

    bandits run experiments/configs/wheel_showdown.toml

gives the same results, with the report. Every (agent, delta) pair is one task
whose chunk is stored as soon as it finishes, so a killed run loses at most the
chunks in flight and a rerun resumes.

This command adds what only this study needs: options for the deltas, horizon,
trials and agents, and the table of Riquelme, Tucker & Snoek (2018), printed with
their published neural-linear row beside ours and written to `summary.json`.
Normalisation: 100 * R_T / (T * u(delta)) per trial, with R_T the trial's
cumulative pseudo-regret (exact expected rewards) and u(delta) = 0.16 delta^2 +
39.16 (1 - delta^2) the closed-form expected regret per round of uniform play
(`envs.wheel.uniform_regret_per_step`); mean +/- standard error over trials.

    python -m experiments.studies.wheel_showdown       # results/wheel_showdown
    python -m experiments.studies.wheel_showdown --agents neural_linear \\
        --deltas 0.99 --out results/wheel_neural_linear
    python -m experiments.studies.wheel_showdown --quick --out /tmp/wheel
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from envs.wheel import uniform_regret_per_step
from experiments.cli import run_command
from experiments.config import checks
from experiments.store import manifest, storage
from experiments.studies.common import require_grid, run_study, write_summary

PARAMETER = "delta"
QUICK: dict[str, Any] = {"deltas": [0.5, 0.95], "horizon": 1_000, "trials": 2}
# Riquelme, Tucker & Snoek (2018), wheel bandit table (normalised cumulative
# regret w.r.t. uniform = 100), row NeuralLinear.
PUBLISHED_NEURAL_LINEAR = {0.5: 0.95, 0.7: 1.60, 0.9: 4.65, 0.95: 9.56, 0.99: 49.63}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="results folder (default: the config's)")
    parser.add_argument(
        "--config",
        default="wheel_showdown",
        help="a TOML config path or a packaged config name",
    )
    parser.add_argument(
        "--deltas",
        type=float,
        nargs="+",
        help="inner-disk radii in [0, 1] (default: the config's grid)",
    )
    parser.add_argument(
        "--horizon", type=checks.positive_option, help="rounds T per trial"
    )
    parser.add_argument(
        "--trials",
        type=checks.positive_option,
        help="trials (seeds 0..N-1) per agent and delta",
    )
    parser.add_argument("--agents", nargs="+", metavar="LABEL")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1,000 rounds, 2 trials, deltas 0.5 and 0.95",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    return parser.parse_args(argv)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config changes the options ask for (validated with the config).

    The trials of one (agent, delta) stay one compiled batch and one chunk, as
    in the config.
    """
    quick = QUICK if args.quick else {}
    deltas = args.deltas if args.deltas is not None else quick.get("deltas")
    horizon = args.horizon if args.horizon is not None else quick.get("horizon")
    trials = args.trials if args.trials is not None else quick.get("trials")
    out: dict[str, Any] = {}
    if deltas is not None:
        out["env"] = {"grid": {PARAMETER: list(deltas)}}
    run: dict[str, Any] = {}
    if horizon is not None:
        run["horizon"] = horizon
    if trials is not None:
        run.update(seeds=trials, chunk_size=trials)
    if run:
        out["run"] = run
    return out


def normalised_cell(
    agent: str, delta: float, regrets: np.ndarray, horizon: int
) -> dict[str, Any]:
    """One table cell: normalised regret per trial, its mean and standard error.

    Args:
      agent: the agent's label.
      delta: the inner-disk radius.
      regrets: (trials,) cumulative regret R_T of each trial.
      horizon: rounds T per trial.
    """
    normalised = 100.0 * regrets / (horizon * uniform_regret_per_step(delta))
    n = normalised.size
    return {
        "agent": agent,
        "delta": float(delta),
        "horizon": horizon,
        "trials": n,
        "normalised_mean": float(normalised.mean()),
        "normalised_se": float(normalised.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
        "normalised": [float(v) for v in normalised],
        "cumulative_regret": [float(v) for v in regrets],
        "published_neural_linear": PUBLISHED_NEURAL_LINEAR.get(float(delta)),
    }


def final_regrets(directory: Path) -> dict[str, tuple[int, np.ndarray]]:
    """Series label -> (horizon, cumulative regret R_T of each seed in seed order),
    from `summaries.jsonl`."""
    by_series: dict[str, list[Mapping[str, Any]]] = {}
    for record in storage.read_summaries(directory):
        if record.get("kind") == "seed":
            by_series.setdefault(record["agent"], []).append(record)
    out = {}
    for label, records in by_series.items():
        records = sorted(records, key=lambda r: r["seed"])
        regrets = np.asarray([r["final_regret"] for r in records], np.float64)
        out[label] = (int(records[0]["horizon"]), regrets)
    return out


def machine_text(machine: Mapping[str, Any]) -> str:
    """E.g. "x86_64 2 CPUs, jax 0.10.2 on cpu", from the manifest's machine."""
    return (
        f"{machine.get('machine')} {machine.get('cpu_count')} CPUs, jax "
        f"{machine.get('jax')} on {machine.get('backend')}"
    )


def table(directory: Path) -> list[dict[str, Any]]:
    """The study's cells, one per (agent, delta), in the config's order, from a
    results folder of the study."""
    stored = manifest.read(directory)
    regrets = final_regrets(directory)
    rows = []
    for entry in stored.agents:
        if PARAMETER not in entry.env_grid or entry.label not in regrets:
            continue
        horizon, values = regrets[entry.label]
        cell = normalised_cell(
            entry.agent_label, entry.env_grid[PARAMETER], values, horizon
        )
        cell["seconds"] = entry.cost.wall_time_s
        cell["machine"] = machine_text(stored.machine)
        rows.append(cell)
    return rows


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table: one row per agent, mean +/- s.e. per delta, then the
    published neural-linear row."""
    deltas = list(dict.fromkeys(r["delta"] for r in rows))
    cells = {(r["agent"], r["delta"]): r for r in rows}
    lines = [
        "| agent | " + " | ".join(f"delta={d}" for d in deltas) + " |",
        "|" + " --- |" * (len(deltas) + 1),
    ]
    for agent in dict.fromkeys(r["agent"] for r in rows):
        row = []
        for d in deltas:
            r = cells.get((agent, d))
            row.append(
                "-"
                if r is None
                else f"{r['normalised_mean']:.2f} +/- {r['normalised_se']:.2f}"
            )
        lines.append(f"| {agent} | " + " | ".join(row) + " |")
    published = [
        f"{PUBLISHED_NEURAL_LINEAR.get(float(d), float('nan')):.2f}" for d in deltas
    ]
    lines.append("| neural_linear (published) | " + " | ".join(published) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    done = run_study(
        "experiments.studies.wheel_showdown", args, argv, overrides(args),
        lambda config: require_grid(config, PARAMETER, "--deltas"),
    )  # fmt: skip
    if done is None:
        return 2
    rows = table(done.result.output)
    path = write_summary(rows, done.result.output)
    print(
        f"\nWheel bandit, normalised cumulative regret (uniform = 100), "
        f"T={done.config.run.horizon}, {len(done.config.run.seeds)} trials, "
        "mean +/- s.e.\n"
    )
    print(format_table(rows))
    print(f"\nwrote {path} and {done.result.report.html}")
    return 0


if __name__ == "__main__":
    run_command(lambda: main(sys.argv[1:]))
