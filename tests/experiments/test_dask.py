"""Running chunks on a Dask cluster: a `LocalCluster` of two worker processes gives the
same per-seed results as local execution; misconfigured workers are refused."""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest

from bandits.validation import BanditConfigError
from experiments.config.loader import parse_config
from experiments.execute.executors import DaskExecutor, LocalExecutor
from experiments.execute.runner import run_experiment
from experiments.store import storage

distributed = pytest.importorskip("distributed")

CONFIG = {
    "name": "dask",
    "env": {"id": "LinearBernoulli-v0", "params": {"num_arms": 3, "dim": 4}},
    "run": {"horizon": 80, "seeds": 6, "chunk_size": 2, "prediction_seeds": 2},
    "agents": [
        {"name": "linucb", "label": "LinUCB", "grid": {"alpha": [0.5, 1.5]}},
        {"name": "random"},
    ],
}


def local_cluster(**kwargs):
    return distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        **kwargs,
    )


def per_seed(directory):
    return {
        (r["agent"], r["seed"]): (r["final_regret"], r["mean_reward"])
        for r in storage.read_summaries(directory)
        if r["kind"] == "seed"
    }


@pytest.mark.slow
def test_dask_local_cluster_matches_local_execution(tmp_path, monkeypatch):
    # Worker processes inherit the environment: one JAX device each.
    monkeypatch.setenv("BANDITS_CPU_DEVICES", "1")
    config = parse_config(copy.deepcopy(CONFIG))
    local = run_experiment(config, tmp_path / "local", progress=False)
    with local_cluster() as cluster:
        executor = DaskExecutor(cluster.scheduler_address, timeout_s=60)
        try:
            remote = run_experiment(
                config, tmp_path / "dask", progress=False, executor=executor
            )
            hosts = {
                storage.read_manifest(remote.output)["last_run"]["executor"],
            }
        finally:
            executor.close()
    assert hosts == {f"dask ({cluster.scheduler_address})"}
    assert sorted(remote.computed) == sorted(local.computed)
    assert len(remote.computed) == 3 * 3  # 3 series (2 swept + random) x 3 chunks
    assert per_seed(remote.output) == per_seed(local.output)
    assert len(per_seed(local.output)) == 3 * 6
    curves_local = storage.read_curves(local.output / "curves")
    curves_remote = storage.read_curves(remote.output / "curves")
    for label, c in curves_local.items():
        for field in c._fields:
            np.testing.assert_array_equal(
                getattr(c, field), getattr(curves_remote[label], field)
            )
    # Clicks (0/1 rewards): the reward model is scored as a click predictor.
    records = {
        r["agent"]: r
        for r in storage.read_summaries(remote.output)
        if r["kind"] == "agent"
    }
    metrics = records["LinUCB alpha=0.5"]["prediction"]["metrics"]
    assert records["LinUCB alpha=0.5"]["prediction"]["reward_type"] == "bernoulli"
    assert 0.0 <= metrics["roc_auc"]["mean"] <= 1.0
    assert metrics["roc_auc"]["seeds"] == 2
    local_records = {
        r["agent"]: r
        for r in storage.read_summaries(local.output)
        if r["kind"] == "agent"
    }
    assert (
        local_records["LinUCB alpha=0.5"]["prediction"]
        == (records["LinUCB alpha=0.5"]["prediction"])
    )


def test_workers_with_several_devices_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("BANDITS_CPU_DEVICES", "2")
    config = parse_config(copy.deepcopy(CONFIG))
    with local_cluster() as cluster:
        executor = DaskExecutor(cluster.scheduler_address, timeout_s=60)
        with pytest.raises(BanditConfigError, match="one JAX device each"):
            run_experiment(config, tmp_path / "out", progress=False, executor=executor)
    assert not (tmp_path / "out").exists()


def test_missing_executor_arguments():
    with pytest.raises(BanditConfigError, match="--scheduler ADDRESS is required"):
        DaskExecutor("")
    assert LocalExecutor(2).describe() == "local (2 worker processes)"


@pytest.mark.slow
def test_a_study_runs_its_cells_on_dask(tmp_path, monkeypatch):
    """The study runner hands its cells to the same executors: on a Dask
    cluster it stores the records a local run stores."""
    from experiments.config.sources import parse_toml
    from experiments.execute import cells
    from experiments.studies import ope_benchmark
    from tests.experiments.test_cells import CONFIG as STUDY

    monkeypatch.setenv("BANDITS_CPU_DEVICES", "1")
    study = ope_benchmark.read(parse_toml(STUDY, "test"))
    local = cells.run_cells(
        "ope_benchmark", study, tmp_path / "local", executor=LocalExecutor(1),
        progress=False,
    )  # fmt: skip
    with local_cluster() as cluster:
        executor = DaskExecutor(cluster.scheduler_address, timeout_s=60)
        try:
            remote = cells.run_cells(
                "ope_benchmark", study, tmp_path / "dask", executor=executor,
                progress=False,
            )  # fmt: skip
        finally:
            executor.close()
    assert (
        sorted(remote.computed) == sorted(local.computed) and len(local.computed) == 2
    )
    assert remote.records == local.records
    stored = json.loads(next((tmp_path / "dask" / "cells").glob("*.json")).read_text())
    assert stored["worker"]["pid"] != os.getpid()
