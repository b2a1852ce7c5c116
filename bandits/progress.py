"""Progress display and compile-time accounting for long simulations.

A jitted run is one opaque call: JAX first traces, lowers and compiles it, then
executes it. `CompileClock` listens to JAX's compile events (`jax.monitoring`) so
that the compile time can be reported apart from the run time, and so that a
progress display can switch from "compiling" to "running" the moment the
compiler is done.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax.monitoring
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
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
