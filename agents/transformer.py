"""A transformer bandit policy: a pretrained body, a Bayesian last layer, exploration.

The reward model is the transformer of `agents.transformer_model`: tokens for the
context fields, the behaviour history and the K candidates, a small pre-norm
transformer, and per candidate an embedding phi_k (width D) scored by a linear
head, P(click | k) = sigmoid(w^T [phi_k, 1]). The policy explores with the last
layer, the body serving as a feature extractor:

  * "ts": Thompson sampling from a Laplace posterior on w (neural-linear with a
    logistic likelihood). The prior is N(w_0, I / lambda_0) centred on the
    (pretrained) head; each round an extended-Kalman step updates it,

        Sigma <- (Sigma^{-1} + p (1 - p) phi phi^T)^{-1}   (Sherman-Morrison),
        w     <- w + Sigma phi (r - p),    p = sigmoid(w^T phi),

    and the policy plays argmax_k phi_k^T w~ with w~ ~ N(w, nu^2 Sigma). Sigma
    is kept as a root R (R^T R = Sigma) updated by Potter's formula, with the
    precision Sigma^{-1} summed with Kahan compensation and R re-factorised
    from it every `agents.ridge.REFACTOR_EVERY` rounds (exact in float32 over long
    runs, see docs/numerics.md); the K scores are drawn as Phi w + nu (Phi R^T) z,
    z ~ N(0, I_h), in O(K h^2) per round.
  * "ensemble": M heads, each such a filter on Poisson(1) bootstrap weights,
    started from draws of the prior; one head, drawn uniformly, plays greedily.
  * "epsilon": epsilon-greedy on the posterior mean w ("greedy": epsilon = 0).

With `finetune=True` the body and the click head are trained every `train_every`
rounds on the replay buffer (binary cross-entropy, Adam), after which the head
mean is reset to the trained head and Sigma is refitted from the buffer with the
new embeddings,

    Sigma = (lambda_0 I + sum_i p_i (1 - p_i) phi_i phi_i^T)^{-1};

with `finetune=False` the body stays frozen (and may be int8, `quantization`).

References:
  Riquelme, Tucker & Snoek (2018), "Deep Bayesian bandits showdown", ICLR
  (neural-linear Thompson sampling).
  Chapelle & Li (2011), "An empirical evaluation of Thompson sampling", NeurIPS
  (Laplace-approximated logistic Thompson sampling for click prediction).
  Lu & Van Roy (2017), "Ensemble sampling", NeurIPS.
  Osband, Blundell, Pritzel & Van Roy (2016), "Deep exploration via bootstrapped
  DQN", NeurIPS (online bootstrap weights).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from agents.exploration import masked_argmax
from agents.quantize import check_quantization, quantize_state
from agents.registry import register
from agents.replay import (
    ReplayBuffer,
    maybe,
    replay_init,
    replay_push,
    replay_sample,
    replay_valid,
    should_train,
)
from agents.ridge import REFACTOR_EVERY
from agents.transformer_model import (
    RecTransformer,
    TransformerConfig,
    binary_cross_entropy,
    build_model,
    embeddings,
    head_of,
    logits,
    split_model,
)
from bandits.linalg import compensated_add, inverse_factor, potter_update
from bandits.types import Agent, Observation
from bandits.validation import (
    BanditConfigError,
    choice,
    positive_int,
    real,
)

EXPLORATIONS = ("ts", "ensemble", "epsilon", "greedy")


class HeadState(NamedTuple):
    """Laplace posteriors of the last layer (M = 1 except for "ensemble")."""

    mean: jax.Array  # (M, h)  posterior means w_m
    root: jax.Array  # (M, h, h)  R_m with R_m^T R_m = Sigma_m
    precision: jax.Array  # (M, h, h)  Sigma_m^{-1}, Kahan sum
    precision_residual: jax.Array  # (M, h, h)  Kahan compensation


def _head_prior(mean: jax.Array, precision: jax.Array) -> HeadState:
    """Heads with means (M, h) sharing one precision matrix (h, h)."""
    M, h = mean.shape
    R = inverse_factor(precision)
    return HeadState(
        mean=mean,
        root=jnp.broadcast_to(R, (M, h, h)),
        precision=jnp.broadcast_to(precision, (M, h, h)),
        precision_residual=jnp.zeros((M, h, h), precision.dtype),
    )


def _head_refactor(head: HeadState) -> HeadState:
    """Every R_m recomputed from its compensated precision (resets rounding)."""
    R = jax.vmap(inverse_factor)(head.precision - head.precision_residual)
    return head._replace(root=R)


class TransformerState(NamedTuple):
    """Network parameters, optimiser state, head posteriors and the replay buffer."""

    params: Any  # nnx.State of the model
    opt_state: Any  # optax state of `params`
    head: HeadState
    buffer: ReplayBuffer  # observations, actions and rewards of recent rounds
    step: jax.Array  # () int32 rounds seen


def _buffer_item(obs: Observation, action, reward, cfg: TransformerConfig) -> dict:
    item = {
        "context": obs.context.astype(jnp.float32),
        "arms": obs.arms.astype(jnp.float32),
        "mask": obs.mask.astype(bool),
        "action": jnp.asarray(action, jnp.int32),
        "reward": jnp.asarray(reward, jnp.float32),
    }
    if cfg.history_length:
        item["history"] = obs.history.astype(jnp.float32)
        item["history_mask"] = obs.history_mask.astype(bool)
    return item


def _observation(item: dict) -> Observation:
    return Observation(
        context=item["context"],
        arms=item["arms"],
        mask=item["mask"],
        history=item.get("history"),
        history_mask=item.get("history_mask"),
    )


def _ekf_step(mean, R, precision, residual, phi, reward, weight):
    """One extended-Kalman (online Laplace) step of Bayesian logistic regression.

    Sigma^{-1} <- Sigma^{-1} + c phi phi^T with c = weight p (1 - p), and
    w <- w + weight Sigma phi (r - p), Sigma the updated covariance.
    """
    p = jax.nn.sigmoid(phi @ mean)
    curvature = weight * p * (1.0 - p)
    R, gain = potter_update(R, phi, curvature)
    precision, residual = compensated_add(
        precision, residual, curvature * jnp.outer(phi, phi)
    )
    mean = mean + weight * gain * (reward - p)
    return mean, R, precision, residual


def _check_exploration_args(
    exploration, nu, prior_precision, epsilon, ensemble_size, learning_rate
):
    choice("exploration", exploration, EXPLORATIONS)
    real("nu", nu, low=0.0)
    real("prior_precision", prior_precision, low=0.0, low_open=True)
    real("epsilon", epsilon, low=0.0, high=1.0)
    real("learning_rate", learning_rate, low=0.0, low_open=True)
    return positive_int("ensemble_size", ensemble_size)


@register("transformer")
def transformer(
    num_arms: int,
    dim: int,
    arm_features: int,
    arm_columns: int = 0,
    history_length: int = 0,
    history_features: int = 0,
    context_fields: Any = None,
    num_items: int = 0,
    id_column: int = -1,
    width: int = 32,
    depth: int = 2,
    heads: int = 2,
    mlp_ratio: int = 2,
    wide_cross: int = 0,
    exploration: str = "ts",
    nu: float = 1.0,
    prior_precision: float = 10.0,
    epsilon: float = 0.05,
    ensemble_size: int = 8,
    finetune: bool = True,
    train_every: int = 500,
    train_steps: int = 20,
    batch_size: int = 64,
    capacity: int = 1024,
    learning_rate: float = 1e-3,
    max_grad_norm: float = 1.0,
    quantization: str = "none",
    checkpoint: str | None = None,
    params: Any = None,
    propensity_samples: int = 256,
) -> Agent:
    """A transformer reward model with a Bayesian last layer (see module docstring).

    Args:
      num_arms: candidates per round K.
      dim: context dimension d.
      arm_features: leading columns of `obs.arms` used as item features (for
        `ContextualRec-*`: `env.item_dim`, leaving out the id column).
      arm_columns: total columns of `obs.arms` (0: `arm_features`).
      history_length: H rows of `obs.history` (0: ignore history).
      history_features: p_h columns of `obs.history`.
      context_fields: widths of the context fields, summing to `dim` (default:
        one field of width d).
      num_items: item-embedding vocabulary N (0: no item embedding).
      id_column: column of `obs.arms` holding item id / (N - 1).
      width, depth, heads, mlp_ratio: the architecture (D, blocks, heads, MLP
        expansion).
      wide_cross: c > 0 adds the wide part [a_k[:m], vec(a_k[:c] x^T)] to the
        click head (see `agents.transformer_model`; for `ContextualRec-*`,
        `env.num_categories` crosses the context with the category one-hot).
      exploration: "ts", "ensemble", "epsilon" or "greedy".
      nu: Thompson-sampling scale >= 0 (w~ ~ N(w, nu^2 Sigma)); also the spread
        of the ensemble's initial draws.
      prior_precision: lambda_0 > 0, precision of the prior N(w_0, I / lambda_0)
        around the (pretrained) head: trust in the pretrained head.
      epsilon: exploration probability of "epsilon".
      ensemble_size: heads M of "ensemble".
      finetune: train body and head on the replay buffer every `train_every`
        rounds (False: frozen body).
      train_every, train_steps, batch_size, capacity: retraining period, Adam
        steps per retraining, rows per step, replay slots.
      learning_rate: Adam step size > 0 for fine-tuning.
      max_grad_norm: global-norm gradient clipping (0: none).
      quantization: "none", "int8" or "int8_dynamic" (needs `finetune=False`:
        int8 weights are for inference only).
      checkpoint: path of a `.npz` checkpoint from `agents.pretrain` (its
        architecture replaces the shape arguments, which must agree).
      params: pretrained float parameters (an `nnx.State`), instead of a path.
      propensity_samples: posterior draws behind the Monte Carlo
        `action_probs` of "ts".

    References:
      See the module docstring.

    Examples:
      >>> agent = transformer(num_arms=20, dim=19, arm_features=13,
      ...                     history_length=10, history_features=14)
    """
    num_arms = positive_int("num_arms", num_arms)
    dim = positive_int("dim", dim)
    fields = (dim,) if context_fields is None else tuple(context_fields)
    cfg = TransformerConfig(
        num_arms=num_arms,
        context_fields=fields,
        arm_features=arm_features,
        arm_columns=arm_columns,
        history_length=history_length,
        history_features=history_features,
        num_items=num_items,
        id_column=id_column,
        width=width,
        depth=depth,
        heads=heads,
        mlp_ratio=mlp_ratio,
        quantization="none",
        wide_cross=wide_cross,
    )
    if cfg.context_dim != dim:
        raise BanditConfigError(
            f"context_fields must sum to dim ({dim}), got {fields} "
            f"(sum {cfg.context_dim})"
        )
    ensemble_size = _check_exploration_args(
        exploration, nu, prior_precision, epsilon, ensemble_size, learning_rate
    )
    check_quantization(quantization)
    if not isinstance(finetune, bool):
        raise BanditConfigError(f"finetune must be true or false, got {finetune!r}")
    if quantization != "none" and finetune:
        raise BanditConfigError(
            "quantization needs finetune=False: int8 weights are for inference only"
        )
    train_every = positive_int("train_every", train_every)
    train_steps = positive_int("train_steps", train_steps)
    batch_size = positive_int("batch_size", batch_size)
    capacity = positive_int("capacity", capacity)
    propensity_samples = positive_int("propensity_samples", propensity_samples)
    real("max_grad_norm", max_grad_norm, low=0.0)
    if checkpoint is not None and params is not None:
        raise BanditConfigError("give either checkpoint or params, not both")
    if checkpoint is not None:
        from agents.pretrain import load_checkpoint

        saved_cfg, params = load_checkpoint(checkpoint)
        _check_same_architecture(cfg, saved_cfg)

    return policy(
        cfg,
        params,
        exploration=exploration,
        nu=nu,
        prior_precision=prior_precision,
        epsilon=epsilon,
        ensemble_size=ensemble_size,
        finetune=finetune,
        train_every=train_every,
        train_steps=train_steps,
        batch_size=batch_size,
        capacity=capacity,
        learning_rate=learning_rate,
        max_grad_norm=max_grad_norm,
        quantization=quantization,
        propensity_samples=propensity_samples,
    )


def _check_same_architecture(cfg: TransformerConfig, saved: TransformerConfig):
    mine = dataclasses.asdict(cfg)
    theirs = dataclasses.asdict(dataclasses.replace(saved, quantization="none"))
    diff = {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
    if diff:
        details = ", ".join(
            f"{k}: given {a!r}, checkpoint {b!r}" for k, (a, b) in diff.items()
        )
        raise BanditConfigError(
            f"the checkpoint's architecture differs from the arguments ({details})"
        )


def policy(
    cfg: TransformerConfig,
    params: Any = None,
    *,
    exploration: str = "ts",
    nu: float = 1.0,
    prior_precision: float = 10.0,
    epsilon: float = 0.05,
    ensemble_size: int = 8,
    finetune: bool = True,
    train_every: int = 500,
    train_steps: int = 20,
    batch_size: int = 64,
    capacity: int = 1024,
    learning_rate: float = 1e-3,
    max_grad_norm: float = 1.0,
    quantization: str = "none",
    propensity_samples: int = 256,
    name: str | None = None,
) -> Agent:
    """The agent for a given architecture and (optional) pretrained parameters.

    `transformer(...)` validates its arguments and calls this; use it directly
    with a `TransformerConfig` and the `params` returned by `agents.pretrain`.
    `params=None` starts from a random initialisation drawn from the init key.
    """
    choice("exploration", exploration, EXPLORATIONS)
    float_cfg = dataclasses.replace(cfg, quantization="none")
    run_cfg = dataclasses.replace(cfg, quantization=quantization)
    graphdef, template = split_model(run_cfg)
    if quantization != "none":
        if params is None:
            raise BanditConfigError("quantization needs pretrained params")
        params = quantize_state(params, template)
    M = ensemble_size if exploration == "ensemble" else 1
    h = cfg.embed_dim
    eps = 0.0 if exploration == "greedy" else epsilon
    optimizer = _optimizer(learning_rate, max_grad_norm)
    example_item = _buffer_item(_zero_observation(cfg), 0, 0.0, cfg)

    def initial_params(key):
        if params is not None:
            return params
        return nnx.split(build_model(float_cfg, key))[1]

    def init(key):
        key_params, key_heads = jax.random.split(key)
        theta = initial_params(key_params)
        w0 = head_of(theta)
        mean = jnp.broadcast_to(w0, (M, h))
        if exploration == "ensemble":
            z = jax.random.normal(key_heads, (M, h))
            mean = mean + nu * z / jnp.sqrt(prior_precision)
        else:
            del key_heads
        return TransformerState(
            params=theta,
            opt_state=optimizer.init(theta) if finetune else (),
            head=_head_prior(mean, prior_precision * jnp.eye(h)),
            buffer=replay_init(example_item, capacity),
            step=jnp.zeros((), jnp.int32),
        )

    def phi_of(state, obs):
        return embeddings(graphdef, state.params, obs)

    def sample_scores(key, state, obs, phi):
        if exploration == "ts":
            # phi w~ with w~ = w + nu R^T z ~ N(w, nu^2 Sigma), O(K h^2)
            z = jax.random.normal(key, (h,))
            return phi @ (state.head.mean[0] + nu * (state.head.root[0].T @ z))
        if exploration == "ensemble":
            member = jax.random.randint(key, (), 0, M)
            return phi @ state.head.mean[member]
        return phi @ state.head.mean[0]

    def action_probs(key, state, obs):
        phi = phi_of(state, obs)
        if exploration == "ts":
            G = phi @ state.head.root[0].T  # (K, h), G G^T = phi Sigma phi^T
            z = jax.random.normal(key, (propensity_samples, h))
            scores = phi @ state.head.mean[0] + nu * z @ G.T
            actions = jax.vmap(masked_argmax, in_axes=(0, None))(scores, obs.mask)
            return jnp.mean(jax.nn.one_hot(actions, cfg.num_arms), axis=0)
        if exploration == "ensemble":
            actions = jax.vmap(masked_argmax, in_axes=(0, None))(
                state.head.mean @ phi.T, obs.mask
            )
            return jnp.mean(jax.nn.one_hot(actions, cfg.num_arms), axis=0)
        del key
        greedy = jax.nn.one_hot(
            masked_argmax(phi @ state.head.mean[0], obs.mask), cfg.num_arms
        )
        allowed = obs.mask.astype(jnp.float32)
        return eps * allowed / jnp.sum(allowed) + (1.0 - eps) * greedy

    def act(key, state, obs):
        if exploration in ("epsilon", "greedy"):
            key_probs, key_choice = jax.random.split(key)
            probs = action_probs(key_probs, state, obs)
            if exploration == "greedy":
                return jnp.argmax(probs).astype(jnp.int32)
            return jax.random.choice(key_choice, cfg.num_arms, p=probs).astype(
                jnp.int32
            )
        phi = phi_of(state, obs)
        return masked_argmax(sample_scores(key, state, obs, phi), obs.mask)

    def predict(state, obs):
        phi = phi_of(state, obs)
        return jnp.mean(jax.nn.sigmoid(phi @ state.head.mean.T), axis=-1)

    def update(key, state, obs, action, reward):
        key_boot, key_train = jax.random.split(key)
        phi = phi_of(state, obs)[action]
        reward = jnp.asarray(reward, jnp.float32)
        if exploration == "ensemble":
            weights = jax.random.poisson(key_boot, 1.0, (M,)).astype(jnp.float32)
        else:
            del key_boot
            weights = jnp.ones((M,), jnp.float32)
        head = HeadState(
            *jax.vmap(_ekf_step, in_axes=(0, 0, 0, 0, None, None, 0))(
                *state.head, phi, reward, weights
            )
        )
        step = state.step + 1
        head = jax.lax.cond(
            step % REFACTOR_EVERY == 0, _head_refactor, lambda hd: hd, head
        )
        state = state._replace(
            head=head,
            buffer=replay_push(state.buffer, _buffer_item(obs, action, reward, cfg)),
            step=step,
        )
        if not finetune:
            del key_train
            return state
        return maybe(
            should_train(state.step, train_every),
            lambda s: _retrain(key_train, s),
            state,
        )

    def _retrain(key, state):
        old_head = head_of(state.params)
        theta, opt_state = fit_click_model(
            key,
            graphdef,
            state.params,
            state.opt_state,
            state.buffer,
            optimizer,
            train_steps,
            batch_size,
        )
        new_head = head_of(theta)
        precision = _refit_precision(
            graphdef, theta, state.buffer, new_head, prior_precision
        )
        mean = (
            state.head.mean - old_head + new_head
            if exploration == "ensemble"
            else jnp.broadcast_to(new_head, (M, h))
        )
        return state._replace(
            params=theta, opt_state=opt_state, head=_head_prior(mean, precision)
        )

    probs_fn = action_probs
    return Agent(
        init,
        act,
        update,
        probs_fn,
        name=name or f"transformer_{exploration}",
        predict=predict,
    )


def _optimizer(learning_rate, max_grad_norm) -> optax.GradientTransformation:
    adam = optax.adam(learning_rate)
    if isinstance(max_grad_norm, int | float) and max_grad_norm == 0:
        return adam
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), adam)


def _zero_observation(cfg: TransformerConfig) -> Observation:
    """An all-zero observation with the configured shapes (for buffer layouts)."""
    K, H = cfg.num_arms, cfg.history_length
    return Observation(
        context=jnp.zeros((cfg.context_dim,), jnp.float32),
        arms=jnp.zeros((K, cfg.arm_columns), jnp.float32),
        mask=jnp.ones((K,), bool),
        history=jnp.zeros((H, cfg.history_features), jnp.float32) if H else None,
        history_mask=jnp.zeros((H,), bool) if H else None,
    )


def click_loss(graphdef, params, batch: dict, valid: jax.Array) -> jax.Array:
    """Mean binary cross-entropy of the played candidates' click logits."""
    z = jax.vmap(lambda item: logits(graphdef, params, _observation(item)))(batch)
    z_taken = jnp.take_along_axis(z, batch["action"][:, None], axis=1)[:, 0]
    loss = binary_cross_entropy(z_taken, batch["reward"])
    w = valid.astype(jnp.float32)
    return jnp.sum(w * loss) / jnp.maximum(jnp.sum(w), 1.0)


