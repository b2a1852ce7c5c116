"""The local worker processes: a kept pool of single-device JAX processes.

Light on imports (the standard library only), so that `bandits run` can start
its workers before it imports JAX itself: the workers' imports, the longest
step of a short run's start, then overlap the command's own. The executors
(`experiments.execute.executors`) run tasks on these pools.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import multiprocessing
import os
import threading
import time

SINGLE_DEVICE_ENV = "BANDITS_CPU_DEVICES"
"""Environment variable read by `bandits._backend`: JAX CPU devices of a process
(a worker has one)."""
WORKERS_ENV = "BANDITS_WORKERS"
"""Environment variable: the default number of local worker processes (one per
core when unset). The test suite sets it to 1, since pytest-xdist already runs
one test process per core."""


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def workers_from_environment() -> int | None:
    """$BANDITS_WORKERS, else one per core; None if the variable is not a whole
    number >= 1 (`executors.default_workers` names that error)."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if not value:
        return cpu_count()
    return int(value) if value.isdigit() and int(value) >= 1 else None


# ---------------------------------------------------------------------------
# Local worker processes


PARENT_POLL_S = 0.5
"""How often a worker checks that the process that started it is alive."""


def _exit_with_parent(parent: int) -> None:
    """Ends this worker when `parent` dies (also by SIGKILL, where nothing runs
    on the parent's side): a daemon thread polls the parent's PID, which changes
    when the worker is re-parented."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="bandits-parent-watch", daemon=True).start()


def _single_device_worker(parent: int) -> None:
    """Process-pool initializer: one JAX CPU device in this worker, and no life
    beyond the process that started it.

    Runs before the first task imports anything that touches a JAX backend.
    """
    _exit_with_parent(parent)
    os.environ[SINGLE_DEVICE_ENV] = "1"
    import jax

    with contextlib.suppress(RuntimeError):  # backends already up: checked later
        jax.config.update("jax_num_cpu_devices", 1)


_POOLS: dict[int, concurrent.futures.ProcessPoolExecutor] = {}


def _pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """A process pool of `workers` single-device workers, kept for the process.

    Keeping it means a second run in the same process reuses warm workers (their
    imports and compiled programs).
    """
    pool = _POOLS.get(workers)
    if pool is None:
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_single_device_worker,
            initargs=(os.getpid(),),
        )
        _POOLS[workers] = pool
    return pool


def _warm_up() -> None:
    """A worker's first job when the pool is started ahead of the run: the
    imports every task needs (JAX, the registries through the config loader,
    the simulation loop)."""
    import experiments.execute.tasks  # noqa: F401


def prestart(workers: int) -> None:
    """Starts the pool of `workers` processes now, each importing what a task
    needs, so that their start overlaps the caller's own imports and checks
    (`bandits run` calls it first; about a second of a short run)."""
    pool = _pool(workers)
    for _ in range(workers):
        pool.submit(_warm_up)


def _discard_pool(workers: int) -> None:
    pool = _POOLS.pop(workers, None)
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


def stop_workers() -> None:
    """Ends every local worker process now, for a caller that has run all it
    will (the end of `bandits run`). The workers are idle then and hold nothing
    that is not stored; ending them at once saves the half second their
    orderly exit (JAX's teardown in each) would add to the command."""
    for workers, pool in list(_POOLS.items()):
        # CPython's pool keeps its processes here; without it, the orderly exit.
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        _discard_pool(workers)


@atexit.register
def _shutdown_pools() -> None:
    for workers in list(_POOLS):
        _discard_pool(workers)
