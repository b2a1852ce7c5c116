"""The `bandits` CLI and the runner: smoke runs, re-rendering, resume, refusal,
bad input that must leave results untouched."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bandits.validation import BanditConfigError
from experiments import cli
from experiments.config.loader import load_config
from experiments.execute.runner import run_experiment
from experiments.store import storage
from tests.experiments.modules import run_module

TINY = """
name = "tiny"
[env]
id = "Linear-v0"
params = {{ num_arms = 3, dim = 4 }}
[run]
horizon = {horizon}
seeds = 2
prediction_seeds = {predictions}
[[agents]]
name = "linucb"
label = "{label}"
hyperparameters = {{ alpha = {alpha} }}
[[agents]]
name = "random"
"""


def tiny_config(
    tmp_path: Path,
    *,
    alpha: float = 1.0,
    label: str = "LinUCB",
    horizon: int = 200,
    predictions: int = 0,
) -> Path:
    path = tmp_path / f"tiny-{alpha}-{horizon}.toml"
    path.write_text(
        TINY.format(alpha=alpha, label=label, horizon=horizon, predictions=predictions)
    )
    return path


RESULT_FIELDS = (
    "kind",
    "agent",
    "seed",
    "seeds",
    "horizon",
    "final_regret",
    "final_regret_mean",
    "final_regret_low",
    "final_regret_high",
    "final_regret_std",
    "optimal_fraction",
    "mean_reward",
    "prediction",
)


def result_numbers(directory: Path) -> list[dict]:
    """Summary lines without timings (what must be reproducible)."""
    return [
        {k: r[k] for k in RESULT_FIELDS if k in r}
        for r in storage.read_summaries(directory)
    ]


def bandits_cli(*args: str, cwd: Path):
    """Runs the CLI module in a fresh interpreter."""
    return run_module("experiments.cli", *args, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One subprocess run of a tiny config (T=200, 2 seeds, 2 agents)."""
    tmp_path = tmp_path_factory.mktemp("smoke")
    config = tiny_config(tmp_path, predictions=2)
    out = tmp_path / "out"
    result = bandits_cli("run", str(config), "--out", str(out), cwd=tmp_path)
    return result, out


def test_run_writes_results_and_report(smoke):
    result, out = smoke
    assert result.returncode == 0, result.stderr
    assert "computed 2 chunk(s), reused 0 stored chunk(s)" in result.stdout
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
    assert manifest["agents"][0]["peak_memory_bytes"] > 0
    assert manifest["config_hash"] == load_config(out / "config.toml").hash()
    assert sorted(manifest["last_run"]["computed_chunks"]) == [
        "0000-c0000.parquet",
        "0001-c0000.parquet",
    ]
    assert not list((out / "chunks").glob("*"))  # merged into curves/
    # LinUCB has a reward model: evaluated on held-out contexts (Gaussian rewards,
    # so MSE and best-arm accuracy only); random has none.
    linucb, random = (r for r in records if r["kind"] == "agent")
    assert linucb["prediction"]["reward_type"] == "real"
    assert linucb["prediction"]["metrics"]["mse"]["seeds"] == 2
    assert linucb["prediction"]["metrics"]["roc_auc"] is None
    assert "prediction" not in random
    markdown = (out / "report.md").read_text()
    for section in ("Compute cost", "Reward-model metrics (held-out contexts)"):
        assert f"## {section}" in markdown


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
    assert "slate_size (from a slate env)" in out  # filled in by the loader


def test_config_errors_are_one_line_without_traceback(tmp_path, capsys):
    config = tiny_config(tmp_path, horizon=0)
    code = cli.main(["run", str(config), "--out", str(tmp_path / "o")])
    assert code == cli.EXIT_CONFIG_ERROR
    assert (
        capsys.readouterr().err.strip()
        == "error: run.horizon must be a positive integer, got 0"
    )
    assert not (tmp_path / "o").exists()