def fit_click_model(
    key, graphdef, params, opt_state, buffer, optimizer, num_steps, batch_size
):
    """`num_steps` Adam steps on uniform replay mini-batches, under `scan`."""

    def step(carry, key_step):
        params, opt_state = carry
        batch, valid = replay_sample(key_step, buffer, batch_size)
        grads = jax.grad(click_loss, argnums=1)(graphdef, params, batch, valid)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    keys = jax.random.split(key, num_steps)
    (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), keys)
    return params, opt_state


def _refit_precision(graphdef, params, buffer, head, prior_precision):
    """Sigma^{-1} = lambda_0 I + sum_i p_i (1 - p_i) phi_i phi_i^T over the buffer."""
    items = buffer.items
    phi = jax.vmap(
        lambda item: embeddings(graphdef, params, _observation(item))[item["action"]]
    )(items)
    p = jax.nn.sigmoid(phi @ head)
    w = replay_valid(buffer).astype(jnp.float32) * p * (1.0 - p)
    h = phi.shape[-1]
    precision = prior_precision * jnp.eye(h) + jnp.einsum("c,ch,cg->hg", w, phi, phi)
    return 0.5 * (precision + precision.T)


__all__ = [
    "EXPLORATIONS",
    "HeadState",
    "RecTransformer",
    "TransformerConfig",
    "TransformerState",
    "binary_cross_entropy",
    "build_model",
    "click_loss",
    "embeddings",
    "fit_click_model",
    "head_of",
    "logits",
    "policy",
    "split_model",
    "transformer",
]
