"""Study: do the agents recover when the population's tastes drift?

The study is a config, `experiments/configs/drift.toml`: the agents of the
context-value study on `ContextualRec-Drift-v0` (tastes rotate slowly, jump by a
quarter turn at the shift steps, a weekly season, new users) and on the same
environment with every drift switched off, as two named env settings, keeping
every step of every curve. It runs through the experiment platform like any
config (`bandits run experiments/configs/drift.toml`: resume, report).

This command adds what only this study needs, read back from the stored
curves: the per-step regret over time (a moving average, mean and 95% band over
seeds) for both settings with the shift steps marked (`drift.png`), and how long
each agent takes to recover from each shift (`summary.json`).

Recovery: for each shift step t_s, the pre-shift level is the mean per-step regret
over the `window` steps before t_s; the agent has recovered at the first t > t_s
at which the moving average over (t - window, t] is back within `tolerance` of
that level (relative). Regret is dynamic regret against the per-step oracle, so
an agent that never adapts stays above its pre-shift level.

    python -m experiments.studies.drift_study                   # results/drift
    python -m experiments.studies.drift_study --quick --out /tmp/drift  # smoke run
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from bandits import metrics
from bandits.validation import BanditConfigError
from experiments.cli import run_command
from experiments.config import checks
from experiments.config.loader import ExperimentConfig
from experiments.store import manifest, storage
from experiments.studies.common import run_study, write_summary

DRIFT = "drift"
"""The label of the env setting with drift (the others are baselines)."""
WINDOW = 250
TOLERANCE = 0.1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="results folder (default: the config's)")
    parser.add_argument("--config", default="drift")
    parser.add_argument("--horizon", type=checks.positive_option, help="rounds per run")
    parser.add_argument(
        "--seeds", type=checks.positive_option, help="seeds 0..N-1 per agent"
    )
    parser.add_argument(
        "--shift-steps",
        type=checks.positive_option,
        nargs="*",
        help="steps of the abrupt shifts",
    )
    parser.add_argument(
        "--window",
        type=checks.positive_option,
        default=WINDOW,
        help="moving-average window (steps)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=TOLERANCE,
        help="relative distance to the pre-shift level that counts as recovered",
    )
    parser.add_argument("--agents", nargs="+", metavar="LABEL")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 300 rounds, 2 seeds, a shift at 150",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    args = parser.parse_args(argv)
    if args.quick:
        args.horizon = args.horizon or 300
        args.seeds = args.seeds or 2
        args.shift_steps = args.shift_steps or [args.horizon // 2]
        args.window = min(args.window, args.horizon // 6)
    return args


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config changes the options ask for (validated with the config)."""
    run: dict[str, Any] = {}
    if args.horizon:  # every step is kept: the study reads per-step regret
        run.update(horizon=args.horizon, curve_points=args.horizon)
    if args.seeds:
        run["seeds"] = args.seeds
    out: dict[str, Any] = {"run": run} if run else {}
    if args.shift_steps is not None:
        out["env"] = {"params": {"drift_shift_steps": list(args.shift_steps)}}
    return out


