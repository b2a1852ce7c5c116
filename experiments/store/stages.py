"""What a study's stage made (logs, a checkpoint), kept while it still fits.

Some studies make files before their platform runs: the pretrain/fine-tune
study its logged events and pretrained checkpoints, the in-context study its
pretrained model. A `Stage` names such a product: the files it writes into a
folder and the settings that determine them (plain JSON data). Its stamp, a
JSON file beside the files, holds the settings, the SHA-256 of every file and a
record of what making them measured (time, losses, scores):

    {"settings": {...}, "sha256": {"logs.parquet": "...", ...}, "record": {...}}

A rerun reuses the files only while the stamp reads back, names the same
settings and every file is there with its checksum. Anything else (other
settings, a missing, damaged or half-written file, a damaged stamp) makes the
stage again: `begin()` removes the stamp before the files are written, and
`finish()` writes it last, atomically, so a run killed in between leaves no
stamp that vouches for files it did not finish. A later stage that reads these
files puts their checksums (`checksums()`) in its own settings, so it is made
again exactly when what it read changed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.store.storage import atomic_write_text, file_checksum


@dataclasses.dataclass(frozen=True)
class Stage:
    """Files a step of a study writes into `folder`, and what determines them."""

    folder: Path
    stamp: str
    """The stamp's file name in `folder`."""
    settings: Mapping[str, Any]
    """Plain JSON data: everything the files depend on."""
    files: Sequence[str]
    """The files the stage writes, by name in `folder`."""

    def state(self) -> str:
        """ "kept" when the files can be reused; else why not: "missing" (no
        stamp), "made otherwise" (other settings) or "damaged" (an unreadable
        stamp, a missing file or a checksum that does not hold)."""
        path = self.folder / self.stamp
        if not path.exists():
            return "missing"
        stamp = _read(path)
        if stamp is None:
            return "damaged"
        if stamp["settings"] != _plain(self.settings):
            return "made otherwise"
        sums = stamp["sha256"]
        for name in self.files:
            file = self.folder / name
            if not file.is_file() or file_checksum(file)[1] != sums.get(name):
                return "damaged"
        return "kept"

    def record(self) -> dict[str, Any]:
        """The record of the stored stamp ({} without one)."""
        stamp = _read(self.folder / self.stamp)
        return {} if stamp is None else stamp["record"]

    def checksums(self) -> dict[str, str]:
        """The SHA-256 of each file, as the stored stamp holds them."""
        stamp = _read(self.folder / self.stamp)
        return {} if stamp is None else dict(stamp["sha256"])

    def begin(self) -> None:
        """Removes the stamp: the files are about to be made again."""
        (self.folder / self.stamp).unlink(missing_ok=True)

    def finish(self, record: Mapping[str, Any] | None = None) -> None:
        """Writes the stamp for the files as they are now (`checksums()` reads
        them back)."""
        sums = {name: file_checksum(self.folder / name)[1] for name in self.files}
        stamp = {
            "settings": _plain(self.settings),
            "sha256": sums,
            "record": dict(record or {}),
        }
        atomic_write_text(self.folder / self.stamp, json.dumps(stamp, indent=1))


def _plain(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def _read(path: Path) -> dict[str, Any] | None:
    """The stamp at `path` with its three keys (a missing record is {}), or
    None when it cannot be read as one."""
    try:
        stamp = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or not isinstance(stamp.get("sha256"), dict):
        return None
    record = stamp.get("record", {})
    if "settings" not in stamp or not isinstance(record, dict):
        return None
    return {"settings": stamp["settings"], "sha256": stamp["sha256"], "record": record}
