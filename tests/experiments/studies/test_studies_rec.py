"""Smoke runs of the recommendation study scripts (tiny settings).

Each runs the study's `main` end to end in this process (config loading, the
sweep, summaries, the plot) with `--quick` and two of the config's agents, to keep
the compile count low; the command line itself is `main(sys.argv[1:])`.
"""

from __future__ import annotations

import importlib
import json

import pytest

AGENTS = ["--agents", "Random", "LinUCB items only"]


class Done:
    """What a run of a study's `main` returned and printed."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _run(capsys, module: str, *args: str) -> Done:
    main = importlib.import_module(module).main
    capsys.readouterr()
    code = main(["--quiet", *args])
    out = capsys.readouterr()
    return Done(code, out.out, out.err)


@pytest.mark.slow
def test_context_value_study_quick(tmp_path, capsys):
    done = _run(
        capsys,
        "experiments.studies.context_value",
        "--quick",
        "--out",
        str(tmp_path),
        *AGENTS,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert {(r["context_strength"], r["agent"]) for r in rows} == {
        (s, a) for s in (0.0, 1.0) for a in ("Random", "LinUCB items only")
    }
    for row in rows:
        assert (
            row["final_regret_low"]
            <= row["final_regret_mean"]
            <= row["final_regret_high"]
        )
        assert row["seeds"] == 2 and row["horizon"] == 200
    # Through the platform: the report with its sensitivity plot over the grid.
    assert (tmp_path / "sensitivity-env-context_strength.png").stat().st_size > 0
    assert "context_strength" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "summary.csv").read_text().startswith("context_strength,agent")
    # A rerun resumes: every chunk is reused, the table is the same.
    again = _run(
        capsys,
        "experiments.studies.context_value",
        "--quick",
        "--out",
        str(tmp_path),
        *AGENTS,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((tmp_path / "summary.json").read_text()) == rows
    last_run = json.loads((tmp_path / "manifest.json").read_text())["last_run"]
    assert last_run["computed_chunks"] == []


@pytest.mark.slow
def test_drift_study_quick(tmp_path, capsys):
    done = _run(
        capsys,
        "experiments.studies.drift_study",
        "--quick",
        "--out",
        str(tmp_path),
        *AGENTS,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert {(r["condition"], r["agent"]) for r in rows} == {
        (c, a) for c in ("no drift", "drift") for a in ("Random", "LinUCB items only")
    }
    for row in rows:
        if row["condition"] == "drift":
            assert len(row["recovery_steps"]) == 1  # one shift, at step 150
        else:
            assert row["recovery_steps"] is None
    assert (tmp_path / "drift.png").stat().st_size > 0


@pytest.mark.parametrize(
    "module", ["experiments.studies.context_value", "experiments.studies.drift_study"]
)
def test_unknown_agent_label_is_rejected_before_running(module, tmp_path, capsys):
    done = _run(capsys, module, "--quick", "--out", str(tmp_path), "--agents", "Nobody")
    assert done.returncode != 0
    assert "unknown agent label" in done.stderr and "'Random'" in done.stderr
    assert not (tmp_path / "summary.json").exists()


def test_moving_average_and_recovery_golden_values():
    import numpy as np

    from experiments.studies.drift_study import moving_average, recovery_steps

    np.testing.assert_allclose(
        moving_average(np.array([2.0, 4.0, 6.0, 8.0]), 2), [2, 3, 5, 7]
    )
    # Level 1 before the shift at 4, a jump to 3, back to 1 from step 8 on.
    regret = np.array([1, 1, 1, 1, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1], dtype=float)
    curve = moving_average(regret, 2)
    # First t >= 4 + 2 with curve[t] <= 1.1: curve[9] = 1 (steps 8, 9) -> 9 - 4 = 5.
    assert recovery_steps(curve, regret, [4], window=2, tol=0.1) == [5]
    assert recovery_steps(curve, regret, [1], window=2, tol=0.1) == [None]  # too early
    never = np.array([1, 1, 1, 1, 3, 3, 3, 3], dtype=float)
    assert recovery_steps(moving_average(never, 2), never, [4], 2, 0.1) == [None]
