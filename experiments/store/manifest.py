"""The typed manifest of a results folder (`manifest.json`).

One definition shared by the writer (the runner) and the readers (the report,
`bandits compare`): a field renamed here is renamed for all of them, and a
reader sees typed attributes, not keys it has to know.

    Manifest                      what ran, on what, with which config
      .agents: SeriesEntry, ...   one per finished series (agent x env setting)
      .last_run                   what the latest `bandits run` computed
      .files                      every file the runs wrote
      .checksums: Checksum, ...   size and SHA-256 of each stored result file
      .failed: FailedSeries, ...  series whose agent state became NaN/inf in
                                  the latest run (not stored; a rerun retries)

Stored result files (the config copy, `summaries.jsonl`, the curve files) get
their size and SHA-256 recorded when they are written (`record`); a rerun and the
report check them (`damage`) before trusting a file, so damage that still reads
back (a flipped byte in a number) is caught. Report pages and plots are rendered
anew by every run and `bandits report` and carry no checksum.

Folders written by earlier versions, or by hand, read with defaults for the
fields they lack; a manifest that is not a JSON object is an error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from bandits.validation import BanditConfigError
from experiments.store import storage

FORMAT = "bandits-results/2"


@dataclasses.dataclass(frozen=True)
class Cost:
    """Compute cost of one series, summed or maxed over its chunks."""

    compile_time_s: float | None = None
    """Longest compile of one chunk (the first chunk of a program compiles)."""
    compile_time_total_s: float | None = None
    run_time_s: float | None = None
    wall_time_s: float | None = None
    rounds_per_s: float | None = None
    peak_memory_bytes: int | None = None
    memory_increase_bytes: int | None = None

    @classmethod
    def of_chunks(cls, costs: Sequence[Mapping[str, Any]]) -> Cost:
        """The series' cost from the per-chunk costs the tasks report."""
        run_s = sum(c["run_s"] for c in costs)
        rounds = sum(c["rounds"] for c in costs)
        return cls(
            compile_time_s=max(c["compile_s"] for c in costs),
            compile_time_total_s=sum(c["compile_s"] for c in costs),
            run_time_s=run_s,
            wall_time_s=sum(c["wall_s"] for c in costs),
            rounds_per_s=rounds / run_s if run_s > 0 else None,
            peak_memory_bytes=max(c["peak_memory_bytes"] for c in costs),
            memory_increase_bytes=max(c["memory_increase_bytes"] for c in costs),
        )


COST_FIELDS = tuple(f.name for f in dataclasses.fields(Cost))


@dataclasses.dataclass(frozen=True)
class Checksum:
    """What a stored file held when it was written."""

    size: int
    """Bytes."""
    sha256: str
    """SHA-256 hex digest of the content."""

    @classmethod
    def of(cls, path: str | Path) -> Checksum:
        return cls(*storage.file_checksum(path))

    @classmethod
    def from_json(cls, raw: Any, where: str) -> Checksum:
        """Raises `BanditConfigError` for anything but {"size": int, "sha256": hex}."""
        if not isinstance(raw, Mapping):
            raise BanditConfigError(f"{where} must be a JSON object")
        _expect(raw, where, "size", int, required=True)
        _expect(raw, where, "sha256", str, required=True)
        digest = raw["sha256"]
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise BanditConfigError(
                f"{where}.sha256 must be 64 lowercase hex digits: the manifest was "
                "edited or damaged"
            )
        return cls(size=raw["size"], sha256=digest)


