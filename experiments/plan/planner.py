"""Planning a run: series, compiled programs, seed chunks and the tasks that run them.

A config expands into *series*: one per (agent, env setting), each with its own
label, curves and summary. Series are computed by *programs*, one compiled
simulation each:

  * grid points of one `[[agents]]` table that differ only in traceable
    hyperparameters share one program, `bandits.sweep`: the G settings are a
    `vmap` inside it (leaves (G, seeds, T));
  * everything else (a single agent, grids over shapes, strings, booleans,
    integers, and every env setting) is a separate `bandits.run`.

A hyperparameter is traceable when its factory default is a float, every grid
value is a number, the agent does not compute in float64, and building the
agent with a traced value and tracing one simulated round under
`jax.eval_shape` succeeds; anything else falls back to separate runs. The two
ways give the same numbers bit for bit (`bandits.sweep` is checked against
`bandits.run` in the tests).

Seeds are split into chunks of `run.chunk_size` (the last one padded by
repeating its last seed), and every (program, chunk) pair is a *task*: a plain
dictionary (`spec`) of plain values and the frozen `AgentSpec`, that any worker
process turns back into env and agent from the registries
(`experiments.execute.tasks.execute_task`). Each finished task yields one chunk
file per series, so a killed run loses only the tasks in flight.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

import agents as agent_registry
import bandits
from experiments.config.loader import Experiment, build_agent, make_env
from experiments.config.schema import AgentConfig, AgentSpec, plain
from experiments.store import storage

SPEC_FORMAT = 2
"""Version of the task spec (2: `seed_key`); a worker refuses any other."""


@dataclasses.dataclass(frozen=True)
class Series:
    """One agent on one env setting: a curve, a summary, a row in the report."""

    index: int
    """Position in the plan; numbers the stored files."""
    label: str
    """Unique display label: the agent label, plus the env setting if a grid."""
    setting: int
    """Index of the env setting."""
    agent: int
    """Index into `config.agents`."""


@dataclasses.dataclass(frozen=True)
class Program:
    """One compiled simulation: a single agent, or a traced sweep of G agents."""

    index: int
    setting: int
    series: tuple[int, ...]
    """The series it computes, in sweep order (one unless swept)."""
    agent: AgentSpec
    """The agent shared by every series (the swept arguments left out)."""
    swept: Mapping[str, tuple[float, ...]]
    """Traced hyperparameter -> one value per series; empty for a single run."""

    @property
    def agent_name(self) -> str:
        return self.agent.name

    @property
    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by every series (the swept ones left out)."""
        return self.agent.kwargs

    @property
    def kind(self) -> str:
        """ "run", or "sweep xG" for a traced sweep of G settings."""
        return f"sweep x{len(self.series)}" if self.swept else "run"


