"""Small file helpers both sides of the kernel use: atomic writes and the
logged-data Parquet format.

The logged-data format is written by `envs.logged` (generation) and read by
`envs.logged` and `agents.warm_start` (replay); it lives here so that there is
one reader, one format key and one version check. pyarrow is imported inside
the functions that need it, so `import bandits, envs, agents` does not load it.

The format: one Parquet column per field, fixed-size lists of each event's
flattened array, and schema metadata under `FORMAT_KEY` holding
`{"version", "columns": {name: {"shape", "dtype"}}, "metadata"}`. A field with
zero entries per event (the (K, 0) `arms` of an env without arm features) is
recorded in the metadata only.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bandits.validation import BanditConfigError

FORMAT_KEY = b"bandits.logged"
FORMAT_VERSION = 1


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Calls `write(tmp)` on a temporary path next to `path`, then renames it.

    The temporary file lives in the same folder, so `os.replace` is atomic on
    POSIX and Windows; on failure the temporary file is removed and `path` is
    left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it owner-only
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_logged(
    path: str | os.PathLike,
    columns: Mapping[str, np.ndarray],
    metadata: Mapping[str, Any],
) -> Path:
    """Writes per-event `columns` (each (n, ...)) as a logged-data Parquet file,
    atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays, fields, shapes = [], [], {}
    for name, value in columns.items():
        shape = tuple(int(s) for s in value.shape[1:])
        shapes[name] = {"shape": list(shape), "dtype": str(value.dtype)}
        if shape and math.prod(shape) == 0:
            continue  # the metadata alone restores it
        flat = pa.array(np.ascontiguousarray(value).reshape(-1))
        column = (
            pa.FixedSizeListArray.from_arrays(flat, math.prod(shape)) if shape else flat
        )
        arrays.append(column)
        fields.append(pa.field(name, column.type, nullable=False))
    meta = {"version": FORMAT_VERSION, "columns": shapes, "metadata": dict(metadata)}
    schema = pa.schema(fields, metadata={FORMAT_KEY: json.dumps(meta).encode()})
    table = pa.Table.from_arrays(arrays, schema=schema)
    return atomic_write(
        Path(path), lambda tmp: pq.write_table(table, tmp, row_group_size=65_536)
    )


def check_logged_events(columns: Mapping[str, np.ndarray], where: str) -> None:
    """Refuses logged events a learner would silently misread, naming the column
    and the first bad row: actions outside [0, K) or not allowed by the mask,
    propensities outside (0, 1], non-finite rewards or propensities, and slot
    positions that are not integers >= 0.

    K is the width of `mask` (or of `action_probs` / `arms`); columns that are
    absent are not checked (real logs have no `action_probs` or
    `expected_rewards`, simulated ones no `position`).
    """
    found = BadRows(where)
    found.add(columns)
    found.raise_first()


