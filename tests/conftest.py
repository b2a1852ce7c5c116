"""Suite-wide settings: a persistent XLA compilation cache.

Most of the suite's time is XLA compiling small simulations. The cache keeps each
compiled program on disk (keyed by the program, the jax/XLA versions and the XLA
flags, so a different CPU ISA or flag set compiles afresh), so a second `make test`
on the same machine compiles little. Subprocesses started by tests (the CLI smoke
runs, worker pools) inherit it through JAX_COMPILATION_CACHE_DIR.

Tests marked `slow` (tens of seconds each) are collected first, so that with
`pytest -n 2` both workers start on them and the short tests fill in around
them, instead of one long test running alone at the end.

Location: $BANDITS_TEST_CACHE, default ~/.cache/bandits/jax-tests; set it to "0"
to run without the cache. Results do not depend on it: a cached executable is the
one XLA would compile again.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

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


def pytest_collection_modifyitems(config, items):
    """Long tests first (stable order otherwise); see the module docstring."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
