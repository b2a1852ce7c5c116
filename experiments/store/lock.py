"""One run at a time per results folder: an OS-level exclusive lock.

`exclusive(directory)` holds `flock` on `<directory>/.bandits.lock` for the
duration of a run. The kernel releases it when the holding process ends in any
way (a crash or `kill -9` included), so a lock left by a dead process is never
an obstacle: its file is simply taken over. A second run into a folder in use is
refused with the holder's PID, host, start time and command, which the holder
writes into the lock file.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path

from bandits.validation import BanditConfigError

LOCK_FILE = ".bandits.lock"


@contextlib.contextmanager
def exclusive(
    directory: Path, command: str | None = None, *, wait_s: float = 0.0
) -> Iterator[Path]:
    """Holds the folder's lock; creates the folder if needed.

    Args:
      wait_s: how long to wait for another process that holds it (0: refuse
        at once).

    Raises:
      BanditConfigError: another live process holds the lock (for `wait_s`),
        or the folder or its lock file cannot be created.
    """
    path = directory / LOCK_FILE
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fd = _acquire(directory, path)
            break
        except _BusyError as busy:
            if time.monotonic() >= deadline:
                raise BanditConfigError(
                    f"output folder {str(directory)!r} is in use by another run "
                    f"({busy.holder}); wait for it to finish or choose another --out"
                ) from None
            time.sleep(0.05)
    try:
        _write_holder(fd, command)
        try:
            yield path
        finally:
            # Unlinked while still locked: a process that opened the old file in
            # the meantime sees it is gone and retries on a new one (`_acquire`).
            with contextlib.suppress(OSError):
                path.unlink()
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class _BusyError(Exception):
    def __init__(self, holder: str):
        self.holder = holder


def _acquire(directory: Path, path: Path) -> int:
    """An open, locked descriptor of the lock file that is still at `path`."""
    while True:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise BanditConfigError(
                f"cannot use output folder {str(directory)!r}: {err.strerror or err}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise _BusyError(holder) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed this file as we locked it: again


def _write_holder(fd: int, command: str | None) -> None:
    holder = {
        "pid": os.getpid(),
        "host": platform.node(),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command or "",
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)


def _holder(fd: int) -> str:
    """The holder as "pid 123 on host, since ..., `command`" (best effort)."""
    try:
        raw = os.pread(fd, 4096, 0)
        holder = json.loads(raw.decode("utf-8"))
        text = f"pid {holder['pid']} on {holder['host']}, since {holder['started']}"
        return text + (f", `{holder['command']}`" if holder.get("command") else "")
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"
