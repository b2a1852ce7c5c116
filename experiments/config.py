"""Experiment configs: TOML files parsed into frozen dataclasses, checked up front.

A config names one environment, a horizon and seeds, and a list of agents:

    name = "quickstart"                  # optional; default: the file's stem
    [env]
    id = "Linear-v0"                     # an `envs` registry id (`bandits list`)
    params = { num_arms = 10, dim = 20 }
    [run]
    horizon = 5000                       # rounds T per run
    seeds = 32                           # S (seeds 0..S-1) or a list of seeds
    resample_params = false              # a fresh problem instance per seed
    output = "results/quickstart"        # results folder (`--out` overrides)
    curve_points = 10000                 # most steps kept per stored curve
    [[agents]]
    name = "linucb"                      # an `agents` registry name
    label = "LinUCB"                     # display label, unique (default: name)
    hyperparameters = { alpha = 1.0 }
    grid = { alpha = [0.1, 1.0] }        # one agent per grid point (cartesian)

`num_arms` and `dim` are filled in for agents from the environment: the number of
arms, and the context dimension (features = "context", the default) or the per-arm
feature dimension (features = "arms"). Everything is checked before any compute
starts: unknown keys, wrong types, unknown env ids, agent names and
hyperparameter names, and the values themselves (every env and agent is built).
Errors are `BanditConfigError`s that name the field path, e.g.
`agents[2].hyperparameters.alpha must be in [0.0, inf], got -1.0`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.resources
import inspect
import itertools
import json
import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import agents as agent_registry
import envs as env_registry
from bandits.storage import DEFAULT_CURVE_POINTS
from bandits.types import Agent, Env
from bandits.validation import BanditConfigError

TOP_KEYS = ("name", "env", "run", "agents")
ENV_KEYS = ("id", "params")
RUN_KEYS = ("horizon", "seeds", "resample_params", "output", "curve_points")
AGENT_KEYS = ("name", "label", "hyperparameters", "grid")
FROM_ENV = ("num_arms", "dim")
PACKAGED_CONFIGS = "configs"


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """The environment: a registry id and its keyword parameters."""

    id: str
    """Registered id, e.g. "Linear-v0"."""
    params: Mapping[str, Any]
    """Keyword arguments of the env factory (read-only)."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """How long, how often and where."""

    horizon: int
    """Rounds per run, T > 0."""
    seeds: tuple[int, ...]
    """The seeds, one run per seed per agent."""
    resample_params: bool = False
    """Draw a fresh problem instance per seed instead of the env's default one."""
    output: str | None = None
    """Results folder; `None` means `results/<name>`."""
    curve_points: int = DEFAULT_CURVE_POINTS
    """Most steps stored per curve; longer runs keep log+linear spaced steps."""


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """One agent to run (a grid in the file expands to several of these)."""

    name: str
    """Registry name, e.g. "linucb"."""
    label: str
    """Unique display label."""
    hyperparameters: Mapping[str, Any]
    """Keyword arguments as written (grid values merged in), read-only."""
    index: int
    """Position of the `[[agents]]` table in the file, for error messages."""
    grid_keys: tuple[str, ...] = ()
    """Hyperparameters whose value came from `grid`."""

    def path(self, key: str) -> str:
        """The config path of hyperparameter `key`, e.g. `agents[1].grid.alpha`."""
        table = "grid" if key in self.grid_keys else "hyperparameters"
        return f"agents[{self.index}].{table}.{key}"


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A whole, validated experiment."""

    name: str
    env: EnvConfig
    run: RunConfig
    agents: tuple[AgentConfig, ...]
    source: str | None = dataclasses.field(default=None, compare=False, repr=False)
    """Where the config came from (a path or `package:experiments/configs/...`)."""
    text: str | None = dataclasses.field(default=None, compare=False, repr=False)
    """The TOML text as given, kept with the results."""

    def canonical(self) -> dict[str, Any]:
        """Everything that determines the results, as plain JSON data.

        The name, the output folder and the source are left out: they do not
        change the results.
        """
        return {
            "env": {"id": self.env.id, "params": _plain(self.env.params)},
            "run": {
                "horizon": self.run.horizon,
                "seeds": list(self.run.seeds),
                "resample_params": self.run.resample_params,
                "curve_points": self.run.curve_points,
            },
            "agents": [
                {
                    "name": a.name,
                    "label": a.label,
                    "hyperparameters": _plain(a.hyperparameters),
                }
                for a in self.agents
            ],
        }

    def to_toml(self) -> str:
        """The config as TOML (grids expanded), parseable back to an equal config."""
        lines = [f"name = {_toml_value(self.name)}", "", "[env]"]
        lines += [f"id = {_toml_value(self.env.id)}"]
        lines += [f"params = {_toml_value(dict(self.env.params))}", "", "[run]"]
        for key, value in self.canonical()["run"].items():
            lines.append(f"{key} = {_toml_value(value)}")
        if self.run.output is not None:
            lines.append(f"output = {_toml_value(self.run.output)}")
        for agent in self.agents:
            lines += ["", "[[agents]]", f"name = {_toml_value(agent.name)}"]
            lines.append(f"label = {_toml_value(agent.label)}")
            lines.append(
                f"hyperparameters = {_toml_value(dict(agent.hyperparameters))}"
            )
        return "\n".join(lines) + "\n"

    def hash(self) -> str:
        """SHA-256 of the canonical JSON form (sorted keys)."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A config with its environment and agents built (ready to run)."""

    config: ExperimentConfig
    env: Env
    agents: tuple[Agent, ...]
    """One built agent per `config.agents` entry."""
    agent_kwargs: tuple[Mapping[str, Any], ...]
    """The full keyword arguments each agent was built with (env-filled included)."""


