"""Study: how much is context worth, and which agent exploits it?

The study is a config, `experiments/configs/context_value.toml`: context-aware
LinUCB, context-blind LinUCB, popularity and random on `ContextualRec-v0`, with
an `[env]` grid over the context strength s (the scale of the context effect in
the click model, see `docs/recommendation_env.md`). It runs through the
experiment platform like any config, so

    bandits run experiments/configs/context_value.toml

gives the same results, with resume and the report, whose sensitivity plot
(`sensitivity-env-context_strength.png`) is final cumulative regret against s
with 95% Student-t bands across seeds. At s = 0 the context carries no
information, so the context-aware agent can only match the blind one; as s
grows, the blind agent's regret grows and the gap is the value of context.

This command adds what only this study needs: options for the grid, horizon,
seeds and agents, and the table of final regret by agent and strength
(`summary.json`, `summary.csv`, printed as in docs/recommendation_env.md).

    python -m experiments.studies.context_value               # results/context_value
    python -m experiments.studies.context_value --quick --out /tmp/context_value
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.cli import run_command
from experiments.config import checks
from experiments.store import manifest, storage
from experiments.studies.common import require_grid, run_study, write_summary

PARAMETER = "context_strength"
QUICK: dict[str, Any] = {"strengths": [0.0, 1.0], "horizon": 200, "seeds": 2}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="results folder (default: the config's)")
    parser.add_argument(
        "--config",
        default="context_value",
        help="a TOML config path or a packaged config name",
    )
    parser.add_argument(
        "--strengths",
        type=float,
        nargs="+",
        help="context strengths in [0, 1] (default: the config's grid)",
    )
    parser.add_argument("--horizon", type=checks.positive_option, help="rounds per run")
    parser.add_argument(
        "--seeds", type=checks.positive_option, help="seeds 0..N-1 per agent and s"
    )
    parser.add_argument("--agents", nargs="+", metavar="LABEL")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 200 rounds, 2 seeds, strengths 0 and 1",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    return parser.parse_args(argv)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config changes the options ask for (validated with the config)."""
    quick = QUICK if args.quick else {}
    strengths = args.strengths or quick.get("strengths")
    horizon = args.horizon or quick.get("horizon")
    seeds = args.seeds or quick.get("seeds")
    out: dict[str, Any] = {}
    if strengths:
        out["env"] = {"grid": {PARAMETER: list(strengths)}}
    run = {k: v for k, v in (("horizon", horizon), ("seeds", seeds)) if v}
    if run:
        out["run"] = run
    return out


def table(directory: Path) -> list[dict[str, Any]]:
    """Final regret (mean, 95% interval) by context strength and agent, from a
    results folder of the study."""
    stored = manifest.read(directory)
    rows = []
    for record in storage.read_summaries(directory):
        if record.get("kind") != "agent":
            continue
        entry = stored.entry(record["agent"])
        if entry is None or PARAMETER not in entry.env_grid:
            continue
        rows.append(
            {
                PARAMETER: entry.env_grid[PARAMETER],
                "agent": entry.agent_label,
                "final_regret_mean": record["final_regret_mean"],
                "final_regret_low": record["final_regret_low"],
                "final_regret_high": record["final_regret_high"],
                "seeds": record["seeds"],
                "horizon": record["horizon"],
            }
        )
    return rows


def write_table(rows: Sequence[Mapping[str, Any]], out: Path) -> None:
    write_summary(rows, out)
    with open(out / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def print_table(rows: Sequence[Mapping[str, Any]]) -> None:
    strengths = sorted({r[PARAMETER] for r in rows})
    print("| agent | " + " | ".join(f"s = {s:g}" for s in strengths) + " |")
    print("|---|" + "---|" * len(strengths))
    for agent in dict.fromkeys(r["agent"] for r in rows):
        cells = {r[PARAMETER]: r for r in rows if r["agent"] == agent}
        print(
            f"| {agent} | "
            + " | ".join(
                f"{cells[s]['final_regret_mean']:.0f} "
                f"[{cells[s]['final_regret_low']:.0f}, "
                f"{cells[s]['final_regret_high']:.0f}]"
                for s in strengths
            )
            + " |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    done = run_study(
        "experiments.studies.context_value", args, argv, overrides(args),
        lambda config: require_grid(config, PARAMETER, "--strengths"),
    )  # fmt: skip
    if done is None:
        return 2
    rows = table(done.result.output)
    write_table(rows, done.result.output)
    print_table(rows)
    print(f"wrote {done.result.output / 'summary.json'} and {done.result.report.html}")
    return 0


if __name__ == "__main__":
    run_command(lambda: main(sys.argv[1:]))
