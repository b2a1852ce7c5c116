"""Where tasks run: worker processes on this machine, or a Dask cluster.

Both executors send each task as its plain spec dictionary and get plain results
back (`experiments.execute.tasks.execute_task`); workers rebuild envs and agents
from the registries, so envs and agents must be registered by importable modules (the
`envs` and `agents` packages, or any module they import).

Every worker process has exactly one JAX device and runs one task at a time
(see `experiments.execute.tasks` for why): `LocalExecutor` starts one such process per
core; Dask workers must be started with `BANDITS_CPU_DEVICES=1` (for example
`BANDITS_CPU_DEVICES=1 dask worker ADDRESS --nthreads 1`), which is checked
before anything runs.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from bandits.validation import BanditConfigError
from experiments.execute.tasks import SINGLE_DEVICE_ENV

if TYPE_CHECKING:
    import distributed

EXECUTORS = ("local", "dask")
DEFAULT_CONNECT_TIMEOUT_S = 5.0


class RunFailedError(RuntimeError):
    """A run stopped by a failure outside the config (a worker died, a cluster
    went away); finished chunks are stored and a rerun resumes."""


class Executor(Protocol):
    """Runs task specs and yields `(spec, result)` pairs as tasks finish."""

    name: str

    def check(self) -> None:
        """Raises `BanditConfigError` if the executor cannot run tasks."""

    def describe(self) -> str:
        """One line for progress output and the manifest."""

    def run(self, specs: Sequence[dict[str, Any]]) -> Iterator[tuple[dict, dict]]:
        """Runs every spec; yields (spec, result) in completion order."""


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


def default_workers() -> int:
    """Local worker processes when `--workers` is not given: $BANDITS_WORKERS,
    else one per core."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if not value:
        return cpu_count()
    if not value.isdigit() or int(value) < 1:
        raise BanditConfigError(
            f"{WORKERS_ENV} must be a whole number >= 1 (or unset for one worker "
            f"per core); got {value!r}"
        )
    return int(value)


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


def _discard_pool(workers: int, wait: bool = False) -> None:
    pool = _POOLS.pop(workers, None)
    if pool is not None:
        pool.shutdown(wait=wait, cancel_futures=True)


def stop_workers() -> None:
    """Ends every local worker process now, for a caller that has run all it
    will (the end of `bandits run`). The workers are idle then and hold nothing
    that is not stored; ending them at once saves the half second their
    orderly exit (JAX's teardown in each) would add to the command."""
    for workers, pool in list(_POOLS.items()):
        # CPython's pool keeps its processes here; without it, the orderly exit.
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        # Waiting joins the ended processes and closes the pool's queues (their
        # semaphores unlinked), so a caller may then end with `os._exit`.
        _discard_pool(workers, wait=True)


@atexit.register
def _shutdown_pools() -> None:
    for workers in list(_POOLS):
        _discard_pool(workers)


class LocalExecutor:
    """Runs tasks in single-device worker processes on this machine.

    Args:
      workers: how many processes (default: $BANDITS_WORKERS, else one per core;
        at most the number of tasks).
    """

    name = "local"

    def __init__(self, workers: int | None = None):
        if workers is not None and (isinstance(workers, bool) or workers < 1):
            raise BanditConfigError(f"--workers must be >= 1, got {workers!r}")
        self.workers = workers if workers is not None else default_workers()

    def check(self) -> None:
        return None

    def describe(self) -> str:
        return f"local ({self.workers} worker processes)"

    def run(self, specs: Sequence[dict[str, Any]]) -> Iterator[tuple[dict, dict]]:
        if not specs:
            return
        from experiments.execute.tasks import execute_task

        # The pool of `self.workers` (perhaps started ahead, `prestart`); with
        # fewer tasks it starts only as many processes as run at once.
        workers = self.workers
        pool = _pool(workers)
        futures: dict[concurrent.futures.Future, dict[str, Any]] = {}
        try:
            # Inside the `try`: a worker started ahead (`prestart`) may have
            # died already, and then submitting raises.
            for spec in specs:
                futures[pool.submit(execute_task, spec)] = spec
            for future in concurrent.futures.as_completed(futures):
                yield futures[future], future.result()
        except concurrent.futures.process.BrokenProcessPool as err:
            # Waiting closes the broken pool's queues (their semaphores
            # unlinked): the command may end with `os._exit` next.
            _discard_pool(workers, wait=True)
            raise RunFailedError(
                f"a local worker process died ({err}); finished chunks are stored, "
                "rerun to resume"
            ) from None
        finally:
            for future in futures:
                future.cancel()


