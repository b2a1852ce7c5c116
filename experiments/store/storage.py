"""Result storage: per-step curves in Parquet, summaries in JSON Lines, a manifest.

A results folder holds

    manifest.json          what was run (config, its hash, finished series, timings)
    summaries.jsonl        one line per (series, seed) and one aggregate line per series
    curves/NNN-label.parquet   per-step curves of one series (agent x env setting)
    chunks/NNNN-cCCCC.parquet  curves of one seed chunk of one series, while a run
                               is unfinished (merged into curves/ when complete)

Every file is written atomically (a temporary file in the same folder, then
`os.replace`), so a run that is killed leaves either the old file or the new one,
never half of one. Nothing here uses pickle: Parquet, JSON and JSON Lines only.

Curves columns: `agent` (label), `seed`, `step` (1-based: the value after `step`
rounds), `cumulative_regret` (float64), `cumulative_reward` (float32) and
`cumulative_optimal` (int32: the number of rounds in which the chosen arm was
optimal; over `step` it is the running optimal-action fraction). Cumulative sums
rather than per-step values stay meaningful after downsampling, and they compress
well (byte-stream-split floats, delta-coded integers, zstd): about 1 MB per agent
for 32 seeds x 5000 steps. Long runs keep at most `max_points` steps per curve,
log- and linearly spaced (see `curve_steps`), so that both the early transient and
the long-run slope survive downsampling; `spacing="log"` keeps log-spaced steps
only.

A chunk file is a curves file whose Parquet schema metadata also holds a JSON
object (key `bandits.chunk`): the config hash, the chunk's seeds, its compute
cost, any reward-model metrics and, for slate envs, the slate summaries. Its
presence means the chunk is finished.

Slate series (docs/slates.md) also keep, per seed, the click rate of every
position, the mean exact expected click of every position and the mean NDCG@L
over the run (`slate_seed_fields`). Their merged curve file holds them in its
schema metadata (key `bandits.slate`, read by `read_slate`), so the manifest's
checksum of that file covers them; their summary lines carry them per seed and,
with 95% intervals, per series (`slate_summary`). Single-item series have none of
these: their files are as before.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bandits.files import atomic_write
from bandits.metrics import Summary, cumulative_regret, mean_band, summarize
from bandits.types import Trajectory
from bandits.validation import BanditConfigError

MANIFEST = "manifest.json"
SUMMARIES = "summaries.jsonl"
CURVES_DIR = "curves"
CHUNKS_DIR = "chunks"
CHUNK_META_KEY = b"bandits.chunk"
SLATE_META_KEY = b"bandits.slate"
DEFAULT_CURVE_POINTS = 1_000
CURVE_SPACINGS = ("log+linear", "log")

CURVE_SCHEMA = pa.schema(
    [
        ("agent", pa.string()),
        ("seed", pa.int64()),
        ("step", pa.int64()),
        ("cumulative_regret", pa.float64()),
        ("cumulative_reward", pa.float32()),
        ("cumulative_optimal", pa.int32()),
    ]
)
_ENCODING = {
    "seed": "DELTA_BINARY_PACKED",
    "step": "DELTA_BINARY_PACKED",
    "cumulative_regret": "BYTE_STREAM_SPLIT",
    "cumulative_reward": "BYTE_STREAM_SPLIT",
    "cumulative_optimal": "DELTA_BINARY_PACKED",
}


class Curves(NamedTuple):
    """Per-step curves of one agent across seeds, at the stored steps."""

    seeds: np.ndarray  # (S,) int64
    steps: np.ndarray  # (n,) int64, 1-based, increasing
    cumulative_regret: np.ndarray  # (S, n) float64
    cumulative_reward: np.ndarray  # (S, n) float64
    cumulative_optimal: np.ndarray  # (S, n) int64, rounds 1..step with an optimal arm

    @property
    def optimal_fraction(self) -> np.ndarray:
        """Running fraction of rounds 1..t with an optimal arm chosen, (S, n)."""
        return self.cumulative_optimal / self.steps


# ---------------------------------------------------------------------------
# Atomic writes


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Writes UTF-8 `text` to `path` atomically."""

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    return atomic_write(path, write)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Writes `data` to `path` atomically."""

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    return atomic_write(path, write)


# ---------------------------------------------------------------------------
# JSON and JSON Lines


def file_checksum(path: str | Path) -> tuple[int, str]:
    """`(size in bytes, SHA-256 hex digest)` of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def write_json(path: str | Path, obj: Any) -> Path:
    """Writes `obj` as indented JSON (NaN/inf are refused), atomically."""
    text = json.dumps(_plain(obj), indent=2, allow_nan=False, ensure_ascii=False)
    return atomic_write_text(path, text + "\n")


