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
import datetime
import shlex
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import rich.markup
from rich.console import Console

from bandits.simulation import NonFiniteAgentStateError
from bandits.validation import BanditConfigError
from experiments.config.loader import ExperimentConfig, build
from experiments.config.start import unchanged_agents
from experiments.execute import evaluation
from experiments.execute.executors import Executor, LocalExecutor, cpu_count
from experiments.execute.progress import chunk_progress
from experiments.execute.tasks import curves_from_result
from experiments.plan import resources
from experiments.plan.planner import Plan, Series, Task, plan
from experiments.report import render as report
from experiments.store import lock, manifest, storage
from experiments.store.manifest import Cost, FailedSeries, Manifest, SeriesEntry

CONFIG_COPY = "config.toml"
CONFIDENCE = 0.95


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
        worker process per core).

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
        parallel = min(executor.workers or cpu_count(), len(the_plan.tasks))
        resources.check_memory(experiment, max(parallel, 1))
    directory = output_dir(config, out)
    if directory.exists() and not directory.is_dir():
        raise BanditConfigError(f"output {str(directory)!r} exists and is not a folder")
    with lock.exclusive(directory, command):
        folder = _Folder(
            directory, config, the_plan, _prepare(directory, config, overwrite, command)
        )
        return _run_folder(folder, executor, progress, console)


def _run_folder(
    folder: _Folder, executor: Executor, progress: bool, console: Console | None
) -> ExperimentResult:
    """Runs what the folder lacks, stores it, renders the report (folder locked)."""
    the_plan, config, directory = folder.plan, folder.config, folder.directory
    pending = [t for t in the_plan.tasks if not folder.task_done(t)]
    reused = tuple(folder.stored_chunk_names())
    started, clock = _now(), time.perf_counter()
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
            "finished": _now(),
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