@dataclasses.dataclass(frozen=True)
class FailedSeries:
    """A series (a grid point) whose agent state became NaN or infinite."""

    label: str
    chunk: int = 0
    """The seed chunk in which it failed."""
    seed: int | None = None
    """The first seed whose final state was not finite (None: unknown)."""
    step: int | None = None
    """The 0-based step whose update first left a NaN or inf in that seed's
    state (None: a re-run did not show it)."""
    seeds: tuple[int, ...] = ()
    """Every seed of the chunk whose state was not finite."""

    def describe(self) -> str:
        """E.g. "seed 3, step 17 (seeds [3, 5] of chunk 0)"."""
        seed = "an unknown seed" if self.seed is None else f"seed {self.seed}"
        step = "an unknown step" if self.step is None else f"step {self.step}"
        seeds = list(self.seeds[:10]) + (["..."] if len(self.seeds) > 10 else [])
        shown = ", ".join(map(str, seeds))
        return f"{seed}, {step} (seeds [{shown}] of chunk {self.chunk})"

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["seeds"] = list(self.seeds)
        return out

    @classmethod
    def from_json(cls, raw: Any, where: str) -> FailedSeries:
        if not isinstance(raw, Mapping):
            raise BanditConfigError(f"{where} must be a JSON object")
        _expect(raw, where, "label", str, required=True)
        for key, kind in _FAILED_TYPES.items():
            _expect(raw, where, key, kind)
        seeds = raw.get("seeds") or []
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise BanditConfigError(f"{where}.seeds must be a list of integers")
        return cls(
            label=raw["label"],
            chunk=raw.get("chunk", 0),
            seed=raw.get("seed"),
            step=raw.get("step"),
            seeds=tuple(seeds),
        )


_FAILED_TYPES: dict[str, Any] = {
    "chunk": int,
    "seed": (int, type(None)),
    "step": (int, type(None)),
    "seeds": list,
}


@dataclasses.dataclass(frozen=True)
class SeriesEntry:
    """One finished series: an agent (a grid point of it) on one env setting."""

    label: str
    """Unique series label (agent label, plus the env setting in an env grid)."""
    name: str = ""
    """Registry name of the agent."""
    agent_label: str = ""
    """The agent's label (without the env setting)."""
    base_label: str = ""
    """The label of its `[[agents]]` table (without grid values)."""
    entry: int | None = None
    """Index of its `[[agents]]` table."""
    setting: str = ""
    """Env setting label ("" without an env grid)."""
    setting_index: int = 0
    grid: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Agent grid values of this series."""
    env_grid: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Env grid values of this series."""
    hyperparameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Every argument the agent was built with."""
    program: str = "run"
    """"run", or "sweep xG" for a traced sweep."""
    curves: str = ""
    """The merged curve file, relative to the folder."""
    finished: str = ""
    chunks: int = 0
    cost: Cost = Cost()
    prediction: Mapping[str, Any] | None = None
    """Reward-model metrics (`reward_type`, `contexts`, `metrics`), if evaluated."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "cost":
                out.update(dataclasses.asdict(value))
            elif field.name == "prediction":
                if value is not None:
                    out["prediction"] = dict(value)
            else:
                out[field.name] = dict(value) if isinstance(value, Mapping) else value
        return out

    def summary_fields(self) -> dict[str, Any]:
        """What the series' summary line in `summaries.jsonl` repeats."""
        return {k: v for k, v in self.to_json().items() if k not in ("label", "curves")}

    @classmethod
    def from_json(cls, raw: Any, where: str = "entry") -> SeriesEntry:
        """The entry; fields it lacks take their defaults.

        Raises:
          BanditConfigError: not an object, no label, or a field of the wrong
            type (a hand-edited manifest), naming the field.
        """
        if not isinstance(raw, Mapping):
            raise BanditConfigError(f"{where} must be a JSON object")
        _expect(raw, where, "label", str, required=True)
        for key, kind in _ENTRY_TYPES.items():
            _expect(raw, where, key, kind)
        known = {f.name for f in dataclasses.fields(cls)} - {"cost"}
        kwargs = {k: raw[k] for k in known if k in raw}
        kwargs["cost"] = Cost(**{k: raw[k] for k in COST_FIELDS if k in raw})
        return cls(**kwargs)


_NUMBER = (int, float)
_ENTRY_TYPES: dict[str, Any] = {
    "name": str,
    "agent_label": str,
    "base_label": str,
    "entry": (int, type(None)),
    "setting": str,
    "setting_index": int,
    "grid": Mapping,
    "env_grid": Mapping,
    "hyperparameters": Mapping,
    "program": str,
    "curves": str,
    "finished": str,
    "chunks": int,
    "prediction": (Mapping, type(None)),
    **{k: (*_NUMBER, type(None)) for k in COST_FIELDS},
}
_MANIFEST_TYPES: dict[str, Any] = {
    "config_hash": str,
    "config": Mapping,
    "title": str,
    "format": str,
    "created": str,
    "updated": str,
    "agents": list,
    "setup": Mapping,
    "commands": Mapping,
    "machine": Mapping,
    "last_run": (Mapping, type(None)),
    "files": list,
    "checksums": Mapping,
    "failed": list,
}


