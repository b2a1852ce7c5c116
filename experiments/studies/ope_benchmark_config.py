"""The config of the off-policy estimator benchmark (`experiments.studies.
ope_benchmark`): `experiments/configs/ope_benchmark.toml` (or another TOML in its
layout) parsed into frozen dataclasses and checked before any compute, with the
platform's checks (`experiments.config.checks`), so errors read the same."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from bandits.validation import BanditConfigError, non_negative_int, positive_int, real
from envs import logged
from experiments.config.checks import check_keys, table
from experiments.config.loader import parse_env
from experiments.config.sources import parse_toml, read_source

LOGGER_KINDS = ("uniform", "softmax", "epsilon_greedy")
REWARD_MODELS = ("context", "context_items")
ENV_KEYS = ("id", "params")
"""The env's own keys of an `[[envs]]` table (no grid or named settings)."""


@dataclasses.dataclass(frozen=True)
class Target:
    label: str
    name: str
    train_rounds: int
    hyperparameters: Mapping[str, Any]
    feature_map: str | None = None
    checkpoint: str | None = None  # name = "transformer": a pretrained checkpoint


@dataclasses.dataclass(frozen=True)
class EnvCell:
    id: str
    params: Mapping[str, Any]
    reward_model: str
    targets: tuple[Target, ...]


@dataclasses.dataclass(frozen=True)
class Study:
    name: str
    output: str
    log_sizes: tuple[int, ...]
    replicates: tuple[int, ...]
    truth_events: int
    streams_per_replicate: int
    folds: int
    seed: int
    estimator_options: Mapping[str, float]
    loggers: tuple[Mapping[str, Any], ...]
    envs: tuple[EnvCell, ...]
    # Subsets to run (None: all). Cells keep the seeds of their position in
    # the full config, so a filtered run reproduces the unfiltered one.
    only_envs: tuple[str, ...] | None = None
    only_targets: tuple[str, ...] | None = None
    only_loggers: tuple[str, ...] | None = None


def read_study(source: str, overrides: Mapping[str, Any] | None = None) -> Study:
    """The study config from a TOML path or a packaged config name, checked."""
    text, origin, _ = read_source(source)
    data = parse_toml(text, origin)
    data.update(overrides or {})
    return parse_study(data)


def parse_study(data: Mapping[str, Any]) -> Study:
    keys = (
        "name", "output", "log_sizes", "replicates", "truth_events",
        "streams_per_replicate", "folds", "seed", "estimators", "logging", "envs",
        "train_rounds", "study",
    )  # fmt: skip
    check_keys(data, keys, "the study config", required=("log_sizes", "envs"))
    sizes = tuple(
        positive_int(f"log_sizes[{i}]", n) for i, n in enumerate(data["log_sizes"])
    )
    reps = data.get("replicates", 200)
    reps = [reps] * len(sizes) if not isinstance(reps, list) else reps
    if len(reps) != len(sizes):
        raise BanditConfigError(
            f"replicates must be one number or one per log size ({len(sizes)}), "
            f"got {len(reps)}"
        )
    replicates = tuple(positive_int(f"replicates[{i}]", r) for i, r in enumerate(reps))
    if min(replicates) < 2:
        raise BanditConfigError.about("replicates", "must be at least 2 per size")
    streams = positive_int(
        "streams_per_replicate", data.get("streams_per_replicate", 8)
    )
    for n in sizes:
        if n % streams:
            raise BanditConfigError.about(
                "log_sizes", f"must be multiples of streams_per_replicate ({streams}), "
                f"got {n}",
            )  # fmt: skip
    options = dict(table("estimators", data.get("estimators", {})))
    check_keys(options, ("max_weight", "tau", "shrinkage"), "[estimators]")
    for key, value in options.items():
        real(f"estimators.{key}", value, low=0.0, low_open=True)
    loggers = tuple(
        _logger(f"logging[{i}]", t) for i, t in enumerate(data.get("logging", []))
    )
    if not loggers:
        raise BanditConfigError("logging must list at least one logging policy")
    default_rounds = data.get("train_rounds")
    cells = tuple(
        env_cell(f"envs[{i}]", t, default_rounds) for i, t in enumerate(data["envs"])
    )
    return Study(
        name=str(data.get("name", "ope_benchmark")),
        output=str(data.get("output", "results/ope_benchmark")),
        log_sizes=sizes,
        replicates=replicates,
        truth_events=positive_int("truth_events", data.get("truth_events", 2_000_000)),
        streams_per_replicate=streams,
        folds=positive_int("folds", data.get("folds", 2)),
        seed=non_negative_int("seed", data.get("seed", 0)),
        estimator_options=options,
        loggers=loggers,
        envs=cells,
    )


