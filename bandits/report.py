"""Regret reports: plots, a Markdown page and a self-contained HTML page.

`render(directory)` reads a results folder written through `bandits.storage`
(manifest, curves, summaries) and writes next to them

    regret.png, regret_loglog.png, optimal.png   the plots
    report.md                                    linking the PNG files
    report.html                                  the same PNGs embedded as data URIs

Curves show the mean across seeds with a shaded two-sided 95% Student-t band
(`bandits.metrics.mean_band`), one colour per agent. Agents are ranked by mean
final cumulative regret (rank 1 = lowest). Every string that comes from a config
or a results file is escaped before it goes into HTML or Markdown.

Manifest keys used (all optional): `title`, `setup` (a mapping of display rows),
`commands` (a mapping of purpose to shell command), `machine` (a mapping),
`agents` (a list of mappings with `label`, giving the display order).
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import os
import platform
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bandits import storage
from bandits.metrics import mean_band

REGRET_PNG = "regret.png"
LOGLOG_PNG = "regret_loglog.png"
OPTIMAL_PNG = "optimal.png"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"


class ReportFiles(NamedTuple):
    """Paths of a rendered report."""

    html: Path
    markdown: Path
    images: tuple[Path, ...]


class _Plot(NamedTuple):
    file: str
    title: str
    png: bytes


def machine_info() -> dict[str, Any]:
    """The machine and software a run happens on: platform, CPUs, Python, JAX."""
    import jax

    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": ", ".join(str(d) for d in jax.devices()),
    }


def render(directory: str | Path) -> ReportFiles:
    """Renders the report of a results folder from its stored files.

    Args:
      directory: a folder holding `manifest.json`, `summaries.jsonl` and `curves/`.

    Returns:
      The paths of `report.html`, `report.md` and the PNG files.
    """
    directory = Path(directory)
    manifest = storage.read_manifest(directory)
    curves_dir = directory / storage.CURVES_DIR
    curves = storage.read_curves(curves_dir) if curves_dir.is_dir() else {}
    summaries_path = directory / storage.SUMMARIES
    records = storage.read_summaries(summaries_path) if summaries_path.is_file() else []
    aggregates = {r["agent"]: r for r in records if r.get("kind") == "agent"}
    order = _agent_order(manifest, curves, aggregates)
    curves = {label: curves[label] for label in order if label in curves}
    colours = _colours(order)

    plots = [
        _Plot(REGRET_PNG, "Cumulative regret", _regret_plot(curves, colours, False)),
        _Plot(
            LOGLOG_PNG,
            "Cumulative regret (log-log)",
            _regret_plot(curves, colours, True),
        ),
        _Plot(
            OPTIMAL_PNG, "Fraction of optimal actions", _optimal_plot(curves, colours)
        ),
    ]
    images = tuple(storage.atomic_write_bytes(directory / p.file, p.png) for p in plots)
    rows = _table_rows(order, aggregates)
    title = str(manifest.get("title") or "Bandit experiment")
    md = _markdown(title, manifest, rows, plots)
    page = _html(title, manifest, rows, plots, colours)
    markdown = storage.atomic_write_text(directory / REPORT_MD, md)
    html_path = storage.atomic_write_text(directory / REPORT_HTML, page)
    return ReportFiles(html=html_path, markdown=markdown, images=images)


# ---------------------------------------------------------------------------
# Data


def _agent_order(
    manifest: Mapping[str, Any],
    curves: Mapping[str, Any],
    aggregates: Mapping[str, Any],
) -> list[str]:
    """Agent labels in manifest order, then any others in file order."""
    labels = [
        str(a["label"])
        for a in manifest.get("agents", [])
        if isinstance(a, Mapping) and "label" in a
    ]
    return list(dict.fromkeys([*labels, *aggregates, *curves]))


def _colours(labels: Sequence[str]) -> dict[str, Any]:
    """One colour per agent: tab10 up to 10 agents, tab20 beyond (cycled)."""
    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


class _Row(NamedTuple):
    rank: int | None
    label: str
    mean: float | None
    low: float | None
    high: float | None
    optimal_fraction: float | None
    mean_reward: float | None
    seeds: int | None
    rounds_per_s: float | None
    compile_s: float | None


def _table_rows(order: Sequence[str], aggregates: Mapping[str, Any]) -> list[_Row]:
    """Summary rows sorted by mean final regret, with competition ranks (1, 2, 2, 4)."""
    rows = []
    for label in order:
        r = aggregates.get(label, {})
        rows.append(
            _Row(
                rank=None,
                label=label,
                mean=_num(r.get("final_regret_mean")),
                low=_num(r.get("final_regret_low")),
                high=_num(r.get("final_regret_high")),
                optimal_fraction=_num(r.get("optimal_fraction")),
                mean_reward=_num(r.get("mean_reward")),
                seeds=r.get("seeds"),
                rounds_per_s=_num(r.get("rounds_per_s")),
                compile_s=_num(r.get("compile_time_s")),
            )
        )
    ranked = sorted(
        (row for row in rows if row.mean is not None), key=lambda row: row.mean or 0.0
    )
    out: list[_Row] = []
    for i, row in enumerate(ranked):
        rank = out[-1].rank if out and out[-1].mean == row.mean else i + 1
        out.append(row._replace(rank=rank))
    return out + [row for row in rows if row.mean is None]


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


# ---------------------------------------------------------------------------
# Plots


def _figure() -> tuple[Figure, Any]:
    fig = Figure(figsize=(7.5, 4.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _plot_label(label: str) -> str:
    """An agent label safe from matplotlib's mathtext (`$...$`)."""
    return label.replace("$", r"\$")