# ---------------------------------------------------------------------------
# Dask


class DaskExecutor:
    """Runs tasks on a Dask cluster (`pip install 'bandits[distributed]'`).

    Args:
      scheduler: the scheduler address, e.g. "tcp://10.0.0.5:8786".
      timeout_s: how long to try to reach the scheduler (and to wait for a
        first worker) before giving up.
    """

    name = "dask"

    def __init__(self, scheduler: str, timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S):
        if not scheduler:
            raise BanditConfigError(
                "--scheduler ADDRESS is required with --executor dask "
                "(e.g. tcp://127.0.0.1:8786)"
            )
        if (
            isinstance(timeout_s, bool)
            or not isinstance(timeout_s, int | float)
            or not 0 < timeout_s < float("inf")
        ):
            raise BanditConfigError(
                f"--connect-timeout must be a number of seconds > 0, got {timeout_s!r}"
            )
        self.scheduler = scheduler
        self.timeout_s = timeout_s
        self._client: distributed.Client | None = None

    def describe(self) -> str:
        return f"dask ({self.scheduler})"

    def check(self) -> None:
        """Connects, and checks that workers exist and have one JAX device each."""
        distributed = _import_distributed()
        if self._client is not None:
            return
        try:
            client = distributed.Client(
                self.scheduler,
                timeout=f"{self.timeout_s}s",
                set_as_default=False,
            )
        except (OSError, TimeoutError, ValueError) as err:
            raise BanditConfigError(
                f"--scheduler: cannot reach the Dask scheduler at "
                f"{self.scheduler!r} within {self.timeout_s:g}s ({err}); nothing "
                "was run"
            ) from None
        try:
            client.wait_for_workers(1, timeout=self.timeout_s)
            from experiments.execute.tasks import worker_info

            infos = client.run(worker_info)
        except (OSError, TimeoutError) as err:
            client.close()
            raise BanditConfigError(
                f"--scheduler: the Dask scheduler at {self.scheduler!r} has no "
                f"worker ready within {self.timeout_s:g}s ({err}); nothing was run"
            ) from None
        except Exception as err:  # a worker cannot import the package
            client.close()
            raise BanditConfigError(
                f"--scheduler: Dask workers at {self.scheduler!r} cannot run "
                f"bandits tasks: {type(err).__name__}: {err}. Install this package "
                "on the workers; nothing was run"
            ) from None
        wrong = {w: i["devices"] for w, i in infos.items() if i["devices"] != 1}
        if wrong:
            client.close()
            raise BanditConfigError(
                f"--scheduler: Dask workers must have one JAX device each; "
                f"{len(wrong)} have more ({wrong}). Start them with "
                f"{SINGLE_DEVICE_ENV}=1 (and --nthreads 1); nothing was run"
            )
        self._client = client

    def run(self, specs: Sequence[dict[str, Any]]) -> Iterator[tuple[dict, dict]]:
        if not specs:
            return
        distributed = _import_distributed()
        self.check()
        assert self._client is not None  # check() connects or raises
        from experiments.execute.tasks import execute_task

        batch = uuid.uuid4().hex[:8]
        futures = {
            self._client.submit(
                execute_task, spec, key=f"bandits-{spec['task']}-{batch}", pure=False
            ): spec
            for spec in specs
        }
        try:
            for future in distributed.as_completed(
                list(futures), loop=self._client.loop
            ):
                yield futures[future], future.result()
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise BanditConfigError(
            "--executor dask needs Dask: pip install 'bandits[distributed]' "
            "(dask[distributed])"
        ) from None
    return distributed


def make_executor(
    name: str,
    scheduler: str | None = None,
    workers: int | None = None,
    timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> Executor:
    """The executor called `name` ("local" or "dask")."""
    if name == "local":
        if scheduler:
            raise BanditConfigError(
                "--scheduler is only used with --executor dask; drop it or add "
                "--executor dask"
            )
        return LocalExecutor(workers)
    if name == "dask":
        if workers is not None:
            raise BanditConfigError(
                "--workers is only used with --executor local (a Dask cluster "
                "has its own workers)"
            )
        return DaskExecutor(scheduler or "", timeout_s)
    raise BanditConfigError(
        f"--executor must be one of {', '.join(map(repr, EXECUTORS))}; got {name!r}"
    )