def read_json(path: str | Path) -> Any:
    """Reads a JSON file; a malformed file raises `BanditConfigError` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise BanditConfigError(f"{path} is not valid JSON: {err}") from None


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> Path:
    """Writes one JSON object per line, atomically."""
    lines = [
        json.dumps(_plain(r), allow_nan=False, ensure_ascii=False, sort_keys=False)
        for r in records
    ]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Reads a JSON Lines file (blank lines are skipped)."""
    path = Path(path)
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise BanditConfigError(
                f"{path}:{number} is not valid JSON: {err}"
            ) from None
        if not isinstance(record, dict):
            raise BanditConfigError(f"{path}:{number} must hold a JSON object")
        records.append(record)
    return records


def _plain(obj: Any) -> Any:
    """`obj` with NumPy scalars/arrays and tuples turned into JSON types."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ---------------------------------------------------------------------------
# Curves


def curve_steps(
    horizon: int, max_points: int = DEFAULT_CURVE_POINTS, spacing: str = "log+linear"
) -> np.ndarray:
    """The 1-based steps stored for a run of `horizon` rounds.

    Every step if `horizon <= max_points`. Otherwise, for `spacing="log+linear"`,
    the union of `max_points // 2` log-spaced and as many linearly spaced steps in
    [1, T]; for `spacing="log"`, `max_points` log-spaced steps. Duplicates are
    removed (so at most `max_points` steps), and 1 and T are always kept.

    Args:
      horizon: the number of rounds T >= 1.
      max_points: the most steps to keep, >= 2.
      spacing: "log+linear" (the early transient and an even tail) or "log".

    Returns:
      An increasing (n,) int64 array with n <= max_points.
    """
    if max_points < 2:
        raise BanditConfigError(f"max_points must be >= 2, got {max_points}")
    if spacing not in CURVE_SPACINGS:
        raise BanditConfigError(
            f"spacing must be one of {', '.join(map(repr, CURVE_SPACINGS))}; "
            f"got {spacing!r}"
        )
    if horizon <= max_points:
        return np.arange(1, horizon + 1, dtype=np.int64)
    num_log = max_points // 2 if spacing == "log+linear" else max_points
    log_steps = np.geomspace(1, horizon, num_log)
    lin_steps = np.linspace(1, horizon, max_points - num_log)
    steps = np.rint(np.concatenate([log_steps, lin_steps])).astype(np.int64)
    return np.unique(np.clip(steps, 1, horizon))


def curves_from_trajectory(
    trajectory: Trajectory,
    seeds: Sequence[int],
    max_points: int = DEFAULT_CURVE_POINTS,
    spacing: str = "log+linear",
) -> Curves:
    """Cumulative curves of a `bandits.run` trajectory (leaves (S, T)) at kept steps.

    Only `regret`, `reward` and `optimal` are read.
    """
    regret = np.atleast_2d(cumulative_regret(trajectory))
    reward = np.cumsum(
        np.atleast_2d(np.asarray(trajectory.reward, np.float64)), axis=-1
    )
    optimal = np.cumsum(
        np.atleast_2d(np.asarray(trajectory.optimal, np.int64)), axis=-1
    )
    horizon = regret.shape[-1]
    if len(seeds) != regret.shape[0]:
        raise BanditConfigError(
            f"got {len(seeds)} seeds for a trajectory of {regret.shape[0]} runs"
        )
    steps = curve_steps(horizon, max_points, spacing)
    index = steps - 1
    return Curves(
        seeds=np.asarray(seeds, dtype=np.int64),
        steps=steps,
        cumulative_regret=regret[:, index],
        cumulative_reward=reward[:, index],
        cumulative_optimal=optimal[:, index],
    )


def curves_table(label: str, curves: Curves) -> pa.Table:
    """The long-format Parquet table of one agent's curves (seed-major order)."""
    num_seeds, num_steps = curves.cumulative_regret.shape
    table = pa.table(
        {
            "agent": pa.repeat(pa.scalar(label, pa.string()), num_seeds * num_steps),
            "seed": np.repeat(curves.seeds, num_steps),
            "step": np.tile(curves.steps, num_seeds),
            "cumulative_regret": curves.cumulative_regret.reshape(-1),
            "cumulative_reward": curves.cumulative_reward.reshape(-1),
            "cumulative_optimal": curves.cumulative_optimal.reshape(-1),
        }
    )
    return table.cast(CURVE_SCHEMA)