def _regret_plot(curves: Mapping[str, storage.Curves], colours, loglog: bool) -> bytes:
    fig, ax = _figure()
    for label, c in curves.items():
        band = mean_band(c.cumulative_regret)
        x = c.steps.astype(np.float64)
        if loglog:  # log axes cannot show zero regret
            keep = band.mean > 0
            x, band = x[keep], type(band)(*(v[keep] for v in band))
            band = band._replace(low=np.maximum(band.low, band.mean * 1e-3))
        colour = colours[label]
        ax.plot(x, band.mean, color=colour, label=_plot_label(label), lw=1.6)
        ax.fill_between(x, band.low, band.high, color=colour, alpha=0.2, lw=0)
    if loglog:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title("Cumulative regret, log-log (slope 1 = linear regret)")
    else:
        ax.set_title("Cumulative regret (mean and 95% interval across seeds)")
    ax.set_xlabel("round t")
    ax.set_ylabel("cumulative pseudo-regret")
    ax.grid(True, which="both", alpha=0.3)
    if curves:
        ax.legend(loc="upper left", fontsize="small")
    return _png(fig)


def _optimal_plot(curves: Mapping[str, storage.Curves], colours) -> bytes:
    fig, ax = _figure()
    for label, c in curves.items():
        band = mean_band(c.optimal_fraction)
        colour = colours[label]
        ax.plot(c.steps, band.mean, color=colour, label=_plot_label(label), lw=1.6)
        ax.fill_between(
            c.steps,
            np.clip(band.low, 0, 1),
            np.clip(band.high, 0, 1),
            color=colour,
            alpha=0.2,
            lw=0,
        )
    ax.set_title("Fraction of rounds 1..t with an optimal arm (mean and 95% interval)")
    ax.set_xlabel("round t")
    ax.set_ylabel("fraction optimal")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(loc="lower right", fontsize="small")
    return _png(fig)


# ---------------------------------------------------------------------------
# Pages


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"


def _interval(row: _Row) -> str:
    if row.low is None or row.high is None:
        return "–"
    return f"[{_fmt(row.low)}, {_fmt(row.high)}]"


def _columns(row: _Row) -> list[str]:
    return [
        str(row.rank) if row.rank is not None else "–",
        row.label,
        _fmt(row.mean),
        _interval(row),
        _fmt(row.optimal_fraction, 3),
        _fmt(row.mean_reward, 3),
        str(row.seeds) if row.seeds is not None else "–",
        _fmt(row.rounds_per_s, 3),
        _fmt(row.compile_s, 3),
    ]


_HEADER = [
    "Rank",
    "Agent",
    "Final regret (mean)",
    "95% interval",
    "Optimal fraction",
    "Mean reward",
    "Seeds",
    "Rounds/s",
    "Compile s",
]


def _md(text: Any) -> str:
    """Text made inert for Markdown tables: HTML-escaped, specials backslashed."""
    escaped = html.escape(str(text), quote=False)
    return re.sub(r"([\\`*_\[\]|#])", r"\\\1", escaped).replace("\n", " ")


def _items(manifest: Mapping[str, Any], key: str) -> list[tuple[str, str]]:
    value = manifest.get(key)
    if not isinstance(value, Mapping):
        return []
    return [(str(k), _text(v)) for k, v in value.items()]


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items())
    return str(value)


_MACHINE_LABELS = {
    "platform": "Platform",
    "machine": "Architecture",
    "cpu_count": "CPU count",
    "python": "Python",
    "jax": "JAX",
    "backend": "JAX backend",
    "devices": "Devices",
}


