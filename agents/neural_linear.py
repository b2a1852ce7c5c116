"""Neural-linear Thompson sampling (Riquelme, Tucker & Snoek, 2018).

An MLP is fitted to the rewards (see `agents.networks`); on its last hidden layer
phi, one Bayesian linear regression per block (per arm for the "context" input
form, one shared otherwise) keeps an exact Normal-inverse-gamma posterior. The
posterior covariance is carried as a root R (R^T R = Lambda^{-1}) updated by
Potter's rank-one formula, so a round costs O(h^2) matrix products; after each
retraining every block is recomputed from the replay buffer with the new phi.

References:
  Riquelme, Tucker & Snoek (2018), "Deep Bayesian bandits showdown: an empirical
  comparison of Bayesian deep networks for Thompson sampling", ICLR.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from agents.exploration import masked_argmax
from agents.networks import (
    Network,
    NeuralState,
    TrainConfig,
    forced_pull,
    net_init,
    net_update,
    replay_item,
    setup_training,
)
from agents.registry import register
from agents.replay import ReplayBuffer, capacity_of, maybe, should_train
from bandits.linalg import inverse_factor, potter_update
from bandits.types import Agent
from bandits.validation import real


class BLRState(NamedTuple):
    """Normal-inverse-gamma posterior per block m of last-layer regressions."""

    root: jax.Array  # (M, h, h)  R_m with R_m^T R_m = Lambda_m^{-1}
    xty: jax.Array  # (M, h)  sum r phi
    mean: jax.Array  # (M, h)  mu_m = Lambda_m^{-1} sum r phi
    yty: jax.Array  # (M,)  sum r^2
    rounds: jax.Array  # (M,)  n_m, rounds in block m


class NeuralLinearState(NamedTuple):
    net: NeuralState
    blr: BLRState


def _blr_empty(num_blocks: int, h: int, lambda_prior) -> BLRState:
    eye = jnp.eye(h, dtype=jnp.float32)
    return BLRState(
        root=jnp.broadcast_to(eye / jnp.sqrt(lambda_prior), (num_blocks, h, h)),
        xty=jnp.zeros((num_blocks, h), jnp.float32),
        mean=jnp.zeros((num_blocks, h), jnp.float32),
        yty=jnp.zeros((num_blocks,), jnp.float32),
        rounds=jnp.zeros((num_blocks,), jnp.float32),
    )


def _blr_add(blr: BLRState, block, phi, reward) -> BLRState:
    """Adds one (phi, r) to block `block`: O(h^2) for that block only."""
    R, _ = potter_update(blr.root[block], phi)
    xty = blr.xty[block] + reward * phi
    return BLRState(
        root=blr.root.at[block].set(R),
        xty=blr.xty.at[block].set(xty),
        mean=blr.mean.at[block].set(R.T @ (R @ xty)),
        yty=blr.yty.at[block].add(reward * reward),
        rounds=blr.rounds.at[block].add(1.0),
    )


REFIT_ROWS = 512
"""Replay rows per chunk of the refit: only the chunks holding filled slots run."""


def _blr_sums(network: Network, params, buffer: ReplayBuffer):
    """Per block m: (sum phi phi^T (M, h, h), sum r phi (M, h), sum r^2 (M,),
    rounds (M,)) over the filled slots of `buffer`, with the current phi.

    Filled slots are 0..size-1 (every slot once the ring wraps), so the loop runs
    over the ceil(size / B) chunks of B = `REFIT_ROWS` rows that hold them
    (`size` counts up independently of the data: under `vmap` over seeds the trip
    count stays unbatched). The last chunk is shifted to end at the capacity when
    it would overrun it; rows an earlier chunk counted are masked out.
    """
    items = buffer.items
    capacity = capacity_of(buffer)
    rows = min(REFIT_ROWS, capacity)
    h, num_blocks = network.embed_dim, network.num_blocks

    def chunk(i, sums):
        start = jnp.minimum(i * rows, capacity - rows)
        index = start + jnp.arange(rows)
        valid = (index >= i * rows) & (index < buffer.size)
        part = jax.tree.map(
            lambda store: jax.lax.dynamic_slice_in_dim(store, start, rows), items
        )
        phi = jax.vmap(network.embed_taken, in_axes=(None, 0, 0))(
            params, part["x"], part["action"]
        )
        blocks = jax.vmap(network.block_of)(part["action"])
        w = jax.nn.one_hot(blocks, num_blocks) * valid[:, None]  # (B, M)
        r = part["reward"]
        gram, xty, yty, count = sums
        return (
            gram + jnp.einsum("cm,ch,cg->mhg", w, phi, phi),
            xty + jnp.einsum("cm,c,ch->mh", w, r, phi),
            yty + jnp.einsum("cm,c->m", w, r * r),
            count + w.sum(axis=0),
        )

    zeros = (
        jnp.zeros((num_blocks, h, h), jnp.float32),
        jnp.zeros((num_blocks, h), jnp.float32),
        jnp.zeros((num_blocks,), jnp.float32),
        jnp.zeros((num_blocks,), jnp.float32),
    )
    trips = (buffer.size + rows - 1) // rows
    return jax.lax.fori_loop(0, trips, chunk, zeros)


def _blr_refit(network: Network, params, buffer: ReplayBuffer, lambda_prior):
    """Recomputes every block's statistics from the buffer with the new phi.

    Lambda_m = lambda I + sum_i 1[m_i = m] phi_i phi_i^T over the stored rounds;
    R_m = L_m^{-1} from its Cholesky factor L_m, so R_m^T R_m = Lambda_m^{-1}.
    """
    gram, xty, yty, rounds = _blr_sums(network, params, buffer)
    h = gram.shape[-1]
    precision = lambda_prior * jnp.eye(h) + gram
    precision = 0.5 * (precision + jnp.swapaxes(precision, 1, 2))
    R = jax.vmap(inverse_factor)(precision)
    mean = jnp.einsum("mgh,mg->mh", R, jnp.einsum("mhg,mg->mh", R, xty))
    return BLRState(root=R, xty=xty, mean=mean, yty=yty, rounds=rounds)


def _blr_sample(key, blr: BLRState, a0, b0) -> jax.Array:
    """beta_m ~ NIG posterior: sigma^2 ~ IG(a_m, b_m), beta ~ N(mu_m, sigma^2 R^T R).

    a_m = a0 + n_m / 2,  b_m = b0 + (sum r^2 - mu_m^T Lambda_m mu_m) / 2, where
    mu_m^T Lambda_m mu_m = mu_m^T sum r phi.
    """
    key_gamma, key_normal = jax.random.split(key)
    num_blocks, h = blr.mean.shape
    a = a0 + 0.5 * blr.rounds
    fit_term = blr.yty - jnp.einsum("mh,mh->m", blr.mean, blr.xty)
    b = b0 + 0.5 * jnp.maximum(fit_term, 0.0)
    sigma2 = b / jax.random.gamma(key_gamma, a)
    z = jax.random.normal(key_normal, (num_blocks, h))
    u = jnp.einsum("mgh,mg->mh", blr.root, z)  # R_m^T z
    return blr.mean + jnp.sqrt(sigma2)[:, None] * u


@register("neural_linear")
def neural_linear(
    num_arms: int,
    dim: int,
    a0: float = 6.0,
    b0: float = 6.0,
    lambda_prior: float = 0.25,
    features: str = "context",
    hidden_sizes: Any = (50,),
    learning_rate: float = 1e-2,
    train_every: int = 50,
    train_steps: int = 100,
    batch_size: int = 512,
    capacity: int = 10_000,
    max_grad_norm: float = 5.0,
    weight_decay: float = 0.0,
    initial_pulls: int = 2,
) -> Agent:
    """Neural-linear Thompson sampling: Bayesian regression on the last hidden layer.

    Per block m (one per arm for "context", one shared otherwise) the model is
    r = phi(x)^T beta_m + eps, eps ~ N(0, sigma_m^2), with the Normal-inverse-gamma
    prior beta_m | sigma_m^2 ~ N(0, sigma_m^2 / lambda I), sigma_m^2 ~ IG(a0, b0).
    The posterior is exact given phi:

        Lambda_m = lambda I + Phi_m^T Phi_m,   mu_m = Lambda_m^{-1} Phi_m^T r_m,
        a_m = a0 + n_m / 2,   b_m = b0 + (r_m^T r_m - mu_m^T Lambda_m mu_m) / 2.

    Each round draws (sigma_m^2, beta_m) and plays argmax_k phi_k^T beta_{m(k)}; the
    played block gets a rank-one update. Every `train_every` rounds the network is
    retrained and all statistics are recomputed from the buffer with the new phi.
    Defaults follow the neural-linear configuration of the authors' released code
    as we read it (a0 = b0 = 6, lambda = 0.25, retrain every 50 rounds with 100
    steps of 512 rows, one hidden layer of 50 units, two initial pulls per arm),
    with Adam at a constant 1e-2 in place of its decayed RMSProp.

    Args:
      num_arms: number of arms K.
      dim: input width.
      a0: inverse-gamma shape a0 > 0.
      b0: inverse-gamma scale b0 > 0.
      lambda_prior: prior precision lambda > 0.
      features: "context", "disjoint" or "arms".
      hidden_sizes, learning_rate, train_every, train_steps, batch_size, capacity,
        max_grad_norm, weight_decay, initial_pulls: as in
        `agents.neural.neural_epsilon_greedy`.

    References:
      Riquelme, Tucker & Snoek (2018), "Deep Bayesian bandits showdown: an empirical
      comparison of Bayesian deep networks for Thompson sampling", ICLR, section 3.
    """
    setup = setup_training(num_arms, dim, TrainConfig.pick(locals()))
    real("a0", a0, low=0.0, low_open=True)
    real("b0", b0, low=0.0, low_open=True)
    real("lambda_prior", lambda_prior, low=0.0, low_open=True)
    network = setup.network
    blocks = network.arm_blocks()

    def init(key):
        net = net_init(key, setup)
        blr = _blr_empty(network.num_blocks, network.embed_dim, lambda_prior)
        return NeuralLinearState(net, blr)

    def act(key, state, obs):
        beta = _blr_sample(key, state.blr, a0, b0)  # (M, h)
        phi = network.embeddings(state.net.params, obs)  # (K, h)
        scores = jnp.einsum("kh,kh->k", phi, beta[blocks])
        action = masked_argmax(scores, obs.mask)
        step = state.net.step
        return forced_pull(step, setup.initial_pulls, num_arms, action, obs.mask)

    def update(key, state, obs, action, reward):
        item = replay_item(setup, obs, action, reward)
        phi = network.embed_taken(state.net.params, item["x"], item["action"])
        blr = _blr_add(state.blr, network.block_of(action), phi, item["reward"])
        net = net_update(key, state.net, item, setup)
        retrained = should_train(net.step, setup.train_every)

        def refit(blr):
            return _blr_refit(network, net.params, net.buffer, lambda_prior)

        return NeuralLinearState(net, maybe(retrained, refit, blr))

    def predict(state, obs):
        # The posterior mean phi_k^T mu_m(k) (the network's own head is not used
        # for acting, so neither is it here).
        phi = network.embeddings(state.net.params, obs)  # (K, h)
        return jnp.einsum("kh,kh->k", phi, state.blr.mean[blocks])

    return Agent(
        init,
        act,
        update,
        name="neural_linear",
        predict=predict,
        **network.agent_shapes(),
    )
