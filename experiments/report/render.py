"""Regret reports: plots, a Markdown page and a self-contained HTML page.

`render(directory)` reads a results folder written through `experiments.store.storage`
(manifest, curves, summaries) and writes next to them

    regret.png, regret_loglog.png, optimal.png   the curve plots
    click_rate.png                               slate series: click rate by position
    sensitivity-*.png                            final regret vs each swept value
    report.md                                    linking the PNG files
    report.html                                  the same PNGs embedded as data URIs

The page holds: the setup; the final-regret table (mean, 95% interval, rank);
the series that failed (agent state NaN or inf: first bad seed and step), if any; the
plots (cumulative regret with 95% bands on linear and log-log axes, the fraction
of optimal actions, and for every swept agent hyperparameter or env parameter the
final regret against its values); the compute cost per series (compile time,
rounds per second, peak memory); the held-out metrics of agents with a reward
model; for slate series, the click rate of every position and NDCG@L (a table
and a plot of click rate by position); the commands that reproduce the results;
the machine.

Bands and intervals are two-sided 95% Student-t intervals across seeds
(`bandits.metrics.mean_band`). Series are ranked by mean final cumulative
regret (rank 1 = lowest) within each env setting. Every string that comes from
a config or a results file is escaped before it goes into HTML or Markdown, and
the HTML has no scripts and loads nothing from outside.

The manifest is read as the typed `experiments.store.manifest.Manifest` (every
field optional): `title`, `setup` (display rows), `commands` (purpose -> shell
command), `machine`, and `agents`, the series entries giving the display order
and, for sweeps, their `entry`, `base_label`, `grid`, `setting`,
`setting_index`, `env_grid`, `agent_label` and `program`. Summary records
(`kind = "agent"`) give the table values, compute cost (`compile_time_s`,
`run_time_s`, `rounds_per_s`, `peak_memory_bytes`, `memory_increase_bytes`,
`chunks`) and `prediction`.
"""

from __future__ import annotations

import base64
import datetime
import html
import os
import platform
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from experiments.report import plots
from experiments.report.tables import (
    Table,
    cost_table,
    failed_table,
    num,
    prediction_table,
    regret_table,
    slate_aggregates,
    slate_table,
)
from experiments.store import manifest as manifest_file
from experiments.store import storage
from experiments.store.manifest import Manifest, SeriesEntry

REGRET_PNG = "regret.png"
LOGLOG_PNG = "regret_loglog.png"
OPTIMAL_PNG = "optimal.png"
CLICK_RATE_PNG = "click_rate.png"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
SENSITIVITY_PREFIX = "sensitivity-"
FILES = (REPORT_HTML, REPORT_MD, REGRET_PNG, LOGLOG_PNG, OPTIMAL_PNG)
"""Files `render` writes under fixed names."""
"""Patterns of the other files `render` writes."""


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
    manifest = manifest_file.read(directory)
    curves = manifest_file.read_series_curves(directory, manifest)
    summaries_path = directory / storage.SUMMARIES
    records = storage.read_summaries(summaries_path) if summaries_path.is_file() else []
    aggregates = {r["agent"]: r for r in records if r.get("kind") == "agent"}
    entries = {e.label: e for e in manifest.agents}
    order = list(dict.fromkeys([*entries, *aggregates, *curves]))
    curves = {label: curves[label] for label in order if label in curves}
    colour = plots.colours(order)

    figures = [
        _Plot(
            REGRET_PNG, "Cumulative regret", plots.regret_plot(curves, colour, False)
        ),
        _Plot(
            LOGLOG_PNG,
            "Cumulative regret (log-log)",
            plots.regret_plot(curves, colour, True),
        ),
        _Plot(
            OPTIMAL_PNG,
            "Fraction of optimal actions",
            plots.optimal_plot(curves, colour),
        ),
    ]
    slates = slate_aggregates(order, aggregates)
    if slates:
        rates = {label: slate["click_rate"] for label, slate in slates.items()}
        figures.append(
            _Plot(
                CLICK_RATE_PNG,
                "Click rate by slate position",
                plots.click_rate_plot(rates, {k: colour[k] for k in rates}),
            )
        )
    for file, title, key, lines in _sensitivity(entries, aggregates):
        figures.append(_Plot(file, title, plots.sensitivity_plot(key, lines)))
    # Sensitivity plots of an earlier render that this one does not draw; only
    # files the manifest lists as written by a run (never a user's own file).
    drawn = {p.file for p in figures}
    for old in manifest_file.owned_paths(directory, manifest):
        ours = old.parent == directory.resolve()
        if ours and old.name.startswith(SENSITIVITY_PREFIX) and old.name not in drawn:
            old.unlink(missing_ok=True)
    images = tuple(
        storage.atomic_write_bytes(directory / p.file, p.png) for p in figures
    )
    tables = [regret_table(order, aggregates, entries)]
    if slates:
        tables.append(slate_table(slates))
    tables += [t for t in (cost_table(order, aggregates, entries),) if t.rows]
    tables += [t for t in (prediction_table(order, aggregates),) if t.rows]
    if manifest.failed:
        tables.insert(1, failed_table(manifest))
    title = manifest.title or "Bandit experiment"
    md = _markdown(title, manifest, tables, figures)
    page = _html(title, manifest, tables, figures, colour)
    markdown = storage.atomic_write_text(directory / REPORT_MD, md)
    html_path = storage.atomic_write_text(directory / REPORT_HTML, page)
    return ReportFiles(html=html_path, markdown=markdown, images=images)