@dataclasses.dataclass(frozen=True)
class Task:
    """One program on one seed chunk."""

    program: int
    chunk: int
    files: tuple[str, ...]
    """Chunk file names, one per series of the program (under `chunks/`)."""
    spec: dict[str, Any]
    """Plain data that `experiments.execute.tasks.execute_task` runs."""

    @property
    def key(self) -> str:
        return f"p{self.program:04d}-c{self.chunk:04d}"


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything a run computes, in the order it is computed."""

    series: tuple[Series, ...]
    programs: tuple[Program, ...]
    chunks: tuple[tuple[int, ...], ...]
    """The seeds of every chunk (unpadded)."""
    chunk_size: int
    tasks: tuple[Task, ...]

    def chunk_files(self, series: int) -> list[str]:
        """The chunk file names of one series, in seed order."""
        return [storage.chunk_file_name(series, c) for c in range(len(self.chunks))]

    def program_of(self, series: int) -> Program:
        """The program that computes `series`."""
        return next(p for p in self.programs if series in p.series)


def plan(experiment: Experiment, config_hash: str) -> Plan:
    """Expands a built experiment into series, programs, chunks and tasks.

    Args:
      experiment: from `experiments.config.loader.build`.
      config_hash: the config's hash, stamped on every task (and chunk file).

    Returns:
      The `Plan`; tasks are ordered program by program, chunk by chunk.
    """
    config = experiment.config
    settings = config.settings
    multiple = len(settings) > 1
    series: list[Series] = []
    programs: list[Program] = []
    for setting in settings:
        by_agent = {}
        for a, agent in enumerate(config.agents):
            label = f"{agent.label} | {setting.label}" if multiple else agent.label
            by_agent[a] = Series(len(series), label, setting.index, a)
            series.append(by_agent[a])
        for members, swept in _program_groups(experiment, setting.index):
            spec = experiment.specs_by_setting[setting.index][members[0]]
            programs.append(
                Program(
                    len(programs),
                    setting.index,
                    tuple(by_agent[a].index for a in members),
                    spec.without(swept),
                    swept,
                )
            )
    size = config.run.resolved_chunk_size
    seeds = config.run.seeds
    chunks = tuple(tuple(seeds[i : i + size]) for i in range(0, len(seeds), size))
    evaluated = set(seeds[: config.run.prediction_seeds])
    tasks = []
    for program in programs:
        setting = settings[program.setting]
        for c, chunk in enumerate(chunks):
            files = tuple(storage.chunk_file_name(s, c) for s in program.series)
            task_spec = {
                "format": SPEC_FORMAT,
                "task": f"p{program.index:04d}-c{c:04d}",
                "config_hash": config_hash,
                "env": {"id": config.env.id, "params": plain(setting.params)},
                "horizon": config.run.horizon,
                "resample_params": config.run.resample_params,
                "seed_key": config.run.seed_key,
                "agent": {
                    "spec": program.agent,
                    "swept": {k: list(v) for k, v in program.swept.items()},
                },
                "labels": [series[s].label for s in program.series],
                "seeds": list(chunk),
                "chunk_size": size,
                "curve_points": config.run.curve_points,
                "curve_spacing": config.run.curve_spacing,
                "prediction_seeds": [s for s in chunk if s in evaluated],
                "prediction_contexts": config.run.prediction_contexts,
            }
            tasks.append(Task(program.index, c, files, task_spec))
    return Plan(tuple(series), tuple(programs), chunks, size, tuple(tasks))


def _program_groups(
    experiment: Experiment, setting: int
) -> list[tuple[list[int], dict[str, tuple[float, ...]]]]:
    """Agents (indices) grouped into programs, with their swept values."""
    config = experiment.config
    env = experiment.envs[setting]
    groups: dict[tuple, list[int]] = {}
    for a, agent in enumerate(config.agents):
        traced = candidate_names(agent, experiment.kwargs_by_setting[setting][a])
        others = tuple(
            (k, repr(agent.hyperparameters[k]))
            for k in agent.grid_keys
            if k not in traced
        )
        groups.setdefault((agent.index, traced, others), []).append(a)
    out = []
    for (_, traced, _), members in groups.items():
        kwargs = experiment.kwargs_by_setting[setting][members[0]]
        fixed = tuple((k, v) for k, v in kwargs.items() if k not in traced)
        name = config.agents[members[0]].name
        if len(members) > 1 and traced and traceable(env, name, fixed, traced):
            swept = {
                k: tuple(float(config.agents[a].hyperparameters[k]) for a in members)
                for k in traced
            }
            out.append((members, swept))
        else:
            out += [([a], {}) for a in members]
    return out


def candidate_names(agent: AgentConfig, kwargs: Mapping[str, Any]) -> tuple[str, ...]:
    """Grid hyperparameters of `agent` that may be traced (before the trace check).

    A float default, numbers only in the grid, no float64 computation (a
    traced sweep passes float32 values), and no start from data (a sweep builds
    its agents from the bare factory).
    """
    if kwargs.get("dtype") == "float64" or agent.start is not None:
        return ()
    defaults = agent_registry.hyperparameters(agent.name)
    names = []
    for key in agent.grid_keys:
        default = defaults.get(key, inspect.Parameter.empty)
        value = agent.hyperparameters[key]
        if (
            isinstance(default, float)
            and isinstance(value, int | float)
            and not isinstance(value, bool)
        ):
            names.append(key)
    return tuple(names)


@functools.lru_cache(maxsize=256)
def traceable(
    env: bandits.Env,
    name: str,
    fixed: tuple[tuple[str, Any], ...],
    names: tuple[str, ...],
) -> bool:
    """Whether agent `name` builds and runs one round with `names` traced.

    Traces (never compiles or runs) one round of `bandits.simulate` under
    `jax.eval_shape` with the named hyperparameters as float32 tracers.
    """
    factory = agent_registry.registered()[name].factory
    params = env.default_params()

    def probe(values):
        agent = factory(**dict(fixed), **dict(zip(names, values, strict=True)))
        return bandits.simulate(jax.random.key(0), env, params, agent, 1)

    scalars = tuple(jax.ShapeDtypeStruct((), jnp.float32) for _ in names)
    try:
        jax.eval_shape(probe, scalars)
    except Exception:  # any failure under tracing means: run separately
        return False
    return True


# ---------------------------------------------------------------------------
# Rebuilding from a spec (in any process)


def spec_env(spec: Mapping[str, Any]) -> bandits.Env:
    """The env of a task spec, rebuilt from the registry."""
    return make_env(spec["env"]["id"], spec["env"]["params"])


def spec_agent(spec: Mapping[str, Any]) -> bandits.Agent:
    """The agent of an unswept task spec (built once per process)."""
    return build_agent(spec["agent"]["spec"])


def spec_agent_fn(spec: Mapping[str, Any]):
    """The agent factory of a swept task spec with the fixed arguments bound.

    The same object is returned for the same spec, so that `bandits.sweep`
    reuses its compiled program across chunks.
    """
    return _agent_fn(spec["agent"]["spec"])


@functools.lru_cache(maxsize=256)
def _agent_fn(agent: AgentSpec):
    factory = agent_registry.registered()[agent.name].factory
    return functools.partial(factory, **agent.kwargs)


def padded_seeds(seeds: Sequence[int], size: int) -> list[int]:
    """`seeds` padded to `size` by repeating the last one (fixed batch shape)."""
    seeds = list(seeds)
    return seeds + [seeds[-1]] * (size - len(seeds))
