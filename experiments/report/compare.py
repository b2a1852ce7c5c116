"""Comparing two results folders: final regret per series, side by side.

For every series label present in both folders: the mean final cumulative regret
of each run with its two-sided 95% Student-t interval, the difference (B - A)
with a 95% interval, and whether the two runs' intervals overlap.

The interval of the difference is paired when both runs used the same env, the
same horizon, the same seeds and the same problem-instance rule (then seed s
saw the same contexts and rewards in both, and the per-seed differences are
what varies): mean(d) +/- t_{0.975, n-1} sd(d) / sqrt(n). Otherwise it is
Welch's interval for a difference of means, with the Welch-Satterthwaite degrees
of freedom.

References:
  Welch (1947), "The generalization of 'Student's' problem when several
  different population variances are involved", Biometrika 34(1/2).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bandits.metrics import mean_band, t_quantile
from bandits.validation import BanditConfigError
from experiments.store import manifest, storage
from experiments.store.manifest import Manifest

COMPARE_MD = "compare.md"
COMPARE_HTML = "compare.html"


class CompareRow(NamedTuple):
    """One series in both runs."""

    label: str
    seeds_a: int
    mean_a: float
    low_a: float
    high_a: float
    seeds_b: int
    mean_b: float
    low_b: float
    high_b: float
    difference: float  # mean_b - mean_a
    difference_low: float
    difference_high: float
    overlap: bool  # the two runs' intervals overlap


class Comparison(NamedTuple):
    """The comparison of two results folders."""

    title_a: str
    title_b: str
    rows: list[CompareRow]
    only_a: list[str]
    only_b: list[str]
    paired: bool
    notes: list[str]


def compare_results(
    dir_a: str | Path, dir_b: str | Path, confidence: float = 0.95
) -> Comparison:
    """Compares the final regret of the series two results folders share.

    Args:
      dir_a: the baseline results folder.
      dir_b: the results folder compared against it.
      confidence: coverage of every interval.

    Returns:
      A `Comparison`; rows in the order of `dir_a`'s summaries.
    """
    manifest_a = manifest.read(dir_a)
    manifest_b = manifest.read(dir_b)
    finals_a = _finals(dir_a)
    finals_b = _finals(dir_b)
    paired = _same_problem(manifest_a, manifest_b)
    notes = []
    horizon_a = manifest_a.horizon
    horizon_b = manifest_b.horizon
    if horizon_a != horizon_b:
        notes.append(
            f"The runs have different horizons ({horizon_a} and {horizon_b}): final "
            "regrets are at different rounds."
        )
    rows = []
    for label, (seeds_a, values_a) in finals_a.items():
        if label not in finals_b:
            continue
        seeds_b, values_b = finals_b[label]
        low_a, high_a = _interval(values_a, confidence)
        low_b, high_b = _interval(values_b, confidence)
        same_seeds = paired and list(seeds_a) == list(seeds_b)
        if same_seeds:
            d_low, d_high = _interval(values_b - values_a, confidence)
        else:
            d_low, d_high = _welch(values_a, values_b, confidence)
        rows.append(
            CompareRow(
                label,
                int(values_a.size),
                float(values_a.mean()),
                low_a,
                high_a,
                int(values_b.size),
                float(values_b.mean()),
                low_b,
                high_b,
                float(values_b.mean() - values_a.mean()),
                d_low,
                d_high,
                bool(low_a <= high_b and low_b <= high_a),
            )
        )
    if not rows:
        raise BanditConfigError(
            f"{dir_a} and {dir_b} share no series label; labels in A: "
            f"{', '.join(finals_a) or 'none'}; in B: {', '.join(finals_b) or 'none'}"
        )
    return Comparison(
        manifest_a.title or str(dir_a),
        manifest_b.title or str(dir_b),
        rows,
        [label for label in finals_a if label not in finals_b],
        [label for label in finals_b if label not in finals_a],
        paired,
        notes,
    )


def _finals(directory: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """label -> (seeds, final regrets) from the per-seed summary lines."""
    path = Path(directory) / storage.SUMMARIES
    if not path.is_file():
        raise BanditConfigError(f"{directory} holds no {storage.SUMMARIES}")
    by_label: dict[str, list[tuple[int, float]]] = {}
    for record in storage.read_summaries(path):
        if record.get("kind") == "seed":
            by_label.setdefault(str(record["agent"]), []).append(
                (int(record["seed"]), float(record["final_regret"]))
            )
    return {
        label: (
            np.asarray([s for s, _ in pairs], np.int64),
            np.asarray([v for _, v in pairs], np.float64),
        )
        for label, pairs in by_label.items()
    }


def _same_problem(a: Manifest, b: Manifest) -> bool:
    """Same env, horizon, seeds, problem-instance rule and seed keys (seeds see
    the same data)."""
    if a.env is None or b.env is None:
        return False
    keys = ("horizon", "seeds", "resample_params", "seed_key")
    return a.env == b.env and all(a.run.get(k) == b.run.get(k) for k in keys)


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The Student-t interval of the mean (`metrics.mean_band` of one column)."""
    band = mean_band(values, confidence)
    return float(band.low), float(band.high)


