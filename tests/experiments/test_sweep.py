"""Planning sweeps: traced vs separate programs, chunks, plain-data task specs; and
that a traced sweep gives the same numbers as separate runs."""

from __future__ import annotations

import copy
import inspect
import json
import pickle

import jax
import numpy as np
import pytest

import agents as agent_registry
from agents.registry import AgentEntry
from experiments.config.loader import build, parse_config
from experiments.config.schema import AgentSpec
from experiments.execute.executors import LocalExecutor
from experiments.execute.runner import run_experiment
from experiments.execute.tasks import WorkerSetupError, execute_task
from experiments.plan.planner import padded_seeds, plan
from experiments.store import storage

BASE = {
    "name": "sweep",
    "env": {"id": "Linear-v0", "params": {"num_arms": 3, "dim": 4}},
    "run": {"horizon": 60, "seeds": 5, "chunk_size": 2, "prediction_seeds": 0},
    "agents": [
        {"name": "linucb", "label": "LinUCB", "grid": {"alpha": [0.1, 1.0, 2.0]}},
        {"name": "random"},
    ],
}


def planned(data: dict):
    config = parse_config(copy.deepcopy(data))
    return config, plan(build(config), config.hash())


def test_float_grid_is_one_traced_program():
    config, the_plan = planned(BASE)
    assert [p.kind for p in the_plan.programs] == ["sweep x3", "run"]
    sweep = the_plan.programs[0]
    assert dict(sweep.swept) == {"alpha": (0.1, 1.0, 2.0)}
    assert "alpha" not in sweep.kwargs and sweep.kwargs["num_arms"] == 3
    assert [the_plan.series[s].label for s in sweep.series] == [
        "LinUCB alpha=0.1",
        "LinUCB alpha=1.0",
        "LinUCB alpha=2.0",
    ]
    assert the_plan.chunks == ((0, 1), (2, 3), (4,))
    assert len(the_plan.tasks) == 2 * 3
    assert config.run.resolved_chunk_size == the_plan.chunk_size == 2


def test_grids_over_strings_split_into_separate_programs():
    data = copy.deepcopy(BASE)
    data["env"] = {
        "id": "LinearArmFeatures-v0",
        "params": {"num_arms": 4, "arm_dim": 3, "context_dim": 2},
    }
    data["agents"][0]["grid"]["features"] = ["context", "arms"]
    _, the_plan = planned(data)
    kinds = [(p.kind, p.kwargs.get("features")) for p in the_plan.programs]
    # alpha is traced within each feature form; the forms are separate programs
    # (different shapes: dim 2 for the context form, 3 for the arm form).
    assert kinds == [("sweep x3", "context"), ("sweep x3", "arms"), ("run", None)]
    assert [p.kwargs["dim"] for p in the_plan.programs[:2]] == [2, 3]


def test_env_grid_makes_one_program_per_setting():
    data = copy.deepcopy(BASE)
    data["env"]["grid"] = {"noise_std": [0.5, 1.0]}
    _, the_plan = planned(data)
    assert [p.setting for p in the_plan.programs] == [0, 0, 1, 1]
    assert the_plan.series[4].label == "LinUCB alpha=0.1 | noise_std=1.0"
    assert [t.spec["env"]["params"]["noise_std"] for t in the_plan.tasks[::3]] == [
        0.5,
        0.5,
        1.0,
        1.0,
    ]


def _branching_agent(num_arms: int, dim: int, alpha: float = 1.0):
    """LinUCB, but with a Python `if` on alpha: it cannot be traced."""
    if alpha > 1.5:
        alpha = 1.5
    return agent_registry.linucb(num_arms, dim, alpha=alpha)


def test_untraceable_float_hyperparameters_fall_back_to_separate_runs(monkeypatch):
    entry = AgentEntry("branching", _branching_agent, "test agent")
    monkeypatch.setitem(agent_registry.registry._REGISTRY, "branching", entry)
    assert "alpha" in inspect.signature(_branching_agent).parameters
    data = copy.deepcopy(BASE)
    data["agents"][0]["name"] = "branching"
    _, the_plan = planned(data)
    assert [p.kind for p in the_plan.programs] == ["run"] * 4


def test_float64_agents_are_not_traced():
    data = copy.deepcopy(BASE)
    data["agents"][0]["hyperparameters"] = {"dtype": "float64"}
    with jax.enable_x64(True):
        _, the_plan = planned(data)
    assert [p.kind for p in the_plan.programs] == ["run"] * 4


