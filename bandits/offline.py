"""What off-policy evaluation needs besides the estimators: the target policy's
probabilities on logged contexts, reward models fitted on the logs with
cross-fitting, and replay evaluation of a learning agent.

Logged events come as arrays with a leading event axis n: an `Observation`
batch (`context` (n, d), `arms` (n, K, p), `mask` (n, K), optional history),
`action` (n,), `reward` (n,), `propensity` (n,). Everything here works on any
`Agent` through its protocol; nothing knows a concrete agent or env.

  policy_probs   pi(. | x_i) of an agent frozen at a state: its `action_probs`
                 where it has them, else a Monte Carlo frequency of `act` over
                 `samples` draws (Thompson sampling: the number of draws is the
                 accuracy knob, the error is at most 1 / (2 sqrt(samples))
                 per probability with high probability).
  ridge_model    per-arm ridge regression of the reward on a feature map;
                 `ridge_statistics` + `ridge_solve` fit it from X^T X and X^T r
                 summed over parts of a log too large to hold at once.
  logistic_model per-arm L2-regularised logistic regression (Newton steps).
  agent_model    any agent with `predict` as a reward model (fit = its updates
                 over the events, as a warm start does).
  cross_fit      reward_hat (n, K) where every event's row comes from a model
                 fitted on the other folds, so DM/DR never score an event with a
                 model that saw it.
  replay         Li, Chu, Langford & Wang (2011): run an agent through uniform
                 logs, keeping only the events where it chose the logged action
                 (it learns from those); `weighted=True` weights each kept event
                 by 1 / propensity, for logs of a non-uniform policy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bandits import linalg
from bandits.ope import Z_95, Estimate, mean_estimate
from bandits.simulation import PROGRAM_CACHE_SIZE
from bandits.types import Agent, Observation
from bandits.validation import BanditConfigError, positive_int, real

# ---------------------------------------------------------------------------
# Target policies


def policy_probs(
    agent: Agent,
    state: Any,
    observations: Observation,
    key: jax.Array,
    samples: int = 1000,
    batch_size: int = 1024,
) -> jax.Array:
    """pi(. | x_i) for every logged observation, (n, K), the agent frozen at `state`.

    Uses `agent.action_probs` when the agent has it; otherwise the frequency of
    each action over `samples` calls of `agent.act` with independent keys.
    """
    samples = positive_int("samples", samples)
    batch_size = positive_int("batch_size", batch_size)
    n = observations.mask.shape[0]
    num_arms = observations.mask.shape[1]
    keys = jax.random.split(key, n)
    program = _probs_program(agent, samples, batch_size, num_arms)
    return program(state, keys, observations)


@functools.lru_cache(maxsize=PROGRAM_CACHE_SIZE)
def _probs_program(agent: Agent, samples: int, batch_size: int, num_arms: int):
    """The jitted `policy_probs` of one agent (the state is an argument, so
    every state and every call with the same shapes reuse one program)."""
    if agent.action_probs is not None:

        def one(state, inputs):
            k, obs = inputs
            return agent.action_probs(k, state, obs)

    else:

        def one(state, inputs):
            k, obs = inputs
            draws = jax.vmap(lambda kk: agent.act(kk, state, obs))(
                jax.random.split(k, samples)
            )
            counts = jnp.zeros(num_arms).at[draws].add(1.0)
            return counts / samples

    def program(state, keys, observations):
        return jax.lax.map(
            functools.partial(one, state), (keys, observations), batch_size=batch_size
        )

    return jax.jit(program)


# ---------------------------------------------------------------------------
# Reward models


class RewardModel(NamedTuple):
    """A reward model: `fit(features, action, reward) -> params` and
    `predict(params, features) -> (n, K)`. `features` is (n, K, f): the feature
    vector the model reads for each (event, action) pair. The ridge and
    logistic models' `fit` also takes `weight` (n,), which multiplies each
    event's part of the objective (0/1 selects a subset of the events with
    static shapes, e.g. a cross-fitting fold)."""

    fit: Callable[..., Any]
    predict: Callable[[Any, jax.Array], jax.Array]
    name: str


def context_features(observations: Observation) -> jax.Array:
    """(n, K, d): every action reads the shared context (one model per arm)."""
    context = jnp.asarray(observations.context)
    k = observations.mask.shape[1]
    return jnp.broadcast_to(
        context[:, None, :], (context.shape[0], k, context.shape[1])
    )


def arm_features(observations: Observation) -> jax.Array:
    """(n, K, p): every action reads its own row of `arms` (one shared model)."""
    return jnp.asarray(observations.arms)


def _with_intercept(features):
    ones = jnp.ones((*features.shape[:-1], 1), features.dtype)
    return jnp.concatenate([features, ones], axis=-1)


class RidgeStatistics(NamedTuple):
    """Sufficient statistics of ridge regression with an intercept, one block
    per model (M = num_arms per arm, 1 shared). Sums over events, so the
    statistics of disjoint parts of a log add up to those of the whole."""

    gram: jax.Array  # (M, f+1, f+1)  X^T X of each model's events
    moment: jax.Array  # (M, f+1)      X^T r of each model's events


def ridge_statistics(
    features: jax.Array,
    action: jax.Array,
    reward: jax.Array,
    num_arms: int,
    shared: bool = False,
    weight: jax.Array | None = None,
) -> RidgeStatistics:
    """X^T X and X^T r of `ridge_model` over the events (pure, jittable).

    X holds each event's feature row of the taken action with an intercept 1;
    an event counts for its action's model (`shared=False`) or the one shared
    model. `weight` (n,), if given, multiplies each event's contribution (0/1
    selects a subset of the events with static shapes, e.g. a fold)."""
    X = _with_intercept(features)  # (n, K, f+1)
    taken = jnp.take_along_axis(X, action[:, None, None], axis=1)[:, 0]
    if shared:
        onehot = jax.nn.one_hot(jnp.zeros_like(action), 1, dtype=taken.dtype)
    else:
        onehot = jax.nn.one_hot(action, num_arms, dtype=taken.dtype)  # (n, M)
    if weight is not None:
        onehot = onehot * jnp.asarray(weight, taken.dtype)[:, None]
    gram = jnp.einsum("nm,ni,nj->mij", onehot, taken, taken)
    moment = jnp.einsum("nm,ni,n->mi", onehot, taken, reward)
    return RidgeStatistics(gram, moment)


def ridge_solve(statistics: RidgeStatistics, regularization: float) -> jax.Array:
    """theta (M, f+1) solving (lambda I + X^T X) theta = X^T r for each model."""
    gram, moment = statistics
    A = gram + regularization * jnp.eye(gram.shape[-1], dtype=gram.dtype)
    return jax.vmap(linalg.spd_solve)(A, moment)


def ridge_predict(theta: jax.Array, features: jax.Array, shared: bool) -> jax.Array:
    """(n, K) predictions of `ridge_model` with parameters theta (M, f+1)."""
    X = _with_intercept(features)
    if shared:
        return X @ theta[0]
    return jnp.einsum("nkf,kf->nk", X, theta)


def ridge_model(
    num_arms: int, regularization: float = 1.0, shared: bool = False
) -> RewardModel:
    """Ridge regression of the reward with an intercept: one model per arm on
    its feature row (`shared=False`) or one model over all arms (`shared=True`,
    for per-arm features). Each model solves lambda I + X^T X = X^T r directly
    (the intercept is regularised too), once per fit: no recursion to drift.

    `fit` is `ridge_solve` of `ridge_statistics`: a log too large to hold at
    once is fitted by adding the statistics of its parts and solving once."""
    num_arms = positive_int("num_arms", num_arms)
    lam = real("regularization", regularization, low=0.0, low_open=True)

    def fit(features, action, reward, weight=None):
        stats = ridge_statistics(features, action, reward, num_arms, shared, weight)
        return ridge_solve(stats, lam)  # (M, f+1)

    def predict(params, features):
        return ridge_predict(params, features, shared)

    return RewardModel(fit, predict, "ridge")


def logistic_model(
    num_arms: int,
    regularization: float = 1.0,
    shared: bool = False,
    newton_steps: int = 25,
) -> RewardModel:
    """L2-regularised logistic regression of a {0, 1} (or [0, 1]) reward with an
    intercept, per arm or shared as in `ridge_model`; `newton_steps` Newton
    iterations from zero (the objective is strictly convex, so a few tens reach
    float32 precision)."""
    num_arms = positive_int("num_arms", num_arms)
    lam = real("regularization", regularization, low=0.0, low_open=True)
    newton_steps = positive_int("newton_steps", newton_steps)

    def fit(features, action, reward, weight=None):
        X = _with_intercept(features)
        taken = jnp.take_along_axis(X, action[:, None, None], axis=1)[:, 0]
        f = taken.shape[1]
        count = 1 if shared else num_arms
        blocks = jnp.zeros_like(action) if shared else action
        onehot = jax.nn.one_hot(blocks, count, dtype=taken.dtype)  # (n, M)
        if weight is not None:
            onehot = onehot * jnp.asarray(weight, taken.dtype)[:, None]
        eye = jnp.eye(f)

        def newton(w, _):
            z = jnp.sum(onehot * (taken @ w.T), axis=1)  # (n,) each event's model
            p = jax.nn.sigmoid(z)
            grad = jnp.einsum("nm,ni,n->mi", onehot, taken, p - reward) + lam * w
            weight = p * (1.0 - p)
            hess = jnp.einsum("nm,ni,nj,n->mij", onehot, taken, taken, weight)
            step = jax.vmap(linalg.spd_solve)(hess + lam * eye, grad)
            return w - step, None

        w0 = jnp.zeros((count, f), taken.dtype)
        return jax.lax.scan(newton, w0, None, length=newton_steps)[0]

    def predict(params, features):
        X = _with_intercept(features)
        if shared:
            return jax.nn.sigmoid(X @ params[0])
        return jax.nn.sigmoid(jnp.einsum("nkf,kf->nk", X, params))

    return RewardModel(fit, predict, "logistic")


def agent_model(agent: Agent, key: jax.Array | None = None) -> RewardModel:
    """Any agent with `predict` as a reward model: `fit` runs `agent.update` over
    the events in order from `agent.init` (what a warm start does), `predict` is
    `agent.predict` on each event. Its `features` are the events' `Observation`
    batch (leading axis n), not an array."""
    if agent.predict is None:
        raise BanditConfigError(
            f"agent {agent.name!r} has no predict, so it cannot be a reward model"
        )
    key = jax.random.key(0) if key is None else key
    predict_one = agent.predict

    def fit(observations, action, reward):
        key_init, key_run = jax.random.split(key)

        def step(state, event):
            i, obs, a, r = event
            return agent.update(jax.random.fold_in(key_run, i), state, obs, a, r), None

        n = action.shape[0]
        events = (jnp.arange(n), observations, action, reward)
        return jax.lax.scan(step, agent.init(key_init), events)[0]

    def predict(state, observations):
        return jax.vmap(lambda obs: predict_one(state, obs))(observations)

    return RewardModel(fit, predict, f"agent {agent.name}")


def cross_fit(
    model: RewardModel,
    features: Any,
    action: jax.Array,
    reward: jax.Array,
    key: jax.Array,
    folds: int = 5,
) -> jax.Array:
    """reward_hat (n, K): each event's row from `model` fitted on the other folds
    (events assigned to `folds` folds at random with `key`). `folds=1` fits on
    every event and predicts them all (no cross-fitting). `features` is an array
    with a leading event axis, or a pytree of them (an `Observation` batch for
    `agent_model`)."""
    folds = positive_int("folds", folds)
    features = jax.tree.map(jnp.asarray, features)
    action = jnp.asarray(action, jnp.int32)
    reward = jnp.asarray(reward, jnp.float32)
    n = action.shape[0]
    if folds > n:
        raise BanditConfigError.about(
            "folds", f"must be at most the number of events ({n}), got {folds}"
        )
    if folds == 1:
        return model.predict(model.fit(features, action, reward), features)
    fold = jax.random.permutation(key, jnp.arange(n) % folds)
    fit = jax.jit(model.fit)
    predict = jax.jit(model.predict)
    out = None
    for f in range(folds):
        train = np.flatnonzero(np.asarray(fold != f))
        held = np.flatnonzero(np.asarray(fold == f))
        params = fit(_rows(features, train), action[train], reward[train])
        predicted = predict(params, _rows(features, held))
        if out is None:
            out = jnp.zeros((n, predicted.shape[1]), predicted.dtype)
        out = out.at[held].set(predicted)
    assert out is not None  # folds >= 2
    return out


def _rows(tree: Any, index: np.ndarray) -> Any:
    return jax.tree.map(lambda leaf: leaf[index], tree)


# ---------------------------------------------------------------------------
# Replay evaluation


class ReplayResult(NamedTuple):
    """Replay evaluation of one agent on one log."""

    estimate: Estimate  # the value of the agent as it learns
    accepted: jax.Array  # events where it chose the logged action
    events: int  # events in the log
    state: Any  # the agent's state after the replay


def replay(
    agent: Agent,
    key: jax.Array,
    observations: Observation,
    action: jax.Array,
    reward: jax.Array,
    propensity: jax.Array | None = None,
    *,
    weighted: bool = False,
    state: Any = None,
) -> ReplayResult:
    """Runs `agent` through the logged events in order; on every event where it
    picks the logged action it is credited the logged reward and learns from it.

    With uniform logs (Li et al. 2011) the accepted events are a sample of what
    the agent would have seen online, and the mean accepted reward estimates its
    online value. With `weighted=True` each accepted event counts
    1 / propensity (a self-normalised mean), which corrects for a non-uniform
    logging policy; with uniform logs it gives the same value. The interval is
    the normal one over accepted events (delta method when weighted).
    """
    action = jnp.asarray(action, jnp.int32)
    reward = jnp.asarray(reward, jnp.float32)
    n = int(action.shape[0])
    if n == 0:
        raise BanditConfigError("the logs hold no events (n = 0)")
    if weighted:
        if propensity is None:
            raise BanditConfigError.about("propensity", "is needed with weighted=True")
        p = np.asarray(propensity)
        bad = np.flatnonzero(~((p > 0) & (p <= 1)))
        if bad.size:
            raise BanditConfigError.about(
                "propensity", f"must be in (0, 1], got {p[bad[0]]!r} at event {bad[0]}"
            )
        weights = 1.0 / jnp.asarray(propensity, jnp.float32)
    else:
        weights = jnp.ones((n,), jnp.float32)
    key_init, key_run = jax.random.split(key)
    state = agent.init(key_init) if state is None else state

    @jax.jit
    def run(state, keys, observations, action, reward, weights):
        def step(state, event):
            k, obs, a, r, w = event
            k_act, k_update = jax.random.split(k)
            chosen = jnp.asarray(agent.act(k_act, state, obs), jnp.int32)
            match = chosen == a
            state = jax.lax.cond(
                match,
                lambda s: agent.update(k_update, s, obs, a, r),
                lambda s: s,
                state,
            )
            return state, (match, jnp.where(match, w, 0.0))

        return jax.lax.scan(step, state, (keys, observations, action, reward, weights))

    keys = jax.random.split(key_run, n)
    state, (match, kept) = run(state, keys, observations, action, reward, weights)
    accepted = jnp.sum(match)
    if int(accepted) < 2:
        raise BanditConfigError(
            f"replay accepted {int(accepted)} of {n} events: too few to estimate "
            "a value (the agent rarely chose the logged action)"
        )
    mask = np.asarray(match)
    r_kept = reward[mask]
    w_kept = kept[mask]
    if weighted:
        mean_w = jnp.mean(w_kept)
        value = jnp.sum(w_kept * r_kept) / jnp.sum(w_kept)
        influence = w_kept * (r_kept - value) / mean_w
        se = jnp.std(influence, ddof=1) / jnp.sqrt(r_kept.shape[0])
        estimate = Estimate(value, value - Z_95 * se, value + Z_95 * se, se)
    else:
        estimate = mean_estimate(r_kept)
    return ReplayResult(estimate, accepted, n, state)
