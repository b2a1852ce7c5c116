"""Study: an in-context bandit policy (DPT) against LinUCB and LinTS on new instances.

    python -m experiments.studies.in_context                  # results/in_context
    python -m experiments.studies.in_context --quick --out /tmp/ic   # smoke run
    python -m experiments.studies.in_context --tokens paper \\
        --out results/in_context_paper        # the paper's tokens and head

The config (`experiments/configs/in_context.toml`) is a platform config's
`[env]`, `[run]` (the platform's: horizon, seeds, chunk_size, ...; and
first_seed) and `[[agents]]` (the baselines,
checked by the platform's parser: names, hyperparameters, grids) plus the
study's `[model]` (`agents.in_context.InContextConfig`) and `[pretrain]`
tables. (Until 2026-12-05 `[run]` was called `[evaluation]` and `[[agents]]`
`[[baselines]]`; a config of that layout is refused naming the new table.)
The study

1. pretrains the in-context model across instances `env.sample_params(key)`
   (`agents.in_context_pretrain.pretrain`), or reuses `checkpoint.npz` in the
   output folder while its stage stamp `checkpoint.json` names the config's
   architecture and pretraining settings and the file's checksum holds
   (`experiments.store.stages`; a rerun costs no training);
2. writes a platform config (`config.toml`: the frozen model as
   `name = "in_context"` with `checkpoint = "checkpoint.npz"`, and every
   baseline) and runs it with the experiment platform's runner into
   `results/` (chunked storage, resume, `report.html`) on `seeds` fresh
   instances (seeds first_seed.., `resample_params = true`: the instances of
   `bandits.run` with those seeds, a key stream pretraining never draws from),
   T = `run.horizon`;
3. writes `regret.png` (cumulative regret, mean and 95% Student-t band over
   instances; the pretraining loss beside it), `summary.json` and `summary.md`
   (final regret, mean [95% interval], and the pretraining cost: wall time,
   machine, tasks, steps).

The platform refuses to mix results of another selection of baselines or
settings into `<out>/results`; `--overwrite` replaces them.

`--quick` shrinks everything (the config's env with 2 arms and d = 2, H = 8,
20 steps, 4 seeds) to check the command end to end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import envs
from bandits import metrics
from bandits.validation import BanditConfigError, non_negative_int
from experiments.cli import run_command
from experiments.config import checks, sources
from experiments.config.loader import load_config, parse_agent, parse_env
from experiments.config.schema import RunConfig
from experiments.config.tables import parse_study_run, run_table
from experiments.config.toml_writer import experiment_toml
from experiments.execute.executors import Executor
from experiments.execute.runner import run_experiment
from experiments.store import manifest, storage
from experiments.store.stages import Stage

if TYPE_CHECKING:
    from agents.in_context import InContextConfig

CHECKPOINT_FILE = "checkpoint.npz"
CHECKPOINT_STAMP = "checkpoint.json"
"""The pretraining stage's stamp (`experiments.store.stages`): the architecture
and pretraining settings, and the checkpoint's SHA-256."""
PARTIAL_FILE = "checkpoint.partial.npz"
"""Pretraining's progress (`agents.resumable`): a killed run continues from it."""
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "in_context.toml"
SECTIONS = (
    "study",
    "name",
    "output",
    "env",
    "model",
    "pretrain",
    "run",
    "agents",
)
RENAMED = {"evaluation": "run", "baselines": "agents"}
"""Tables of the earlier layout (before 2026-12-05) -> their names now, the
platform's."""
STUDY = "in_context"
"""The config's `study` key: `bandits run` runs it with this module."""
PRETRAIN_KEYS = ("seed", "steps", "batch_size", "learning_rate")
RUN_OWN_KEYS = ("first_seed",)
"""`[run]` keys of the study; the others are the platform's
(`experiments.config.tables.parse_study_run`)."""
RUN_FIXED = {
    "resample_params": "every seed is a fresh instance",
    "curve_points": "every step is stored",
    "curve_spacing": "every step is stored",
    "prediction_seeds": "the in-context model has no reward model to score",
    "output": "the results go to the config's output (or --out)",
}
"""Platform `[run]` keys the study sets itself -> why."""
AGENT_KEYS = ("name", "label", "hyperparameters", "grid")
"""`[[agents]]` keys: the platform's, without the files an agent starts from."""
QUICK: dict[str, dict[str, Any]] = {
    # the config's env, made small (the parameters it takes of these)
    "env": {
        "params": {
            "num_arms": 2,
            "dim": 2,
            "num_items": 100,
            "num_users": 300,
            "num_candidates": 4,
        }
    },
    "model": {"horizon": 8, "width": 8, "depth": 1, "heads": 1, "mlp_ratio": 2},
    "pretrain": {"steps": 20, "batch_size": 8},
    "run": {"horizon": 8, "seeds": 4},
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(CONFIG), help="the study's TOML")
    parser.add_argument("--out", help="results folder (default: the config's)")
    parser.add_argument(
        "--seeds", type=checks.positive_option, help="online instances (run.seeds)"
    )
    parser.add_argument(
        "--chunk-size",
        type=checks.positive_option,
        help="seeds per compiled batch and stored chunk (replaces run.chunk_size)",
    )
    parser.add_argument("--figure", help="also save the figure at this path")
    parser.add_argument(
        "--tokens",
        choices=("paper", "interactions"),
        help="the model's form, replacing model.tokens (agents.in_context)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace platform results of other agents or settings in <out>/results",
    )
    return parser.parse_args(argv)


