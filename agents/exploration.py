"""Action selection shared by every agent.

`masked_argmax` is the greedy choice over the allowed arms; the linear, neural,
transformer, popularity and multi-armed agents all pick their arm with it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def masked_argmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """Index of the highest score among allowed arms (lowest index on ties).

    Args:
      scores: (K,) per-arm scores.
      mask: (K,) bool, True where the arm may be played (at least one).

    Returns:
      int32 scalar index of an allowed arm.
    """
    return jnp.argmax(jnp.where(mask, scores, -jnp.inf)).astype(jnp.int32)
