"""Helpers of the platform tests: running a project module (a study, the CLI) in
a fresh interpreter, and running a plan's tasks in the test process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The source checkout (where `python -m experiments...` runs)."""


def run_module(
    module: str, *args: str, cwd: Path = ROOT, timeout: float = 900
) -> subprocess.CompletedProcess:
    """`python -m module args...`, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class InProcessExecutor:
    """Runs every task in this process (the test process is the one worker, so a
    registry entry or a monkeypatch of the test is visible to the tasks)."""

    name = "in-process"

    def check(self) -> None:
        return None

    def describe(self) -> str:
        return "in-process"

    def run(self, specs):
        from experiments.execute.tasks import execute_task

        for spec in specs:
            yield spec, execute_task(spec)
