"""The replay ring buffer and the train-every-N clock (`agents.replay`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.replay import (
    capacity_of,
    maybe,
    replay_init,
    replay_ordered,
    replay_push,
    replay_sample,
    replay_valid,
    should_train,
)
from bandits.validation import BanditConfigError

EXAMPLE = {"x": jnp.zeros((2,)), "n": jnp.zeros((), jnp.int32)}


def _item(n: int) -> dict:
    return {"x": jnp.asarray([n, -n], jnp.float32), "n": jnp.asarray(n, jnp.int32)}


_push = jax.jit(replay_push)


@settings(max_examples=30, deadline=None)
@given(capacity=st.integers(1, 9), pushes=st.integers(0, 30))
def test_keeps_exactly_the_last_capacity_items_in_order(capacity, pushes):
    buffer = replay_init(EXAMPLE, capacity)
    for n in range(pushes):
        buffer = _push(buffer, _item(n))
    items, valid = replay_ordered(buffer)
    kept = min(pushes, capacity)
    expected = list(range(pushes - kept, pushes))
    assert int(buffer.size) == kept
    np.testing.assert_array_equal(np.asarray(valid), np.arange(capacity) < kept)
    np.testing.assert_array_equal(np.asarray(items["n"])[:kept], expected)
    np.testing.assert_array_equal(
        np.asarray(items["x"])[:kept],
        np.reshape([[n, -n] for n in expected], (kept, 2)),
    )
    # slot order: the filled slots are exactly the stored items
    stored = np.asarray(buffer.items["n"])[np.asarray(replay_valid(buffer))]
    assert sorted(stored.tolist()) == expected


def test_push_under_scan_matches_python_loop():
    def body(buffer, n):
        return replay_push(buffer, _item(n)), None

    scanned, _ = jax.lax.scan(body, replay_init(EXAMPLE, 4), jnp.arange(11))
    looped = replay_init(EXAMPLE, 4)
    for n in range(11):
        looped = replay_push(looped, _item(n))
    for a, b in zip(jax.tree.leaves(scanned), jax.tree.leaves(looped), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert capacity_of(scanned) == 4


def test_sample_draws_only_stored_items():
    buffer = replay_init(EXAMPLE, 16)
    for n in range(5):
        buffer = replay_push(buffer, _item(n + 100))
    batch, valid = replay_sample(jax.random.key(0), buffer, 200)
    assert bool(valid.all())
    values = set(np.asarray(batch["n"]).tolist())
    assert values == {100, 101, 102, 103, 104}  # 200 draws: all 5 seen w.p. ~1


def test_sample_from_empty_buffer_is_marked_invalid():
    batch, valid = replay_sample(jax.random.key(0), replay_init(EXAMPLE, 3), 4)
    assert not bool(valid.any())
    assert batch["x"].shape == (4, 2)


def test_capacity_must_be_positive():
    with pytest.raises(BanditConfigError, match="capacity"):
        replay_init(EXAMPLE, 0)


def test_should_train_schedule():
    steps = jnp.arange(0, 13)
    np.testing.assert_array_equal(
        np.asarray(should_train(steps, 4)),
        [s > 0 and s % 4 == 0 for s in range(13)],
    )


def test_counters_stay_unbatched_under_vmap_so_cond_is_not_a_select():
    """A batched predicate would make `lax.cond` evaluate both branches per step."""

    def update(buffer, x):
        buffer = replay_push(buffer, {"x": x, "n": jnp.asarray(0, jnp.int32)})
        return maybe(should_train(buffer.size, 2), lambda b: b, buffer)

    batched = jax.vmap(update, in_axes=(None, 0))
    jaxpr = str(jax.make_jaxpr(batched)(replay_init(EXAMPLE, 4), jnp.ones((3, 2))))
    assert "cond[" in jaxpr
