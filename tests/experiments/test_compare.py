"""`bandits compare` and `bandits bench --compare` on hand-made results, plus small
executor and memory-accounting contracts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from bandits.validation import BanditConfigError
from experiments import bench, cli
from experiments.execute.executors import (
    WORKERS_ENV,
    LocalExecutor,
    cpu_count,
    make_executor,
)
from experiments.execute.progress import PeakMemory
from experiments.execute.runner import round_robin
from experiments.plan.planner import Task
from experiments.report import compare
from experiments.store import storage

NASTY = "<i>agent</i>&"


def write_run(
    directory: Path, finals: dict[str, list[float]], seeds=None, horizon: int = 100
) -> None:
    """A results folder with only what `compare` reads: manifest and summaries."""
    records = []
    for label, values in finals.items():
        for seed, value in zip(seeds or range(len(values)), values, strict=True):
            records.append(
                {"kind": "seed", "agent": label, "seed": seed, "final_regret": value}
            )
    storage.write_summaries(directory / storage.SUMMARIES, records)
    config = {
        "env": {"id": "Linear-v0", "params": {}},
        "run": {
            "horizon": horizon,
            "seeds": list(seeds or range(3)),
            "resample_params": False,
        },
    }
    storage.write_manifest(directory, {"title": directory.name, "config": config})


def test_paired_difference_and_overlap(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_run(a, {NASTY: [10.0, 12.0, 14.0], "only A": [1.0, 1.0, 1.0]})
    write_run(b, {NASTY: [11.0, 13.5, 15.0], "only B": [1.0, 2.0, 3.0]})
    result = compare.compare_results(a, b)
    assert result.paired and result.only_a == ["only A"] and result.only_b == ["only B"]
    (row,) = result.rows
    assert row.mean_a == 12.0 and row.mean_b == pytest.approx(13.1666667)
    # Paired by seed: differences 1.0, 1.5, 1.0 -> mean 7/6, sd 0.2887.
    d = np.array([1.0, 1.5, 1.0])
    half = scipy.stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert row.difference == pytest.approx(d.mean())
    assert (row.difference_low, row.difference_high) == pytest.approx(
        (d.mean() - half, d.mean() + half)
    )
    assert row.overlap  # [7.03, 16.97] and [8.9, 17.4]


def test_independent_runs_use_welch_and_detect_separation(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_run(a, {"x": [1.0, 1.1, 0.9, 1.0]}, seeds=[0, 1, 2, 3])
    write_run(b, {"x": [5.0, 5.2, 4.8, 5.0]}, seeds=[4, 5, 6, 7])
    result = compare.compare_results(a, b)
    assert not result.paired
    (row,) = result.rows
    va, vb = 0.02 / 3 / 4, 0.08 / 3 / 4  # sample variances / n
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 3)
    half = scipy.stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    assert (row.difference_low, row.difference_high) == pytest.approx(
        (4.0 - half, 4.0 + half)
    )
    assert not row.overlap


def test_compare_cli_writes_escaped_reports(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    write_run(a, {NASTY: [10.0, 12.0, 14.0]})
    write_run(b, {NASTY: [11.0, 13.5, 15.0]}, horizon=200)
    assert cli.main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert NASTY in out and "+1.167" in out and "different horizons" in out
    page = (b / "compare" / "compare.html").read_text()
    assert NASTY not in page and "&lt;i&gt;agent&lt;/i&gt;&amp;" in page
    assert "<script" not in page
    markdown = (b / "compare" / "compare.md").read_text()
    assert NASTY not in markdown and "| yes |" in markdown


def test_compare_without_shared_series_is_an_error(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    write_run(a, {"x": [1.0, 2.0, 3.0]})
    write_run(b, {"y": [1.0, 2.0, 3.0]})
    with pytest.raises(BanditConfigError, match="share no series label"):
        compare.compare_results(a, b)
    assert cli.main(["compare", str(a), str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --- bench ----------------------------------------------------------------------


def saved_run(storage_dir: Path, number: int, stamp: str, median: float, ratio: float):
    folder = storage_dir / "Linux-CPython-3.11-64bit"
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "datetime": stamp,
        "benchmarks": [
            {
                "name": "test_sweep",
                "fullname": "tests/benchmarks/test_sweep_bench.py::test_sweep",
                "stats": {"median": median, "mean": median, "min": median},
                "extra_info": {"sweep_vs_separate_warm": ratio, "note": "text"},
            }
        ],
    }
    path = folder / f"{number:04d}_abc_{stamp[:10]}.json"
    path.write_text(json.dumps(data))
    return path


def test_bench_compare_reads_the_last_two_saved_runs(tmp_path, capsys):
    storage_dir = tmp_path / ".benchmarks"
    saved_run(storage_dir, 1, "2026-01-01T00:00:00", 2.0, 1.5)
    first = saved_run(storage_dir, 2, "2026-01-02T00:00:00", 4.0, 1.2)
    second = saved_run(storage_dir, 3, "2026-01-03T00:00:00", 3.0, 1.8)
    assert bench.saved_runs(storage_dir)[-2:] == [first, second]
    rows = bench.compare_runs(first, second)
    assert [(r.kind, r.before, r.after) for r in rows] == [
        ("median s", 4.0, 3.0),
        ("value", 1.2, 1.8),
    ]
    assert rows[0].change == pytest.approx(-0.25)
    root = Path(__file__).resolve().parents[2]
    args = ["bench", "--compare", "--no-run", "--storage", str(storage_dir)]
    assert cli.main([*args, "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "-25.0%" in out and "+50.0%" in out and "[sweep_vs_separate_warm]" in out


def test_bench_command_is_the_make_bench_run(tmp_path):
    command = bench.pytest_command(tmp_path / "store", keyword="sweep")
    assert command[1:5] == ["-m", "pytest", "tests/benchmarks", "--benchmark-only"]
    assert "--benchmark-autosave" in command and "no:xdist" in command
    assert command[-2:] == ["-k", "sweep"]
    with pytest.raises(BanditConfigError, match="no tests/benchmarks folder"):
        bench.find_root(tmp_path)
    with pytest.raises(BanditConfigError, match="needs two saved runs"):
        bench.bench(
            compare=True,
            run=False,
            root=Path(__file__).parents[2],
            storage=tmp_path / "empty",
        )


# --- executors and memory accounting ---------------------------------------------


def test_executor_names_are_checked():
    with pytest.raises(BanditConfigError, match="--executor must be one of"):
        make_executor("ray")
    with pytest.raises(BanditConfigError, match="--workers is only used"):
        make_executor("dask", "tcp://x:1", workers=2)


def test_default_worker_count_comes_from_bandits_workers(monkeypatch):
    monkeypatch.setenv(WORKERS_ENV, "3")
    assert LocalExecutor().workers == 3
    assert LocalExecutor(2).workers == 2  # --workers wins
    monkeypatch.delenv(WORKERS_ENV)
    assert LocalExecutor().workers == cpu_count()
    for bad in ("0", "-1", "two", "1.5"):
        monkeypatch.setenv(WORKERS_ENV, bad)
        with pytest.raises(BanditConfigError, match=f"{WORKERS_ENV} must be"):
            LocalExecutor()


def test_tasks_go_to_workers_one_chunk_of_every_program_at_a_time():
    def task(program, chunk):
        return Task(program, chunk, (), {"task": f"{program}-{chunk}"})

    # The plan's order: program by program (program 1 has one chunk).
    tasks = [task(0, 0), task(0, 1), task(0, 2), task(1, 0), task(2, 0), task(2, 1)]
    assert [(t.program, t.chunk) for t in round_robin(tasks)] == [
        (0, 0), (1, 0), (2, 0), (0, 1), (2, 1), (0, 2),
    ]  # fmt: skip
    # Resumed runs keep the rule over what is left.
    assert [(t.program, t.chunk) for t in round_robin(tasks[2:])] == [
        (0, 2), (1, 0), (2, 0), (2, 1),
    ]  # fmt: skip


def test_peak_memory_sees_a_large_allocation():
    with PeakMemory(interval_s=0.001) as memory:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        block.sum()
        del block
    # The allocation is resident at exit of `ones` at least until `del`; the
    # sampler or the exit reading sees most of it (allow for 25% slack).
    assert memory.increase_bytes > 48 * 2**20
    assert memory.peak_bytes >= memory.start_bytes
