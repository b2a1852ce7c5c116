"""The experiment runner: plan, run chunks on an executor, store, resume, report.

`run_experiment` expands a config into series (agent x env setting) and tasks
(compiled program x seed chunk, see `experiments.plan.planner`), runs the tasks that are
not stored yet on an executor (`experiments.execute.executors`), and writes

  * one chunk file per (series, seed chunk) as soon as its task finishes
    (atomically: temporary file, then rename), under `chunks/`;
  * when every chunk of a series is stored: its merged curves (`curves/`), its
    summary lines (`summaries.jsonl`) and its manifest entry; then its chunk
    files are removed;
  * the report (`experiments.report.render.render`) at the end.

A series whose agent state becomes NaN or infinite does not stop the run: the
worker reports it (first bad seed and step) and keeps the other series of its
task, the healthy grid points of the same sweep. The run stores everything
else, lists the failed series in the manifest (`failed`) and the report, and
then raises `SeriesFailedError` (exit status 1 from the CLI). A rerun retries
the failed series' chunks only.

The manifest records the config's hash, so

  * rerunning the same config into the same folder skips every stored chunk (a
    killed run resumes; only the tasks that were in flight are recomputed, and
    `manifest["last_run"]` lists which chunks this call computed);
  * a folder holding results of a different config is refused before anything
    runs, and nothing in it is touched, unless `overwrite=True`;
  * except when the only difference is the content of files that agents start
    from (`warm_start`, `checkpoint`: their checksums are in the config hash):
    then the series of the agents whose file changed are computed again and
    the others are kept.

Compile time is measured apart from run time through JAX's compile events
(`experiments.execute.progress.CompileClock`); rounds per second count simulated rounds
(seeds x horizon, x G for a sweep) per second of run time, in the worker.
"""

from __future__ import annotations

import dataclasses
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

import rich.markup
from rich.console import Console

from bandits.simulation import NonFiniteAgentStateError
from bandits.validation import BanditConfigError
from experiments.config.loader import ExperimentConfig, build
from experiments.config.sources import output_folder
from experiments.config.start import unchanged_agents
from experiments.execute.executors import Executor, LocalExecutor
from experiments.execute.folder import Folder, now
from experiments.execute.progress import chunk_progress
from experiments.plan import resources
from experiments.plan.planner import Plan, Task, plan
from experiments.report import render as report
from experiments.store import lock, manifest, storage
from experiments.store.manifest import FailedSeries, Manifest

CONFIG_COPY = "config.toml"


@dataclasses.dataclass(frozen=True)
class AgentRun:
    """What happened to one series (agent x env setting) in a call."""

    label: str
    skipped: bool
    """True if every chunk was already stored (resumed run)."""
    computed_chunks: int = 0
    reused_chunks: int = 0
    failed: FailedSeries | None = None
    """Set if its agent state became NaN or inf in this call (not stored)."""


@dataclasses.dataclass(frozen=True)
class ExperimentResult:
    """Where the results and the report are, and what ran."""

    output: Path
    report: report.ReportFiles
    agents: tuple[AgentRun, ...]
    computed: tuple[str, ...] = ()
    """Chunk files computed in this call (`chunks/` names)."""
    reused: tuple[str, ...] = ()
    """Chunk files that were already stored (merged series count in full)."""
    failed: tuple[FailedSeries, ...] = ()
    """Series whose agent state became NaN or inf in this call."""

    @property
    def ran(self) -> list[str]:
        """Labels of the series with at least one chunk simulated in this call."""
        return [a.label for a in self.agents if not a.skipped]

    @property
    def skipped(self) -> list[str]:
        """Labels of the series whose stored results were reused in full."""
        return [a.label for a in self.agents if a.skipped]


