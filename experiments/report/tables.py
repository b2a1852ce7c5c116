"""The tables of an experiment's report (`experiments.report.render`): regret
ranked with 95% intervals, failed series, cost (compile and run time, memory),
slate click rates and NDCG, reward-model prediction metrics; each a `Table` of
strings that the Markdown and HTML writers lay out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from experiments.store.manifest import Manifest, SeriesEntry

PREDICTION_METRICS = (
    ("mse", "MSE"),
    ("best_arm_accuracy", "Best-arm accuracy"),
    ("accuracy", "Accuracy"),
    ("recall", "Recall"),
    ("f1", "F1"),
    ("roc_auc", "ROC-AUC"),
    ("log_loss", "Log-loss"),
)


class Table(NamedTuple):
    title: str
    note: str
    header: list[str]
    rows: list[list[str]]
    text_columns: tuple[int, ...]  # columns holding user text (others numbers)


def num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _fmt(value: Any, digits: int = 4) -> str:
    value = num(value)
    if value is None:
        return "–"
    return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"


def _mib(value: Any) -> str:
    value = num(value)
    return "–" if value is None else f"{value / 2**20:,.0f}"


def _ranked(order: Sequence[str], aggregates, entries) -> list[tuple[int | None, str]]:
    """(rank, label) sorted by setting, then mean final regret; competition ranks
    (1, 2, 2, 4) within each env setting; series without a summary last."""
    by_setting: dict[Any, list[tuple[float, str]]] = {}
    missing = []
    for label in order:
        mean = num(aggregates.get(label, {}).get("final_regret_mean"))
        if mean is None:
            missing.append(label)
            continue
        entry = entries.get(label)
        setting = entry.setting_index if entry else 0
        by_setting.setdefault(setting, []).append((mean, label))
    out: list[tuple[int | None, str]] = []
    for rows in by_setting.values():
        rows.sort(key=lambda row: row[0])
        previous, rank = None, 0
        for i, (mean, label) in enumerate(rows):
            rank = rank if mean == previous else i + 1
            previous = mean
            out.append((rank, label))
    return out + [(None, label) for label in missing]


def regret_table(order, aggregates, entries) -> Table:
    settings = {e.setting for e in entries.values() if e.setting}
    note = (
        "Mean over seeds with a two-sided 95% Student-t interval; rank 1 has the "
        "lowest mean regret"
        + (" within its env setting." if len(settings) > 1 else ".")
        + " Optimal fraction and mean reward are over all rounds and seeds."
    )
    rows = []
    for rank, label in _ranked(order, aggregates, entries):
        r = aggregates.get(label, {})
        low, high = num(r.get("final_regret_low")), num(r.get("final_regret_high"))
        interval = (
            "–" if low is None or high is None else f"[{_fmt(low)}, {_fmt(high)}]"
        )
        rows.append(
            [
                str(rank) if rank is not None else "–",
                label,
                _fmt(r.get("final_regret_mean")),
                interval,
                _fmt(r.get("optimal_fraction"), 3),
                _fmt(r.get("mean_reward"), 3),
                str(r["seeds"]) if isinstance(r.get("seeds"), int) else "–",
            ]
        )
    header = [
        "Rank",
        "Agent",
        "Final regret (mean)",
        "95% interval",
        "Optimal fraction",
        "Mean reward",
        "Seeds",
    ]
    return Table("Final cumulative regret", note, header, rows, (1,))


def failed_table(manifest: Manifest) -> Table:
    note = (
        "The agent state of these series became NaN or infinite, so they have no "
        "results here; the other series ran to the end. Step: the 0-based round "
        "whose update first left a NaN or inf in the state of the first bad seed. "
        "A rerun of the same config retries them."
    )
    rows = [
        [
            f.label,
            "–" if f.seed is None else str(f.seed),
            "–" if f.step is None else str(f.step),
            ", ".join(map(str, f.seeds)) or "–",
            str(f.chunk),
        ]
        for f in manifest.failed
    ]
    header = ["Agent", "First bad seed", "Step", "Bad seeds", "Chunk"]
    return Table("Failed series", note, header, rows, (0, 3))


def cost_table(order, aggregates, entries) -> Table:
    note = (
        "Compile s: the longest compile of the series' program in one worker "
        "(each worker process compiles once; swept settings share one program). "
        "Run s: simulation time summed over chunks, compile excluded. Rounds/s: "
        "simulated rounds (seeds x horizon, x G for a sweep of G settings) per "
        "second of run time in one worker. Peak memory: the worker process's "
        "largest resident set size while a chunk ran (sampled every 5 ms); "
        "increase: that peak minus the resident size when the chunk started."
    )
    rows = []
    for label in order:
        r = aggregates.get(label, {})
        if not any(k in r for k in ("rounds_per_s", "compile_time_s")):
            continue
        rows.append(
            [
                label,
                str(r.get("program") or program(entries.get(label)) or "–"),
                str(r["chunks"]) if isinstance(r.get("chunks"), int) else "–",
                _fmt(r.get("compile_time_s"), 3),
                _fmt(r.get("run_time_s"), 3),
                _fmt(r.get("rounds_per_s"), 3),
                _mib(r.get("peak_memory_bytes")),
                _mib(r.get("memory_increase_bytes")),
            ]
        )
    header = [
        "Agent",
        "Program",
        "Chunks",
        "Compile s",
        "Run s",
        "Rounds/s",
        "Peak memory MiB",
        "Increase MiB",
    ]
    return Table("Compute cost", note, header, rows, (0, 1))


def slate_aggregates(order, aggregates) -> dict[str, Mapping[str, Any]]:
    """The slate summaries (`storage.slate_summary`) of the slate series, in
    display order; empty for a single-item experiment."""
    out = {}
    for label in order:
        slate = aggregates.get(label, {}).get("slate")
        if isinstance(slate, Mapping):
            out[label] = slate
    return out


def _interval(band: Any, index: int | None = None) -> str:
    """`mean [low, high]` of a stored band (one position's, with `index`)."""
    if not isinstance(band, Mapping):
        return "–"
    names = ("mean", "low", "high")
    try:
        mean, low, high = (band[k] if index is None else band[k][index] for k in names)
    except (KeyError, IndexError, TypeError):
        return "–"
    return f"{_fmt(mean, 3)} [{_fmt(low, 3)}, {_fmt(high, 3)}]"


def slate_table(slates: Mapping[str, Mapping[str, Any]]) -> Table:
    positions = max(int(num(s.get("positions")) or 0) for s in slates.values())
    note = (
        "Slate series: the sampled click rate of every position (clicks per round "
        "at that position, averaged over the run), and NDCG@L of the played slate "
        "against the ideal one (attraction gains, discounts 1 / log2(l + 1)), "
        "averaged over the run; mean across seeds [95% interval]."
    )
    rows = []
    for label, slate in slates.items():
        cells = [label]
        cells += [_interval(slate.get("click_rate"), i) for i in range(positions)]
        cells += [_interval(slate.get("ndcg")), str(slate.get("seeds", "–"))]
        rows.append(cells)
    header = ["Agent", *(f"Click rate @{i + 1}" for i in range(positions))]
    header += [f"NDCG@{positions}", "Seeds"]
    return Table("Slates: click rate per position and NDCG", note, header, rows, (0,))


def prediction_table(order, aggregates) -> Table:
    note = (
        "Agents with a reward model (`predict`), evaluated after the last round on "
        "fresh held-out contexts (mean over the evaluated seeds, ± the 95% "
        "interval half-width). MSE: estimates against the exact expected rewards. "
        "Best-arm accuracy: the highest estimate is an optimal arm. With 0/1 "
        "rewards (Bernoulli clicks) the estimates are also scored as click "
        "predictions against one sampled click per arm: accuracy, recall and F1 "
        "at threshold 0.5, ROC-AUC, log-loss; for real-valued rewards these are "
        "not defined (–)."
    )
    rows = []
    for label in order:
        prediction = aggregates.get(label, {}).get("prediction")
        if not isinstance(prediction, Mapping):
            continue
        metrics = prediction.get("metrics") or {}
        cells = [label, str(prediction.get("reward_type", "–"))]
        for key, _ in PREDICTION_METRICS:
            m = metrics.get(key)
            if not isinstance(m, Mapping):
                cells.append("–")
                continue
            half = (num(m.get("high")) or 0.0) - (num(m.get("mean")) or 0.0)
            cells.append(f"{_fmt(m.get('mean'), 3)} ± {_fmt(half, 2)}")
        seeds = [
            int(m["seeds"])
            for m in metrics.values()
            if isinstance(m, Mapping) and isinstance(m.get("seeds"), int)
        ]
        cells.append(str(max(seeds)) if seeds else "–")
        rows.append(cells)
    header = ["Agent", "Rewards", *(name for _, name in PREDICTION_METRICS), "Seeds"]
    return Table("Reward-model metrics (held-out contexts)", note, header, rows, (0, 1))


def program(entry: SeriesEntry | None) -> str | None:
    return entry.program if entry else None
