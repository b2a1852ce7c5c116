"""The config of the pretrain/fine-tune study (`experiments.studies.pretrain_finetune`).

`load_study` parses `experiments/configs/pretrain_finetune.toml` (or another TOML
in its layout) into frozen dataclasses and checks it before any compute:

    [run]       the platform's `[run]` (horizon, seeds, chunk_size, seed_key,
                prediction_contexts; `experiments.config.tables.parse_study_run`)
                less what the study sets itself (every step is stored, its own
                held-out metrics), plus early_steps and instances ("logged" or
                "held_out")
    [logs]      policy, params, events (an int or a list: a grid over data
                size), holdout, num_streams, seed, instances (problem instances
                the logs come from; default 1)
    [model]     width, depth, heads, mlp_ratio, wide_cross   (the transformer;
                checked by building its config for each env a transformer
                trained here runs on, `agents.transformer.config_for_env`)
    [pretrain]  epochs, batch_size, learning_rate, max_weight, ssl_weight
                (checked by `agents.pretrain.check_options`), seed
    [[envs]]    id, params, grid (env parameter -> list of values: one cell per
                point of the cartesian product), parsed by the platform's env
                parser (`experiments.config.loader.parse_env`), as `[env]` is
    [[agents]]  the platform's keys (name, label, hyperparameters, grid,
                warm_start, checkpoint, feature_map), parsed by the platform
                (`experiments.config.loader.parse_agent`), and the study's:
                pretrained, model, pretrain, envs (ids it runs on; default all)

`warm_start = true` means this env's logs (the part before the held-out
events); a string is a Parquet path, relative to the config's folder. The
study writes one platform config per env from these entries
(`experiments.studies.pretrain_finetune.platform_config`).

The transformer's shapes come from the env (`agents.transformer.config_for_env`).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import envs
from bandits.validation import BanditConfigError, non_negative_int, positive_int, real
from envs import logged
from experiments.config.checks import check_keys, is_int, table
from experiments.config.loader import AGENT_KEYS, parse_agent, parse_env
from experiments.config.schema import RunConfig, plain
from experiments.config.sources import parse_toml, read_source
from experiments.config.tables import parse_study_run

STUDY = "pretrain_finetune"
"""The config's `study` key: `bandits run` runs it with this study."""
TOP_KEYS = {"study", "name", "run", "logs", "model", "pretrain", "envs", "agents"}
RUN_INSTANCES = ("logged", "held_out")
"""`run.instances`: the online runs use the instance the logs came from, or
draw a fresh instance per seed that no log came from."""
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
LOGGING_POLICIES = {
    "uniform": logged.uniform,
    "epsilon_greedy_popularity": logged.epsilon_greedy_popularity,
    "softmax_noisy_oracle": logged.softmax_noisy_oracle,
}
PRETRAINED = ("ips", "unweighted")
LOGS_KEYS = {
    "policy",
    "params",
    "events",
    "holdout",
    "num_streams",
    "seed",
    "instances",
}
ENV_KEYS = ("id", "params", "grid")
"""`[[envs]]` keys: the platform's env table without named settings."""
STUDY_AGENT_KEYS = ("pretrained", "model", "pretrain", "envs")
"""`[[agents]]` keys of the study; the others are the platform's."""
MODEL_KEYS = {"width", "depth", "heads", "mlp_ratio", "wide_cross"}
PRETRAIN_KEYS = {
    "epochs",
    "batch_size",
    "learning_rate",
    "max_weight",
    "ssl_weight",
    "seed",
}


@dataclasses.dataclass(frozen=True)
class StudyAgent:
    """One `[[agents]]` entry of the study (one per grid point)."""

    label: str
    name: str
    """"transformer", or a registered agent name."""
    hyperparameters: Mapping[str, Any]
    pretrained: str | None = None  # "ips", "unweighted" or None
    warm_start: bool | str = False
    """True: this env's logs (their training part); a string: a Parquet path
    (relative to the config's folder)."""
    feature_map: str | None = None
    envs: tuple[str, ...] | None = None  # env ids it runs on (None: all)
    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    pretrain: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    checkpoint: str | None = None
    """An existing checkpoint (a path), for a transformer not pretrained here."""

    @property
    def checkpoint_tag(self) -> str:
        """Names the pretrained model: the variant and any per-agent overrides."""
        overrides = {**self.model, **self.pretrain}
        suffix = "-".join(f"{k}{v}" for k, v in sorted(overrides.items()))
        return f"{self.pretrained}_{suffix}" if suffix else str(self.pretrained)