class SeriesFailedError(NonFiniteAgentStateError):
    """Series of a run failed (their agent state became NaN or inf); every
    other series is stored and the report rendered.

    Attributes:
      result: the `ExperimentResult` of the run (its `failed` lists them).
    """

    def __init__(self, result: ExperimentResult):
        self.result = result
        failed = result.failed
        stored = len(result.agents) - len(failed)
        if len(failed) == 1:
            what = (
                f"series {failed[0].label!r} failed: its agent state became "
                f"non-finite (NaN or inf) at {failed[0].describe()}"
            )
        else:
            listed = ", ".join(f"{f.label!r} ({f.describe()})" for f in failed)
            what = (
                f"{len(failed)} series failed, their agent state became "
                f"non-finite (NaN or inf): {listed}"
            )
        super().__init__(
            f"{what}; the other {stored} series are stored in {result.output} "
            f"(report: {result.report.html})"
        )


def output_dir(config: ExperimentConfig, out: str | Path | None = None) -> Path:
    """`out`, else the config's `run.output`, else `results/<name>`."""
    return output_folder(out, config.run.output, config.name)


def run_experiment(
    config: ExperimentConfig,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    console: Console | None = None,
    command: str | None = None,
    executor: Executor | None = None,
) -> ExperimentResult:
    """Runs every unfinished chunk of `config`, stores results, renders the report.

    Args:
      config: a validated config (`experiments.config.loader.load_config`).
      out: results folder; default `output_dir(config)`.
      overwrite: replace results of a different config found in `out`.
      progress: show a rich progress display.
      console: where progress goes (default: stderr).
      command: the command line to record in the report.
      executor: where tasks run (default: `LocalExecutor()`, one single-device
        worker process per core or $BANDITS_WORKERS).

    Returns:
      An `ExperimentResult`.

    Raises:
      BanditConfigError: bad config, `out` holds other results, or the executor
        cannot run (before any compute starts and before `out` is touched).
      SeriesFailedError: some series' agent state became NaN/inf (a
        `bandits.NonFiniteAgentStateError` naming each with its first bad seed
        and step); all other series are stored and the report is rendered.
    """
    experiment = build(config)  # every env and agent, before anything runs
    digest = config.hash()
    the_plan = plan(experiment, digest)
    executor = executor or LocalExecutor()
    executor.check()
    if isinstance(executor, LocalExecutor):  # Dask workers' memory is remote
        parallel = min(executor.workers, len(the_plan.tasks))
        resources.check_memory(experiment, max(parallel, 1))
    directory = output_dir(config, out)
    if directory.exists() and not directory.is_dir():
        raise BanditConfigError(f"output {str(directory)!r} exists and is not a folder")
    with lock.exclusive(directory, command):
        folder = Folder(
            directory, config, the_plan, _prepare(directory, config, overwrite, command)
        )
        return _run_folder(folder, executor, progress, console)


def _run_folder(
    folder: Folder, executor: Executor, progress: bool, console: Console | None
) -> ExperimentResult:
    """Runs what the folder lacks, stores it, renders the report (folder locked)."""
    the_plan, config, directory = folder.plan, folder.config, folder.directory
    pending = round_robin([t for t in the_plan.tasks if not folder.task_done(t)])
    reused = tuple(folder.stored_chunk_names())
    started, clock = now(), time.perf_counter()
    computed = _run_tasks(
        config.name, the_plan, pending, folder, executor, progress, console
    )
    folder.finalize_all()
    failed = tuple(
        folder.failures[label]
        for label in sorted(folder.failures, key=lambda label: folder.order[label])
    )
    folder.save(
        failed=failed,
        last_run={
            "started": started,
            "finished": now(),
            "wall_time_s": time.perf_counter() - clock,
            "executor": executor.describe(),
            "computed_chunks": computed,
            "reused_chunks": list(reused),
        },
    )
    files = report.render(directory)
    folder.save(files=_written(folder, files))
    runs = []
    for series in the_plan.series:
        names = set(the_plan.chunk_files(series.index))
        done_here = len(names & set(computed))
        failure = folder.failures.get(series.label)
        runs.append(
            AgentRun(
                series.label,
                skipped=done_here == 0 and failure is None,
                computed_chunks=done_here,
                reused_chunks=len(names) - done_here,
                failed=failure,
            )
        )
    result = ExperimentResult(
        directory, files, tuple(runs), tuple(computed), reused, failed
    )
    if failed:
        raise SeriesFailedError(result)
    return result