def _expect(
    raw: Mapping[str, Any], where: str, key: str, kind: Any, required: bool = False
) -> None:
    if key not in raw:
        if required:
            raise BanditConfigError(f"{where} has no {key!r}")
        return
    value = raw[key]
    if isinstance(value, bool) and kind is not bool and bool not in _tuple(kind):
        ok = False
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise BanditConfigError(
            f"{where}.{key} has the wrong type ({type(value).__name__}): "
            "the manifest was edited or damaged"
        )


def _tuple(kind: Any) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """`manifest.json`: the config, the finished series and how they were run."""

    config_hash: str = ""
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The canonical config (`ExperimentConfig.canonical()`)."""
    title: str = ""
    format: str = FORMAT
    created: str = ""
    updated: str = ""
    agents: tuple[SeriesEntry, ...] = ()
    setup: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """The report's setup lines (environment, horizon, seeds, agents)."""
    commands: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Commands that reproduce the folder, by what they do."""
    machine: Mapping[str, str] = dataclasses.field(default_factory=dict)
    last_run: Mapping[str, Any] | None = None
    files: tuple[str, ...] = ()
    """Every file the runs wrote, relative to the folder: what `--overwrite`
    and the report may delete (nothing else in the folder is touched)."""
    checksums: Mapping[str, Checksum] = dataclasses.field(default_factory=dict)
    """Stored result files (relative paths) -> their size and SHA-256 when
    written; older folders have none (their files are checked by reading them)."""
    failed: tuple[FailedSeries, ...] = ()
    """Series of the latest run whose agent state became NaN or inf."""

    @property
    def run(self) -> Mapping[str, Any]:
        """The config's `[run]` table ({} if unknown)."""
        run = self.config.get("run")
        return run if isinstance(run, Mapping) else {}

    @property
    def env(self) -> Mapping[str, Any] | None:
        env = self.config.get("env")
        return env if isinstance(env, Mapping) else None

    @property
    def horizon(self) -> int | None:
        return self.run.get("horizon")

    def entry(self, label: str) -> SeriesEntry | None:
        return next((e for e in self.agents if e.label == label), None)

    def replace(self, **changes: Any) -> Manifest:
        return dataclasses.replace(self, **changes)

    def with_entries(
        self, entries: Iterable[SeriesEntry], order: Mapping[str, int]
    ) -> Manifest:
        """The manifest listing `entries`, in the plan's series order."""
        ordered = sorted(entries, key=lambda e: order.get(e.label, len(order)))
        return dataclasses.replace(self, agents=tuple(ordered))

    def to_json(self) -> dict[str, Any]:
        out = {
            "format": self.format,
            "title": self.title,
            "config_hash": self.config_hash,
            "config": dict(self.config),
            "created": self.created,
            "agents": [e.to_json() for e in self.agents],
            "updated": self.updated,
            "setup": dict(self.setup),
            "commands": dict(self.commands),
            "machine": dict(self.machine),
        }
        if self.last_run is not None:
            out["last_run"] = dict(self.last_run)
        if self.files:
            out["files"] = list(self.files)
        if self.failed:
            out["failed"] = [f.to_json() for f in self.failed]
        if self.checksums:
            out["checksums"] = {
                name: dataclasses.asdict(check)
                for name, check in sorted(self.checksums.items())
            }
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], where: str = "manifest") -> Manifest:
        """The manifest; fields it lacks (older versions) take their defaults.

        Raises:
          BanditConfigError: a field of the wrong type, naming it.
        """
        for key, kind in _MANIFEST_TYPES.items():
            _expect(raw, where, key, kind)

        def table(key: str) -> dict[str, Any]:
            return dict(raw.get(key) or {})

        entries = [
            SeriesEntry.from_json(e, f"{where}.agents[{i}]")
            for i, e in enumerate(raw.get("agents") or [])
        ]
        last_run = raw.get("last_run")
        files = raw.get("files") or []
        for i, name in enumerate(files):
            if not isinstance(name, str):
                raise BanditConfigError(f"{where}.files[{i}] must be a string")
        checksums = {
            str(name): Checksum.from_json(check, f"{where}.checksums[{name!r}]")
            for name, check in (raw.get("checksums") or {}).items()
        }
        failed = tuple(
            FailedSeries.from_json(f, f"{where}.failed[{i}]")
            for i, f in enumerate(raw.get("failed") or [])
        )
        return cls(
            config_hash=str(raw.get("config_hash") or ""),
            config=table("config"),
            title=str(raw.get("title") or ""),
            format=str(raw.get("format") or FORMAT),
            created=str(raw.get("created") or ""),
            updated=str(raw.get("updated") or ""),
            agents=tuple(entries),
            setup=table("setup"),
            commands=table("commands"),
            machine=table("machine"),
            last_run=last_run,
            files=tuple(files),
            checksums=checksums,
            failed=failed,
        )


