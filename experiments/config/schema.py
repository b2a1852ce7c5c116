"""The validated form of an experiment config (frozen dataclasses).

`experiments.config` parses TOML into these; they are plain data, hashable where
jit needs it (lists become tuples), and know their canonical JSON form, whose hash
identifies the results a config produces.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from bandits.types import Agent, Env
from experiments.config.start import AgentStart
from experiments.config.toml_writer import display_value, toml_value
from experiments.store.storage import DEFAULT_CURVE_POINTS

MAX_AUTO_CHUNK = 32
"""Largest `chunk_size` that "auto" picks (seeds per compiled batch)."""
AUTO_CHUNK_BYTES = 64 * 2**20
"""Trajectory memory that "auto" aims for per chunk and swept setting."""
TRAJECTORY_BYTES_PER_ROUND = 24
"""Bytes of `Trajectory` per simulated round (six 4-byte fields)."""
DEFAULT_PREDICTION_SEEDS = 4
DEFAULT_PREDICTION_CONTEXTS = 1000


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """The environment: a registry id, its keyword parameters and a grid."""

    id: str
    """Registered id, e.g. "Linear-v0"."""
    params: Mapping[str, Any]
    """Keyword arguments of the env factory (read-only)."""
    grid: Mapping[str, tuple[Any, ...]] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    """Parameter -> values; every combination is one env setting (read-only)."""
    settings: tuple[NamedSetting, ...] = ()
    """Named settings, one env setting each (instead of a grid), in file order."""


@dataclasses.dataclass(frozen=True)
class NamedSetting:
    """One `[env] settings` entry: a label and the parameters it changes."""

    label: str
    params: Mapping[str, Any]
    """Keyword arguments that replace `env.params` for this setting (read-only)."""


@dataclasses.dataclass(frozen=True)
class EnvSetting:
    """One point of the env grid (the only one if there is no grid)."""

    index: int
    label: str
    """E.g. "noise_std=0.5"; empty when the config has no env grid."""
    params: Mapping[str, Any]
    """All keyword arguments of the env factory for this setting."""
    values: Mapping[str, Any]
    """The grid values of this setting (empty without a grid)."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """How long, how often, where and how results are stored."""

    horizon: int
    """Rounds per run, T > 0."""
    seeds: tuple[int, ...]
    """The seeds, one run per seed per agent and env setting."""
    resample_params: bool = False
    """Draw a fresh problem instance per seed instead of the env's default one."""
    output: str | None = None
    """Results folder; `None` means `results/<name>`."""
    curve_points: int = DEFAULT_CURVE_POINTS
    """Most steps stored per curve; longer runs keep log(+linear) spaced steps."""
    chunk_size: int | None = None
    """Seeds per compiled batch and per stored chunk; `None` means "auto"."""
    curve_spacing: str = "log+linear"
    """Which steps long curves keep: "log+linear" or "log" (see `curve_steps`)."""
    prediction_seeds: int = DEFAULT_PREDICTION_SEEDS
    """How many seeds (the first ones) evaluate the agent's reward model; 0: none."""
    prediction_contexts: int = DEFAULT_PREDICTION_CONTEXTS
    """Held-out contexts per evaluated seed."""
    seed_key: str = "split"
    """How each seed's key is used (`bandits.seeds.SEED_KEYS`): "split" into
    (problem instance, run) keys, or "direct" as the run's key."""

    @property
    def resolved_chunk_size(self) -> int:
        """`chunk_size`, or the automatic choice (see `auto_chunk_size`)."""
        if self.chunk_size is not None:
            return self.chunk_size
        return auto_chunk_size(self.horizon, len(self.seeds))


