"""Running a project module (a study, the CLI) in a fresh interpreter."""

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
