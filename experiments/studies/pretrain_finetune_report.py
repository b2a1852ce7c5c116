"""Tables and plots of the pretrain/fine-tune study (`summary.md`, `regret.png`).

Rows (`results.jsonl`) are one per cell and agent
(`experiments.studies.pretrain_finetune_cells`); `diff_final` / `diff_early`
are the agent's regret minus the reference transformer's, per seed, with a
95% Student-t interval over seeds. The difference is paired: on the platform
seed s draws the same problem instance (and the same run key) for every agent
of a cell, so the per-seed differences remove the instance-to-instance spread.

Over a grid of cells (env settings x data sizes) the report adds the phase
diagram (`phase.png` and a table: where the reference transformer wins, ties or
loses against each other agent) and the regret against data size
(`scaling_events.png`); a cell with pretrained transformers of several sizes
adds the regret against parameter count (`scaling_parameters.png`).
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


VERDICTS = ("wins", "ties", "loses")
"""The reference transformer against another agent at T: `wins` when the
interval of (agent minus reference) lies above 0, `loses` when below, else
`ties`."""


def verdict(diff: Mapping[str, float]) -> str:
    if diff["low"] > 0:
        return "wins"
    if diff["high"] < 0:
        return "loses"
    return "ties"


def target_met(rows: list[dict], margin: float = 0.1) -> bool:
    """Whether the reference's regret at T is at least `margin` (relative)
    below every other agent's of the cell, with non-overlapping 95% intervals."""
    reference = next(r for r in rows if r["agent"] == r["reference"])
    mine = reference["final_regret"]
    others = [r["final_regret"] for r in rows if r is not reference]
    return bool(others) and all(
        mine["mean"] <= (1.0 - margin) * o["mean"] and mine["high"] < o["low"]
        for o in others
    )


def _setting_text(row: Mapping) -> str:
    return ", ".join(f"{k} = {v}" for k, v in row.get("setting", {}).items())


def phase_table(rows: list[dict]) -> list[str]:
    """Per setting and data size: the reference's verdict against each other
    agent, with the paired difference at T (agent minus reference) and the
    reference's regret relative to the agent's; * marks cells that meet the
    10% target (`target_met`)."""
    first = rows[0]
    reference = first.get("reference")
    others = [a for a in dict.fromkeys(r["agent"] for r in rows) if a != reference]
    lines = [
        f"### Phase diagram: {reference} against each agent at T = "
        f"{first['horizon']} ({first['seeds']} seeds)",
        "",
        "Each entry: the reference transformer wins / ties / loses, the paired "
        "difference (agent minus transformer) with its 95% interval, and the "
        "transformer's regret relative to the agent's. * : the transformer is at "
        "least 10% below every agent with non-overlapping intervals.",
        "",
        "| setting | events | " + " | ".join(others) + " |",
        "|---|---|" + "---|" * len(others),
    ]
    for cell in dict.fromkeys(_name(r) for r in rows):
        mine = {r["agent"]: r for r in rows if _name(r) == cell}
        ref = mine.get(reference)
        if ref is None:
            continue
        entries = []
        for agent in others:
            row = mine.get(agent)
            if row is None or "diff_final" not in row:
                entries.append("")
                continue
            rel = ref["final_regret"]["mean"] / row["final_regret"]["mean"] - 1.0
            entries.append(
                f"{verdict(row['diff_final'])} {band_text(row['diff_final'])} "
                f"({rel:+.0%})"
            )
        star = " *" if target_met(list(mine.values())) else ""
        lines.append(
            f"| {_setting_text(ref)}{star} | {ref.get('events', '')} | "
            + " | ".join(entries)
            + " |"
        )
    return [*lines, ""]