# ---------------------------------------------------------------------------
# Loading


def load_config(source: str | Path) -> ExperimentConfig:
    """Reads, parses and fully validates a config.

    Args:
      source: a path to a TOML file, or the name of a config shipped with the
        package (e.g. "quickstart"; see `packaged_configs`).

    Returns:
      The validated `ExperimentConfig` (every env and agent was built once).
    """
    text, origin, stem = _read_source(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise BanditConfigError(f"{origin} is not valid TOML: {err}") from None
    config = parse_config(data, default_name=stem)
    config = dataclasses.replace(config, source=origin, text=text)
    build(config)
    return config


def packaged_configs() -> list[str]:
    """Names of the configs shipped inside the `experiments` package."""
    folder = importlib.resources.files("experiments").joinpath(PACKAGED_CONFIGS)
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    )


def packaged_config_text(name: str) -> str:
    """The TOML text of a packaged config, e.g. `packaged_config_text("quickstart")`."""
    name = name.removesuffix(".toml")
    if name not in packaged_configs():
        raise BanditConfigError(
            f"no packaged config {name!r}; available: {', '.join(packaged_configs())}"
        )
    folder = importlib.resources.files("experiments").joinpath(PACKAGED_CONFIGS)
    return folder.joinpath(f"{name}.toml").read_text(encoding="utf-8")


def _read_source(source: str | Path) -> tuple[str, str, str]:
    """(text, description of origin, default experiment name)."""
    path = Path(source)
    if path.is_file():
        return path.read_text(encoding="utf-8"), str(path), path.stem
    if path.exists():
        raise BanditConfigError(f"config {str(source)!r} is not a file")
    name = str(source).removesuffix(".toml")
    if "/" not in name and "\\" not in name and name in packaged_configs():
        origin = f"package:experiments/{PACKAGED_CONFIGS}/{name}.toml"
        return packaged_config_text(name), origin, name
    raise BanditConfigError(
        f"config {str(source)!r} not found: no such file, and not a packaged config "
        f"(available: {', '.join(packaged_configs())})"
    )


# ---------------------------------------------------------------------------
# Parsing (structure and types)


def parse_config(
    data: Mapping[str, Any], default_name: str = "experiment"
) -> ExperimentConfig:
    """Validates the structure of a parsed TOML document and the registry names.

    Values of env parameters and agent hyperparameters are checked by `build`.
    """
    _check_keys(data, TOP_KEYS, "the top level", required=("env", "run", "agents"))
    name = data.get("name", default_name)
    _check_type("name", name, str, "a string")
    if not name.strip():
        raise BanditConfigError("name must be a non-empty string")
    env = _parse_env(_table("env", data["env"]))
    run = _parse_run(_table("run", data["run"]))
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
        agents_ += _parse_agent(index, raw)
    _check_unique_labels(agents_)
    return ExperimentConfig(name=name, env=env, run=run, agents=tuple(agents_))


def _parse_env(table: Mapping[str, Any]) -> EnvConfig:
    _check_keys(table, ENV_KEYS, "[env]", required=("id",))
    env_id = table["id"]
    _check_type("env.id", env_id, str, "a string")
    known = env_registry.registered()
    if env_id.removeprefix("bandits/") not in known:
        raise BanditConfigError(
            f"env.id: unknown env {env_id!r}; known envs: {', '.join(sorted(known))}"
        )
    env_id = env_id.removeprefix("bandits/")
    params = _table("env.params", table.get("params", {}))
    allowed = env_registry.hyperparameters(env_id)
    _check_keys(params, list(allowed), f"env.params (env {env_id!r})")
    for key, value in params.items():
        _check_value(f"env.params.{key}", value, allowed[key])
    return EnvConfig(env_id, MappingProxyType(_frozen(params)))


