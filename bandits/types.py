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


class Feedback(NamedTuple):
    """What the environment reveals after an action (for the acted-on context)."""

    reward: jax.Array  # ()     sampled reward of the chosen arm
    expected_rewards: jax.Array  # (K,)  exact expected reward of every arm


class Trajectory(NamedTuple):
    """Per-step record of a simulation; leaves are (T,) or (S, T) after `run`."""

    action: jax.Array  # (T,) int32
    reward: jax.Array  # (T,)  sampled reward
    expected_reward: jax.Array  # (T,)  expected reward of the chosen arm
    optimal_expected_reward: jax.Array  # (T,)  best expected reward among allowed arms
    regret: jax.Array  # (T,)  exact per-step pseudo-regret
    optimal: jax.Array  # (T,) bool  the chosen arm was optimal


class Agent(NamedTuple):
    """A bandit policy as pure functions (the optax pattern).

    Hyperparameters are closed over by the factory that builds the agent. Each
    function handles ONE stream; batching over seeds is the caller's `vmap`.

    Attributes:
      init: `init(key) -> state`.
      act: `act(key, state, obs) -> action` (an int32 scalar).
      update: `update(key, state, obs, action, reward) -> state`.
      action_probs: optional `action_probs(key, state, obs) -> (K,)` propensities
        of the action `act` would take, for off-policy evaluation.
      name: a short display name.
      predict: optional `predict(state, obs) -> (K,)` the agent's estimate of
        every arm's expected reward (its reward model), for held-out evaluation.
      num_arms: K, the number of arms the agent was built for (None: not
        declared). Checked against data handed to it (e.g. a warm start's logs).
      context_dim: d, the width of `obs.context` it reads (None: not declared,
        or it reads none).
      arm_dim: p, the width of `obs.arms` rows it reads (None: not declared, or
        it reads none).
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
