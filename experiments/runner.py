"""The experiment runner: every agent of a config on its environment, stored, reported.

For each agent, in config order, `bandits.run` simulates all seeds in one jitted,
seed-vmapped call; its curves and summaries are written as soon as it finishes
(atomically), and the manifest records it as done. The manifest also records the
config's hash, so

  * rerunning the same config into the same folder skips the finished agents
    (a killed run resumes where it stopped);
  * a folder holding results of a different config is refused, and nothing in it
    is touched, unless `overwrite=True`.

Compile time (tracing, lowering, XLA) is measured apart from run time through
JAX's compile events (`bandits.progress.CompileClock`); rounds per second count
simulated rounds (seeds x horizon) per second of run time.
"""

from __future__ import annotations

import dataclasses
import datetime
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import rich.markup
from rich.console import Console

import bandits
from bandits import report, storage
from bandits.progress import CompileClock, task_progress
from bandits.validation import BanditConfigError
from experiments.config import AgentConfig, ExperimentConfig, build

FORMAT = "bandits-results/1"
CONFIG_COPY = "config.toml"
CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class AgentRun:
    """What happened to one agent in a call of `run_experiment`."""

    label: str
    skipped: bool
    """True if the results were already stored (resumed run)."""
    wall_time_s: float | None = None
    compile_time_s: float | None = None
    run_time_s: float | None = None
    rounds_per_s: float | None = None


@dataclasses.dataclass(frozen=True)
class ExperimentResult:
    """Where the results and the report are, and what ran."""

    output: Path
    report: report.ReportFiles
    agents: tuple[AgentRun, ...]

    @property
    def ran(self) -> list[str]:
        """Labels of the agents simulated in this call."""
        return [a.label for a in self.agents if not a.skipped]

    @property
    def skipped(self) -> list[str]:
        """Labels of the agents whose stored results were reused."""
        return [a.label for a in self.agents if a.skipped]


def output_dir(config: ExperimentConfig, out: str | Path | None = None) -> Path:
    """`out`, else the config's `run.output`, else `results/<name>`."""
    if out is not None:
        return Path(out)
    if config.run.output is not None:
        return Path(config.run.output)
    return Path("results") / config.name


def run_experiment(
    config: ExperimentConfig,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    console: Console | None = None,
    command: str | None = None,
) -> ExperimentResult:
    """Runs every agent of `config`, stores the results and renders the report.

    Args:
      config: a validated config (`experiments.config.load_config`).
      out: results folder; default `output_dir(config)`.
      overwrite: replace results of a different config found in `out`.
      progress: show a rich progress display.
      console: where progress goes (default: stderr).
      command: the command line to record in the report.

    Returns:
      An `ExperimentResult`.

    Raises:
      BanditConfigError: bad config, or `out` holds other results (before any
        compute starts).
      bandits.NonFiniteAgentStateError: an agent's state became NaN/inf; agents
        finished before it stay stored.
    """
    experiment = build(config)  # every env and agent, before anything runs
    directory = output_dir(config, out)
    manifest = _prepare(directory, config, overwrite, command)
    done = {a["label"]: a for a in manifest["agents"]}
    records = _kept_records(directory, done)
    params = experiment.env.default_params()
    console = console or Console(stderr=True)
    runs: list[AgentRun] = []
    with task_progress(console, enabled=progress) as bar:
        for index, (agent_config, agent, kwargs) in enumerate(
            zip(config.agents, experiment.agents, experiment.agent_kwargs, strict=True)
        ):
            description = rich.markup.escape(agent_config.label)
            if agent_config.label in done:
                task = bar.add_task(description, total=1, detail="stored")
                bar.update(task, completed=1)
                runs.append(AgentRun(agent_config.label, skipped=True))
                continue
            task = bar.add_task(description, total=None, detail="compiling")

            def running(task=task):
                bar.update(task, detail="running")

            with CompileClock(on_compiled=running) as clock:
                trajectory = bandits.run(
                    experiment.env,
                    agent,
                    horizon=config.run.horizon,
                    seeds=config.run.seeds,
                    params=params,
                    resample_params=config.run.resample_params,
                )
                trajectory = jax.device_get(trajectory)
            rounds = config.run.horizon * len(config.run.seeds)
            run = AgentRun(
                agent_config.label,
                skipped=False,
                wall_time_s=clock.wall_s,
                compile_time_s=clock.compile_s,
                run_time_s=clock.run_s,
                rounds_per_s=rounds / clock.run_s if clock.run_s > 0 else None,
            )
            entry = _store_agent(
                directory, index, agent_config, kwargs, trajectory, run, config, records
            )
            manifest["agents"] = _ordered(config, [*manifest["agents"], entry])
            manifest["updated"] = _now()
            storage.write_manifest(directory, manifest)
            runs.append(run)
            bar.update(
                task,
                total=1,
                completed=1,
                detail=f"{_rate(run.rounds_per_s)} rounds/s, compile "
                f"{run.compile_time_s:.1f}s",
            )
    files = report.render(directory)
    return ExperimentResult(directory, files, tuple(runs))