def _parse_run(table: Mapping[str, Any]) -> RunConfig:
    _check_keys(table, RUN_KEYS, "[run]", required=("horizon", "seeds"))
    horizon = _positive_int("run.horizon", table["horizon"])
    seeds = _parse_seeds(table["seeds"])
    resample = table.get("resample_params", False)
    _check_type("run.resample_params", resample, bool, "a boolean (true or false)")
    output = table.get("output")
    if output is not None:
        _check_type("run.output", output, str, "a string (a folder path)")
        if not output.strip():
            raise BanditConfigError("run.output must be a non-empty folder path")
    points = _positive_int(
        "run.curve_points", table.get("curve_points", DEFAULT_CURVE_POINTS)
    )
    if points < 2:
        raise BanditConfigError(f"run.curve_points must be >= 2, got {points}")
    return RunConfig(horizon, seeds, resample, output, points)


def _parse_seeds(value: Any) -> tuple[int, ...]:
    if _is_int(value):
        return tuple(range(_positive_int("run.seeds", value)))
    if not isinstance(value, list):
        raise BanditConfigError(
            "run.seeds must be a positive integer S (seeds 0..S-1) or a list of "
            f"integers >= 0, got {_type_name(value)}"
        )
    if not value:
        raise BanditConfigError("run.seeds must not be an empty list")
    for i, seed in enumerate(value):
        if not _is_int(seed):
            raise BanditConfigError(
                f"run.seeds[{i}] must be an integer, got {_type_name(seed)}"
            )
        if seed < 0 or seed >= 2**32:
            raise BanditConfigError(f"run.seeds[{i}] must be in [0, 2**32), got {seed}")
    duplicates = sorted({s for s in value if value.count(s) > 1})
    if duplicates:
        raise BanditConfigError(f"run.seeds lists seed(s) {duplicates} more than once")
    return tuple(value)


def _parse_agent(index: int, raw: Mapping[str, Any]) -> list[AgentConfig]:
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
    for table_name, table in (("hyperparameters", hyper), ("grid", grid)):
        unknown = [k for k in table if k not in allowed]
        if unknown:
            raise BanditConfigError(
                f"unknown hyperparameter {unknown[0]!r} in {where}.{table_name} "
                f"(agent {name!r}); allowed: {', '.join(allowed)}"
            )
    for key, value in hyper.items():
        _check_value(f"{where}.hyperparameters.{key}", value, allowed[key])
    for key, values in grid.items():
        path = f"{where}.grid.{key}"
        if key in hyper:
            raise BanditConfigError(
                f"{path}: {key!r} is set in both hyperparameters and grid; keep one"
            )
        if not isinstance(values, list) or not values:
            raise BanditConfigError(
                f"{path} must be a non-empty array of values, got {_type_name(values)}"
            )
        for i, value in enumerate(values):
            _check_value(f"{path}[{i}]", value, allowed[key])
    if not grid:
        return [AgentConfig(name, label, MappingProxyType(_frozen(hyper)), index)]
    keys = tuple(grid)
    out = []
    for point in itertools.product(*(grid[k] for k in keys)):
        suffix = " ".join(
            f"{k}={_toml_text(v)}" for k, v in zip(keys, point, strict=True)
        )
        params = {**hyper, **dict(zip(keys, point, strict=True))}
        out.append(
            AgentConfig(
                name,
                f"{label} {suffix}",
                MappingProxyType(_frozen(params)),
                index,
                grid_keys=keys,
            )
        )
    return out


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
    """Builds the environment and every agent, checking every value.

    `num_arms` and `dim` are filled from the environment where the agent takes
    them; a value given in the config that disagrees with the env is an error.
    """
    try:
        env = env_registry.make_env(config.env.id, **config.env.params)
    except BanditConfigError as err:
        raise _with_path(
            err, config.env.params, lambda k: f"env.params.{k}", "env.params"
        ) from None
    built, kwargs_list = [], []
    for agent in config.agents:
        kwargs = _agent_kwargs(agent, env, config.env.id)
        try:
            items = tuple(kwargs.items())
            try:
                hash(items)
            except TypeError:  # an unhashable value: build without the memo
                built.append(agent_registry.make(agent.name, **kwargs))
            else:
                factory = agent_registry.registered()[agent.name].factory
                built.append(_make_agent(agent.name, items, factory))
        except BanditConfigError as err:
            raise _with_path(
                err, kwargs, agent.path, f"agents[{agent.index}] ({agent.label!r})"
            ) from None
        kwargs_list.append(MappingProxyType(kwargs))
    return Experiment(config, env, tuple(built), tuple(kwargs_list))