def load_study(path: str | Path, quick: bool = False) -> dict[str, Any]:
    """The config (a TOML path or a packaged config's name), structure and types
    checked, and the values of the env, the model, the pretraining options
    and the agents (each by the parser or class that uses it)."""
    text, origin, _ = sources.read_source(path)  # unreadable: a named error
    data = sources.parse_toml(text, origin)
    for old, new in RENAMED.items():
        if old in data:
            raise BanditConfigError.about(
                old, f"is called [{new}] since 2026-12-05 (the platform's name)"
            )
    checks.check_keys(data, SECTIONS, "the study config", required=SECTIONS[3:7])
    if data.get("study", STUDY) != STUDY:
        raise BanditConfigError.about(
            "study", f"must be {STUDY!r} in an in-context config, got {data['study']!r}"
        )
    if not isinstance(data.get("output", ""), str):
        raise BanditConfigError.about("output", "must be a string (a folder)")
    env = checks.table("env", data["env"])
    # The platform's parser of `[env]` (no grid or named settings here).
    parse_env(env, keys=("id", "params"))
    checks.table("model", data["model"])
    table = checks.table("pretrain", data["pretrain"])
    checks.check_keys(table, PRETRAIN_KEYS, "pretrain", required=PRETRAIN_KEYS)
    online_run(checks.table("run", data["run"]))
    baselines = data.get("agents", [])
    checks.check_type("agents", baselines, list, "an array of tables")
    for i, entry in enumerate(baselines):  # checked as in any platform config
        where = f"agents[{i}]"
        checks.check_keys(checks.table(where, entry), AGENT_KEYS, where)
        parse_agent(i, entry)
    if quick:
        for section, values in QUICK.items():
            data[section] = {**data[section], **values}
        accepted = (
            envs.hyperparameters(env["id"]) if env["id"] in envs.registered() else {}
        )
        small = {k: v for k, v in QUICK["env"]["params"].items() if k in accepted}
        data["env"]["params"] = {**env.get("params", {}), **small}
    check_values(data)
    return data