def write_curves(
    path: str | Path,
    label: str,
    curves: Curves,
    metadata: Mapping[str, Any] | None = None,
    slate: Mapping[str, Any] | None = None,
) -> Path:
    """Writes one series' curves to a Parquet file, atomically.

    `metadata` (JSON data) is stored in the schema metadata under
    `CHUNK_META_KEY`; `read_chunk` reads it back. `slate` (a series' merged
    slate summaries, see `concat_slates`) is stored under `SLATE_META_KEY`;
    `read_slate` reads it back.
    """
    table = curves_table(label, curves)
    extra = {}
    for key, value in ((CHUNK_META_KEY, metadata), (SLATE_META_KEY, slate)):
        if value is not None:
            text = json.dumps(_plain(value), allow_nan=False, ensure_ascii=False)
            extra[key] = text.encode()
    if extra:
        table = table.replace_schema_metadata(extra)
    return atomic_write(
        path,
        lambda tmp: pq.write_table(
            table,
            tmp,
            compression="zstd",
            use_dictionary=["agent"],
            column_encoding=_ENCODING,
        ),
    )


def read_curves(path: str | Path) -> dict[str, Curves]:
    """Reads curves back, by agent label, in the order they first appear.

    Args:
      path: one Parquet file, or a folder of them (read in file-name order).

    Returns:
      `{label: Curves}`.
    """
    path = Path(path)
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    out: dict[str, Curves] = {}
    for file in files:
        table = pq.read_table(file)
        missing = [n for n in CURVE_SCHEMA.names if n not in table.column_names]
        if missing:
            raise BanditConfigError(
                f"{file} lacks column(s) {', '.join(missing)}; "
                f"expected {', '.join(CURVE_SCHEMA.names)}"
            )
        for label in pc.unique(table.column("agent")).to_pylist():
            rows = table.filter(pc.equal(table.column("agent"), label))
            out[label] = _curves_from_columns(
                {n: rows.column(n).to_numpy() for n in CURVE_SCHEMA.names[1:]},
                where=f"{file} (agent {label!r})",
            )
    return out


def _curves_from_columns(columns: dict[str, np.ndarray], where: str) -> Curves:
    seeds = np.unique(columns["seed"])
    steps = np.unique(columns["step"])
    rows = np.searchsorted(seeds, columns["seed"])
    cols = np.searchsorted(steps, columns["step"])
    cells = np.unique(rows * steps.size + cols).size
    if columns["seed"].size != seeds.size * steps.size or cells != columns["seed"].size:
        raise BanditConfigError(
            f"{where}: expected every seed at every step "
            f"({seeds.size} x {steps.size} rows), got {columns['seed'].size} rows"
        )
    values = {}
    for name in ("cumulative_regret", "cumulative_reward", "cumulative_optimal"):
        dtype = np.int64 if name == "cumulative_optimal" else np.float64
        grid = np.zeros((seeds.size, steps.size), dtype)
        grid[rows, cols] = columns[name]
        values[name] = grid
    return Curves(seeds=seeds.astype(np.int64), steps=steps.astype(np.int64), **values)


def read_chunk(path: str | Path) -> tuple[Curves, dict[str, Any]]:
    """Reads a chunk file: its curves and its metadata (see `write_curves`)."""
    path = Path(path)
    table = pq.read_table(path)
    meta = _chunk_meta(path, table.schema.metadata)
    columns = {n: table.column(n).to_numpy() for n in CURVE_SCHEMA.names[1:]}
    return _curves_from_columns(columns, where=str(path)), meta


def read_chunk_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of a chunk file, from its schema only (no data is read)."""
    try:
        schema = pq.read_schema(path)
    except (OSError, ValueError, pa.ArrowException) as err:
        raise BanditConfigError(f"{path} is not a readable chunk file: {err}") from None
    return _chunk_meta(Path(path), schema.metadata)


def _chunk_meta(path: Path, metadata: Mapping[bytes, bytes] | None) -> dict[str, Any]:
    raw = (metadata or {}).get(CHUNK_META_KEY)
    if raw is None:
        raise BanditConfigError(f"{path} holds no chunk metadata")
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BanditConfigError(f"{path}: unreadable chunk metadata: {err}") from None
    if not isinstance(meta, dict):
        raise BanditConfigError(f"{path}: chunk metadata is not a JSON object")
    return meta


def read_slate(path: str | Path) -> dict[str, Any] | None:
    """The slate summaries a curve file holds (see `write_curves`), or None for a
    single-item series; read from the schema only."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, ValueError, pa.ArrowException) as err:
        raise BanditConfigError(f"{path} is not a readable curve file: {err}") from None
    raw = metadata.get(SLATE_META_KEY)
    if raw is None:
        return None
    try:
        slate = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BanditConfigError(f"{path}: unreadable slate summaries: {err}") from None
    if not isinstance(slate, dict) or set(slate) != set(SLATE_FIELDS):
        raise BanditConfigError(f"{path}: slate summaries are not {SLATE_FIELDS}")
    return slate


