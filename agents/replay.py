"""A fixed-capacity replay ring buffer and the "act every step, train every N" clock.

Neural agents keep what they have seen in a ring buffer whose arrays have a static
shape (capacity, ...), so the whole simulation stays one `lax.scan`. Item i of the
stream goes to slot i mod capacity; once full, each push overwrites the oldest item.

The write position and fill level only ever count up, independently of the data, so
under `vmap` over seeds they stay unbatched. `should_train` builds its predicate from
such a counter, which keeps `lax.cond` a real branch under `vmap` (a batched
predicate would turn it into a `select` that trains on every step).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bandits.validation import positive_int

PyTree = Any


class ReplayBuffer(NamedTuple):
    """The last `capacity` items of a stream, in a ring."""

    items: PyTree  # leaves (capacity, ...)  slot i holds item n with n = i mod capacity
    position: jax.Array  # () int32  slot the next item goes to
    size: jax.Array  # () int32  number of filled slots, min(pushed, capacity)


def replay_init(example: PyTree, capacity: int) -> ReplayBuffer:
    """An empty buffer whose items are shaped like `example`.

    Args:
      example: one item (a pytree of arrays); only shapes and dtypes are used.
      capacity: number of slots C (a Python int).

    Returns:
      A `ReplayBuffer` with zero-filled leaves of shape (C, *leaf.shape).
    """
    capacity = positive_int("capacity", capacity)
    items = jax.tree.map(
        lambda leaf: jnp.zeros((capacity, *jnp.shape(leaf)), jnp.asarray(leaf).dtype),
        example,
    )
    zero = jnp.zeros((), jnp.int32)
    return ReplayBuffer(items=items, position=zero, size=zero)


def capacity_of(buffer: ReplayBuffer) -> int:
    """The static number of slots C."""
    return int(jax.tree.leaves(buffer.items)[0].shape[0])


def replay_push(buffer: ReplayBuffer, item: PyTree) -> ReplayBuffer:
    """Writes `item` over the oldest slot: O(size of one item)."""
    capacity = capacity_of(buffer)
    items = jax.tree.map(
        lambda store, x: store.at[buffer.position].set(jnp.asarray(x, store.dtype)),
        buffer.items,
        item,
    )
    return ReplayBuffer(
        items=items,
        position=(buffer.position + 1) % capacity,
        size=jnp.minimum(buffer.size + 1, capacity),
    )


def replay_ordered(buffer: ReplayBuffer) -> tuple[PyTree, jax.Array]:
    """The stored items oldest first, and which rows are filled.

    Returns:
      `(items, valid)`: leaves (C, ...) where rows 0..size-1 are the last `size`
      pushed items in push order, and `valid` (C,) bool marks those rows.
    """
    capacity = capacity_of(buffer)
    start = (buffer.position - buffer.size) % capacity
    index = (start + jnp.arange(capacity)) % capacity
    items = jax.tree.map(lambda store: store[index], buffer.items)
    return items, jnp.arange(capacity) < buffer.size


def replay_valid(buffer: ReplayBuffer) -> jax.Array:
    """(C,) bool: the filled slots, in slot order.

    Before the buffer wraps, items fill slots 0..size-1; after, every slot is filled.
    """
    return jnp.arange(capacity_of(buffer)) < buffer.size


def replay_sample(
    key: jax.Array, buffer: ReplayBuffer, batch_size: int
) -> tuple[PyTree, jax.Array]:
    """A uniform mini-batch of stored items, drawn with replacement.

    Args:
      key: PRNG key.
      buffer: the buffer; if empty, the rows are placeholders marked invalid.
      batch_size: number of rows B (a Python int).

    Returns:
      `(batch, valid)`: leaves (B, ...) and `valid` (B,) bool, all False only while
      the buffer is empty.
    """
    index = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    batch = jax.tree.map(lambda store: store[index], buffer.items)
    return batch, jnp.broadcast_to(buffer.size > 0, (batch_size,))


def should_train(step: jax.Array, train_every: int) -> jax.Array:
    """True on steps train_every, 2 train_every, ... (`step` counts updates done)."""
    return (step > 0) & (step % train_every == 0)


def maybe(predicate: jax.Array, fn, operand: PyTree) -> PyTree:
    """`fn(operand)` if `predicate` else `operand`, as one `lax.cond`."""
    return jax.lax.cond(predicate, fn, lambda x: x, operand)