def round_robin(tasks: Sequence[Task]) -> list[Task]:
    """`tasks` in the order they are handed to workers: the first chunk of every
    program, then the second of every program, and so on.

    Workers that start together then compile different programs side by side;
    in the plan's order (program by program) they would all start on the same
    program and compile it once each. A program a worker meets later is loaded
    from the persistent compilation cache when it is on (the CLI's default).
    Results do not depend on the order: every chunk's seeds are fixed by the plan.
    """
    rank: dict[int, int] = {}
    order = []
    for position, task in enumerate(tasks):
        rank[task.program] = rank.get(task.program, -1) + 1
        order.append((rank[task.program], position))
    return [tasks[position] for _, position in sorted(order)]


def _run_tasks(
    title: str,
    the_plan: Plan,
    pending: list[Task],
    folder: Folder,
    executor: Executor,
    progress: bool,
    console: Console | None,
) -> list[str]:
    """Runs `pending` on `executor`, storing each result as it arrives; returns
    the chunk files computed."""
    computed: list[str] = []
    compiled = 0
    with chunk_progress(console or Console(stderr=True), enabled=progress) as bar:
        task_id = bar.add_task(
            rich.markup.escape(title),
            total=len(the_plan.tasks),
            completed=len(the_plan.tasks) - len(pending),
            detail=f"{executor.describe()}",
        )
        by_key = {t.spec["task"]: t for t in pending}
        for finished, (spec, result) in enumerate(
            executor.run([t.spec for t in pending]), 1
        ):
            task = by_key[spec["task"]]
            computed += folder.store_task(task, result)
            compiled += result["cost"]["compile_s"] > 0
            bar.update(
                task_id,
                advance=1,
                detail=f"{compiled} compiled, {len(pending) - finished} left, "
                f"{_rate(result['cost']['rounds_per_s'])} rounds/s, "
                f"{executor.describe()}",
            )
    return computed


# ---------------------------------------------------------------------------
# Output folder and manifest


def _prepare(
    directory: Path, config: ExperimentConfig, overwrite: bool, command: str | None
) -> Manifest:
    """Checks the output folder and returns the manifest to continue from."""
    if directory.exists() and not directory.is_dir():
        raise BanditConfigError(f"output {str(directory)!r} exists and is not a folder")
    digest = config.hash()
    existing = _existing_manifest(directory, overwrite)
    kept = None
    if existing is not None and existing.config_hash != digest and not overwrite:
        kept = unchanged_agents(existing.config, config.canonical())
    if existing is not None and existing.config_hash == digest and not overwrite:
        current = existing
    elif existing is not None and kept is not None:
        # Only files that agents start from changed: their series run again.
        current = existing.replace(
            config_hash=digest,
            config=config.canonical(),
            agents=tuple(e for e in existing.agents if e.agent_label in kept),
            failed=(),
        )
    else:
        if not overwrite:
            _refuse_foreign(directory, existing, digest)
        _clear_results(directory, existing)
        current = Manifest(config_hash=digest, config=config.canonical(), created=now())
    current = current.replace(
        title=config.name,
        updated=now(),
        setup=_setup(config),
        commands=_commands(directory, command),
        machine=report.machine_info(),
    )
    directory.mkdir(parents=True, exist_ok=True)
    text = config.text if config.text is not None else config.to_toml()
    storage.atomic_write_text(directory / CONFIG_COPY, text)
    current = manifest.record(directory, current, CONFIG_COPY)
    manifest.write(directory, current)
    return current


def _existing_manifest(directory: Path, overwrite: bool) -> Manifest | None:
    """The folder's manifest; None without one. An unreadable or damaged one is
    refused (naming the fault), or with `overwrite` treated as empty."""
    if not manifest.exists(directory):
        return None
    try:
        return manifest.read(directory)
    except BanditConfigError as err:
        if overwrite:
            return Manifest()
        raise BanditConfigError(
            f"output folder {str(directory)!r} holds a manifest that cannot be used "
            f"({err}); nothing was changed. Pass --overwrite to replace the results"
        ) from None