# ---------------------------------------------------------------------------
# Output folder and manifest


def _prepare(
    directory: Path, config: ExperimentConfig, overwrite: bool, command: str | None
) -> dict[str, Any]:
    """Checks the output folder and returns the manifest to continue from."""
    if directory.exists() and not directory.is_dir():
        raise BanditConfigError(f"output {str(directory)!r} exists and is not a folder")
    digest = config.hash()
    existing = _existing_manifest(directory)
    if existing is not None and existing.get("config_hash") == digest and not overwrite:
        manifest = existing
        manifest["agents"] = [
            a
            for a in existing.get("agents", [])
            if isinstance(a, dict)
            and (directory / str(a.get("curves", ""))).is_file()
            and a.get("label") in {c.label for c in config.agents}
        ]
    else:
        if not overwrite:
            _refuse_foreign(directory, existing, digest)
        _clear_results(directory)
        manifest = {
            "format": FORMAT,
            "title": config.name,
            "config_hash": digest,
            "config": config.canonical(),
            "created": _now(),
            "agents": [],
        }
    manifest.update(
        {
            "title": config.name,
            "updated": _now(),
            "setup": _setup(config),
            "commands": _commands(config, directory, command),
            "machine": report.machine_info(),
        }
    )
    directory.mkdir(parents=True, exist_ok=True)
    text = config.text if config.text is not None else config.to_toml()
    storage.atomic_write_text(directory / CONFIG_COPY, text)
    storage.write_manifest(directory, manifest)
    return manifest


def _existing_manifest(directory: Path) -> dict[str, Any] | None:
    if not (directory / storage.MANIFEST).is_file():
        return None
    try:
        return storage.read_manifest(directory)
    except BanditConfigError:
        return {}


def _refuse_foreign(directory: Path, existing: dict | None, digest: str) -> None:
    if existing is not None:
        theirs = str(existing.get("config_hash", "unknown"))[:12]
        raise BanditConfigError(
            f"output folder {str(directory)!r} holds results of a different config "
            f"(config hash {theirs}, this config {digest[:12]}); nothing was changed. "
            "Choose another --out, or pass --overwrite to replace them"
        )
    if directory.is_dir() and any(directory.iterdir()):
        raise BanditConfigError(
            f"output folder {str(directory)!r} is not empty and holds no bandits "
            f"results ({storage.MANIFEST}); nothing was changed. Choose an empty or "
            "new folder, or pass --overwrite to write into it"
        )


def _clear_results(directory: Path) -> None:
    """Removes the files a run writes (and nothing else) from `directory`."""
    if not directory.is_dir():
        return
    names = [
        storage.MANIFEST,
        storage.SUMMARIES,
        CONFIG_COPY,
        report.REPORT_HTML,
        report.REPORT_MD,
        report.REGRET_PNG,
        report.LOGLOG_PNG,
        report.OPTIMAL_PNG,
    ]
    for name in names:
        (directory / name).unlink(missing_ok=True)
    curves = directory / storage.CURVES_DIR
    if curves.is_dir():
        for file in curves.glob("*.parquet"):
            file.unlink()


