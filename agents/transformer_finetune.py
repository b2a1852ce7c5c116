"""Fine-tuning the transformer policy online (`agents.transformer`): its replay
items, the click loss on them, Adam steps on replay mini-batches, and the
Bayesian head's precision refitted over the buffer after a fine-tuning step.

    loss(theta) = mean_i BCE(z_{a_i}(x_i; theta), r_i)     (played candidates)
    Sigma^{-1} = lambda_0 I + sum_i p_i (1 - p_i) phi_i phi_i^T,
    p_i = sigmoid(phi_i^T mu)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from agents.replay import replay_sample, replay_valid
from agents.transformer_model import (
    TransformerConfig,
    binary_cross_entropy,
    embeddings,
    logits,
)
from bandits.types import Observation


def buffer_item(obs: Observation, action, reward, cfg: TransformerConfig) -> dict:
    item = {
        "context": obs.context.astype(jnp.float32),
        "arms": obs.arms.astype(jnp.float32),
        "mask": obs.mask.astype(bool),
        "action": jnp.asarray(action, jnp.int32),
        "reward": jnp.asarray(reward, jnp.float32),
    }
    if cfg.history_length:
        assert obs.history is not None and obs.history_mask is not None
        item["history"] = obs.history.astype(jnp.float32)
        item["history_mask"] = obs.history_mask.astype(bool)
    return item


def observation_of(item: dict) -> Observation:
    return Observation(
        context=item["context"],
        arms=item["arms"],
        mask=item["mask"],
        history=item.get("history"),
        history_mask=item.get("history_mask"),
    )


def click_loss(graphdef, params, batch: dict, valid: jax.Array) -> jax.Array:
    """Mean binary cross-entropy of the played candidates' click logits."""
    z = jax.vmap(lambda item: logits(graphdef, params, observation_of(item)))(batch)
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


def refit_precision(graphdef, params, buffer, head, prior_precision):
    """Sigma^{-1} = lambda_0 I + sum_i p_i (1 - p_i) phi_i phi_i^T over the buffer."""
    items = buffer.items
    phi = jax.vmap(
        lambda item: embeddings(graphdef, params, observation_of(item))[item["action"]]
    )(items)
    p = jax.nn.sigmoid(phi @ head)
    w = replay_valid(buffer).astype(jnp.float32) * p * (1.0 - p)
    h = phi.shape[-1]
    precision = prior_precision * jnp.eye(h) + jnp.einsum("c,ch,cg->hg", w, phi, phi)
    return 0.5 * (precision + precision.T)
