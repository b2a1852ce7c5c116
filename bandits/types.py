"""Pytrees and protocols shared by every environment and agent.

Everything here is a plain `NamedTuple` (a JAX pytree) or a `typing.Protocol`, so the
kernel depends on no concrete environment or agent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax

PyTree = Any
AgentState = PyTree
EnvParams = PyTree
EnvState = PyTree


class Observation(NamedTuple):
    """What an agent sees before it acts (one stream; batch with `vmap`)."""

    context: jax.Array  # (d,)    shared context features
    arms: jax.Array  # (K, p)       per-arm / per-item features (p may be 0)
    mask: jax.Array  # (K,) bool    arms that may be chosen
    history: jax.Array | None = None  # (H, p_h) behaviour history, if the env has one
    history_mask: jax.Array | None = None  # (H,) bool, valid history rows


class SlateFeedback(NamedTuple):
    """What a slate environment adds to `Feedback` (L positions, one stream).

    The kernel computes slate pseudo-regret from `expected_reward` and
    `optimal_expected_reward` (exact closed forms of the env's click model), and
    hands `clicks` to the agent's `update` as its reward.
    """

    clicks: jax.Array  # (L,) float32  click (0/1) at every position
    examined: jax.Array  # (L,) bool  positions the simulated user examined
    expected_clicks: jax.Array  # (L,)  exact expected click of every position
    expected_reward: jax.Array  # ()  exact expected reward of the played slate
    optimal_slate: jax.Array  # (L,) int32  a slate of maximal expected reward
    optimal_expected_reward: jax.Array  # ()  its expected reward


class Feedback(NamedTuple):
    """What the environment reveals after an action (for the acted-on context).

    For a slate env (the action is an ordered array of L distinct item indices)
    `reward` is the slate's reward (its click model says which: clicks, any
    click, a satisfied user), `expected_rewards` each item's attraction, and
    `slate` carries the per-position clicks and the exact slate values.
    """

    reward: jax.Array  # ()     sampled reward of the chosen arm (or slate)
    expected_rewards: jax.Array  # (K,)  exact expected reward of every arm
    slate: SlateFeedback | None = None  # slate envs only


class SlateRecord(NamedTuple):
    """Per-step slate record of a simulation (slate envs only); leaves (T, ...)
    or (S, T, ...) after `run`."""

    clicks: jax.Array  # (T, L)  sampled click at every position
    examined: jax.Array  # (T, L) bool  positions the simulated user examined
    expected_clicks: jax.Array  # (T, L)  exact expected click of every position
    ndcg: jax.Array  # (T,)  NDCG@L of the slate against the ideal one (attraction)


class Trajectory(NamedTuple):
    """Per-step record of a simulation; leaves are (T,) or (S, T) after `run`.

    With slate actions `action` is (T, L), the expected and optimal rewards are
    those of whole slates (so `regret` is slate pseudo-regret), and `slate`
    holds the per-position record.
    """

    action: jax.Array  # (T,) int32  (slates: (T, L))
    reward: jax.Array  # (T,)  sampled reward
    expected_reward: jax.Array  # (T,)  expected reward of the chosen arm (slate)
    optimal_expected_reward: jax.Array  # (T,)  best expected reward among allowed arms
    regret: jax.Array  # (T,)  exact per-step pseudo-regret
    optimal: jax.Array  # (T,) bool  the chosen arm was optimal
    slate: SlateRecord | None = None  # slate envs only


class Agent(NamedTuple):
    """A bandit policy as pure functions (the optax pattern).

    Hyperparameters are closed over by the factory that builds the agent. Each
    function handles ONE stream; batching over seeds is the caller's `vmap`.

    Attributes:
      init: `init(key) -> state`.
      act: `act(key, state, obs) -> action` (an int32 scalar; a slate agent
        returns an ordered (L,) int32 array of distinct items).
      update: `update(key, state, obs, action, reward) -> state`. A slate
        agent's `reward` is the (L,) click of every position
        (`SlateFeedback.clicks`).
      action_probs: optional `action_probs(key, state, obs) -> (K,)` propensities
        of the action `act` would take, for off-policy evaluation (a slate
        agent: (L, K), the probability of item k at position l).
      name: a short display name.
      predict: optional `predict(state, obs) -> (K,)` the agent's estimate of
        every arm's expected reward (its reward model), for held-out evaluation.
      num_arms: K, the number of arms the agent was built for (None: not
        declared). Checked against data handed to it (e.g. a warm start's logs).
      context_dim: d, the width of `obs.context` it reads (None: not declared,
        or it reads none).
      arm_dim: p, the width of `obs.arms` rows it reads (None: not declared, or
        it reads none).
      slate_size: L for an agent that plays slates of L items (None: it plays
        one arm). Checked against the env's `slate_size`.
      slate_probability: optional `slate_probability(key, state, obs, slate)
        -> ()`, the exact probability that `act` plays the (L,) `slate`.
    """

    init: Callable[[jax.Array], AgentState]
    act: Callable[[jax.Array, AgentState, Observation], jax.Array]
    update: Callable[
        [jax.Array, AgentState, Observation, jax.Array, jax.Array], AgentState
    ]
    action_probs: Callable[[jax.Array, AgentState, Observation], jax.Array] | None = (
        None
    )
    name: str = "agent"
    predict: Callable[[AgentState, Observation], jax.Array] | None = None
    num_arms: int | None = None
    context_dim: int | None = None
    arm_dim: int | None = None
    slate_size: int | None = None
    slate_probability: (
        Callable[[jax.Array, AgentState, Observation, jax.Array], jax.Array] | None
    ) = None


class ArraySpec(NamedTuple):
    """Static description of one observation field, used for Gymnasium spaces."""

    shape: tuple[int, ...]
    dtype: Any
    low: float
    high: float


class Env(Protocol):
    """The functional environment protocol (static config + pytree params/state).

    An env object holds only static configuration (Python ints and strings); what
    varies (problem instance, state) lives in pytrees so that `jit` and `vmap` apply.
    A slate env also has an int `slate_size` L: its actions are (L,) arrays of
    distinct items and its `Feedback` carries `slate` (`SlateFeedback`).
    """

    @property
    def num_arms(self) -> int: ...

    def __hash__(self) -> int: ...  # static config: one compiled program per value

    def default_params(self) -> EnvParams: ...

    def sample_params(self, key: jax.Array) -> EnvParams: ...

    def reset(
        self, key: jax.Array, params: EnvParams
    ) -> tuple[Observation, EnvState]: ...

    def step(
        self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams
    ) -> tuple[Observation, EnvState, Feedback]: ...

    def expected_rewards(self, state: EnvState, params: EnvParams) -> jax.Array:
        """Expected reward of every arm for the current observation, (K,): the
        exact truth behind pseudo-regret, oracle logging policies and
        off-policy ground truth."""
        ...

    def observation_spec(self) -> dict[str, ArraySpec]: ...