def owned_paths(directory: str | Path, manifest: Manifest) -> list[Path]:
    """The files the manifest lists, that lie inside `directory` (a listed path
    that leads outside it, by `..` or a link, is ignored)."""
    root = Path(directory).resolve()
    out = []
    for name in manifest.files:
        path = (root / name).resolve()
        if path.is_relative_to(root) and path != root:
            out.append(path)
    return out


def record(directory: str | Path, manifest: Manifest, *names: str) -> Manifest:
    """The manifest with the checksums of the files `names` (relative to
    `directory`) as they are now: call it right after writing them."""
    root = Path(directory)
    checks = {name: Checksum.of(root / name) for name in names}
    return dataclasses.replace(manifest, checksums={**manifest.checksums, **checks})


def damage(directory: str | Path, manifest: Manifest, name: str) -> str | None:
    """Why the stored file `name` is not what was written (missing, another
    size, another SHA-256), or None if it matches or no checksum was recorded
    (an older folder: the caller reads it back instead)."""
    check = manifest.checksums.get(name)
    if check is None:
        return None
    path = Path(directory) / name
    if not path.is_file():
        return f"{name} is missing"
    size, digest = storage.file_checksum(path)
    if size != check.size:
        return f"{name} has {size} bytes, {check.size} were written"
    if digest != check.sha256:
        return f"{name} does not hold what was written (its SHA-256 differs)"
    return None


def read_series_curves(directory: str | Path, stored: Manifest) -> dict[str, Any]:
    """`{label: Curves}` of the finished series, each from the file its entry
    names (other files in `curves/` are not read); series whose file is missing
    are left out.

    Raises:
      BanditConfigError: a curve file is damaged (its size or checksum differs
        from the manifest's, or it does not read back), naming it.
    """
    root = Path(directory)
    out = {}
    for entry in stored.agents:
        path = root / entry.curves
        if not entry.curves or not path.is_file():
            continue
        problem = damage(root, stored, entry.curves)
        if problem is None:
            try:
                curves = storage.read_curves(path)
            except (BanditConfigError, OSError, ValueError, pa.ArrowException) as err:
                problem = f"{entry.curves} does not read back ({err})"
        if problem is not None:
            raise BanditConfigError(
                f"series {entry.label!r}: {problem}; rerun `bandits run` with the "
                "same config and --out to recompute it"
            )
        if entry.label in curves:
            out[entry.label] = curves[entry.label]
    return out


def read(directory: str | Path) -> Manifest:
    """The manifest of a results folder.

    Raises:
      BanditConfigError: no manifest, not a readable JSON object, or a field of
        the wrong type.
    """
    where = str(Path(directory) / storage.MANIFEST)
    return Manifest.from_json(storage.read_manifest(directory), where)


def write(directory: str | Path, manifest: Manifest) -> Path:
    """Writes `manifest.json` into a results folder, atomically."""
    return storage.write_manifest(directory, manifest.to_json())


def exists(directory: str | Path) -> bool:
    return (Path(directory) / storage.MANIFEST).is_file()