def test_report_of_a_missing_folder_is_an_error(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "nowhere")]) == cli.EXIT_CONFIG_ERROR
    assert "does not exist" in capsys.readouterr().err


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


def test_rerun_resumes_and_skips_finished_series(finished, tmp_path):
    config_path, done = finished
    config = load_config(config_path)
    out = Path(shutil.copytree(done, tmp_path / "out"))
    linucb_file = out / "curves" / "000-LinUCB.parquet"
    stamp = linucb_file.stat().st_mtime_ns

    # As if the run had been killed before the second series was merged.
    manifest = storage.read_manifest(out)
    finished_at = manifest["agents"][0]["finished"]
    manifest["agents"] = manifest["agents"][:1]
    storage.write_manifest(out, manifest)
    (out / "curves" / "001-random.parquet").unlink()

    second = run_experiment(config, out, progress=False)
    assert second.computed == ("0001-c0000.parquet",)
    assert second.reused == ("0000-c0000.parquet",)
    assert second.skipped == ["LinUCB"] and second.ran == ["random"]
    assert linucb_file.stat().st_mtime_ns == stamp
    manifest = storage.read_manifest(out)
    assert [a["label"] for a in manifest["agents"]] == ["LinUCB", "random"]
    assert manifest["agents"][0]["finished"] == finished_at
    assert manifest["last_run"]["computed_chunks"] == ["0001-c0000.parquet"]
    records = storage.read_summaries(out)
    assert sum(r["kind"] == "agent" for r in records) == 2
    assert sum(r["kind"] == "seed" for r in records) == 4
    assert result_numbers(out) == result_numbers(done)  # the same numbers again

    third = run_experiment(config, out, progress=False)
    assert third.computed == () and third.skipped == ["LinUCB", "random"]


def test_a_different_config_is_refused_unless_overwrite(finished, tmp_path, capsys):
    _, done = finished
    out = Path(shutil.copytree(done, tmp_path / "out"))
    before = files_of(out)
    other = tmp_path / "other.toml"  # the same env and run, fewer agents
    other.write_text(
        TINY.format(alpha=1.0, label="LinUCB", horizon=50, predictions=0).split("[[")[0]
    )
    with other.open("a") as f:
        f.write('[[agents]]\nname = "random"\n')
    with pytest.raises(BanditConfigError, match="holds results of a different config"):
        run_experiment(load_config(other), out, progress=False)
    assert cli.main(["run", str(other), "--out", str(out)]) == cli.EXIT_CONFIG_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--overwrite" in err and "\n" not in err
    assert files_of(out) == before

    result = run_experiment(load_config(other), out, overwrite=True, progress=False)
    assert result.ran == ["random"] and result.computed == ("0000-c0000.parquet",)
    manifest = storage.read_manifest(out)
    assert manifest["config_hash"] == load_config(other).hash()
    assert [a["label"] for a in manifest["agents"]] == ["random"]
    assert [p.name for p in (out / "curves").iterdir()] == ["000-random.parquet"]
    assert {r["agent"] for r in storage.read_summaries(out)} == {"random"}


def test_a_changed_chunk_size_is_a_different_config(finished, tmp_path, capsys):
    config_path, done = finished
    out = Path(shutil.copytree(done, tmp_path / "out"))
    before = files_of(out)
    args = ["run", str(config_path), "--out", str(out), "--chunk-size", "1"]
    assert cli.main(args) == cli.EXIT_CONFIG_ERROR
    assert "holds results of a different config" in capsys.readouterr().err
    assert files_of(out) == before


