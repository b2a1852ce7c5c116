"""Seeds of a run: the integers a user names, how each seed's key is used, and the
keys themselves (one per seed, sharded over the devices)."""

from __future__ import annotations

import operator
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bandits.validation import BanditConfigError, positive_int

SEED_KEYS = ("split", "direct")
"""How a seed's key is used: split into (problem instance, run) keys, or as the
run's key directly (see `run`)."""


def check_seed_key(seed_key: str, resample_params: bool) -> str:
    """`seed_key` if it is one of `SEED_KEYS` and fits `resample_params`."""
    if seed_key not in SEED_KEYS:
        raise BanditConfigError.about(
            "seed_key",
            f"must be one of {', '.join(map(repr, SEED_KEYS))}, got {seed_key!r}",
        )
    if seed_key == "direct" and resample_params:
        raise BanditConfigError.about(
            "seed_key",
            "'direct' leaves no key to draw a problem instance from; use 'split' "
            "with resample_params",
        )
    return seed_key


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """`seeds` as explicit integers: an int S means seeds 0..S-1."""
    if isinstance(seeds, int | np.integer) and not isinstance(seeds, bool):
        return list(range(positive_int("seeds", int(seeds))))
    try:
        values = [operator.index(s) for s in seeds]  # type: ignore[union-attr]
    except TypeError:
        raise BanditConfigError(
            f"seeds must be a positive integer or a list of integers, got {seeds!r}"
        ) from None
    if not values:
        raise BanditConfigError("seeds must not be empty")
    if any(s < 0 or s >= 2**32 for s in values):
        raise BanditConfigError(f"seeds must be integers in [0, 2**32), got {values}")
    return values


def seed_keys(seed_values: list[int]) -> jax.Array:
    """One key per seed, padded to a multiple of the device count and sharded.

    With several devices (e.g. `jax_num_cpu_devices`, set by `bandits` to the number
    of cores) the seed axis is split across them, so each core runs its own seeds.
    """
    devices = jax.local_devices()
    padded = list(seed_values)
    while len(padded) % len(devices):
        padded.append(seed_values[-1])
    keys = jax.vmap(jax.random.key)(jnp.asarray(padded, dtype=jnp.uint32))
    if len(devices) == 1:
        return keys
    mesh = jax.sharding.Mesh(np.asarray(devices), ("seeds",))
    return jax.device_put(
        keys, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seeds"))
    )
