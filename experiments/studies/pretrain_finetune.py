"""Study: do transformer policies pretrained on logs beat LinUCB and NeuralTS online?

For each environment of `experiments/configs/pretrain_finetune.toml`:

1. log `logs.events` events of the configured logging policy (with propensities)
   and keep the last `logs.holdout` of them as held-out events (`logs.parquet`;
   the rest, the training part, also as `train.parquet`);
2. pretrain the transformer on the training part (IPS-weighted and/or
   unweighted click prediction plus masked-history prediction), save
   checkpoints and loss curves;
3. write a platform config (`<env>/config.toml`) whose agents start from those
   files: `warm_start = "train.parquet"` for the agents marked `warm_start`,
   `checkpoint = "checkpoint_<variant>.npz"` for the pretrained transformers
   (`experiments.config.start`), and run it with the platform's runner into
   `<env>/results/` (chunked storage, resume, `report.html`);
4. from the stored curves: the final regret and the regret after
   `run.early_steps` steps with 95% Student-t intervals across seeds, the
   click-through rate, and the regret plot;
5. score each reward model (pretrained transformer, warm LinUCB, warm NeuralTS)
   on the held-out events: accuracy, precision, recall, F1, ROC-AUC, log-loss, MSE.

    python -m experiments.studies.pretrain_finetune --out results/pretrain_finetune
    python -m experiments.studies.pretrain_finetune --quick --out /tmp/pf   # smoke run

With `[[envs]] grid`, a list of `logs.events`, `logs.instances` and
`run.instances = "held_out"` (`experiments/configs/large_models.toml`) every
(env setting, data size) cell does the above in its own folder, the logs come
from several problem instances and the online runs from others
(`experiments.studies.pretrain_finetune_cells`):

    python -m experiments.studies.pretrain_finetune --config large_models --quick

Logs, checkpoints and the platform's results are reused by a rerun (a killed run
resumes; new logs or checkpoints recompute the agents that read them). Logs
and checkpoints are stages (`experiments.store.stages`): the logs are kept
while `logs.json` names the same settings and both files' checksums hold, a
checkpoint while `pretrain_<tag>.json` names the same architecture, options
and training events (the checksum of `train.parquet`) and the checkpoint's
checksum holds; anything else, a damaged file included, is made again.
`summary.md` and `summary.json` (and `results.jsonl`, one row per cell and
agent, with the paired difference to the reference transformer) hold the
tables, `<cell>/regret.png` the curves and `<cell>/pretrain_<variant>.png` the
loss curves.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

import envs
from agents import pretrain as pretraining
from agents import transformer as tf
from bandits import metrics
from bandits.validation import BanditConfigError
from envs import logged
from experiments.cli import run_command
from experiments.config import checks
from experiments.config.loader import build, build_agent, load_config
from experiments.config.schema import RunConfig
from experiments.config.start import checkpoint_kwargs
from experiments.config.tables import run_table
from experiments.config.toml_writer import experiment_toml
from experiments.execute.cells import file_name
from experiments.execute.executors import Executor
from experiments.execute.runner import run_experiment
from experiments.store import manifest
from experiments.store.stages import Stage
from experiments.store.storage import atomic_write_text
from experiments.studies.pretrain_finetune_cells import (
    Cell,
    check_disjoint,
    generate_logs,
    log_instance_keys,
    platform_instance_keys,
    reference_label,
    split_logs,
    study_cells,
)
from experiments.studies.pretrain_finetune_config import (
    StudyAgent,
    StudyConfig,
    load_study,
)
from experiments.studies.pretrain_finetune_report import (
    band_text,
    paired_band,
    plot_env,
    summary_markdown,
    write_figures,
)

CURVE_POINTS = 200
TRAIN_FILE = "train.parquet"
"""The logged events before the held-out ones, which warm starts replay."""


@dataclasses.dataclass(frozen=True)
class Args:
    """Command-line arguments of the pretrain/fine-tune study."""

    out: str = "results/pretrain_finetune"
    """Folder for logs, checkpoints, results.jsonl, summary.md and plots."""
    config: str = "pretrain_finetune"
    """A TOML path or the name of a packaged config."""
    envs: tuple[str, ...] | None = None
    """Env ids of the config to run; default: all."""
    agents: tuple[str, ...] | None = None
    """Labels of the config's agents to run; default: all."""
    horizon: int | None = None
    """Rounds per run; default: the config's (20,000)."""
    seeds: int | None = None
    """Seeds per agent; default: the config's (16)."""
    chunk_size: int | None = None
    """Seeds per compiled batch and stored chunk of the online runs (replaces
    `run.chunk_size`); default: the config's."""
    events: int | None = None
    """Logged events per cell (replaces a list of data sizes); default: the
    config's."""
    overwrite: bool = False
    """Replace platform results of another agent selection in an env's
    `results/` folder (the platform refuses otherwise)."""
    quick: bool = False
    """Tiny settings for a smoke run: a small env, 300 rounds, 2 seeds, 3,000
    logged events (a list of data sizes: 2,000 and 4,000; a grid: its first two
    values per parameter; at most 2 log instances), a one-block width-16
    transformer, one pretraining epoch."""


