"""Study: slate agents under each click model, and what knowing the click model buys.

The study is a config: `experiments/configs/slates.toml` (`LinearSlate-v0`,
every slate agent), `slates_rec.toml` (`ContextualRecSlate-v0`, the ridge slate
agents on the candidates' features) or `cascading_bandits.toml`
(`BernoulliSlate-v0`, the synthetic problem of Kveton et al. 2015), each with
one named env setting per click model or problem size. It runs through the
experiment platform like any config (`bandits run CONFIG`, with resume and the
report); this command adds what only this study needs:

* `slate_regret.png` in the results folder: cumulative slate regret against
  t, mean and 95% Student-t band over seeds, one panel per env setting (the
  platform's `regret.png` draws every series in one panel);
* the table of final regret (mean, 95% interval) by agent and setting, and the
  gain of every agent over the baseline (top-L LinUCB, the position-blind
  ridge agent): final regret of the baseline minus the agent's, paired by seed
  (the same seed is the same problem instance and the same users for both),
  mean and 95% Student-t interval, and as a share of the baseline's regret
  (`summary.json`, and `summary.md` as printed).

    python -m experiments.studies.slates                          # results/slates
    python -m experiments.studies.slates --config slates_rec
    python -m experiments.studies.slates --config cascading_bandits
    python -m experiments.studies.slates --config slate_transformer --early 500
    python -m experiments.studies.slates --quick --out /tmp/slates

`--early N` adds each agent's regret over the first rounds: at the last stored
step at or before N (the curves are stored at a subset of the steps; the table
names the step).
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
from experiments.config.schema import ExperimentConfig
from experiments.store import manifest, storage
from experiments.studies.common import run_study, write_summary

BASELINE = "top_l_linucb"
POSITION_AWARE = (
    "cascade_linucb",
    "cascade_lints",
    "cascade_ucb1",
    "cascade_klucb",
    "pbm_ucb",
)
QUICK = {"horizon": 100, "seeds": 2}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="results folder (default: the config's)")
    parser.add_argument(
        "--config",
        default="slates",
        help="a TOML config path or a packaged config name (slates, slates_rec, "
        "cascading_bandits, slate_transformer)",
    )
    parser.add_argument(
        "--early",
        type=checks.positive_option,
        metavar="N",
        help="also tabulate the regret over the first N rounds",
    )
    parser.add_argument("--horizon", type=checks.positive_option, help="rounds per run")
    parser.add_argument(
        "--seeds",
        type=checks.positive_option,
        help="seeds 0..N-1 per agent and setting",
    )
    parser.add_argument("--agents", nargs="+", metavar="LABEL")
    parser.add_argument(
        "--settings",
        nargs="+",
        metavar="LABEL",
        help="keep only these env settings (e.g. cascade)",
    )
    parser.add_argument(
        "--baseline",
        default=BASELINE,
        help=f"registry name of the agent gains are measured against ({BASELINE})",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 100 rounds, 2 seeds"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    return parser.parse_args(argv)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config changes the options ask for (validated with the config)."""
    quick = QUICK if args.quick else {}
    run = {
        key: value
        for key, value in (
            ("horizon", args.horizon or quick.get("horizon")),
            ("seeds", args.seeds or quick.get("seeds")),
        )
        if value
    }
    return {"run": run} if run else {}


def keep_settings(
    config: ExperimentConfig, labels: Sequence[str] | None
) -> dict[str, Any]:
    """The `env.settings` override keeping the named settings (none: all)."""
    if not labels:
        return {}
    known = [setting.label for setting in config.settings]
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise BanditConfigError(
            f"unknown env setting(s) {', '.join(map(repr, unknown))}; the config "
            f"has {', '.join(map(repr, known))}"
        )
    if not config.env.settings:
        raise BanditConfigError("--settings needs a config with named [env] settings")
    kept = [
        {"label": named.label, "params": _plain(named.params)}
        for named in config.env.settings
        if named.label in labels
    ]
    return {"env": {"settings": kept}}


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    """Frozen config values back as TOML-like values (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def check(config: ExperimentConfig) -> None:
    """The study compares slate agents: the env must show slates."""
    from experiments.config.loader import make_env

    env = make_env(config.env.id, config.settings[0].params)
    if getattr(env, "slate_size", None) is None:
        raise BanditConfigError(
            f"the study needs a slate env; {config.env.id!r} shows single items"
        )


def summarise(
    directory: Path, baseline: str = BASELINE, early: int | None = None
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The study's rows and the curves behind its plot, by setting and agent.

    Each row: setting, agent, registry name, whether it models positions, final
    regret (mean, 95% interval), and, where the setting has the `baseline`
    agent, the paired gain over it (baseline minus agent, mean and 95%
    interval over the seeds both ran; share of the baseline's mean regret).
    """
    stored = manifest.read(directory)
    curves = manifest.read_series_curves(directory, stored)
    entries = [e for e in stored.agents if e.label in curves]
    base = {e.setting: curves[e.label] for e in entries if e.name == baseline}
    rows: list[dict[str, Any]] = []
    bands: dict[str, dict[str, Any]] = {}
    for entry in entries:
        series = curves[entry.label]
        band = metrics.mean_band(series.cumulative_regret)
        bands.setdefault(entry.setting, {})[entry.agent_label] = (series.steps, band)
        final = series.cumulative_regret[:, -1]
        final_band = metrics.mean_band(final[:, None])
        row: dict[str, Any] = {
            "setting": entry.setting,
            "agent": entry.agent_label,
            "name": entry.name,
            "position_aware": entry.name in POSITION_AWARE,
            "final_regret_mean": float(final_band.mean[0]),
            "final_regret_low": float(final_band.low[0]),
            "final_regret_high": float(final_band.high[0]),
            "seeds": int(final.shape[0]),
            "horizon": int(series.steps[-1]),
            "gain_mean": None,
            "gain_low": None,
            "gain_high": None,
            "gain_share": None,
        }
        if early is not None:
            row.update(_regret_at(series, early))
        reference = base.get(entry.setting)
        if reference is not None and entry.name != baseline:
            row.update(_paired_gain(reference, series))
        rows.append(row)
    return rows, bands