def auto_chunk_size(horizon: int, num_seeds: int) -> int:
    """Seeds per chunk when `chunk_size = "auto"`.

    The largest power of two up to `MAX_AUTO_CHUNK` whose trajectory (seeds x T x
    24 bytes per setting) fits in `AUTO_CHUNK_BYTES`, and no more than the seeds.
    It depends on the config only (never on the machine), because results are
    bit-identical only for the same chunk size.
    """
    fit = max(1, AUTO_CHUNK_BYTES // (TRAJECTORY_BYTES_PER_ROUND * horizon))
    power = 1 << (min(fit, MAX_AUTO_CHUNK).bit_length() - 1)
    return max(1, min(power, num_seeds))


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
    base_label: str = ""
    """The label of the `[[agents]]` table (before grid values are appended)."""
    start: AgentStart | None = None
    """Logged data, a checkpoint or a feature map it starts from
    (`experiments.config.start`); None: a cold start."""

    def path(self, key: str) -> str:
        """The config path of hyperparameter `key`, e.g. `agents[1].grid.alpha`."""
        table = "grid" if key in self.grid_keys else "hyperparameters"
        return f"agents[{self.index}].{table}.{key}"

    @property
    def grid_values(self) -> dict[str, Any]:
        """The values of this agent's grid hyperparameters."""
        return {k: self.hyperparameters[k] for k in self.grid_keys}


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

    @property
    def settings(self) -> tuple[EnvSetting, ...]:
        """The env settings: the cartesian product of `env.grid` (in file order)."""
        return env_settings(self.env)

    def canonical(self) -> dict[str, Any]:
        """Everything that determines the results, as plain JSON data.

        The name, the output folder and the source are left out: they do not
        change the results. `chunk_size` is in (resolved): float32 results are
        bit-identical only for the same seeds per compiled batch.
        """
        return {
            "env": self._canonical_env(),
            "run": self._canonical_run(),
            "agents": [
                {
                    "name": a.name,
                    "label": a.label,
                    "hyperparameters": plain(a.hyperparameters),
                    # absent without a start: older configs keep their hash
                    **(a.start.canonical() if a.start is not None else {}),
                }
                for a in self.agents
            ],
        }

    def _canonical_run(self) -> dict[str, Any]:
        run: dict[str, Any] = {
            "horizon": self.run.horizon,
            "seeds": list(self.run.seeds),
            "resample_params": self.run.resample_params,
            "chunk_size": self.run.resolved_chunk_size,
            "curve_points": self.run.curve_points,
            "curve_spacing": self.run.curve_spacing,
            "prediction_seeds": self.run.prediction_seeds,
            "prediction_contexts": self.run.prediction_contexts,
        }
        if self.run.seed_key != "split":  # absent otherwise: older configs keep
            run["seed_key"] = self.run.seed_key  # their hash
        return run

    def _canonical_env(self) -> dict[str, Any]:
        env: dict[str, Any] = {
            "id": self.env.id,
            "params": plain(self.env.params),
            "grid": plain(self.env.grid),
        }
        if self.env.settings:  # absent otherwise: older configs keep their hash
            env["settings"] = self._settings_plain()
        return env

    def _settings_plain(self) -> list[dict[str, Any]]:
        return [
            {"label": s.label, "params": plain(s.params)} for s in self.env.settings
        ]

    def to_toml(self) -> str:
        """The config as TOML (agent grids expanded), parseable to an equal config."""
        lines = [f"name = {toml_value(self.name)}", "", "[env]"]
        lines += [f"id = {toml_value(self.env.id)}"]
        lines += [f"params = {toml_value(plain(self.env.params))}"]
        if self.env.grid:
            lines += [f"grid = {toml_value(plain(self.env.grid))}"]
        if self.env.settings:
            lines += [f"settings = {toml_value(self._settings_plain())}"]
        lines += ["", "[run]"]
        for key, value in self.canonical()["run"].items():
            lines.append(f"{key} = {toml_value(value)}")
        if self.run.output is not None:
            lines.append(f"output = {toml_value(self.run.output)}")
        for agent in self.agents:
            lines += ["", "[[agents]]", f"name = {toml_value(agent.name)}"]
            lines.append(f"label = {toml_value(agent.label)}")
            lines.append(
                f"hyperparameters = {toml_value(plain(agent.hyperparameters))}"
            )
            if agent.start is not None:
                for key, value in agent.start.table().items():
                    lines.append(f"{key} = {toml_value(value)}")
        return "\n".join(lines) + "\n"

    def hash(self) -> str:
        """SHA-256 of the canonical JSON form (sorted keys)."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass(frozen=True, eq=False)
class AgentSpec:
    """An agent as one immutable, hashable value: registry name and arguments.

    The config's hyperparameters, with `num_arms` and `dim` filled in from the
    env, become one `AgentSpec` when the config is built; that value travels
    unchanged through the plan and the task to the worker, where
    `experiments.config.loader.build_agent` builds it (once per process).
    """

    name: str
    """Registry name, e.g. "linucb"."""
    items: tuple[tuple[str, Any], ...]
    """Keyword arguments in order; arrays as tuples."""
    start: AgentStart | None = None
    """What the agent starts from (`experiments.config.start`), if anything."""
    env: tuple[str, tuple[tuple[str, Any], ...]] | None = None
    """With a start: the env id and parameters it was built for (a feature map
    reads the env's shapes)."""

    @classmethod
    def of(
        cls,
        name: str,
        kwargs: Mapping[str, Any],
        start: AgentStart | None = None,
        env: tuple[str, Mapping[str, Any]] | None = None,
    ) -> AgentSpec:
        frozen_env = None
        if start is not None and env is not None:
            frozen_env = (env[0], tuple(frozen(env[1]).items()))
        return cls(name, tuple(frozen(kwargs).items()), start, frozen_env)

    def _key(self) -> tuple:
        items = tuple(sorted(self.items, key=lambda item: item[0]))
        return self.name, items, self.start, self.env

    def __eq__(self, other: object) -> bool:
        """Equal when the name and the arguments are (their order is not part of
        it: they are keyword arguments)."""
        return isinstance(other, AgentSpec) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments as a new dictionary."""
        return dict(self.items)

    def without(self, names: Iterable[str]) -> AgentSpec:
        """The spec with the named arguments left out (the swept ones)."""
        drop = set(names)
        kept = tuple(i for i in self.items if i[0] not in drop)
        return dataclasses.replace(self, items=kept)

    def with_values(self, values: Mapping[str, Any]) -> AgentSpec:
        """The spec with arguments set (added at the end if new)."""
        kwargs = self.kwargs
        kwargs.update(values)
        return dataclasses.replace(self, items=tuple(frozen(kwargs).items()))


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A config with its environments and agents built (ready to run)."""

    config: ExperimentConfig
    envs: tuple[Env, ...]
    """One built environment per env setting."""
    agents_by_setting: tuple[tuple[Agent, ...], ...]
    """[setting][agent]: the built agents (shapes taken from that setting's env)."""
    specs_by_setting: tuple[tuple[AgentSpec, ...], ...]
    """[setting][agent]: the spec each agent was built from."""

    @property
    def kwargs_by_setting(self) -> tuple[tuple[Mapping[str, Any], ...], ...]:
        """[setting][agent]: the full keyword arguments each agent was built with."""
        return tuple(
            tuple(MappingProxyType(s.kwargs) for s in specs)
            for specs in self.specs_by_setting
        )

    @property
    def env(self) -> Env:
        """The environment of the first (or only) env setting."""
        return self.envs[0]

    @property
    def agents(self) -> tuple[Agent, ...]:
        """The agents of the first (or only) env setting."""
        return self.agents_by_setting[0]

    @property
    def agent_kwargs(self) -> tuple[Mapping[str, Any], ...]:
        """The agent keyword arguments of the first (or only) env setting."""
        return self.kwargs_by_setting[0]


def env_settings(env: EnvConfig) -> tuple[EnvSetting, ...]:
    """Every named setting, or every point of the env grid, as an `EnvSetting`
    (one if there is neither)."""
    if env.settings:
        return tuple(
            EnvSetting(
                index,
                named.label,
                MappingProxyType({**env.params, **named.params}),
                MappingProxyType({}),
            )
            for index, named in enumerate(env.settings)
        )
    keys = tuple(env.grid)
    settings = []
    for index, point in enumerate(itertools.product(*(env.grid[k] for k in keys))):
        values = dict(zip(keys, point, strict=True))
        label = " ".join(f"{k}={display_value(v)}" for k, v in values.items())
        settings.append(
            EnvSetting(
                index,
                label,
                MappingProxyType({**env.params, **values}),
                MappingProxyType(values),
            )
        )
    return tuple(settings)


def frozen_value(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def frozen(table: Mapping[str, Any]) -> dict[str, Any]:
    """Arrays become tuples so that values are hashable (jit static config)."""
    return {k: frozen_value(v) for k, v in table.items()}


def plain(table: Mapping[str, Any]) -> dict[str, Any]:
    """Tuples become lists (nested once, as in grids of arrays), for JSON."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    return {k: plain(v) for k, v in table.items()}