def check_values(study: Mapping[str, Any]) -> None:
    """The model and the pretraining options, checked by the library's own
    rules for the config's env, before any compute."""
    from agents import in_context_pretrain

    spec = study["env"]
    env, _ = envs.make(spec["id"], **spec.get("params", {}))
    model_config(study["model"], env)
    training = dict(study["pretrain"])
    non_negative_int("pretrain.seed", training.pop("seed"))
    try:
        in_context_pretrain.check_options(**training)
    except BanditConfigError as err:
        raise err.at(f"pretrain.{err.field}") from None


def _cost_machine() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next(
                line.split(":", 1)[1].strip()
                for line in handle
                if line.startswith("model name")
            )
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} logical CPUs"


MODEL_SHAPES = ("num_arms", "context_dim", "arm_columns")
"""`InContextConfig` fields that come from the env, not from `[model]`."""


def model_config(model: Mapping[str, Any], env) -> InContextConfig:
    """The model of `[model]` for `env`'s shapes, checked by the library's own
    rules (`agents.in_context.InContextConfig`); an error names `model.<field>`."""
    from agents.in_context import InContextConfig

    allowed = [
        f.name
        for f in dataclasses.fields(InContextConfig)
        if f.name not in MODEL_SHAPES
    ]
    checks.check_keys(model, allowed, "model")
    model = dict(model)
    columns = env.observation_spec()["arms"].shape[1]
    arm_dim = model.pop("arm_dim", columns)  # the first arm_dim columns are read
    try:
        return InContextConfig(
            num_arms=env.num_arms,
            context_dim=env.observation_spec()["context"].shape[0],
            arm_dim=arm_dim,
            arm_columns=None if arm_dim == columns else columns,
            **model,
        )
    except BanditConfigError as err:
        raise err.at(f"model.{err.field}" if err.field else "model") from None


