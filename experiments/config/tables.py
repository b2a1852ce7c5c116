"""The `[run]` table and the named env settings of an experiment config, parsed
and checked (`experiments.config.loader` parses the rest)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from bandits.seeds import check_seed_key
from bandits.validation import BanditConfigError, positive_int
from experiments.config.checks import check_keys as _check_keys
from experiments.config.checks import check_type as _check_type
from experiments.config.checks import check_value as _check_value
from experiments.config.checks import is_int as _is_int
from experiments.config.checks import table as _table
from experiments.config.checks import type_name as _type_name
from experiments.config.schema import (
    DEFAULT_PREDICTION_CONTEXTS,
    DEFAULT_PREDICTION_SEEDS,
    NamedSetting,
    RunConfig,
)
from experiments.config.schema import frozen as _frozen
from experiments.store.storage import CURVE_SPACINGS, DEFAULT_CURVE_POINTS

SETTING_KEYS = ("label", "params")
RUN_KEYS = (
    "horizon",
    "seeds",
    "resample_params",
    "output",
    "chunk_size",
    "curve_points",
    "curve_spacing",
    "prediction_seeds",
    "prediction_contexts",
    "seed_key",
)


def parse_settings(
    raw: Any, allowed: Mapping[str, Any], env_id: str, grid: Mapping[str, Any]
) -> tuple[NamedSetting, ...]:
    """`[env] settings`: a list of {label, params}, one env setting each."""
    if raw is None:
        return ()
    if grid:
        raise BanditConfigError(
            "env.settings and env.grid cannot be combined; list every combination "
            "as a setting, or use the grid alone"
        )
    if not isinstance(raw, list) or not raw:
        raise BanditConfigError(
            "env.settings must be a non-empty array of tables "
            f"({{label = ..., params = {{...}}}}), got {_type_name(raw)}"
        )
    out = []
    for i, entry in enumerate(raw):
        where = f"env.settings[{i}]"
        entry = _table(where, entry)
        _check_keys(entry, SETTING_KEYS, where, required=("label",))
        label = entry["label"]
        _check_type(f"{where}.label", label, str, "a string")
        if not label.strip() or not label.isprintable():
            raise BanditConfigError(
                f"{where}.label must be a non-empty single-line string, got {label!r}"
            )
        params = _table(f"{where}.params", entry.get("params", {}))
        _check_keys(params, list(allowed), f"{where}.params (env {env_id!r})")
        for key, value in params.items():
            _check_value(f"{where}.params.{key}", value, allowed[key])
        out.append(NamedSetting(label, MappingProxyType(_frozen(params))))
    labels = [s.label for s in out]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise BanditConfigError(f"env.settings labels must be unique; {repeated}")
    return tuple(out)


def parse_run(table: Mapping[str, Any]) -> RunConfig:
    _check_keys(table, RUN_KEYS, "[run]", required=("horizon", "seeds"))
    horizon = positive_int("run.horizon", table["horizon"])
    seeds = parse_seeds(table["seeds"])
    resample = table.get("resample_params", False)
    _check_type("run.resample_params", resample, bool, "a boolean (true or false)")
    output = table.get("output")
    if output is not None:
        _check_type("run.output", output, str, "a string (a folder path)")
        if not output.strip():
            raise BanditConfigError("run.output must be a non-empty folder path")
    points = positive_int(
        "run.curve_points", table.get("curve_points", DEFAULT_CURVE_POINTS)
    )
    if points < 2:
        raise BanditConfigError(f"run.curve_points must be >= 2, got {points}")
    chunk = table.get("chunk_size", "auto")
    if chunk != "auto":
        if not _is_int(chunk):
            raise BanditConfigError(
                'run.chunk_size must be a positive integer or "auto", got '
                f"{chunk!r} ({_type_name(chunk)})"
            )
        chunk = positive_int("run.chunk_size", chunk)
    spacing = table.get("curve_spacing", "log+linear")
    if spacing not in CURVE_SPACINGS:
        raise BanditConfigError(
            f"run.curve_spacing must be one of {', '.join(map(repr, CURVE_SPACINGS))}"
            f"; got {spacing!r}"
        )
    prediction_seeds = table.get("prediction_seeds", DEFAULT_PREDICTION_SEEDS)
    if not _is_int(prediction_seeds) or prediction_seeds < 0:
        raise BanditConfigError(
            f"run.prediction_seeds must be an integer >= 0 (0 turns the reward-model "
            f"evaluation off), got {prediction_seeds!r}"
        )
    contexts = positive_int(
        "run.prediction_contexts",
        table.get("prediction_contexts", DEFAULT_PREDICTION_CONTEXTS),
    )
    seed_key = table.get("seed_key", "split")
    _check_type("run.seed_key", seed_key, str, "a string")
    try:
        check_seed_key(seed_key, resample)
    except BanditConfigError as err:
        raise err.at("run.seed_key") from None
    return RunConfig(
        horizon,
        seeds,
        resample,
        output,
        points,
        None if chunk == "auto" else chunk,
        spacing,
        min(prediction_seeds, len(seeds)),
        contexts,
        seed_key,
    )


MAX_SEEDS = 10_000_000
"""Most seeds a config may ask for (each is a summary line and a curve row)."""


def parse_seeds(value: Any) -> tuple[int, ...]:
    if _is_int(value):
        count = positive_int("run.seeds", value)
        if count > MAX_SEEDS:
            raise BanditConfigError(
                f"run.seeds must be at most {MAX_SEEDS:,}, got {count:,}"
            )
        return tuple(range(count))
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


def parse_study_run(
    table: Mapping[str, Any],
    *,
    own: Sequence[str],
    fixed: Mapping[str, str],
    defaults: Mapping[str, Any] | None = None,
) -> tuple[RunConfig, dict[str, Any]]:
    """The `[run]` table of a study that writes platform configs and runs them:
    the platform's keys (`parse_run`, checked as in any platform config) less
    those the study sets itself, plus the study's own.

    Args:
      table: the `[run]` table as TOML gives it.
      own: the study's own keys (checked by the study), returned apart.
      fixed: platform keys the study sets itself -> why (a user's value is
        refused, naming the reason).
      defaults: values of platform keys where the table has none (for example
        `horizon` and `seeds` of a study with defaults).

    Returns:
      (the platform's `RunConfig`, the study's own keys that the table holds).
    """
    for key, why in fixed.items():
        if key in table:
            raise BanditConfigError.about(f"run.{key}", f"is set by the study: {why}")
    allowed = [k for k in RUN_KEYS if k not in fixed]
    _check_keys(table, (*allowed, *own), "[run]")
    platform = {**(defaults or {}), **{k: v for k, v in table.items() if k not in own}}
    return parse_run(platform), {k: table[k] for k in own if k in table}


def run_table(run: RunConfig) -> dict[str, Any]:
    """`run` as a platform `[run]` table: the keys that differ from what
    `parse_run` makes of horizon and seeds alone (`seeds` as a count where
    they are 0..S-1), for a written config."""
    count = len(run.seeds)
    out: dict[str, Any] = {
        "horizon": run.horizon,
        "seeds": count if run.seeds == tuple(range(count)) else list(run.seeds),
    }
    defaults = parse_run({"horizon": run.horizon, "seeds": list(run.seeds)})
    for field in dataclasses.fields(RunConfig):
        value = getattr(run, field.name)
        if field.name not in out and value != getattr(defaults, field.name):
            out[field.name] = value
    return out
