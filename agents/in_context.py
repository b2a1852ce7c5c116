"""An in-context bandit policy: the Decision-Pretrained Transformer (DPT).

A causal transformer M_theta reads a query context x and an in-context dataset
D = ((x_1, a_1, r_1), ..., (x_n, a_n, r_n)) of past events and returns a
distribution over arms, M_theta(. | x, D). It is pretrained across many problem
instances tau (`agents.in_context_pretrain`) to predict the optimal arm of the
query context, a*_tau(x) = argmax_k mu_tau(x, k), by minimising

    L(theta) = E_tau E_{D, x} [ -1/(H + 1) sum_{j=0..H} log M_theta(a* | x, D_{1..j}) ],

D collected by a random behaviour policy, and it then acts on a NEW instance
without a gradient step: each round it samples a ~ M_theta(. | x_t, D_t) and
appends (x_t, a, r_t) to D_t (Lee et al. 2023, Algorithm 1 and its online
deployment).

The model. One token per position of the sequence

    [ q | e_1 .. e_H ],    q = W [x, 0, 0, 0] + P_0,
                           e_j = W [x_j, onehot(a_j), z_j, r_j] + P_j,

(z_j the chosen arm's features `obs.arms[a_j]`, empty when the env has none;
P a learned position embedding, as in GPT-2). Pre-norm blocks
x <- x + CausalMHA(LN(x)), x <- x + MLP(LN(x)); position j attends to positions
0..j only, so its output o_j depends on the query and the first j events. The
arm logits at j are

    l_j = W_o o_j + b_o  (+ Z W_z o_j  when arms have features Z (K, p)),

(with the "interactions" form, `TOKEN_FORMS`, the tokens also carry
per-arm reward-weighted contexts and the head adds a term bilinear in the
query context, l_j += C(o_j) x),

and the policy after n events samples from softmax(l_n) over the allowed arms.
The dense layers are `agents.transformer_model.Dense`; attention is causal here,
which `transformer_model.SelfAttention` (a key mask only) is not.

The agent's state is the in-context dataset: a fixed-size buffer of the last H
events with a validity mask (once full, the oldest event drops out). `update`
only appends to it; the parameters are closed over and never change.

Reference:
  Lee, Xie, Pacchiano, Chandak, Finn, Nachum & Brunskill (2023), "Supervised
  pretraining can learn in-context reinforcement learning", NeurIPS.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from agents.registry import register
from agents.transformer_model import MASKED_LOGIT, Dense
from bandits.types import Agent, Observation
from bandits.validation import (
    BanditConfigError,
    choice,
    non_negative_int,
    positive_int,
)

TOKEN_FORMS = ("paper", "interactions")
"""The model's form. "paper": event tokens [x, onehot(a), z, r] and a linear arm
head, as in Lee et al.; "interactions": tokens followed by onehot(a) (x)
(r [1, x]) and r z (per-arm reward-weighted contexts, whose sums are the ridge
statistics b_k = sum r x), and a head bilinear in the query context,
l_j += C(o_j) x with C(o_j) a (K, d) matrix linear in o_j. Both are hand-made
additions the paper does not use; they let a small model leave the loss plateau
at ln K within a CPU budget (docs/in_context.md)."""


@dataclasses.dataclass(frozen=True)
class InContextConfig:
    """Static shapes and architecture of the in-context model (Python ints).

    Attributes:
      num_arms: K.
      context_dim: d, the width of `obs.context`.
      arm_dim: p, the arm features the model reads: the first p columns of
        `obs.arms` rows (0: none).
      arm_columns: the width of `obs.arms` rows, when it is more than p (None:
        p). The recommendation envs end each row with the item's id, which a
        model must not read as a number: arm_dim = arm_columns - 1 leaves it out.
      horizon: H, events the model reads (the in-context buffer's length).
      width: model width D.
      depth: transformer blocks.
      heads: attention heads (D must be divisible by it).
      mlp_ratio: hidden width of each block's MLP is mlp_ratio * D.
      tokens: "paper": an event token is [x_j, onehot(a_j), z_j, r_j] (the
        paper's concatenation) and the head is linear; "interactions" adds the
        reward-weighted features onehot(a_j) (x) (r_j [1, x_j]) and r_j z_j
        and a head term bilinear in the query context (see `TOKEN_FORMS`).
    """

    num_arms: int
    context_dim: int
    arm_dim: int = 0
    arm_columns: int | None = None
    horizon: int = 200
    width: int = 32
    depth: int = 3
    heads: int = 2
    mlp_ratio: int = 4
    tokens: str = "paper"

    def __post_init__(self):
        positive_int("num_arms", self.num_arms)
        positive_int("dim", self.context_dim)
        non_negative_int("arm_dim", self.arm_dim)
        if self.arm_columns is not None:
            non_negative_int("arm_columns", self.arm_columns)
            if self.arm_columns < self.arm_dim:
                raise BanditConfigError.about(
                    "arm_columns",
                    f"must be at least arm_dim ({self.arm_dim}), got "
                    f"{self.arm_columns}",
                )
        positive_int("horizon", self.horizon)
        for name in ("width", "depth", "heads", "mlp_ratio"):
            positive_int(name, getattr(self, name))
        choice("tokens", self.tokens, TOKEN_FORMS)
        if self.width % self.heads:
            raise BanditConfigError.about(
                "width", f"must be divisible by heads ({self.heads}), got {self.width}"
            )

    @property
    def arm_width(self) -> int:
        """Columns of `obs.arms` (the model reads the first `arm_dim`)."""
        return self.arm_dim if self.arm_columns is None else self.arm_columns

    @property
    def token_dim(self) -> int:
        """Input width of one token: [x, onehot(a), z, r] (+ interactions)."""
        base = self.context_dim + self.num_arms + self.arm_dim + 1
        if self.tokens == "paper":
            return base
        return base + self.num_arms * (self.context_dim + 1) + self.arm_dim

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> InContextConfig:
        values = json.loads(text)
        if not isinstance(values, dict):
            raise BanditConfigError("the in-context config must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BanditConfigError(f"unknown in-context config keys {unknown}")
        return cls(**values)


class Events(NamedTuple):
    """An in-context dataset of H events (one stream; a batch adds a leading axis).

    Rows with `mask` False are empty (zeros) and are never read as events.
    """

    context: jax.Array  # (H, d)
    action: jax.Array  # (H,) int32
    arm: jax.Array  # (H, arm_width)  the chosen arm's row of obs.arms
    reward: jax.Array  # (H,)
    mask: jax.Array  # (H,) bool


class InContextState(NamedTuple):
    """The agent's state: the buffer of the last H events and how many it holds."""

    events: Events
    num_events: jax.Array  # () int32, valid events (<= H)


def empty_events(cfg: InContextConfig) -> Events:
    H = cfg.horizon
    return Events(
        context=jnp.zeros((H, cfg.context_dim), jnp.float32),
        action=jnp.zeros((H,), jnp.int32),
        arm=jnp.zeros((H, cfg.arm_width), jnp.float32),
        reward=jnp.zeros((H,), jnp.float32),
        mask=jnp.zeros((H,), bool),
    )


def append_event(state: InContextState, context, action, arm, reward):
    """The state with one event appended (the oldest dropped once H are held)."""
    events, count = state
    H = events.mask.shape[0]
    full = count >= H
    new = Events(
        context=jnp.asarray(context, jnp.float32),
        action=jnp.asarray(action, jnp.int32),
        arm=jnp.asarray(arm, jnp.float32),
        reward=jnp.asarray(reward, jnp.float32),
        mask=jnp.asarray(True),
    )
    index = jnp.minimum(count, H - 1)

    def put(buffer, value):
        shifted = jnp.where(full, jnp.roll(buffer, -1, axis=0), buffer)
        return shifted.at[index].set(value)

    events = jax.tree.map(put, events, new)
    return InContextState(events, jnp.minimum(count + 1, H).astype(jnp.int32))


class CausalSelfAttention(nnx.Module):
    """Multi-head self-attention where position i attends to positions <= i."""

    def __init__(self, width: int, heads: int, rngs: nnx.Rngs):
        self.heads = heads
        self.qkv = Dense(width, 3 * width, rngs=rngs)
        self.out = Dense(width, width, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        S, D = x.shape
        dh = D // self.heads
        qkv = self.qkv(x).reshape(S, 3, self.heads, dh)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        logits = jnp.einsum("qhd,khd->hqk", q, k) / jnp.sqrt(jnp.float32(dh))
        causal = jnp.tril(jnp.ones((S, S), bool))
        logits = jnp.where(causal[None], logits, MASKED_LOGIT)
        weights = jax.nn.softmax(logits, axis=-1)
        return self.out(jnp.einsum("hqk,khd->qhd", weights, v).reshape(S, D))


class CausalBlock(nnx.Module):
    """x <- x + CausalMHA(LN(x)); x <- x + MLP(LN(x)) (pre-norm)."""

    def __init__(self, cfg: InContextConfig, rngs: nnx.Rngs):
        D = cfg.width
        self.attention_norm = nnx.LayerNorm(D, rngs=rngs)
        self.attention = CausalSelfAttention(D, cfg.heads, rngs)
        self.mlp_norm = nnx.LayerNorm(D, rngs=rngs)
        self.mlp_in = Dense(D, cfg.mlp_ratio * D, rngs=rngs)
        self.mlp_out = Dense(cfg.mlp_ratio * D, D, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attention(self.attention_norm(x))
        return x + self.mlp_out(jax.nn.gelu(self.mlp_in(self.mlp_norm(x))))


class InContextTransformer(nnx.Module):
    """Token embedding, position embedding, causal blocks and the arm head."""

    def __init__(self, cfg: InContextConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        D = cfg.width
        self.embed = Dense(cfg.token_dim, D, rngs=rngs)
        self.position = nnx.Param(
            0.02 * jax.random.normal(rngs.params(), (cfg.horizon + 1, D))
        )
        self.blocks = nnx.List([CausalBlock(cfg, rngs) for _ in range(cfg.depth)])
        self.final_norm = nnx.LayerNorm(D, rngs=rngs)
        self.head = Dense(D, cfg.num_arms, rngs=rngs)
        self.arm_head = Dense(D, cfg.arm_dim, rngs=rngs) if cfg.arm_dim else None
        self.context_head = (
            Dense(D, cfg.num_arms * cfg.context_dim, rngs=rngs)
            if cfg.tokens == "interactions"
            else None
        )

    def tokens(self, context: jax.Array, events: Events) -> jax.Array:
        """The (H + 1, token_dim) inputs: the query, then the events."""
        cfg = self.cfg
        valid = events.mask.astype(jnp.float32)[:, None]
        seen = events.context.astype(jnp.float32)
        chosen = jax.nn.one_hot(events.action, cfg.num_arms)
        arm = events.arm[:, : cfg.arm_dim].astype(jnp.float32)
        reward = events.reward.astype(jnp.float32)[:, None]
        parts = [seen, chosen, arm, reward]
        if cfg.tokens == "interactions":
            weighted = reward * jnp.concatenate([jnp.ones_like(reward), seen], 1)
            per_arm = chosen[:, :, None] * weighted[:, None, :]
            parts += [per_arm.reshape(per_arm.shape[0], -1), reward * arm]
        rows = jnp.concatenate(parts, axis=1)
        query = jnp.zeros((1, cfg.token_dim), jnp.float32)
        query = query.at[0, : cfg.context_dim].set(context.astype(jnp.float32))
        return jnp.concatenate([query, valid * rows], axis=0)

    def __call__(
        self, context: jax.Array, arms: jax.Array, events: Events
    ) -> jax.Array:
        """Arm logits after every prefix of the events, (H + 1, K): row j reads
        the query and events 1..j."""
        x = self.embed(self.tokens(context, events)) + self.position[...]
        for block in self.blocks:
            x = block(x)
        x = self.final_norm(x)
        logits = self.head(x)
        if self.arm_head is not None:
            features = arms[:, : self.cfg.arm_dim].astype(jnp.float32)
            logits = logits + self.arm_head(x) @ features.T
        if self.context_head is not None:
            per_arm = self.context_head(x).reshape(x.shape[0], self.cfg.num_arms, -1)
            logits = logits + per_arm @ context.astype(jnp.float32)
        return logits


def build_model(cfg: InContextConfig, key: jax.Array) -> InContextTransformer:
    return InContextTransformer(cfg, rngs=nnx.Rngs(params=key))


def split_model(cfg: InContextConfig, key: jax.Array | int = 0):
    """`(graphdef, params)` of a freshly initialised model."""
    key = jax.random.key(key) if isinstance(key, int) else key
    return nnx.split(build_model(cfg, key))


def prefix_logits(graphdef, params, obs: Observation, events: Events) -> jax.Array:
    """Logits after every prefix, (H + 1, K), with disallowed arms at
    `MASKED_LOGIT` (they get zero probability)."""
    model = nnx.merge(graphdef, params)
    logits = model(obs.context, obs.arms, events)
    return jnp.where(obs.mask[None, :], logits, MASKED_LOGIT)


def _check_obs(cfg: InContextConfig, obs: Observation) -> None:
    """Shape checks against the architecture (static shapes, before compute)."""
    shapes = {
        "context": (obs.context.shape, (cfg.context_dim,)),
        "arms": (obs.arms.shape, (cfg.num_arms, cfg.arm_width)),
        "mask": (obs.mask.shape, (cfg.num_arms,)),
    }
    for name, (got, needed) in shapes.items():
        if tuple(got) != needed:
            raise BanditConfigError(
                f"obs.{name} has shape {tuple(got)}, the in-context model was "
                f"built for {needed} (num_arms, dim, arm columns)"
            )


def policy(cfg: InContextConfig, params: Any = None, *, name: str = "in_context"):
    """The in-context agent for an architecture and its (pretrained) parameters.

    `params=None` uses a fresh initialisation (seed 0): a valid but untrained
    policy. `act` samples from softmax(l_n) given the n events held, `action_probs`
    returns that distribution, `update` appends the event.
    """
    graphdef, fresh = split_model(cfg)
    params = fresh if params is None else params

    def init(key):
        del key
        return InContextState(empty_events(cfg), jnp.zeros((), jnp.int32))

    def action_probs(key, state, obs):
        del key
        _check_obs(cfg, obs)
        logits = prefix_logits(graphdef, params, obs, state.events)[state.num_events]
        return jax.nn.softmax(logits)

    def act(key, state, obs):
        _check_obs(cfg, obs)
        logits = prefix_logits(graphdef, params, obs, state.events)[state.num_events]
        return jax.random.categorical(key, logits).astype(jnp.int32)

    def update(key, state, obs, action, reward):
        del key
        _check_obs(cfg, obs)
        arm = obs.arms[action]
        return append_event(state, obs.context, action, arm, reward)

    return Agent(
        init,
        act,
        update,
        action_probs,
        name=name,
        num_arms=cfg.num_arms,
        context_dim=cfg.context_dim,
        arm_dim=cfg.arm_width or None,
    )


ARCHITECTURE_DEFAULTS = {
    "horizon": 200,
    "width": 32,
    "depth": 3,
    "heads": 2,
    "mlp_ratio": 4,
    "tokens": "paper",
}


@register("in_context")
def in_context(
    num_arms: int,
    dim: int,
    arm_dim: int = 0,
    arm_columns: int | None = None,
    horizon: int | None = None,
    width: int | None = None,
    depth: int | None = None,
    heads: int | None = None,
    mlp_ratio: int | None = None,
    tokens: str | None = None,
    checkpoint: str | None = None,
    params: Any = None,
) -> Agent:
    """In-context policy (Decision-Pretrained Transformer): samples the optimal arm
    from a pretrained model given the history; no gradient step while acting.

    Args:
      num_arms: K.
      dim: context dimension d.
      arm_dim: p, columns of `obs.arms` the model reads (0: none).
      arm_columns: the width of `obs.arms` rows, when more than p (None: p);
        the model reads the first p (`InContextConfig`).
      horizon: H, events held in context (the last H; older ones drop out).
      width, depth, heads, mlp_ratio: the architecture.
      tokens: the model's form, "paper" or "interactions" (`TOKEN_FORMS`).
      checkpoint: path of an `.npz` written by
        `agents.in_context_pretrain.save_checkpoint`. Its architecture is used;
        num_arms, dim and arm_dim must agree with it, and so must any of
        horizon, width, depth, heads, mlp_ratio, tokens that are given. None: an
        untrained (randomly initialised) model with the given architecture
        (defaults: `ARCHITECTURE_DEFAULTS`).
      params: pretrained parameters of the given architecture (as loaded by
        `agents.in_context_pretrain.load_checkpoint`), instead of `checkpoint`.

    References:
      Lee et al. (2023), "Supervised pretraining can learn in-context
      reinforcement learning", NeurIPS.

    Examples:
      >>> agent = in_context(num_arms=10, dim=2, horizon=200)
    """
    given = {
        "horizon": horizon,
        "width": width,
        "depth": depth,
        "heads": heads,
        "mlp_ratio": mlp_ratio,
        "tokens": tokens,
    }
    chosen: dict[str, Any] = {
        k: ARCHITECTURE_DEFAULTS[k] if v is None else v for k, v in given.items()
    }
    cfg = InContextConfig(num_arms, dim, arm_dim, arm_columns, **chosen)
    if checkpoint is not None and params is not None:
        raise BanditConfigError(
            "give the pretrained model as checkpoint or as params, not both"
        )
    if checkpoint is None:
        return policy(cfg, params)
    from agents.in_context_pretrain import load_checkpoint

    saved, params, _ = load_checkpoint(checkpoint)
    mine, theirs = dataclasses.asdict(cfg), dataclasses.asdict(saved)
    checked = ["num_arms", "context_dim", "arm_dim"]
    checked += [k for k, v in given.items() if v is not None]
    checked += ["arm_columns"] if arm_columns is not None else []
    diff = [f"{k}: given {mine[k]!r}, checkpoint {theirs[k]!r}" for k in checked]
    diff = [d for k, d in zip(checked, diff, strict=True) if mine[k] != theirs[k]]
    if diff:
        raise BanditConfigError(
            "the checkpoint's architecture differs from the arguments "
            f"({', '.join(diff)})"
        )
    return policy(saved, params)


__all__ = [
    "ARCHITECTURE_DEFAULTS",
    "TOKEN_FORMS",
    "CausalBlock",
    "CausalSelfAttention",
    "Events",
    "InContextConfig",
    "InContextState",
    "InContextTransformer",
    "append_event",
    "build_model",
    "empty_events",
    "in_context",
    "policy",
    "prefix_logits",
    "split_model",
]
