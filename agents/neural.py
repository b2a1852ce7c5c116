"""Neural bandits: epsilon-greedy, neural-linear, NeuralUCB, NeuralTS, ensembles.

Every agent here fits an MLP f(x; theta) (see `agents.networks`) to the rewards it has
seen, kept in a fixed-capacity replay ring buffer (`agents.replay`). Every
`train_every` rounds it takes `train_steps` Adam steps on mini-batches of
`batch_size` uniform replay samples, minimising

    L(theta) = mean_i w_i (f(x_i, a_i; theta) - r_i)^2
               + weight_decay ||theta - theta_0||^2

(theta_0: the initial parameters), inside one `lax.cond` so the simulation stays a
single compiled `scan`. The training options are one frozen `TrainConfig`
(`agents.networks`). Each agent composes the network with an exploration rule of
`agents.exploration`, handing it the network's belief about the arms:

  * `neural_epsilon_greedy`: `EpsilonGreedy(epsilon)` on the scores f_k.
  * `neural_linear`: Bayesian linear regression on the last hidden layer phi with a
    Normal-inverse-gamma posterior, Thompson sampling (Riquelme et al., 2018).
  * `neural_ucb`: `UCB(nu)` on `GaussianScores(f_k, sigma_k)`: f_k + nu sigma_k with
    sigma_k^2 = lambda sum_j g_kj^2 / Z_j, g_k the gradient of f_k, Z = lambda +
    sum of squared played gradients (diagonal form of Zhou et al., 2020).
  * `neural_ts`: `Thompson(nu)` on the same belief, a sample f_k + nu sigma_k z_k,
    z_k ~ N(0, 1) (diagonal form of Zhang et al., 2021).
  * `ensemble_sampling`, `bootstrapped_ensemble` (`agents.ensemble`, imported
    here so that this module registers every neural agent): M networks, one
    member drawn per round chooses greedily.

Every agent's `predict` (its reward model, for held-out evaluation and as an
off-policy reward model) is the network's scores f_k; neural-linear's is its
posterior mean phi_k^T mu, an ensemble's the mean of its members' scores.

During the first `initial_pulls * K` rounds every agent plays the arms round-robin
(`agents.networks.forced_pull`, and `forced_probs` for the propensities).

All factories take `num_arms`, `dim` and keyword hyperparameters; float
hyperparameters (learning rate, exploration scales, ...) may be traced, so a sweep is
a `vmap` over a function that builds the agent.

References:
  Riquelme, Tucker & Snoek (2018), "Deep Bayesian bandits showdown", ICLR.
  Zhou, Li & Gu (2020), "Neural contextual bandits with UCB-based exploration", ICML.
  Zhang, Zhou, Li & Gu (2021), "Neural Thompson sampling", ICLR.
  Lu & Van Roy (2017), "Ensemble sampling", NeurIPS.
  Osband & Van Roy (2015), "Bootstrapped Thompson sampling and deep exploration".
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from agents.ensemble import EnsembleState, bootstrapped_ensemble, ensemble_sampling
from agents.exploration import (
    UCB,
    EpsilonGreedy,
    GaussianScores,
    Thompson,
    sample_probs,
)
from agents.networks import (
    NeuralState,
    Setup,
    TrainConfig,
    fit_full_batch,
    fit_sgd_until_small,
    forced_probs,
    forced_pull,
    net_init,
    net_update,
    replay_item,
    setup_training,
)
from agents.neural_linear import BLRState, NeuralLinearState, neural_linear
from agents.registry import register
from agents.replay import maybe, replay_push, should_train
from bandits.types import Agent
from bandits.validation import choice, positive_int, real

Params = Any


class GradientState(NamedTuple):
    """NeuralUCB / NeuralTS: the network plus the diagonal of Z."""

    net: NeuralState
    precision_diag: Params  # leaves like params: Z = lambda + sum_t g_t * g_t


# ---------------------------------------------------------------------------
# Neural epsilon-greedy


@register("neural_epsilon_greedy")
def neural_epsilon_greedy(
    num_arms: int,
    dim: int,
    epsilon: float = 0.05,
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
    """Epsilon-greedy on a neural reward model, with exact action probabilities.

    pi(k | x) = epsilon / |allowed| + (1 - epsilon) 1[k = argmax_j f_j(x)].

    Args:
      num_arms: number of arms K.
      dim: input width (d for "context"/"disjoint", p for "arms").
      epsilon: exploration probability in [0, 1].
      features: input form, "context" (multi-head), "disjoint" or "arms".
      hidden_sizes: hidden layer widths (an int is one layer).
      learning_rate: Adam step size > 0.
      train_every: retrain every this many rounds.
      train_steps: mini-batch gradient steps per retraining.
      batch_size: replay rows per gradient step.
      capacity: replay buffer slots (the last `capacity` rounds are kept).
      max_grad_norm: global-norm gradient clipping (0: none).
      weight_decay: coefficient of ||theta - theta_0||^2 in the loss, >= 0.
      initial_pulls: round-robin pulls of each arm before the policy acts.

    References:
      Riquelme, Tucker & Snoek (2018), "Deep Bayesian bandits showdown", ICLR
      (the NeuralGreedy baselines).
    """
    setup = setup_training(num_arms, dim, TrainConfig.pick(locals()))
    real("epsilon", epsilon, low=0.0, high=1.0)
    network = setup.network

    def init(key):
        return net_init(key, setup)

    def action_probs(key, state, obs):
        del key
        # No exploration during the round-robin pulls.
        explore = state.step >= setup.initial_pulls * num_arms
        rule = EpsilonGreedy(jnp.where(explore, epsilon, 0.0), divide_last=True)
        probs = rule.probs(None, network.scores(state.params, obs), obs.mask)
        return forced_probs(state.step, setup.initial_pulls, num_arms, probs, obs.mask)

    def act(key, state, obs):
        return sample_probs(key, action_probs(None, state, obs))

    def update(key, state, obs, action, reward):
        return net_update(key, state, replay_item(setup, obs, action, reward), setup)

    def predict(state, obs):
        return network.scores(state.params, obs)

    return Agent(
        init,
        act,
        update,
        action_probs,
        name="neural_epsilon_greedy",
        predict=predict,
        **network.agent_shapes(),
    )


# ---------------------------------------------------------------------------
# Neural-linear


# ---------------------------------------------------------------------------
# NeuralUCB and NeuralTS (diagonal approximation)


def _squared_norm_over_z(grads: Params, precision_diag: Params) -> jax.Array:
    """sum_j g_kj^2 / Z_j for every arm k, (K,), from materialised per-arm
    gradients (leaves (K, ...)); the agents use the factorised
    `Network.arm_gradient_norms`, equal up to float rounding."""
    terms = [
        jnp.sum((g**2 / z).reshape(g.shape[0], -1), axis=1)
        for g, z in zip(
            jax.tree.leaves(grads), jax.tree.leaves(precision_diag), strict=True
        )
    ]
    return functools.reduce(operator.add, terms)


CONFIGS = ("fast", "paper")
# NeuralUCB also has "reference": the authors' released code (see `neural_ucb`).
UCB_CONFIGS = (*CONFIGS, "reference")
# The reference code's schedule: train after every round for the first 2,000
# rounds, then after every 100th (and store only the rounds it trains after).
REFERENCE_EVERY_ROUND_UNTIL = 2000
REFERENCE_TRAIN_EVERY = 100


def _gradient_agent(
    name: str,
    exploration: type[UCB] | type[Thompson],
    num_arms,
    dim,
    nu,
    regularization,
    train: TrainConfig,
    config: str,
    propensity_samples: int | None = None,
) -> Agent:
    """NeuralUCB (`exploration=UCB`) or NeuralTS (`Thompson`), the rule built with
    scale nu, on the belief N(f_k, sigma_k^2) of the network's gradient features
    (see `neural_ucb`). NeuralTS gets `action_probs` only with
    `propensity_samples` (Monte Carlo draws per call)."""
    choice("config", config, UCB_CONFIGS if exploration is UCB else CONFIGS)
    paper = config == "paper"
    reference = config == "reference"
    setup = setup_training(num_arms, dim, train)
    real("nu", nu, low=0.0)
    real("regularization", regularization, low=0.0, low_open=True)
    # The reference code's width is sqrt(lambda nu g^T Z^-1 g): nu inside the root.
    rule = exploration(nu**0.5 if reference else nu)
    network = setup.network
    # The papers scale the gradient features by 1/sqrt(m), m the network width.
    m = float(network.embed_dim) if paper else 1.0
    # NeuralTS: sigma^2 = lambda g^T Z^{-1} g / m; NeuralUCB: g^T Z^{-1} g / m.
    sampled = exploration is Thompson
    width_scale = regularization / m if (sampled or not paper) else 1.0 / m

    def init(key):
        net = net_init(key, setup)
        diag = jax.tree.map(lambda p: jnp.full_like(p, regularization), net.params)
        return GradientState(net, diag)

    def belief(state, obs) -> GaussianScores:
        params = state.net.params
        mean = network.scores(params, obs)
        norms = network.arm_gradient_norms(params, obs, state.precision_diag)
        return GaussianScores(mean, jnp.sqrt(width_scale * norms))

    def act(key, state, obs):
        action = rule.sample(key, belief(state, obs), obs.mask)
        step = state.net.step
        return forced_pull(step, setup.initial_pulls, num_arms, action, obs.mask)

    def action_probs(key, state, obs):
        probs = rule.probs(key, belief(state, obs), obs.mask)
        step = state.net.step
        return forced_probs(step, setup.initial_pulls, num_arms, probs, obs.mask)

    def update(key, state, obs, action, reward):
        item = replay_item(setup, obs, action, reward)
        g = network.taken_gradient(state.net.params, item["x"], item["action"])
        diag = jax.tree.map(lambda z, gi: z + gi * gi / m, state.precision_diag, g)
        if paper:
            del key
            net = _full_batch_update(state.net, item, setup, regularization)
        elif reference:
            net = _reference_update(key, state.net, item, setup, regularization)
        else:
            net = net_update(key, state.net, item, setup)
        return GradientState(net, diag)

    def predict(state, obs):
        # The belief's mean: the network's scores, without the exploration width.
        return network.scores(state.net.params, obs)

    probs_fn: Callable[..., jax.Array] | None = action_probs
    if sampled:
        if propensity_samples is None:
            # No propensities unless asked for: a Monte Carlo estimate costs
            # `propensity_samples` posterior draws per call.
            probs_fn = None
        else:
            draws = positive_int("propensity_samples", propensity_samples)
            # All draws from one belief (one gradient pass), as one batch.
            probs_rule = Thompson(nu, samples=draws, batched_probs=True)

            def probs_fn(key, state, obs):
                probs = probs_rule.probs(key, belief(state, obs), obs.mask)
                step = state.net.step
                return forced_probs(
                    step, setup.initial_pulls, num_arms, probs, obs.mask
                )

    return Agent(
        init,
        act,
        update,
        probs_fn,
        name=name,
        predict=predict,
        **network.agent_shapes(),
    )


def _full_batch_update(net: NeuralState, item, setup: Setup, regularization):
    """Stores the round; every `train_every` rounds TrainNN of the papers: full-batch
    gradient descent from theta_0 on every stored round."""
    net = net._replace(buffer=replay_push(net.buffer, item), step=net.step + 1)

    def train(net):
        params = fit_full_batch(
            setup.network, net.params0, net.buffer, setup.learning_rate,
            regularization, setup.train_steps,
        )  # fmt: skip
        return net._replace(params=params)

    return maybe(should_train(net.step, setup.train_every), train, net)


def _reference_update(key, net: NeuralState, item, setup: Setup, regularization):
    """NeuralUCB's reference code: on its schedule, store the round and train
    by `fit_sgd_until_small` from the current parameters (weight decay lambda);
    a round it does not train after is not stored."""
    step = net.step
    train_now = (step < REFERENCE_EVERY_ROUND_UNTIL) | (
        step % REFERENCE_TRAIN_EVERY == 0
    )

    def train(net):
        buffer = replay_push(net.buffer, item)
        params = fit_sgd_until_small(
            key, setup.network, net.params, buffer, setup.learning_rate,
            regularization,
        )  # fmt: skip
        return net._replace(params=params, buffer=buffer)

    net = maybe(train_now, train, net)
    return net._replace(step=step + 1)


@register("neural_ucb")
def neural_ucb(
    num_arms: int,
    dim: int,
    nu: float = 1.0,
    regularization: float = 1.0,
    features: str = "disjoint",
    hidden_sizes: Any = (100,),
    learning_rate: float = 1e-2,
    train_every: int = 50,
    train_steps: int = 50,
    batch_size: int = 64,
    capacity: int = 10_000,
    max_grad_norm: float = 5.0,
    weight_decay: float = 0.0,
    initial_pulls: int = 0,
    config: str = "fast",
) -> Agent:
    """NeuralUCB with a diagonal Z: play argmax_k f(x_k; theta) + nu sigma_k.

    With g_k = grad_theta f(x_k; theta) and the diagonal matrix

        Z = lambda + sum_{s < t} g_{s, a_s} * g_{s, a_s}       (elementwise),
        sigma_k^2 = lambda sum_j g_kj^2 / Z_j,

    which is lambda g^T Z^{-1} g with Z replaced by its diagonal. This "fast"
    configuration drops the paper's 1/m scaling (absorbed into nu, which holds
    only with lambda rescaled too) and its term toward theta_0, and trains by
    Adam on replay mini-batches; `config="paper"` is the paper's algorithm (see
    docs/results.md for the differences).

    Args:
      num_arms: number of arms K.
      dim: input width.
      nu: exploration scale >= 0 (gamma in the paper).
      regularization: lambda > 0.
      features: "disjoint" (the paper's encoding), "context" or "arms".
      hidden_sizes, learning_rate, train_every, train_steps, batch_size, capacity,
        max_grad_norm, weight_decay, initial_pulls: as in `neural_epsilon_greedy`.
      config: "fast" or "paper" (Algorithm 1: U = f + nu sqrt(g^T Z^{-1} g / m),
        Z = lambda I + sum g g^T / m diagonal, gradient descent from theta_0 on
        sum (f - r)^2 / 2 + m lambda ||theta - theta_0||^2 / 2; set
        `train_every=1`, `capacity` >= horizon for all data every round), or
        "reference": the authors' released code (`learner_diag.py`,
        `train.py`): U = f + sqrt(lambda nu g^T Z^{-1} g), Z = lambda I +
        sum g g^T diagonal (no 1/m), trained after every round for the first
        2,000 rounds and then every 100th (only those rounds stored), each time
        from the current parameters by SGD on one stored round at a time, step
        `learning_rate`, weight decay lambda toward 0, until a sweep's mean
        squared error is at most 1e-3 or 1,000 steps (`train_every`,
        `train_steps`, `batch_size`, `max_grad_norm` and `weight_decay` unused;
        the code's defaults are lambda = 0.001, nu = 1).

    References:
      Zhou, Li & Gu (2020), "Neural contextual bandits with UCB-based exploration",
      ICML, Algorithm 1 (diagonal approximation as in their experiments).
    """
    train = TrainConfig.pick(locals())
    return _gradient_agent(
        "neural_ucb", UCB, num_arms, dim, nu, regularization, train, config
    )


@register("neural_ts")
def neural_ts(
    num_arms: int,
    dim: int,
    nu: float = 0.1,
    regularization: float = 1.0,
    features: str = "disjoint",
    hidden_sizes: Any = (100,),
    learning_rate: float = 1e-2,
    train_every: int = 50,
    train_steps: int = 50,
    batch_size: int = 64,
    capacity: int = 10_000,
    max_grad_norm: float = 5.0,
    weight_decay: float = 0.0,
    initial_pulls: int = 0,
    config: str = "fast",
    propensity_samples: int | None = None,
) -> Agent:
    """NeuralTS with a diagonal Z: draw r_k ~ N(f(x_k; theta), nu^2 sigma_k^2).

    sigma_k^2 = lambda sum_j g_kj^2 / Z_j as in `neural_ucb`; the arm with the
    largest draw is played.

    Args:
      num_arms: number of arms K.
      dim: input width.
      nu: exploration (posterior) scale >= 0.
      regularization: lambda > 0.
      features: "disjoint" (the paper's encoding), "context" or "arms".
      hidden_sizes, learning_rate, train_every, train_steps, batch_size, capacity,
        max_grad_norm, weight_decay, initial_pulls: as in `neural_epsilon_greedy`.
      config: "fast" or "paper" (Algorithm 1: sigma^2 = lambda g^T U^{-1} g / m,
        U = lambda I + sum g g^T / m diagonal, training as in `neural_ucb`).
      propensity_samples: if given, the agent has `action_probs`: the frequency
        of each arm over this many posterior draws (standard error at most
        0.5 / sqrt(propensity_samples) per entry), for off-policy evaluation
        with NeuralTS as the target or logging policy. None (default): no
        `action_probs`.

    References:
      Zhang, Zhou, Li & Gu (2021), "Neural Thompson sampling", ICLR, Algorithm 1.
    """
    train = TrainConfig.pick(locals())
    return _gradient_agent(
        "neural_ts", Thompson, num_arms, dim, nu, regularization, train, config,
        propensity_samples,
    )  # fmt: skip


__all__ = [
    "BLRState",
    "EnsembleState",
    "GradientState",
    "NeuralLinearState",
    "NeuralState",
    "bootstrapped_ensemble",
    "ensemble_sampling",
    "neural_epsilon_greedy",
    "neural_linear",
    "neural_ts",
    "neural_ucb",
]
