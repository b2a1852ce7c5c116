"""Logged slate data: events of a slate env under a logging slate policy, with
the exact propensities slate off-policy estimators need (`bandits.slate_ope`).

    policy = slate_logged.epsilon_greedy(0.5, slate_logged.noisy_oracle(0.1))
    log = slate_logged.generate(key, env, params, policy, num_events=1_000)
    slate_ope.rips(log.clicks, log.prefix_propensity, target_prefix)

A logging slate policy here is an epsilon-uniform mixture around a
deterministic slate g(x): pi_0(s | x) = epsilon U(s) + (1 - epsilon) 1[s = g(x)],
U uniform over ordered slates of L distinct allowed items. Its slate, prefix and
position probabilities and its Gram matrix E[1_s 1_s^T] are exact
(`bandits.slate_ope.mixture_*`). epsilon = 1 is uniformly random slates,
epsilon = 0 a deterministic ranking (e.g. a frozen `top_l_linucb`, ranked by
`agent.predict` or its index).

Events are independent: each starts a fresh stream of the env (`env.reset` with
the event's key), so contexts are i.i.d. draws of the env's first observation,
and the whole log is one `vmap` over events (jittable; vmap over keys for log
replicates). The single-item logs of `envs.logged` are untouched by this
module.

`attraction` (the env's exact click probabilities) is recorded because the data
is simulated: it is for the exact value of target policies (`policy_value`),
never for the estimators.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from bandits.slate_ope import (
    mixture_marginals,
    mixture_prefix_probabilities,
    mixture_slate_probability,
)
from bandits.types import Observation
from bandits.validation import BanditConfigError, positive_int, real

# greedy(key, obs, attraction, slate_size) -> (L,) int32: the mixture's
# deterministic slate (slate_size is the env's, a Python int).
GreedySlate = Callable[[jax.Array, Observation, jax.Array, int], jax.Array]


class SlatePolicy(NamedTuple):
    """pi_0(s | x) = epsilon U(s) + (1 - epsilon) 1[s = greedy(key, x, a, L)].

    `greedy` may read the env's exact attractions a (an oracle logger) and a
    key (a noisy oracle: the propensity is exact given the draw, which is
    independent of the clicks)."""

    greedy: GreedySlate
    epsilon: float
    name: str


class SlateLog(NamedTuple):
    """n logged slate events (leaves lead with n; with log replicates (R, n, ...))."""

    obs: Observation  # leaves (n, ...)  the observation acted on
    slate: jax.Array  # (n, L) int32  the logged slate
    clicks: jax.Array  # (n, L)  click at every position
    reward: jax.Array  # (n,)  the slate's reward (the click model's)
    propensity: jax.Array  # (n,)  pi_0(s_i | x_i)
    position_propensity: jax.Array  # (n, L)  pi_0(s_il at l | x_i)
    prefix_propensity: jax.Array  # (n, L)  pi_0(s_i,1:l | x_i)
    greedy: jax.Array  # (n, L) int32  the logging mixture's deterministic slate
    epsilon: jax.Array  # ()  the logging mixture's epsilon
    attraction: jax.Array  # (n, K)  exact click probabilities (evaluation only)


def _ranked(scores: jax.Array, mask: jax.Array, slate_size: int) -> jax.Array:
    """The `slate_size` allowed items of highest score, highest first."""
    _, slate = jax.lax.top_k(jnp.where(mask, scores, -jnp.inf), slate_size)
    return slate.astype(jnp.int32)


def noisy_oracle(noise_std: float = 0.0) -> GreedySlate:
    """g(x): the L items of largest a_k + eps_k, eps_k ~ N(0, noise_std^2) per
    event (noise_std = 0: the optimal slate)."""
    real("noise_std", noise_std, low=0.0)

    def greedy(key, obs, attraction, slate_size):
        noise = noise_std * jax.random.normal(key, attraction.shape)
        return _ranked(attraction + noise, obs.mask, slate_size)

    return greedy


def ranked_by(score: Callable[[Observation], jax.Array]) -> GreedySlate:
    """g(x): the L items of largest `score(obs)` (K,), e.g. a frozen agent's
    `lambda obs: agent.predict(state, obs)`."""

    def greedy(key, obs, attraction, slate_size):
        del key, attraction
        return _ranked(score(obs), obs.mask, slate_size)

    return greedy


def epsilon_greedy(epsilon: float, greedy: GreedySlate) -> SlatePolicy:
    """The epsilon-uniform mixture around `greedy`'s slate."""
    real("epsilon", epsilon, low=0.0, high=1.0)
    return SlatePolicy(greedy, float(epsilon), f"epsilon_greedy_{epsilon:g}")


