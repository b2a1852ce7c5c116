"""Agents that start from data: the `warm_start`, `checkpoint` and `feature_map`
fields of an `[[agents]]` table.

    [[agents]]
    name = "linucb_context_items"
    warm_start = "logs/train.parquet"    # replay these logged events first
    [[agents]]
    name = "transformer"
    checkpoint = "checkpoint.npz"        # a pretrained transformer
    [[agents]]
    name = "neural_ts"
    feature_map = "context_items"        # learn on context x item features

* `warm_start`: a logged-data Parquet file (`envs.logged.save`). The agent
  starts every seed from the state it reaches by `update` on the logged events
  in order (`agents.warm_start.warm_start`, key 0); any agent but a slate one.
* `checkpoint`: a pretrained model: for `name = "transformer"` (or
  `"transformer_slate"`) a checkpoint of `agents.pretrain.save_checkpoint`, for
  `name = "in_context"` one of `agents.in_context_pretrain.save_checkpoint`.
  The agent's shapes and architecture then come from the checkpoint
  (`hyperparameters` hold the policy options; `random_init = true` keeps the
  architecture and starts from random parameters).
* `feature_map = "context_items"`: a shared-parameter agent built with
  `features = "arms"` that sees each arm as [item features, context x item
  category one-hot] (`agents.features.cross_items_for`; recommendation envs).

Paths are relative to the config file's folder (to the working folder for a
packaged config or a parsed table). Each file is checked when the config is
loaded, before any compute: that it exists and reads, its format and version,
and its shapes against the env (and the agent). Its SHA-256 is part of the
config's identity (`ExperimentConfig.canonical`), not its path: a changed file
is a changed config, an unchanged one (even moved) is the same. A worker checks
the checksum again before it uses a file, and builds the warm state or loads the
parameters once per process (`experiments.config.loader.build_agent`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bandits.types import Agent, Env
from bandits.validation import BanditConfigError

WARM_START = "warm_start"
CHECKPOINT = "checkpoint"
FEATURE_MAP = "feature_map"
START_KEYS = (WARM_START, CHECKPOINT, FEATURE_MAP)
FEATURE_MAPS = ("context_items",)
CHECKPOINT_AGENTS = ("transformer", "transformer_slate", "in_context")
"""Agents whose factory takes pretrained `params` (and the architecture)."""
LOGGED_COLUMNS = ("context", "arms", "mask", "action", "reward")


@dataclasses.dataclass(frozen=True)
class StartFile:
    """A file an agent starts from: where it is and what it holds."""

    path: str
    """Absolute path."""
    sha256: str
    """Hex SHA-256 of its bytes when the config was loaded."""
    written: str = dataclasses.field(default="", compare=False)
    """The path as the config wrote it (not part of its identity)."""


@dataclasses.dataclass(frozen=True)
class AgentStart:
    """How an agent starts: logged events to replay, a checkpoint, a feature map."""

    warm_start: StartFile | None = None
    checkpoint: StartFile | None = None
    feature_map: str | None = None

    def canonical(self) -> dict[str, Any]:
        """The fields that determine results: checksums (not paths), the map."""
        out: dict[str, Any] = {}
        for key, file in ((WARM_START, self.warm_start), (CHECKPOINT, self.checkpoint)):
            if file is not None:
                out[key] = {"sha256": file.sha256}
        if self.feature_map is not None:
            out[FEATURE_MAP] = self.feature_map
        return out

    def table(self) -> dict[str, str]:
        """The `[[agents]]` keys that give this start (absolute paths)."""
        out = {}
        for key, file in ((WARM_START, self.warm_start), (CHECKPOINT, self.checkpoint)):
            if file is not None:
                out[key] = file.path
        if self.feature_map is not None:
            out[FEATURE_MAP] = self.feature_map
        return out


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def parse_start(
    where: str, name: str, raw: Mapping[str, Any], base_dir: Path
) -> AgentStart | None:
    """The start fields of `[[agents]]` table `raw` (None if it has none).

    Checks the types, that files exist and read, and which agents take what;
    the files' contents are checked against the env by `check_start`.
    """
    if not any(key in raw for key in START_KEYS):
        return None
    feature_map = raw.get(FEATURE_MAP)
    if feature_map is not None and feature_map not in FEATURE_MAPS:
        raise BanditConfigError(
            f"{where}.{FEATURE_MAP} must be one of "
            f"{', '.join(map(repr, FEATURE_MAPS))}; got {feature_map!r}"
        )
    checkpoint = _start_file(f"{where}.{CHECKPOINT}", raw.get(CHECKPOINT), base_dir)
    if checkpoint is not None and name not in CHECKPOINT_AGENTS:
        raise BanditConfigError(
            f"{where}.{CHECKPOINT}: agent {name!r} cannot start from a checkpoint; "
            f"only {', '.join(map(repr, CHECKPOINT_AGENTS))} can (use warm_start "
            "for logged data)"
        )
    if checkpoint is not None and feature_map is not None:
        raise BanditConfigError(
            f"{where}: a checkpoint fixes the model's inputs; it takes no {FEATURE_MAP}"
        )
    return AgentStart(
        warm_start=_start_file(f"{where}.{WARM_START}", raw.get(WARM_START), base_dir),
        checkpoint=checkpoint,
        feature_map=feature_map,
    )


def _start_file(field: str, value: Any, base_dir: Path) -> StartFile | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BanditConfigError(
            f"{field} must be a file path (a string, relative to the config's "
            f"folder), got {value!r}"
        )
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    path = path.resolve()
    if not path.exists():
        raise BanditConfigError(f"{field}: file {str(path)!r} does not exist")
    if not path.is_file():
        raise BanditConfigError(f"{field}: {str(path)!r} is not a file")
    try:
        digest = file_sha256(path)
    except OSError as err:
        raise BanditConfigError(f"{field}: cannot read {str(path)!r}: {err}") from None
    return StartFile(str(path), digest, value)


# ---------------------------------------------------------------------------
# Building (the loader, and every worker)


def start_kwargs(
    start: AgentStart, kwargs: Mapping[str, Any], env: Env, where: str, name: str
) -> dict[str, Any]:
    """The agent's keyword arguments with what its start fixes filled in.

    `feature_map`: `dim` is the feature map's width and `features = "arms"`;
    `checkpoint`: the checkpoint's architecture (a value given in the
    hyperparameters that disagrees is an error naming it).
    """
    out = dict(kwargs)
    if start.feature_map is not None:
        width = _context_items_width(env, f"{where}.{FEATURE_MAP}")
        out.update(dim=width, features="arms")
    if start.checkpoint is not None:
        field = f"{where}.{CHECKPOINT}"
        cfg, _ = load_checked_checkpoint(start.checkpoint, field, name)
        if name == "in_context":
            check_in_context_fits(cfg, env, field)
            fixed = in_context_kwargs(cfg)
        else:
            check_checkpoint_fits(cfg, env, field)
            fixed = checkpoint_kwargs(cfg)
        for key, value in fixed.items():
            given = kwargs.get(key)
            if key not in ("num_arms", "dim") and key in kwargs and given != value:
                raise BanditConfigError(
                    f"{where}.hyperparameters.{key} = {given!r} disagrees with the "
                    f"checkpoint ({value!r}); leave it out to take it from there"
                )
        if kwargs.get(CHECKPOINT) is not None:
            raise BanditConfigError(
                f"{where}.hyperparameters.{CHECKPOINT}: the checkpoint is given "
                f"by {where}.{CHECKPOINT}; leave it out of the hyperparameters"
            )
        out.update(fixed)
    return out


def _context_items_width(env: Env, field: str) -> int:
    needed = ("context_dim", "item_dim", "num_categories")
    missing = [n for n in needed if not isinstance(getattr(env, n, None), int)]
    if missing:
        raise BanditConfigError(
            f"{field} = 'context_items' needs a recommendation env (with "
            f"{', '.join(needed)}); {type(env).__name__} has no {missing[0]}"
        )
    return env.item_dim + env.num_categories * env.context_dim  # type: ignore[attr-defined]


def checkpoint_kwargs(cfg: Any) -> dict[str, Any]:
    """The transformer factory's shape and architecture arguments of `cfg`."""
    return {
        "num_arms": cfg.num_arms,
        "dim": cfg.context_dim,
        "arm_features": cfg.arm_features,
        "arm_columns": cfg.arm_columns,
        "history_length": cfg.history_length,
        "history_features": cfg.history_features,
        "context_fields": tuple(cfg.context_fields),
        "num_items": cfg.num_items,
        "id_column": cfg.id_column,
        "history_id_column": cfg.history_id_column,
        "width": cfg.width,
        "depth": cfg.depth,
        "heads": cfg.heads,
        "mlp_ratio": cfg.mlp_ratio,
        "wide_cross": cfg.wide_cross,
    }


