"""The context of `ContextualRec-v0` arrivals: clock, situation, demographics.

The situational context (time of day, weekend, location, device) is drawn from the
clock and small hand-chosen tables; `encode_context` turns it and the user's
demographics (age band, region) into the observed context vector. See
`docs/recommendation_env.md`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from envs.base import PyTreeData, pytree_dataclass

KNOWN_DEVICES = ("mobile", "desktop", "tablet", "tv")
KNOWN_LOCATIONS = ("home", "work", "travel")

# Illustrative situational-context tables (chosen by hand to look plausible, not
# fitted to data). Hour blocks: night [0, 6), morning [6, 9), day [9, 17),
# evening [17, 24). Columns follow KNOWN_LOCATIONS.
HOUR_BLOCK_EDGES = (6.0, 9.0, 17.0)
LOCATION_GIVEN_WEEKDAY = np.array(
    [
        [0.90, 0.05, 0.05],  # night
        [0.50, 0.20, 0.30],  # morning
        [0.20, 0.65, 0.15],  # day
        [0.75, 0.05, 0.20],  # evening
    ]
)
LOCATION_GIVEN_WEEKEND = np.array(
    [
        [0.90, 0.02, 0.08],
        [0.80, 0.05, 0.15],
        [0.55, 0.10, 0.35],
        [0.70, 0.05, 0.25],
    ]
)
# Rows follow KNOWN_LOCATIONS, columns KNOWN_DEVICES.
DEVICE_GIVEN_LOCATION = np.array(
    [
        [0.40, 0.15, 0.20, 0.25],  # home
        [0.30, 0.60, 0.07, 0.03],  # work
        [0.85, 0.02, 0.12, 0.01],  # travel
    ]
)
DAYS_PER_WEEK = 7
WEEKEND_DAYS = (5, 6)  # day-of-week index (day 0 is a Monday)


@pytree_dataclass
class Situation(PyTreeData):
    """The situational context of one arrival."""

    hour: jax.Array  # ()  time of day in [0, 24)
    weekend: jax.Array  # () bool
    device: jax.Array  # () int32  index into the configured devices
    location: jax.Array  # () int32  index into the configured locations


def inverse_cdf(cdf: jax.Array, u: jax.Array) -> jax.Array:
    """Index drawn by inverse-CDF sampling from uniforms `u`: #{j : cdf_j <= u}.

    O(log n) per draw (binary search), so drawing from 100,000 items stays cheap.
    """
    index = jnp.searchsorted(cdf, u, side="right")
    return jnp.minimum(index, cdf.shape[0] - 1).astype(jnp.int32)


def situational_tables(cfg) -> tuple[np.ndarray, np.ndarray]:
    """P(location | weekend, hour block) (2, 4, n_loc) and P(device | location).

    The tables for the known names are restricted to the configured names and
    renormalised.
    """
    loc_idx = [KNOWN_LOCATIONS.index(name) for name in cfg.locations]
    dev_idx = [KNOWN_DEVICES.index(name) for name in cfg.devices]
    location = np.stack([LOCATION_GIVEN_WEEKDAY, LOCATION_GIVEN_WEEKEND])[..., loc_idx]
    device = DEVICE_GIVEN_LOCATION[np.ix_(loc_idx, dev_idx)]
    location = location / location.sum(-1, keepdims=True)
    device = device / device.sum(-1, keepdims=True)
    return location.astype(np.float32), device.astype(np.float32)


def clock(t: jax.Array, steps_per_day: int) -> tuple[jax.Array, jax.Array]:
    """Day number (continuous) and weekend flag of step t."""
    day = t.astype(jnp.float32) / steps_per_day
    weekday = (t // steps_per_day) % DAYS_PER_WEEK
    weekend = (weekday == WEEKEND_DAYS[0]) | (weekday == WEEKEND_DAYS[1])
    return day, weekend


def sample_situation(
    u_hour: jax.Array, u_location: jax.Array, u_device: jax.Array, t: jax.Array, cfg
) -> Situation:
    """Time of day from the clock (with jitter), then location, then device.

    Args:
      u_hour, u_location, u_device: uniforms U(0, 1).
      t: the step (the clock).
      cfg: the static environment configuration.
    """
    location_table, device_table = situational_tables(cfg)
    slot = (t % cfg.steps_per_day).astype(jnp.float32)
    hour = 24.0 * (slot + u_hour) / cfg.steps_per_day
    hour = jnp.minimum(hour, jnp.float32(24.0 - 1e-4))
    _, weekend = clock(t, cfg.steps_per_day)
    block = jnp.searchsorted(jnp.asarray(HOUR_BLOCK_EDGES), hour, side="right")
    p_location = jnp.asarray(location_table)[weekend.astype(jnp.int32), block]
    location = inverse_cdf(jnp.cumsum(p_location), u_location)
    p_device = jnp.asarray(device_table)[location]
    device = inverse_cdf(jnp.cumsum(p_device), u_device)
    return Situation(hour=hour, weekend=weekend, device=device, location=location)


def encode_context(
    situation: Situation, age: jax.Array, region: jax.Array, cfg
) -> jax.Array:
    """The observed context vector, (d,) in [-1, 1].

    "onehot": [sin h, cos h, weekend, onehot(device), onehot(location),
    onehot(age band), onehot(region)]; "raw": the same with each categorical as
    index / (count - 1).
    """
    angle = 2.0 * jnp.pi * situation.hour / 24.0
    cyclic = [jnp.sin(angle)[None], jnp.cos(angle)[None]]
    weekend = situation.weekend.astype(jnp.float32)[None]
    parts = [
        (situation.device, len(cfg.devices)),
        (situation.location, len(cfg.locations)),
        (age, cfg.num_age_bands),
        (region, cfg.num_regions),
    ]
    if cfg.context_encoding == "onehot":
        coded = [jax.nn.one_hot(index, count) for index, count in parts]
    else:
        coded = [
            (index.astype(jnp.float32) / max(count - 1, 1))[None]
            for index, count in parts
        ]
    return jnp.concatenate([*cyclic, weekend, *coded]).astype(jnp.float32)


def context_dim(cfg) -> int:
    """Length d of the observed context vector."""
    return sum(context_fields(cfg))


def context_fields(cfg) -> tuple[int, ...]:
    """Widths of the context's fields, in order: time of day (sin, cos), weekend,
    device, location, age band, region (one-hot blocks, or one column each with
    `context_encoding="raw"`)."""
    counts = (len(cfg.devices), len(cfg.locations), cfg.num_age_bands, cfg.num_regions)
    if cfg.context_encoding == "onehot":
        return (2, 1, *counts)
    return (2, 1, 1, 1, 1, 1)
