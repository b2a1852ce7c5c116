"""Studies whose unit of work is a cell: planned, run on the executors, stored, resumed.

A regret experiment (`experiments.execute.runner`) stores curves per series.
Some studies measure something else: the off-policy estimator benchmark scores
every estimator over many log replicates per (env, target, logger, log size).
Its unit of work is that *cell*, and a cell's result is a list of records
(plain JSON objects, one table row each). This module gives such a study what
the platform gives a regret experiment:

  * the cells run as tasks on the same executors (single-device local worker
    processes, one per core or `--workers`, or a Dask cluster), through
    `experiments.execute.tasks.execute_task`, side by side;
  * each finished cell is stored at once, atomically, as `cells/<name>.json`:
    its spec (everything that determines its numbers), its records, its cost
    and a SHA-256 of spec and records; a killed run loses only the cells in
    flight, and of those only the part not kept in their scratch space
    (`scratch()`: the OPE benchmark keeps each finished group of replicates);
  * a rerun reuses a stored cell only if its spec is the one planned now; a cell
    file that cannot be read, fails its checksum or was computed from another
    spec (a changed setting, a changed checkpoint file) is computed again;
  * cells of other configs stay in the folder, so a folder can gather a study
    run in parts (other log sizes, another target config, several commands at
    once: each writes its own cells);
  * then, under the folder's lock, the records of every stored cell (by name)
    go to `results.jsonl` and the study renders its report from them.

A study is a module named in `STUDIES` with four functions:

  * `read(data)`: the study config from a TOML document (checked; raises
    `BanditConfigError` naming the field);
  * `cells(study)`: the `Cell`s it plans, each a name and a plain spec;
  * `run_cell(spec)`: the records of one cell (called in a worker);
  * `report(records, out)`: writes the study's report files into `out` and
    returns their paths;
  * optionally `describe(records)`: a short line on a finished cell for the
    progress display.

Only the names in `STUDIES` are imported: the study name comes from a config,
and a config never names code to load.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import importlib
import io
import json
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import rich.markup
from rich.console import Console

from bandits.validation import BanditConfigError
from experiments.execute.executors import Executor, LocalExecutor, RunFailedError
from experiments.execute.progress import CompileClock, PeakMemory, chunk_progress
from experiments.execute.tasks import CELL_TASK
from experiments.store import lock, storage

STUDIES = {
    "ope_benchmark": "experiments.studies.ope_benchmark",
    "obd_ope": "experiments.studies.obd_ope",
    "ridge_numerics": "experiments.studies.ridge_numerics",
}
"""Study name -> the module that implements it."""

PIPELINES = {
    "in_context": "experiments.studies.in_context",
    "pretrain_finetune": "experiments.studies.pretrain_finetune",
}
"""Studies with a stage of their own before their platform runs (pretraining
on generated logs or problem instances), named by `study = "..."` in their
configs: study name -> module. The module's `run_config(source, out, *,
executor, overwrite, progress, chunk_size)` does what its `python -m` command
does with the config as it is (reusing what the folder holds; `chunk_size`
replaces `run.chunk_size` where given), its platform runs on `executor`, and
returns the exit status."""

CELLS_DIR = "cells"
RECORDS = "results.jsonl"
STUDY_FILE = "study.json"
CELL_FORMAT = 1
LOCK_WAIT_S = 120.0
"""How long the final write waits for another command that holds the folder."""


@dataclasses.dataclass(frozen=True)
class Cell:
    """One unit of a study's work."""

    name: str
    """Readable and unique within the study; names the stored file."""
    spec: Mapping[str, Any]
    """Plain JSON data: everything `run_cell` needs, and nothing else."""


@dataclasses.dataclass(frozen=True)
class CellsResult:
    """Where the results are, and what this call computed."""

    output: Path
    computed: tuple[str, ...]
    reused: tuple[str, ...]
    records: tuple[dict[str, Any], ...]
    files: tuple[Path, ...]


def study_module(name: str) -> ModuleType:
    """The module of study `name` (one of `STUDIES`)."""
    if name not in STUDIES:
        every = sorted({*STUDIES, *PIPELINES})
        raise BanditConfigError.about("study", f"must be one of {every}, got {name!r}")
    return importlib.import_module(STUDIES[name])


def pipeline_module(name: str) -> ModuleType:
    """The module of pipeline study `name` (one of `PIPELINES`)."""
    if name not in PIPELINES:
        raise BanditConfigError.about(
            "study", f"must be one of {sorted(PIPELINES)}, got {name!r}"
        )
    return importlib.import_module(PIPELINES[name])


def digest(spec: Mapping[str, Any]) -> str:
    """SHA-256 of a spec's canonical JSON (sorted keys)."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def file_name(name: str) -> str:
    """The stored file of cell `name`: its name made safe for any file system,
    plus a short digest of the exact name (two names never share a file)."""
    safe = re.sub(r"[^A-Za-z0-9._=-]+", "-", name).strip("-")[:120]
    return f"{safe}--{hashlib.sha256(name.encode()).hexdigest()[:8]}.json"


# ---------------------------------------------------------------------------
# Running


def run_cells(
    study: str,
    config: Any,
    out: str | Path,
    *,
    executor: Executor | None = None,
    overwrite: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> CellsResult:
    """Computes every planned cell of `config` that `out` does not hold yet,
    stores each as it finishes, then writes `results.jsonl` and the report.

    Args:
      study: a name in `STUDIES`.
      config: the study's config (its module's `read`).
      out: the results folder.
      executor: where cells run (default `LocalExecutor()`).
      overwrite: remove the stored cells of the folder first, and take a folder
        that holds another study's results.
      progress: show a rich progress display.
      console: where progress goes (default: stderr).

    Raises:
      BanditConfigError: `out` holds another study's or another kind of
        results (without `overwrite`), cannot be written, or the executor cannot
        run; raised before any compute starts.
    """
    module = study_module(study)
    planned = list(module.cells(config))
    names = [c.name for c in planned]
    if len(set(names)) != len(names):
        raise BanditConfigError(f"study {study!r} planned two cells of one name")
    directory = Path(out)
    executor = executor or LocalExecutor()
    executor.check()
    _prepare(directory, study, overwrite)
    stored = {c.name for c in planned if stored_cell(directory, c) is not None}
    pending = [c for c in planned if c.name not in stored]
    for cell in planned:  # a run killed between storing a cell and this cleanup
        if cell.name in stored:
            shutil.rmtree(scratch_folder(directory, cell), ignore_errors=True)
    computed = _run(module, study, pending, directory, executor, progress, console)
    records, files = _write_results(module, directory, names)
    return CellsResult(
        directory,
        tuple(computed),
        tuple(c.name for c in planned if c.name in stored),
        tuple(records),
        files,
    )


def _write_results(
    module: ModuleType, directory: Path, first: Sequence[str] = ()
) -> tuple[tuple[dict[str, Any], ...], tuple[Path, ...]]:
    """`results.jsonl` and the study's report from every cell in the folder
    (`first` in that order, then the others by name), under its lock."""
    with _locked(directory):
        records = all_records(directory, first=first)
        lines = "".join(json.dumps(r) + "\n" for r in records)
        storage.atomic_write_text(directory / RECORDS, lines)
        files = tuple(module.report(records, directory))
    return tuple(records), files


def is_study_folder(directory: Path) -> bool:
    """Whether `directory` holds a study's cells (its `study.json`)."""
    return (directory / STUDY_FILE).is_file()


def render(directory: Path) -> tuple[Path, ...]:
    """Rewrites `results.jsonl` and the report of a study's folder from its
    stored cells (`bandits report DIR`); returns the files written."""
    study = _study_of(directory / STUDY_FILE)
    if study not in STUDIES:
        raise BanditConfigError(
            f"{str(directory / STUDY_FILE)!r} names study {study!r}, not one of "
            f"{sorted(STUDIES)}"
        )
    if not all_records(directory):
        raise BanditConfigError(f"results folder {str(directory)!r} holds no cells")
    _, files = _write_results(study_module(study), directory)
    return (directory / RECORDS, *files)


def command(
    study: str, config: Any, out: str | Path, workers: int | None, quiet: bool
) -> CellsResult | int:
    """`run_cells` for a study's command line: the result, or the exit status
    after one `error:` line (2: a bad config or folder; 1: the run failed, what
    finished is stored; 130: interrupted)."""
    try:
        return run_cells(
            study, config, out, executor=LocalExecutor(workers), progress=not quiet
        )
    except BanditConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (RunFailedError, OSError) as err:
        print(f"error: {err}; finished cells are stored, rerun to resume",
              file=sys.stderr)  # fmt: skip
        return 1
    except KeyboardInterrupt:
        print("interrupted; finished cells are stored, rerun to resume",
              file=sys.stderr)  # fmt: skip
        return 130


def _run(
    module: ModuleType,
    study: str,
    pending: Sequence[Cell],
    directory: Path,
    executor: Executor,
    progress: bool,
    console: Console | None,
) -> list[str]:
    specs = [
        {
            "kind": CELL_TASK,
            "study": study,
            "task": c.name,
            "spec": dict(c.spec),
            "scratch": str(scratch_folder(directory.resolve(), c)),
        }
        for c in pending
    ]
    computed: list[str] = []
    console = console or Console(stderr=True)
    with chunk_progress(console, enabled=progress) as bar:
        task_id = bar.add_task(
            rich.markup.escape(study),
            total=len(specs),
            detail=executor.describe(),
        )
        for done, (spec, result) in enumerate(executor.run(specs), 1):
            store_cell(directory, spec["task"], spec["spec"], result)
            shutil.rmtree(spec["scratch"], ignore_errors=True)
            computed.append(spec["task"])
            line = f"{spec['task']}: {result['cost']['wall_s']:.0f} s"
            if hasattr(module, "describe"):
                line += f", {module.describe(result['records'])}"
            if progress:
                bar.console.print(rich.markup.escape(line))
            bar.update(task_id, advance=1, detail=f"{len(specs) - done} left, {line}")
    return computed


def execute_cell(task: Mapping[str, Any]) -> dict[str, Any]:
    """Runs one cell in a worker: `{"task", "records", "cost", "worker"}`."""
    module = study_module(task["study"])
    start = time.perf_counter()
    folder = task.get("scratch")
    token = _SCRATCH.set(Scratch(Path(folder) if folder else None))
    try:
        with CompileClock() as clock, PeakMemory() as memory:
            records = [dict(r) for r in module.run_cell(task["spec"])]
    finally:
        _SCRATCH.reset(token)
    return {
        "task": task["task"],
        "records": records,
        "cost": {
            "wall_s": time.perf_counter() - start,
            "compile_s": clock.compile_s,
            "run_s": clock.run_s,
            "peak_memory_bytes": memory.peak_bytes,
        },
        "worker": {"host": platform.node(), "pid": os.getpid()},
    }


# ---------------------------------------------------------------------------
# Partial results of a cell in flight


class Scratch:
    """Where a running cell keeps what it has finished (say, each replicate's
    estimates), so that a cell killed half way resumes from there.

    Arrays are stored as `.npy` files (read back without pickle) in the cell's
    scratch folder, whose name carries the digest of the cell's spec: a changed
    spec never reads another's partial results. The folder is removed when the
    cell is stored. Without a folder (or one that cannot be written, as on a
    Dask worker that does not share the results folder) nothing is kept.
    """

    def __init__(self, folder: Path | None):
        self.folder = folder

    def get(self, key: str) -> np.ndarray | None:
        """The array saved under `key`, or None (also for an unreadable file)."""
        if self.folder is None:
            return None
        try:
            return np.load(self.folder / f"{key}.npy", allow_pickle=False)
        except (OSError, ValueError, EOFError):  # missing, cut short, not .npy
            return None

    def put(self, key: str, value: Any) -> None:
        """Saves `value` (an array) under `key`, atomically; best effort."""
        if self.folder is None:
            return
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(value), allow_pickle=False)
        try:
            # Not its parents: a worker that does not share the results
            # folder (a Dask worker elsewhere) keeps nothing.
            self.folder.mkdir(exist_ok=True)
            storage.atomic_write_bytes(self.folder / f"{key}.npy", buffer.getvalue())
        except OSError:
            self.folder = None


_SCRATCH: contextvars.ContextVar[Scratch | None] = contextvars.ContextVar(
    "cell_scratch", default=None
)


def scratch() -> Scratch:
    """The scratch space of the cell this worker is running (`Scratch(None)`
    outside a cell: nothing kept)."""
    return _SCRATCH.get() or Scratch(None)


def scratch_folder(directory: Path, cell: Cell) -> Path:
    """The scratch folder of `cell` in a results folder."""
    stem = file_name(cell.name).removesuffix(".json")
    return directory / CELLS_DIR / f"{stem}.{digest(cell.spec)[:16]}.partial"


# ---------------------------------------------------------------------------
# Storage


def store_cell(
    directory: Path, name: str, spec: Mapping[str, Any], result: Mapping[str, Any]
) -> Path:
    """Writes one finished cell, atomically."""
    body = {"spec": spec, "records": result["records"]}
    cell = {
        "format": CELL_FORMAT,
        "name": name,
        **body,
        "checksum": digest(body),
        "cost": result.get("cost"),
        "worker": result.get("worker"),
    }
    text = json.dumps(cell, indent=1, sort_keys=False)
    path = directory / CELLS_DIR / file_name(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return storage.atomic_write_text(path, text + "\n")


def read_cell(path: Path) -> dict[str, Any] | None:
    """A stored cell, or None if the file is unreadable, damaged (its checksum
    does not match) or of another format."""
    try:
        cell = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(cell, dict) or cell.get("format") != CELL_FORMAT:
        return None
    body = {"spec": cell.get("spec"), "records": cell.get("records")}
    if not isinstance(body["records"], list) or cell.get("checksum") != digest(body):
        return None
    return cell


def stored_cell(directory: Path, cell: Cell) -> dict[str, Any] | None:
    """The stored result of `cell` if the folder holds it intact and computed
    from the same spec; else None (the cell is computed again)."""
    stored = read_cell(directory / CELLS_DIR / file_name(cell.name))
    if stored is None or stored["name"] != cell.name:
        return None
    if digest(stored["spec"]) != digest(cell.spec):
        return None
    return stored


def all_records(directory: Path, first: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The records of every intact cell stored in the folder: the cells named
    in `first` in that order (the plan's), then the others by name."""
    folder = directory / CELLS_DIR
    paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
    cells = [c for c in map(read_cell, paths) if c is not None]
    rank = {name: i for i, name in enumerate(first)}
    cells.sort(key=lambda c: (rank.get(c["name"], len(rank)), c["name"]))
    return [r for c in cells for r in c["records"]]


# ---------------------------------------------------------------------------
# The folder


def _prepare(directory: Path, study: str, overwrite: bool) -> None:
    """Checks that `directory` is (or can become) this study's folder, before
    any compute; with `overwrite`, removes the cells and files a study wrote."""
    if directory.exists() and not directory.is_dir():
        raise BanditConfigError(f"output {str(directory)!r} exists and is not a folder")
    if (directory / storage.MANIFEST).exists():  # even with --overwrite
        raise BanditConfigError(
            f"output folder {str(directory)!r} holds the results of a regret "
            f"experiment ({storage.MANIFEST}); nothing was changed. Choose another "
            "--out"
        )
    marker = directory / STUDY_FILE
    if (
        not overwrite
        and not marker.exists()
        and (directory / RECORDS).exists()
        and not (directory / CELLS_DIR).exists()
    ):
        raise BanditConfigError(
            f"output folder {str(directory)!r} holds a {RECORDS} of an earlier "
            f"version of the study (no {CELLS_DIR}/ beside it), which this run "
            "would replace; nothing was changed. Choose another --out, move the "
            "file away, or pass --overwrite"
        )
    theirs = _study_of(marker)
    if theirs not in (None, study) and not overwrite:
        raise BanditConfigError(
            f"output folder {str(directory)!r} holds results of study {theirs!r}, "
            f"not {study!r}; nothing was changed. Choose another --out, or pass "
            "--overwrite to replace them"
        )
    with _locked(directory):
        if overwrite:
            cells = directory / CELLS_DIR
            for path in cells.glob("*.json") if cells.is_dir() else ():
                path.unlink()
            for path in cells.glob("*.partial") if cells.is_dir() else ():
                shutil.rmtree(path, ignore_errors=True)
            (directory / RECORDS).unlink(missing_ok=True)
        storage.write_json(marker, {"study": study, "format": CELL_FORMAT})
        (directory / CELLS_DIR).mkdir(exist_ok=True)


def _study_of(marker: Path) -> str | None:
    if not marker.exists():
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        return str(data["study"])
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown (an unreadable study.json)"


def _locked(directory: Path) -> Any:
    """The folder's lock, waiting up to `LOCK_WAIT_S` for another command."""
    return lock.exclusive(directory, wait_s=LOCK_WAIT_S)