def check(config: ExperimentConfig) -> tuple[int, ...]:
    """The drift setting's shift steps; refuses a config the study cannot read."""
    labels = [s.label for s in config.settings]
    if DRIFT not in labels:
        raise BanditConfigError(
            f"the study needs an env setting labelled {DRIFT!r}; the config has "
            f"{labels}"
        )
    if config.run.curve_points < config.run.horizon:
        raise BanditConfigError(
            f"run.curve_points ({config.run.curve_points}) must be at least the "
            f"horizon ({config.run.horizon}): the study reads every step's regret"
        )
    drift = config.settings[labels.index(DRIFT)]
    return tuple(drift.params.get("drift_shift_steps", ()))


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Mean over the trailing `window` steps (fewer at the start), along the last
    axis."""
    csum = np.cumsum(values, axis=-1)
    lagged = np.zeros_like(csum)
    lagged[..., window:] = csum[..., :-window]
    counts = np.minimum(np.arange(1, values.shape[-1] + 1), window)
    return (csum - lagged) / counts


def recovery_steps(
    curve: np.ndarray,
    regret: np.ndarray,
    shifts: Sequence[int],
    window: int,
    tol: float,
) -> list[int | None]:
    """Steps after each shift until the smoothed regret is back to its pre-shift
    level (None if it never is within the horizon).

    Args:
      curve: (T,) moving average of the mean per-step regret.
      regret: (T,) mean per-step regret.
      shifts: shift steps.
      window: the moving-average window.
      tol: relative tolerance.
    """
    out: list[int | None] = []
    for shift in shifts:
        if shift < window or shift >= len(regret):
            out.append(None)
            continue
        level = regret[shift - window : shift].mean()
        after = np.flatnonzero(curve[shift + window :] <= (1 + tol) * level)
        out.append(int(after[0] + window) if after.size else None)
    return out


def per_step_regret(curves: storage.Curves) -> np.ndarray:
    """(S, T) per-step regret from stored cumulative curves that keep every step."""
    steps = curves.steps
    if not np.array_equal(steps, np.arange(1, steps.size + 1)):
        raise BanditConfigError("the stored curves do not keep every step")
    return np.diff(curves.cumulative_regret, axis=-1, prepend=0.0)


def summarise(
    directory: Path, shifts: Sequence[int], window: int, tolerance: float
) -> tuple[list[dict[str, Any]], dict[str, dict[str, metrics.Band]]]:
    """The study's table and its smoothed curves, by env setting and agent."""
    stored = manifest.read(directory)
    curves = manifest.read_series_curves(directory, stored)
    rows: list[dict[str, Any]] = []
    bands: dict[str, dict[str, metrics.Band]] = {}
    for entry in stored.agents:
        regret = per_step_regret(curves[entry.label])
        band = metrics.mean_band(moving_average(regret, window))
        final = metrics.mean_band(curves[entry.label].cumulative_regret[:, -1:])
        recovered = (
            recovery_steps(band.mean, regret.mean(axis=0), shifts, window, tolerance)
            if entry.setting == DRIFT
            else None
        )
        bands.setdefault(entry.setting, {})[entry.agent_label] = band
        rows.append(
            {
                "condition": entry.setting,
                "agent": entry.agent_label,
                "final_regret_mean": float(final.mean[0]),
                "final_regret_low": float(final.low[0]),
                "final_regret_high": float(final.high[0]),
                "recovery_steps": recovered,
                "seeds": int(regret.shape[0]),
                "horizon": int(regret.shape[1]),
            }
        )
    return rows, bands


def plot(
    bands: Mapping[str, Mapping[str, metrics.Band]],
    shifts: Sequence[int],
    window: int,
    path: Path,
) -> None:
    """Smoothed per-step regret over time, one panel per env setting."""
    fig, axes = plt.subplots(1, len(bands), figsize=(12, 4.2), sharey=True)
    for ax, (condition, curves) in zip(np.atleast_1d(axes), bands.items(), strict=True):
        for label, band in curves.items():
            t = np.arange(1, band.mean.shape[0] + 1)
            line = ax.plot(t, band.mean, label=label, linewidth=1.2)
            ax.fill_between(
                t, band.low, band.high, color=line[0].get_color(), alpha=0.2, lw=0
            )
        if condition == DRIFT:
            for shift in shifts:
                ax.axvline(shift, color="black", linestyle="--", linewidth=0.8)
        ax.set_title(condition)
        ax.set_xlabel("step t")
        ax.grid(alpha=0.3)
    first = np.atleast_1d(axes)[0]
    first.set_ylabel(f"per-step regret ({window}-step moving average)")
    first.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    done = run_study(
        "experiments.studies.drift_study", args, argv, overrides(args), check
    )
    if done is None:
        return 2
    shifts, result = done.checked, done.result
    rows, bands = summarise(result.output, shifts, args.window, args.tolerance)
    for row in rows:
        print(
            f"{row['condition']:<9} {row['agent']:<24} final regret "
            f"{row['final_regret_mean']:9.1f} 95% [{row['final_regret_low']:9.1f}, "
            f"{row['final_regret_high']:9.1f}]"
            + (
                f"  recovery after shifts {row['recovery_steps']}"
                if row["recovery_steps"] is not None
                else ""
            )
        )
    write_summary(rows, result.output)
    plot(bands, shifts, args.window, result.output / "drift.png")
    print(f"wrote {result.output / 'summary.json'} and {result.output / 'drift.png'}")
    return 0


if __name__ == "__main__":
    run_command(lambda: main(sys.argv[1:]))
