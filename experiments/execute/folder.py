"""A results folder as the runner's plan sees it (`Folder`): which tasks are
stored, and adding the finished ones (chunk files as they arrive; when a series
is complete, its merged curves, summary lines and manifest entry, then its chunk
files are removed). `experiments.execute.runner` drives it."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from bandits.validation import BanditConfigError
from experiments.config.loader import ExperimentConfig
from experiments.execute import evaluation
from experiments.execute.tasks import curves_from_result
from experiments.plan.planner import Plan, Series, Task
from experiments.store import manifest, storage
from experiments.store.manifest import Cost, FailedSeries, Manifest, SeriesEntry

CONFIDENCE = 0.95


class Folder:
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
        ).replace(updated=now(), **changes)
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
        finished=now(),
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


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
