"""CPU back-end settings that make compiled simulations fast, applied on import.

1. Every CPU core becomes a JAX device, so `bandits.run` can shard the seed axis
   across cores (XLA runs one program per device, each on its own thread). This
   must happen before JAX initialises its backends; it is skipped if they already
   are, if the user set `jax_num_cpu_devices`, or if `BANDITS_CPU_DEVICES` is set
   (its value is the device count; "1" turns sharding off).
2. The threefry PRNG is lowered to straight-line code on CPU instead of a rolled
   5-iteration loop. The random numbers are bit-identical; a simulation draws keys
   every round, and the rolled loop costs more than the arithmetic. JAX chooses the
   rolled form on CPU only to shorten compile times. Set `BANDITS_FAST_PRNG=0` to
   keep JAX's default.
3. With `BANDITS_SYNC_DISPATCH=1`, CPU computations run on the calling thread
   instead of being handed to JAX's dispatch thread (`synchronous_dispatch`):
   for a process that serves one decision at a time (`agents.serving`), where
   the hand-over can cost as much as the arithmetic. Off by default: a
   simulation or an experiment gains from overlapping Python with the
   computation.
"""

from __future__ import annotations

import contextlib
import os

import jax


def _core_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def use_all_cores() -> None:
    """Sets `jax_num_cpu_devices` to the core count (capped at 8) if still possible."""
    requested = os.environ.get("BANDITS_CPU_DEVICES")
    count = int(requested) if requested else min(_core_count(), 8)
    if count <= 1 or getattr(jax.config, "jax_num_cpu_devices", -1) not in (-1, None):
        return
    # If the backends are already initialised, JAX refuses: keep the caller's choice.
    with contextlib.suppress(RuntimeError):
        jax.config.update("jax_num_cpu_devices", count)


def use_straight_line_threefry() -> bool:
    """Registers JAX's unrolled threefry lowering for CPU; returns whether it did.

    Relies on JAX internals, so any failure leaves JAX's default in place.
    """
    if os.environ.get("BANDITS_FAST_PRNG", "1") == "0":
        return False
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32

        mlir.register_lowering(
            threefry2x32.threefry2x32_p,
            threefry2x32._threefry2x32_lowering_rule,
            platform="cpu",
        )
    except (ImportError, AttributeError):
        return False
    return True


def synchronous_dispatch() -> None:
    """Runs JAX's CPU computations on the calling thread from now on.

    JAX creates its CPU client once, with the setting it has then, so this must
    come before the process's first computation; afterwards it raises
    `RuntimeError` rather than silently doing nothing."""
    try:  # a JAX internal: if it moves, the check is skipped
        from jax._src import xla_bridge

        initialized = xla_bridge.backends_are_initialized()
    except (ImportError, AttributeError):
        initialized = False
    if initialized:
        raise RuntimeError(
            "synchronous dispatch must be chosen before JAX's first computation "
            "in this process (its CPU client already exists): call "
            "agents.serving.synchronous_dispatch() first, or start the process "
            "with BANDITS_SYNC_DISPATCH=1"
        )
    jax.config.update("jax_cpu_enable_async_dispatch", False)


def configure() -> None:
    use_all_cores()
    use_straight_line_threefry()
    if os.environ.get("BANDITS_SYNC_DISPATCH", "0") == "1":
        with contextlib.suppress(RuntimeError):  # too late: keep JAX's setting
            synchronous_dispatch()


configure()