def plot_phase(rows: list[dict], path: Path) -> None:
    """One panel per other agent: settings (rows) x data sizes (columns),
    coloured by the reference's verdict, annotated with the relative regret."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    reference = rows[0].get("reference")
    others = [a for a in dict.fromkeys(r["agent"] for r in rows) if a != reference]
    keys = list(dict.fromkeys(k for r in rows for k in r.get("setting", {})))
    settings = list(dict.fromkeys(_setting_values(r) for r in rows))
    sizes = sorted({r.get("events") or 0 for r in rows})
    refs = {
        (_setting_values(r), r.get("events") or 0): r
        for r in rows
        if r["agent"] == reference
    }
    fig, axes = plt.subplots(
        1,
        len(others),
        figsize=(2.0 + 1.6 * len(sizes) * len(others), 1.4 + 0.55 * len(settings)),
        squeeze=False,
        sharey=True,
    )
    cmap = ListedColormap(["#81c784", "#e0e0e0", "#e57373"])  # wins, ties, loses
    for ax, agent in zip(axes[0], others, strict=True):
        grid = np.full((len(settings), len(sizes)), np.nan)
        for r in rows:
            key = (_setting_values(r), r.get("events") or 0)
            if r["agent"] != agent or "diff_final" not in r or key not in refs:
                continue
            i, j = settings.index(key[0]), sizes.index(key[1])
            grid[i, j] = VERDICTS.index(verdict(r["diff_final"]))
            rel = refs[key]["final_regret"]["mean"] / r["final_regret"]["mean"] - 1
            text = f"{verdict(r['diff_final'])}\n{rel:+.0%}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
        ax.imshow(grid, cmap=cmap, vmin=0, vmax=2, aspect="auto")
        ax.set_xticks(range(len(sizes)), [f"{s:,}" for s in sizes], fontsize=7)
        ax.set_yticks(range(len(settings)), settings, fontsize=8)
        ax.set_xlabel("logged events")
        ax.set_title(f"vs {agent}", fontsize=9)
    axes[0][0].set_ylabel(", ".join(keys), fontsize=8)
    fig.suptitle(
        f"{reference}: wins / ties / loses at T (95% paired), "
        "its regret relative to the agent's",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _setting_values(row: Mapping) -> str:
    return ", ".join(f"{v}" for v in row.get("setting", {}).values())


def plot_scaling(rows: list[dict], path: Path, x: str = "events") -> None:
    """Regret at T (mean, 95% interval) against `x` ("events" or
    "parameters"), one panel per setting; agents without `x` (the linear and
    small neural agents against parameter count) are drawn as bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from experiments.report.plots import colours

    settings = list(dict.fromkeys(_setting_text(r) for r in rows))
    agents = list(dict.fromkeys(r["agent"] for r in rows))
    colour = colours(agents)
    ncols = min(len(settings), 2)
    nrows = -(-len(settings) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(5.0 * ncols + 1, 3.6 * nrows), squeeze=False
    )
    for ax in axes.flat[len(settings) :]:
        ax.set_visible(False)
    for ax, setting in zip(axes.flat[: len(settings)], settings, strict=True):
        mine = [r for r in rows if _setting_text(r) == setting]
        if x == "parameters":
            sized = sorted(
                (r for r in mine if r.get("parameters")), key=lambda r: r["parameters"]
            )
            xs = [r["parameters"] for r in sized]
            _regret_bars(ax, xs, sized, "black", "transformer")
            for r in mine:
                if r.get("parameters") or not xs:
                    continue
                b, c = r["final_regret"], colour[r["agent"]]
                ax.axhline(b["mean"], color=c, label=r["agent"])
                ax.axhspan(b["low"], b["high"], color=c, alpha=0.15, linewidth=0)
        else:
            for agent in agents:
                line = sorted(
                    (r for r in mine if r["agent"] == agent),
                    key=lambda r: r.get(x) or 0,
                )
                _regret_bars(ax, [r.get(x) for r in line], line, colour[agent], agent)
        ax.set_xscale("log")
        ax.set_xlabel("logged events" if x == "events" else "transformer parameters")
        ax.set_ylabel(f"regret at T = {rows[0]['horizon']}")
        ax.set_title(setting or rows[0]["env"], fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _regret_bars(ax, xs, rows: list[dict], colour, label: str) -> None:
    """Regret at T of `rows` at `xs`: means joined, 95% intervals as bars."""
    bands = [r["final_regret"] for r in rows]
    means = [b["mean"] for b in bands]
    spread = [
        [b["mean"] - b["low"] for b in bands],
        [b["high"] - b["mean"] for b in bands],
    ]
    ax.errorbar(
        xs, means, yerr=spread, marker="o", capsize=3, color=colour, label=label
    )


def write_figures(rows: list[dict], out: Path) -> list[str]:
    """The grid and scaling figures that `rows` support; their file names."""
    written = []
    cells = {_name(r) for r in rows}
    if len(cells) > 1 and any("diff_final" in r for r in rows):
        plot_phase(rows, out / "phase.png")
        written.append("phase.png")
    if len({r.get("events") for r in rows}) > 1:
        plot_scaling(rows, out / "scaling_events.png", x="events")
        written.append("scaling_events.png")
    sizes = {r.get("parameters") for r in rows if r.get("parameters")}
    if len(sizes) > 1:
        plot_scaling(rows, out / "scaling_parameters.png", x="parameters")
        written.append("scaling_parameters.png")
    return written


def band_text(band: Mapping[str, float], digits: int = 1) -> str:
    mean, low, high = (f"{band[k]:.{digits}f}" for k in ("mean", "low", "high"))
    return f"{mean} [{low}, {high}]"


def summary_markdown(rows: list[dict]) -> str:
    lines = []
    if len({_name(r) for r in rows}) > len({r["env"] for r in rows}):
        lines += grid_table(rows)
        if any("diff_final" in r for r in rows):
            lines += phase_table(rows)
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
            size = f" ({r['parameters']:,} parameters)" if r.get("parameters") else ""
            lines.append(
                f"| {r['agent']}{size} | {band_text(r['final_regret'])} | "
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
        lines.append(
            f"| {r['env']} | {_setting_text(r)} | {r.get('events', '')} | "
            f"{r['agent']} | "
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
