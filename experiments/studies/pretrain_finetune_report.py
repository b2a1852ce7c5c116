"""Tables and plots of the pretrain/fine-tune study (`summary.md`, `regret.png`).

Rows (`results.jsonl`) are one per cell and agent
(`experiments.studies.pretrain_finetune_cells`); `diff_final` / `diff_early`
are the agent's regret minus the reference transformer's, per seed, with a
95% Student-t interval over seeds. The difference is paired: on the platform
seed s draws the same problem instance (and the same run key) for every agent
of a cell, so the per-seed differences remove the instance-to-instance spread.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np


def plot_env(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from experiments.report.plots import colours

    colour = colours([row["agent"] for row in rows])  # distinct beyond 10 agents
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for row in rows:
        steps = np.asarray(row["curve_steps"])
        for ax in axes:
            c = colour[row["agent"]]
            ax.plot(steps, row["curve_mean"], color=c, label=row["agent"])
            ax.fill_between(
                steps,
                row["curve_low"],
                row["curve_high"],
                color=c,
                alpha=0.2,
                linewidth=0,
            )
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_ylabel("cumulative regret")
        ax.grid(alpha=0.3)
    first = rows[0]
    name = first.get("cell", first["env"])
    fig.suptitle(f"{name} (mean and 95% band, {first['seeds']} seeds)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def band_text(band: Mapping[str, float], digits: int = 1) -> str:
    mean, low, high = (f"{band[k]:.{digits}f}" for k in ("mean", "low", "high"))
    return f"{mean} [{low}, {high}]"


def summary_markdown(rows: list[dict]) -> str:
    lines = []
    if len({_name(r) for r in rows}) > len({r["env"] for r in rows}):
        lines += grid_table(rows)
    for cell in dict.fromkeys(_name(r) for r in rows):
        mine = [r for r in rows if _name(r) == cell]
        first = mine[0]
        reference = first.get("reference")
        lines += [
            f"### {cell} (T = {first['horizon']}, {first['seeds']} seeds)",
            "",
            f"| agent | regret at T | regret at {first['early_steps']} | CTR | run s |"
            + (" regret at T minus the reference's (paired) |" if reference else ""),
            "|---|---|---|---|---|" + ("---|" if reference else ""),
        ]
        for r in sorted(mine, key=lambda r: r["final_regret"]["mean"]):
            lines.append(
                f"| {r['agent']} | {band_text(r['final_regret'])} | "
                f"{band_text(r['early_regret'])} | {band_text(r['ctr'], 3)} | "
                f"{r['run_seconds']} |" + (f" {_diff(r)} |" if reference else "")
            )
        if reference:
            lines += ["", f"Reference: {reference}."]
        held = [r for r in mine if r["held_out"]]
        if held:
            lines += [
                "",
                "Reward models on held-out logged events (before online learning):",
                "",
                "| model | accuracy | precision | recall | F1 | ROC-AUC | log-loss | "
                "MSE | MSE vs true CTR |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for r in held:
                m = r["held_out"]
                lines.append(
                    f"| {r['agent']} | {m['accuracy']:.3f} | {m['precision']:.3f} | "
                    f"{m['recall']:.3f} | {m['f1']:.3f} | {m['roc_auc']:.3f} | "
                    f"{m['log_loss']:.3f} | {m['mse']:.4f} | {m['mse_expected']:.4f} |"
                )
        lines.append("")
    return "\n".join(lines)


def _name(row: Mapping) -> str:
    return row.get("cell", row["env"])


def _diff(row: Mapping, key: str = "diff_final") -> str:
    band = row.get(key)
    return "(reference)" if band is None else band_text(band)


def grid_table(rows: list[dict]) -> list[str]:
    """One row per cell and agent: the grid point, the data size, the regret
    and the paired difference to the reference transformer."""
    first = rows[0]
    early = first["early_steps"]
    lines = [
        f"### All cells (T = {first['horizon']}, {first['seeds']} seeds; "
        f"differences: agent minus {first.get('reference')}, paired over seeds)",
        "",
        f"| env | setting | events | agent | regret at T | regret at {early} | "
        f"difference at T | difference at {early} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        setting = ", ".join(f"{k} = {v}" for k, v in r.get("setting", {}).items())
        lines.append(
            f"| {r['env']} | {setting} | {r.get('events', '')} | {r['agent']} | "
            f"{band_text(r['final_regret'])} | {band_text(r['early_regret'])} | "
            f"{_diff(r)} | {_diff(r, 'diff_early')} |"
        )
    return [*lines, ""]


def paired_band(values: np.ndarray) -> dict[str, float]:
    """Mean and 95% Student-t interval over seeds of per-seed values."""
    from bandits import metrics

    band = metrics.mean_band(np.asarray(values, dtype=np.float64)[:, None])
    return {
        "mean": float(band.mean[0]),
        "low": float(band.low[0]),
        "high": float(band.high[0]),
    }
