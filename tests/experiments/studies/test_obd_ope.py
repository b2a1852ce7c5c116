"""Smoke run of the Open Bandit Dataset study in a subprocess (`--quick`: the
first 3,000 events, 3 resamples, 20,000 Monte Carlo draws), checked against the
dataset's facts and an independent NumPy computation of IPS."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bandits import ope
from envs import obd
from experiments.execute import cells
from tests.experiments.modules import run_module

MODULE = "experiments.studies.obd_ope"


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("obd_ope")
    done = run_module(MODULE, "--quick", "--out", str(out), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_quick_study_scores_every_estimator_against_on_policy_truth(quick):
    out, summary = quick
    records = {r["direction"]: r for r in summary["records"]}
    assert set(records) == {"bts_from_random", "random_from_bts"}
    # Ground truth: the on-policy click rates of the full logs (42 and 38 clicks).
    assert records["bts_from_random"]["truth"] == 0.0042
    assert records["random_from_bts"]["truth"] == 0.0038
    for record in records.values():
        assert record["events"] == 3000 and record["resamples"] == 3
        names = [e["estimator"] for e in record["estimators"]]
        assert names == list(ope.ESTIMATORS)  # all eight, in the kernel order
        for e in record["estimators"]:
            values = np.asarray(e["resample_values"])
            errors = np.abs(values - record["truth"]) / record["truth"]
            assert e["relative_error_mean"] == pytest.approx(errors.mean(), rel=1e-9)
            assert e["relative_error_low"] <= e["relative_error_mean"]
            assert e["relative_error_mean"] <= e["relative_error_high"]
            assert e["low"] <= e["value"] <= e["high"]
            assert e["covers_truth"] == (e["low"] <= record["truth"] <= e["high"])
    # Uniform logging: E[w] = sum_a pi(a | slot) = 1. Standard error of the mean
    # weight over 3,000 events is 0.036 here (observed 0.889); allow 0.15.
    assert abs(records["bts_from_random"]["mean_weight"] - 1.0) < 0.15
    published = {
        e["estimator"]: e["published_mean"]
        for e in records["bts_from_random"]["estimators"]
    }
    assert published["dm"] == 0.156876 and published["clipped_ips"] is None
    page = (out / "summary.md").read_text()
    assert "OBP published" in page and "0.157 (0.110)" in page
    for record in records.values():
        assert record["settings"]["rows"] == 3000
        assert record["settings"]["draws"] == 20_000
    assert "Settings: resamples = 3, draws = 20000" in page
    assert sorted(p.name for p in (out / "cells").iterdir()) == sorted(
        cells.file_name(f"all | {d}") for d in ("bts_from_random", "random_from_bts")
    )
    assert (out / "obd_ope.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_quick_study_ips_matches_a_numpy_formula(quick):
    """IPS on the full (3,000-event) logs, recomputed here from the loader and
    the Monte Carlo BTS probabilities: mean of pi(a_i | k_i) / p_i * r_i."""
    _, summary = quick
    record = next(r for r in summary["records"] if r["direction"] == "bts_from_random")
    logs = obd.load("random", "all").take(np.arange(3000))
    alpha, beta = obd.bts_prior("all")
    by_slot = obd.bts_position_probs(alpha, beta, draws=20_000, seed=0)
    pi = by_slot[logs.action, logs.position]
    expected = np.mean(pi / logs.propensity.astype(np.float64) * logs.reward)
    ips = next(e for e in record["estimators"] if e["estimator"] == "ips")
    assert ips["value"] == pytest.approx(expected, rel=1e-5)  # float32 sums


def test_bad_arguments_are_refused_before_any_work(tmp_path):
    done = run_module(MODULE, "--resamples", "1", "--out", str(tmp_path), timeout=120)
    assert done.returncode == 2
    assert "resamples must be at least 2" in done.stderr
    assert not (tmp_path / "summary.json").exists()
    done = run_module(
        MODULE, "--campaigns", "kids", "--out", str(tmp_path), timeout=120
    )
    assert done.returncode == 2 and "--campaigns" in done.stderr
