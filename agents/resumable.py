"""Training loops that survive a kill: progress saved now and then, resumed exactly.

Pretraining is a loop of compiled calls, each a few Adam steps. With a
progress file, the loop saves its state (the step count, the training carry
(parameters and optimiser state), the loss curves so far and the seconds spent)
at most every `SAVE_EVERY_S` seconds and after the last call, atomically. A
later call with the same settings (`settings`: everything the result depends
on, compared as canonical JSON) finds the file, skips the calls already done
(drawing what they would have drawn, so every later batch and key is the
same) and continues from the saved carry: the parameters and curves equal an
uninterrupted run's, bit for bit. A file of other settings, of another carry
structure, or damaged is ignored (training starts afresh and replaces it).
The caller removes the file once its result is stored (`Progress.remove`).

Nothing is unpickled: the file is an `.npz` of plain arrays read with
`allow_pickle=False`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bandits.files import atomic_write

SAVE_EVERY_S = 30.0
"""Seconds between two saves of a training's progress (and after its last call)."""

_FINGERPRINT = "settings"
_DONE = "done"
_SECONDS = "seconds"


class Progress:
    """A training's progress file (or none: `path=None` saves nothing).

    Args:
      path: where the progress is kept.
      settings: plain JSON data that fixes the training's result.
      every_s: seconds between saves (default `SAVE_EVERY_S`).
    """

    def __init__(
        self,
        path: str | os.PathLike | None,
        settings: Mapping[str, Any],
        every_s: float | None = None,
    ):
        self.path = None if path is None else Path(path)
        self.fingerprint = json.dumps(settings, sort_keys=True)
        self.every_s = SAVE_EVERY_S if every_s is None else every_s
        self._saved_at = time.monotonic()

    def restore(self, template: Any) -> tuple[int, Any, list[np.ndarray], float] | None:
        """`(steps done, carry, curves, seconds)` saved for these settings, the
        carry in the structure, shapes and dtypes of `template`; None if there
        is no such file (or it is damaged, or of other settings)."""
        if self.path is None or not self.path.is_file():
            return None
        leaves, treedef = jax.tree.flatten(template)
        try:
            with np.load(self.path, allow_pickle=False) as saved:
                if str(saved[_FINGERPRINT]) != self.fingerprint:
                    return None
                restored = [saved[f"leaf{i}"] for i in range(len(leaves))]
                curves = [saved[f"curve{i}"] for i in range(_count(saved, "curve"))]
                done, seconds = int(saved[_DONE]), float(saved[_SECONDS])
                if _count(saved, "leaf") != len(leaves):
                    return None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        for old, new in zip(leaves, restored, strict=True):
            if np.shape(old) != new.shape or np.asarray(old).dtype != new.dtype:
                return None
        carry = jax.tree.unflatten(treedef, [jax.numpy.asarray(x) for x in restored])
        return done, carry, curves, seconds

    def due(self) -> bool:
        """Whether `every_s` has passed since the last save (and there is a file)."""
        return self.path is not None and (
            time.monotonic() - self._saved_at >= self.every_s
        )

    def save(
        self,
        done: int,
        carry: Any,
        curves: Sequence[np.ndarray],
        seconds: float,
        force: bool = False,
    ) -> bool:
        """Saves the progress if it is `due` (or `force`); returns whether it did."""
        if self.path is None or not (force or self.due()):
            return False
        now = time.monotonic()
        arrays: dict[str, Any] = {
            _FINGERPRINT: np.asarray(self.fingerprint),
            _DONE: np.asarray(done, np.int64),
            _SECONDS: np.asarray(seconds, np.float64),
        }
        for i, leaf in enumerate(jax.tree.leaves(jax.device_get(carry))):
            arrays[f"leaf{i}"] = np.asarray(leaf)
        for i, curve in enumerate(curves):
            arrays[f"curve{i}"] = np.asarray(curve)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)

        atomic_write(self.path, write)
        self._saved_at = now
        return True

    def remove(self) -> None:
        """Deletes the progress file (the training's result is stored)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def digest(tree: Any) -> str:
    """SHA-256 of a pytree's leaves (dtype, shape and bytes, in tree order):
    training data or starting parameters in a training's settings."""
    sha = hashlib.sha256()
    for leaf in jax.tree.leaves(jax.device_get(tree)):
        array = np.ascontiguousarray(leaf)
        sha.update(f"{array.dtype.str}{array.shape};".encode())
        sha.update(array.data)
    return sha.hexdigest()


def describe(obj: Any) -> Any:
    """A JSON-ready description of a configuration object for a training's
    settings: a dataclass field by field, an array by its checksum (a `repr`
    would elide an array's middle), anything else by `repr`."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {
            f.name: describe(getattr(obj, f.name)) for f in dataclasses.fields(obj)
        }
        return {"type": type(obj).__qualname__, **fields}
    if isinstance(obj, np.ndarray | jax.Array):
        return digest(obj)
    return repr(obj)


def _count(saved: Any, prefix: str) -> int:
    """How many arrays `prefix0`, `prefix1`, ... the file holds."""
    suffixes = [name[len(prefix) :] for name in saved.files if name.startswith(prefix)]
    return sum(1 for suffix in suffixes if suffix.isdigit())


def run_calls(
    run: Callable[..., tuple[Any, Any]],
    carry: Any,
    calls: Iterable[tuple[int, Callable[[], tuple]]],
    progress: Progress,
    curves: int,
    report: Callable[[int, np.ndarray], None] | None = None,
) -> tuple[Any, list[np.ndarray], float]:
    """Runs `carry, parts = run(carry, *args())` for each `(steps, args)` of
    `calls`, in order, keeping `curves` loss curves (one array of `steps`
    values per call and curve in `parts`) and saving the progress; resumes
    from `progress` where it holds this training's state.

    `args` is called only for the calls that run, after the earlier ones:
    batches drawn from a random generator must be drawn for every call, so
    `calls` draws them itself (a generator) and `args` only assembles them.

    Returns:
      `(carry, curves, seconds)`: the final carry, each curve concatenated,
      and the training's seconds (of earlier interrupted calls too).
    """
    restored = progress.restore(carry)
    kept: list[list[np.ndarray]] = [[] for _ in range(curves)]
    skip, spent = 0, 0.0
    if restored is not None:
        skip, carry, saved, spent = restored
        kept = [[curve] for curve in saved] if saved else kept
    start, done = time.perf_counter(), 0
    for steps, args in calls:
        if done + steps <= skip:
            done += steps
            continue
        carry, parts = _call(run, carry, args())
        for curve, part in zip(kept, parts, strict=True):
            curve.append(np.asarray(part))
        done += steps
        if progress.due():
            elapsed = spent + time.perf_counter() - start
            progress.save(done, carry, _joined(kept), elapsed)
        if report is not None:
            report(done, kept[0][-1])
    seconds = spent + time.perf_counter() - start
    progress.save(done, carry, _joined(kept), seconds, force=True)
    return carry, _joined(kept), seconds


def _call(run, carry, args):
    """One compiled call (a function of its own, so a test can stop the loop)."""
    return run(carry, *args)


def _joined(curves: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    return [
        np.concatenate(curve) if curve else np.zeros(0, np.float32) for curve in curves
    ]


__all__ = ["SAVE_EVERY_S", "Progress", "describe", "digest", "run_calls"]
