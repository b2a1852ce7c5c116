"""Study: off-policy estimators scored against the simulator's exact values.

For every env, logging policy and target policy of the config
(`experiments/configs/ope_benchmark.toml`), many independent logs of each size
are generated; every estimator of `bandits.ope` runs on every log (all
replicates of one size as one compiled program), and is scored against the
target's true value: bias, standard deviation, RMSE, relative error (mean
|V_hat - V| / V) and the coverage of its 95% interval.

The true value is V = E_x sum_a pi(a | x) mu(x, a): x the contexts the logging
policy meets (for `ContextualRec-*` they depend on what it recommended before),
mu the env's expected rewards, which the estimators never see. It is the mean of
sum_a pi(a | x_i) mu(x_i, a) over a separate log of `truth_events` events whose
streams are as long as a replicate's (a user's context depends on how long the
stream has run, so V depends on the log size); its standard error is stored
beside it (it should be far below the estimators'
spread, or the coverage is not meaningful; the table flags where it is not).

Targets are agents trained online on the env (`train_rounds` rounds, seed 0)
and then frozen; their probabilities come from `action_probs` (NeuralTS by
Monte Carlo over `propensity_samples` posterior draws). The reward model behind
DM and the DR family is ridge regression, cross-fitted over `folds` folds. A
replicate whose reward-model features exceed `MAX_FEATURE_BYTES` (10^6
`ContextualRec-v0` events: 13 GB) is fitted from X^T X and X^T r summed over
parts of its streams and predicted in a second pass
(`ope_benchmark_streamed`); it is the same log, and gives the same estimates up
to float32 summation order.

    python -m experiments.studies.ope_benchmark                 # the config's grid
    python -m experiments.studies.ope_benchmark --quick --out /tmp/ope

Results go to `<out>/results.jsonl` (one line per env, logger, target, log size
and estimator; a rerun skips what is there), `summary.md` and one plot per env
and target (`rmse-*.png`: RMSE against log size per estimator and logger;
`coverage-*.png`: interval coverage). `--envs`, `--targets` and `--loggers` run
a part of the grid with the seeds the full run gives those cells, so the work
can be split over commands or processes writing to one folder (each keeps the
cells the others added).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import agents
import bandits
import envs
from agents.features import cross_items_for, with_arm_features
from bandits import offline, ope
from bandits.validation import BanditConfigError
from envs import logged
from experiments.cli import run_command
from experiments.config import checks
from experiments.execute import compile_cache
from experiments.execute.cells import Cell, command, scratch
from experiments.store import storage
from experiments.store.storage import atomic_write_text
from experiments.studies import ope_benchmark_streamed as streamed
from experiments.studies.ope_benchmark_config import (
    EnvCell,
    Study,
    Target,
    env_cell,
    logging_policy,
    parse_study,
    read_study,
)
from experiments.studies.ope_benchmark_report import plot, summary_markdown

# Events generated and scored at once (a ContextualRec event's reward-model
# features are 20 x 165 floats): larger logs and truth logs go in parts.
MAX_EVENTS_IN_MEMORY = 100_000
# Bytes of reward-model features held at once. A replicate whose features are
# larger (`ContextualRec-v0` above about 160,000 events) takes the streamed
# path (`ope_benchmark_streamed`): the ridge model fitted from statistics summed
# over parts of its streams, whose logs are also kept within this size.
MAX_FEATURE_BYTES = 2 * 2**30
QUICK = {
    "log_sizes": [200, 1000],
    "replicates": 20,
    "truth_events": 20_000,
    "train_rounds": 200,
}


# ---------------------------------------------------------------------------
# Policies and features


def build_target(target: Target, env) -> bandits.Agent:
    hyper = dict(target.hyperparameters)
    if target.checkpoint is not None:
        from agents import pretrain
        from agents import transformer as tf

        cfg, params = pretrain.load_checkpoint(target.checkpoint)
        if cfg != tf.config_for_env(env, **_architecture_overrides(cfg, env)):
            raise BanditConfigError(
                f"checkpoint {target.checkpoint!r} was pretrained for another env "
                f"than {type(env).__name__} with these parameters"
            )
        hyper.setdefault("finetune", False)
        return tf.policy(cfg, params, name=target.label, **hyper)
    if target.name in ("linucb_context_items", "linucb_items"):
        hyper.setdefault("item_dim", env.item_dim)
        if target.name == "linucb_context_items":
            hyper.setdefault("cross_dim", env.num_categories)
    if target.feature_map == "context_items":
        width = env.item_dim + env.num_categories * env.context_dim
        base = agents.make(
            target.name, num_arms=env.num_arms, dim=width, features="arms", **hyper
        )
        return with_arm_features(
            base, cross_items_for(env), name=target.label, context_dim=env.context_dim
        )
    if target.feature_map is not None:
        raise BanditConfigError(
            f"feature_map must be 'context_items' or absent, got {target.feature_map!r}"
        )
    width = env.observation_spec()["context"].shape[-1]
    return agents.make(target.name, num_arms=env.num_arms, dim=width, **hyper)


def _architecture_overrides(cfg, env) -> dict[str, Any]:
    """The architecture fields of `cfg` that `config_for_env` does not derive
    from the env (width, depth, ...), so the two can be compared."""
    derived = {
        "num_arms", "context_fields", "arm_features", "arm_columns",
        "history_length", "history_features", "num_items", "id_column",
    }  # fmt: skip
    return {
        f.name: getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)
        if f.name not in derived
    }


def train_target(target: Target, env, params) -> tuple[bandits.Agent, Any]:
    """The target agent and its state after `train_rounds` online rounds (seed 0;
    a pretrained transformer with `train_rounds = 0` is taken as pretrained)."""
    agent = build_target(target, env)
    if agent.action_probs is None:
        raise BanditConfigError(
            f"target {target.label!r} ({target.name}) has no action_probs; give "
            "NeuralTS `propensity_samples`"
        )
    if target.train_rounds == 0:
        return agent, jax.jit(agent.init)(jax.random.key(0))
    _, states = bandits.run_with_states(
        env, agent, horizon=target.train_rounds, seeds=[0], states_of=[0],
        params=params,
    )  # fmt: skip
    return agent, jax.tree.map(lambda leaf: leaf[0], states)


def model_features(kind: str, env, obs: bandits.Observation) -> jax.Array:
    """(n, K, f) features of the reward model for every (event, action)."""
    if kind == "context":
        return offline.context_features(obs)
    return jax.vmap(cross_items_for(env))(obs)


def bytes_per_event(kind: str, env, params) -> tuple[int, int]:
    """(bytes of one event's observation, of its reward-model features)."""
    obs, _ = jax.eval_shape(env.reset, jax.random.key(0), params)
    one = jax.tree.map(lambda s: jax.ShapeDtypeStruct((1, *s.shape), s.dtype), obs)
    features = jax.eval_shape(functools.partial(model_features, kind, env), one)
    raw = sum(math.prod(s.shape) * s.dtype.itemsize for s in jax.tree.leaves(one))
    return raw, math.prod(features.shape) * features.dtype.itemsize


def is_streamed(n: int, feature_bytes: int) -> bool:
    """Whether a replicate of n events takes the streamed path: its features
    (`feature_bytes` per event) exceed `MAX_FEATURE_BYTES`."""
    return n * feature_bytes > MAX_FEATURE_BYTES


# ---------------------------------------------------------------------------
# Logs, truth, estimates


def logs_by_replicate(key, env, params, policy, replicates, n, streams):
    """`replicates` independent logs of n events (`streams` streams each) as
    arrays with leading axes (replicates, n)."""
    total = replicates * streams
    data = logged.generate(
        key, env, params, policy, replicates * n, num_streams=total,
        chunk_steps=min(256, n // streams),
    )  # fmt: skip
    steps = n // streams
    # generate writes events step-major (step 0 of every stream, then step 1):
    # (steps, replicates, streams) -> (replicates, streams * steps)
    order = np.arange(replicates * n).reshape(steps, replicates, streams)
    order = order.transpose(1, 2, 0).reshape(replicates, n)
    assert (data.stream[order] // streams == np.arange(replicates)[:, None]).all()
    return data, order


def true_value(key, env, params, policy, agent, state, events, steps) -> tuple:
    """(V, its standard error) of the frozen target under the logger's contexts.

    The contexts of a stateful env (a user's history) depend on how many steps
    its stream has run, so the truth for logs of streams of `steps` steps is
    computed on streams of exactly that length: `events // steps` of them.

    The events of one stream are not independent (its user's history links
    them), so the standard error is that of the mean of the streams' means
    (independent, and equally long); with a single stream, where there is
    nothing to compare, it falls back to the events' standard error."""
    streams = max(1, events // steps)
    per_part = max(1, MAX_EVENTS_IN_MEMORY // steps)
    values, streams_of = [], []
    for part, first in enumerate(range(0, streams, per_part)):
        count = min(per_part, streams - first)
        k = jax.random.fold_in(key, part)
        data = logged.generate(
            k, env, params, policy, count * steps, num_streams=count,
            chunk_steps=min(256, steps),
        )  # fmt: skip
        obs = jax.tree.map(jnp.asarray, data.observations())
        probs = offline.policy_probs(agent, state, obs, jax.random.fold_in(k, 1))
        assert data.expected_rewards is not None  # generate always records them
        v = np.sum(np.asarray(probs, np.float64) * data.expected_rewards, axis=1)
        values.append(v)
        # Stream ids restart in every part; made distinct across parts.
        streams_of.append(np.asarray(data.stream, np.int64) + first)
    return stream_mean_and_se(np.concatenate(values), np.concatenate(streams_of))


def stream_mean_and_se(values, stream) -> tuple[float, float]:
    """(mean, standard error) of per-event `values` from independent streams
    of equal length (`stream` the id of each event's stream): the standard
    error of the mean of the streams' means, or, with a single stream, the
    events' standard error."""
    values = np.asarray(values, np.float64)
    _, index = np.unique(np.asarray(stream), return_inverse=True)
    means = np.bincount(index, weights=values) / np.bincount(index)
    if means.size > 1:
        return float(means.mean()), float(means.std(ddof=1) / np.sqrt(means.size))
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))


def estimate_replicates(study: Study, env, cell: EnvCell, data, order, probs, key):
    """Every estimator on every replicate: (replicates, estimators, 4)."""
    del key
    n = order.shape[1]
    program = _replicate_program(env, cell.reward_model, study.folds, study.seed, n)
    obs = jax.tree.map(jnp.asarray, data.observations())
    inputs = program(
        obs,
        jnp.asarray(data.action, jnp.int32),
        jnp.asarray(data.reward, jnp.float32),
        jnp.asarray(data.propensity, jnp.float32),
        jnp.asarray(probs),
        jnp.asarray(order),
    )
    return _estimates(study, *inputs)


def estimate_streamed(study: Study, env, params, cell: EnvCell, policy, trained,
                      n: int, key, parts: tuple[int, int] | None = None):  # fmt: skip
    """Every estimator on the replicate `logs_by_replicate(key, ..., 1, n, ...)`
    would generate, fitted and predicted in parts (`ope_benchmark_streamed`):
    (1, estimators, 4) and the smallest logged propensity. `parts` (streams
    per part, events per slice) defaults to what `MAX_FEATURE_BYTES` allows."""
    agent, state = trained
    if parts is None:
        raw, feature = bytes_per_event(cell.reward_model, env, params)
        parts = streamed.part_sizes(
            n, study.streams_per_replicate, raw, feature, MAX_FEATURE_BYTES
        )
    compiled = _streamed_programs(agent, cell.reward_model, env, study.folds)
    inputs = streamed.streamed_inputs(
        key, env, params, policy, state, compiled, n=n,
        streams=study.streams_per_replicate, folds=study.folds, seed=study.seed,
        streams_per_part=parts[0], slice_events=parts[1],
    )  # fmt: skip
    arrays = [jnp.asarray(a)[None] for a in inputs]
    return _estimates(study, *arrays), float(inputs.propensity.min())


def _estimates(study: Study, reward, action, propensity, probs, reward_hat):
    """Every estimator on (replicates, n) inputs: (replicates, estimators, 4)."""
    ope.check_inputs(np.asarray(reward[0]), np.asarray(action[0]),
                     np.asarray(propensity[0]), np.asarray(probs[0]),
                     np.asarray(reward_hat[0]))  # fmt: skip
    program = _estimates_program(tuple(sorted(study.estimator_options.items())))
    return np.asarray(
        program(reward, action, propensity, probs, reward_hat), np.float64
    )


@functools.cache
def _streamed_programs(agent, kind: str, env, folds: int):
    """The streamed path's compiled programs, built once per cell."""
    return streamed.programs(
        agent, functools.partial(model_features, kind, env), env.num_arms,
        kind != "context", folds,
    )  # fmt: skip


_REPLICATE_BATCH = 10


@functools.cache
def _replicate_program(env, kind: str, folds: int, seed: int, n: int):
    """The compiled cross-fitting of a group of replicates, one per (env, reward
    model, folds, n) so that every group reuses it: the flat events, the target's
    probabilities and the replicate order (replicates, n) in; (reward, action,
    propensity, probs, reward_hat), each (replicates, n, ...), out. The features
    are built inside the program, and each fold's ridge model is fitted with a
    0/1 weight per event, so no training subset is gathered."""
    shared = kind != "context"
    model = offline.ridge_model(env.num_arms, shared=shared)
    fold = jnp.asarray(streamed.fold_assignment(n, folds, seed))

    # Row f: the events fold f's model is fitted on (all of them with one fold).
    if folds == 1:
        weights = jnp.ones((1, n), jnp.float32)
    else:
        weights = (fold[None, :] != jnp.arange(folds)[:, None]).astype(jnp.float32)

    def one(obs, action, reward):
        features = model_features(kind, env, obs)  # (n, K, f)
        # Every fold's model in one batched fit. The fits solve without LAPACK
        # (`bandits.linalg.spd_solve`): jaxlib's batched LU blocks XLA's
        # intra-op threads, and two of them that XLA ran at once in this
        # program deadlocked a 2-thread pool (docs/ope.md).
        params = jax.vmap(lambda w: model.fit(features, action, reward, w))(weights)
        prediction = jax.vmap(model.predict, in_axes=(0, None))(params, features)
        return jnp.take_along_axis(prediction, fold[None, :, None], axis=0)[0]

    @jax.jit
    def run(obs, action, reward, propensity, probs, order):
        def take(x):
            return x[order]

        def replicate(rows):
            return one(jax.tree.map(lambda x: x[rows], obs), action[rows], reward[rows])

        # A few replicates at a time: all of them at once would hold every
        # replicate's (n, K, f) features together.
        reward_hat = jax.lax.map(replicate, order, batch_size=_REPLICATE_BATCH)
        reward, action, propensity, probs = map(
            take, (reward, action, propensity, probs)
        )
        return reward, action, propensity, probs, reward_hat

    return run


@functools.cache
def _estimates_program(options: tuple[tuple[str, float], ...]):
    """The compiled program of every estimator on every replicate:
    (replicates, n) arrays -> (replicates, estimators, 4)."""

    def one(args):
        out = ope.estimate_all(*args, **dict(options))
        return jnp.stack([jnp.stack(list(e)) for e in out.values()])

    @jax.jit
    def all_estimates(reward, action, propensity, probs, reward_hat):
        return jax.lax.map(one, (reward, action, propensity, probs, reward_hat),
                           batch_size=min(reward.shape[0], 50))  # fmt: skip

    return all_estimates


def score(estimates: np.ndarray, truth: float) -> dict[str, dict[str, float]]:
    """Bias, sd, RMSE, relative error, coverage and mean width per estimator."""
    out = {}
    for i, name in enumerate(ope.ESTIMATORS):
        value, low, high = estimates[:, i, 0], estimates[:, i, 1], estimates[:, i, 2]
        error = value - truth
        out[name] = {
            "bias": float(error.mean()),
            "bias_se": float(error.std(ddof=1) / np.sqrt(error.size)),
            "sd": float(value.std(ddof=1)),
            "rmse": float(np.sqrt(np.mean(error**2))),
            "relative_error": float(np.mean(np.abs(error)) / abs(truth)),
            "coverage": float(np.mean((low <= truth) & (truth <= high))),
            "mean_width": float(np.mean(high - low)),
        }
    return out


# ---------------------------------------------------------------------------
# The study


def cells(study: Study) -> list[Cell]:
    """One cell per (env, target, logger, log size) selected: its spec is the
    part of the config it depends on, and its position in the full config
    (which fixes its seeds, so a filtered run reproduces the full one). Every
    target is built here, before any compute, so a bad one is refused first."""
    out = []
    for e, cell in enumerate(study.envs):
        if not _selected(cell.id, study.only_envs):
            continue
        env, _ = envs.make(cell.id, **cell.params)
        for t, target in enumerate(cell.targets):
            if not _selected(target.label, study.only_targets):
                continue
            build_target(target, env)
            for g, logger in enumerate(study.loggers):
                if not _selected(logger["label"], study.only_loggers):
                    continue
                for n, reps in zip(study.log_sizes, study.replicates, strict=True):
                    spec = _cell_spec(study, cell, target, logger, n, reps)
                    out.append(Cell(_cell_name(spec), {**spec, "position": [e, t, g]}))
    return out


def _cell_spec(study, cell, target, logger, n, reps) -> dict[str, Any]:
    """The config of one cell, in the TOML layout (`read` parses it back)."""
    table = {
        "label": target.label, "name": target.name,
        "train_rounds": target.train_rounds,
        "hyperparameters": dict(target.hyperparameters),
    }  # fmt: skip
    if target.feature_map is not None:
        table["feature_map"] = target.feature_map
    if target.checkpoint is not None:
        table["checkpoint"] = target.checkpoint
        # A changed checkpoint file is a changed cell.
        table["checkpoint_sha256"] = storage.file_checksum(target.checkpoint)[1]
    return {
        "log_sizes": [n],
        "replicates": [reps],
        "truth_events": study.truth_events,
        "streams_per_replicate": study.streams_per_replicate,
        "folds": study.folds,
        "seed": study.seed,
        "estimators": dict(study.estimator_options),
        "logging": [dict(logger)],
        "envs": [
            {"id": cell.id, "params": dict(cell.params),
             "reward_model": cell.reward_model, "targets": [table]}
        ],
    }  # fmt: skip


def _cell_name(spec: Mapping[str, Any]) -> str:
    env = spec["envs"][0]
    return (
        f"{env['id']} | {env['targets'][0]['label']} | {spec['logging'][0]['label']} "
        f"| n={spec['log_sizes'][0]} x {spec['replicates'][0]} "
        f"| truth {spec['truth_events']}"
    )


def run_cell(spec: Mapping[str, Any]) -> list[dict]:
    """The records of one cell (one per estimator), in a worker process."""
    data = {k: v for k, v in spec.items() if k != "position"}
    # The trained target is kept per env table, its checkpoint's checksum
    # included (a rewritten file is another target).
    trained = _trained(json.dumps(data["envs"][0], sort_keys=True))
    data["envs"] = [_without_checksum(data["envs"][0])]
    study = parse_study(data)
    cell, (e, t, g) = study.envs[0], spec["position"]
    target, logger = cell.targets[0], study.loggers[0]
    env, params = envs.make(cell.id, **cell.params)
    root = jax.random.key(study.seed)
    key = jax.random.fold_in(jax.random.fold_in(root, e), t * 97 + g)
    todo = list(zip(study.log_sizes, study.replicates, strict=True))
    records = []
    for part in run_logger(study, cell, env, params, target, trained, logger, todo,
                           key):  # fmt: skip
        records += part
    return records


@functools.lru_cache(maxsize=4)
def _trained(env_table: str):
    """The trained target of a one-target `[[envs]]` table (JSON), kept for the
    worker's next cells: training is deterministic (seed 0)."""
    cell = env_cell("envs[0]", _without_checksum(json.loads(env_table)), None)
    env, params = envs.make(cell.id, **cell.params)
    return train_target(cell.targets[0], env, params)


def _without_checksum(env_table: Mapping[str, Any]) -> dict[str, Any]:
    """A cell's `[[envs]]` table without the checkpoint checksum it carries."""
    targets = [
        {k: v for k, v in t.items() if k != "checkpoint_sha256"}
        for t in env_table["targets"]
    ]
    return {**env_table, "targets": targets}


def read(data: Mapping[str, Any]) -> Study:
    """The study config of a TOML document (`experiments.execute.cells`)."""
    return parse_study(data)


def report(records: Sequence[Mapping[str, Any]], out: Path) -> list[Path]:
    """`summary.md` and the figures (`experiments.execute.cells`)."""
    summary = atomic_write_text(out / "summary.md", summary_markdown(records))
    return [summary, *plot(records, out)]


def describe(records: Sequence[Mapping[str, Any]]) -> str:
    """One progress line for a finished cell: V and the RMSE and coverage of
    IPS and DR."""
    by = {r["estimator"]: r for r in records}
    ips, dr = by["ips"], by["dr"]
    return (
        f"V={records[0]['truth']:.4f}  IPS rmse {ips['rmse']:.4f} cov "
        f"{ips['coverage']:.2f}  DR rmse {dr['rmse']:.4f} cov {dr['coverage']:.2f}"
    )


def run_logger(study, cell, env, params, target, trained, spec, todo, key):
    """Yields the records of each log size in `todo` for one logger."""
    agent, state = trained
    policy = logging_policy(spec)
    for n, reps in todo:
        k = jax.random.fold_in(key, n)
        kept = scratch()
        truth_and_se = kept.get(f"n{n}-truth")
        if truth_and_se is None:
            truth_and_se = np.asarray(true_value(
                jax.random.fold_in(k, 2), env, params, policy, agent, state,
                study.truth_events, n // study.streams_per_replicate,
            ))  # fmt: skip
            kept.put(f"n{n}-truth", truth_and_se)
        truth, truth_se = float(truth_and_se[0]), float(truth_and_se[1])
        estimates, min_propensity = replicate_estimates(
            study, cell, env, params, policy, trained, n, reps, k
        )
        scores = score(estimates, truth)
        cell_fields = {
            "env": cell.id, "target": target.label, "logger": spec["label"],
            "log_size": n, "replicates": reps, "truth": truth, "truth_se": truth_se,
            "truth_events": study.truth_events,
            "min_propensity": min_propensity,
        }  # fmt: skip
        yield [{**cell_fields, "estimator": name, **s} for name, s in scores.items()]


def replicate_estimates(study, cell, env, params, policy, trained, n, reps, key):
    """(replicates, estimators, 4) estimates of one cell and log size, and the
    smallest logged propensity. Replicates go in groups that fit in memory (the
    reward model's features are K x f floats per event); a replicate whose
    features exceed MAX_FEATURE_BYTES goes alone, in parts (`estimate_streamed`).
    Replicate r of the streamed path has the log of group r of the in-memory
    path (both one replicate per group there)."""
    agent, state = trained
    estimates, min_propensity = [], 1.0
    raw, feature = bytes_per_event(cell.reward_model, env, params)
    if is_streamed(n, feature):
        parts = streamed.part_sizes(
            n, study.streams_per_replicate, raw, feature, MAX_FEATURE_BYTES
        )
        start = time.perf_counter()
        for r in range(reps):
            values, low = _kept(f"n{n}-replicate{r}", lambda r=r: estimate_streamed(
                study, env, params, cell, policy, trained, n,
                jax.random.fold_in(key, 1000 + r), parts,
            ))  # fmt: skip
            estimates.append(values)
            min_propensity = min(min_propensity, low)
            print(f"  replicate {r + 1} of {reps} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
        return np.concatenate(estimates), min_propensity
    group = max(1, min(reps, MAX_EVENTS_IN_MEMORY // n))

    def one_group(g: int, count: int) -> tuple[np.ndarray, float]:
        kg = jax.random.fold_in(key, 1000 + g)
        data, order = logs_by_replicate(
            kg, env, params, policy, count, n, study.streams_per_replicate
        )
        obs = jax.tree.map(jnp.asarray, data.observations())
        probs = offline.policy_probs(agent, state, obs, jax.random.fold_in(kg, 1))
        values = estimate_replicates(study, env, cell, data, order, probs, kg)
        return values, float(data.propensity.min())

    for g, first in enumerate(range(0, reps, group)):
        count = min(group, reps - first)
        values, low = _kept(f"n{n}-group{g}", lambda g=g, c=count: one_group(g, c))
        estimates.append(values)
        min_propensity = min(min_propensity, low)
    return np.concatenate(estimates), min_propensity


def _kept(name: str, compute) -> tuple[np.ndarray, float]:
    """`compute()`'s (estimates, smallest propensity), kept in the running
    cell's scratch space (`experiments.execute.cells.scratch`): a cell killed
    half way takes the replicates it finished from there when it runs again
    (their logs come from their own keys, so they are the same replicates)."""
    kept = scratch()
    values, low = kept.get(name), kept.get(f"{name}-min-propensity")
    if values is not None and low is not None:
        return values, float(low)
    values, low = compute()
    kept.put(name, values)
    kept.put(f"{name}-min-propensity", np.asarray(low))
    return np.asarray(values), low


def _selected(name: str, only: tuple[str, ...] | None) -> bool:
    return only is None or name in only


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="ope_benchmark")
    parser.add_argument("--out", help="results folder (default: the config's)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: sizes 200 and 1,000"
    )
    parser.add_argument(
        "--sizes", type=checks.positive_option, nargs="+", help="log sizes"
    )
    parser.add_argument(
        "--replicates",
        type=checks.positive_option,
        nargs="+",
        help="one per size, or one for all",
    )
    parser.add_argument(
        "--truth-events", type=checks.positive_option, help="events of the truth log"
    )
    parser.add_argument("--envs", nargs="+", metavar="ID", help="env ids to run")
    parser.add_argument(
        "--targets", nargs="+", metavar="LABEL", help="target labels to run"
    )
    parser.add_argument(
        "--loggers", nargs="+", metavar="LABEL", help="logging policy labels to run"
    )
    parser.add_argument(
        "--workers", type=checks.positive_option, metavar="N",
        help="worker processes, one cell each at a time (default: one per core)",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    return parser.parse_args(argv)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config values the command-line options replace."""
    out: dict[str, Any] = dict(QUICK) if args.quick else {}
    # `is not None`: a zero is refused by the config's checks, not ignored.
    if args.sizes is not None:
        out["log_sizes"] = args.sizes
    if args.replicates is not None:
        reps = args.replicates
        out["replicates"] = reps[0] if len(reps) == 1 else reps
    if args.truth_events is not None:
        out["truth_events"] = args.truth_events
    return out


def select(study: Study, args: argparse.Namespace) -> Study:
    """`study` restricted to the `--envs`, `--targets` and `--loggers` named,
    each checked against the config. The cells keep their positions (and so
    their seeds) in the full config."""
    known = {
        "--envs": [c.id for c in study.envs],
        "--targets": sorted({t.label for c in study.envs for t in c.targets}),
        "--loggers": [spec["label"] for spec in study.loggers],
    }
    chosen = {"--envs": args.envs, "--targets": args.targets,
              "--loggers": args.loggers}  # fmt: skip
    for option, names in chosen.items():
        unknown = [name for name in names or () if name not in known[option]]
        if unknown:
            raise BanditConfigError.about(
                option, f"names {unknown[0]!r}, not in the config ({known[option]})"
            )
    return dataclasses.replace(
        study,
        only_envs=None if not args.envs else tuple(args.envs),
        only_targets=None if not args.targets else tuple(args.targets),
        only_loggers=None if not args.loggers else tuple(args.loggers),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        study = select(read_study(args.config, overrides(args)), args)
    except BanditConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    compile_cache.enable()
    out = Path(args.out or study.output)
    result = command("ope_benchmark", study, out, args.workers, args.quiet)
    if isinstance(result, int):
        return result
    print(
        f"computed {len(result.computed)} cell(s), reused {len(result.reused)}; "
        f"wrote {out / 'summary.md'} and {len(result.files) - 1} figures"
    )
    return 0


if __name__ == "__main__":
    run_command(lambda: main(sys.argv[1:]))
