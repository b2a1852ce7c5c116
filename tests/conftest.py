"""Suite-wide settings: a persistent XLA compilation cache.

Most of the suite's time is XLA compiling small simulations. The cache keeps each
compiled program on disk (keyed by the program, the jax/XLA versions and the XLA
flags, so a different CPU ISA or flag set compiles afresh), so a second `make test`
on the same machine compiles little. Subprocesses started by tests (the CLI smoke
runs, worker pools) inherit it through JAX_COMPILATION_CACHE_DIR.

Tests marked `slow` (tens of seconds each) are collected first, so that with
`pytest -n 2` both workers start on them and the short tests fill in around
them, instead of one long test running alone at the end.

Under pytest-xdist the experiment platform's local worker pools get the cores
left per test process ($BANDITS_WORKERS, 1 with `-n 2` on two cores), so that
two test processes do not each start a pool of one worker per core: those pools
would compile the same programs side by side on an oversubscribed machine.

Each compiled program a process holds costs it about 20 memory mappings, and
Linux allows 65,530 per process (vm.max_map_count): a pytest-xdist process that
ran half the suite held over 40,000 and crashed in XLA (segfault or abort while
loading a program). The in-memory compiled programs are therefore dropped after
every test module (`jax.clear_caches`, which releases their mappings, and keeps
the test processes' memory down); what the next module needs again comes back
from the persistent cache. (Dropping them only past half the limit, as the
platform's workers do, measured no faster: 10:43 against 10:00 for the suite.)

Location: $BANDITS_TEST_CACHE, default ~/.cache/bandits/jax-tests; set it to "0"
to run without the cache. Results do not depend on it: a cached executable is the
one XLA would compile again.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

from experiments.execute.executors import WORKERS_ENV, cpu_count

_CACHE = os.environ.get("BANDITS_TEST_CACHE") or str(
    Path.home() / ".cache" / "bandits" / "jax-tests"
)

if _CACHE != "0":
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    jax.config.update(
        "jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"]
    )
    jax.config.update(
        "jax_persistent_cache_min_compile_time_secs",
        float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
    )


if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _per_process = cpu_count() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault(WORKERS_ENV, str(max(1, _per_process)))


def pytest_runtest_teardown(item, nextitem):
    """Drops JAX's compiled programs at the end of each test module (see the
    module docstring)."""
    if nextitem is None or nextitem.path != item.path:
        jax.clear_caches()


def pytest_collection_modifyitems(config, items):
    """Long tests first (stable order otherwise); see the module docstring."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
