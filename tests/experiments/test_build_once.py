"""A config's agent is built once per worker process.

The config is validated and turned into one frozen `AgentSpec` per agent when it
is built; that value travels through the plan and the task to the worker,
which builds it once (`experiments.config.loader.build_agent`) and reuses it for
every chunk. Counted here by registering a LinUCB whose factory counts its calls
with concrete (not traced) arguments.
"""

from __future__ import annotations

import collections

import jax
import pytest

import agents as agent_registry
from agents.registry import AgentEntry
from experiments.config import loader
from experiments.config.loader import build, parse_config
from experiments.execute.runner import run_experiment
from experiments.execute.tasks import execute_task
from experiments.plan import planner
from tests.experiments.modules import InProcessExecutor

CALLS: collections.Counter = collections.Counter()


def _counted_linucb(num_arms: int, dim: int, alpha: float = 1.0):
    if not isinstance(alpha, jax.core.Tracer):  # traced builds belong to a sweep
        CALLS[alpha] += 1
    return agent_registry.linucb(num_arms, dim, alpha=alpha)


CONFIG = {
    "name": "build-once",
    "env": {"id": "Linear-v0", "params": {"num_arms": 3, "dim": 4}},
    "run": {"horizon": 30, "seeds": 6, "chunk_size": 2, "prediction_seeds": 2},
    "agents": [
        {"name": "counted", "label": "A", "hyperparameters": {"alpha": 0.5}},
        {"name": "counted", "label": "S", "grid": {"alpha": [0.1, 1.0]}},
    ],
}


@pytest.fixture
def counted(monkeypatch):
    entry = AgentEntry("counted", _counted_linucb, "LinUCB that counts its builds")
    monkeypatch.setitem(agent_registry.registry._REGISTRY, "counted", entry)
    # The test process may hold two CPU devices; a task refuses that (results
    # are bit-identical only on one), which does not matter for counting builds.
    monkeypatch.setattr(jax, "local_device_count", lambda: 1)
    loader._build_agent.cache_clear()
    planner._agent_fn.cache_clear()
    CALLS.clear()
    yield CALLS
    loader._build_agent.cache_clear()
    planner._agent_fn.cache_clear()


def test_a_run_builds_each_agent_once(counted, tmp_path):
    config = parse_config(CONFIG)
    result = run_experiment(
        config, tmp_path / "out", executor=InProcessExecutor(), progress=False
    )
    assert len(result.computed) == 3 * 3  # three chunks of three series
    # Built once each when the config is built (where errors are reported);
    # the tasks of all three chunks reuse those objects (same process).
    assert dict(counted) == {0.5: 1, 0.1: 1, 1.0: 1}


def test_a_fresh_worker_builds_each_spec_once(counted):
    config = parse_config(CONFIG)
    the_plan = planner.plan(build(config), config.hash())
    assert [p.kind for p in the_plan.programs] == ["run", "sweep x2"]
    # A new worker process starts with no built agents.
    loader._build_agent.cache_clear()
    planner._agent_fn.cache_clear()
    counted.clear()
    for task in the_plan.tasks:
        execute_task(task.spec)
    # "A" once; the sweep builds its first grid point once (to see whether the
    # agent has a reward model) and the rest only traced, inside the program.
    assert dict(counted) == {0.5: 1, 0.1: 1}