# ---------------------------------------------------------------------------
# Sensitivity (final regret vs swept values)


def _sensitivity(entries: Mapping[str, SeriesEntry], aggregates):
    """(file, title, key, lines) for every swept agent hyperparameter and env
    parameter with at least two values in some family."""
    out = []
    for kind, field in (("agent", "grid"), ("env", "env_grid")):
        keys = list(
            dict.fromkeys(k for e in entries.values() for k in getattr(e, field))
        )
        for key in keys:
            families: dict[tuple, dict[str, Any]] = {}
            for label, e in entries.items():
                values = getattr(e, field)
                r = aggregates.get(label)
                if key not in values or not r:
                    continue
                others = {k: v for k, v in values.items() if k != key}
                setting = e.setting
                family: tuple[Any, ...]
                if kind == "agent":
                    name = e.base_label or label
                    family = (e.entry, setting, repr(others))
                    context = [setting] if setting else []
                else:
                    name = e.agent_label or label
                    family = (name, repr(others))
                    context = []
                extra = " ".join(f"{k}={v}" for k, v in others.items())
                line_label = " | ".join(
                    x for x in [f"{name} {extra}".strip(), *context]
                )
                line = families.setdefault(
                    family,
                    {"label": line_label, "values": [], "stats": []},
                )
                line["values"].append(values[key])
                line["stats"].append(
                    tuple(
                        num(r.get(f"final_regret_{s}")) for s in ("mean", "low", "high")
                    )
                )
            lines = [
                plots.SensitivityLine(
                    f["label"],
                    f["values"],
                    *[[stat[i] for stat in f["stats"]] for i in range(3)],
                )
                for f in families.values()
                if len(f["values"]) >= 2
                and all(None not in stat for stat in f["stats"])
            ]
            if lines:
                slug = re.sub(r"[^A-Za-z0-9_-]+", "-", key)
                what = "agent hyperparameter" if kind == "agent" else "env parameter"
                out.append(
                    (
                        f"{SENSITIVITY_PREFIX}{kind}-{slug}.png",
                        f"Sensitivity to {what} {key}",
                        key,
                        lines,
                    )
                )
    return out


# ---------------------------------------------------------------------------
# Pages


def _md(text: Any) -> str:
    """Text made inert for Markdown: HTML-escaped, specials backslashed."""
    escaped = html.escape(str(text), quote=False)
    return re.sub(r"([\\`*_\[\]|#])", r"\\\1", escaped).replace("\n", " ")


def _items(manifest: Manifest, key: str) -> list[tuple[str, str]]:
    value = getattr(manifest, key)
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


def _machine(manifest: Manifest) -> list[tuple[str, str]]:
    """The machine the results were computed on (this one if not recorded)."""
    items = _items(manifest, "machine")
    items = items or [(k, _text(v)) for k, v in machine_info().items()]
    return [(_MACHINE_LABELS.get(k, k), v) for k, v in items]