def chunk_matches(path: str | Path, config_hash: str) -> bool:
    """Whether a stored chunk file is readable and was computed for `config_hash`."""
    try:
        return read_chunk_meta(path).get("config_hash") == config_hash
    except BanditConfigError:
        return False


def remove_temporary_files(folders: Iterable[Path]) -> None:
    """Removes the temporary files a killed atomic write leaves (`.*.tmp`)."""
    for folder in folders:
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)


def ordered_records(
    records: Iterable[Mapping[str, Any]], order: Mapping[str, int]
) -> list[Mapping[str, Any]]:
    """Summary records by series (in `order`), each series' seed lines first."""

    def key(r: Mapping[str, Any]) -> tuple[int, bool]:
        agent = r.get("agent")  # none sorts last, like an unknown agent
        return (
            len(order) if agent is None else order.get(agent, len(order)),
            r["kind"] != "seed",
        )

    return sorted(records, key=key)


def chunk_file_name(series: int, chunk: int) -> str:
    """The file name of chunk `chunk` of series number `series`."""
    return f"{series:04d}-c{chunk:04d}.parquet"


def concat_curves(parts: Sequence[Curves]) -> Curves:
    """Curves of several seed chunks (same steps) as one, seeds in the given order."""
    if not parts:
        raise BanditConfigError("concat_curves needs at least one part")
    steps = parts[0].steps
    for part in parts[1:]:
        if not np.array_equal(part.steps, steps):
            raise BanditConfigError("chunks to merge store different steps")
    return Curves(
        seeds=np.concatenate([p.seeds for p in parts]),
        steps=steps,
        cumulative_regret=np.concatenate([p.cumulative_regret for p in parts]),
        cumulative_reward=np.concatenate([p.cumulative_reward for p in parts]),
        cumulative_optimal=np.concatenate([p.cumulative_optimal for p in parts]),
    )


SLATE_FIELDS = ("seeds", "click_rate", "expected_clicks", "ndcg")
"""Per-seed slate summaries: seeds (S,), click rate and mean expected click of
every position (S, L), mean NDCG@L over the run (S,)."""


def concat_slates(parts: Sequence[Mapping[str, Any] | None]) -> dict | None:
    """The slate summaries of several seed chunks as one (None for a single-item
    series, whose chunks hold none)."""
    if all(p is None for p in parts):
        return None
    if any(p is None for p in parts):
        raise BanditConfigError("some chunks of a slate series hold no slate data")
    return {k: [v for p in parts for v in p[k]] for k in SLATE_FIELDS}  # type: ignore[index]


def curve_file_name(index: int, label: str) -> str:
    """A safe, ordered file name for agent number `index` with `label`."""
    slug = re.sub(r"[^A-Za-z0-9._=-]+|\.\.+", "-", label)
    slug = re.sub(r"-+", "-", slug).strip("-.")[:60] or "agent"
    return f"{index:03d}-{slug}.parquet"


# ---------------------------------------------------------------------------
# Summaries


def seed_records(
    label: str, trajectory: Trajectory, seeds: Sequence[int]
) -> list[dict[str, Any]]:
    """One summary record per seed: final regret, optimal fraction, mean reward."""
    final = np.atleast_2d(cumulative_regret(trajectory))[:, -1]
    optimal = np.atleast_2d(np.asarray(trajectory.optimal, np.float64)).mean(axis=-1)
    reward = np.atleast_2d(np.asarray(trajectory.reward, np.float64)).mean(axis=-1)
    horizon = int(np.shape(trajectory.regret)[-1])
    return [
        {
            "kind": "seed",
            "agent": label,
            "seed": int(seed),
            "horizon": horizon,
            "final_regret": float(final[i]),
            "optimal_fraction": float(optimal[i]),
            "mean_reward": float(reward[i]),
        }
        for i, seed in enumerate(seeds)
    ]