def parse_args(argv: Sequence[str] | None = None) -> Args:
    defaults = Args()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=defaults.out)
    parser.add_argument("--config", default=defaults.config)
    parser.add_argument("--envs", nargs="+", default=None, metavar="ID")
    parser.add_argument("--agents", nargs="+", default=None, metavar="LABEL")
    parser.add_argument("--horizon", type=checks.positive_option, default=None)
    parser.add_argument("--seeds", type=checks.positive_option, default=None)
    parser.add_argument(
        "--chunk-size",
        type=checks.positive_option,
        default=None,
        help="seeds per compiled batch and stored chunk (replaces run.chunk_size)",
    )
    parser.add_argument("--events", type=checks.positive_option, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--overwrite", action="store_true")
    ns = parser.parse_args(argv)
    return Args(
        out=ns.out,
        config=ns.config,
        envs=None if ns.envs is None else tuple(ns.envs),
        agents=None if ns.agents is None else tuple(ns.agents),
        horizon=ns.horizon,
        seeds=ns.seeds,
        chunk_size=ns.chunk_size,
        events=ns.events,
        overwrite=ns.overwrite,
        quick=ns.quick,
    )


def select(study: StudyConfig, args: Args) -> StudyConfig:
    """Applies --envs, --agents, --horizon, --seeds, --chunk-size, --events and
    --quick."""
    if args.agents is not None:
        known = [s.label for s in study.agents]
        unknown = [a for a in args.agents if a not in known]
        if unknown:
            raise BanditConfigError(
                f"unknown agent label(s) {', '.join(map(repr, unknown))}; the config "
                f"has {', '.join(map(repr, known))}"
            )
        study = dataclasses.replace(
            study, agents=tuple(s for s in study.agents if s.label in args.agents)
        )
    if args.envs is not None:
        known = [e for e, _ in study.envs]
        unknown = [e for e in args.envs if e not in known]
        if unknown:
            raise BanditConfigError(
                f"unknown env id(s) {unknown}; the config has {known}"
            )
        study = dataclasses.replace(
            study, envs=tuple(e for e in study.envs if e[0] in args.envs)
        )
    logs = dict(study.logs)
    if args.events:
        logs["events"] = args.events
    if args.events is not None and args.events < int(logs.get("instances", 1)):
        raise BanditConfigError(
            f"--events {args.events} must be at least logs.instances = "
            f"{logs.get('instances')}"
        )
    study = dataclasses.replace(
        study,
        run=_run_settings(study.run, args.horizon, args.seeds, args.chunk_size),
        logs=logs,
    )
    if args.quick:
        small = {"num_items": 100, "num_users": 300, "steps_per_day": 48}
        sizes = [2000, 4000] if isinstance(logs.get("events"), list) else 3000
        logs.update(events=args.events or sizes, num_streams=16)
        if "instances" in logs:
            logs["instances"] = min(logs["instances"], 2)
        study = dataclasses.replace(
            study,
            run=_run_settings(
                study.run, args.horizon or 300, args.seeds or 2, args.chunk_size
            ),
            early_steps=100,
            logs=logs,
            grids={e: {k: v[:2] for k, v in g.items()} for e, g in study.grids.items()},
            model={"width": 16, "depth": 1, "heads": 2, "mlp_ratio": 2},
            pretrain={**study.pretrain, "epochs": 1, "batch_size": 64},
            envs=tuple((e, {**p, **small}) for e, p in study.envs[:1]),
        )
    return study


def _run_settings(
    run: RunConfig, horizon: int | None, seeds: int | None, chunk_size: int | None
) -> RunConfig:
    """`run` with --horizon, --seeds (seeds 0..S-1) and --chunk-size where
    given."""
    if chunk_size is not None:
        run = dataclasses.replace(run, chunk_size=chunk_size)
    if horizon is not None:
        run = dataclasses.replace(run, horizon=horizon)
    if seeds is not None:
        run = dataclasses.replace(run, seeds=tuple(range(seeds)))
    return run


# ---------------------------------------------------------------------------
# Building blocks


def agent_config(spec: StudyAgent, env, study: StudyConfig) -> tf.TransformerConfig:
    """The transformer architecture of `spec`: the study's, with its overrides."""
    return tf.config_for_env(env, **{**study.model, **spec.model})


def platform_agent(spec: StudyAgent, env, study: StudyConfig) -> dict[str, Any]:
    """The platform `[[agents]]` table of `spec` on `env`; files are named
    relative to the env's folder, where the config is written."""
    hyper = dict(spec.hyperparameters)
    out: dict[str, Any] = {"name": spec.name, "label": spec.label}
    if spec.pretrained:
        out["checkpoint"] = f"checkpoint_{spec.checkpoint_tag}.npz"
    elif spec.checkpoint is not None:
        out["checkpoint"] = spec.checkpoint
    elif spec.name == "transformer":  # from scratch: the env's shapes
        shapes = checkpoint_kwargs(agent_config(spec, env, study))
        del shapes["num_arms"], shapes["dim"]  # the platform fills these in
        # TOML has no null: an unset field (None) is the factory's default
        hyper = {**{k: v for k, v in shapes.items() if v is not None}, **hyper}
    if spec.name == "linucb_context_items":
        hyper.setdefault("item_dim", env.item_dim)
        hyper.setdefault("cross_dim", env.num_categories)
    if spec.name == "popularity":
        hyper.setdefault("num_items", env.num_items)
    if spec.warm_start:
        out["warm_start"] = TRAIN_FILE if spec.warm_start is True else spec.warm_start
    if spec.feature_map is not None:
        out["feature_map"] = spec.feature_map
    out["hyperparameters"] = hyper
    return out


def platform_config(cell: Cell, specs, env, study: StudyConfig) -> str:
    """The platform config (TOML) that runs `specs` on one cell of the study.

    Every step is stored (`curve_points = horizon`), so the regret at
    `early_steps` is read exactly; the platform's own reward-model evaluation
    is off (`prediction_seeds = 0`): the study scores the models on its
    held-out logged events instead. The other `[run]` settings are the
    study's, as parsed by the platform (`run_table`); with
    `run.instances = "held_out"` each seed draws its own instance
    (`resample_params = true`).
    """
    run = run_table(study.run)  # resample_params set by run.instances
    run.update(curve_points=study.horizon, prediction_seeds=0)
    return experiment_toml(
        f"Written by experiments.studies.pretrain_finetune for {cell.name}.",
        f"pretrain_finetune {cell.name}",
        cell.env_id,
        cell.params,
        run,
        [platform_agent(spec, env, study) for spec in specs],
    )


def parameter_count(spec: StudyAgent, env, study: StudyConfig) -> int | None:
    """The transformer's parameter count (item-id table included); None for
    the other agents and for checkpoints not pretrained here."""
    if spec.name != "transformer" or spec.checkpoint is not None:
        return None
    _, state = tf.split_model(agent_config(spec, env, study))
    return sum(int(np.size(leaf)) for leaf in jax.tree.leaves(state))


def held_out_metrics(predict, state, data: logged.LoggedData) -> dict[str, float]:
    """Prediction metrics of `predict` at the logged actions of held-out events."""

    @jax.jit
    def taken(obs, action):
        return jax.vmap(lambda o, a: predict(state, o)[a])(obs, action)

    scores = []
    for first in range(0, len(data), 1000):
        part = data.take(slice(first, first + 1000))
        scores.append(np.asarray(taken(part.observations(), part.action)))
    p = np.clip(np.concatenate(scores), 0.0, 1.0)
    rows = np.arange(len(data))
    # simulated logs (`generate_logs`, or their saved copy) record them
    assert data.expected_rewards is not None
    return pretraining.prediction_metrics(
        data.reward, p, data.expected_rewards[rows, data.action]
    )


# ---------------------------------------------------------------------------
# Running


def _band(values: np.ndarray) -> dict[str, float]:
    band = metrics.mean_band(values[:, None])
    return {
        "mean": float(band.mean[0]),
        "low": float(band.low[0]),
        "high": float(band.high[0]),
    }


def _read_rows(path: Path) -> list[dict]:
    """The rows of an earlier run (cells this run does not compute keep theirs);
    a damaged file is said and left out: rerun those cells to restore them."""
    if not path.exists():
        return []
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    except (OSError, ValueError) as err:
        print(f"{path} is unreadable ({err}); its rows are left out", flush=True)
        return []
    return [r for r in rows if isinstance(r, dict) and "env" in r]


LOGS_FILE = "logs.parquet"
LOGS_STAMP = "logs.json"
"""The logs' stage stamp (`experiments.store.stages`): the settings they were
made with and the SHA-256 of `logs.parquet` and `train.parquet`."""


def logs_stage(cell: Cell, study: StudyConfig, folder: Path) -> Stage:
    """The cell's logs as a stage: both log files, from the logging settings."""
    spec = {**study.logs, "events": cell.events}
    settings = {"env": cell.env_id, **{k: spec.get(k) for k in sorted(spec)}}
    if cell.params:  # logs of other env params are not reused
        settings["env_params"] = dict(cell.params)
    return Stage(folder, LOGS_STAMP, settings, (LOGS_FILE, TRAIN_FILE))


def prepare_logs(cell: Cell, env, params, study: StudyConfig, folder: Path):
    """Generates (or reuses) the cell's logs; returns (train, holdout, stage).
    The logs are reused only while their stage is kept (the same settings, both
    files intact); otherwise they are made again (the same keys: the same
    events)."""
    spec = {**study.logs, "events": cell.events}
    stage = logs_stage(cell, study, folder)
    state = stage.state()
    data = None
    if state == "kept":
        try:
            data = logged.load(folder / LOGS_FILE)
        except BanditConfigError as err:  # the checksum held, the contents do not
            state = f"unreadable ({err})"
    if data is None:
        if state not in ("missing", "made otherwise"):
            print(f"[{cell.name}] the logs in {folder} are {state}; logging anew")
        stage.begin()
        start = time.perf_counter()
        data = generate_logs(env, params, spec, cell.events)
        logged.save(data, folder / LOGS_FILE)
        print(
            f"[{cell.name}] logged {len(data)} events in "
            f"{time.perf_counter() - start:.1f}s: {data.summary()}",
            flush=True,
        )
    train, holdout = split_logs(data, spec, cell.events)
    if state != "kept":
        logged.save(train, folder / TRAIN_FILE)  # what warm-started agents replay
        stage.finish()
    return train, holdout, stage


def pretrain_stage(
    tag: str, cfg, options: Mapping[str, Any], logs: Stage, folder: Path
) -> Stage:
    """Checkpoint `tag` as a stage: from the architecture, the pretraining
    options and the exact training events (their file's checksum)."""
    settings = {
        "model": cfg.to_json(),
        "options": dict(options),
        "train": logs.checksums()[TRAIN_FILE],
    }
    files = (f"checkpoint_{tag}.npz",)
    return Stage(folder, f"pretrain_{tag}.json", settings, files)


def prepare_pretrained(env_id, env, train, holdout, study, specs, logs: Stage):
    """Pretrains one transformer per distinct checkpoint tag, unless its stage
    is kept (the same architecture, options and training events, the files
    intact); its stamp `pretrain_<tag>.json` records the loss curve and the
    held-out scores."""
    folder = logs.folder
    for tag in dict.fromkeys(spec.checkpoint_tag for spec in specs):
        spec = next(s for s in specs if s.checkpoint_tag == tag)
        cfg = agent_config(spec, env, study)
        options = {**study.pretrain, **spec.pretrain}
        seed = int(options.pop("seed", 0))
        ips = spec.pretrained == "ips"
        stage = pretrain_stage(
            tag, cfg, {**options, "seed": seed, "ips": ips}, logs, folder
        )
        state = stage.state()
        if state == "kept":
            continue
        if state != "missing":
            print(f"[{env_id}] checkpoint_{tag}.npz: {state}; pretraining anew")
        stage.begin()
        partial = folder / f"pretrain_{tag}.partial.npz"  # survives a kill
        result = pretraining.pretrain(
            jax.random.key(seed),
            cfg,
            train,
            ips=ips,
            progress=sys.stderr.isatty(),
            resume=partial,
            **options,
        )
        pretraining.save_checkpoint(
            folder / f"checkpoint_{tag}.npz", cfg, result.params
        )
        partial.unlink(missing_ok=True)
        pretraining.plot_losses(result, folder / f"pretrain_{tag}.png")
        graphdef, _ = tf.split_model(cfg)
        p = pretraining.predict_logged(graphdef, result.params, holdout)
        rows = np.arange(len(holdout))
        quality = pretraining.prediction_metrics(
            holdout.reward, p, holdout.expected_rewards[rows, holdout.action]
        )
        stride = max(len(result.losses) // 100, 1)
        stage.finish(
            {
                "env": env_id,
                "events": len(train),
                "steps": len(result.losses),
                "seconds": round(result.seconds, 1),
                "loss_first": float(result.losses[:stride].mean()),
                "loss_last": float(result.losses[-stride:].mean()),
                "loss_curve": result.losses[::stride].round(5).tolist(),
                "held_out": quality,
            }
        )
        print(
            f"[{env_id}] pretrained ({tag}) on {len(train)} events in "
            f"{result.seconds:.1f}s; held-out {quality}",
            flush=True,
        )


def check_instances(cell: Cell, study: StudyConfig) -> None:
    """With `run.instances = "held_out"`: no seed's instance is a log instance
    (exact key comparison, before any compute)."""
    if study.run_instances != "held_out":
        return
    env = envs.make_env(cell.env_id, **cell.params)
    logs = study.logs
    keys = log_instance_keys(
        env, int(logs.get("seed", 0)), int(logs.get("instances", 1))
    )
    check_disjoint([k for k, _ in keys], platform_instance_keys(study.run.seeds))


def run_env(
    cell: Cell,
    study,
    specs,
    folder: Path,
    args: Args,
    executor: Executor | None = None,
    progress: bool | None = None,
):
    """Logs, pretrains and runs one cell's agents on the platform (on
    `executor`, default local workers; progress shown by default on a
    terminal): the config, the runner's result and the held-out logged events."""
    env, params = envs.make(cell.env_id, **cell.params)
    train, holdout, logs = prepare_logs(cell, env, params, study, folder)
    pretrained = [s for s in specs if s.pretrained]
    prepare_pretrained(cell.name, env, train, holdout, study, pretrained, logs)
    path = folder / "config.toml"
    atomic_write_text(path, platform_config(cell, specs, env, study))
    config = load_config(path)
    result = run_experiment(
        config,
        folder / "results",
        overwrite=args.overwrite,
        progress=sys.stderr.isatty() if progress is None else progress,
        command=f"bandits run {path} --out {folder / 'results'}",
        executor=executor,
    )
    return config, result, holdout


def result_rows(cell: Cell, specs, study, held: Mapping[str, Any], folder: Path):
    """The study's rows of one cell, from the platform's stored curves, with
    the paired differences to the reference transformer."""
    results = folder / "results"
    stored = manifest.read(results)
    entries = {e.label: e for e in stored.agents}
    series = manifest.read_series_curves(results, stored)  # checksums checked
    rows, ends = [], {}
    for spec in specs:
        entry = entries[spec.label]
        curves = series[spec.label]
        column = {int(t): i for i, t in enumerate(curves.steps)}
        regret = curves.cumulative_regret
        early = min(study.early_steps, study.horizon)
        steps = np.unique(np.geomspace(1, study.horizon, CURVE_POINTS).astype(int))
        band = metrics.mean_band(regret[:, [column[int(t)] for t in steps]])
        end = column[study.horizon]
        ends[spec.label] = (regret[:, end], regret[:, column[early]])
        rows.append(
            {
                "env": cell.env_id,
                "cell": cell.name,
                "setting": dict(cell.setting),
                "events": cell.events,
                "agent": spec.label,
                "horizon": study.horizon,
                "seeds": study.seeds,
                "final_regret": _band(regret[:, end]),
                "early_steps": early,
                "early_regret": _band(regret[:, column[early]]),
                "ctr": _band(curves.cumulative_reward[:, end] / study.horizon),
                "held_out": held.get(spec.label),
                "run_seconds": round(entry.cost.run_time_s or 0.0, 1),
                "curve_steps": steps.tolist(),
                "curve_mean": band.mean.round(3).tolist(),
                "curve_low": band.low.round(3).tolist(),
                "curve_high": band.high.round(3).tolist(),
            }
        )
    reference = reference_label(specs)
    for row in rows:
        row["reference"] = reference
        if reference is not None and row["agent"] != reference:
            mine, base = ends[row["agent"]], ends[reference]
            row["diff_final"] = paired_band(mine[0] - base[0])
            row["diff_early"] = paired_band(mine[1] - base[1])
    return rows


HELD_OUT = "held_out"
"""The folder (in each cell's) of the held-out metrics' stages, one per agent."""


def held_out_by_agent(config, specs, holdout, logs: Stage) -> dict[str, Any]:
    """Held-out prediction metrics of each warm-started or pretrained agent's
    reward model in its starting state (the platform's build of the agent).

    Each agent's metrics are a stage (`experiments.store.stages`) with no
    files: its stamp `held_out/<label>.json` records them, and they are kept
    while the agent's config and the logs (their checksums) are the same.
    (Folders written before kept them all in one `held_out.json`, removed
    here: they are computed once again.)"""
    folder, sums = logs.folder, logs.checksums()
    (folder / "held_out.json").unlink(missing_ok=True)
    experiment = build(config)
    out = {}
    for i, spec in enumerate(specs):
        if not (spec.warm_start or spec.pretrained or spec.checkpoint):
            continue
        settings = {"agent": config.canonical()["agents"][i], "logs": sums}
        stage = Stage(folder / HELD_OUT, file_name(spec.label), settings, ())
        if stage.state() == "kept":
            out[spec.label] = stage.record()
            continue
        agent = build_agent(experiment.specs_by_setting[0][i])
        predict = agent.predict  # through the agent's feature map, if any
        if predict is None:
            continue
        state = agent.init(jax.random.key(0))
        out[spec.label] = held_out_metrics(predict, state, holdout)
        stage.folder.mkdir(exist_ok=True)
        stage.finish(out[spec.label])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return _run(parse_args(argv))


def run_config(
    source: str | Path,
    out: str | Path,
    *,
    executor: Executor | None = None,
    overwrite: bool = False,
    progress: bool = True,
    chunk_size: int | None = None,
) -> int:
    """`bandits run` of a pretrain/fine-tune config (`study =
    "pretrain_finetune"`): the study as its command runs it with the config as
    it is (`chunk_size` in place of `run.chunk_size` where given), into `out`,
    the platform runs on `executor`."""
    args = Args(
        out=str(out), config=str(source), overwrite=overwrite, chunk_size=chunk_size
    )
    return _run(args, executor, progress)


def _run(
    args: Args, executor: Executor | None = None, progress: bool | None = None
) -> int:
    """Every cell of the selected study, then the summary; the exit status."""
    try:
        study = select(load_study(args.config), args)
        cells = study_cells(study)
        for cell in cells:  # before any compute
            check_instances(cell, study)
    except BanditConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = {c.name for c in cells}
    rows = [r for r in _read_rows(results) if r.get("cell", r["env"]) not in done]
    for cell in cells:
        specs = [s for s in study.agents if s.envs is None or cell.env_id in s.envs]
        if not specs:
            continue
        folder = out / cell.name
        folder.mkdir(parents=True, exist_ok=True)
        try:
            config, result, holdout = run_env(
                cell, study, specs, folder, args, executor, progress
            )
        except BanditConfigError as err:  # e.g. results of another selection
            print(f"error: [{cell.name}] {err}", file=sys.stderr)
            return 2
        env = envs.make_env(cell.env_id, **cell.params)
        logs = logs_stage(cell, study, folder)
        held = held_out_by_agent(config, specs, holdout, logs)
        mine = result_rows(cell, specs, study, held, folder)
        counts = {s.label: parameter_count(s, env, study) for s in specs}
        for row in mine:
            if counts[row["agent"]] is not None:
                row["parameters"] = counts[row["agent"]]
            if row["agent"] in result.ran:
                print(
                    f"[{cell.name}] {row['agent']:<44} regret@T "
                    f"{band_text(row['final_regret'])}  @{row['early_steps']} "
                    f"{band_text(row['early_regret'])}  ({row['run_seconds']}s)",
                    flush=True,
                )
        plot_env(mine, folder / "regret.png")
        rows += mine
    atomic_write_text(results, "".join(json.dumps(r) + "\n" for r in rows))
    atomic_write_text(out / "summary.json", json.dumps(rows, indent=1) + "\n")
    atomic_write_text(out / "summary.md", summary_markdown(rows))
    figures = write_figures(rows, out)
    print(f"wrote {out / 'summary.md'}" + "".join(f", {f}" for f in figures))
    return 0


if __name__ == "__main__":
    run_command(lambda: main(sys.argv[1:]))