def _logger(path: str, spec: Any) -> dict[str, Any]:
    spec = dict(table(path, spec))
    check_keys(spec, ("label", "kind", "temperature", "epsilon", "noise_std"), path,
               required=("label", "kind"))  # fmt: skip
    if spec["kind"] not in LOGGER_KINDS:
        raise BanditConfigError(
            f"{path}.kind must be one of {', '.join(map(repr, LOGGER_KINDS))}, "
            f"got {spec['kind']!r}"
        )
    logging_policy(spec)  # validates the numbers
    return spec


def env_cell(path: str, spec: Any, default_rounds: Any) -> EnvCell:
    spec = table(path, spec)
    check_keys(spec, ("id", "params", "reward_model", "targets"), path,
               required=("id", "targets"))  # fmt: skip
    # The env itself as the platform's `[env]` parser reads one (names the path).
    parse_env({k: spec[k] for k in ("id", "params") if k in spec}, path, ENV_KEYS)
    model = spec.get("reward_model", "context")
    if model not in REWARD_MODELS:
        raise BanditConfigError(
            f"{path}.reward_model must be one of {', '.join(map(repr, REWARD_MODELS))}"
            f", got {model!r}"
        )
    targets = []
    for j, t in enumerate(spec["targets"]):
        where = f"{path}.targets[{j}]"
        t = table(where, t)
        check_keys(t, ("label", "name", "train_rounds", "hyperparameters",
                       "feature_map", "checkpoint"), where,
                   required=("label", "name"))  # fmt: skip
        rounds = default_rounds if default_rounds is not None else t.get("train_rounds")
        checkpoint = t.get("checkpoint")
        if (t["name"] == "transformer") != (checkpoint is not None):
            raise BanditConfigError(
                f"{where}: a transformer target needs a `checkpoint` (a file of "
                "agents.pretrain.save_checkpoint), and only a transformer takes one"
            )
        targets.append(
            Target(
                label=str(t["label"]),
                name=str(t["name"]),
                # A pretrained transformer is evaluated as pretrained by default.
                train_rounds=int(rounds)
                if rounds is not None and checkpoint
                else positive_int(f"{where}.train_rounds", rounds or 2_000),
                hyperparameters=dict(t.get("hyperparameters", {})),
                feature_map=t.get("feature_map"),
                checkpoint=None if checkpoint is None else str(checkpoint),
            )
        )
    return EnvCell(str(spec["id"]), dict(spec.get("params", {})), model, tuple(targets))


def logging_policy(spec: Mapping[str, Any]) -> logged.LoggingPolicy:
    """The logging policy of a `[[logging]]` table."""
    kind = spec["kind"]
    if kind == "uniform":
        return logged.uniform()
    if kind == "softmax":
        return logged.softmax_noisy_oracle(
            temperature=spec.get("temperature", 1.0),
            noise_std=spec.get("noise_std", 0.1),
        )
    return epsilon_greedy_oracle(spec.get("epsilon", 0.2))


def epsilon_greedy_oracle(epsilon: float) -> logged.LoggingPolicy:
    """pi_0 = (1 - epsilon) on the best arm by the exact expected rewards,
    epsilon spread uniformly over the allowed arms (a production policy that is
    usually right and explores a little)."""
    epsilon = real("epsilon", epsilon, low=0.0, high=1.0, low_open=True)

    def probs(key, state, obs, expected_rewards):
        del key, state
        allowed = obs.mask.astype(jnp.float32)
        best = jnp.argmax(jnp.where(obs.mask, expected_rewards, -jnp.inf))
        greedy = jax.nn.one_hot(best, obs.mask.shape[0])
        return epsilon * allowed / jnp.sum(allowed) + (1.0 - epsilon) * greedy

    return logged.LoggingPolicy(
        lambda key: (),
        probs,
        lambda key, state, obs, action, reward: state,
        f"epsilon_greedy_oracle_{epsilon:g}",
        uses_oracle=True,
    )