def test_task_specs_are_plain_data_and_one_agent_spec():
    """A task crosses to a worker as plain JSON values plus the frozen `AgentSpec`
    (the one form of the agent's arguments from config to worker)."""
    data = copy.deepcopy(BASE)
    data["run"]["prediction_seeds"] = 3
    config, the_plan = planned(data)
    for task in the_plan.tasks:
        agent = task.spec["agent"]["spec"]
        assert isinstance(agent, AgentSpec)
        assert hash(agent) == hash(pickle.loads(pickle.dumps(agent)))
        rest = {**task.spec, "agent": {**task.spec["agent"], "spec": None}}
        assert json.loads(json.dumps(rest)) == rest
        assert pickle.loads(pickle.dumps(task.spec)) == task.spec
        assert task.spec["config_hash"] == config.hash()
    specs = [t.spec for t in the_plan.tasks[:3]]
    assert [s["seeds"] for s in specs] == [[0, 1], [2, 3], [4]]
    assert [s["prediction_seeds"] for s in specs] == [[0, 1], [2], []]
    assert the_plan.tasks[0].files == (
        "0000-c0000.parquet",
        "0001-c0000.parquet",
        "0002-c0000.parquet",
    )
    assert padded_seeds([4], 2) == [4, 4]


def test_execute_task_refuses_a_multi_device_process_and_other_versions():
    _, the_plan = planned(BASE)
    spec = dict(the_plan.tasks[0].spec)
    with pytest.raises(WorkerSetupError, match="another version"):
        execute_task({**spec, "format": 999})
    if jax.local_device_count() > 1:
        with pytest.raises(WorkerSetupError, match="exactly one JAX device"):
            execute_task(spec)


def seed_finals(directory) -> dict[tuple[str, int], float]:
    return {
        (r["agent"], r["seed"]): r["final_regret"]
        for r in storage.read_summaries(directory)
        if r["kind"] == "seed"
    }


@pytest.mark.slow
def test_traced_sweep_equals_separate_runs(tmp_path):
    """The same three LinUCB agents as one traced sweep and as three separate
    programs play the same arms and reach the same regret up to float32 rounding.

    Bit equality is promised for the same program, batch and machine only. Here
    the programs differ (one batched over alphas, three not), so XLA may fuse
    the env's reward (mean + sigma * noise) and the regret sums differently, by
    an ulp, and the rounding differs again between CPUs with and without
    AVX-512. Tolerances: regret and reward within 1e-4 absolute (60 rounds of
    values below 10, each off by at most a few ulps of float32, 1e-6 relative);
    integer series (seeds, steps, optimal-action counts) exactly, since a
    near-tie flipped by an ulp would change an action and so regret by far more
    than the tolerance.
    """
    swept_data = copy.deepcopy(BASE)
    separate_data = copy.deepcopy(BASE)
    separate_data["agents"] = [
        {
            "name": "linucb",
            "label": f"LinUCB alpha={alpha}",
            "hyperparameters": {"alpha": alpha},
        }
        for alpha in (0.1, 1.0, 2.0)
    ] + [{"name": "random"}]
    swept_config, _ = planned(swept_data)
    separate_config, separate_plan = planned(separate_data)
    assert [p.kind for p in separate_plan.programs] == ["run"] * 4
    assert swept_config.hash() == separate_config.hash()  # same series, same labels

    executor = LocalExecutor(1)
    a = run_experiment(swept_config, tmp_path / "a", progress=False, executor=executor)
    b = run_experiment(
        separate_config, tmp_path / "b", progress=False, executor=executor
    )
    assert len(a.computed) == len(b.computed) == 4 * 3
    finals_a, finals_b = seed_finals(a.output), seed_finals(b.output)
    assert list(finals_a) == list(finals_b)
    np.testing.assert_allclose(
        list(finals_a.values()), list(finals_b.values()), rtol=0, atol=1e-4
    )
    curves_a = storage.read_curves(a.output / "curves")
    curves_b = storage.read_curves(b.output / "curves")
    assert list(curves_a) == list(curves_b)
    for label, c in curves_a.items():
        other = curves_b[label]
        for field in ("seeds", "steps", "cumulative_optimal"):
            np.testing.assert_array_equal(getattr(c, field), getattr(other, field))
        np.testing.assert_allclose(
            c.cumulative_regret, other.cumulative_regret, rtol=0, atol=1e-4
        )
        # Float32 rounding of each reward, summed over <= 60 rounds.
        np.testing.assert_allclose(
            c.cumulative_reward, other.cumulative_reward, rtol=0, atol=1e-4
        )
    programs = [e["program"] for e in storage.read_manifest(a.output)["agents"]]
    assert programs == ["sweep x3"] * 3 + ["run"]
    # Different alphas really are different runs.
    finals = seed_finals(a.output)
    assert finals[("LinUCB alpha=0.1", 0)] != finals[("LinUCB alpha=2.0", 0)]
