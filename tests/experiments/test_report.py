"""Reports: files, embedded images, escaping, ranking, reproducibility notes."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from bandits.types import Trajectory
from bandits.validation import BanditConfigError
from experiments.report import render as report
from experiments.store import storage

NASTY = "<b>x</b>&"


def constant_regret(regret: float, num_seeds: int = 3, horizon: int = 60) -> Trajectory:
    """Per-step regret `regret` plus small seed-dependent noise, (S, T) leaves."""
    rng = np.random.default_rng(int(regret * 100))
    noise = rng.uniform(0, 0.01, (num_seeds, horizon))
    per_step = (regret + noise).astype(np.float32)
    best = np.ones_like(per_step)
    return Trajectory(
        action=np.zeros((num_seeds, horizon), np.int32),
        reward=(best - per_step),
        expected_reward=best - per_step,
        optimal_expected_reward=best,
        regret=per_step,
        optimal=per_step < 0.1,
    )


def write_results(directory: Path, agents: dict[str, Trajectory]) -> None:
    """A results folder as the runner writes it, without running any simulation."""
    records = []
    for index, (label, trajectory) in enumerate(agents.items()):
        seeds = list(range(np.shape(trajectory.regret)[0]))
        curves = storage.curves_from_trajectory(trajectory, seeds)
        storage.write_curves(
            directory / storage.CURVES_DIR / storage.curve_file_name(index, label),
            label,
            curves,
        )
        records += storage.seed_records(label, trajectory, seeds)
        records.append(storage.agent_record(label, trajectory, rounds_per_s=1e5))
    storage.write_summaries(directory / storage.SUMMARIES, records)
    storage.write_manifest(
        directory,
        {
            "title": "unit <report>",
            "setup": {"Environment": "Linear-v0(num_arms=3)", "Agents": NASTY},
            "commands": {"Rerun": f"bandits run c.toml --out {directory}"},
            "machine": report.machine_info(),
            "agents": [{"label": label} for label in agents],
        },
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    directory = tmp_path_factory.mktemp("results")
    write_results(
        directory,
        {
            "worse": constant_regret(0.5),
            NASTY: constant_regret(0.05),
            "$math$ label": constant_regret(0.2),
        },
    )
    return directory, report.render(directory)


def test_report_files_exist(rendered):
    directory, files = rendered
    assert files.html == directory / "report.html"
    assert files.markdown == directory / "report.md"
    names = sorted(p.name for p in files.images)
    assert names == ["optimal.png", "regret.png", "regret_loglog.png"]
    for image in files.images:
        assert image.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_html_embeds_the_same_pngs_as_data_uris(rendered):
    _, files = rendered
    page = files.html.read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == 3
    on_disk = {p.read_bytes() for p in files.images}
    assert {base64.b64decode(data) for data in embedded} == on_disk
    assert "<script" not in page and 'src="http' not in page


def test_labels_are_escaped_in_html_and_markdown(rendered):
    _, files = rendered
    page = files.html.read_text()
    assert NASTY not in page
    assert "&lt;b&gt;x&lt;/b&gt;&amp;" in page
    assert "unit &lt;report&gt;" in page
    markdown = files.markdown.read_text()
    assert NASTY not in markdown
    assert "&lt;b&gt;x&lt;/b&gt;&amp;" in markdown


def section(markdown: str, title: str) -> list[str]:
    """The lines of the Markdown section `## title`."""
    lines = markdown.splitlines()
    start = lines.index(f"## {title}") + 1
    end = next(
        (i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines)
    )
    return lines[start:end]


def table_rows(markdown: str, title: str) -> list[list[str]]:
    """The body cells of the Markdown table in section `title`."""
    rows = [line for line in section(markdown, title) if line.startswith("| ")]
    return [[c.strip() for c in row.split(" | ")] for row in rows[1:]]


def test_table_ranks_by_final_regret(rendered):
    _, files = rendered
    rows = [
        line
        for line in section(files.markdown.read_text(), "Final cumulative regret")
        if line.startswith("| ") and not line.startswith("| Rank")
    ]
    ranks_and_labels = [tuple(c.strip() for c in row.split("|")[1:3]) for row in rows]
    assert ranks_and_labels == [
        ("1", "&lt;b&gt;x&lt;/b&gt;&amp;"),
        ("2", r"$math$ label"),
        ("3", "worse"),
    ]
    # The interval column holds [low, high] around the mean.
    summaries = storage.read_summaries(files.html.parent)
    best = next(r for r in summaries if r["kind"] == "agent" and r["agent"] == NASTY)
    assert best["final_regret_low"] < best["final_regret_mean"]
    assert best["final_regret_mean"] < best["final_regret_high"]


def test_report_states_commands_and_machine(rendered):
    directory, files = rendered
    import jax

    for text in (files.markdown.read_text(), files.html.read_text()):
        assert f"bandits run c.toml --out {directory}" in text
        assert f"CPU count**: {os.cpu_count()}" in text or (
            f"CPU count</dt><dd>{os.cpu_count()}</dd>" in text
        )
        assert f"JAX**: {jax.__version__}" in text or (
            f"JAX</dt><dd>{jax.__version__}</dd>" in text
        )
        assert "Platform" in text


def test_render_again_reproduces_the_tables(rendered):
    directory, files = rendered
    before = files.markdown.read_text()
    again = report.render(directory)
    strip = lambda text: re.sub(r"Report rendered .*", "", text)
    assert strip(again.markdown.read_text()) == strip(before)


def test_render_without_results_is_a_clear_error(tmp_path):
    with pytest.raises(BanditConfigError, match=r"holds no results.*run `bandits"):
        report.render(tmp_path)
    # A pretraining study's folder: its platform results are deeper; named.
    deeper = tmp_path / "ContextualRec-v0" / "results"
    deeper.mkdir(parents=True)
    (deeper / "manifest.json").write_text("{}")
    with pytest.raises(BanditConfigError, match=rf"folders inside it: {deeper}$"):
        report.render(tmp_path)


# --- sweeps, compute cost, reward-model metrics ---------------------------------


def write_sweep_results(directory: Path) -> None:
    """A results folder of an alpha sweep (3 values) and one baseline, with cost
    and reward-model records as the runner writes them."""
    agents = {
        f"{NASTY} alpha={alpha}": constant_regret(regret)
        for alpha, regret in ((0.1, 0.3), (1.0, 0.1), (10.0, 0.4))
    }
    agents["random"] = constant_regret(0.9)
    records, entries = [], []
    for index, (label, trajectory) in enumerate(agents.items()):
        curves = storage.curves_from_trajectory(trajectory, [0, 1, 2])
        name = storage.curve_file_name(index, label)
        storage.write_curves(directory / storage.CURVES_DIR / name, label, curves)
        swept = label != "random"
        entry = {
            "label": label,
            "entry": 0 if swept else 1,
            "base_label": NASTY if swept else "random",
            "agent_label": label,
            "setting": "",
            "setting_index": 0,
            "grid": {"alpha": float(label.rsplit("=", 1)[1])} if swept else {},
            "env_grid": {},
            "program": "sweep x3" if swept else "run",
        }
        entries.append(entry)
        extra = {
            "program": entry["program"],
            "chunks": 2,
            "compile_time_s": 1.5,
            "run_time_s": 0.25,
            "rounds_per_s": 7.2e5,
            "peak_memory_bytes": 300 * 2**20,
            "memory_increase_bytes": 20 * 2**20,
        }
        if swept:
            extra["prediction"] = {
                "reward_type": "bernoulli",
                "metrics": {
                    "mse": {"mean": 0.01, "low": 0.008, "high": 0.012, "seeds": 3},
                    "roc_auc": {"mean": 0.71, "low": 0.7, "high": 0.72, "seeds": 3},
                    "recall": None,
                },
            }
        records += storage.seed_records(label, trajectory, [0, 1, 2])
        records.append(storage.agent_record(label, trajectory, **extra))
    storage.write_summaries(directory / storage.SUMMARIES, records)
    storage.write_manifest(directory, {"title": "sweep <t>", "agents": entries})


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    directory = tmp_path_factory.mktemp("swept")
    write_sweep_results(directory)
    return directory, report.render(directory)


def test_sweep_report_has_sensitivity_cost_and_prediction(swept):
    _, files = swept
    names = sorted(p.name for p in files.images)
    assert "sensitivity-agent-alpha.png" in names
    markdown = files.markdown.read_text()
    cost = table_rows(markdown, "Compute cost")
    assert len(cost) == 4
    first = cost[0]
    assert first[1:] == ["sweep x3", "2", "1.5", "0.25", "720,000", "300", "20 |"]
    prediction = table_rows(markdown, "Reward-model metrics (held-out contexts)")
    assert len(prediction) == 3  # the baseline has no reward model
    # mean ± half-width; metrics that are missing show as a dash.
    assert prediction[0][1:4] == ["bernoulli", "0.01 ± 0.002", "–"]
    assert "0.71 ± 0.01" in prediction[0]
    page = files.html.read_text()
    assert NASTY not in page and "Compute cost" in page
    embedded = re.findall(r'src="data:image/png;base64,', page)
    assert len(embedded) == len(files.images) == 4


def test_stale_sensitivity_plots_are_removed_but_not_the_users(tmp_path):
    """A sensitivity plot an earlier render wrote (listed in the manifest's
    `files`) and this one does not draw is removed; a file of the same name
    pattern that no run wrote is the user's and stays."""
    write_sweep_results(tmp_path)
    raw = storage.read_manifest(tmp_path)
    storage.write_manifest(tmp_path, {**raw, "files": ["sensitivity-agent-old.png"]})
    stale = tmp_path / "sensitivity-agent-old.png"
    mine = tmp_path / "sensitivity-mine.png"
    for path in (stale, mine):
        path.write_bytes(b"\x89PNG")
    report.render(tmp_path)
    assert not stale.exists()
    assert mine.read_bytes() == b"\x89PNG"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Added to a copy of the page only: the report itself carries no script.
IMAGE_CHECK = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const loaded = images.filter((i) => i.complete && i.naturalWidth > 0);
  document.title = `images ${loaded.length}/${images.length}`;
});
</script></body>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="headless chromium is not installed")
def test_report_renders_in_headless_chromium(swept, tmp_path):
    _, files = swept
    page = files.html.read_text()
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", IMAGE_CHECK, 1))
    result = chromium(
        tmp_path, "--virtual-time-budget=5000", "--dump-dom", checked.as_uri()
    )
    assert result.returncode == 0, result.stderr[-2000:]
    count = len(files.images)
    assert f"<title>images {count}/{count}</title>" in result.stdout
    # The label with HTML specials arrives as text, not as markup.
    assert "<b>x</b>" not in result.stdout
    assert "&lt;b&gt;x&lt;/b&gt;&amp;" in result.stdout

    shot = tmp_path / "shot.png"
    result = chromium(
        tmp_path, f"--screenshot={shot}", "--window-size=1200,2400", files.html.as_uri()
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] >= 2000
    # Not blank: many distinct colours (text, table rules, plotted curves).
    rgb = np.round(pixels[::3, ::3, :3] * 255).astype(np.uint32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    assert np.unique(packed).size > 50
