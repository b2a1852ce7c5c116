"""Killing `bandits run` (SIGKILL) mid-way and rerunning: identical results, and only
the unfinished chunks are recomputed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from experiments.config.loader import load_config
from experiments.execute.executors import LocalExecutor
from experiments.execute.runner import run_experiment
from experiments.store import storage

# One LinUCB program, 8 seeds in 4 chunks of 2; each chunk takes a noticeable
# time (T = 40,000 rounds), so the run can be killed between chunks.
CONFIG = """
name = "killed"
[env]
id = "Linear-v0"
params = { num_arms = 10, dim = 20 }
[run]
horizon = 40000
seeds = 8
chunk_size = 2
curve_points = 200
prediction_seeds = 0
[[agents]]
name = "linucb"
label = "LinUCB"
"""
ALL_CHUNKS = [f"0000-c{c:04d}.parquet" for c in range(4)]


def start_run(config: Path, out: Path) -> subprocess.Popen:
    """`bandits run` in its own process group, one worker (chunks in order)."""
    command = [sys.executable, "-m", "experiments.cli", "run", str(config)]
    return subprocess.Popen(
        [*command, "--out", str(out), "--workers", "1", "--quiet"],
        cwd=config.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stored_chunks(out: Path) -> list[str]:
    folder = out / storage.CHUNKS_DIR
    return sorted(p.name for p in folder.glob("*.parquet")) if folder.is_dir() else []


@pytest.mark.slow
def test_sigkill_then_rerun_recomputes_only_unfinished_chunks(tmp_path):
    config = tmp_path / "killed.toml"
    config.write_text(CONFIG)
    out = tmp_path / "out"

    process = start_run(config, out)
    deadline = time.monotonic() + 240
    while not stored_chunks(out) and process.poll() is None:
        assert time.monotonic() < deadline, "no chunk was written in time"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)  # the CLI and its worker process
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, process.stderr.read()

    done_before = stored_chunks(out)
    assert done_before and len(done_before) < len(ALL_CHUNKS), done_before
    assert not (out / "curves").exists() or not list((out / "curves").iterdir())

    rerun = start_run(config, out)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    manifest = storage.read_manifest(out)
    computed = sorted(manifest["last_run"]["computed_chunks"])
    assert computed == [c for c in ALL_CHUNKS if c not in done_before]
    assert sorted(manifest["last_run"]["reused_chunks"]) == done_before
    assert f"computed {len(computed)} chunk(s), reused {len(done_before)}" in stdout
    assert not stored_chunks(out)  # merged into curves/ and removed
    assert not list(out.rglob(".*.tmp"))

    # An uninterrupted run (two workers, in this process) stores the same numbers.
    reference = run_experiment(
        load_config(config),
        tmp_path / "reference",
        progress=False,
        executor=LocalExecutor(2),
    )
    assert sorted(reference.computed) == ALL_CHUNKS
    resumed = storage.read_curves(out / "curves")["LinUCB"]
    whole = storage.read_curves(reference.output / "curves")["LinUCB"]
    for field in whole._fields:
        np.testing.assert_array_equal(getattr(resumed, field), getattr(whole, field))
    seeds = [
        {k: r[k] for k in ("seed", "final_regret", "optimal_fraction", "mean_reward")}
        for r in storage.read_summaries(out)
        if r["kind"] == "seed"
    ]
    assert seeds == [
        {k: r[k] for k in ("seed", "final_regret", "optimal_fraction", "mean_reward")}
        for r in storage.read_summaries(reference.output)
        if r["kind"] == "seed"
    ]
    assert [s["seed"] for s in seeds] == list(range(8))