def _rendered_at() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _leading(tables: list[Table]) -> tuple[list[Table], list[Table]]:
    """(tables shown above the plots, tables below): the regret table and the
    failed series come first."""
    count = 2 if len(tables) > 1 and tables[1].title == "Failed series" else 1
    return tables[:count], tables[count:]


def _md_table(table: Table) -> list[str]:
    lines = [f"## {_md(table.title)}", "", _md(table.note), ""]
    lines.append("| " + " | ".join(_md(h) for h in table.header) + " |")
    lines.append(
        "|"
        + "|".join(
            "---" if i in table.text_columns else "---:"
            for i in range(len(table.header))
        )
        + "|"
    )
    for row in table.rows:  # user text is escaped; numbers are ours
        lines.append("| " + " | ".join(_md(c) for c in row) + " |")
    return [*lines, ""]


def _markdown(
    title: str,
    manifest: Manifest,
    tables: list[Table],
    figures: list[_Plot],
) -> str:
    lines = [f"# {_md(title)}", ""]
    setup = _items(manifest, "setup")
    if setup:
        lines += ["## Setup", ""]
        lines += [f"- **{_md(k)}**: {_md(v)}" for k, v in setup]
        lines.append("")
    first, rest = _leading(tables)
    for table in first:
        lines += _md_table(table)
    lines += ["## Plots", ""]
    for plot in figures:
        lines += [f"![{_md(plot.title)}]({plot.file})", ""]
    for table in rest:
        lines += _md_table(table)
    lines += _md_commands(manifest)
    lines += ["## Machine", ""]
    lines += [f"- **{_md(k)}**: {_md(v)}" for k, v in _machine(manifest)]
    lines += ["", f"Report rendered {_rendered_at()}.", ""]
    return "\n".join(lines)


def _md_commands(manifest: Manifest) -> list[str]:
    commands = _items(manifest, "commands")
    if not commands:
        return []
    lines = ["## Reproduce", ""]
    for purpose, command in commands:
        lines += [f"{_md(purpose)}:", "", "```sh", command.replace("`", "'"), "```", ""]
    return lines


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 64rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; }
img { max-width: 100%; height: auto; display: block; margin: 0.5rem 0 1.5rem; }
pre { background: #f6f6f6; padding: 0.6rem; overflow-x: auto; }
dt { font-weight: 600; } dd { margin: 0 0 0.4rem 1rem; }
p.note { font-size: 0.9rem; color: #444; }
.swatch { display: inline-block; width: 0.8rem; height: 0.8rem; margin-right: 0.4rem;
          vertical-align: middle; border-radius: 2px; }
"""


def _html_table(table: Table, colour: Mapping[str, Any]) -> list[str]:
    e = html.escape
    parts = [
        f"<h2>{e(table.title)}</h2>",
        f'<p class="note">{e(table.note)}</p>',
        "<table><thead><tr>",
        "".join(f"<th>{e(h)}</th>" for h in table.header),
        "</tr></thead><tbody>",
    ]
    label_column = table.header.index("Agent")
    for row in table.rows:
        tds = []
        for i, cell in enumerate(row):
            if i == label_column:
                c = colour.get(cell)
                swatch = (
                    f'<span class="swatch" style="background:{_hex(c)}"></span>'
                    if c is not None
                    else ""
                )
                tds.append(f"<td>{swatch}{e(cell)}</td>")
            elif i in table.text_columns:
                tds.append(f"<td>{e(cell)}</td>")
            else:
                tds.append(f'<td class="num">{e(cell)}</td>')
        parts.append("<tr>" + "".join(tds) + "</tr>")
    parts.append("</tbody></table>")
    return parts


def _html(
    title: str,
    manifest: Manifest,
    tables: list[Table],
    figures: list[_Plot],
    colour: Mapping[str, Any],
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
    first, rest = _leading(tables)
    for table in first:
        parts += _html_table(table, colour)
    parts.append("<h2>Plots</h2>")
    for plot in figures:
        data = base64.b64encode(plot.png).decode("ascii")
        parts.append(
            f'<h3>{e(plot.title)}</h3><img alt="{e(plot.title)}" '
            f'src="data:image/png;base64,{data}">'
        )
    for table in rest:
        parts += _html_table(table, colour)
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
