"""Reports: files, embedded images, escaping, ranking, reproducibility notes."""

from __future__ import annotations

import ast
import base64
import os
import re
from pathlib import Path

import numpy as np
import pytest

import bandits
from bandits import report, storage
from bandits.types import Trajectory
from bandits.validation import BanditConfigError

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


def test_table_ranks_by_final_regret(rendered):
    _, files = rendered
    rows = [
        line
        for line in files.markdown.read_text().splitlines()
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
    with pytest.raises(BanditConfigError, match="holds no results"):
        report.render(tmp_path)


def test_kernel_modules_import_no_envs_or_agents():
    root = Path(bandits.__file__).parent
    for name in ("storage.py", "report.py", "progress.py"):
        tree = ast.parse((root / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] not in {"envs", "agents", "experiments"}
