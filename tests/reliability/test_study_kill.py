"""A study run killed with SIGKILL, then rerun: the cells it stored are kept,
the rest are computed, and the records equal an uninterrupted run's."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from experiments.execute import cells
from tests.experiments.test_cells import CONFIG
from tests.experiments.test_resume import start_run as start

# Four cells (two loggers x two sizes) in order on one worker.
KILLED = CONFIG.replace(
    """[[logging]]
label = "uniform"
kind = "uniform"
""",
    """[[logging]]
label = "uniform"
kind = "uniform"

[[logging]]
label = "softmax"
kind = "softmax"
temperature = 1.0
""",
)


def stored(out: Path) -> list[str]:
    folder = out / cells.CELLS_DIR
    return sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else []


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / cells.RECORDS).open()]


@pytest.mark.slow
def test_sigkill_then_rerun_computes_only_the_missing_cells(tmp_path):
    config = tmp_path / "killed.toml"
    config.write_text(KILLED)
    out = tmp_path / "out"
    process = start(config, out)
    deadline = time.monotonic() + 240
    while not stored(out) and process.poll() is None:
        assert time.monotonic() < deadline, "no cell was stored in time"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)  # the command and its worker
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, process.stderr.read()
    before = stored(out)
    assert 1 <= len(before) < 4, before
    assert not (out / cells.RECORDS).exists()

    rerun = start(config, out)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert f"computed {4 - len(before)} cell(s), reused {len(before)}" in stdout
    assert len(stored(out)) == 4
    assert not list((out / cells.CELLS_DIR).glob("*.partial"))

    whole = tmp_path / "whole"
    again = start(config, whole)
    _, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    assert records(out) == records(whole)
