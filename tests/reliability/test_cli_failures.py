"""Every expected failure of `bandits run` is one `error:` line and an exit code
(2 for bad input, 1 for a failed run), never a traceback."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import cli
from experiments.execute import runner
from experiments.execute.executors import RunFailedError
from tests.experiments.studies.test_ope_benchmark import TINY as OPE_TINY

TOML = """
name = "fails"
[env]
id = "Linear-v0"
params = { num_arms = 3, dim = 2 }
[run]
horizon = 20
seeds = 2
prediction_seeds = 0
[[agents]]
name = "random"
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(TOML)
    return path


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (RunFailedError("a local worker process died (...); rerun to resume"),
         "error: a local worker process died (...); rerun to resume"),
        (OSError(errno.ENOSPC, "No space left on device", "/full/chunks/x"),
         "error: No space left on device (/full/chunks/x); finished chunks are "
         "stored, rerun to resume"),
    ],
)  # fmt: skip
def test_a_failed_run_is_one_line_and_exit_code_1(
    monkeypatch, config, tmp_path, capsys, error, line
):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(runner, "run_experiment", fail)
    code = cli.main(["run", str(config), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == cli.EXIT_RUN_ERROR
    assert capsys.readouterr().err.strip() == line


def test_a_bug_keeps_its_traceback(monkeypatch, config, tmp_path):
    def fail(*args, **kwargs):
        raise RuntimeError("an unexpected state")

    monkeypatch.setattr(runner, "run_experiment", fail)
    with pytest.raises(RuntimeError, match="unexpected"):
        cli.main(["run", str(config), "--out", str(tmp_path / "o"), "--quiet"])


LONG = TOML.replace("horizon = 20", "horizon = 2000000").replace(
    'name = "random"', 'name = "linucb"'
)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().split(")")[-1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry))
    return found


def _long_run(tmp_path: Path) -> subprocess.Popen:
    """`bandits run` of a long config with one worker (stderr captured)."""
    config = tmp_path / "long.toml"
    config.write_text(LONG)
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", "run", str(config), "--quiet",
         "--out", str(tmp_path / "o"), "--workers", "1"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _started_workers(run: subprocess.Popen) -> list[int]:
    """The run's worker processes, once one has started (two minutes at most)."""
    workers: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not workers:
        time.sleep(0.5)
        workers = [
            c
            for c in _children(run.pid)
            if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()
        ]
    assert workers, "no worker process started"
    return workers


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc (Linux)")
def test_a_killed_worker_ends_the_run_with_one_line(tmp_path):
    run = _long_run(tmp_path)
    try:
        workers = _started_workers(run)
        time.sleep(2)
        os.kill(workers[0], signal.SIGKILL)
        _, err = run.communicate(timeout=120)
        assert run.returncode == cli.EXIT_RUN_ERROR, err
        lines = err.strip().splitlines()
        assert lines[-1].startswith("error: a local worker process died")
        assert "Traceback" not in err
    finally:
        run.kill()


# The OPE study's tiny config with a truth log that takes minutes to draw.
LONG_OPE = OPE_TINY.replace("truth_events = 40000", "truth_events = 400000000")


def _long_study(tmp_path: Path) -> subprocess.Popen:
    """A study command (`python -m experiments.studies.ope_benchmark`) of a
    long cell with one worker (stderr captured)."""
    config = tmp_path / "long_ope.toml"
    config.write_text(LONG_OPE)
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.studies.ope_benchmark", "--config",
         str(config), "--quiet", "--out", str(tmp_path / "o"), "--workers", "1"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc (Linux)")
@pytest.mark.parametrize("launch", [_long_run, _long_study], ids=["run", "study"])
def test_sigterm_ends_the_run_as_an_interrupt_does(tmp_path, launch):
    """`kill` or `timeout` (SIGTERM) ends `bandits run` and a study command as
    Ctrl-C does: one line, exit status 130, the worker gone, and no
    resource-tracker warning about semaphores left behind."""
    run = launch(tmp_path)
    try:
        workers = _started_workers(run)
        time.sleep(1)
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=120)
        assert run.returncode == 130, err
        assert err.strip().splitlines()[-1].startswith("interrupted;")
        assert "Traceback" not in err and "leaked" not in err
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    finally:
        run.kill()