def _refuse_foreign(directory: Path, existing: Manifest | None, digest: str) -> None:
    if existing is not None:
        theirs = (existing.config_hash or "unknown")[:12]
        raise BanditConfigError(
            f"output folder {str(directory)!r} holds results of a different config "
            f"(config hash {theirs}, this config {digest[:12]}); nothing was changed. "
            "Choose another --out, or pass --overwrite to replace them"
        )
    if directory.is_dir() and any(
        f.name != lock.LOCK_FILE for f in directory.iterdir()
    ):
        raise BanditConfigError(
            f"output folder {str(directory)!r} is not empty and holds no bandits "
            f"results ({storage.MANIFEST}); nothing was changed. Choose an empty or "
            "new folder, or pass --overwrite to write into it"
        )


def _written(folder: Folder, files: report.ReportFiles) -> tuple[str, ...]:
    """Every file of the folder a run wrote (relative paths), for the manifest."""
    root = folder.directory.resolve()
    names = [CONFIG_COPY, storage.SUMMARIES]
    names += [e.curves for e in folder.manifest.agents]
    names += [
        str(Path(p).resolve().relative_to(root))
        for p in (files.html, files.markdown, *files.images)
    ]
    return tuple(dict.fromkeys(names))


def _clear_results(directory: Path, existing: Manifest | None) -> None:
    """Removes what earlier runs wrote into `directory`, and nothing else: the
    files its manifest lists (or, for a manifest without that list, the series'
    curve files and the fixed names a run writes), the manifest, and chunk files
    that carry a run's metadata."""
    if not directory.is_dir():
        return
    if existing is not None and existing.files:
        paths = manifest.owned_paths(directory, existing)
    else:
        fixed = [storage.SUMMARIES, CONFIG_COPY, *report.FILES]
        curves = [e.curves for e in existing.agents] if existing else []
        paths = manifest.owned_paths(
            directory, Manifest(files=tuple(fixed + [c for c in curves if c]))
        )
    for path in paths:
        path.unlink(missing_ok=True)
    (directory / storage.MANIFEST).unlink(missing_ok=True)
    chunks = directory / storage.CHUNKS_DIR
    if chunks.is_dir():
        for file in chunks.glob("*.parquet"):
            try:
                storage.read_chunk_meta(file)
            except BanditConfigError:
                continue  # not a chunk of a run: not ours
            file.unlink()


def _setup(config: ExperimentConfig) -> dict[str, str]:
    params = ", ".join(f"{k}={v!r}" for k, v in config.env.params.items())
    seeds = config.run.seeds
    contiguous = seeds == tuple(range(len(seeds)))
    agents_ = []
    for a in config.agents:
        hyper = ", ".join(f"{k}={v!r}" for k, v in a.hyperparameters.items())
        agents_.append(f"{a.label} = {a.name}({hyper})")
    setup = {"Environment": f"{config.env.id}({params})"}
    if config.env.grid:
        setup["Env grid"] = "; ".join(
            f"{k} in {list(v)!r}" for k, v in config.env.grid.items()
        )
    setup.update(
        {
            "Horizon": str(config.run.horizon),
            "Seeds": f"{len(seeds)} ("
            + (f"0..{len(seeds) - 1}" if contiguous else ", ".join(map(str, seeds)))
            + f"), in chunks of {config.run.resolved_chunk_size}",
            "Problem instance": "fresh per seed"
            if config.run.resample_params
            else "the env's default instance, shared by all seeds",
            "Agents": "; ".join(agents_),
            "Config hash": config.hash()[:12],
        }
    )
    if config.run.seed_key == "direct":
        setup["Seed keys"] = "each seed's key is its run's key (seed_key = direct)"
    return setup


def _commands(directory: Path, command: str | None) -> dict[str, str]:
    out = shlex.quote(str(directory))
    copy = shlex.quote(str(directory / CONFIG_COPY))
    commands = {}
    if command:
        commands["The command that produced these results"] = command
    commands["Recompute every chunk from the stored config"] = (
        f"bandits run {copy} --out {out} --overwrite"
    )
    commands["Re-render this report from the stored results"] = f"bandits report {out}"
    return commands


def _rate(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    return f"{value / 1e3:.0f}k" if value >= 1e4 else f"{value:.0f}"