def uniform() -> SlatePolicy:
    """Uniformly random ordered slates of L distinct allowed items (epsilon = 1)."""
    return SlatePolicy(noisy_oracle(), 1.0, "uniform")


def _uniform_slate(key: jax.Array, mask: jax.Array, slate_size: int) -> jax.Array:
    """A uniformly random ordered slate of allowed items (top L of Gumbel noise)."""
    return _ranked(jax.random.gumbel(key, mask.shape), mask, slate_size)


def _event(key, env, params, policy: SlatePolicy) -> dict:
    key_reset, key_greedy, key_explore, key_uniform, key_step = jax.random.split(key, 5)
    obs, state = env.reset(key_reset, params)
    attraction = env.expected_rewards(state, params)
    greedy = policy.greedy(key_greedy, obs, attraction, env.slate_size)
    explore = jax.random.uniform(key_explore) < policy.epsilon
    slate = jnp.where(
        explore, _uniform_slate(key_uniform, obs.mask, env.slate_size), greedy
    )
    _, _, feedback = env.step(key_step, state, slate, params)
    epsilon = jnp.asarray(policy.epsilon, jnp.float32)
    marginals = mixture_marginals(obs.mask, greedy, epsilon)
    return {
        "obs": obs,
        "slate": slate,
        "clicks": feedback.slate.clicks,
        "reward": feedback.reward,
        "propensity": mixture_slate_probability(obs.mask, greedy, epsilon, slate),
        "position_propensity": jnp.take_along_axis(marginals, slate[:, None], 1)[:, 0],
        "prefix_propensity": mixture_prefix_probabilities(
            obs.mask, greedy, epsilon, slate
        ),
        "greedy": greedy,
        "attraction": attraction,
    }


def generate(
    key: jax.Array, env, params, policy: SlatePolicy, num_events: int
) -> SlateLog:
    """`num_events` independent slate events of `env` under `policy` (pure:
    jit it, or vmap it over keys for log replicates).

    Raises:
      BanditConfigError: `env` is not a slate env, or `num_events` < 1.
    """
    num_events = positive_int("num_events", num_events)
    if getattr(env, "slate_size", None) is None:
        raise BanditConfigError.about(
            "env", f"must be a slate env (with slate_size), got {type(env).__name__}"
        )
    keys = jax.random.split(key, num_events)
    events = jax.vmap(lambda k: _event(k, env, params, policy))(keys)
    return SlateLog(epsilon=jnp.asarray(policy.epsilon, jnp.float32), **events)


def policy_value(
    env, params, log: SlateLog, target_slate: jax.Array, total_clicks: bool = False
) -> jax.Array:
    """The exact value of a deterministic target over the logged contexts:
    mean_i E[r | x_i, t_i] for target slates t (n, L), from the recorded
    attractions and the env's closed form (a masked item counts as 0).

    `total_clicks`: the expected number of clicks, mean_i sum_l E[c_l | x_i,
    t_i], instead of the reward (what `slate_ope.rips` and
    `slate_ope.independent_ips` estimate; the same under the PBM and the
    cascade, not under the DCM, whose reward is a satisfied user)."""

    def one(attraction, mask, slate):
        shown = jnp.where(mask[slate], attraction[slate], 0.0)
        if total_clicks:
            return jnp.sum(env.expected_clicks(shown, params))
        return env.slate_value(shown, params)

    values = jax.vmap(one)(log.attraction, log.obs.mask, target_slate)
    return jnp.mean(values)
