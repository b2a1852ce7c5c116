"""Post-training int8 quantisation of a policy network's weights, for inference.

Symmetric per-channel quantisation: a float weight block W is stored as int8 codes
q and one float32 scale per output channel,

    s_j = max_i |W_ij| / 127,    q_ij = clip(round(W_ij / s_j), -127, 127),
    W_ij ~= s_j q_ij,            |W_ij - s_j q_ij| <= s_j / 2,

so a matrix product needs no dequantised copy of W: x W ~= (x q) * s (the scale
of column j factors out of the sum over i). Two compute modes:

  * "int8" (weight-only): the product x q runs in float32 on the int8 codes
    converted on the fly; weights take a quarter of the memory.
  * "int8_dynamic" (weights and activations): each input row x is quantised on
    the fly with its own scale s_x = max_i |x_i| / 127, the product of int8 codes
    accumulates in int32 and is rescaled, y = (q_x q) s_x s (the "dynamic
    quantisation" of inference runtimes).

Layer norms, biases, positional embeddings and the output heads stay in float32.
Which blocks are quantised is decided by the model (its layers are built with a
`quantization` mode); `quantize_state` fills such a model's int8 variables from a
float model's parameters by name: a float `kernel` becomes `kernel_q` and
`kernel_scale` (scale over the contraction axis -2), a float `table` (embedding)
becomes `table_q` and `table_scale` (one scale per row).

References:
  Jacob et al. (2018), "Quantization and training of neural networks for
  efficient integer-arithmetic-only inference", CVPR (symmetric int8 with
  int32 accumulation).
  Krishnamoorthi (2018), "Quantizing deep convolutional networks for efficient
  inference: a whitepaper", arXiv:1806.08342 (per-channel weight scales,
  post-training dynamic quantisation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bandits.validation import BanditConfigError, choice

QUANTIZATIONS = ("none", "int8", "int8_dynamic")
INT8_MAX = 127.0


class QuantizedWeight(nnx.Variable):
    """An int8 code block or its float32 scales (not trained)."""


def quantize_symmetric(w: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
    """Symmetric int8 codes of `w` with one scale per slice along `axis` removed.

    Args:
      w: a float array.
      axis: the axis the scale is shared over (reduced), e.g. -2 for a kernel
        (in, out) (one scale per output channel) or -1 for an embedding table.

    Returns:
      `(q, scale)`: int8 codes shaped like `w`, and float32 scales with `axis`
      removed. An all-zero slice gets scale 1 (its codes are 0).
    """
    w = jnp.asarray(w, jnp.float32)
    scale = jnp.max(jnp.abs(w), axis=axis) / INT8_MAX
    scale = jnp.where(scale > 0, scale, 1.0)
    q = jnp.clip(jnp.round(w / jnp.expand_dims(scale, axis)), -INT8_MAX, INT8_MAX)
    return q.astype(jnp.int8), scale.astype(jnp.float32)


def dequantize(q: jax.Array, scale: jax.Array, axis: int) -> jax.Array:
    """s q: the float32 block that int8 codes `q` stand for."""
    return q.astype(jnp.float32) * jnp.expand_dims(scale, axis)


def int8_matmul(x: jax.Array, q: jax.Array, scale: jax.Array, mode: str) -> jax.Array:
    """x W for W ~= q * scale (per output column), in the given compute mode.

    Args:
      x: inputs (..., n_in), float32.
      q: int8 codes (n_in, n_out).
      scale: float32 scales (n_out,).
      mode: "int8" (float32 product on the codes) or "int8_dynamic" (int8 x int8
        product with int32 accumulation, per-row activation scales).

    Returns:
      (..., n_out) float32.
    """
    if mode == "int8":
        return (x @ q.astype(x.dtype)) * scale
    x_scale = jnp.max(jnp.abs(x), axis=-1, keepdims=True) / INT8_MAX
    x_scale = jnp.where(x_scale > 0, x_scale, 1.0)
    x_q = jnp.clip(jnp.round(x / x_scale), -INT8_MAX, INT8_MAX).astype(jnp.int8)
    acc = jax.lax.dot_general(
        x_q,
        q,
        (((x_q.ndim - 1,), (0,)), ((), ())),
        preferred_element_type=jnp.int32,
    )
    return acc.astype(jnp.float32) * x_scale * scale


def _path_key(path: tuple) -> tuple[Any, ...]:
    return tuple(path)


def quantize_state(float_state: nnx.State, target_state: nnx.State) -> nnx.State:
    """Fills a quantised model's state from a float model's state, by name.

    Every leaf of `target_state` is taken from `float_state` at the same path,
    except `<name>_q` / `<name>_scale` pairs, which are the int8 codes and scales
    of the float leaf `<name>` ("kernel": scale over axis -2; "table": axis -1).

    Args:
      float_state: the trained float32 parameters.
      target_state: the state of the same architecture built with a quantisation
        mode (its values are replaced; shapes and dtypes are checked).

    Returns:
      A state shaped like `target_state`.

    Raises:
      BanditConfigError: if a path is missing or a shape does not match.
    """
    source = {_path_key(p): v for p, v in nnx.to_flat_state(float_state)}
    flat = []
    for path, variable in nnx.to_flat_state(target_state):
        name = path[-1]
        value = None
        if isinstance(name, str) and (name.endswith("_q") or name.endswith("_scale")):
            base, part = name.rsplit("_", 1)
            axis = -1 if base == "table" else -2
            float_value = _lookup(source, (*path[:-1], base))
            q, scale = quantize_symmetric(float_value, axis)
            value = q if part == "q" else scale
        else:
            value = jnp.asarray(_lookup(source, path))
        expected = np.shape(variable.get_value())
        if value.shape != expected:
            raise BanditConfigError(
                f"parameter {'/'.join(map(str, path))} has shape {value.shape} in "
                f"the float model but {expected} in the quantised one"
            )
        flat.append((path, variable.replace(value)))
    return nnx.from_flat_state(flat)


def _lookup(source: Mapping, path: tuple) -> jax.Array:
    if path not in source:
        raise BanditConfigError(
            f"the float parameters have no {'/'.join(map(str, path))}; they do not "
            "come from the same architecture"
        )
    return source[path].get_value()


def parameter_bytes(state: nnx.State) -> int:
    """Bytes taken by the arrays of a model state."""
    return int(sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(state)))


def check_quantization(mode: str) -> str:
    """Validates a quantisation mode name."""
    return choice("quantization", mode, QUANTIZATIONS)


__all__ = [
    "QUANTIZATIONS",
    "QuantizedWeight",
    "check_quantization",
    "dequantize",
    "int8_matmul",
    "parameter_bytes",
    "quantize_state",
    "quantize_symmetric",
]
