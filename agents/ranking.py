"""Context-free ranking bandits: slates of L items out of K with fixed attractions.

These agents ignore `obs.context` and `obs.arms` and keep per-item counts, as
`ucb1` does for single arms; they compete with the best fixed slate, so they
are the baselines of `LinearSlate-v0`'s contextual problem and the algorithms
of the context-free cascading-bandit experiments (`CascadeBernoulli-v0`).

    cascade_ucb1    CascadeUCB1 (Kveton et al. 2015)
    cascade_klucb   CascadeKL-UCB (Kveton et al. 2015)
    pbm_ucb         PBM-UCB with known examination probabilities (Lagree et al. 2016)

Each shows the L allowed items of largest index, largest first (ties to the
lower index), and is deterministic: `action_probs` is the (L, K) one-hot of its
slate and `slate_probability` is 1 for that slate, 0 for every other.

Cascade agents. A cascade user examines the slate from the top down to the
first click C (all L positions without a click); the items at positions
1..min(C, L) are observed, with weight 1 at C and 0 above, and the items below
are not (`agents.slate.cascade_observed`). With T(e) the number of observations
of item e, w_hat(e) their mean and t - 1 the number of finished rounds:

    CascadeUCB1:    U(e) = w_hat(e) + sqrt(1.5 log(t - 1) / T(e))
    CascadeKL-UCB:  U(e) = max{q in [w_hat(e), 1] :
                               T(e) KL(w_hat(e) || q) <= log(t - 1) + 3 log log(t - 1)}

KL is the Bernoulli divergence. The paper starts by observing one draw of every
item's weight before round 1; a bandit env offers no such draw, so an item not
observed yet has U = +inf instead: unobserved items are shown first (lowest
index first), exactly as `ucb1` plays every arm once. The log log term counts
from t - 1 >= e (log log(t - 1) is negative below): the budget is
log(t - 1) + 3 log(max(log(t - 1), 1)).

PBM-UCB. Under the position-based model position l is examined with a known
probability kappa_l, independently, and the click of every position is
observed. With N_k the shows of item k, N~_k = sum of kappa_l over the
positions it was shown at, and S_k its clicks:

    theta_hat_k = S_k / N~_k,   U_k = theta_hat_k + sqrt(N_k delta / (2 N~_k^2)),
    delta = (1 + epsilon) log t

(Lagree et al. 2016, Section 4.1; their regret bound takes epsilon > 0). An item
never shown has U = +inf.

References:
  Kveton, Szepesvari, Wen & Ashkan (2015), "Cascading bandits: learning to rank
  in the cascade model", ICML (Algorithm 1 with the UCB1 and KL-UCB indices).
  Lagree, Vernade & Cappe (2016), "Multiple-play bandits in the position-based
  model", NeurIPS (PBM-UCB).
  Garivier & Cappe (2011), "The KL-UCB algorithm for bounded stochastic bandits
  and beyond", COLT.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy

from agents.linear import _dtype
from agents.registry import register
from agents.slate import _check_slate_size, cascade_observed, slate_one_hot, top_slate
from bandits.types import Agent, Observation
from bandits.validation import BanditConfigError, positive_int, real

KL_BISECTION_STEPS = 32  # halvings of [w_hat, 1]: the index is exact to 2^-32


class CascadeState(NamedTuple):
    """Per-item observation counts of a cascade agent."""

    pulls: jax.Array  # (K,) int32  T(e), times item e was observed (examined)
    clicks: jax.Array  # (K,)  clicks on item e when observed
    rounds: jax.Array  # () int32  t - 1, finished rounds


class PBMState(NamedTuple):
    """Per-item statistics of PBM-UCB."""

    shows: jax.Array  # (K,) int32  N_k, times item k was shown
    exposure: jax.Array  # (K,)  N~_k, sum of kappa_l over the positions it was shown
    clicks: jax.Array  # (K,)  S_k, clicks on item k
    rounds: jax.Array  # () int32  t - 1, finished rounds


# ---------------------------------------------------------------------------
# Indices


def bernoulli_kl(p: jax.Array, q: jax.Array) -> jax.Array:
    """KL(Ber(p) || Ber(q)) = p log(p / q) + (1 - p) log((1 - p) / (1 - q)),
    with 0 log 0 = 0 (+inf where q is 0 or 1 and p is not)."""
    return xlogy(p, p) - xlogy(p, q) + xlogy(1.0 - p, 1.0 - p) - xlogy(1.0 - p, 1.0 - q)


def kl_upper_bound(mean: jax.Array, count: jax.Array, budget: jax.Array) -> jax.Array:
    """max{q in [mean, 1] : count KL(mean || q) <= budget}, elementwise, by
    `KL_BISECTION_STEPS` halvings of [mean, 1] (the returned q satisfies the
    constraint and is within 2^-32 of the maximum). `count` > 0."""

    def halve(_, bounds):
        low, high = bounds
        mid = 0.5 * (low + high)
        inside = count * bernoulli_kl(mean, mid) <= budget
        return jnp.where(inside, mid, low), jnp.where(inside, high, mid)

    high = jnp.ones_like(mean)
    low, _ = jax.lax.fori_loop(0, KL_BISECTION_STEPS, halve, (mean, high))
    return low


def kl_ucb_budget(rounds: jax.Array, dtype) -> jax.Array:
    """log(t - 1) + 3 log log(t - 1), the log log term counted from t - 1 >= e
    (0 before the first round)."""
    log_t = jnp.log(jnp.maximum(rounds.astype(dtype), 1.0))
    return log_t + 3.0 * jnp.log(jnp.maximum(log_t, 1.0))


def _observed_mean(state: CascadeState, dtype) -> tuple[jax.Array, jax.Array]:
    """(w_hat, T) with T clamped to 1 where the item was never observed."""
    count = jnp.maximum(state.pulls, 1).astype(dtype)
    return state.clicks / count, count


def cascade_ucb1_index(state: CascadeState, dtype) -> jax.Array:
    """U(e) = w_hat(e) + sqrt(1.5 log(t - 1) / T(e)); +inf before T(e) > 0."""
    mean, count = _observed_mean(state, dtype)
    log_t = jnp.log(jnp.maximum(state.rounds.astype(dtype), 1.0))
    index = mean + jnp.sqrt(1.5 * log_t / count)
    return jnp.where(state.pulls > 0, index, jnp.inf)


def cascade_klucb_index(state: CascadeState, dtype) -> jax.Array:
    """U(e) = max{q >= w_hat(e) : T(e) KL(w_hat(e) || q) <= budget}; +inf before
    T(e) > 0."""
    mean, count = _observed_mean(state, dtype)
    index = kl_upper_bound(mean, count, kl_ucb_budget(state.rounds, dtype))
    return jnp.where(state.pulls > 0, index, jnp.inf)


def pbm_ucb_index(state: PBMState, epsilon, dtype) -> jax.Array:
    """U_k = S_k / N~_k + sqrt(N_k delta / (2 N~_k^2)), delta = (1 + epsilon)
    log t; +inf before item k is shown."""
    exposure = jnp.where(state.shows > 0, state.exposure, 1.0)
    delta = (1.0 + epsilon) * jnp.log(jnp.maximum(state.rounds.astype(dtype), 1.0))
    width = jnp.sqrt(state.shows.astype(dtype) * delta / (2.0 * exposure * exposure))
    index = state.clicks / exposure + width
    return jnp.where(state.shows > 0, index, jnp.inf)


# ---------------------------------------------------------------------------
# The deterministic slate agent around an index


def _index_agent(
    name: str, num_arms: int, slate_size: int, init, index, update, mean
) -> Agent:
    """An `Agent` showing the top L of `index(state) -> (K,)`, with one-hot
    propensities; its `predict` is `mean(state) -> (K,)`, the estimated
    attraction of every item."""

    def act(key, state, obs: Observation):
        del key
        return top_slate(index(state), obs.mask, slate_size)

    def action_probs(key, state, obs: Observation):
        return slate_one_hot(act(key, state, obs), num_arms)

    def slate_probability(key, state, obs: Observation, slate):
        return jnp.all(slate == act(key, state, obs)).astype(jnp.float32)

    return Agent(
        init,
        act,
        update,
        action_probs,
        name=name,
        predict=lambda state, obs: mean(state),
        num_arms=num_arms,
        slate_size=slate_size,
        slate_probability=slate_probability,
    )


def _check_shapes(num_arms, slate_size, dim) -> tuple[int, int]:
    num_arms = positive_int("num_arms", num_arms)
    slate_size = _check_slate_size(slate_size, num_arms)
    if dim is not None:
        positive_int("dim", dim)
    return num_arms, slate_size


def _cascade_agent(name, num_arms, slate_size, dim, dtype, index_fn) -> Agent:
    num_arms, slate_size = _check_shapes(num_arms, slate_size, dim)
    jdtype = _dtype(dtype)

    def init(key):
        del key
        return CascadeState(
            pulls=jnp.zeros((num_arms,), jnp.int32),
            clicks=jnp.zeros((num_arms,), jdtype),
            rounds=jnp.zeros((), jnp.int32),
        )

    def update(key, state, obs, action, reward):
        del key, obs
        clicks = jnp.broadcast_to(jnp.asarray(reward, jdtype), (slate_size,))
        seen = cascade_observed(clicks)
        return CascadeState(
            pulls=state.pulls.at[action].add(seen.astype(jnp.int32)),
            clicks=state.clicks.at[action].add(jnp.where(seen, clicks, 0.0)),
            rounds=state.rounds + 1,
        )

    def mean(state):
        # w_hat(e), the click rate of item e when examined (0 before that).
        return _observed_mean(state, jdtype)[0]

    def index(state):
        return index_fn(state, jdtype)

    return _index_agent(name, num_arms, slate_size, init, index, update, mean)


@register("cascade_ucb1")
def cascade_ucb1(
    num_arms: int, slate_size: int, dim: int | None = None, dtype: str = "float32"
) -> Agent:
    """CascadeUCB1 (Kveton et al. 2015): the L items of largest
    w_hat(e) + sqrt(1.5 log(t - 1) / T(e)), learning from the positions a
    cascade user examined (down to the first click).

    Unobserved items have index +inf (shown first) in place of the paper's
    initial free observation of every item (module docstring).

    Args:
      num_arms: number of items K.
      slate_size: L, 1 <= L <= K.
      dim: accepted for a uniform factory signature, unused.
      dtype: "float32" or "float64" for the statistics.

    References:
      Kveton, Szepesvari, Wen & Ashkan (2015), ICML, Algorithm 1.

    Examples:
      >>> agent = cascade_ucb1(num_arms=16, slate_size=4)
    """
    return _cascade_agent(
        "cascade_ucb1", num_arms, slate_size, dim, dtype, cascade_ucb1_index
    )


@register("cascade_klucb")
def cascade_klucb(
    num_arms: int, slate_size: int, dim: int | None = None, dtype: str = "float32"
) -> Agent:
    """CascadeKL-UCB (Kveton et al. 2015): the L items of largest
    max{q in [w_hat(e), 1] : T(e) KL(w_hat(e) || q) <= log(t - 1) + 3 log log(t - 1)},
    learning from the positions a cascade user examined.

    The index is found by bisection (`kl_upper_bound`); unobserved items have
    index +inf (module docstring). Arguments as `cascade_ucb1`.

    References:
      Kveton, Szepesvari, Wen & Ashkan (2015), ICML, Algorithm 1;
      Garivier & Cappe (2011), COLT.

    Examples:
      >>> agent = cascade_klucb(num_arms=16, slate_size=4)
    """
    return _cascade_agent(
        "cascade_klucb", num_arms, slate_size, dim, dtype, cascade_klucb_index
    )


def _check_kappa(kappa: Any, slate_size: int) -> tuple[float, ...]:
    """L examination probabilities in (0, 1], non-increasing."""
    if isinstance(kappa, str) or not isinstance(kappa, list | tuple):
        raise BanditConfigError.about(
            "kappa",
            f"must be a list of slate_size = {slate_size} probabilities in (0, 1], "
            f"got {kappa!r}",
        )
    if len(kappa) != slate_size:
        raise BanditConfigError.about(
            "kappa", f"must have slate_size = {slate_size} entries, got {len(kappa)}"
        )
    out = []
    for i, value in enumerate(kappa):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BanditConfigError.about(
                f"kappa[{i}]", f"must be a number in (0, 1], got {value!r}"
            )
        if not (math.isfinite(value) and 0.0 < value <= 1.0):
            raise BanditConfigError.about(
                f"kappa[{i}]",
                f"must be in (0, 1] (a position never examined teaches nothing), "
                f"got {value}",
            )
        out.append(float(value))
    if any(later > earlier for earlier, later in itertools.pairwise(out)):
        raise BanditConfigError.about(
            "kappa",
            "must be non-increasing down the slate (the agent puts its best item "
            f"at position 1), got {tuple(out)}",
        )
    return tuple(out)


@register("pbm_ucb")
def pbm_ucb(
    num_arms: int,
    slate_size: int,
    kappa: tuple[float, ...] | list[float],
    epsilon: float = 0.0,
    dim: int | None = None,
    dtype: str = "float32",
) -> Agent:
    """PBM-UCB (Lagree et al. 2016) with known examination probabilities: the L
    items of largest S_k / N~_k + sqrt(N_k delta / (2 N~_k^2)),
    delta = (1 + epsilon) log t, the largest at position 1.

    Every position's click is observed: after a slate, item s_l gains one show,
    kappa_l of exposure and its click.

    Args:
      num_arms: number of items K.
      slate_size: L, 1 <= L <= K.
      kappa: the L examination probabilities kappa_l in (0, 1], non-increasing
        (the env's `kappa`: PBM-UCB assumes them known).
      epsilon: >= 0; the paper's regret bound takes epsilon > 0.
      dim: accepted for a uniform factory signature, unused.
      dtype: "float32" or "float64" for the statistics.

    References:
      Lagree, Vernade & Cappe (2016), "Multiple-play bandits in the
      position-based model", NeurIPS, Section 4.1.

    Examples:
      >>> agent = pbm_ucb(num_arms=10, slate_size=3, kappa=(1.0, 0.6, 0.3))
    """
    num_arms, slate_size = _check_shapes(num_arms, slate_size, dim)
    kappa_l = jnp.asarray(_check_kappa(kappa, slate_size))
    real("epsilon", epsilon, low=0.0)
    jdtype = _dtype(dtype)
    kappa_l = kappa_l.astype(jdtype)

    def init(key):
        del key
        return PBMState(
            shows=jnp.zeros((num_arms,), jnp.int32),
            exposure=jnp.zeros((num_arms,), jdtype),
            clicks=jnp.zeros((num_arms,), jdtype),
            rounds=jnp.zeros((), jnp.int32),
        )

    def update(key, state, obs, action, reward):
        del key, obs
        clicks = jnp.broadcast_to(jnp.asarray(reward, jdtype), (slate_size,))
        return PBMState(
            shows=state.shows.at[action].add(1),
            exposure=state.exposure.at[action].add(kappa_l),
            clicks=state.clicks.at[action].add(clicks),
            rounds=state.rounds + 1,
        )

    def index(state):
        return pbm_ucb_index(state, epsilon, jdtype)

    def mean(state):
        # S_k / N~_k, the attraction corrected for the exposure (0 before shown).
        return state.clicks / jnp.where(state.shows > 0, state.exposure, 1.0)

    return _index_agent("pbm_ucb", num_arms, slate_size, init, index, update, mean)
