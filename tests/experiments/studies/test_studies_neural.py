"""Smoke runs of the neural-bandit study scripts in a subprocess (tiny settings).

Each runs the script end to end with `--quick` and two agents (to keep the compile
count low), checks the JSON Lines records and the printed table, then reruns it to
check that finished cells are skipped (resume).
"""

from __future__ import annotations

import json

import pytest

from tests.experiments.modules import run_module


def _run(module: str, *args: str):
    return run_module(module, *args)


@pytest.mark.slow
def test_wheel_showdown_quick(tmp_path):
    out = tmp_path / "wheel.jsonl"
    args = ("--quick", "--horizon", "200", "--out", str(out))
    done = _run(
        "experiments.studies.wheel_showdown",
        *args,
        "--agents",
        "neural_linear",
        "uniform",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["agent"], r["delta"]) for r in records} == {
        (a, d) for a in ("neural_linear", "uniform") for d in (0.5, 0.95)
    }
    for r in records:
        assert r["trials"] == 2 and r["horizon"] == 200
        assert len(r["normalised"]) == 2 and r["normalised_mean"] >= 0
    uniform = [r for r in records if r["agent"] == "uniform"]
    # random play over 2 x 200 rounds: normalised regret near 100
    assert all(40 < r["normalised_mean"] < 160 for r in uniform)
    assert "| neural_linear (published) | 0.95 | 9.56 |" in done.stdout

    again = _run("experiments.studies.wheel_showdown", *args, "--agents", "uniform")
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(out.read_text().splitlines()) == 4  # nothing recomputed


@pytest.mark.slow
def test_uci_neural_quick(tmp_path):
    out = tmp_path / "uci.jsonl"
    done = _run(
        "experiments.studies.uci_neural", "--quick", "--horizon", "100",
        "--out", str(out), "--agents", "linucb", "neural_ts",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["dataset"], r["agent"]) for r in records] == [
        ("mushroom", "linucb"),
        ("mushroom", "neural_ts"),
    ]
    for r in records:
        assert 0 <= r["regret_mean"] <= 100 and r["trials"] == 2
        assert r["reference_neural_ts"] == 115.0 and r["reference_verified"] is False
    assert "NeuralTS, Zhang et al. 2021 (unverified)" in done.stdout
