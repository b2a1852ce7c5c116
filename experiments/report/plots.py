"""The report's plots as PNG bytes (matplotlib's Agg canvas, no global state).

Curves show the mean across seeds with a shaded two-sided 95% Student-t band
(`bandits.metrics.mean_band`), one colour per series. Sensitivity plots show the
mean final cumulative regret against one swept value with its 95% interval.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bandits.metrics import mean_band
from experiments.store import storage


class SensitivityLine(NamedTuple):
    """Final regret of one family of series against one swept value."""

    label: str
    values: list[Any]  # the swept values, in grid order
    mean: list[float]
    low: list[float]
    high: list[float]


def colours(labels: Sequence[str]) -> dict[str, Any]:
    """One colour per series: tab10 up to 10 series, tab20 beyond (cycled)."""
    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def _figure() -> tuple[Figure, Any]:
    fig = Figure(figsize=(7.5, 4.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def plot_label(label: str) -> str:
    """A label safe from matplotlib: no mathtext (`$...$`), and shown even when it
    starts with "_" (matplotlib leaves such labels out of legends; a zero-width
    space in front keeps it, invisibly)."""
    label = label.replace("$", r"\$")
    return "\u200b" + label if label.startswith("_") else label


def _legend(ax, count: int, loc: str) -> None:
    if count:
        ax.legend(loc=loc, fontsize="small" if count <= 12 else "x-small")


def regret_plot(
    curves: Mapping[str, storage.Curves], colour: Mapping[str, Any], loglog: bool
) -> bytes:
    """Cumulative regret, mean and 95% band per series (linear or log-log axes)."""
    fig, ax = _figure()
    for label, c in curves.items():
        band = mean_band(c.cumulative_regret)
        x = c.steps.astype(np.float64)
        if loglog:  # log axes cannot show zero regret
            keep = band.mean > 0
            x, band = x[keep], type(band)(*(v[keep] for v in band))
            band = band._replace(low=np.maximum(band.low, band.mean * 1e-3))
        ax.plot(x, band.mean, color=colour[label], label=plot_label(label), lw=1.6)
        ax.fill_between(x, band.low, band.high, color=colour[label], alpha=0.2, lw=0)
    if loglog:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title("Cumulative regret, log-log (slope 1 = linear regret)")
    else:
        ax.set_title("Cumulative regret (mean and 95% interval across seeds)")
    ax.set_xlabel("round t")
    ax.set_ylabel("cumulative pseudo-regret")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, len(curves), "upper left")
    return _png(fig)


def optimal_plot(
    curves: Mapping[str, storage.Curves], colour: Mapping[str, Any]
) -> bytes:
    """Running fraction of optimal actions, mean and 95% band per series."""
    fig, ax = _figure()
    for label, c in curves.items():
        band = mean_band(c.optimal_fraction)
        ax.plot(
            c.steps, band.mean, color=colour[label], label=plot_label(label), lw=1.6
        )
        ax.fill_between(
            c.steps,
            np.clip(band.low, 0, 1),
            np.clip(band.high, 0, 1),
            color=colour[label],
            alpha=0.2,
            lw=0,
        )
    ax.set_title("Fraction of rounds 1..t with an optimal arm (mean and 95% interval)")
    ax.set_xlabel("round t")
    ax.set_ylabel("fraction optimal")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    _legend(ax, len(curves), "lower right")
    return _png(fig)


def sensitivity_plot(key: str, lines: Sequence[SensitivityLine]) -> bytes:
    """Mean final regret (95% interval) against the values of `key`, one line per
    family.

    Numeric values go on a numeric axis (logarithmic when all are positive and
    span a factor of 20 or more); anything else on evenly spaced categories.
    """
    fig, ax = _figure()
    numeric = all(
        isinstance(v, int | float) and not isinstance(v, bool)
        for line in lines
        for v in line.values
    )
    categories: list[str] = []
    if not numeric:
        for line in lines:
            for v in line.values:
                if str(v) not in categories:
                    categories.append(str(v))
    colour = colours([line.label for line in lines])
    for line in lines:
        if numeric:
            x = np.asarray(line.values, np.float64)
        else:
            x = np.asarray([categories.index(str(v)) for v in line.values], np.float64)
        order = np.argsort(x)
        x = x[order]
        mean, low, high = (np.asarray(v, np.float64)[order] for v in line[2:])
        c = colour[line.label]
        ax.plot(x, mean, marker="o", color=c, label=plot_label(line.label), lw=1.6)
        ax.fill_between(x, low, high, color=c, alpha=0.2, lw=0)
    if numeric:
        values = np.asarray([v for line in lines for v in line.values], np.float64)
        if values.size and values.min() > 0 and values.max() / values.min() >= 20:
            ax.set_xscale("log")
    else:
        ax.set_xticks(range(len(categories)), categories)
    ax.set_title(f"Final cumulative regret vs {plot_label(key)} (mean, 95% interval)")
    ax.set_xlabel(plot_label(key))
    ax.set_ylabel("final cumulative pseudo-regret")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, len(lines), "best")
    return _png(fig)


def click_rate_plot(
    rates: Mapping[str, Mapping[str, Sequence[float]]], colour: Mapping[str, Any]
) -> bytes:
    """Sampled click rate of every slate position, mean and 95% interval across
    seeds per series (`rates[label]` holds the per-position `mean`, `low` and
    `high` of a slate series' summary)."""
    fig, ax = _figure()
    count = max((len(r["mean"]) for r in rates.values()), default=0)
    for label, rate in rates.items():
        x = np.arange(1, len(rate["mean"]) + 1, dtype=np.float64)
        mean, low, high = (np.asarray(rate[k], np.float64) for k in _BAND)
        c = colour[label]
        ax.plot(x, mean, marker="o", color=c, label=plot_label(label), lw=1.6)
        ax.fill_between(x, low, high, color=c, alpha=0.2, lw=0)
    ax.set_xticks(range(1, count + 1))
    ax.set_title("Click rate by slate position (mean and 95% interval across seeds)")
    ax.set_xlabel("position l (1 = top)")
    ax.set_ylabel("clicks per round at position l")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    _legend(ax, len(rates), "upper right")
    return _png(fig)


_BAND = ("mean", "low", "high")
