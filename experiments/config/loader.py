"""Experiment configs: TOML files parsed into frozen dataclasses, checked up front.

A config names one environment (optionally a grid of env parameters), a horizon
and seeds, and a list of agents (optionally grids of hyperparameters):

    name = "quickstart"                  # optional; default: the file's stem
    [env]
    id = "Linear-v0"                     # an `envs` registry id (`bandits list`)
    params = { num_arms = 10, dim = 20 }
    grid = { noise_std = [0.5, 1.0] }    # one env setting per grid point (cartesian)
    [run]
    horizon = 5000                       # rounds T per run
    seeds = 32                           # S (seeds 0..S-1) or a list of seeds
    resample_params = false              # a fresh problem instance per seed
    output = "results/quickstart"        # results folder (`--out` overrides)
    chunk_size = "auto"                  # seeds per compiled batch (an int or "auto")
    curve_points = 1000                  # most steps kept per stored curve
    curve_spacing = "log+linear"         # or "log": which steps are kept
    prediction_seeds = 4                 # seeds whose reward model is evaluated
    prediction_contexts = 1000           # held-out contexts per evaluated seed
    seed_key = "split"                   # or "direct": each seed's key is the run's
    [[agents]]
    name = "linucb"                      # an `agents` registry name
    label = "LinUCB"                     # display label, unique (default: name)
    hyperparameters = { alpha = 1.0 }
    grid = { alpha = [0.1, 1.0] }        # one agent per grid point (cartesian)

`num_arms` and `dim` are filled in for agents from the environment: the number of
arms, and the context dimension (features = "context", the default) or the per-arm
feature dimension (features = "arms"); so is `slate_size` for slate agents on a
slate env. Everything is checked before any compute
starts: unknown keys, wrong types, unknown env ids, agent names and
hyperparameter names, and the values themselves (every env setting and every
agent in it is built). Errors are `BanditConfigError`s that name the field path,
e.g. `agents[2].hyperparameters.alpha must be in [0.0, inf], got -1.0`.

How grids run (sweeps, chunks) is planned by `experiments.plan.planner`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import agents as agent_registry
import envs as env_registry
from bandits.types import Agent, Env
from bandits.validation import BanditConfigError
from experiments.config.checks import check_keys as _check_keys
from experiments.config.checks import check_type as _check_type
from experiments.config.checks import check_value as _check_value
from experiments.config.checks import table as _table
from experiments.config.checks import type_name as _type_name
from experiments.config.schema import (
    AgentConfig,
    AgentSpec,
    EnvConfig,
    EnvSetting,
    Experiment,
    ExperimentConfig,
    RunConfig,
    auto_chunk_size,
    env_settings,
)
from experiments.config.schema import frozen as _frozen
from experiments.config.schema import frozen_value as _frozen_value
from experiments.config.sources import (
    packaged_config_text,
    packaged_configs,
    parse_toml,
    read_source,
)
from experiments.config.start import (
    START_KEYS,
    build_started,
    check_start,
    parse_start,
    start_kwargs,
)
from experiments.config.tables import parse_run, parse_settings
from experiments.config.toml_writer import display_value

__all__ = [
    "FROM_ENV",
    "AgentConfig",
    "EnvConfig",
    "EnvSetting",
    "Experiment",
    "ExperimentConfig",
    "RunConfig",
    "auto_chunk_size",
    "build",
    "env_settings",
    "env_shapes",
    "load_config",
    "make_agent",
    "make_env",
    "packaged_config_text",
    "packaged_configs",
    "parse_config",
]

TOP_KEYS = ("name", "env", "run", "agents")
ENV_KEYS = ("id", "params", "grid", "settings")
AGENT_KEYS = ("name", "label", "hyperparameters", "grid", *START_KEYS)
FROM_ENV = ("num_arms", "dim")

# ---------------------------------------------------------------------------
# Loading


def load_config(
    source: str | Path, overrides: Mapping[str, Any] | None = None
) -> ExperimentConfig:
    """Reads, parses and fully validates a config.

    Args:
      source: a path to a TOML file, or the name of a config shipped with the
        package (e.g. "quickstart"; see `packaged_configs`).
      overrides: tables merged into the document before it is validated, e.g.
        `{"run": {"horizon": 200}, "env": {"grid": {"noise_std": [0.5]}}}` (a
        study's command-line options); values replace, tables merge.

    Returns:
      The validated `ExperimentConfig` (every env and agent was built once).
    """
    text, origin, stem = read_source(source)
    data = parse_toml(text, origin)
    if overrides:
        data = _merged(data, overrides)
    base_dir = Path(source).resolve().parent if Path(source).is_file() else Path.cwd()
    config = parse_config(data, default_name=stem, base_dir=base_dir)
    # With overrides the file's text is not the config, and files that agents
    # start from may be named relative to the config's folder; the copy stored
    # with the results is then written from the config itself (`to_toml`, with
    # absolute paths).
    starts = any(agent.start is not None for agent in config.agents)
    kept_text = None if overrides or starts else text
    config = dataclasses.replace(config, source=origin, text=kept_text)
    build(config)
    return config


def _merged(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------------
# Parsing (structure and types)


def parse_config(
    data: Mapping[str, Any],
    default_name: str = "experiment",
    base_dir: str | Path | None = None,
) -> ExperimentConfig:
    """Validates the structure of a parsed TOML document and the registry names.

    Values of env parameters and agent hyperparameters are checked by `build`.
    Files that agents start from (`warm_start`, `checkpoint`) are found relative
    to `base_dir` (default: the working folder) and checksummed here.
    """
    base = Path.cwd() if base_dir is None else Path(base_dir)
    _check_keys(data, TOP_KEYS, "the top level", required=("env", "run", "agents"))
    name = data.get("name", default_name)
    _check_type("name", name, str, "a string")
    if not name.strip():
        raise BanditConfigError("name must be a non-empty string")
    env = parse_env(_table("env", data["env"]))
    run = parse_run(_table("run", data["run"]))
    raw_agents = data["agents"]
    if not isinstance(raw_agents, list) or not all(
        isinstance(a, dict) for a in raw_agents
    ):
        raise BanditConfigError(
            "agents must be an array of tables ([[agents]] sections), got "
            f"{_type_name(raw_agents)}"
        )
    if not raw_agents:
        raise BanditConfigError("agents must list at least one agent")
    agents_: list[AgentConfig] = []
    for index, raw in enumerate(raw_agents):
        agents_ += parse_agent(index, raw, base)
    _check_unique_labels(agents_)
    return ExperimentConfig(name=name, env=env, run=run, agents=tuple(agents_))


def parse_env(
    table: Mapping[str, Any], where: str = "env", keys: Sequence[str] = ENV_KEYS
) -> EnvConfig:
    """The `EnvConfig` of an env table: `[env]`, or a study's table at `where`
    (e.g. "envs[0]", which names the fields in errors) that accepts `keys`."""
    _check_keys(table, keys, "[env]" if where == "env" else where, required=("id",))
    env_id = table["id"]
    _check_type(f"{where}.id", env_id, str, "a string")
    known = env_registry.registered()
    if env_id.removeprefix("bandits/") not in known:
        raise BanditConfigError(
            f"{where}.id: unknown env {env_id!r}; known envs: "
            f"{', '.join(sorted(known))}"
        )
    env_id = env_id.removeprefix("bandits/")
    paths = (f"{where}.params", f"{where}.grid")
    params = _table(paths[0], table.get("params", {}))
    grid = _table(paths[1], table.get("grid", {}))
    allowed = env_registry.hyperparameters(env_id)
    _check_keys(params, list(allowed), f"{paths[0]} (env {env_id!r})")
    _check_values_and_grid(
        params,
        grid,
        allowed,
        paths,
        noun="parameter",
        owner=f"env {env_id!r}",
        names=paths,
    )
    settings = parse_settings(table.get("settings"), allowed, env_id, grid)
    return EnvConfig(
        env_id,
        MappingProxyType(_frozen(params)),
        MappingProxyType(
            {k: tuple(_frozen_value(v) for v in vs) for k, vs in grid.items()}
        ),
        settings,
    )


def parse_agent(
    index: int, raw: Mapping[str, Any], base_dir: Path | None = None
) -> list[AgentConfig]:
    """The `AgentConfig`s of `[[agents]]` table `index` (one per grid point)."""
    where = f"agents[{index}]"
    _check_keys(raw, AGENT_KEYS, where, required=("name",))
    name = raw["name"]
    _check_type(f"{where}.name", name, str, "a string")
    known = agent_registry.registered()
    if name not in known:
        raise BanditConfigError(
            f"{where}.name: unknown agent {name!r}; known agents: "
            f"{', '.join(sorted(known))}"
        )
    label = raw.get("label", name)
    _check_type(f"{where}.label", label, str, "a string")
    if not label.strip() or not label.isprintable():
        raise BanditConfigError(
            f"{where}.label must be a non-empty single-line string, got {label!r}"
        )
    allowed = agent_registry.hyperparameters(name)
    hyper = _table(f"{where}.hyperparameters", raw.get("hyperparameters", {}))
    grid = _table(f"{where}.grid", raw.get("grid", {}))
    _check_values_and_grid(
        hyper,
        grid,
        allowed,
        (f"{where}.hyperparameters", f"{where}.grid"),
        noun="hyperparameter",
        owner=f"agent {name!r}",
    )
    start = parse_start(where, name, raw, base_dir or Path.cwd())
    if not grid:
        return [
            AgentConfig(
                name, label, MappingProxyType(_frozen(hyper)), index, (), label, start
            )
        ]
    keys = tuple(grid)
    out = []
    for point in itertools.product(*(grid[k] for k in keys)):
        suffix = " ".join(
            f"{k}={display_value(v)}" for k, v in zip(keys, point, strict=True)
        )
        params = {**hyper, **dict(zip(keys, point, strict=True))}
        out.append(
            AgentConfig(
                name,
                f"{label} {suffix}",
                MappingProxyType(_frozen(params)),
                index,
                grid_keys=keys,
                base_label=label,
                start=start,
            )
        )
    return out


def _check_values_and_grid(
    values: Mapping[str, Any],
    grid: Mapping[str, Any],
    allowed: Mapping[str, Any],
    paths: tuple[str, str],
    *,
    noun: str,
    owner: str,
    names: tuple[str, str] = ("hyperparameters", "grid"),
) -> None:
    """Checks a table of single values and a table of grid lists against the
    accepted names (`allowed`: name -> default), and that no name is in both."""
    for path, table in zip(paths, (values, grid), strict=True):
        unknown = [k for k in table if k not in allowed]
        if unknown:
            raise BanditConfigError(
                f"unknown {noun} {unknown[0]!r} in {path} ({owner}); "
                f"allowed: {', '.join(allowed)}"
            )
    for key, value in values.items():
        _check_value(f"{paths[0]}.{key}", value, allowed[key])
    for key, options in grid.items():
        path = f"{paths[1]}.{key}"
        if key in values:
            raise BanditConfigError(
                f"{path}: {key!r} is set in both {names[0]} and {names[1]}; keep one"
            )
        _check_grid_list(path, options, allowed[key])


def _check_grid_list(path: str, values: Any, default: Any) -> None:
    if not isinstance(values, list) or not values:
        raise BanditConfigError(
            f"{path} must be a non-empty array of values, got {_type_name(values)}"
        )
    for i, value in enumerate(values):
        _check_value(f"{path}[{i}]", value, default)
    # Numbers compare by value: 1 and 1.0 build the same agent.
    seen = [_grid_key(v) for v in values]
    repeated = sorted({v for v in seen if seen.count(v) > 1})
    if repeated:
        raise BanditConfigError(f"{path} lists value(s) {', '.join(repeated)} twice")


def _grid_key(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return json.dumps(float(value))
    return json.dumps(value)


def _check_unique_labels(agents_: Sequence[AgentConfig]) -> None:
    seen: dict[str, AgentConfig] = {}
    for agent in agents_:
        if agent.label in seen:
            first = seen[agent.label]
            raise BanditConfigError(
                f"agents[{agent.index}].label {agent.label!r} is already used by "
                f"agents[{first.index}]; labels must be unique (set `label`)"
            )
        seen[agent.label] = agent


# ---------------------------------------------------------------------------
# Building (values, env-derived shapes)


def build(config: ExperimentConfig) -> Experiment:
    """Builds every env setting and every agent in it, checking every value.

    `num_arms`, `dim` and (slate envs) `slate_size` are filled from the
    environment where the agent takes them; a value given in the config that
    disagrees with the env is an error.
    """
    envs_, agents_by_setting, specs_by_setting = [], [], []
    settings = config.settings
    for setting in settings:
        where = f" (env setting {setting.label})" if setting.label else ""
        try:
            env = make_env(config.env.id, setting.params)
        except BanditConfigError as err:
            raise _with_path(
                err,
                setting.params,
                lambda k, s=setting: _env_path(config.env, s.index, k),
                "env.params",
                where,
            ) from None
        built, specs = [], []
        for agent in config.agents:
            kwargs = _agent_kwargs(agent, env, config.env.id, where)
            path = f"agents[{agent.index}]"
            if agent.start is not None:
                kwargs = start_kwargs(agent.start, kwargs, env, path, agent.name)
            spec = AgentSpec.of(
                agent.name, kwargs, agent.start, (config.env.id, setting.params)
            )
            try:
                # Logged events are replayed in the workers, not here.
                built.append(build_agent(spec, replay=False))
            except BanditConfigError as err:
                raise _with_path(
                    err,
                    kwargs,
                    agent.path,
                    f"agents[{agent.index}] ({agent.label!r})",
                    where,
                ) from None
            if agent.start is not None:
                check_start(agent.start, built[-1], env, path)
            specs.append(spec)
        envs_.append(env)
        agents_by_setting.append(tuple(built))
        specs_by_setting.append(tuple(specs))
    return Experiment(
        config, tuple(envs_), tuple(agents_by_setting), tuple(specs_by_setting)
    )


def _env_path(env: EnvConfig, setting: int, key: str) -> str:
    """The config path of env parameter `key` in env setting `setting`."""
    if env.settings and key in env.settings[setting].params:
        return f"env.settings[{setting}].params.{key}"
    return f"env.{'grid' if key in env.grid else 'params'}.{key}"


def make_env(env_id: str, params: Mapping[str, Any]) -> Env:
    """The static environment `env_id` with `params` (lists become tuples)."""
    return env_registry.make_env(env_id, **_frozen(params))


def make_agent(name: str, kwargs: Mapping[str, Any]) -> Agent:
    """`build_agent(AgentSpec.of(name, kwargs))`: lists become tuples."""
    return build_agent(AgentSpec.of(name, kwargs))


def build_agent(spec: AgentSpec, *, replay: bool = True) -> Agent:
    """The agent of `spec`, built once per process.

    The same spec gives the same `Agent` object, so its jitted simulation is
    compiled once per process, and the factory (which validates its arguments)
    runs once per process and spec. A spec with an unhashable value is built
    without the memo. An agent with a start (`spec.start`) gets its checkpoint's
    parameters and its feature map, and, with `replay`, the state after its
    logged events (replayed once per process and file checksum).
    """
    factory = agent_registry.registered()[spec.name].factory
    if spec.start is not None:
        return _build_started(spec, factory, replay)
    try:
        hash(spec)
    except TypeError:
        return agent_registry.make(spec.name, **spec.kwargs)
    return _build_agent(spec, factory)


@functools.lru_cache(maxsize=256)
def _build_agent(spec: AgentSpec, factory: Callable[..., Agent]) -> Agent:
    """`agents.make`, memoised; `factory` (the registered one) is part of the key
    only, so that re-registering a name builds afresh."""
    del factory
    return agent_registry.make(spec.name, **spec.kwargs)


@functools.lru_cache(maxsize=64)
def _build_started(
    spec: AgentSpec, factory: Callable[..., Agent], replay: bool
) -> Agent:
    env = make_env(spec.env[0], dict(spec.env[1])) if spec.env is not None else None
    return build_started(spec, factory, env, replay=replay)


def env_shapes(env: Env, features: str = "context") -> dict[str, int]:
    """The `num_arms` and `dim` an agent needs for `env`.

    `dim` is the context dimension for features="context" and the per-arm feature
    dimension for features="arms" (from `env.observation_spec()`).
    """
    spec = env.observation_spec()
    if features == "arms":
        dim = int(spec["arms"].shape[-1])
    else:
        dim = int(spec["context"].shape[0])
    return {"num_arms": int(env.num_arms), "dim": dim}


def _agent_kwargs(
    agent: AgentConfig, env: Env, env_id: str, where: str = ""
) -> dict[str, Any]:
    accepted = agent_registry.hyperparameters(agent.name)
    kwargs = dict(agent.hyperparameters)
    features = kwargs.get("features", accepted.get("features", "context"))
    shapes = env_shapes(env, features if isinstance(features, str) else "context")
    if features == "arms" and shapes["dim"] == 0:
        raise BanditConfigError(
            f"{agent.path('features')} = 'arms' needs per-arm features, but env "
            f"{env_id!r}{where} has none (arm feature dim 0); use features = "
            "'context'"
        )
    for key in FROM_ENV:
        if key not in accepted:
            continue
        expected = shapes[key]
        if key in kwargs and kwargs[key] != expected:
            what = (
                "num_arms"
                if key == "num_arms"
                else f"{'arm feature' if features == 'arms' else 'context'} dim"
            )
            raise BanditConfigError(
                f"{agent.path(key)} = {kwargs[key]!r} does not match the env: "
                f"{env_id!r}{where} has {what} {expected} (leave it out to take it "
                "from the env)"
            )
        kwargs[key] = expected
    slate_size = getattr(env, "slate_size", None)
    if "slate_size" in accepted and isinstance(slate_size, int):
        if "slate_size" in kwargs and kwargs["slate_size"] != slate_size:
            raise BanditConfigError(
                f"{agent.path('slate_size')} = {kwargs['slate_size']!r} does not "
                f"match the env: {env_id!r}{where} shows slates of {slate_size} "
                "(leave it out to take it from the env)"
            )
        kwargs["slate_size"] = slate_size
    return kwargs


def _with_path(
    err: BanditConfigError,
    kwargs: Mapping[str, Any],
    path_of,
    fallback: str,
    where: str = "",
) -> BanditConfigError:
    """The error reported at the config path of the field it names (`err.field`),
    else behind `fallback`."""
    if err.field is not None and err.field in kwargs:
        return err.at(path_of(err.field), where)
    return err.at(fallback + where)


def select_agents(
    config: ExperimentConfig, labels: Sequence[str] | None
) -> ExperimentConfig:
    """The config restricted to the agents with the given labels (all if None)."""
    if labels is None:
        return config
    known = [agent.label for agent in config.agents]
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise BanditConfigError(
            f"unknown agent label(s) {', '.join(map(repr, unknown))}; the config "
            f"has {', '.join(map(repr, known))}"
        )
    kept = tuple(agent for agent in config.agents if agent.label in labels)
    if len(kept) == len(config.agents):
        return config
    return dataclasses.replace(config, agents=kept, text=None)
