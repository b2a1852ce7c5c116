"""Sizes that cannot fit are refused before the output folder exists, with the
estimate, its largest part and the machine's memory."""

from __future__ import annotations

import pytest

import envs
from bandits import BanditConfigError
from experiments.config.loader import build, parse_config
from experiments.execute.runner import run_experiment
from experiments.plan import resources


def config(env_params=None, **run):
    return {
        "env": {"id": "Linear-v0", "params": env_params or {"num_arms": 3, "dim": 2}},
        "run": {"horizon": 100, "seeds": 2, **run},
        "agents": [{"name": "linucb"}],
    }


@pytest.mark.parametrize(
    ("data", "largest"),
    [
        (config(horizon=10**12), "trajectories of a chunk"),
        (
            config(env_params={"num_arms": 10**9, "dim": 2}, prediction_seeds=0),
            "agent states",
        ),
        (config(prediction_contexts=2 * 10**8, prediction_seeds=1), "held-out"),
    ],
)
def test_a_run_that_cannot_fit_is_refused_before_anything_exists(
    tmp_path, monkeypatch, data, largest
):
    # The machine's memory as seen by the check: 24 GiB, whatever runs the test.
    monkeypatch.setattr(resources, "machine_memory", lambda: 24 * 2**30)
    out = tmp_path / "out"
    with pytest.raises(BanditConfigError) as info:
        run_experiment(parse_config(data), out, progress=False)
    message = str(info.value)
    assert (
        "of memory" in message and largest in message and "this machine has" in message
    )
    assert not out.exists()


def test_too_many_seeds_are_refused_while_parsing():
    with pytest.raises(BanditConfigError, match=r"run\.seeds must be at most"):
        parse_config(config(seeds=300_000_000))


def test_a_normal_run_is_estimated_small():
    parts = resources.estimate(build(parse_config(config())), parallel=2)
    assert 0 < parts["total"] < 2**30


@pytest.mark.parametrize("env_id", sorted(envs.registered()))
def test_every_kind_of_env_can_be_estimated(env_id):
    data = {
        "env": {"id": env_id},
        "run": {"horizon": 100, "seeds": 2},
        "agents": [{"name": "random"}],
    }
    parts = resources.estimate(build(parse_config(data)), parallel=2)
    assert 0 < parts["total"] < 2**30
