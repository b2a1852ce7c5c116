"""JAX's persistent compilation cache for the command line.

Most of a short run's wall time is XLA compiling its programs, and a second run
of the same config (into another folder, or after `--overwrite`) would compile
them all again. With the cache, every compiled program is kept on disk, keyed by
the program itself, the jax and XLA versions and the XLA flags (so another CPU
ISA or flag set compiles afresh), and the next process that needs it loads it
instead. Results do not depend on the cache: a cached executable is the one XLA
would compile again.

Where: `$BANDITS_COMPILE_CACHE` if set, else JAX's own
`$JAX_COMPILATION_CACHE_DIR` if set, else `$XDG_CACHE_HOME/bandits/jax`, else
`~/.cache/bandits/jax`. Delete the folder to clear it. Off: `bandits run
--no-compile-cache`, or `BANDITS_COMPILE_CACHE=0` (either also overrides
`$JAX_COMPILATION_CACHE_DIR`).

The setting goes into the environment (`JAX_COMPILATION_CACHE_DIR`), so the
worker processes the run spawns use the same cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

ENV_VAR = "BANDITS_COMPILE_CACHE"
OFF = ("0", "off", "false", "no")


def default_folder() -> Path:
    """The cache folder when `$BANDITS_COMPILE_CACHE` names none."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bandits" / "jax"


def enable(disabled: bool = False) -> Path | None:
    """Turns the cache on for this process and its children; returns its folder
    (None when disabled by the flag or the environment)."""
    chosen = os.environ.get(ENV_VAR, "")
    if disabled or chosen.strip().lower() in OFF:
        # Off also overrides JAX's own $JAX_COMPILATION_CACHE_DIR, here and in
        # the worker processes (they read the environment).
        os.environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax_own = os.environ.get("JAX_COMPILATION_CACHE_DIR", "")
    folder = Path(chosen or jax_own) if (chosen or jax_own) else default_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # an unwritable cache only costs compile time
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(folder)
    os.environ.pop("JAX_ENABLE_COMPILATION_CACHE", None)
    # Cache every program: the simulations compile in well under a second each,
    # below JAX's default threshold of one second, and there are many of them.
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return folder
