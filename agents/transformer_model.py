"""The transformer reward model behind `agents.transformer` (Flax NNX modules).

One observation becomes a sequence of tokens

    [ c_1 .. c_F | h_1 .. h_H | a_1 .. a_K ]

  * context tokens c_f = W_f x_f + b_f, one per context field f (e.g. time of day,
    weekend, device, location, age band, region) with x_f that field's columns of
    `obs.context`;
  * history tokens h_j = W_h y_j + b_h + P_j (+ E[id_j], if the history rows
    carry the item id) for the user's last H interactions y_j (`obs.history`:
    item features, the click and, on `ContextualRec-Sequential-v0`, the item id),
    P_j a learned recency embedding; rows with `history_mask` False are padding;
  * candidate tokens a_k = W_a z_k + b_a (+ E[id_k], a learned item embedding, if
    the item id is observed) for the K candidates z_k (`obs.arms`). E is one
    table: a history row's id reads the same row E[id_j] as a candidate with
    that id, so attention can relate a candidate to the items just consumed
    (a complementary pair, say) from their ids.

A pre-norm transformer of `depth` blocks, x <- x + MHA(LN(x)),
x <- x + MLP(LN(x)), maps them to outputs. Padded history rows and unavailable
candidates are masked out as attention keys: their logits are set to -1e9, so
their softmax weight is exactly zero and no other token's output depends on
their content. The final layer norm of candidate token k is its embedding phi_k
(width D); the click head scores it, logit_k = w^T [phi_k, 1],
P(click | k) = sigmoid(logit_k). With `wide_cross` > 0 the head also reads
"wide" features, the item features and the context crossed with the first
`wide_cross` of them, logit_k = w^T [phi_k, 1, a_k[:m], vec(a_k[:c] x^T)] (the
wide-and-deep form of Cheng et al., 2016: the linear context x item model of
`agents.features` next to the transformer's embedding). A second head
reconstructs history rows from their outputs (the masked-history objective of
`agents.pretrain`).

Every dense layer and the item embedding can be built with int8 weights
(`agents.quantize`) for inference; the heads, norms and positional embeddings
stay float32.

References:
  Vaswani et al. (2017), "Attention is all you need", NeurIPS.
  Xiong et al. (2020), "On layer normalization in the transformer architecture",
  ICML (pre-norm blocks).
  Cheng et al. (2016), "Wide & deep learning for recommender systems", DLRS.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from agents.quantize import QuantizedWeight, check_quantization, int8_matmul
from bandits.types import Observation
from bandits.validation import BanditConfigError, non_negative_int, positive_int

MASKED_LOGIT = -1e9  # finite, so a fully masked row cannot produce NaN


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Static shapes and architecture of the transformer (Python ints only).

    Attributes:
      num_arms: candidates per observation K.
      context_fields: widths of the context fields, summing to d (one token each).
      arm_features: leading columns of `obs.arms` embedded as item features.
      arm_columns: total columns of `obs.arms` (>= arm_features; 0 means
        arm_features).
      history_length: H, rows of `obs.history` (0: the env has no history).
      history_features: p_h, columns of `obs.history`.
      num_items: item-embedding vocabulary N (0: no item embedding).
      id_column: column of `obs.arms` holding item id / (N - 1).
      history_id_column: column of `obs.history` holding the shown item's
        id / (N - 1); its embedding E[id_j] is added to history token j (None:
        the history rows are read only through W_h). Needs history and items.
      width: model width D.
      depth: transformer blocks.
      heads: attention heads (D must be divisible by it).
      mlp_ratio: hidden width of each block's MLP is mlp_ratio * D.
      quantization: "none", "int8" or "int8_dynamic" (see `agents.quantize`).
      wide_cross: c > 0 adds a "wide" linear part to the click head: the item
        features a_k[:m] and the context crossed with the first c of them,
        vec(a_k[:c] x^T), next to phi_k (0: none).
    """

    num_arms: int
    context_fields: tuple[int, ...]
    arm_features: int
    history_length: int
    history_features: int
    arm_columns: int = 0
    num_items: int = 0
    id_column: int = -1
    history_id_column: int | None = None
    width: int = 32
    depth: int = 2
    heads: int = 2
    mlp_ratio: int = 2
    quantization: str = "none"
    wide_cross: int = 0

    def __post_init__(self):
        positive_int("num_arms", self.num_arms)
        fields = tuple(self.context_fields)
        if not fields:
            raise BanditConfigError.about(
                "context_fields", "must list at least one width"
            )
        for i, w in enumerate(fields):
            positive_int(f"context_fields[{i}]", w)
        object.__setattr__(self, "context_fields", tuple(int(w) for w in fields))
        positive_int("arm_features", self.arm_features)
        non_negative_int("arm_columns", self.arm_columns)
        if self.arm_columns == 0:
            object.__setattr__(self, "arm_columns", self.arm_features)
        if self.arm_columns < self.arm_features:
            raise BanditConfigError.about(
                "arm_columns",
                f"must be >= arm_features ({self.arm_features}), got "
                f"{self.arm_columns}",
            )
        if self.num_items and not -self.arm_columns <= self.id_column < (
            self.arm_columns
        ):
            raise BanditConfigError.about(
                "id_column",
                f"must index one of the {self.arm_columns} arm columns, "
                f"got {self.id_column}",
            )
        non_negative_int("history_length", self.history_length)
        if self.history_length:
            positive_int("history_features", self.history_features)
        non_negative_int("num_items", self.num_items)
        self._check_history_id_column()
        for name in ("width", "depth", "heads", "mlp_ratio"):
            positive_int(name, getattr(self, name))
        if self.width % self.heads:
            raise BanditConfigError.about(
                "width", f"must be divisible by heads ({self.heads}), got {self.width}"
            )
        check_quantization(self.quantization)
        non_negative_int("wide_cross", self.wide_cross)
        if self.wide_cross > self.arm_features:
            raise BanditConfigError.about(
                "wide_cross",
                f"must be <= arm_features ({self.arm_features}), got {self.wide_cross}",
            )

    def _check_history_id_column(self) -> None:
        column = self.history_id_column
        if column is None:
            return
        field = "history_id_column"
        if isinstance(column, bool) or not isinstance(column, int | np.integer):
            raise BanditConfigError.about(
                field, f"must be an int column index or None, got {column!r}"
            )
        if not self.history_length or not self.num_items:
            raise BanditConfigError.about(
                field,
                "needs a history (history_length > 0) and an item embedding "
                f"(num_items > 0), got history_length={self.history_length}, "
                f"num_items={self.num_items}",
            )
        if not -self.history_features <= column < self.history_features:
            raise BanditConfigError.about(
                field,
                f"must index one of the {self.history_features} history columns, "
                f"got {column}",
            )
        object.__setattr__(self, field, int(column))

    @property
    def context_dim(self) -> int:
        """d, the length of `obs.context`."""
        return sum(self.context_fields)

    @property
    def num_tokens(self) -> int:
        return len(self.context_fields) + self.history_length + self.num_arms

    @property
    def wide_dim(self) -> int:
        """W, width of the wide part: m + c d (0 without one)."""
        if not self.wide_cross:
            return 0
        return self.arm_features + self.wide_cross * self.context_dim

    @property
    def embed_dim(self) -> int:
        """h = D + 1 + W: [phi_k, 1, wide_k], the click head's input."""
        return self.width + 1 + self.wide_dim

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TransformerConfig:
        values = json.loads(text)
        values["context_fields"] = tuple(values["context_fields"])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BanditConfigError(f"unknown transformer config keys {unknown}")
        return cls(**values)


