"""Study: how much is context worth, and which agent exploits it?

Runs the agents of `experiments/configs/context_value.toml` (context-aware LinUCB,
context-blind LinUCB, popularity, random) on `ContextualRec-v0` at several context
strengths s (the scale of the context effect in the click model, see
`docs/recommendation_env.md`) and plots the final cumulative regret against s with
95% Student-t bands across seeds. At s = 0 the context carries no information, so
the context-aware agent can only match the blind one; as s grows, the blind agent's
regret grows and the gap is the value of context.

    python -m experiments.studies.context_value --out results/context_value_sweep
    # smoke run
    python -m experiments.studies.context_value --quick --out /tmp/context_value

Writes `summary.json`, `summary.csv` and `context_value.png` to `--out`.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import bandits
from bandits import metrics
from experiments.config.loader import (
    EnvConfig,
    ExperimentConfig,
    build,
    load_config,
    select_agents,
)


@dataclasses.dataclass(frozen=True)
class Args:
    """Command-line arguments of the context-value study."""

    out: str = "results/context_value_sweep"
    """Folder for summary.json, summary.csv and context_value.png."""
    config: str = "context_value"
    """A TOML config path or the name of a packaged config (env, agents, run)."""
    strengths: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    """Context strengths s in [0, 1] to sweep."""
    horizon: int | None = None
    """Rounds per run; default: the config's (10,000)."""
    seeds: int | None = None
    """Seeds per agent and strength; default: the config's (32)."""
    agents: tuple[str, ...] | None = None
    """Labels of the config's agents to run; default: all of them."""
    quick: bool = False
    """Tiny settings for a smoke run: 200 rounds, 2 seeds, strengths 0 and 1."""


def parse_args(argv: Sequence[str] | None = None) -> Args:
    defaults = Args()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=defaults.out)
    parser.add_argument("--config", default=defaults.config)
    parser.add_argument(
        "--strengths", type=float, nargs="+", default=list(defaults.strengths)
    )
    parser.add_argument("--horizon", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--agents", nargs="+", default=None, metavar="LABEL")
    parser.add_argument("--quick", action="store_true")
    ns = parser.parse_args(argv)
    args = Args(
        out=ns.out,
        config=ns.config,
        strengths=tuple(ns.strengths),
        horizon=ns.horizon,
        seeds=ns.seeds,
        agents=None if ns.agents is None else tuple(ns.agents),
        quick=ns.quick,
    )
    if args.quick:
        args = dataclasses.replace(
            args,
            strengths=(0.0, 1.0),
            horizon=args.horizon or 200,
            seeds=args.seeds or 2,
        )
    return args


def at_strength(config: ExperimentConfig, strength: float) -> ExperimentConfig:
    """The config with `context_strength` set in its env parameters."""
    params = {**config.env.params, "context_strength": strength}
    return dataclasses.replace(config, env=EnvConfig(config.env.id, params))


def run_point(
    config: ExperimentConfig, strength: float, horizon: int, seeds: list[int]
) -> list[dict]:
    """Final cumulative regret (mean and 95% band over seeds) of every agent."""
    experiment = build(at_strength(config, strength))
    rows = []
    for agent_config, agent in zip(config.agents, experiment.agents, strict=True):
        start = time.perf_counter()
        trajectory = bandits.run(
            experiment.env,
            agent,
            horizon=horizon,
            seeds=seeds,
            resample_params=config.run.resample_params,
        )
        final = metrics.cumulative_regret(trajectory)[:, -1]
        band = metrics.mean_band(final[:, None])
        rows.append(
            {
                "context_strength": strength,
                "agent": agent_config.label,
                "final_regret_mean": float(band.mean[0]),
                "final_regret_low": float(band.low[0]),
                "final_regret_high": float(band.high[0]),
                "seeds": len(seeds),
                "horizon": horizon,
                "seconds": round(time.perf_counter() - start, 2),
            }
        )
        print(
            f"s={strength:<5g} {agent_config.label:<24} final regret "
            f"{band.mean[0]:9.1f}  95% [{band.low[0]:9.1f}, {band.high[0]:9.1f}]",
            flush=True,
        )
    return rows


def plot(rows: list[dict], path: Path) -> None:
    """Final regret against context strength, one line and band per agent."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label in dict.fromkeys(row["agent"] for row in rows):
        mine = sorted(
            (r for r in rows if r["agent"] == label),
            key=lambda r: r["context_strength"],
        )
        s = [r["context_strength"] for r in mine]
        line = ax.plot(
            s, [r["final_regret_mean"] for r in mine], marker="o", label=label
        )
        ax.fill_between(
            s,
            [r["final_regret_low"] for r in mine],
            [r["final_regret_high"] for r in mine],
            color=line[0].get_color(),
            alpha=0.2,
            linewidth=0,
        )
    first = rows[0]
    ax.set_xlabel("context strength s")
    ax.set_ylabel(f"cumulative regret at T = {first['horizon']}")
    ax.set_title(f"Value of context (mean and 95% band, {first['seeds']} seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_summary(rows: list[dict], out: Path) -> None:
    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    with open(out / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = select_agents(load_config(args.config), args.agents)
    horizon = args.horizon or config.run.horizon
    seeds = list(range(args.seeds)) if args.seeds else list(config.run.seeds)
    for strength in args.strengths:  # every point is checked before any runs
        build(at_strength(config, strength))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rows = []
    for strength in args.strengths:
        rows += run_point(config, strength, horizon, seeds)

    write_summary(rows, out)
    plot(rows, out / "context_value.png")
    print(f"wrote {out / 'summary.json'} and {out / 'context_value.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