RUN_OWN_KEYS = ("early_steps", "instances")
"""`[run]` keys of the study; the others are the platform's."""
RUN_FIXED = {
    "curve_points": "every step is stored, so the regret at early_steps is exact",
    "curve_spacing": "every step is stored",
    "prediction_seeds": "the study scores reward models on held-out logged events",
    "resample_params": "run.instances chooses the online instances",
    "output": "the study writes into --out",
}
"""Platform `[run]` keys the study sets itself -> why."""
RUN_DEFAULTS = {"horizon": 20_000, "seeds": 16}


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    run: RunConfig
    """The platform's `[run]` settings of the online runs (the keys in
    `RUN_FIXED` at their defaults: `platform_config` sets them)."""
    early_steps: int
    logs: Mapping[str, Any]
    model: Mapping[str, Any]
    pretrain: Mapping[str, Any]
    envs: tuple[tuple[str, Mapping[str, Any]], ...]
    agents: tuple[StudyAgent, ...]
    grids: Mapping[str, Mapping[str, tuple]] = dataclasses.field(default_factory=dict)
    """Env id -> its `grid` (parameter -> values); absent: no grid."""
    run_instances: str = "logged"
    """`run.instances` (`RUN_INSTANCES`)."""

    @property
    def horizon(self) -> int:
        return self.run.horizon

    @property
    def seeds(self) -> int:
        """How many seeds the online runs have."""
        return len(self.run.seeds)


LOGS_CHECKS = {
    "num_streams": lambda field, v: positive_int(field, v),
    "seed": lambda field, v: non_negative_int(field, v),
    "holdout": lambda field, v: real(
        field, v, low=0.0, high=1.0, low_open=True, high_open=True
    ),
}
"""`[logs]` values checked by type and range (policy, events and instances
by `_check_logs`)."""


def _table(raw: Mapping, name: str, allowed: set[str], where: str = "") -> dict:
    """Table `name` of `raw` (absent: empty) with only the `allowed` keys."""
    path = f"{where}.{name}" if where else name
    value = table(path, raw.get(name, {}))
    check_keys(value, sorted(allowed), f"[{path}]")
    return value


def _at(path: str, settings: Mapping[str, Any], check, fallback: str = "") -> Any:
    """`check()`, its error reported at `path.<field>` where the field is one of
    `settings`, else at `fallback.<field>` (or `path`)."""
    try:
        return check()
    except BanditConfigError as err:
        if err.field is not None and err.field in settings:
            raise err.at(f"{path}.{err.field}") from None
        if err.field is not None and fallback:
            raise err.at(f"{fallback}.{err.field}") from None
        raise err.at(path) from None


def _check_pretrain(options: Mapping[str, Any], path: str, fallback: str = "") -> None:
    """`[pretrain]` (or an agent's merged over it) checked by the library's
    own rules (`agents.pretrain.check_options`), before any compute."""
    from agents import pretrain as pretraining

    if "seed" in options:
        non_negative_int(f"{path}.seed", options["seed"])
    training = {k: v for k, v in options.items() if k != "seed"}
    _at(path, options, lambda: pretraining.check_options(**training), fallback)


def _check_model(
    model: Mapping[str, Any], env, path: str, overrides: Mapping[str, Any]
) -> None:
    """The architecture `{**model, **overrides}` checked by the library's own
    rules: the transformer's config for `env` (`agents.transformer.config_for_env`)
    is built, as the study builds it; errors name `path` for an override's
    field and `model` for the study's."""
    from agents import transformer as tf

    if not hasattr(env, "item_dim"):
        raise BanditConfigError(
            f"{path.rsplit('.', 1)[0]}: a transformer reads a recommendation env's "
            f"items (ContextualRec-*), not {type(env).__name__}"
        )
    merged = {**model, **overrides}
    _at(path, overrides, lambda: tf.config_for_env(env, **merged), "model")