def _run_tasks(
    title: str,
    the_plan: Plan,
    pending: list[Task],
    folder: _Folder,
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
# Stored state of a results folder


class _Folder:
    """A results folder as the plan sees it: which tasks are stored, and adding
    finished ones (chunk files, then merged series, summaries and manifest)."""

    def __init__(
        self, directory: Path, config: ExperimentConfig, the_plan: Plan, m: Manifest
    ):
        self.directory = directory
        self.config = config
        self.plan = the_plan
        self.digest = m.config_hash
        self.chunks = directory / storage.CHUNKS_DIR
        self.order = {s.label: s.index for s in the_plan.series}
        # A finished series counts only if its curve file matches its checksum
        # and reads back; a missing or damaged one is recomputed.
        stored = {
            e.label: (e, _read_series(directory, m, e))
            for e in m.agents
            if e.label in self.order
        }
        self.finished = {k: e for k, (e, c) in stored.items() if c is not None}
        self.failures: dict[str, FailedSeries] = {}
        self.manifest = m.with_entries(self.finished.values(), self.order)
        self.records = _kept_records(directory, m, self.finished)
        self._rebuild_missing_records({k: c for k, (_, c) in stored.items() if c})
        self._remove_stale_files()

    def _rebuild_missing_records(self, curves: Mapping[str, storage.Curves]) -> None:
        """Summary lines of finished series that `summaries.jsonl` lacks (deleted,
        damaged or cut short), rebuilt from their curves: the same lines the
        merge wrote."""
        have = {r.get("agent") for r in self.records if r.get("kind") == "agent"}
        missing = [label for label in self.finished if label not in have]
        if not missing:
            return
        self.records[:] = [r for r in self.records if r.get("agent") not in missing]
        for label in missing:
            entry = self.finished[label]
            slate = storage.read_slate(self.directory / entry.curves)
            self.records += _series_records(entry, curves[label], slate)
        self.records[:] = storage.ordered_records(self.records, self.order)
        storage.write_summaries(self.directory / storage.SUMMARIES, self.records)
        self.manifest = manifest.record(
            self.directory, self.manifest, storage.SUMMARIES
        )

    def _remove_stale_files(self) -> None:
        """Temporary files of a killed write, and chunks this plan does not use."""
        storage.remove_temporary_files(
            (self.directory, self.chunks, self.directory / storage.CURVES_DIR)
        )
        if not self.chunks.is_dir():
            return
        wanted = {f for t in self.plan.tasks for f in t.files}
        for file in self.chunks.glob("*.parquet"):
            if file.name not in wanted or not storage.chunk_matches(file, self.digest):
                file.unlink()

    def series_done(self, series: Series) -> bool:
        return series.label in self.finished

    def task_done(self, task: Task) -> bool:
        program = self.plan.programs[task.program]
        return all(
            self.series_done(self.plan.series[s]) or (self.chunks / f).is_file()
            for s, f in zip(program.series, task.files, strict=True)
        )

    def stored_chunk_names(self) -> list[str]:
        """Chunk names already stored, counting merged series in full."""
        names = []
        for series in self.plan.series:
            for name in self.plan.chunk_files(series.index):
                if self.series_done(series) or (self.chunks / name).is_file():
                    names.append(name)
        return names

    def store_task(self, task: Task, result: Mapping[str, Any]) -> list[str]:
        """Writes the chunk files of a finished task, then merges whole series;
        returns the chunk files written. A series the task reports as failed
        (non-finite agent state) is recorded in `failures`, not stored."""
        program = self.plan.programs[task.program]
        seeds = self.plan.chunks[task.chunk]
        written = []
        for s, name, out in zip(
            program.series, task.files, result["series"], strict=True
        ):
            series = self.plan.series[s]
            if out["label"] != series.label:
                raise RuntimeError(
                    f"task {task.key} returned {out['label']!r} for {series.label!r}"
                )
            if out.get("failed") is not None:
                failure = out["failed"]
                self.failures.setdefault(
                    series.label,
                    FailedSeries(
                        label=series.label,
                        chunk=task.chunk,
                        seed=failure["seed"],
                        step=failure["step"],
                        seeds=tuple(failure["seeds"]),
                    ),
                )
                continue
            if self.series_done(series):
                continue  # merged before (the task ran again for a failed one)
            meta = {
                "config_hash": self.digest,
                "task": task.key,
                "series": series.index,
                "chunk": task.chunk,
                "seeds": list(seeds),
                "cost": result["cost"],
                "prediction": out["prediction"],
                "worker": result.get("worker", {}),
            }
            if out.get("slate") is not None:
                meta["slate"] = out["slate"]
            storage.write_curves(
                self.chunks / name, series.label, curves_from_result(out), meta
            )
            written.append(name)
        for s in program.series:
            self.finalize(self.plan.series[s])
        return written

    def finalize_all(self) -> None:
        for series in self.plan.series:
            self.finalize(series)

    def finalize(self, series: Series) -> None:
        """Merges a series whose chunks are all stored (no-op otherwise)."""
        if self.series_done(series):
            return
        files = [self.chunks / f for f in self.plan.chunk_files(series.index)]
        if not all(f.is_file() for f in files):
            return
        parts, metas = zip(*(storage.read_chunk(f) for f in files), strict=True)
        curves = storage.concat_curves(parts)
        slate = storage.concat_slates([m.get("slate") for m in metas])
        file_name = storage.curve_file_name(series.index, series.label)
        curves_name = f"{storage.CURVES_DIR}/{file_name}"
        storage.write_curves(
            self.directory / curves_name, series.label, curves, slate=slate
        )
        entry = _series_entry(self.config, self.plan, series, curves_name, metas)
        self.records[:] = [r for r in self.records if r.get("agent") != series.label]
        self.records += _series_records(entry, curves, slate)
        self.records[:] = storage.ordered_records(self.records, self.order)
        storage.write_summaries(self.directory / storage.SUMMARIES, self.records)
        self.manifest = manifest.record(
            self.directory, self.manifest, curves_name, storage.SUMMARIES
        )
        self.finished[series.label] = entry
        self.save()
        for file in files:
            file.unlink(missing_ok=True)

    def save(self, **changes: Any) -> None:
        """Writes the manifest with the finished series (and `changes`)."""
        self.manifest = self.manifest.with_entries(
            self.finished.values(), self.order
        ).replace(updated=_now(), **changes)
        manifest.write(self.directory, self.manifest)


def _series_entry(
    config: ExperimentConfig,
    the_plan: Plan,
    series: Series,
    curves_name: str,
    metas: Sequence[Mapping[str, Any]],
) -> SeriesEntry:
    """The manifest entry of a series merged from its chunks' metadata."""
    agent = config.agents[series.agent]
    setting = config.settings[series.setting]
    program = the_plan.program_of(series.index)
    kwargs = {**program.kwargs, **{k: agent.hyperparameters[k] for k in program.swept}}
    prediction = [p for m in metas for p in (m.get("prediction") or [])]
    return SeriesEntry(
        label=series.label,
        name=agent.name,
        agent_label=agent.label,
        base_label=agent.base_label or agent.label,
        entry=agent.index,
        setting=setting.label,
        setting_index=setting.index,
        grid=dict(agent.grid_values),
        env_grid=dict(setting.values),
        hyperparameters=kwargs,
        program=program.kind,
        curves=curves_name,
        finished=_now(),
        chunks=len(metas),
        cost=Cost.of_chunks([m["cost"] for m in metas]),
        prediction={
            "reward_type": evaluation.reward_type(prediction),
            "contexts": config.run.prediction_contexts,
            "metrics": evaluation.aggregate(prediction, CONFIDENCE),
        }
        if prediction
        else None,
    )


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
        current = Manifest(
            config_hash=digest, config=config.canonical(), created=_now()
        )
    current = current.replace(
        title=config.name,
        updated=_now(),
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


def _written(folder: _Folder, files: report.ReportFiles) -> tuple[str, ...]:
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


def _kept_records(
    directory: Path, m: Manifest, done: Mapping[str, SeriesEntry]
) -> list[Mapping[str, Any]]:
    """Summary lines of finished series (lines of unfinished ones are dropped;
    none if the file is missing, unreadable or not what was written: they are
    rebuilt)."""
    path = directory / storage.SUMMARIES
    if not path.is_file() or not done:
        return []
    if manifest.damage(directory, m, storage.SUMMARIES) is not None:
        return []
    try:
        records = storage.read_summaries(path)
    except BanditConfigError:
        return []
    return [r for r in records if r.get("agent") in done]


def _read_series(
    directory: Path, m: Manifest, entry: SeriesEntry
) -> storage.Curves | None:
    """The stored curves of a finished series, or None if missing or damaged
    (another size or checksum than the manifest records, or unreadable)."""
    path = directory / entry.curves
    if not entry.curves or not path.is_file():
        return None
    if manifest.damage(directory, m, entry.curves) is not None:
        return None
    try:
        return storage.read_curves(path).get(entry.label)
    except (BanditConfigError, OSError, ValueError, pa.ArrowException):
        return None


def _series_records(
    entry: SeriesEntry,
    curves: storage.Curves,
    slate: Mapping[str, Any] | None = None,
) -> list[Mapping[str, Any]]:
    """A series' lines of `summaries.jsonl`: one per seed, then its summary; a
    slate series' lines also carry its slate summaries (`storage.slate_summary`)."""
    summary = storage.curve_summary(entry.label, curves, CONFIDENCE)
    seeds = storage.curve_seed_records(entry.label, curves)
    fields = entry.summary_fields()
    if slate is not None:
        seeds = [{**r, **storage.slate_seed_fields(slate, r["seed"])} for r in seeds]
        fields["slate"] = storage.slate_summary(slate, CONFIDENCE)
    return [*seeds, storage.summary_record(summary, CONFIDENCE, **fields)]


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


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _rate(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    return f"{value / 1e3:.0f}k" if value >= 1e4 else f"{value:.0f}"
