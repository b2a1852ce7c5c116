"""No worker process outlives the command that started it.

A `bandits run` killed with SIGKILL runs no clean-up; its spawned workers
(about 550 MB each) used to stay, re-parented to PID 1, until killed by hand.
Each worker now watches its parent's PID and exits within a poll interval of its
parent's death.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PARENT = """
import sys, time
from experiments.execute.executors import _pool
pool = _pool(2)
futures = [pool.submit(time.sleep, 120) for _ in range(2)]
while len(pool._processes) < 2:
    time.sleep(0.05)
print(" ".join(str(pid) for pid in pool._processes), flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """Running (a zombie left for an init that does not reap counts as gone)."""
    status = Path(f"/proc/{pid}/status")
    try:
        state = next(
            line for line in status.read_text().splitlines() if line.startswith("State")
        )
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return False
    return "zombie" not in state and "(Z)" not in state


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
def test_workers_exit_when_their_parent_is_killed():
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True
    )
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(pid) for pid in workers)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.2)
        survivors = [pid for pid in workers if _alive(pid)]
        assert not survivors, f"workers {survivors} outlived their parent"
    finally:
        parent.kill()
        for pid in workers if "workers" in locals() else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


STOPPED = """
import time
from experiments.execute.executors import _POOLS, _pool, stop_workers
pool = _pool(2)
for _ in range(2):
    pool.submit(time.sleep, 120)
while len(pool._processes) < 2:
    time.sleep(0.05)
processes = list(pool._processes.values())
stop_workers()
for process in processes:
    process.join(timeout=10)
print(len(_POOLS), *(int(process.is_alive()) for process in processes), flush=True)
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
def test_stop_workers_ends_busy_workers_at_once():
    """`bandits run` ends its workers with `stop_workers` when it is done (and
    starts them ahead with `prestart`). They end at once, even busy (here in a
    two-minute sleep, which an orderly shutdown would wait for): 10 s is the
    margin for a loaded machine."""
    out = subprocess.run(
        [sys.executable, "-c", STOPPED], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "0", "0"]


DIED_AHEAD = """
import os, signal, time
from experiments.execute.executors import _POOLS, LocalExecutor, RunFailedError
from experiments.execute.executors import prestart
prestart(1)
pool = _POOLS[1]
while len(pool._processes) < 1:
    time.sleep(0.05)
(pid,) = pool._processes
os.kill(pid, signal.SIGKILL)
while not pool._broken:  # the pool's manager thread notices the death
    time.sleep(0.05)
try:
    list(LocalExecutor(1).run([{"kind": "never run"}]))
except RunFailedError as err:
    print("refused:", err, flush=True)
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
def test_a_worker_that_died_before_the_run_submits_is_one_error_line():
    """`bandits run` starts its worker ahead (`prestart`); one killed before the
    run submits its first task (under load, the config check can take longer
    than a worker's life) ends the run with the executor's one-line error,
    not a `BrokenProcessPool` traceback from the submission."""
    out = subprocess.run(
        [sys.executable, "-c", DIED_AHEAD], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused: a local worker process died"), out.stdout
    assert "Traceback" not in out.stderr