@functools.lru_cache(maxsize=256)
def _make_agent(
    name: str, kwargs: tuple[tuple[str, Any], ...], factory: Callable[..., Agent]
) -> Agent:
    """`agents.make`, memoised: the same name and hyperparameters give the same
    `Agent` object, so its jitted simulation is compiled once per process.

    `factory` (the registered one) is part of the cache key only.
    """
    del factory
    return agent_registry.make(name, **dict(kwargs))


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


def _agent_kwargs(agent: AgentConfig, env: Env, env_id: str) -> dict[str, Any]:
    accepted = agent_registry.hyperparameters(agent.name)
    kwargs = dict(agent.hyperparameters)
    features = kwargs.get("features", accepted.get("features", "context"))
    shapes = env_shapes(env, features if isinstance(features, str) else "context")
    if features == "arms" and shapes["dim"] == 0:
        raise BanditConfigError(
            f"{agent.path('features')} = 'arms' needs per-arm features, but env "
            f"{env_id!r} has none (arm feature dim 0); use features = 'context'"
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
                f"{env_id!r} has {what} {expected} (leave it out to take it from "
                "the env)"
            )
        kwargs[key] = expected
    return kwargs


def _with_path(
    err: BanditConfigError, kwargs: Mapping[str, Any], path_of, fallback: str
) -> BanditConfigError:
    """Rewrites "alpha must be ..." into "<path of alpha> must be ..."."""
    message = str(err)
    for key in sorted(kwargs, key=len, reverse=True):
        if (
            message.startswith(key)
            and not message[len(key) : len(key) + 1].isidentifier()
        ):
            return BanditConfigError(path_of(key) + message[len(key) :])
    return BanditConfigError(f"{fallback}: {message}")


# ---------------------------------------------------------------------------
# Small checks


def _table(path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BanditConfigError(f"{path} must be a table, got {_type_name(value)}")
    return value


def _check_keys(
    table: Mapping[str, Any],
    allowed: Sequence[str],
    where: str,
    required: Sequence[str] = (),
) -> None:
    for key in table:
        if key not in allowed:
            raise BanditConfigError(
                f"unknown key {key!r} in {where}; allowed: {', '.join(allowed)}"
            )
    for key in required:
        if key not in table:
            raise BanditConfigError(f"missing key {key!r} in {where}")


def _check_type(path: str, value: Any, kind: type, description: str) -> None:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BanditConfigError(
            f"{path} must be {description}, got {_type_name(value)}"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(path: str, value: Any) -> int:
    if not _is_int(value):
        raise BanditConfigError(f"{path} must be an integer, got {_type_name(value)}")
    if value <= 0:
        raise BanditConfigError(f"{path} must be > 0, got {value}")
    return value


def _check_value(path: str, value: Any, default: Any) -> None:
    """Checks a parameter value's TOML type against its default's type."""
    if isinstance(value, dict):
        raise BanditConfigError(f"{path} must be a single value, got a table")
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict | list):
                raise BanditConfigError(
                    f"{path}[{i}] must be a number, string or boolean, got "
                    f"{_type_name(item)}"
                )
    elif not isinstance(value, bool | int | float | str):
        raise BanditConfigError(
            f"{path} must be a number, string or boolean, got {_type_name(value)}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise BanditConfigError(f"{path} must be a finite number, got {value}")
    if default is inspect.Parameter.empty or default is None:
        return
    if isinstance(default, bool):
        _check_type(path, value, bool, "a boolean (true or false)")
    elif isinstance(default, int):
        _check_type(path, value, int, "an integer")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BanditConfigError(f"{path} must be a number, got {_type_name(value)}")
    elif isinstance(default, str):
        _check_type(path, value, str, "a string")
    elif isinstance(default, tuple | list):
        _check_type(path, value, list, "an array")


def _type_name(value: Any) -> str:
    names = {dict: "table", list: "array", bool: "bool", str: "str", int: "int"}
    return names.get(type(value), type(value).__name__)


def _frozen(table: Mapping[str, Any]) -> dict[str, Any]:
    """Arrays become tuples so that values are hashable (jit static config)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}


def _plain(table: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in table.items()}


def _toml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_text(v) for v in value) + "]"
    return str(value)


def _toml_value(value: Any) -> str:
    """A TOML literal for the scalar, array and table values a config can hold."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = (f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + ", ".join(items) + " }" if value else "{}"
    raise BanditConfigError(f"cannot write {value!r} ({_type_name(value)}) as TOML")


def _toml_key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
    return key if bare else json.dumps(key, ensure_ascii=False)