def _kept_records(directory: Path, done: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Summary lines of finished agents (lines of an unfinished agent are dropped)."""
    path = directory / storage.SUMMARIES
    if not path.is_file() or not done:
        return []
    return [r for r in storage.read_summaries(path) if r.get("agent") in done]


def _store_agent(
    directory: Path,
    index: int,
    agent: AgentConfig,
    kwargs: Mapping[str, Any],
    trajectory: bandits.Trajectory,
    run: AgentRun,
    config: ExperimentConfig,
    records: list[dict[str, Any]],
) -> dict[str, Any]:
    """Writes curves, then summaries; returns the manifest entry (written last)."""
    seeds = list(config.run.seeds)
    curves_name = f"{storage.CURVES_DIR}/{storage.curve_file_name(index, agent.label)}"
    curves = storage.curves_from_trajectory(trajectory, seeds, config.run.curve_points)
    storage.write_curves(directory / curves_name, agent.label, curves)
    timing = {
        "wall_time_s": run.wall_time_s,
        "compile_time_s": run.compile_time_s,
        "run_time_s": run.run_time_s,
        "rounds_per_s": run.rounds_per_s,
    }
    hyper = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
    records[:] = [r for r in records if r.get("agent") != agent.label]
    records += storage.seed_records(agent.label, trajectory, seeds)
    records.append(
        storage.agent_record(
            agent.label,
            trajectory,
            CONFIDENCE,
            agent_name=agent.name,
            hyperparameters=hyper,
            **timing,
        )
    )
    order = {a.label: i for i, a in enumerate(config.agents)}
    records.sort(
        key=lambda r: (order.get(r.get("agent"), len(order)), r["kind"] != "seed")
    )
    storage.write_summaries(directory / storage.SUMMARIES, records)
    return {
        "label": agent.label,
        "name": agent.name,
        "hyperparameters": hyper,
        "curves": curves_name,
        "finished": _now(),
        **timing,
    }


def _ordered(config: ExperimentConfig, entries: list[dict[str, Any]]) -> list[dict]:
    order = {a.label: i for i, a in enumerate(config.agents)}
    unique = {e["label"]: e for e in entries}
    return sorted(unique.values(), key=lambda e: order.get(e["label"], len(order)))


def _setup(config: ExperimentConfig) -> dict[str, str]:
    params = ", ".join(f"{k}={v!r}" for k, v in config.env.params.items())
    seeds = config.run.seeds
    contiguous = seeds == tuple(range(len(seeds)))
    agents_ = []
    for a in config.agents:
        hyper = ", ".join(f"{k}={v!r}" for k, v in a.hyperparameters.items())
        agents_.append(f"{a.label} = {a.name}({hyper})")
    return {
        "Environment": f"{config.env.id}({params})",
        "Horizon": str(config.run.horizon),
        "Seeds": f"{len(seeds)} ("
        + (f"0..{len(seeds) - 1}" if contiguous else ", ".join(map(str, seeds)))
        + ")",
        "Problem instance": "fresh per seed"
        if config.run.resample_params
        else "the env's default instance, shared by all seeds",
        "Agents": "; ".join(agents_),
        "Config hash": config.hash()[:12],
    }


def _commands(
    config: ExperimentConfig, directory: Path, command: str | None
) -> dict[str, str]:
    out = shlex.quote(str(directory))
    copy = shlex.quote(str(directory / CONFIG_COPY))
    commands = {}
    if command:
        commands["The command that produced these results"] = command
    commands["Recompute every agent from the stored config"] = (
        f"bandits run {copy} --out {out} --overwrite"
    )
    commands["Re-render this report from the stored results"] = f"bandits report {out}"
    return commands


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _rate(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    return f"{value / 1e3:.0f}k" if value >= 1e4 else f"{value:.0f}"