def pretrained(study: Mapping[str, Any], env, out: Path):
    """(config, params, record): the checkpoint in `out` if it matches the study,
    else (another architecture or settings, or a damaged file) a new
    pretraining run, saved there."""
    import jax

    from agents.in_context_pretrain import load_checkpoint, pretrain, save_checkpoint

    spec = study["env"]
    cfg = model_config(study["model"], env)
    training = dict(study["pretrain"])
    settings = {"env": spec["id"], "env_params": spec.get("params", {}), **training}
    path = out / CHECKPOINT_FILE
    stage = Stage(
        out,
        CHECKPOINT_STAMP,
        {"model": dataclasses.asdict(cfg), **settings},
        [path.name],
    )
    state = stage.state()
    if state == "kept":
        try:
            saved, params, record = load_checkpoint(path)
        except BanditConfigError as err:  # checksum held, contents do not
            state = str(err)
        else:
            print(f"reusing {path} (same architecture and pretraining settings)")
            return saved, params, record
    if state != "missing":
        print(f"{path}: {state}; pretraining anew")
    stage.begin()
    print(f"pretraining: {training['steps']} steps x {training['batch_size']} tasks")
    result = pretrain(
        jax.random.key(training["seed"]),
        env,
        cfg,
        steps=training["steps"],
        batch_size=training["batch_size"],
        learning_rate=training["learning_rate"],
        progress=True,
        resume=out / PARTIAL_FILE,
    )
    record = {
        "settings": settings,
        "seconds": result.seconds,
        "tasks": result.tasks,
        "losses": [float(x) for x in result.losses],
        "machine": _cost_machine(),
        "jax": jax.__version__,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    save_checkpoint(path, cfg, result.params, record)
    (out / PARTIAL_FILE).unlink(missing_ok=True)
    stage.finish()
    return cfg, result.params, record


DPT_LABEL = "In-context (DPT)"


def online_run(table: Mapping[str, Any], seeds: int | None = None) -> RunConfig:
    """The online runs' settings: `[run]` parsed by the platform's parser
    (its keys less `RUN_FIXED`, plus `first_seed`), with `seeds` (a count, as
    `--seeds` gives it) in place of `run.seeds`. A count S of seeds means
    seeds first_seed..first_seed + S - 1 (`first_seed` default 0); a list of
    seeds is taken as it is."""
    if seeds is not None:
        table = {**table, "seeds": seeds}
    run, own = parse_study_run(
        table, own=RUN_OWN_KEYS, fixed=RUN_FIXED, defaults={"resample_params": True}
    )
    first = own.get("first_seed", 0)
    if not checks.is_int(first) or not 0 <= first < 2**32:
        raise BanditConfigError.about(
            "run.first_seed", f"must be an integer in [0, 2**32), got {first!r}"
        )
    if checks.is_int(table["seeds"]):
        if first + len(run.seeds) > 2**32:
            raise BanditConfigError.about(
                "run.first_seed", "+ run.seeds must be at most 2**32"
            )
        run = dataclasses.replace(run, seeds=tuple(s + first for s in run.seeds))
    elif "first_seed" in own:
        raise BanditConfigError.about(
            "run.first_seed", "offsets a count of seeds; run.seeds lists them already"
        )
    return run


def platform_config(study: Mapping[str, Any], seeds: int | None = None) -> str:
    """The platform config (TOML, written beside `checkpoint.npz`) that runs
    the frozen in-context model and every baseline on fresh instances (the
    seeds of `online_run`, `resample_params`), storing every step; the other
    `[run]` settings are the study's."""
    online = online_run(study["run"], seeds)
    spec = study["env"]
    run = run_table(online)
    run.update(curve_points=online.horizon, prediction_seeds=0)
    agents: list[dict[str, Any]] = [
        {"name": "in_context", "label": DPT_LABEL, "checkpoint": CHECKPOINT_FILE}
    ]
    for entry in study.get("agents", []):
        table = {"name": entry["name"], "label": entry.get("label", entry["name"])}
        table["hyperparameters"] = dict(entry.get("hyperparameters", {}))
        if "grid" in entry:
            table["grid"] = dict(entry["grid"])
        agents.append(table)
    return experiment_toml(
        "Written by experiments.studies.in_context.",
        str(study.get("name", "in_context")),
        spec["id"],
        spec.get("params", {}),
        run,
        agents,
    )


def evaluate(
    study,
    out: Path,
    seeds: int | None = None,
    overwrite: bool = False,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> dict[str, np.ndarray]:
    """Cumulative regret (S, T) of the in-context policy and every baseline,
    run by the experiment platform into `out/results` (resumable; a rerun
    with the same checkpoint and settings computes nothing) on `executor`
    (default: local workers); progress shown by default on a terminal."""
    path = out / "config.toml"
    storage.atomic_write_text(path, platform_config(study, seeds))
    config = load_config(path)
    results = out / "results"
    run_experiment(
        config,
        results,
        overwrite=overwrite,
        progress=sys.stderr.isatty() if progress is None else progress,
        command=f"bandits run {path} --out {results}",
        executor=executor,
    )
    stored = manifest.read(results)
    series = manifest.read_series_curves(results, stored)  # checksums checked
    curves = {}
    for entry in stored.agents:
        curves[entry.label] = np.asarray(series[entry.label].cumulative_regret)
        print(f"  {entry.label}: {entry.cost.run_time_s or 0.0:.0f} s")
    return curves


def rows(curves: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    out = []
    for label, curve in curves.items():
        band = metrics.mean_band(curve[:, -1:])
        out.append(
            {
                "agent": label,
                "final_regret": float(band.mean[0]),
                "low": float(band.low[0]),
                "high": float(band.high[0]),
                "instances": int(curve.shape[0]),
                "horizon": int(curve.shape[1]),
            }
        )
    return out


def table(rows_: Sequence[Mapping[str, Any]], record: Mapping[str, Any]) -> str:
    horizon = rows_[0]["horizon"]
    lines = [
        f"| agent | regret at T = {horizon}, mean [95% interval] |",
        "|---|---|",
    ]
    lines += [
        f"| {r['agent']} | {r['final_regret']:.2f} [{r['low']:.2f}, {r['high']:.2f}] |"
        for r in rows_
    ]
    settings = record["settings"]
    lines += [
        "",
        f"Pretraining: {settings['steps']} Adam steps x {settings['batch_size']} "
        f"instances = {record['tasks']} tasks, {record['seconds'] / 60:.1f} min "
        f"wall on {record.get('machine', 'unknown')} (jax {record.get('jax')}); "
        f"final loss (mean of the last 50 steps) "
        f"{np.mean(record['losses'][-50:]):.3f}",
    ]
    return "\n".join(lines) + "\n"


def plot(curves, record, path: Path, title: str, num_arms: int) -> Path:
    """The regret curves (mean, 95% band) and the pretraining loss beside
    ln K, the loss of a uniform guess over the env's `num_arms` arms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, curve in curves.items():
        band = metrics.mean_band(curve)
        t = np.arange(1, curve.shape[1] + 1)
        left.plot(t, band.mean, label=label)
        left.fill_between(t, band.low, band.high, alpha=0.2)
    left.set_xlabel("t")
    left.set_ylabel("cumulative regret")
    left.set_title(textwrap.fill(title, 60), fontsize=9)
    left.grid(alpha=0.3)
    left.legend()
    losses = np.asarray(record["losses"])
    window = max(len(losses) // 50, 1)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    right.plot(np.arange(len(smooth)) + window, smooth)
    right.axhline(
        np.log(num_arms), color="grey", ls="--", label=f"ln K = ln {num_arms} (uniform)"
    )
    right.set_xlabel("Adam step")
    right.set_ylabel(f"pretraining loss (moving mean of {window})")
    right.set_title("Pretraining (fresh instances every step)")
    right.grid(alpha=0.3)
    right.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        study = load_study(args.config, quick=args.quick)
        if args.chunk_size is not None:
            study["run"]["chunk_size"] = args.chunk_size
        if args.tokens:
            study["model"]["tokens"] = args.tokens
        out = Path(args.out or study.get("output", "results/in_context"))
        return _run(
            study, out, args.seeds, overwrite=args.overwrite, figure=args.figure
        )
    except BanditConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def run_config(
    source: str | Path,
    out: str | Path,
    *,
    executor: Executor | None = None,
    overwrite: bool = False,
    progress: bool = True,
    chunk_size: int | None = None,
) -> int:
    """`bandits run` of an in-context config (`study = "in_context"`): the
    study as its command runs it with the config as it is (`chunk_size` in
    place of `run.chunk_size` where given), into `out`, the platform runs on
    `executor`. Bad input raises `BanditConfigError`."""
    study = load_study(source)
    if chunk_size is not None:
        study["run"]["chunk_size"] = chunk_size
    return _run(study, Path(out), None, overwrite, executor=executor, progress=progress)


def _run(
    study: dict[str, Any],
    out: Path,
    seeds: int | None,
    overwrite: bool,
    figure: str | None = None,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> int:
    """Pretrains (or reuses the checkpoint), runs the platform config, writes
    the summary and the figure; returns the exit status."""
    spec = study["env"]
    env, _ = envs.make(spec["id"], **spec.get("params", {}))
    _, _, record = pretrained(study, env, out)
    curves = evaluate(study, out, seeds, overwrite, executor, progress)
    summary = rows(curves)
    text = table(summary, record)
    storage.atomic_write_text(
        out / "summary.json",
        json.dumps({"rows": summary, "pretraining": _cost(record)}, indent=2) + "\n",
    )
    storage.atomic_write_text(out / "summary.md", text)
    title = f"{spec['id']} {spec.get('params', {})}, new instances"
    written = plot(curves, record, out / "regret.png", title, env.num_arms)
    if figure:
        plot(curves, record, Path(figure), title, env.num_arms)
    print(text)
    print(f"wrote {written}, {out / 'summary.json'}, {out / 'summary.md'}")
    return 0


def _cost(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "losses"}


if __name__ == "__main__":
    run_command(lambda: main(sys.argv[1:]))