def _env_ids(value: Any, field: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BanditConfigError(f"{field} must be a list of env ids, got {value!r}")
    for env_id in value:
        envs.make_env(env_id)
    return tuple(value)


def load_study(config: str) -> StudyConfig:
    """Parses and checks the study's TOML config (a path or a packaged name)."""
    # A file, else a packaged config's name; missing or unreadable: a named error.
    text, origin, name = read_source(config)
    path = Path(config) if Path(config).is_file() else CONFIG_DIR / f"{name}.toml"
    raw = parse_toml(text, origin)
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise BanditConfigError(f"unknown top-level key(s) {unknown} in {path}")
    if raw.get("study", STUDY) != STUDY:
        raise BanditConfigError.about(
            "study", f"must be {STUDY!r} in this study's config, got {raw['study']!r}"
        )
    run_table = table("run", raw.get("run", {}))
    held_out = run_table.get("instances", "logged") == "held_out"
    run, own = parse_study_run(
        run_table,
        own=RUN_OWN_KEYS,
        fixed=RUN_FIXED,
        defaults={**RUN_DEFAULTS, "resample_params": held_out},
    )
    early_steps = positive_int("run.early_steps", own.get("early_steps", 2_000))
    logs = _table(raw, "logs", LOGS_KEYS)
    for key, check in LOGS_CHECKS.items():
        if key in logs:
            check(f"logs.{key}", logs[key])
    _check_logs(logs)
    run_instances = own.get("instances", "logged")
    _check_run_instances(run_instances, logs)
    model = _table(raw, "model", MODEL_KEYS)
    pre = _table(raw, "pretrain", PRETRAIN_KEYS)
    _check_pretrain(pre, "pretrain")
    env_list, grids = [], {}
    for i, entry in enumerate(raw.get("envs", [])):
        # The platform's parser of an env table (no named settings here).
        env = parse_env(table(f"envs[{i}]", entry), f"envs[{i}]", ENV_KEYS)
        params = plain(env.params)  # as TOML gives them: tuples back to lists
        _check_points(i, env.id, params, env.grid)
        env_list.append((env.id, params))
        if env.grid:
            grids[env.id] = dict(env.grid)
        made = envs.make_env(env.id, **params)
        if model and hasattr(made, "item_dim"):  # a transformer's env
            _check_model(model, made, "model", {})
    specs = []
    for i, entry in enumerate(raw.get("agents", [])):
        entry = table(f"agents[{i}]", entry)
        specs += _study_agents(i, entry, path.parent, model, pre, env_list)
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise BanditConfigError(f"agent labels must be unique, got {labels}")
    return StudyConfig(
        run=run,
        early_steps=early_steps,
        logs=logs,
        model=model,
        pretrain=pre,
        envs=tuple(env_list),
        agents=tuple(specs),
        grids=grids,
        run_instances=run_instances,
    )


def _check_logs(logs: Mapping[str, Any]) -> None:
    """`logs.policy`, `logs.events` (a positive int or a non-empty list of
    them) and `logs.instances` (an int >= 1)."""
    if logs.get("policy", "uniform") not in LOGGING_POLICIES:
        raise BanditConfigError(
            f"logs.policy must be one of {sorted(LOGGING_POLICIES)}, got "
            f"{logs.get('policy')!r}"
        )
    events = logs.get("events", 100_000)
    values = events if isinstance(events, list) else [events]
    if not values or not all(is_int(v) and v > 0 for v in values):
        raise BanditConfigError(
            "logs.events must be a positive integer or a non-empty list of "
            f"positive integers (one cell per data size), got {events!r}"
        )
    instances = logs.get("instances", 1)
    if not is_int(instances) or instances < 1:
        raise BanditConfigError(
            f"logs.instances must be an integer >= 1 (problem instances the logs "
            f"come from), got {instances!r}"
        )
    if any(v < instances for v in values):
        raise BanditConfigError(
            f"logs.events {events!r} must be at least logs.instances = "
            f"{instances} (events / instances per instance)"
        )


def _check_run_instances(value: Any, logs: Mapping[str, Any]) -> None:
    if value not in RUN_INSTANCES:
        raise BanditConfigError(
            f"run.instances must be one of {', '.join(map(repr, RUN_INSTANCES))}, "
            f"got {value!r}"
        )
    if value == "logged" and logs.get("instances", 1) != 1:
        raise BanditConfigError(
            f"run.instances = 'logged' runs online on the one instance the logs "
            f"came from, so it needs logs.instances = 1, got "
            f"{logs.get('instances')!r}; use run.instances = 'held_out'"
        )


def _check_points(
    index: int, env_id: str, params: Mapping[str, Any], grid: Mapping[str, tuple]
) -> None:
    """Builds the env at every grid point (bad values fail here, before any
    compute)."""
    where = f"envs[{index}].grid"
    for point in itertools.product(*grid.values()):
        setting = dict(zip(grid, point, strict=True))
        try:
            envs.make_env(env_id, **params, **setting)
        except (BanditConfigError, TypeError, ValueError) as err:
            if not setting:
                raise BanditConfigError(f"envs[{index}].params: {err}") from err
            raise BanditConfigError(f"{where} point {setting}: {err}") from err


def _study_agents(
    index: int,
    entry: Mapping[str, Any],
    base: Path,
    model: Mapping[str, Any],
    pretrain_options: Mapping[str, Any],
    env_list: list[tuple[str, Any]],
) -> list[StudyAgent]:
    """One `[[agents]]` table: the study's keys here, the rest (name, label,
    hyperparameters, grid, warm_start as a path, checkpoint, feature_map) by
    the platform's parser, which checks them as in any platform config. A
    transformer trained here has its architecture (the study's `[model]` with
    its own `model`) checked on every env it runs on, and its own `pretrain`
    options, by the library's rules."""
    where = f"agents[{index}]"
    check_keys(entry, (*AGENT_KEYS, *STUDY_AGENT_KEYS), where, required=("name",))
    pretrained = entry.get("pretrained", False)
    if pretrained not in (False, *PRETRAINED):
        raise BanditConfigError(
            f"{where}.pretrained must be false, 'ips' or 'unweighted'; got "
            f"{pretrained!r}"
        )
    if pretrained and entry.get("name") != "transformer":
        raise BanditConfigError(
            f"{where}.pretrained: only a transformer is pretrained here, got "
            f"name = {entry.get('name')!r}"
        )
    platform = {k: v for k, v in entry.items() if k not in STUDY_AGENT_KEYS}
    warm = platform.get("warm_start", False)
    if isinstance(warm, bool):  # true: this env's logs, chosen per env
        platform.pop("warm_start", None)
    model_overrides = _table(entry, "model", MODEL_KEYS, where)
    pretrain = _table(entry, "pretrain", PRETRAIN_KEYS, where)
    env_ids = _env_ids(entry.get("envs"), f"{where}.envs")
    if entry.get("name") == "transformer" and "checkpoint" not in entry:
        if pretrain:
            merged = {**pretrain_options, **pretrain}
            _check_pretrain(merged, f"{where}.pretrain", "pretrain")
        for env_id, params in env_list:
            if env_ids is None or env_id in env_ids:
                env = envs.make_env(env_id, **params)
                _check_model(model, env, f"{where}.model", model_overrides)
    out = []
    for parsed in parse_agent(index, platform, base):
        start = parsed.start
        out.append(
            StudyAgent(
                label=parsed.label,
                name=parsed.name,
                hyperparameters=dict(parsed.hyperparameters),
                pretrained=pretrained or None,
                warm_start=warm if isinstance(warm, bool) else start.warm_start.path,  # type: ignore[union-attr]
                feature_map=None if start is None else start.feature_map,
                envs=env_ids,
                model=model_overrides,
                pretrain=pretrain,
                checkpoint=None
                if start is None or start.checkpoint is None
                else start.checkpoint.path,
            )
        )
    return out