def _welch(a: np.ndarray, b: np.ndarray, confidence: float) -> tuple[float, float]:
    difference = float(b.mean() - a.mean())
    if a.size < 2 or b.size < 2:
        return difference, difference
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = np.sqrt(va + vb)
    if se == 0:
        return difference, difference
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(t_quantile(0.5 + confidence / 2, df) * se)
    return difference - half, difference + half


# ---------------------------------------------------------------------------
# Output


HEADER = [
    "Agent",
    "A: final regret",
    "A: 95% interval",
    "B: final regret",
    "B: 95% interval",
    "B - A",
    "B - A: 95% interval",
    "Intervals overlap",
]


def _g(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def table_cells(row: CompareRow) -> list[str]:
    """The display cells of one row (see `HEADER`)."""
    return [
        row.label,
        _g(row.mean_a),
        f"[{_g(row.low_a)}, {_g(row.high_a)}]",
        _g(row.mean_b),
        f"[{_g(row.low_b)}, {_g(row.high_b)}]",
        f"{row.difference:+.4g}",
        f"[{row.difference_low:+.4g}, {row.difference_high:+.4g}]",
        "yes" if row.overlap else "no",
    ]


def format_text(comparison: Comparison) -> str:
    """A plain-text table for the terminal."""
    cells = [HEADER, *(table_cells(r) for r in comparison.rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]
    lines = [
        f"A: {comparison.title_a}",
        f"B: {comparison.title_b}",
        _difference_note(comparison),
        "",
    ]
    for i, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += _others(comparison)
    return "\n".join(lines) + "\n"


def _difference_note(comparison: Comparison) -> str:
    kind = (
        "paired by seed (same env, horizon, seeds and problem instances)"
        if comparison.paired
        else "Welch (independent runs)"
    )
    return (
        "Final cumulative regret, mean and 95% Student-t interval across seeds; "
        f"B - A with a 95% interval, {kind}. " + " ".join(comparison.notes)
    ).strip()


def _others(comparison: Comparison) -> list[str]:
    lines = []
    if comparison.only_a:
        lines.append(f"Only in A: {', '.join(comparison.only_a)}")
    if comparison.only_b:
        lines.append(f"Only in B: {', '.join(comparison.only_b)}")
    return lines


def write_compare(comparison: Comparison, out: str | Path) -> tuple[Path, Path]:
    """Writes `compare.md` and `compare.html` (escaped, self-contained) into `out`."""
    out = Path(out)
    md = _markdown(comparison)
    page = _html(comparison)
    return (
        storage.atomic_write_text(out / COMPARE_MD, md),
        storage.atomic_write_text(out / COMPARE_HTML, page),
    )


def _md(text: Any) -> str:
    escaped = html.escape(str(text), quote=False)
    return re.sub(r"([\\`*_\[\]|#])", r"\\\1", escaped).replace("\n", " ")


def _markdown(comparison: Comparison) -> str:
    lines = [
        f"# Comparison: {_md(comparison.title_a)} (A) vs {_md(comparison.title_b)} (B)",
        "",
        _md(_difference_note(comparison)),
        "",
        "| " + " | ".join(HEADER) + " |",
        "|---|" + "---:|" * (len(HEADER) - 1),
    ]
    lines += [
        "| " + " | ".join(_md(c) for c in table_cells(r)) + " |"
        for r in comparison.rows
    ]
    lines.append("")
    lines += [_md(line) for line in _others(comparison)]
    return "\n".join(lines) + "\n"


def _html(comparison: Comparison) -> str:
    e = html.escape
    title = f"Comparison: {comparison.title_a} (A) vs {comparison.title_b} (B)"
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{e(c)}</td>" if i == 0 else f'<td class="num">{e(c)}</td>'
            for i, c in enumerate(table_cells(r))
        )
        + "</tr>"
        for r in comparison.rows
    )
    others = "".join(f"<p>{e(line)}</p>" for line in _others(comparison))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:64rem;margin:2rem auto;"
        "padding:0 1rem}table{border-collapse:collapse}th,td{border:1px solid #ccc;"
        "padding:.3rem .6rem}td.num{text-align:right}th{background:#f3f3f3}"
        "</style></head><body>"
        f"<h1>{e(title)}</h1><p>{e(_difference_note(comparison))}</p>"
        "<table><thead><tr>"
        + "".join(f"<th>{e(h)}</th>" for h in HEADER)
        + f"</tr></thead><tbody>{rows}</tbody></table>{others}</body></html>\n"
    )


def labels(rows: Sequence[CompareRow]) -> list[str]:
    """The labels of `rows`, in order."""
    return [r.label for r in rows]