class BadRows:
    """The checks of `check_logged_events` over events seen in consecutive
    batches (a file read in parts): `add` each batch in order, then
    `raise_first` names the first failing check's first bad row in the whole
    file and its count of bad rows, as one pass over all the events would."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.rows = 0
        # check index -> [column, what, first bad row, its value, bad rows]
        self.found: dict[int, list[Any]] = {}

    def add(self, columns: Mapping[str, np.ndarray]) -> None:
        for index, (column, what, bad, values) in enumerate(self._checks(columns)):
            if not bad.any():
                continue
            if index not in self.found:
                row = int(np.flatnonzero(bad)[0])
                value = np.asarray(values[row]).item()
                self.found[index] = [column, what, self.rows + row, value, 0]
            self.found[index][4] += int(bad.sum())
        self.rows += _length(columns)

    def raise_first(self) -> None:
        if self.found:
            column, what, row, value, count = self.found[min(self.found)]
            raise BanditConfigError(
                f"{self.where}: column {column!r} row {row} is {value!r}, not "
                f"{what} ({count} bad row(s))"
            )

    def _checks(self, columns: Mapping[str, np.ndarray]):
        """(column, what, bad rows, values) per check, in a fixed order; a
        column of the wrong dtype is refused at once."""
        action = columns.get("action")
        widths = [
            np.shape(columns[n])[1]
            for n in ("mask", "action_probs", "arms")
            if n in columns and np.ndim(columns[n]) >= 2
        ]
        checks: list[tuple[str, str, np.ndarray | None, Any]] = []
        if action is not None:
            action = np.asarray(action)
            self._require_integers("action", action)
            if widths:
                outside = (action < 0) | (action >= widths[0])
                checks.append(
                    ("action", f"an arm in [0, {widths[0]})", outside, action)
                )
            if "mask" in columns and widths:
                mask = np.asarray(columns["mask"], bool)
                inside = np.clip(action, 0, widths[0] - 1)
                allowed = mask[np.arange(action.shape[0]), inside]
                checks.append(("action", "allowed by the row's mask", ~allowed, action))
        if "reward" in columns:
            reward = np.asarray(columns["reward"], np.float64)
            checks.append(("reward", "a finite number", ~np.isfinite(reward), reward))
        if "propensity" in columns:
            p = np.asarray(columns["propensity"], np.float64)
            bad = ~np.isfinite(p) | (p <= 0) | (p > 1)
            checks.append(("propensity", "in (0, 1]", bad, p))
        if "position" in columns:
            position = np.asarray(columns["position"])
            self._require_integers("position", position)
            checks.append(("position", "a slot index >= 0", position < 0, position))
        # The batches of one file have the same columns: a check keeps its
        # index from batch to batch.
        return checks

    def _require_integers(self, column: str, values: np.ndarray) -> None:
        if not np.issubdtype(values.dtype, np.integer):
            raise BanditConfigError(
                f"{self.where}: column {column!r} must hold integers, got "
                f"{values.dtype}"
            )


def _length(columns: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def read_logged(
    path: str | os.PathLike,
    columns: Sequence[str] | None = None,
    optional: Sequence[str] = (),
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The named columns of a logged-data Parquet file as NumPy arrays (no pickle).

    Args:
      path: the file.
      columns: the columns to read (all when None).
      optional: columns that may be missing; they are left out of the result.

    Returns:
      `(arrays, metadata)`: each array (n, *shape) in its recorded dtype, and the
      dataset's own metadata (env name, policy, ...).

    Raises:
      BanditConfigError: if the file is missing, cannot be read, is not a logged
        dataset of this version, or lacks a required column.
    """

    path = Path(path)
    meta = _logged_meta(path)
    known = meta["columns"]
    wanted = _wanted(
        path, known, tuple(known) if columns is None else columns, optional
    )
    with _readable(path):
        return _read_columns(path, known, wanted, meta)


def _wanted(path: Path, known, columns: Sequence[str], optional: Sequence[str]):
    """The `columns` the file has; a missing one that is not `optional` is an
    error naming what the file has."""
    missing = [n for n in columns if n not in known and n not in optional]
    if missing:
        raise BanditConfigError(
            f"{str(path)!r} has no column(s) {missing}; it has {sorted(known)}"
        )
    return tuple(n for n in columns if n in known)


@contextlib.contextmanager
def _readable(path: Path) -> Iterator[None]:
    """Turns a failure to read or convert the file into one clear error."""
    import pyarrow as pa

    try:
        yield
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as error:
        if isinstance(error, BanditConfigError):
            raise
        raise BanditConfigError(
            f"{str(path)!r} is not a readable logged dataset: {error}"
        ) from None


def read_logged_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """The per-event shape of every column of a logged-data Parquet file, from its
    schema metadata alone (no event is read).

    Raises:
      BanditConfigError: as `read_logged`, for a file that is not a logged
        dataset of this version.
    """
    known = _logged_meta(Path(path))["columns"]
    try:
        return {str(n): tuple(int(k) for k in c["shape"]) for n, c in known.items()}
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise BanditConfigError(
            f"{str(path)!r} has unreadable logged-data metadata: {error}"
        ) from None