def test_unreachable_scheduler_is_refused_before_anything_runs(
    finished, tmp_path, capsys
):
    pytest.importorskip("distributed")
    config_path, done = finished
    out = Path(shutil.copytree(done, tmp_path / "out"))
    before = files_of(out)
    args = ["run", str(config_path), "--out", str(out), "--executor", "dask"]
    # Port 9 (discard) on localhost: nothing listens there.
    args += ["--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "1"]
    assert cli.main(args) == cli.EXIT_CONFIG_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --scheduler: cannot reach the Dask scheduler at")
    assert "nothing was run" in err and "\n" not in err
    assert files_of(out) == before
    fresh = tmp_path / "fresh"
    assert cli.main([*args[:3], str(fresh), *args[4:]]) == cli.EXIT_CONFIG_ERROR
    assert not fresh.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scheduler", "tcp://x:1"], "--scheduler is only used with --executor dask"),
        (["--workers", "0"], "--workers must be >= 1"),
        (["--chunk-size", "0"], "--chunk-size must be >= 1"),
        (["--executor", "dask"], "--scheduler ADDRESS is required"),
        (
            ["--executor", "dask", "--scheduler", "tcp://x:1", "--connect-timeout=-1"],
            "--connect-timeout must be a number of seconds > 0",
        ),
    ],
)
def test_bad_run_options_are_one_line_errors(tmp_path, capsys, extra, message):
    out = tmp_path / "o"
    code = cli.main(["run", str(tiny_config(tmp_path)), "--out", str(out), *extra])
    assert code == cli.EXIT_CONFIG_ERROR
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_grid_over_a_missing_hyperparameter_is_refused(tmp_path, capsys):
    config = tmp_path / "grid.toml"
    config.write_text(
        TINY.format(alpha=1.0, label="LinUCB", horizon=10, predictions=0).replace(
            "hyperparameters = { alpha = 1.0 }", "grid = { beta = [1.0, 2.0] }"
        )
    )
    out = tmp_path / "o"
    assert cli.main(["run", str(config), "--out", str(out)]) == cli.EXIT_CONFIG_ERROR
    err = capsys.readouterr().err
    assert "unknown hyperparameter 'beta' in agents[0].grid (agent 'linucb')" in err
    assert not out.exists()


def test_a_foreign_non_empty_folder_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(BanditConfigError, match="not empty and holds no bandits"):
        run_experiment(load_config(tiny_config(tmp_path)), out, progress=False)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.mark.slow
