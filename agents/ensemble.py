"""Ensemble agents: M networks, one drawn per round to choose greedily.

  * `ensemble_sampling`: each member from its own prior draw, trained on its own
    perturbed rewards with a regulariser toward that draw (Lu & Van Roy, 2017);
    `EnsembleChoice(M)` (`agents.exploration`) picks the member, uniformly.
  * `bootstrapped_ensemble`: the same on Poisson(1) bootstrap weights without
    perturbations (bootstrapped Thompson sampling, Osband & Van Roy, 2015).

The networks, replay buffer and training options are those of the other neural
agents (`agents.neural`, `agents.networks`, `agents.replay`).

References:
  Lu & Van Roy (2017), "Ensemble sampling", NeurIPS.
  Osband & Van Roy (2015), "Bootstrapped Thompson sampling and deep exploration".
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from agents.exploration import (
    EnsembleChoice,
    MemberScores,
)
from agents.networks import (
    TrainConfig,
    empty_item,
    fit,
    forced_probs,
    forced_pull,
    replay_item,
    setup_training,
    squared_error_loss,
)
from agents.registry import register
from agents.replay import ReplayBuffer, maybe, replay_init, replay_push, should_train
from bandits.types import Agent
from bandits.validation import positive_int, real

Params = Any


class EnsembleState(NamedTuple):
    """M networks; params and opt_state leaves carry a leading (M,) axis."""

    params: Params  # leaves (M, ...)
    params0: Params  # leaves (M, ...)  each member's random prior draw
    opt_state: Any  # leaves (M, ...)
    buffer: ReplayBuffer  # items also hold weights (M,) and noise (M,)
    step: jax.Array  # () int32


def _ensemble_agent(
    name: str,
    setup,
    num_models: int,
    noise_std,
    bootstrap: bool,
    regularization,
) -> Agent:
    """M networks, one drawn uniformly per round to act greedily.

    Member m minimises mean_i w_im (f_m(x_i, a_i) - r_i - z_im)^2
    + regularization(n) ||theta_m - theta_m0||^2 over the buffer (n valid rows),
    with w_im ~ Poisson(1) if `bootstrap` else 1 and z_im ~ N(0, noise_std^2),
    both drawn once per stored round.
    """
    num_models = positive_int("num_models", num_models)
    real("noise_std", noise_std, low=0.0)
    rule = EnsembleChoice(num_models)
    network = setup.network
    num_arms = network.num_arms
    optimizer = setup.optimizer

    def init(key):
        params = jax.vmap(network.init)(jax.random.split(key, num_models))
        example = {
            **empty_item(setup),
            "weights": jnp.zeros((num_models,), jnp.float32),
            "noise": jnp.zeros((num_models,), jnp.float32),
        }
        return EnsembleState(
            params=params,
            params0=params,
            opt_state=jax.vmap(optimizer.init)(params),
            buffer=replay_init(example, setup.capacity),
            step=jnp.zeros((), jnp.int32),
        )

    def belief(state, obs) -> MemberScores:
        def member(m):
            params = jax.tree.map(lambda p: p[m], state.params)
            return network.scores(params, obs)

        def every():
            return jax.vmap(network.scores, in_axes=(0, None))(state.params, obs)

        return MemberScores(member, every)

    def act(key, state, obs):
        action = rule.sample(key, belief(state, obs), obs.mask)
        step = state.step
        return forced_pull(step, setup.initial_pulls, num_arms, action, obs.mask)

    def action_probs(key, state, obs):
        probs = rule.probs(key, belief(state, obs), obs.mask)
        step = state.step
        return forced_probs(step, setup.initial_pulls, num_arms, probs, obs.mask)

    def update(key, state, obs, action, reward):
        key_weights, key_noise, key_train = jax.random.split(key, 3)
        if bootstrap:
            weights = jax.random.poisson(key_weights, 1.0, (num_models,))
        else:
            del key_weights
            weights = jnp.ones((num_models,))
        item = {
            **replay_item(setup, obs, action, reward),
            "weights": weights.astype(jnp.float32),
            "noise": noise_std * jax.random.normal(key_noise, (num_models,)),
        }
        state = state._replace(
            buffer=replay_push(state.buffer, item), step=state.step + 1
        )
        coefficient = regularization(state.buffer.size)
        return maybe(
            should_train(state.step, setup.train_every),
            lambda s: _train_members(key_train, s, setup, coefficient),
            state,
        )

    def predict(state, obs):
        # The members' mean score: the ensemble's estimate of the expected reward.
        return jnp.mean(belief(state, obs).every(), axis=0)

    return Agent(
        init,
        act,
        update,
        action_probs,
        name=name,
        predict=predict,
        **network.agent_shapes(),
    )


def _train_members(key, state: EnsembleState, setup, coefficient) -> EnsembleState:
    """Every member's `train_steps` steps on its own weights and perturbations."""
    network = setup.network
    num_models = jax.tree.leaves(state.params)[0].shape[0]

    def train_member(key_m, params, params0, opt_state, m):
        def loss(p, batch, valid):
            return squared_error_loss(
                network,
                p,
                params0,
                batch,
                valid,
                coefficient,
                weights=batch["weights"][:, m],
                target_noise=batch["noise"][:, m],
            )

        return fit(
            key_m,
            params,
            opt_state,
            state.buffer,
            setup.optimizer,
            loss,
            setup.train_steps,
            setup.batch_size,
        )

    params, opt_state = jax.vmap(train_member)(
        jax.random.split(key, num_models),
        state.params,
        state.params0,
        state.opt_state,
        jnp.arange(num_models),
    )
    return state._replace(params=params, opt_state=opt_state)