IN_CONTEXT_ARCHITECTURE = (
    "arm_dim",
    "arm_columns",
    "horizon",
    "width",
    "depth",
    "heads",
    "mlp_ratio",
    "tokens",
)
"""The in-context factory's arguments that a checkpoint fixes, besides shapes."""


def in_context_kwargs(cfg: Any) -> dict[str, Any]:
    """The in-context factory's shape and architecture arguments of `cfg`."""
    fixed = {k: getattr(cfg, k) for k in IN_CONTEXT_ARCHITECTURE}
    return {"num_arms": cfg.num_arms, "dim": cfg.context_dim, **fixed}


def check_in_context_fits(cfg: Any, env: Env, field: str) -> None:
    """Refuses an in-context checkpoint pretrained for other observations."""
    spec = env.observation_spec()
    arms = tuple(spec["arms"].shape) if "arms" in spec else ()
    checks = [
        ("num_arms", cfg.num_arms, int(env.num_arms)),
        ("context dim", cfg.context_dim, int(spec["context"].shape[0])),
        ("arm columns", cfg.arm_width, arms[-1] if len(arms) == 2 else 0),
    ]
    wrong = [f"{k} {a!r} (env: {b!r})" for k, a, b in checks if a != b]
    if wrong:
        raise BanditConfigError(
            f"{field}: the in-context checkpoint was pretrained for other "
            f"observations than the env's ({type(env).__name__}): {', '.join(wrong)}"
        )