def curve_seed_records(label: str, curves: Curves) -> list[dict[str, Any]]:
    """`seed_records` from stored curves (the last stored step is the horizon T)."""
    horizon = int(curves.steps[-1])
    return [
        {
            "kind": "seed",
            "agent": label,
            "seed": int(seed),
            "horizon": horizon,
            "final_regret": float(curves.cumulative_regret[i, -1]),
            "optimal_fraction": float(curves.cumulative_optimal[i, -1] / horizon),
            "mean_reward": float(curves.cumulative_reward[i, -1] / horizon),
        }
        for i, seed in enumerate(curves.seeds)
    ]


def slate_seed_fields(slate: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The slate fields of one seed's summary line: `click_rate` and
    `expected_clicks` (one value per position), `ndcg` (mean NDCG@L)."""
    i = list(slate["seeds"]).index(int(seed))
    return {k: slate[k][i] for k in ("click_rate", "expected_clicks", "ndcg")}


def slate_summary(slate: Mapping[str, Any], confidence: float = 0.95) -> dict:
    """The slate fields of a series' summary line: for `click_rate` and
    `expected_clicks` (per position) and `ndcg`, the mean over seeds and its
    two-sided Student-t interval (`bandits.metrics.mean_band`)."""
    out: dict[str, Any] = {"positions": len(slate["click_rate"][0])}
    for key in ("click_rate", "expected_clicks", "ndcg"):
        band = mean_band(np.asarray(slate[key], np.float64), confidence)
        out[key] = {name: np.asarray(v).tolist() for name, v in band._asdict().items()}
    out["seeds"] = len(slate["seeds"])
    return out


def curve_summary(label: str, curves: Curves, confidence: float = 0.95) -> Summary:
    """`bandits.metrics.summarize` from stored curves (final values at step T)."""
    final = curves.cumulative_regret[:, -1]
    horizon = int(curves.steps[-1])
    band = mean_band(final[:, None], confidence)
    return Summary(
        agent=label,
        seeds=int(final.shape[0]),
        horizon=horizon,
        final_regret_mean=float(band.mean[0]),
        final_regret_low=float(band.low[0]),
        final_regret_high=float(band.high[0]),
        final_regret_std=float(final.std(ddof=1)) if final.size > 1 else 0.0,
        optimal_fraction=float(np.mean(curves.cumulative_optimal[:, -1]) / horizon),
        mean_reward=float(np.mean(curves.cumulative_reward[:, -1]) / horizon),
    )


def agent_record(
    label: str,
    trajectory: Trajectory,
    confidence: float = 0.95,
    **extra: Any,
) -> dict[str, Any]:
    """The aggregate record of one agent (`bandits.metrics.summarize`) plus `extra`."""
    summary = summarize(label, trajectory, confidence)
    return summary_record(summary, confidence, **extra)


def summary_record(summary: Summary, confidence: float = 0.95, **extra: Any) -> dict:
    """A `Summary` as a JSON-ready aggregate record."""
    record: dict[str, Any] = {"kind": "agent", **summary._asdict()}
    record["confidence"] = confidence
    record.update(extra)
    return record


def write_summaries(path: str | Path, records: Iterable[Mapping[str, Any]]) -> Path:
    """Writes summary records as JSON Lines, atomically."""
    return write_jsonl(path, records)


def read_summaries(path: str | Path) -> list[dict[str, Any]]:
    """Reads `summaries.jsonl` (a file, or the results folder holding it)."""
    path = Path(path)
    return read_jsonl(path / SUMMARIES if path.is_dir() else path)


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """Reads `manifest.json` from a results folder."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        # A pretraining study's folder holds its platform runs deeper (at most
        # `<out>/<env>/<setting>/events=<n>/results/`); no deeper search.
        patterns = ("/".join(["*"] * depth + [MANIFEST]) for depth in range(1, 6))
        found = (
            p.parent for pattern in patterns for p in Path(directory).glob(pattern)
        )
        inside = sorted(str(folder) for folder in itertools.islice(found, 3))
        hint = (
            f"; results folders inside it: {', '.join(inside)}"
            if inside
            else " (run `bandits run` first)"
        )
        raise BanditConfigError(
            f"{directory} holds no results: {MANIFEST} not found{hint}"
        )
    manifest = read_json(path)
    if not isinstance(manifest, dict):
        raise BanditConfigError(f"{path} must hold a JSON object")
    return manifest


def write_manifest(directory: str | Path, manifest: Mapping[str, Any]) -> Path:
    """Writes `manifest.json` into a results folder, atomically."""
    return write_json(Path(directory) / MANIFEST, manifest)
