"""Cells, problem instances and paired differences of the pretrain/fine-tune study.

A *cell* is one env setting (a point of the env's `grid`, or its `params`
alone) with one logged-data size (an entry of `logs.events`); every cell has its
own folder with its logs, checkpoints and platform results. A study without a
grid and with one data size has one cell per env, in the folder `<env id>`, as
before grids existed.

Problem instances (`env.sample_params(key)`):

* the logs, `logs.instances = 1` (the default): the env's default instance,
  `key(params_seed)` (`BanditEnv.default_params`), logged from `key(logs.seed)`;
* the logs, `logs.instances = N > 1`: instance i (0 <= i < N) has the root key
  `r_i = fold_in(fold_in(key(logs.seed), LOG_INSTANCE_STREAM), i)`, split into
  (instance key, logging key) = `split(r_i)`; it logs `events // N` events
  (the first `events % N` instances one more), on its own streams (stream ids
  offset so that they stay distinct across instances);
* the online runs, `run.instances = "held_out"`: the platform's
  `resample_params = true`, which draws seed s's instance from
  `split(key(s))[0]` (`bandits.simulation._one_seed`,
  `experiments.execute.evaluation._seed_instance`).

Why a log instance is never an online instance: the platform's instance key
of seed s is the first half of `split(key(s))`, a key whose data is the raw
seed (0, s); a log instance's key is the default `key(params_seed)` itself (not
split), or the first half of `split` of a key that went through two
`fold_in`s with the constant `LOG_INSTANCE_STREAM`, which the platform never
applies. So the two families come from different Threefry inputs, and equal
keys would need a Threefry collision. Rather than rely on that argument alone,
`check_disjoint` compares the actual keys of a run's seeds and log instances
and refuses to start on equal keys, and the tests check that the drawn params
differ.

Held-out events (`logs.holdout`, a fraction) are the tail of every log
instance's own events, so each instance is scored on its later events; the
stored `logs.parquet` holds every instance's training part first, then every
instance's held-out part (`split_logs` cuts it there).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from bandits.validation import BanditConfigError
from envs import logged
from experiments.studies.pretrain_finetune_config import LOGGING_POLICIES, StudyConfig

LOG_INSTANCE_STREAM = 0x4C4F4753
"""`fold_in` data of the log instances' keys ("LOGS"); the platform never uses it."""


@dataclasses.dataclass(frozen=True)
class Cell:
    """One env setting with one logged-data size."""

    env_id: str
    params: Mapping[str, Any]
    """The env's keyword arguments: its `params` and the grid point."""
    setting: Mapping[str, Any]
    """The grid point ({} without a grid)."""
    events: int
    name: str
    """Row key and folder (relative to the study's output)."""


def study_cells(study: StudyConfig) -> list[Cell]:
    """The study's cells: env x grid point x data size, in config order."""
    events = study.logs.get("events", 100_000)
    sizes = events if isinstance(events, list) else [events]
    out = []
    for env_id, params in study.envs:
        grid = study.grids.get(env_id, {})
        points = [
            dict(zip(grid, p, strict=True)) for p in itertools.product(*grid.values())
        ]
        for setting in points:
            for n in sizes:
                if not grid and not isinstance(events, list):
                    name = env_id  # one cell per env: the folder of old studies
                else:
                    parts = [",".join(f"{k}={v}" for k, v in setting.items())]
                    name = "/".join([env_id, *filter(None, parts), f"events={n}"])
                out.append(Cell(env_id, {**params, **setting}, setting, int(n), name))
    return out


def instance_counts(events: int, instances: int) -> list[int]:
    """Events per log instance: `events // N`, the first `events % N` one more."""
    return [events // instances + (i < events % instances) for i in range(instances)]


def log_instance_keys(env, seed: int, instances: int) -> list[tuple[jax.Array, Any]]:
    """(instance key, logging key) per log instance (see the module's text);
    with one instance the instance key is the default's and the logging key
    `key(seed)`."""
    if instances == 1:
        default = jax.random.key(getattr(env, "params_seed", 0))
        return [(default, jax.random.key(seed))]
    root = jax.random.fold_in(jax.random.key(seed), LOG_INSTANCE_STREAM)
    out = []
    for i in range(instances):
        params_key, log_key = jax.random.split(jax.random.fold_in(root, i))
        out.append((params_key, log_key))
    return out


def platform_instance_keys(seeds: Sequence[int]) -> list[jax.Array]:
    """The instance key the platform draws for each seed with
    `resample_params = true` (`split(key(s))[0]`, as in `bandits.simulation`)."""
    return [jax.random.split(jax.random.key(s))[0] for s in seeds]


def check_disjoint(log_keys: Sequence[jax.Array], run_keys: Sequence[jax.Array]):
    """Raises if an online run's instance key equals a log instance's key."""
    logs = {tuple(np.asarray(jax.random.key_data(k)).tolist()) for k in log_keys}
    for seed, key in enumerate(run_keys):
        if tuple(np.asarray(jax.random.key_data(key)).tolist()) in logs:
            raise BanditConfigError(
                f"run.instances = 'held_out': seed {seed}'s instance is a log "
                "instance; change logs.seed"
            )


def generate_logs(env, params, spec: Mapping[str, Any], events: int):
    """The cell's logs (`LoggedData`): one instance (`params`, as before
    `logs.instances` existed) or the concatenation over `logs.instances`
    sampled instances, training parts first (see the module's text)."""
    policy = LOGGING_POLICIES[spec.get("policy", "uniform")](**spec.get("params", {}))
    seed = int(spec.get("seed", 0))
    streams = int(spec.get("num_streams", 64))
    instances = int(spec.get("instances", 1))
    if instances == 1:
        return logged.generate(
            jax.random.key(seed), env, params, policy, events, num_streams=streams
        )
    fraction = 1.0 - float(spec.get("holdout", 0.1))
    keys = log_instance_keys(env, seed, instances)
    train, held, offset = [], [], 0
    for (params_key, log_key), count in zip(
        keys, instance_counts(events, instances), strict=True
    ):
        part = logged.generate(
            log_key, env, env.sample_params(params_key), policy, count,
            num_streams=streams,
        )  # fmt: skip
        part = dataclasses.replace(part, stream=part.stream + np.int32(offset))
        offset += min(streams, count)
        cut = round(fraction * count)  # as LoggedData.split, per instance
        train.append(part.take(slice(0, cut)))
        held.append(part.take(slice(cut, count)))
    data = logged.concatenate(train + held)
    return dataclasses.replace(data, metadata={**data.metadata, "instances": instances})


def split_logs(data, spec: Mapping[str, Any], events: int):
    """(training part, held-out part) of `generate_logs`'s output."""
    fraction = 1.0 - float(spec.get("holdout", 0.1))
    instances = int(spec.get("instances", 1))
    if instances == 1:
        return data.split(fraction)
    cut = sum(round(fraction * n) for n in instance_counts(events, instances))
    return data.take(slice(0, cut)), data.take(slice(cut, len(data)))


def reference_label(specs) -> str | None:
    """The agent the differences are taken to: the first pretrained
    transformer, else the first transformer, else none."""
    for wanted in (lambda s: s.pretrained, lambda s: s.name == "transformer"):
        for spec in specs:
            if wanted(spec):
                return spec.label
    return None