def check_checkpoint_fits(cfg: Any, env: Env, field: str) -> None:
    """Refuses a checkpoint whose input shapes are not the env's observations."""
    spec = env.observation_spec()
    arms = tuple(spec["arms"].shape)
    checks: list[tuple[str, Any, Any]] = [
        ("num_arms", cfg.num_arms, int(env.num_arms)),
        ("context dim", cfg.context_dim, int(spec["context"].shape[0])),
        ("arm columns", cfg.arm_columns or cfg.arm_features, arms[-1] if arms else 0),
    ]
    if cfg.history_length:  # a model with history_length 0 ignores the history
        history = spec.get("history")
        shape = tuple(history.shape) if history is not None else (0, 0)
        checks.append(
            ("history shape", (cfg.history_length, cfg.history_features), shape)
        )
    if cfg.num_items and isinstance(getattr(env, "num_items", None), int):
        checks.append(("catalogue size", cfg.num_items, env.num_items))  # type: ignore[attr-defined]
    fields = getattr(env, "context_fields", None)
    if fields is not None:
        checks.append(("context fields", tuple(cfg.context_fields), tuple(fields)))
    wrong = [
        f"{k} {mine!r} (env: {theirs!r})"
        for k, mine, theirs in checks
        if mine != theirs
    ]
    if wrong:
        raise BanditConfigError(
            f"{field}: the checkpoint was pretrained for other observations than "
            f"the env's ({type(env).__name__}): {', '.join(wrong)}"
        )


def load_checked_checkpoint(
    file: StartFile, field: str, name: str = "transformer"
) -> tuple[Any, Any]:
    """(architecture, params) of the checkpoint of agent `name` (a
    `CHECKPOINT_AGENTS` entry), from a file whose checksum is unchanged."""
    check_unchanged(file, field)
    try:
        if name == "in_context":
            from agents.in_context_pretrain import load_checkpoint as load_in_context

            cfg, params, _ = load_in_context(file.path)
            return cfg, params
        from agents.pretrain import load_checkpoint

        return load_checkpoint(file.path)
    except BanditConfigError as err:
        raise err.at(field) from None


