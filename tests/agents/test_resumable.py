"""The progress file of a resumable training (`agents.resumable`): what it
accepts back, and how a training's settings are described."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from agents import resumable


@dataclasses.dataclass(frozen=True, eq=False)
class _Holder:
    table: np.ndarray
    name: str = "x"


def test_settings_tell_apart_arrays_that_print_alike():
    first = np.zeros(2000)
    second = first.copy()
    second[1000] = 1.0
    assert repr(first) == repr(second)  # NumPy elides the middle
    assert resumable.describe(_Holder(first)) != resumable.describe(_Holder(second))
    assert resumable.describe(_Holder(first)) == resumable.describe(_Holder(first + 0))


def test_a_progress_file_is_taken_back_only_for_its_settings_and_carry(tmp_path):
    path = tmp_path / "progress.npz"
    carry = (jnp.arange(3.0), {"count": jnp.zeros((), jnp.int32)})
    saved = resumable.Progress(path, {"seed": 1}, every_s=0.0)
    assert saved.save(4, carry, [np.ones(4, np.float32)], 2.5)
    done, back, curves, seconds = resumable.Progress(path, {"seed": 1}).restore(carry)
    assert (done, seconds) == (4, 2.5)
    np.testing.assert_array_equal(back[0], carry[0])
    assert back[1]["count"].dtype == jnp.int32
    np.testing.assert_array_equal(curves[0], np.ones(4, np.float32))
    assert resumable.Progress(path, {"seed": 2}).restore(carry) is None
    other = (jnp.arange(4.0), {"count": jnp.zeros((), jnp.int32)})
    assert resumable.Progress(path, {"seed": 1}).restore(other) is None
    path.write_bytes(path.read_bytes()[:50])
    assert resumable.Progress(path, {"seed": 1}).restore(carry) is None
    assert resumable.Progress(None, {"seed": 1}).restore(carry) is None
