"""Progress displays and compute accounting (compile time, memory) for simulations.

A jitted run is one opaque call: JAX first traces, lowers and compiles it, then
executes it. `CompileClock` listens to JAX's compile events (`jax.monitoring`) so
that the compile time can be reported apart from the run time, and so that a
progress display can switch from "compiling" to "running" the moment the
compiler is done. `PeakMemory` samples the process's resident memory while a
block runs. `chunk_progress` is the display of a chunked experiment.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections.abc import Callable

import jax.monitoring
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

COMPILE_EVENT_PREFIX = "/jax/core/compile/"
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileClock:
    """Sums the durations of JAX compile events while active (a context manager).

    Tracing, lowering to MLIR and the backend compile all count. `wall_s` is the
    time spent inside the `with` block, so `wall_s - compile_s` is the time spent
    executing (and in Python around the call).

    Args:
      on_compiled: called with no arguments after each backend compile finishes
        (on the thread that compiled).

    Examples:
      >>> with CompileClock() as clock:
      ...     _ = jax.jit(lambda x: x + 1)(1.0)
      >>> clock.compile_s >= 0.0
      True
    """

    def __init__(self, on_compiled: Callable[[], None] | None = None):
        self.on_compiled = on_compiled
        self.compile_s = 0.0
        self.wall_s = 0.0
        self._start = 0.0
        self._active = False

    def _listen(self, event: str, duration_secs: float, **kwargs: str | int) -> None:
        del kwargs
        if not self._active:
            return
        if event.startswith(COMPILE_EVENT_PREFIX):
            self.compile_s += float(duration_secs)
        if event == BACKEND_COMPILE_EVENT and self.on_compiled is not None:
            self.on_compiled()

    def __enter__(self) -> CompileClock:
        self.compile_s = 0.0
        self._active = True
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall_s = time.perf_counter() - self._start
        self._active = False  # older JAX cannot unregister; the flag silences it
        unregister = getattr(jax.monitoring, "unregister_event_duration_listener", None)
        if unregister is not None:
            unregister(self._listen)

    @property
    def run_s(self) -> float:
        """Wall time minus compile time (never negative)."""
        return max(self.wall_s - self.compile_s, 0.0)


def task_progress(console: Console | None = None, *, enabled: bool = True) -> Progress:
    """A rich progress display with one line per task and its elapsed time.

    Tasks with `total=None` show a pulsing bar (a jitted call reports no
    intermediate progress); set `total` and `completed` to fill it when done.
    """
    return Progress(
        SpinnerColumn(finished_text="[green]✓"),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}"),
        console=console,
        disable=not enabled,
        transient=False,
    )


def chunk_progress(console: Console | None = None, *, enabled: bool = True) -> Progress:
    """A rich display for chunked runs: done/total chunks, elapsed time and ETA.

    The task's `detail` field carries free text (compiled programs, remaining
    chunks, the last throughput).
    """
    return Progress(
        SpinnerColumn(finished_text="[green]✓"),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("chunks"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[detail]}"),
        console=console,
        disable=not enabled,
        transient=False,
    )


def resident_bytes() -> int | None:
    """The process's current resident set size in bytes (Linux), else `None`."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def max_resident_bytes() -> int:
    """The process's peak resident set size so far (`getrusage` ru_maxrss)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


class PeakMemory:
    """Peak resident memory of this process while the `with` block runs.

    A background thread samples the resident set size (`/proc/self/statm`)
    every `interval_s`; `peak_bytes` is the largest sample and `increase_bytes`
    the peak minus the size at entry: memory the block needed beyond what the
    process already held (XLA buffers, compiler, host copies). Short spikes
    between samples can be missed. Where `/proc` is missing, the lifetime peak
    of `getrusage` is used (`increase_bytes` is then relative to that peak).
    """

    def __init__(self, interval_s: float = 0.005):
        self.interval_s = interval_s
        self.start_bytes = 0
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampled = False

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            now = resident_bytes()
            if now is not None:
                self.peak_bytes = max(self.peak_bytes, now)

    def __enter__(self) -> PeakMemory:
        start = resident_bytes()
        self._sampled = start is not None
        self.start_bytes = start if start is not None else max_resident_bytes()
        self.peak_bytes = self.start_bytes
        if self._sampled:
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        end = resident_bytes() if self._sampled else max_resident_bytes()
        if end is not None:
            self.peak_bytes = max(self.peak_bytes, end)

    @property
    def increase_bytes(self) -> int:
        """Peak minus the resident size at entry (never negative)."""
        return max(self.peak_bytes - self.start_bytes, 0)