def check_unchanged(file: StartFile, field: str) -> None:
    """Refuses a file whose bytes changed since the config was loaded."""
    try:
        digest = file_sha256(file.path)
    except OSError as err:
        raise BanditConfigError(f"{field}: cannot read {file.path!r}: {err}") from None
    if digest != file.sha256:
        raise BanditConfigError(
            f"{field}: {file.path!r} changed since the config was loaded (SHA-256 "
            f"{digest[:12]}, expected {file.sha256[:12]}); load the config again"
        )


def check_start(start: AgentStart, agent: Agent, env: Env, where: str) -> None:
    """Checks the logged data of `warm_start` against the env and `agent` (its
    schema only: no event is read)."""
    if start.warm_start is None:
        return
    from agents.warm_start import check_fits
    from bandits.files import read_logged_shapes

    field = f"{where}.{WARM_START}"
    if getattr(env, "slate_size", None) is not None:
        raise BanditConfigError(
            f"{field}: agent {agent.name!r} acts on slates, and logged data holds "
            "one action per event; a slate agent cannot be warm-started"
        )
    path = start.warm_start.path
    try:
        shapes = read_logged_shapes(path)
    except BanditConfigError as err:
        raise err.at(field) from None
    missing = [c for c in LOGGED_COLUMNS if c not in shapes]
    if missing:
        raise BanditConfigError(
            f"{field}: {path!r} lacks the logged column(s) {missing}; a logged "
            f"dataset has {', '.join(LOGGED_COLUMNS)}"
        )
    spec = env.observation_spec()
    for column in ("context", "arms", "mask", "history", "history_mask"):
        known = column in shapes and column in spec
        if known and tuple(shapes[column]) != tuple(spec[column].shape):
            raise BanditConfigError(
                f"{field}: the logged column {column!r} of {path!r} has "
                f"per-event shape {tuple(shapes[column])}, the env's "
                f"observations {tuple(spec[column].shape)}; log the data with "
                "this env"
            )
    try:
        check_fits(agent, path)
    except BanditConfigError as err:
        raise err.at(field) from None


def build_started(
    spec: Any, factory: Any, env: Env | None, *, replay: bool = True
) -> Agent:
    """The agent of an `AgentSpec` with a start: built, its checkpoint's params
    loaded, its feature map applied and (with `replay`) its logs replayed."""
    start: AgentStart = spec.start
    kwargs = spec.kwargs
    if start.checkpoint is not None:
        _, params = load_checked_checkpoint(start.checkpoint, CHECKPOINT, spec.name)
        agent = factory(**kwargs, params=params)
    else:
        agent = factory(**kwargs)
    if start.feature_map is not None:
        from agents.features import cross_items_for, with_arm_features

        agent = with_arm_features(
            agent, cross_items_for(env), name=f"{agent.name}_{start.feature_map}"
        )
    if replay and start.warm_start is not None:
        from agents.warm_start import warm_start

        check_unchanged(start.warm_start, WARM_START)
        agent = warm_start(agent, start.warm_start.path)
    return agent


def unchanged_agents(old: Mapping[str, Any], new: Mapping[str, Any]) -> set[str] | None:
    """Labels of the agents whose results carry over from config `old` to `new`
    (canonical forms), when the two differ only in the checksums of files that
    agents start from; None when anything else differs.

    A results folder of `old` is then resumed for `new`: the series of the
    agents listed here are kept, the others are computed again.
    """

    def blank(config: Mapping[str, Any]) -> str:
        agents = []
        for agent in config.get("agents", []):
            agent = dict(agent)
            for key in (WARM_START, CHECKPOINT):
                if key in agent:
                    agent[key] = {}
            agents.append(agent)
        return json.dumps({**config, "agents": agents}, sort_keys=True)

    if blank(old) != blank(new):
        return None
    before = {a["label"]: json.dumps(a, sort_keys=True) for a in old["agents"]}
    return {
        a["label"]
        for a in new["agents"]
        if before.get(a["label"]) == json.dumps(a, sort_keys=True)
    }
