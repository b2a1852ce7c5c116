"""Serving an agent one request at a time: `Server`.

The simulation loop (`bandits.run`) compiles a whole run into one program; a
recommender in production, a Gymnasium loop or another framework's training
loop instead asks for one decision, waits for the feedback, and asks again.
`Server` holds the agent's state and its random key between calls, and runs
each call as one compiled program:

    server = Server(agents.linucb(num_arms=10, dim=20))
    action = server.act(obs)                 # decide
    server.update(obs, action, reward)       # learn from the feedback
    action = server.step(reward, next_obs)   # both at once: learn from the last
                                             # decision's reward, decide the next
    probs = server.action_probs(next_obs)    # its propensities, to log with it
    scores = server.predict(next_obs)        # its reward estimate of every arm

`step` is the fast path: one dispatch per event instead of two, the state's
buffers donated to the call (updated in place, never copied), the key split
inside the program. An observation is a `bandits.Observation` or a mapping with
its fields (a Gymnasium observation); fields are NumPy or JAX arrays.

Every call first checks what it is given, in Python, before anything is
compiled or run: the observation's shapes against the agent's declared K and d
and the first observation served (a list becomes an array), and a played arm
against the observation's arms; a mismatch is a `BanditConfigError` naming
the field (about 1 us per call).

The decisions are the agent's own: `act`/`update` use the keys a `Server`
derives from its key (`split` into the act and update keys, in that order), so a
run through `Server` is reproducible from its key, and the state after each
update is the state `agent.update` returns.

Latency: by default JAX hands every CPU computation to a dispatch thread and
the caller waits for it; for one small decision that hand-over can cost as much
as the arithmetic. A serving process may call `synchronous_dispatch()` before
its first JAX computation (or be started with `BANDITS_SYNC_DISPATCH=1`), so
that each call runs on the calling thread. The decisions are the same (tested).
How much that gains depends on the machine: LinUCB's `step` took 44.8 us
median against 79 with the default on one 2-core VM, and between 12% more and
22% less time on another (README); `tests/benchmarks/test_serving_bench.py`
measures both modes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bandits.types import Agent, Observation
from bandits.validation import BanditConfigError

_FIELDS = Observation._fields
_PROBS_STREAM = 0x50524F42  # "PROB": folded into the key for the propensities


def synchronous_dispatch() -> None:
    """Runs every later CPU computation of this process on the calling thread,
    which cuts the fixed cost of each `Server` call (see the module docstring).
    Call it before the process's first JAX computation; later it raises
    `BanditConfigError` (JAX creates its CPU client once)."""
    from bandits import _backend

    try:
        _backend.synchronous_dispatch()
    except RuntimeError as error:
        raise BanditConfigError(str(error)) from None


def _as_observation(obs: Any) -> Observation:
    if isinstance(obs, Observation):
        return obs
    if isinstance(obs, Mapping):
        missing = [f for f in ("context", "arms", "mask") if f not in obs]
        if missing:
            raise BanditConfigError(
                f"an observation needs the fields context, arms and mask; this one "
                f"lacks {', '.join(missing)}"
            )
        fields: dict[str, Any] = {f: _array(obs.get(f)) for f in _FIELDS}
        return Observation(**fields)
    raise BanditConfigError(
        f"an observation must be a bandits.Observation or a mapping of its fields, "
        f"got {type(obs).__name__}"
    )


def _array(value: Any) -> Any:
    """An observation field as an array (a list or a number becomes one)."""
    if value is None or type(value) is np.ndarray:  # the common case, first
        return value
    return value if isinstance(value, np.ndarray | jax.Array) else np.asarray(value)


def _host_int(value: jax.Array) -> int:
    """A scalar result as a Python int. Through NumPy: `int()` of a JAX array
    takes a slower path (measured about 10 us more per call)."""
    return int(np.asarray(value))


def _own_buffers(tree: Any) -> Any:
    """A copy whose leaves share no buffer (required to donate them)."""
    return jax.tree.map(lambda leaf: jnp.array(leaf, copy=True), tree)


class Server:
    """An agent with its state and key, answering one request at a time."""

    def __init__(
        self, agent: Agent, *, key: jax.Array | int = 0, state: Any = None
    ) -> None:
        if not isinstance(agent, Agent):
            raise BanditConfigError(
                f"Server needs a bandits.Agent, got {type(agent).__name__}"
            )
        self.agent = agent
        key = jax.random.key(key) if isinstance(key, int | np.integer) else key
        if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.wrap_key_data(key)  # a raw uint32 PRNGKey
        # The propensities draw from a stream of their own, so asking for them
        # changes no decision.
        self._probs_key = jax.random.key_data(jax.random.fold_in(key, _PROBS_STREAM))
        key_init, key = jax.random.split(key)
        if state is None:
            state = jax.jit(agent.init)(key_init)
        self._state = _own_buffers(state)
        # The key crosses each call as its raw uint32 words: a typed key array
        # costs the call more (measured about 5 us per call).
        impl = jax.random.key_impl(key)
        self._key = jax.random.key_data(key)
        self._last: tuple[Observation, Any] | None = None

        def act(state, key, obs):
            key, key_act = jax.random.split(jax.random.wrap_key_data(key, impl=impl))
            action = jnp.asarray(agent.act(key_act, state, obs), jnp.int32)
            return action, jax.random.key_data(key)

        def update(state, key, obs, action, reward):
            key, key_update = jax.random.split(jax.random.wrap_key_data(key, impl=impl))
            state = agent.update(key_update, state, obs, action, reward)
            return state, jax.random.key_data(key)

        def step(state, key, obs, action, reward, next_obs):
            state, key = update(state, key, obs, action, reward)
            action, key = act(state, key, next_obs)
            return state, key, action

        def action_probs(state, key, obs):
            key, key_probs = jax.random.split(jax.random.wrap_key_data(key, impl=impl))
            probs = agent.action_probs(key_probs, state, obs)
            return probs, jax.random.key_data(key)

        self._shapes: tuple[tuple[int, ...], ...] | None = None
        self._predict = None if agent.predict is None else jax.jit(agent.predict)
        self._action_probs = (
            None if agent.action_probs is None else jax.jit(action_probs)
        )
        self._act = jax.jit(act)
        self._update = jax.jit(update, donate_argnums=(0,))
        self._step = jax.jit(step, donate_argnums=(0,))

    @property
    def state(self) -> Any:
        """The agent's current state (read-only: the next update donates it)."""
        return self._state

    def _checked(self, obs: Any) -> Observation:
        """`obs` as an `Observation` whose shapes are the agent's (its declared
        K and d, and those of the first observation served), before any call:
        a mismatch is a named error, not a shape error inside JAX or a silent
        new compilation."""
        obs = _as_observation(obs)
        shapes = (np.shape(obs.context), np.shape(obs.arms), np.shape(obs.mask))
        if shapes == self._shapes:
            return obs
        agent, expected = self.agent, self._shapes
        if expected is None:
            k, d = agent.num_arms, agent.context_dim
            expected = (
                shapes[0] if d is None else (d,),
                shapes[1],
                shapes[2] if k is None else (k,),
            )
        names = ("context", "arms", "mask")
        for field, got, wanted in zip(names, shapes, expected, strict=True):
            if got != wanted:
                raise BanditConfigError.about(
                    f"observation {field}",
                    f"has shape {got}, the agent {agent.name!r} takes {wanted}",
                )
        self._shapes = shapes
        return obs

    def _action(self, obs: Observation, action: Any) -> np.int32:
        """A played arm, checked against the observation's arms."""
        num_arms = np.shape(obs.mask)[0]
        if isinstance(action, bool) or not isinstance(action, int | np.integer):
            raise BanditConfigError.about("action", f"must be an int, got {action!r}")
        if not 0 <= action < num_arms:
            raise BanditConfigError.about(
                "action", f"must be an arm in [0, {num_arms}), got {action}"
            )
        return np.int32(action)

    def act(self, obs: Any) -> int:
        """The agent's action for `obs`; remembered for `step`."""
        obs = self._checked(obs)
        action, self._key = self._act(self._state, self._key, obs)
        action = _host_int(action)
        self._last = (obs, action)
        return action

    def predict(self, obs: Any) -> np.ndarray:
        """The agent's estimate of every arm's expected reward on `obs` (its
        `predict`, from the current state), (K,); changes nothing."""
        if self._predict is None:
            raise BanditConfigError(
                f"agent {self.agent.name!r} has no predict (no reward model to serve)"
            )
        return np.asarray(self._predict(self._state, self._checked(obs)))

    def action_probs(self, obs: Any) -> np.ndarray:
        """pi(. | obs) of the current state, (K,): asked after a decision on
        `obs` (`act` or `step`) and before the next update, these are the
        propensities of the state that took it, to log beside it so that the
        logs can be evaluated off-policy later. Exact where the
        agent has them in closed form, a Monte Carlo frequency for Thompson
        sampling (its `propensity_samples`); drawn from a key stream of their
        own, so asking changes no decision."""
        if self._action_probs is None:
            raise BanditConfigError(
                f"agent {self.agent.name!r} has no action_probs (build it with "
                "propensity_samples for Monte Carlo propensities, where it takes them)"
            )
        probs, self._probs_key = self._action_probs(
            self._state, self._probs_key, self._checked(obs)
        )
        return np.asarray(probs)

    def update(self, obs: Any, action: int, reward: float) -> None:
        """Learns from the feedback `reward` to `action` on `obs`."""
        obs = self._checked(obs)
        self._state, self._key = self._update(
            self._state, self._key, obs, self._action(obs, action), np.float32(reward)
        )
        self._last = None

    def step(self, reward: float, next_obs: Any) -> int:
        """Learns from `reward` for the last action (`act` or `step`), then acts
        on `next_obs`: one compiled call."""
        if self._last is None:
            raise BanditConfigError(
                "step needs a previous decision: call act(obs) first (and after "
                "an explicit update)"
            )
        obs, action = self._last
        next_obs = self._checked(next_obs)
        self._state, self._key, chosen = self._step(
            self._state, self._key, obs, np.int32(action), np.float32(reward),
            next_obs,
        )  # fmt: skip
        chosen = _host_int(chosen)
        self._last = (next_obs, chosen)
        return chosen
