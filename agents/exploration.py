"""Exploration rules shared by every agent: small immutable objects (rlax style).

An agent is a reward model composed with one exploration rule. The model
summarises what it believes about the K arms of one observation as a *belief*;
the rule turns a belief into an action (`sample`) or into the (K,) distribution
that action is drawn from (`probs`, the propensities off-policy evaluation needs):

    rule.sample(key, belief, mask) -> int32 arm
    rule.probs(key, belief, mask)  -> (K,) probabilities, 0 on masked arms

Beliefs (written for one stream, like everything here):
  * a (K,) array of point estimates mu_k (enough for `Greedy`, `EpsilonGreedy`);
  * `GaussianScores(mean, width)`: independent per-arm posteriors
    N(mu_k, sigma_k^2), e.g. disjoint ridge regression or a network's gradient
    features;
  * `GaussianWeights(features, mean, root)`: scores phi_k^T w of a shared weight
    posterior w ~ N(w_hat, R^T R), e.g. ridge on arm features or a Bayesian last
    layer;
  * `MemberScores(member, every)`: the scores of an ensemble of M models.

Rules:
  * `Greedy()`: argmax_k mu_k.
  * `EpsilonGreedy(epsilon)`: uniform over the allowed arms with probability
    epsilon, otherwise greedy; pi = epsilon U + (1 - epsilon) 1[greedy] (exact).
  * `UCB(alpha)`: argmax_k mu_k + alpha sigma_k (deterministic: one-hot `probs`).
  * `Thompson(scale)`: the best arm of one posterior draw with the width scaled
    by nu = `scale`; `probs` is a Monte Carlo estimate (no closed form).
  * `EnsembleChoice(M)`: a member drawn uniformly acts greedily;
    pi(k) = (1/M) sum_m 1[k = argmax_j s_mj] (exact).

`masked_argmax` is the one greedy choice over allowed arms in the tree: every rule
and every agent picks its arm with it.

References:
  Sutton & Barto (2018), "Reinforcement Learning: An Introduction", 2.2-2.7
  (epsilon-greedy, upper confidence bounds).
  Li, Chu, Langford & Schapire (2010), WWW (LinUCB).
  Agrawal & Goyal (2013), "Thompson sampling for contextual bandits with linear
  payoffs", ICML.
  Lu & Van Roy (2017), "Ensemble sampling", NeurIPS.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> mean = jnp.array([0.1, 0.5, 0.3])
  >>> mask = jnp.array([True, False, True])
  >>> EpsilonGreedy(0.3).probs(None, mean, mask)
  Array([0.15, 0.  , 0.85], dtype=float32)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp


def masked_argmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """Index of the highest score among allowed arms (lowest index on ties).

    Args:
      scores: (K,) per-arm scores.
      mask: (K,) bool, True where the arm may be played (at least one).

    Returns:
      int32 scalar index of an allowed arm.
    """
    return jnp.argmax(jnp.where(mask, scores, -jnp.inf)).astype(jnp.int32)


def sample_probs(key: jax.Array, probs: jax.Array) -> jax.Array:
    """An arm drawn from the (K,) distribution `probs`, int32 scalar."""
    return jax.random.choice(key, probs.shape[-1], p=probs).astype(jnp.int32)


# ---------------------------------------------------------------------------
# Beliefs


class GaussianScores(NamedTuple):
    """Independent per-arm score posteriors N(mu_k, sigma_k^2)."""

    mean: jax.Array  # (K,)  mu_k
    width: jax.Array  # (K,)  sigma_k

    def point(self) -> jax.Array:
        return self.mean

    def marginals(self) -> tuple[jax.Array, jax.Array]:
        return self.mean, self.width

    def draw(self, key: jax.Array, scale, dtype=None) -> jax.Array:
        """mu + nu sigma * z, z ~ N(0, I_K): one posterior draw, (K,)."""
        z = jax.random.normal(key, self.mean.shape, dtype)
        return self.mean + scale * self.width * z

    def draws(self, key: jax.Array, scale, num: int, dtype=None) -> jax.Array:
        """`num` posterior draws from one key, (num, K)."""
        z = jax.random.normal(key, (num, *self.mean.shape), dtype)
        return self.mean + scale * self.width * z


class GaussianWeights(NamedTuple):
    """Scores s_k = phi_k^T w of a shared weight posterior w ~ N(w_hat, R^T R)."""

    features: jax.Array  # (K, f)  phi_k
    mean: jax.Array  # (f,)  w_hat
    root: jax.Array  # (f, f)  R with R^T R = Sigma

    def point(self) -> jax.Array:
        """phi_k^T w_hat, (K,)."""
        return self.features @ self.mean

    def marginals(self) -> tuple[jax.Array, jax.Array]:
        """(phi_k^T w_hat, sqrt(phi_k^T Sigma phi_k) = |R phi_k|), each (K,)."""
        rows = self.features @ self.root.T  # (K, f): rows R phi_k
        return self.point(), jnp.sqrt(jnp.sum(rows * rows, axis=-1))

    def draw(self, key: jax.Array, scale, dtype=None) -> jax.Array:
        """Phi w~ with w~ = w_hat + nu R^T z ~ N(w_hat, nu^2 Sigma): O(f^2 + K f)."""
        z = jax.random.normal(key, self.mean.shape, dtype)
        return self.features @ (self.mean + scale * (self.root.T @ z))

    def draws(self, key: jax.Array, scale, num: int, dtype=None) -> jax.Array:
        """`num` draws Phi w_hat + nu Z G^T, G = Phi R^T, from one key: (num, K)."""
        G = self.features @ self.root.T  # (K, f), G G^T = Phi Sigma Phi^T
        z = jax.random.normal(key, (num, *self.mean.shape), dtype)
        return self.features @ self.mean + scale * z @ G.T


class MemberScores(NamedTuple):
    """The scores of an ensemble of M models, evaluated only where needed.

    `sample` scores the one member it draws; `probs` scores every member.
    """

    member: Callable[[jax.Array], jax.Array]  # m -> (K,) scores of member m
    every: Callable[[], jax.Array]  # () -> (M, K) scores of every member

    @classmethod
    def stacked(cls, scores: jax.Array) -> MemberScores:
        """The belief of precomputed (M, K) scores."""
        return cls(lambda m: scores[m], lambda: scores)


Belief = jax.Array | GaussianScores | GaussianWeights


def point_estimate(belief: Belief) -> jax.Array:
    """The (K,) scores a greedy choice maximises: mu_k."""
    if isinstance(belief, GaussianScores | GaussianWeights):
        return belief.point()
    return belief


# ---------------------------------------------------------------------------
# Rules


@dataclasses.dataclass(frozen=True)
class Greedy:
    """Play argmax_k mu_k; `probs` is its one-hot."""

    def sample(self, key, belief: Belief, mask: jax.Array) -> jax.Array:
        del key
        return masked_argmax(point_estimate(belief), mask)

    def probs(self, key, belief: Belief, mask: jax.Array) -> jax.Array:
        return jax.nn.one_hot(self.sample(key, belief, mask), mask.shape[-1])


@dataclasses.dataclass(frozen=True)
class EpsilonGreedy:
    """Uniform over the allowed arms with probability epsilon, else greedy.

    pi(k) = epsilon 1[k allowed] / |allowed| + (1 - epsilon) 1[k = argmax_j mu_j].

    Attributes:
      epsilon: exploration probability in [0, 1] (may be traced).
      divide_last: round the uniform mass as (epsilon 1[allowed]) / |allowed|
        rather than epsilon (1[allowed] / |allowed|). The two are equal in exact
        arithmetic and differ by at most an ulp; the neural and transformer
        agents use the first, the ridge agents the second, each as before.

    References:
      Sutton & Barto (2018), "Reinforcement Learning: An Introduction", 2.2.
    """

    epsilon: Any = 0.1
    divide_last: bool = False

    def probs(self, key, belief: Belief, mask: jax.Array) -> jax.Array:
        del key
        greedy_arm = masked_argmax(point_estimate(belief), mask)
        greedy = jax.nn.one_hot(greedy_arm, mask.shape[-1])
        allowed = mask.astype(greedy.dtype)
        if self.divide_last:
            explore = self.epsilon * allowed / jnp.sum(allowed)
        else:
            explore = self.epsilon * (allowed / jnp.sum(allowed))
        return explore + (1.0 - self.epsilon) * greedy

    def sample(self, key, belief: Belief, mask: jax.Array) -> jax.Array:
        key_probs, key_choice = jax.random.split(key)
        return sample_probs(key_choice, self.probs(key_probs, belief, mask))


@dataclasses.dataclass(frozen=True)
class UCB:
    """Optimism: play argmax_k mu_k + alpha sigma_k; `probs` is its one-hot.

    Attributes:
      alpha: exploration scale >= 0 (0 is greedy; may be traced).

    References:
      Li, Chu, Langford & Schapire (2010), WWW; Zhou, Li & Gu (2020), ICML.
    """

    alpha: Any = 1.0

    def sample(self, key, belief: GaussianScores | GaussianWeights, mask):
        del key
        mean, width = belief.marginals()
        return masked_argmax(mean + self.alpha * width, mask)

    def probs(self, key, belief: GaussianScores | GaussianWeights, mask):
        return jax.nn.one_hot(self.sample(key, belief, mask), mask.shape[-1])


@dataclasses.dataclass(frozen=True)
class Thompson:
    """Thompson sampling: play the best arm of one posterior draw.

    The draw has its width scaled by nu (`scale`): s~_k ~ N(mu_k, nu^2 sigma_k^2)
    for `GaussianScores`, s~ = Phi w~ with w~ ~ N(w_hat, nu^2 Sigma) for
    `GaussianWeights`. The probability that arm k's draw is the largest has no
    closed form; `probs` estimates it from `samples` draws, so each entry has
    standard error at most 0.5 / sqrt(samples).

    Attributes:
      scale: nu >= 0 (may be traced).
      samples: Monte Carlo draws behind `probs`.
      dtype: dtype of the standard-normal draws (None: JAX's default float).
      batched_probs: `probs` draws all `samples` scores from one key in one
        batch (`belief.draws`: O(K f) per draw after one O(K f^2) product),
        rather than as `samples` calls of `sample` on split keys.

    References:
      Agrawal & Goyal (2013), ICML; Zhang, Zhou, Li & Gu (2021), ICLR.
    """

    scale: Any = 1.0
    samples: int = 1000
    dtype: Any = None
    batched_probs: bool = False

    def sample(self, key, belief: GaussianScores | GaussianWeights, mask):
        return masked_argmax(belief.draw(key, self.scale, self.dtype), mask)

    def probs(self, key, belief: GaussianScores | GaussianWeights, mask):
        num_arms = mask.shape[-1]
        if self.batched_probs:
            scores = belief.draws(key, self.scale, self.samples, self.dtype)
            actions = jax.vmap(masked_argmax, in_axes=(0, None))(scores, mask)
            return jnp.mean(jax.nn.one_hot(actions, num_arms), axis=0)
        keys = jax.random.split(key, self.samples)
        actions = jax.vmap(lambda k: self.sample(k, belief, mask))(keys)
        counts = jnp.zeros((num_arms,), jnp.float32).at[actions].add(1.0)
        return counts / self.samples


@dataclasses.dataclass(frozen=True)
class EnsembleChoice:
    """Ensemble sampling: a member drawn uniformly plays its greedy arm.

    pi(k) = (1/M) sum_m 1[k = argmax_j s_mj], exact.

    Attributes:
      num_members: M.

    References:
      Lu & Van Roy (2017), "Ensemble sampling", NeurIPS; Osband & Van Roy (2015),
      "Bootstrapped Thompson sampling and deep exploration".
    """

    num_members: int

    def sample(self, key, belief: MemberScores, mask: jax.Array) -> jax.Array:
        member = jax.random.randint(key, (), 0, self.num_members)
        return masked_argmax(belief.member(member), mask)

    def probs(self, key, belief: MemberScores, mask: jax.Array) -> jax.Array:
        del key
        actions = jax.vmap(masked_argmax, in_axes=(0, None))(belief.every(), mask)
        return jnp.mean(jax.nn.one_hot(actions, mask.shape[-1]), axis=0)


class Exploration(Protocol):
    """What an agent composes with: any rule above (or a new one of this shape)."""

    def sample(self, key: Any, belief: Any, mask: jax.Array) -> jax.Array: ...

    def probs(self, key: Any, belief: Any, mask: jax.Array) -> jax.Array: ...


__all__ = [
    "UCB",
    "Belief",
    "EnsembleChoice",
    "EpsilonGreedy",
    "Exploration",
    "GaussianScores",
    "GaussianWeights",
    "Greedy",
    "MemberScores",
    "Thompson",
    "masked_argmax",
    "point_estimate",
    "sample_probs",
]
