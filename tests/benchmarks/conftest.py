"""Benchmark helpers: timing with warm-up, and a summary of measured ratios.

Speed is reported as a ratio against a reference measured in the same run, because
absolute times on shared machines mean little. Each benchmark records its ratio with
`record_ratio`; the terminal summary prints them all.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

import jax
import pytest

_RATIOS: list[str] = []


def best_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """Minimum wall time of `fn()` over `repeats` calls, after one warm-up call.

    JAX results are waited for with `jax.block_until_ready`.
    """
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def interleaved_best_times(
    fns: list[Callable[[], object]], repeats: int = 7
) -> list[float]:
    """Minimum wall time of each `fn()` over `repeats` rounds that call them in
    turn (A, B, A, B, ...), after one warm-up call of each.

    On a shared machine load comes and goes; alternating the calls exposes every
    variant to the same moments, so their ratio is steadier than that of two
    back-to-back `best_time` blocks.
    """
    for fn in fns:
        jax.block_until_ready(fn())
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times, strict=True):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            record.append(time.perf_counter() - start)
    return [min(record) for record in times]


@pytest.fixture
def record_ratio(benchmark):
    """Returns `record(name, value, **info)` storing a ratio in extra_info and the
    end-of-run summary."""

    def record(name: str, value: float, **info: object) -> None:
        benchmark.extra_info[name] = value
        benchmark.extra_info.update(info)
        details = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in info.items()
        )
        _RATIOS.append(f"{name} = {value:.2f}  ({details})")

    return record


def pytest_terminal_summary(terminalreporter):
    if not _RATIOS:
        return
    terminalreporter.section("measured ratios (same run)")
    machine = (
        f"{platform.processor() or platform.machine()}, "
        f"{jax.device_count()} JAX CPU devices, jax {jax.__version__}"
    )
    terminalreporter.write_line(f"machine: {machine}")
    for line in _RATIOS:
        terminalreporter.write_line(line)
