"""The `bandits` CLI and the runner: smoke runs, re-rendering, resume, refusal."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bandits
from bandits import storage
from bandits.validation import BanditConfigError
from experiments import cli
from experiments.config import load_config
from experiments.runner import run_experiment

TINY = """
name = "tiny"
[env]
id = "Linear-v0"
params = {{ num_arms = 3, dim = 4 }}
[run]
horizon = {horizon}
seeds = 2
[[agents]]
name = "linucb"
label = "{label}"
hyperparameters = {{ alpha = {alpha} }}
[[agents]]
name = "random"
"""


def tiny_config(
    tmp_path: Path, *, alpha: float = 1.0, label: str = "LinUCB", horizon: int = 200
) -> Path:
    path = tmp_path / f"tiny-{alpha}-{horizon}.toml"
    path.write_text(TINY.format(alpha=alpha, label=label, horizon=horizon))
    return path


def bandits_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Runs the installed CLI module in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "experiments.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One subprocess run of a tiny config (T=200, 2 seeds, 2 agents)."""
    tmp_path = tmp_path_factory.mktemp("smoke")
    config = tiny_config(tmp_path)
    out = tmp_path / "out"
    result = bandits_cli("run", str(config), "--out", str(out), cwd=tmp_path)
    return result, out


def test_run_writes_results_and_report(smoke):
    result, out = smoke
    assert result.returncode == 0, result.stderr
    assert f"report:  {out / 'report.html'}" in result.stdout
    for name in [
        "report.html",
        "report.md",
        "regret.png",
        "regret_loglog.png",
        "optimal.png",
        "summaries.jsonl",
        "manifest.json",
        "config.toml",
    ]:
        assert (out / name).is_file(), name
    parquet = sorted(p.name for p in (out / "curves").glob("*.parquet"))
    assert parquet == ["000-LinUCB.parquet", "001-random.parquet"]
    curves = storage.read_curves(out / "curves")
    assert list(curves) == ["LinUCB", "random"]
    assert curves["LinUCB"].cumulative_regret.shape == (2, 200)
    records = storage.read_summaries(out)
    assert [r["agent"] for r in records if r["kind"] == "agent"] == ["LinUCB", "random"]
    assert sum(r["kind"] == "seed" for r in records) == 4
    manifest = storage.read_manifest(out)
    assert [a["label"] for a in manifest["agents"]] == ["LinUCB", "random"]
    assert manifest["agents"][0]["hyperparameters"] == {
        "alpha": 1.0,
        "num_arms": 3,
        "dim": 4,
    }
    assert manifest["agents"][0]["rounds_per_s"] > 0
    assert manifest["agents"][0]["compile_time_s"] > 0
    assert manifest["config_hash"] == load_config(out / "config.toml").hash()


def test_report_rerenders_from_stored_files(smoke, tmp_path):
    _, out = smoke
    for name in ["report.html", "report.md", "regret.png"]:
        (out / name).unlink()
    result = bandits_cli("report", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(out / "report.html") in result.stdout
    assert "LinUCB" in (out / "report.md").read_text()
    assert (out / "regret.png").read_bytes().startswith(b"\x89PNG")


def test_list_shows_envs_and_agents(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "Linear-v0" in out
    assert "linucb" in out
    assert "alpha = 1.0" in out
    assert "num_arms (from env)" in out


def test_config_errors_are_one_line_without_traceback(tmp_path, capsys):
    config = tiny_config(tmp_path, horizon=0)
    code = cli.main(["run", str(config), "--out", str(tmp_path / "o")])
    assert code == cli.EXIT_CONFIG_ERROR
    assert capsys.readouterr().err.strip() == "error: run.horizon must be > 0, got 0"
    assert not (tmp_path / "o").exists()


def test_report_of_a_missing_folder_is_an_error(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "nowhere")]) == cli.EXIT_CONFIG_ERROR
    assert "does not exist" in capsys.readouterr().err


def count_runs(monkeypatch) -> list[str]:
    """Records the agent name of every `bandits.run` call the runner makes."""
    calls: list[str] = []
    real_run = bandits.run

    def counting_run(env, agent, **kwargs):
        calls.append(agent.name)
        return real_run(env, agent, **kwargs)

    monkeypatch.setattr(bandits, "run", counting_run)
    return calls


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """An in-process run of a tiny config (T=50, 2 seeds, 2 agents)."""
    tmp_path = tmp_path_factory.mktemp("finished")
    config = tiny_config(tmp_path, horizon=50)
    result = run_experiment(load_config(config), tmp_path / "out", progress=False)
    assert result.ran == ["LinUCB", "random"]
    return config, tmp_path / "out"


def files_of(directory: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_rerun_resumes_and_skips_finished_agents(finished, tmp_path, monkeypatch):
    config_path, done = finished
    config = load_config(config_path)
    out = Path(shutil.copytree(done, tmp_path / "out"))
    linucb_file = out / "curves" / "000-LinUCB.parquet"
    stamp = linucb_file.stat().st_mtime_ns

    # Simulate a run killed while the second agent was running.
    manifest = storage.read_manifest(out)
    finished_at = manifest["agents"][0]["finished"]
    manifest["agents"] = manifest["agents"][:1]
    storage.write_manifest(out, manifest)
    (out / "curves" / "001-random.parquet").unlink()

    calls = count_runs(monkeypatch)
    second = run_experiment(config, out, progress=False)
    assert calls == ["random"]
    assert second.skipped == ["LinUCB"] and second.ran == ["random"]
    assert linucb_file.stat().st_mtime_ns == stamp
    manifest = storage.read_manifest(out)
    assert [a["label"] for a in manifest["agents"]] == ["LinUCB", "random"]
    assert manifest["agents"][0]["finished"] == finished_at
    records = storage.read_summaries(out)
    assert sum(r["kind"] == "agent" for r in records) == 2
    assert sum(r["kind"] == "seed" for r in records) == 4

    calls.clear()
    third = run_experiment(config, out, progress=False)
    assert calls == [] and third.skipped == ["LinUCB", "random"]


def test_a_different_config_is_refused_unless_overwrite(
    finished, tmp_path, monkeypatch, capsys
):
    _, done = finished
    out = Path(shutil.copytree(done, tmp_path / "out"))
    before = files_of(out)
    other = tmp_path / "other.toml"  # the same env and run, fewer agents
    other.write_text(TINY.format(alpha=1.0, label="LinUCB", horizon=50).split("[[")[0])
    with other.open("a") as f:
        f.write('[[agents]]\nname = "random"\n')
    calls = count_runs(monkeypatch)
    with pytest.raises(BanditConfigError, match="holds results of a different config"):
        run_experiment(load_config(other), out, progress=False)
    assert cli.main(["run", str(other), "--out", str(out)]) == cli.EXIT_CONFIG_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--overwrite" in err and "\n" not in err
    assert calls == []
    assert files_of(out) == before

    result = run_experiment(load_config(other), out, overwrite=True, progress=False)
    assert result.ran == ["random"] and calls == ["random"]
    manifest = storage.read_manifest(out)
    assert manifest["config_hash"] == load_config(other).hash()
    assert [a["label"] for a in manifest["agents"]] == ["random"]
    assert [p.name for p in (out / "curves").iterdir()] == ["000-random.parquet"]
    assert {r["agent"] for r in storage.read_summaries(out)} == {"random"}


def test_a_foreign_non_empty_folder_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(BanditConfigError, match="not empty and holds no bandits"):
        run_experiment(load_config(tiny_config(tmp_path)), out, progress=False)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