def _regret_at(series: storage.Curves, step: int) -> dict[str, Any]:
    """Regret (mean, 95% interval) at the last stored step at or before `step`."""
    stored = np.flatnonzero(series.steps <= step)
    if stored.size == 0:
        return {}
    at = stored[-1]
    band = metrics.mean_band(series.cumulative_regret[:, at : at + 1])
    return {
        "early_step": int(series.steps[at]),
        "early_regret_mean": float(band.mean[0]),
        "early_regret_low": float(band.low[0]),
        "early_regret_high": float(band.high[0]),
    }


def _paired_gain(reference: storage.Curves, series: storage.Curves) -> dict[str, Any]:
    """Baseline final regret minus the agent's, over the seeds both ran."""
    common, ref_rows, rows = np.intersect1d(
        reference.seeds, series.seeds, return_indices=True
    )
    if common.size == 0:
        return {}
    base_final = reference.cumulative_regret[ref_rows, -1]
    difference = base_final - series.cumulative_regret[rows, -1]
    band = metrics.mean_band(difference[:, None])
    mean_base = float(base_final.mean())
    return {
        "gain_mean": float(band.mean[0]),
        "gain_low": float(band.low[0]),
        "gain_high": float(band.high[0]),
        "gain_share": float(band.mean[0]) / mean_base if mean_base > 0 else None,
    }


def plot(bands: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    """Cumulative regret against t, mean and 95% band, one panel per setting."""
    count = len(bands)
    columns = min(count, 3)
    rows_ = -(-count // columns)
    fig, axes = plt.subplots(
        rows_, columns, figsize=(4.4 * columns, 3.8 * rows_), squeeze=False
    )
    for ax, (setting, curves) in zip(axes.flat, bands.items(), strict=False):
        for label, (steps, band) in curves.items():
            line = ax.plot(steps, band.mean, label=label, linewidth=1.2)
            ax.fill_between(
                steps, band.low, band.high, color=line[0].get_color(), alpha=0.2, lw=0
            )
        ax.set_title(setting or "all")
        ax.set_xlabel("round t")
        ax.grid(alpha=0.3)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel("cumulative slate regret")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown tables: final regret by agent and setting, the regret at the
    early step where rows have it, and the gains (a config without named
    settings has one column, "all")."""
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    cell = {(r["agent"], r["setting"]): r for r in rows}

    def table(agents_: Sequence[str], value, marker=lambda agent: "") -> list[str]:
        lines = ["| agent | " + " | ".join(s or "all" for s in settings) + " |"]
        lines.append("|---|" + "---:|" * len(settings))
        for agent in agents_:
            values = [value(cell.get((agent, setting))) for setting in settings]
            lines.append(f"| {agent}{marker(agent)} | " + " | ".join(values) + " |")
        return lines

    def band(prefix: str):
        def value(r: Mapping[str, Any] | None) -> str:
            if r is None or r.get(f"{prefix}_mean") is None:
                return ""
            low, high = r[f"{prefix}_low"], r[f"{prefix}_high"]
            return f"{r[f'{prefix}_mean']:.1f} [{low:.1f}, {high:.1f}]"

        return value

    def gain(r: Mapping[str, Any] | None) -> str:
        if r is None or r["gain_mean"] is None:
            return ""
        share = r["gain_share"]
        share_text = f" ({100 * share:+.0f}%)" if share is not None else ""
        return (
            f"{r['gain_mean']:+.1f} [{r['gain_low']:+.1f}, "
            f"{r['gain_high']:+.1f}]{share_text}"
        )

    every = list(dict.fromkeys(r["agent"] for r in rows))
    lines = table(every, band("final_regret"))
    steps = sorted({r["early_step"] for r in rows if r.get("early_step") is not None})
    if steps:
        lines += ["", f"Regret at t = {', '.join(map(str, steps))}:", ""]
        lines += table(every, band("early_regret"))
    gains = [r for r in rows if r["gain_mean"] is not None]
    if gains:
        lines += [
            "",
            "Gain over the baseline (its final regret minus the agent's):",
            "",
        ]
        lines += table(
            list(dict.fromkeys(r["agent"] for r in gains)),
            gain,
            lambda agent: " *" if cell_position_aware(gains, agent) else "",
        )
        lines += ["", "\\* models positions (cascade or PBM)."]
    return "\n".join(lines)


def cell_position_aware(rows: Sequence[Mapping[str, Any]], agent: str) -> bool:
    return any(r["position_aware"] for r in rows if r["agent"] == agent)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.early is not None and args.early < 1:
        print(f"error: --early must be >= 1, got {args.early}", file=sys.stderr)
        return 2
    changes = overrides(args)
    if args.settings:
        from experiments.config.loader import load_config

        try:
            changes |= keep_settings(load_config(args.config), args.settings)
        except BanditConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    done = run_study("experiments.studies.slates", args, argv, changes, check)
    if done is None:
        return 2
    output = done.result.output
    rows, bands = summarise(output, args.baseline, args.early)
    write_summary(rows, output)
    plot(bands, output / "slate_regret.png")
    text = markdown(rows)
    storage.atomic_write_text(output / "summary.md", text + "\n")
    print(text)
    print(f"wrote {output / 'summary.json'}, {output / 'slate_regret.png'}")
    return 0


if __name__ == "__main__":
    run_command(lambda: main(sys.argv[1:]))
