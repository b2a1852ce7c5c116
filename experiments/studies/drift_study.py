"""Study: do the agents recover when the population's tastes drift?

Runs the agents of `experiments/configs/drift.toml` on `ContextualRec-Drift-v0`
(tastes rotate slowly, jump by a quarter turn at the shift steps, a weekly season,
new users) and on the same environment with every drift switched off, then plots
the per-step regret over time (a moving average, mean and 95% band over seeds) for
both, with the shift steps marked.

Recovery: for each shift step t_s, the pre-shift level is the mean per-step regret
over the `window` steps before t_s; the agent has recovered at the first t > t_s
at which the moving average over (t - window, t] is back within `tolerance` of
that level (relative). Regret is dynamic regret against the per-step oracle, so
an agent that never adapts stays above its pre-shift level.

    python -m experiments.studies.drift_study --out results/drift_study
    python -m experiments.studies.drift_study --quick --out /tmp/drift  # smoke run

Writes `summary.json`, `curves.npz` and `drift.png` to `--out`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import bandits
from bandits import metrics
from experiments.config.loader import (
    EnvConfig,
    ExperimentConfig,
    build,
    load_config,
    select_agents,
)

NO_DRIFT = {
    "drift_rotation": 0.0,
    "drift_shift_steps": (),
    "season_amplitude": 0.0,
    "new_user_rate": 0.0,
}


@dataclasses.dataclass(frozen=True)
class Args:
    """Command-line arguments of the drift study."""

    out: str = "results/drift_study"
    """Folder for summary.json, curves.npz and drift.png."""
    config: str = "drift"
    """A TOML config path or the name of a packaged config (env, agents, run)."""
    horizon: int | None = None
    """Rounds per run; default: the config's (10,000)."""
    seeds: int | None = None
    """Seeds per agent and condition; default: the config's (32)."""
    shift_steps: tuple[int, ...] | None = None
    """Steps of the abrupt taste shifts; default: the config's."""
    window: int = 250
    """Moving-average window (steps) of the per-step regret curves."""
    tolerance: float = 0.1
    """Relative distance to the pre-shift level that counts as recovered."""
    agents: tuple[str, ...] | None = None
    """Labels of the config's agents to run; default: all of them."""
    quick: bool = False
    """Tiny settings for a smoke run: 300 rounds, 2 seeds, a shift at 150."""


def parse_args(argv: Sequence[str] | None = None) -> Args:
    defaults = Args()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=defaults.out)
    parser.add_argument("--config", default=defaults.config)
    parser.add_argument("--horizon", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--shift-steps", type=int, nargs="*", default=None)
    parser.add_argument("--window", type=int, default=defaults.window)
    parser.add_argument("--tolerance", type=float, default=defaults.tolerance)
    parser.add_argument("--agents", nargs="+", default=None, metavar="LABEL")
    parser.add_argument("--quick", action="store_true")
    ns = parser.parse_args(argv)
    args = Args(
        out=ns.out,
        config=ns.config,
        horizon=ns.horizon,
        seeds=ns.seeds,
        shift_steps=None if ns.shift_steps is None else tuple(ns.shift_steps),
        window=ns.window,
        tolerance=ns.tolerance,
        agents=None if ns.agents is None else tuple(ns.agents),
        quick=ns.quick,
    )
    if args.quick:
        horizon = args.horizon or 300
        args = dataclasses.replace(
            args,
            horizon=horizon,
            seeds=args.seeds or 2,
            shift_steps=args.shift_steps or (horizon // 2,),
            window=min(args.window, horizon // 6),
        )
    return args


def with_env_params(config: ExperimentConfig, **params) -> ExperimentConfig:
    """The config with some env parameters replaced."""
    merged = {**config.env.params, **params}
    return dataclasses.replace(config, env=EnvConfig(config.env.id, merged))


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


def run_condition(
    config: ExperimentConfig, horizon: int, seeds: list[int], window: int
) -> dict[str, dict]:
    """Per-step regret curves (moving average, mean and 95% band) of every agent."""
    experiment = build(config)
    curves = {}
    for agent_config, agent in zip(config.agents, experiment.agents, strict=True):
        trajectory = bandits.run(
            experiment.env,
            agent,
            horizon=horizon,
            seeds=seeds,
            resample_params=config.run.resample_params,
        )
        regret = np.asarray(trajectory.regret, dtype=np.float64)  # (S, T)
        band = metrics.mean_band(moving_average(regret, window))
        final = metrics.mean_band(metrics.cumulative_regret(trajectory)[:, -1:])
        curves[agent_config.label] = {
            "mean_regret": regret.mean(axis=0),
            "band": band,
            "final": final,
        }
    return curves


def plot(results: dict, shifts: Sequence[int], window: int, path: Path) -> None:
    """Smoothed per-step regret over time, one panel per condition."""
    fig, axes = plt.subplots(1, len(results), figsize=(12, 4.2), sharey=True)
    for ax, (condition, curves) in zip(
        np.atleast_1d(axes), results.items(), strict=True
    ):
        for label, curve in curves.items():
            band = curve["band"]
            t = np.arange(1, band.mean.shape[0] + 1)
            line = ax.plot(t, band.mean, label=label, linewidth=1.2)
            ax.fill_between(
                t, band.low, band.high, color=line[0].get_color(), alpha=0.2, lw=0
            )
        if condition == "drift":
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
    config = select_agents(load_config(args.config), args.agents)
    if args.shift_steps is not None:
        config = with_env_params(config, drift_shift_steps=args.shift_steps)
    horizon = args.horizon or config.run.horizon
    seeds = list(range(args.seeds)) if args.seeds else list(config.run.seeds)
    conditions = {"no drift": with_env_params(config, **NO_DRIFT), "drift": config}
    for condition in conditions.values():  # check everything before any runs
        build(condition)
    shifts = tuple(build(config).env.drift_shift_steps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    results = {}
    for name, condition in conditions.items():
        results[name] = run_condition(condition, horizon, seeds, args.window)

    summary = []
    for name, curves in results.items():
        for label, curve in curves.items():
            recovered = recovery_steps(
                curve["band"].mean,
                curve["mean_regret"],
                shifts,
                args.window,
                args.tolerance,
            )
            row = {
                "condition": name,
                "agent": label,
                "final_regret_mean": float(curve["final"].mean[0]),
                "final_regret_low": float(curve["final"].low[0]),
                "final_regret_high": float(curve["final"].high[0]),
                "recovery_steps": recovered if name == "drift" else None,
                "seeds": len(seeds),
                "horizon": horizon,
            }
            summary.append(row)
            print(
                f"{name:<9} {label:<24} final regret {row['final_regret_mean']:9.1f} "
                f"95% [{row['final_regret_low']:9.1f}, {row['final_regret_high']:9.1f}]"
                + (f"  recovery after shifts {recovered}" if name == "drift" else ""),
                flush=True,
            )

    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    np.savez(
        out / "curves.npz",
        **{
            f"{name}/{label}": curve["band"].mean
            for name, curves in results.items()
            for label, curve in curves.items()
        },
    )
    plot(results, shifts, args.window, out / "drift.png")
    print(f"wrote {out / 'summary.json'} and {out / 'drift.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