def test_compiled_programs_are_kept_on_disk_and_reused(tmp_path):
    """A first run fills the compile cache; a second run of the same config
    (another folder) compiles nothing new and gives the same numbers."""
    import os
    import subprocess
    import sys

    from tests.experiments.modules import ROOT

    config = tiny_config(tmp_path, horizon=30)
    cache = tmp_path / "cache"

    def run(out: str) -> list[str]:
        env = {**os.environ, "BANDITS_COMPILE_CACHE": str(cache)}
        done = subprocess.run(
            [sys.executable, "-m", "experiments.cli", "run", str(config), "--out",
             str(tmp_path / out), "--quiet"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return sorted(p.name for p in cache.glob("*")) if cache.exists() else []

    first = run("a")
    assert first, "the first run stored no compiled program"
    assert run("b") == first  # every program came from the cache
    assert result_numbers(tmp_path / "a") == result_numbers(tmp_path / "b")


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_the_compile_cache_can_be_turned_off(how, tmp_path, monkeypatch):
    """--no-compile-cache (or BANDITS_COMPILE_CACHE=0) turns JAX's cache off in
    this process and, through the environment, in its workers, even where JAX's
    own $JAX_COMPILATION_CACHE_DIR names a folder (as the test suite's does);
    turning it on again restores it."""
    import jax

    from experiments.execute import compile_cache

    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax-own"))
    monkeypatch.setenv(compile_cache.ENV_VAR, "0" if how == "environment" else "")
    monkeypatch.delenv("JAX_ENABLE_COMPILATION_CACHE", raising=False)
    before = (
        jax.config.jax_enable_compilation_cache,
        jax.config.jax_compilation_cache_dir,
    )
    try:
        assert compile_cache.enable(disabled=how == "flag") is None
        assert jax.config.jax_enable_compilation_cache is False
        assert os.environ["JAX_ENABLE_COMPILATION_CACHE"] == "false"
        assert not (tmp_path / "jax-own").exists()

        monkeypatch.setenv(compile_cache.ENV_VAR, str(tmp_path / "on"))
        assert compile_cache.enable() == tmp_path / "on"
        assert jax.config.jax_enable_compilation_cache is True
        assert "JAX_ENABLE_COMPILATION_CACHE" not in os.environ
    finally:
        jax.config.update("jax_enable_compilation_cache", before[0])
        jax.config.update("jax_compilation_cache_dir", before[1])


def _early_starts(monkeypatch, tmp_path, argv):
    """The worker counts `bandits run ARGV` would start ahead of its checks."""
    from experiments.execute import executors

    started: list[int] = []
    monkeypatch.setattr(executors, "prestart", started.append)
    args = cli._parser().parse_args(["run", *argv])
    executor = executors.make_executor("local", None, args.workers)
    cli._start_workers_early(args, executor)
    return started


def test_workers_start_early_only_into_a_new_folder(tmp_path, monkeypatch):
    """Into a new folder the workers start before the config's checks (they
    import meanwhile); into an existing one, which may hold every result, they
    start only when there is work; a malformed file starts none."""
    config = str(tiny_config(tmp_path))
    new = ["--out", str(tmp_path / "new"), "--workers", "2"]
    assert _early_starts(monkeypatch, tmp_path, [config, *new]) == [2]
    (tmp_path / "old").mkdir()
    old = ["--out", str(tmp_path / "old")]
    assert _early_starts(monkeypatch, tmp_path, [config, *old]) == []
    bad = tmp_path / "bad.toml"
    bad.write_text("x = [")
    with pytest.raises(BanditConfigError, match="is not valid TOML"):
        _early_starts(monkeypatch, tmp_path, [str(bad), *new])


def test_list_names_the_studies_and_a_closed_pipe_is_no_error(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "ope_benchmark  (experiments/configs/ope_benchmark.toml" in out
    assert "ridge_numerics" in out and "obd_ope" in out
    # `bandits list | head -1`: the reader leaves early; no error line.
    lister = subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert lister.stdout is not None and lister.stdout.readline()
    lister.stdout.close()
    _, err = lister.communicate(timeout=120)
    assert lister.returncode == 0 and err == b"", err


def test_the_command_ends_at_once_with_its_output_whole(smoke, tmp_path):
    """`entry` (the console script, and `python -m experiments.cli`) ends the
    process with `os._exit` once the output is flushed: a listing larger than
    the pipe's buffer arrives to its last line, the exit status is kept, and the
    pool's semaphores are released first (no resource-tracker warning)."""
    result, _ = smoke
    assert result.returncode == 0
    assert "leaked" not in result.stderr and "Traceback" not in result.stderr
    assert result.stdout.endswith("report.md\n")
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    listing = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "list"],
        capture_output=True,
        text=True,
        timeout=300,
        env=buffered,
        cwd=tmp_path,
    )
    assert listing.returncode == 0 and listing.stderr == ""
    assert len(listing.stdout) > 8192  # more than one buffer: flushed at the end
    assert listing.stdout.endswith(")\n") and "ridge_numerics" in listing.stdout
    failed = bandits_cli("run", str(tmp_path / "missing.toml"), cwd=tmp_path)
    assert failed.returncode == cli.EXIT_CONFIG_ERROR
    assert failed.stderr.startswith("error: ")


def test_an_interrupt_a_command_does_not_report_is_one_line(monkeypatch, capsys):
    """`run_command` (every study's `python -m`) reports an interruption its
    command lets through in one line with exit status 130; the status reaches
    `end_now`."""
    ended = []
    monkeypatch.setattr(cli, "end_now", ended.append)
    monkeypatch.setattr(signal, "signal", lambda *args: None)

    def interrupted() -> int:
        raise KeyboardInterrupt

    assert cli.run_command(interrupted) == 130
    assert ended == [130]
    assert capsys.readouterr().err.startswith("interrupted; finished results")
    assert cli.run_command(lambda: 3) == 3 and ended == [130, 3]