def _logged_meta(path: Path) -> dict[str, Any]:
    """The format metadata of a logged-data file (its schema only), checked."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        raise BanditConfigError(f"logged data file {str(path)!r} does not exist")
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as error:
        raise BanditConfigError(
            f"{str(path)!r} is not a readable Parquet file: {error}"
        ) from None
    raw = (schema.metadata or {}).get(FORMAT_KEY)
    if raw is None:
        raise BanditConfigError(
            f"{str(path)!r} is not a logged dataset (no {FORMAT_KEY.decode()!r} "
            "metadata)"
        )
    try:
        meta = json.loads(raw)
        if not isinstance(meta["columns"], Mapping):
            raise TypeError("'columns' is not an object")
    except (ValueError, KeyError, TypeError) as error:
        raise BanditConfigError(
            f"{str(path)!r} has unreadable logged-data metadata: {error}"
        ) from None
    if meta.get("version") != FORMAT_VERSION:
        raise BanditConfigError(
            f"{str(path)!r} has logged-data format version {meta.get('version')!r}; "
            f"this code reads version {FORMAT_VERSION}"
        )
    return meta


def _read_columns(path: Path, known, wanted, meta) -> tuple[dict, dict]:
    import pyarrow.parquet as pq

    stored = [n for n in wanted if math.prod(known[n]["shape"]) > 0]
    table = pq.read_table(path, columns=stored)
    rows = pq.read_metadata(path).num_rows
    arrays = _as_arrays(table, known, wanted, rows)
    check_logged_events(arrays, repr(str(path)))
    return arrays, dict(meta.get("metadata", {}))


def _as_arrays(table, known, wanted, rows: int) -> dict[str, np.ndarray]:
    """The `wanted` columns of a pyarrow table of `rows` events as NumPy arrays
    (n, *shape) in their recorded dtypes."""
    arrays = {}
    for name in wanted:
        spec = known[name]
        if math.prod(spec["shape"]) == 0:  # no entries per event: metadata only
            arrays[name] = np.zeros((rows, *spec["shape"]), spec["dtype"])
            continue
        column = table.column(name).combine_chunks()
        if spec["shape"]:
            column = column.flatten()
        values = column.to_numpy(zero_copy_only=False)
        arrays[name] = values.astype(spec["dtype"], copy=False).reshape(
            rows, *spec["shape"]
        )
    return arrays


def iter_logged(
    path: str | os.PathLike,
    columns: Sequence[str],
    optional: Sequence[str] = (),
    batch_size: int = 65_536,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """The named columns of a logged-data Parquet file in consecutive batches of
    `batch_size` events (the last may be shorter): `(first row, arrays)`.

    For files too large to hold whole (a warm start from millions of events
    with their histories): at most about one batch is in memory. The events
    are not checked here; `check_logged_file` checks them all first, so that
    a bad event is refused before anything is computed from the good ones.

    Raises:
      BanditConfigError: as `read_logged`.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    known = _logged_meta(path)["columns"]
    wanted = _wanted(path, known, columns, optional)
    stored = [n for n in wanted if math.prod(known[n]["shape"]) > 0]
    with _readable(path):
        reader = pq.ParquetFile(path)
        pending: list = []  # record batches not yet handed out
        held, first = 0, 0
        for batch in reader.iter_batches(batch_size=batch_size, columns=stored):
            pending.append(batch)
            held += batch.num_rows
            while held >= batch_size:
                table = pa.Table.from_batches(pending)
                part, rest = table.slice(0, batch_size), table.slice(batch_size)
                yield first, _as_arrays(part, known, wanted, batch_size)
                first += batch_size
                held -= batch_size
                pending = rest.to_batches()
        if held:
            table = pa.Table.from_batches(pending)
            yield first, _as_arrays(table, known, wanted, held)


def check_logged_file(
    path: str | os.PathLike,
    columns: Sequence[str],
    optional: Sequence[str] = (),
    batch_size: int = 65_536,
) -> int:
    """Checks every event of the named columns as `check_logged_events` does
    (the same first bad row and count), reading the file in batches; returns
    the number of events."""
    found = BadRows(repr(str(path)))
    for _, arrays in iter_logged(path, columns, optional, batch_size):
        found.add(arrays)
    found.raise_first()
    return found.rows