def _machine(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The machine the results were computed on (this one if not recorded)."""
    items = _items(manifest, "machine")
    items = items or [(k, _text(v)) for k, v in machine_info().items()]
    return [(_MACHINE_LABELS.get(k, k), v) for k, v in items]


def _rendered_at() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _markdown(
    title: str, manifest: Mapping[str, Any], rows: list[_Row], plots: list[_Plot]
) -> str:
    lines = [f"# {_md(title)}", ""]
    setup = _items(manifest, "setup")
    if setup:
        lines += ["## Setup", ""]
        lines += [f"- **{_md(k)}**: {_md(v)}" for k, v in setup]
        lines.append("")
    lines += [
        "## Final cumulative regret",
        "",
        "Mean over seeds with a two-sided 95% Student-t interval; rank 1 has the "
        "lowest mean regret.",
        "",
        "| " + " | ".join(_HEADER) + " |",
        "|" + "|".join("---:" if i != 1 else "---" for i in range(len(_HEADER))) + "|",
    ]
    for row in rows:  # only the label comes from user input; numbers stay as is
        cells = [_md(c) if i == 1 else c for i, c in enumerate(_columns(row))]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += ["## Plots", ""]
    for plot in plots:
        lines += [f"![{_md(plot.title)}]({plot.file})", ""]
    lines += _md_commands(manifest)
    lines += ["## Machine", ""]
    lines += [f"- **{_md(k)}**: {_md(v)}" for k, v in _machine(manifest)]
    lines += ["", f"Report rendered {_rendered_at()}.", ""]
    return "\n".join(lines)


def _md_commands(manifest: Mapping[str, Any]) -> list[str]:
    commands = _items(manifest, "commands")
    if not commands:
        return []
    lines = ["## Reproduce", ""]
    for purpose, command in commands:
        lines += [f"{_md(purpose)}:", "", "```sh", command.replace("`", "'"), "```", ""]
    return lines


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; }
img { max-width: 100%; height: auto; display: block; margin: 0.5rem 0 1.5rem; }
pre { background: #f6f6f6; padding: 0.6rem; overflow-x: auto; }
dt { font-weight: 600; } dd { margin: 0 0 0.4rem 1rem; }
.swatch { display: inline-block; width: 0.8rem; height: 0.8rem; margin-right: 0.4rem;
          vertical-align: middle; border-radius: 2px; }
"""


def _html(
    title: str,
    manifest: Mapping[str, Any],
    rows: list[_Row],
    plots: list[_Plot],
    colours: Mapping[str, Any],
) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    setup = _items(manifest, "setup")
    if setup:
        parts.append("<h2>Setup</h2><dl>")
        parts += [f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in setup]
        parts.append("</dl>")
    parts += [
        "<h2>Final cumulative regret</h2>",
        "<p>Mean over seeds with a two-sided 95% Student-t interval; rank 1 has the "
        "lowest mean regret.</p>",
        "<table><thead><tr>",
        "".join(f"<th>{e(h)}</th>" for h in _HEADER),
        "</tr></thead><tbody>",
    ]
    for row in rows:
        cells = _columns(row)
        colour = colours.get(row.label)
        swatch = (
            f'<span class="swatch" style="background:{_hex(colour)}"></span>'
            if colour is not None
            else ""
        )
        tds = [
            f"<td>{swatch}{e(c)}</td>" if i == 1 else f'<td class="num">{e(c)}</td>'
            for i, c in enumerate(cells)
        ]
        parts.append("<tr>" + "".join(tds) + "</tr>")
    parts.append("</tbody></table><h2>Plots</h2>")
    for plot in plots:
        data = base64.b64encode(plot.png).decode("ascii")
        parts.append(
            f'<h3>{e(plot.title)}</h3><img alt="{e(plot.title)}" '
            f'src="data:image/png;base64,{data}">'
        )
    commands = _items(manifest, "commands")
    if commands:
        parts.append("<h2>Reproduce</h2>")
        for purpose, command in commands:
            parts.append(f"<p>{e(purpose)}:</p><pre><code>{e(command)}</code></pre>")
    parts.append("<h2>Machine</h2><dl>")
    parts += [f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in _machine(manifest)]
    parts += [
        "</dl>",
        f"<p><small>Report rendered {e(_rendered_at())}.</small></p>",
        "</body></html>",
        "",
    ]
    return "\n".join(parts)


def _hex(colour: Sequence[float]) -> str:
    r, g, b = (round(255 * float(c)) for c in colour[:3])
    return f"#{r:02x}{g:02x}{b:02x}"