class Dense(nnx.Module):
    """y = x W + b, with W in float32 or as int8 codes and per-column scales."""

    def __init__(
        self, n_in: int, n_out: int, *, quantization: str = "none", rngs: nnx.Rngs
    ):
        self.quantization = quantization
        init = nnx.initializers.lecun_normal()
        if quantization == "none":
            self.kernel = nnx.Param(init(rngs.params(), (n_in, n_out)))
        else:
            self.kernel_q = QuantizedWeight(jnp.zeros((n_in, n_out), jnp.int8))
            self.kernel_scale = QuantizedWeight(jnp.ones((n_out,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((n_out,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.quantization == "none":
            return x @ self.kernel[...] + self.bias[...]
        y = int8_matmul(
            x, self.kernel_q[...], self.kernel_scale[...], self.quantization
        )
        return y + self.bias[...]


class FieldEmbedding(nnx.Module):
    """One token per context field: c_f = x_f W_f + b_f, x_f the field's columns."""

    def __init__(
        self, fields: tuple[int, ...], width: int, quantization: str, rngs: nnx.Rngs
    ):
        F, d = len(fields), sum(fields)
        self.fields = fields
        self.quantization = quantization
        kernel = nnx.initializers.lecun_normal(in_axis=-2, out_axis=-1)(
            rngs.params(), (F, d, width)
        )
        # lecun_normal's fan-in here is d; each field only has w_f inputs.
        kernel = kernel * jnp.sqrt(d / jnp.asarray(fields, jnp.float32))[:, None, None]
        if quantization == "none":
            self.kernel = nnx.Param(kernel)
        else:
            self.kernel_q = QuantizedWeight(jnp.zeros((F, d, width), jnp.int8))
            self.kernel_scale = QuantizedWeight(jnp.ones((F, width), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((F, width), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        x_fields = jnp.asarray(field_selector(self.fields)) * x[None, :]  # (F, d)
        if self.quantization == "none":
            tokens = jnp.einsum("fd,fdw->fw", x_fields, self.kernel[...])
        else:  # weight-only in both int8 modes: the block is tiny
            codes = self.kernel_q[...].astype(jnp.float32)
            tokens = jnp.einsum("fd,fdw->fw", x_fields, codes)
            tokens = tokens * self.kernel_scale[...]
        return tokens + self.bias[...]


def field_selector(fields: tuple[int, ...]) -> np.ndarray:
    """(F, d) 0/1 matrix: row f selects the columns of context field f."""
    starts = np.cumsum((0, *fields[:-1]))
    selector = np.zeros((len(fields), sum(fields)), np.float32)
    for f, (start, w) in enumerate(zip(starts, fields, strict=True)):
        selector[f, start : start + w] = 1.0
    return selector


class Embedding(nnx.Module):
    """A lookup table E (N, D), in float32 or as int8 rows with per-row scales."""

    def __init__(self, num: int, width: int, quantization: str, rngs: nnx.Rngs):
        self.quantization = quantization
        if quantization == "none":
            table = 0.02 * jax.random.normal(rngs.params(), (num, width))
            self.table = nnx.Param(table)
        else:
            self.table_q = QuantizedWeight(jnp.zeros((num, width), jnp.int8))
            self.table_scale = QuantizedWeight(jnp.ones((num,), jnp.float32))

    def __call__(self, index: jax.Array) -> jax.Array:
        if self.quantization == "none":
            return self.table[...][index]
        return (
            self.table_q[...][index].astype(jnp.float32)
            * (self.table_scale[...][index][..., None])
        )


class SelfAttention(nnx.Module):
    """Multi-head self-attention with a key mask (masked keys get zero weight)."""

    def __init__(self, width: int, heads: int, quantization: str, rngs: nnx.Rngs):
        self.heads = heads
        self.qkv = Dense(width, 3 * width, quantization=quantization, rngs=rngs)
        self.out = Dense(width, width, quantization=quantization, rngs=rngs)

    def __call__(self, x: jax.Array, key_mask: jax.Array) -> jax.Array:
        S, D = x.shape
        dh = D // self.heads
        qkv = self.qkv(x).reshape(S, 3, self.heads, dh)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # (S, heads, dh)
        logits = jnp.einsum("qhd,khd->hqk", q, k) / jnp.sqrt(jnp.float32(dh))
        logits = jnp.where(key_mask[None, None, :], logits, MASKED_LOGIT)
        weights = jax.nn.softmax(logits, axis=-1)
        return self.out(jnp.einsum("hqk,khd->qhd", weights, v).reshape(S, D))


class Block(nnx.Module):
    """x <- x + MHA(LN(x)); x <- x + MLP(LN(x)) (pre-norm)."""

    def __init__(self, cfg: TransformerConfig, rngs: nnx.Rngs):
        D, quant = cfg.width, cfg.quantization
        self.attention_norm = nnx.LayerNorm(D, rngs=rngs)
        self.attention = SelfAttention(D, cfg.heads, quant, rngs)
        self.mlp_norm = nnx.LayerNorm(D, rngs=rngs)
        self.mlp_in = Dense(D, cfg.mlp_ratio * D, quantization=quant, rngs=rngs)
        self.mlp_out = Dense(cfg.mlp_ratio * D, D, quantization=quant, rngs=rngs)

    def __call__(self, x: jax.Array, key_mask: jax.Array) -> jax.Array:
        x = x + self.attention(self.attention_norm(x), key_mask)
        return x + self.mlp_out(jax.nn.gelu(self.mlp_in(self.mlp_norm(x))))


class RecTransformer(nnx.Module):
    """The token encoder, the transformer body and the two output heads.

    `click_head` scores candidates (logit_k); `history_head` reconstructs history
    rows from their outputs (the self-supervised objective of `agents.pretrain`).
    """

    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        D, quant = cfg.width, cfg.quantization
        self.context_embed = FieldEmbedding(cfg.context_fields, D, quant, rngs)
        self.candidate_embed = Dense(cfg.arm_features, D, quantization=quant, rngs=rngs)
        self.item_embed = (
            Embedding(cfg.num_items, D, quant, rngs) if cfg.num_items else None
        )
        if cfg.history_length:
            self.history_embed = Dense(
                cfg.history_features, D, quantization=quant, rngs=rngs
            )
            key_position, key_mask = jax.random.split(rngs.params())
            self.history_position = nnx.Param(
                0.02 * jax.random.normal(key_position, (cfg.history_length, D))
            )
            self.mask_token = nnx.Param(0.02 * jax.random.normal(key_mask, (D,)))
            self.history_head = Dense(D, cfg.history_features, rngs=rngs)
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.depth)])
        self.final_norm = nnx.LayerNorm(D, rngs=rngs)
        self.click_head = Dense(D + cfg.wide_dim, 1, rngs=rngs)

    def item_ids(self, arms: jax.Array) -> jax.Array:
        """Catalogue index of each candidate from the normalised id column, (K,)."""
        return self._catalogue_index(arms[:, self.cfg.id_column])

    def history_item_ids(self, history: jax.Array) -> jax.Array:
        """Catalogue index of each history row's item, (H,) (padding reads 0)."""
        assert self.cfg.history_id_column is not None
        return self._catalogue_index(history[:, self.cfg.history_id_column])

    def _catalogue_index(self, normalised: jax.Array) -> jax.Array:
        """round(id / (N - 1) * (N - 1)), clipped to [0, N - 1]."""
        N = self.cfg.num_items
        index = jnp.round(normalised * (N - 1)).astype(jnp.int32)
        return jnp.clip(index, 0, N - 1)

    def encode(
        self, obs: Observation, history_token_mask: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """Outputs for one observation: phi (K, D) and history outputs (H, D).

        Args:
          obs: one observation (no batch axis).
          history_token_mask: optional (H,) in [0, 1]; rows at 1 have their input
            (features and item embedding alike, so the id cannot leak) replaced
            by the learned mask token (masked-history prediction).
        """
        cfg = self.cfg
        arms = obs.arms.astype(jnp.float32)
        tokens = [self.context_embed(obs.context.astype(jnp.float32))]
        key_masks = [jnp.ones((len(cfg.context_fields),), bool)]
        if cfg.history_length:
            assert obs.history is not None and obs.history_mask is not None
            rows = obs.history.astype(jnp.float32)
            history = self.history_embed(rows)
            if cfg.history_id_column is not None:
                assert self.item_embed is not None
                history = history + self.item_embed(self.history_item_ids(rows))
            if history_token_mask is not None:
                m = history_token_mask[:, None]
                history = (1.0 - m) * history + m * self.mask_token[...]
            tokens.append(history + self.history_position[...])
            key_masks.append(obs.history_mask.astype(bool))
        candidates = self.candidate_embed(arms[:, : cfg.arm_features])
        if self.item_embed is not None:
            candidates = candidates + self.item_embed(self.item_ids(arms))
        tokens.append(candidates)
        key_masks.append(obs.mask.astype(bool))
        x = jnp.concatenate(tokens, axis=0)
        key_mask = jnp.concatenate(key_masks)
        for block in self.blocks:
            x = block(x, key_mask)
        x = self.final_norm(x)
        F, H = len(cfg.context_fields), cfg.history_length
        return x[F + H :], x[F : F + H]

    def wide(self, obs: Observation) -> jax.Array:
        """The wide features [a_k[:m], vec(a_k[:c] x^T)], (K, W) (W may be 0)."""
        cfg = self.cfg
        arms = obs.arms.astype(jnp.float32)[:, : cfg.arm_features]
        if not cfg.wide_cross:
            return arms[:, :0]
        context = obs.context.astype(jnp.float32)
        crossed = arms[:, : cfg.wide_cross, None] * context[None, None, :]
        return jnp.concatenate([arms, crossed.reshape(arms.shape[0], -1)], axis=1)

    def score(self, phi: jax.Array, obs: Observation) -> jax.Array:
        """Click logits from candidate outputs phi (K, D): w^T [phi_k, 1, wide_k]."""
        return self.click_head(jnp.concatenate([phi, self.wide(obs)], axis=1))[:, 0]

    def __call__(self, obs: Observation) -> jax.Array:
        """Click logits of the K candidates, (K,)."""
        phi, _ = self.encode(obs)
        return self.score(phi, obs)


def build_model(cfg: TransformerConfig, key: jax.Array) -> RecTransformer:
    """A freshly initialised model (quantised models start with zero codes)."""
    return RecTransformer(cfg, rngs=nnx.Rngs(params=key))


def split_model(cfg: TransformerConfig, key: jax.Array | int = 0):
    """`(graphdef, params)` of a fresh model: the static graph and its state."""
    key = jax.random.key(key) if isinstance(key, int) else key
    return nnx.split(build_model(cfg, key))


# ---------------------------------------------------------------------------
# Pure functions of (graphdef, params)


def logits(graphdef, params, obs: Observation) -> jax.Array:
    """Click logits of one observation's candidates, (K,)."""
    return nnx.merge(graphdef, params)(obs)


def embeddings(graphdef, params, obs: Observation) -> jax.Array:
    """[phi_k, 1, wide_k] for every candidate, (K, D + 1 + W)."""
    model = nnx.merge(graphdef, params)
    phi, _ = model.encode(obs)
    return jnp.concatenate([_with_bias(phi), model.wide(obs)], axis=1)


def head_of(params) -> jax.Array:
    """The click head as one vector w = [W[:D, 0], b, W[D:, 0]], (D + 1 + W,),
    so that logit_k = w^T embeddings_k."""
    head = params["click_head"]
    kernel = head["kernel"][...][:, 0]
    D = params["final_norm"]["scale"][...].shape[0]
    return jnp.concatenate([kernel[:D], head["bias"][...], kernel[D:]])


def _with_bias(phi: jax.Array) -> jax.Array:
    return jnp.concatenate([phi, jnp.ones((*phi.shape[:-1], 1), phi.dtype)], axis=-1)


def binary_cross_entropy(logit: jax.Array, label: jax.Array) -> jax.Array:
    """-[y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))], computed stably."""
    return optax.sigmoid_binary_cross_entropy(logit, label)


__all__ = [
    "MASKED_LOGIT",
    "Block",
    "Dense",
    "Embedding",
    "FieldEmbedding",
    "RecTransformer",
    "SelfAttention",
    "TransformerConfig",
    "binary_cross_entropy",
    "build_model",
    "embeddings",
    "field_selector",
    "head_of",
    "logits",
    "split_model",
]
