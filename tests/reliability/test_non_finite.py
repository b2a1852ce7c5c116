"""A NaN in one grid point does not cost the others.

Before: a non-finite agent state inside a swept grid stopped the whole chunk
(its message named the agent and the setting but not the step), and the healthy
grid points of that compiled sweep were lost with it. Now the platform keeps
and stores them, lists the failed series in the manifest and the report with
its first bad seed and step, and ends with one `error:` line and exit status 1.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents as agent_registry
import envs
from agents.registry import AgentEntry
from bandits.finite import finite_rows, first_non_finite_steps
from experiments import cli
from experiments.config import loader
from experiments.config.loader import parse_config
from experiments.execute import executors
from experiments.execute.runner import SeriesFailedError, run_experiment
from experiments.plan import planner
from experiments.store import manifest, storage
from tests.experiments.modules import InProcessExecutor

BAD_STEP = 2
"""The update at this (0-based) step leaves NaN in the state when alpha > 5."""


def exploding(num_arms: int, dim: int, alpha: float = 1.0):
    """LinUCB whose state turns NaN at step `BAD_STEP` when alpha > 5."""
    inner = agent_registry.linucb(num_arms, dim, alpha=alpha)

    def init(key):
        return inner.init(key), jnp.zeros((), jnp.int32)

    def act(key, state, obs):
        return inner.act(key, state[0], obs)

    def update(key, state, obs, action, reward):
        stats, t = state
        stats = inner.update(key, stats, obs, action, reward)
        poison = jnp.where((alpha > 5.0) & (t >= BAD_STEP), jnp.nan, 1.0)
        stats = jax.tree_util.tree_map(
            lambda x: x * poison if jnp.issubdtype(x.dtype, jnp.floating) else x,
            stats,
        )
        return stats, t + 1

    return inner._replace(init=init, act=act, update=update, name="exploding")


@pytest.fixture
def registered(monkeypatch):
    entry = AgentEntry("exploding", exploding, "LinUCB that explodes if alpha > 5")
    monkeypatch.setitem(agent_registry.registry._REGISTRY, "exploding", entry)
    monkeypatch.setattr(jax, "local_device_count", lambda: 1)
    loader._build_agent.cache_clear()
    planner._agent_fn.cache_clear()
    yield
    loader._build_agent.cache_clear()
    planner._agent_fn.cache_clear()


def _config(grid, extra=()):
    return {
        "name": "non-finite",
        "env": {"id": "Linear-v0", "params": {"num_arms": 3, "dim": 2}},
        "run": {"horizon": 12, "seeds": 4, "chunk_size": 2, "prediction_seeds": 0},
        "agents": [
            {"name": "exploding", "label": "X", "grid": {"alpha": grid}},
            {"name": "random"},
            *extra,
        ],
    }


def test_the_kernel_names_the_first_bad_step_of_each_seed():
    env = envs.make_env("Linear-v0", num_arms=3, dim=2)
    steps = first_non_finite_steps(
        env, exploding(3, 2, alpha=10.0), horizon=6, seeds=[0, 5]
    )
    np.testing.assert_array_equal(steps, [BAD_STEP, BAD_STEP])
    healthy = first_non_finite_steps(env, exploding(3, 2), horizon=6, seeds=2)
    np.testing.assert_array_equal(healthy, [-1, -1])
    states = {"a": np.array([[1.0, np.nan], [2.0, 3.0]]), "n": np.zeros((2, 4), int)}
    np.testing.assert_array_equal(finite_rows(states), [False, True])


def test_healthy_grid_points_of_a_failing_sweep_are_stored(
    registered, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(
        executors, "make_executor", lambda *args, **kwargs: InProcessExecutor()
    )
    path = tmp_path / "c.toml"
    path.write_text(parse_config(_config([0.5, 10.0, 1.0])).to_toml())
    out = tmp_path / "out"
    code = cli.main(["run", str(path), "--out", str(out), "--quiet"])
    assert code == cli.EXIT_RUN_ERROR
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.strip()]
    assert errors == [
        "error: series 'X alpha=10.0' failed: its agent state became non-finite "
        f"(NaN or inf) at seed 0, step {BAD_STEP} (seeds [0, 1] of chunk 0); the "
        f"other 3 series are stored in {out} (report: {out / 'report.html'})"
    ]
    assert "failed, not stored: X alpha=10.0" in captured.out
    stored = manifest.read(out)
    assert [e.label for e in stored.agents] == ["X alpha=0.5", "X alpha=1.0", "random"]
    (failure,) = stored.failed
    assert (failure.label, failure.seed, failure.step) == ("X alpha=10.0", 0, BAD_STEP)
    assert failure.seeds == (0, 1) and failure.chunk == 0
    summaries = storage.read_summaries(out)
    agents = [r["agent"] for r in summaries if r["kind"] == "agent"]
    assert agents == ["X alpha=0.5", "X alpha=1.0", "random"]
    assert all(r["seeds"] == 4 for r in summaries if r["kind"] == "agent")
    report = (out / "report.md").read_text()
    assert "## Failed series" in report and "| X alpha=10.0 | 0 | 2 | 0, 1 | 0 |" in (
        report.replace("  ", " ")
    )
    # The healthy points hold the numbers of the same grid without the NaN.
    healthy = tmp_path / "healthy"
    run_experiment(
        parse_config(_config([0.5, 2.0, 1.0])),
        healthy,
        progress=False,
        executor=InProcessExecutor(),
    )
    for label in ("X alpha=0.5", "X alpha=1.0", "random"):
        got = storage.read_curves(out / stored.entry(label).curves)[label]
        entry = manifest.read(healthy).entry(label)
        want = storage.read_curves(healthy / entry.curves)[label]
        np.testing.assert_array_equal(got.cumulative_regret, want.cumulative_regret)
    # A rerun retries the failed point only, and fails the same way.
    with pytest.raises(SeriesFailedError) as info:
        run_experiment(
            parse_config(_config([0.5, 10.0, 1.0])),
            out,
            progress=False,
            executor=InProcessExecutor(),
        )
    assert [a.label for a in info.value.result.agents if not a.skipped] == [
        "X alpha=10.0"
    ]
    assert info.value.result.computed == ()
    assert not list((out / storage.CHUNKS_DIR).glob("0000-*"))


def test_a_failing_unswept_agent_does_not_stop_the_others(registered, tmp_path):
    solo = {"name": "exploding", "label": "Solo", "hyperparameters": {"alpha": 9.0}}
    config = parse_config(_config([0.5, 1.0], extra=[solo]))
    with pytest.raises(SeriesFailedError) as info:
        run_experiment(config, tmp_path, progress=False, executor=InProcessExecutor())
    message = str(info.value)
    assert message.startswith(
        "series 'Solo' failed: its agent state became non-finite (NaN or inf) at "
        f"seed 0, step {BAD_STEP} (seeds [0, 1] of chunk 0); the other 3 series "
    )
    assert [e.label for e in manifest.read(tmp_path).agents] == [
        "X alpha=0.5",
        "X alpha=1.0",
        "random",
    ]


def test_the_sweep_api_raises_naming_the_setting_seed_and_step():
    import bandits

    env = envs.make_env("Linear-v0", num_arms=3, dim=2)
    fn = functools.partial(exploding, num_arms=3, dim=2)
    with pytest.raises(
        bandits.NonFiniteAgentStateError,
        match=rf"alpha=10 produced a non-finite \(NaN or inf\) state at seed 0, "
        rf"step {BAD_STEP} ",
    ):
        bandits.sweep(env, fn, {"alpha": [1.0, 10.0]}, horizon=6, seeds=1)