@register("ensemble_sampling")
def ensemble_sampling(
    num_arms: int,
    dim: int,
    num_models: int = 10,
    noise_std: float = 0.1,
    prior_std: float = 1.0,
    features: str = "context",
    hidden_sizes: Any = (50,),
    learning_rate: float = 1e-2,
    train_every: int = 50,
    train_steps: int = 50,
    batch_size: int = 64,
    capacity: int = 10_000,
    max_grad_norm: float = 5.0,
    initial_pulls: int = 1,
) -> Agent:
    """Ensemble sampling (Lu & Van Roy, 2017): perturbed data and prior draws.

    Member m starts from its own prior draw theta_m0 (its random
    initialisation) and fits the rounds with its own reward perturbations
    z_im ~ N(0, sigma^2), drawn once per stored round, under the regularised
    least-squares objective of the paper,

        sum_i (f_m(x_i, a_i) - r_i - z_im)^2 / sigma^2
            + ||theta_m - theta_m0||^2 / sigma_0^2,

    minimised here in its mean form, mean_i (...)^2 + sigma^2 / (sigma_0^2 n)
    ||theta_m - theta_m0||^2 over the n stored rounds. Each round a member is
    drawn uniformly and its greedy arm is played, so
    pi(k | x) = (1/M) sum_m 1[k = argmax_j f_mj(x)] exactly (`action_probs`).
    The paper's linear model is a network here, fitted by `train_steps` Adam
    steps every `train_every` rounds on the last `capacity` rounds.

    Args:
      num_arms: number of arms K.
      dim: input width.
      num_models: ensemble size M.
      noise_std: sigma >= 0, the reward perturbation scale (the reward noise the
        model assumes).
      prior_std: sigma_0 > 0, the prior scale around each member's draw.
      features: "context", "disjoint" or "arms".
      hidden_sizes, learning_rate, train_every, train_steps, batch_size, capacity,
        max_grad_norm, initial_pulls: as in `neural_epsilon_greedy`.

    References:
      Lu & Van Roy (2017), "Ensemble sampling", NeurIPS, Algorithm 1.
    """
    setup = setup_training(num_arms, dim, TrainConfig.pick(locals()))
    real("prior_std", prior_std, low=0.0, low_open=True)
    ratio = (noise_std / prior_std) ** 2

    def regularization(n):
        return ratio / jnp.maximum(n, 1).astype(jnp.float32)

    return _ensemble_agent(
        "ensemble_sampling", setup, num_models, noise_std, False, regularization
    )


@register("bootstrapped_ensemble")
def bootstrapped_ensemble(
    num_arms: int,
    dim: int,
    num_models: int = 10,
    noise_std: float = 0.0,
    features: str = "context",
    hidden_sizes: Any = (50,),
    learning_rate: float = 1e-2,
    train_every: int = 50,
    train_steps: int = 50,
    batch_size: int = 64,
    capacity: int = 10_000,
    max_grad_norm: float = 5.0,
    weight_decay: float = 0.0,
    initial_pulls: int = 1,
) -> Agent:
    """A bootstrapped ensemble: M networks on Poisson(1)-reweighted data.

    Each stored round carries, per member m, an online-bootstrap weight
    w_m ~ Poisson(1) (and, if `noise_std` > 0, a reward perturbation
    z_m ~ N(0, noise_std^2)); member m minimises mean_i w_im (f_m(x_i, a_i) - r_i
    - z_im)^2 + weight_decay ||theta_m - theta_m0||^2. One member, drawn
    uniformly, plays greedily each round. With the defaults (no perturbation,
    no prior term) this is bootstrapped Thompson sampling, not ensemble sampling:
    the diversity comes from the resampling and the random initialisations only.
    This was `ensemble_sampling` before that name moved to the paper's method.

    Args:
      num_arms: number of arms K.
      dim: input width.
      num_models: ensemble size M.
      noise_std: reward perturbation scale >= 0 (0: bootstrap only).
      weight_decay: coefficient of ||theta_m - theta_m0||^2, >= 0.
      features, hidden_sizes, learning_rate, train_every, train_steps,
        batch_size, capacity, max_grad_norm, initial_pulls: as in
        `neural_epsilon_greedy`.

    References:
      Osband & Van Roy (2015), "Bootstrapped Thompson sampling and deep
      exploration"; Osband, Blundell, Pritzel & Van Roy (2016), "Deep exploration
      via bootstrapped DQN", NeurIPS (online bootstrap weights).
    """
    setup = setup_training(num_arms, dim, TrainConfig.pick(locals()))
    return _ensemble_agent(
        "bootstrapped_ensemble",
        setup,
        num_models,
        noise_std,
        True,
        lambda n: weight_decay,
    )


__all__ = ["EnsembleState", "bootstrapped_ensemble", "ensemble_sampling"]
