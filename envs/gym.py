"""Gymnasium shells around the functional bandit environments.

Every id in `envs.registered()` is registered with Gymnasium as `bandits/<Id>`, so

    env = gymnasium.make("bandits/Linear-v0", num_arms=5, dim=3)
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

    vec = gymnasium.make_vec("bandits/Linear-v0", num_envs=8,
                             vectorization_mode="vector_entry_point")

work after `import envs`. Keyword arguments go to `envs.make_env`; the shells add
`resample_params` (draw a fresh problem instance with `sample_params` at every reset
instead of using `default_params()`).

Spaces (`envs.gym_spaces`). The observation space is a `spaces.Dict` with the
keys of the env's `observation_spec()` (a subset of the `Observation` fields:
`context`, `arms`, `mask`, and `history`, `history_mask` for envs with a
behaviour history). Each entry
is a finite `spaces.Box` with the spec's shape, bounds and dtype; boolean fields
(`mask`, `history_mask`) are `Box(0, 1, shape, bool)`, which keeps the dtype
of the functional core and passes `gymnasium.utils.env_checker.check_env` without
warnings. Features with no columns keep their (K, 0) shape. The action space is
`Discrete(K)`.

Steps. `step(action)` returns NumPy values: the sampled reward, `terminated=False`
and `truncated=False` (a bandit is a continuing task; `gymnasium.make(...,
max_episode_steps=T)` adds a time limit), and an `info` dict for the observation
that was acted on:

    expected_rewards   (K,)  mu_k for every arm
    optimal_action     ()    argmax of mu_k over the arms allowed by the mask
    regret             ()    mu_{optimal_action} - mu_{action}  (exact pseudo-regret)

Envs whose state evolves report the per-step (dynamic) oracle.

Slates. A slate env (`envs.slate`, one with a `slate_size` L) takes an ordered
slate of L distinct items: the action space is `SlateSpace`, a
`MultiDiscrete([K] * L)` whose `sample()` draws L distinct allowed items and
whose `contains` refuses repeats; `step` refuses a repeated item (`ValueError`).
Its `info` holds `SLATE_INFO_KEYS`: `expected_rewards` (K attractions),
`expected_clicks`, `clicks` and `examined` (L each), `optimal_action` (the
optimal slate, L) and `regret` (exact slate pseudo-regret). A masked item may be
shown in a slate (it is never clicked), so slates are not refused for masks. The
vector shell takes (num_envs, L) actions.

Masked arms. Some envs forbid arms in some rounds (`obs["mask"][k]` False; the
recommendation envs mask repeated candidates). Playing one is refused: `step`
raises `MaskedActionError`, naming the action and the allowed ones. With
`strict=False` the shell keeps the old behaviour (the arm is played, and its
regret, measured against the best allowed arm, may be negative) and warns once
per env. The action spaces sample among the allowed arms of the current
observation (`action_space.sample()`, also in `check_env`); an explicit
`sample(mask=...)` is Gymnasium's own.

The vector shell is `envs.gym_vector.BanditVectorEnv`.

Randomness. `reset(seed=s)` seeds `np_random` (via `super().reset`), draws two
31-bit words from it and builds the JAX key `fold_in(key(w0), w1)`; each step splits
that key stream inside the compiled step. A vector env reset with seed `s` gives
sub-environment i the stream of a single env reset with seed `s + i` (Gymnasium's
convention for `SyncVectorEnv`).

Compilation. The env's reset and step are wrapped, together with the regret
computation, in functions jitted with the env as a static argument, so each env
configuration compiles once per process however many shells are built.

Blocks ahead. For an env whose next state never depends on the action
(`BanditEnv.actions_leave_state`, e.g. `Linear-v0`), the single shell computes the
next `BLOCK` rounds of its key stream for every action in one compiled call (the
same `_advance` on the same keys) and then steps by indexing NumPy arrays, so a
step costs microseconds instead of a JAX dispatch. The recommendation envs
(`ContextualRec-*`), whose users remember what they were shown, compute their
arrivals `envs.recommendation_gym.BLOCK` rounds ahead from the keys alone, with
the rounds of users who come back within the block for every arm and click of
their previous visit (the first `REVISITS_AHEAD` of them; the others take one
small compiled call each); the click is the same float32 comparison of the same
uniform.
The vector shell does the same for envs whose state ignores the action, for every
sub-env at once (with a time limit, blocks end with each episode and the restart
step is one compiled call). The vector shell of envs with action-dependent state
and slate envs step one compiled call at a time.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, cast

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces

from bandits.records import pseudo_regret, slate_pseudo_regret
from bandits.types import EnvParams, EnvState, Observation, SlateFeedback
from bandits.validation import BanditConfigError
from envs import recommendation_gym
from envs.base import BanditEnv, make_env, registered
from envs.gym_spaces import (
    MaskedDiscrete,
    SlateSpace,
    _action_space,
    _check_action,
    _check_slate,
    _numpy_obs,
    _refuse_masked,
    _refuse_or_warn,
    observation_space,
)

NAMESPACE = "bandits"
ENTRY_POINT = "envs.gym:BanditGymEnv"
VECTOR_ENTRY_POINT = "envs.gym_vector:BanditVectorEnv"
INFO_KEYS = ("expected_rewards", "optimal_action", "regret")
SLATE_INFO_KEYS = (
    "expected_rewards",
    "expected_clicks",
    "clicks",
    "examined",
    "optimal_action",
    "regret",
)


# ---------------------------------------------------------------------------
# Pure pieces, compiled at the boundary


class _Stream(NamedTuple):
    """The running part of one environment stream."""

    key: jax.Array  # ()  key of the next step
    obs: Observation  # the observation the agent is about to act on
    state: EnvState


class _StepOut(NamedTuple):
    """What one step reveals, for the observation that was acted on."""

    reward: jax.Array  # ()
    expected_rewards: jax.Array  # (K,)
    optimal_action: jax.Array  # () int32  (slates: (L,) the optimal slate)
    regret: jax.Array  # ()
    slate: SlateFeedback | None = None  # slate envs: the per-position feedback


def _key_from_words(words: jax.Array) -> jax.Array:
    """A PRNG key from two non-negative 31-bit integers, (2,) -> key."""
    return jax.random.fold_in(jax.random.key(words[0]), words[1])


def _start(
    env: BanditEnv, resample: bool, key: jax.Array, params: EnvParams
) -> tuple[_Stream, EnvParams]:
    """Starts one stream: a problem instance (if resampled) and the first obs."""
    key_params, key_reset, key_steps = jax.random.split(key, 3)
    if resample:
        params = env.sample_params(key_params)
    obs, state = env.reset(key_reset, params)
    return _Stream(key_steps, obs, state), params


def _start_from_words(
    env: BanditEnv, resample: bool, words: jax.Array, params: EnvParams
) -> tuple[_Stream, EnvParams]:
    return _start(env, resample, _key_from_words(words), params)


def _advance(
    env: BanditEnv, stream: _Stream, params: EnvParams, action: jax.Array
) -> tuple[_Stream, _StepOut]:
    """One env step plus the exact pseudo-regret against the best allowed arm
    (or, for a slate env, the optimal slate)."""
    key_next, key_step = jax.random.split(stream.key)
    obs, state, feedback = env.step(key_step, stream.state, action, params)
    expected = feedback.expected_rewards
    slate = getattr(feedback, "slate", None)
    if slate is None:
        optimal, _, regret = pseudo_regret(expected, stream.obs.mask, action)
    else:
        optimal, _, regret = slate_pseudo_regret(slate, action)
    reward = jnp.asarray(feedback.reward, expected.dtype)
    out = _StepOut(reward, expected, optimal, regret, slate)
    return _Stream(key_next, obs, state), out


@functools.partial(jax.jit, static_argnames=("env", "resample"))
def _single_start(words, params, *, env, resample):
    return _start_from_words(env, resample, words, params)


@functools.partial(jax.jit, static_argnames=("env",))
def _single_step(stream, params, action, *, env):
    return _advance(env, stream, params, action)


BLOCK = 256
"""Rounds an env with `actions_leave_state` computes ahead per compiled call."""


class _Block(NamedTuple):
    """`size` rounds ahead of a stream, for every action: row t is the round
    acted on at the t-th step from now."""

    obs: Observation  # (size, ...) the observations acted on
    reward: jax.Array  # (size, K) the reward had each arm been played
    expected_rewards: jax.Array  # (size, K)
    optimal_action: jax.Array  # (size,)
    regret: jax.Array  # (size, K)


@functools.partial(jax.jit, static_argnames=("env", "size"))
def _single_block(stream, params, *, env, size):
    """The next `size` steps of `stream` played with each action, by the same
    `_advance` as one step (same keys): valid when the state does not depend on
    the action, so every action leaves the same next stream."""
    actions = jnp.arange(env.num_arms, dtype=jnp.int32)

    def one(stream, _):
        nexts, outs = jax.vmap(lambda a: _advance(env, stream, params, a))(actions)
        return jax.tree.map(lambda x: x[0], nexts), (stream.obs, outs)

    last, (obs, outs) = jax.lax.scan(one, stream, None, length=size)
    block = _Block(
        obs, outs.reward, outs.expected_rewards[:, 0], outs.optimal_action[:, 0],
        outs.regret,
    )  # fmt: skip
    return last, block


def _unpack_block(
    block: _Block, space: spaces.Dict
) -> tuple[dict[str, np.ndarray], tuple[Any, ...]]:
    """A computed block on the host: its observations per field (in the space's
    dtypes) and (reward, expected_rewards, optimal_action, regret)."""
    block = jax.device_get(block)
    observations = {
        name: np.asarray(getattr(block.obs, name), dtype=box.dtype)
        for name, box in space.spaces.items()
    }
    outs = (block.reward, block.expected_rewards, block.optimal_action, block.regret)
    return observations, outs


def _slate_info(out: _StepOut) -> dict[str, Any]:
    """The `info` arrays of a slate step (batched or not), keyed as
    `SLATE_INFO_KEYS`."""
    assert out.slate is not None
    return {
        "expected_rewards": np.array(out.expected_rewards),
        "expected_clicks": np.array(out.slate.expected_clicks),
        "clicks": np.array(out.slate.clicks),
        "examined": np.array(out.slate.examined),
        "optimal_action": np.array(out.optimal_action),
        "regret": np.array(out.regret),
    }


def _check_env_kwargs(resample_params: Any, render_mode: Any, strict: Any) -> None:
    for name, value in (("resample_params", resample_params), ("strict", strict)):
        if not isinstance(value, bool):
            raise BanditConfigError.about(name, f"must be True or False, got {value!r}")
    if render_mode is not None:
        raise BanditConfigError(
            f"render_mode must be None (bandit envs do not render), got {render_mode!r}"
        )


def _seed_words(rng: np.random.Generator, size: tuple[int, ...] = ()) -> np.ndarray:
    """Two 31-bit words per stream drawn from `rng`, shape size + (2,)."""
    return rng.integers(0, 2**31, size=(*size, 2), dtype=np.int64).astype(np.int32)


# ---------------------------------------------------------------------------
# Single environment


class BanditGymEnv(gymnasium.Env):
    """A Gymnasium `Env` around one functional bandit environment.

    Args:
      env_id: a registered id such as "Linear-v0" (the "bandits/" prefix is
        accepted).
      resample_params: draw a new problem instance at every reset instead of
        using `default_params()`.
      strict: refuse an action that the current observation's mask forbids
        (`MaskedActionError`); False plays it and warns once.
      render_mode: must be None; bandit envs do not render.
      **env_kwargs: passed to `envs.make_env(env_id, ...)`.

    Attributes:
      bandit_env: the functional environment.
      params: the current problem instance.

    Example:
      >>> import gymnasium, envs
      >>> env = gymnasium.make("bandits/Linear-v0", num_arms=4, dim=3)
      >>> obs, info = env.reset(seed=0)
      >>> sorted(obs)
      ['arms', 'context', 'mask']
      >>> _, reward, terminated, truncated, info = env.step(1)
      >>> sorted(info), terminated, truncated
      (['expected_rewards', 'optimal_action', 'regret'], False, False)
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        env_id: str,
        *,
        resample_params: bool = False,
        strict: bool = True,
        render_mode: str | None = None,
        **env_kwargs: Any,
    ):
        _check_env_kwargs(resample_params, render_mode, strict)
        self.bandit_env = make_env(env_id, **env_kwargs)
        self.resample_params = resample_params
        self.strict = strict
        self.render_mode = render_mode
        self.observation_space: spaces.Dict = observation_space(self.bandit_env)
        self.action_space: MaskedDiscrete | SlateSpace = _action_space(self.bandit_env)
        self.slate_size: int | None = getattr(self.bandit_env, "slate_size", None)
        self._default_params = self.bandit_env.default_params()
        self.params = self._default_params
        self._stream: _Stream | None = None
        self._warned_masked = False
        # Envs whose state ignores the action step from blocks computed ahead.
        self._blocks = bool(getattr(self.bandit_env, "actions_leave_state", False))
        self._block: dict[str, Any] | None = None  # observation rows, as NumPy
        self._outs: tuple[np.ndarray, ...] = ()  # reward, expected, optimal, regret
        self._row = 0
        # The recommendation envs step from rounds computed ahead, revisits apart.
        self._rec_blocks = recommendation_gym.supports(self.bandit_env)
        self._rec: recommendation_gym.RecStepper | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Starts a stream; `reset(seed=s)` is deterministic."""
        super().reset(seed=seed)
        words = _seed_words(self.np_random)
        self._stream, self.params = _single_start(
            words,
            self._default_params,
            env=self.bandit_env,
            resample=self.resample_params,
        )
        self._block = None
        self._rec = None
        if self._blocks:
            self._next_block()
        elif self._rec_blocks:
            self._rec = recommendation_gym.RecStepper(
                cast(recommendation_gym.RecommendationEnv, self.bandit_env),
                self.params,
                self._stream.key,
                self._stream.state,
                self.observation_space,
            )
        return self._observe(), {}

    def step(
        self, action: Any
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Plays `action` on the current observation; see the module docstring."""
        if self._stream is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        if self.slate_size is not None:
            return self._step_slate(action)
        action = _check_action(action, self.bandit_env.num_arms)
        allowed = self.action_space.allowed
        if allowed is not None and not allowed[action]:
            self._masked(action, allowed)
        if self._block is not None:
            return self._step_from_block(action)
        if self._rec is not None:
            reward, info = self._rec.step(action)
            return self._observe(), reward, False, False, info
        self._stream, out = _single_step(
            self._stream, self.params, np.int32(action), env=self.bandit_env
        )
        out = jax.device_get(out)
        info = {
            "expected_rewards": np.array(out.expected_rewards),
            "optimal_action": int(out.optimal_action),
            "regret": float(out.regret),
        }
        return self._observe(), float(out.reward), False, False, info

    def _step_slate(
        self, action: Any
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """`step` for a slate env: `action` is L distinct items, top first."""
        assert self.slate_size is not None  # step() sends only slate envs here
        slate = _check_slate(action, self.bandit_env.num_arms, self.slate_size)
        self._stream, out = _single_step(
            self._stream, self.params, slate, env=self.bandit_env
        )
        out = jax.device_get(out)
        info = _slate_info(out)
        info["regret"] = float(info["regret"])
        return self._observe(), float(out.reward), False, False, info

    def _observe(self) -> dict[str, np.ndarray]:
        """The current observation as NumPy; its mask goes to the action space."""
        if self._block is not None:
            obs = {name: rows[self._row].copy() for name, rows in self._block.items()}
        elif self._rec is not None:
            obs = self._rec.observe()
        else:
            assert self._stream is not None  # reset() came first
            obs = _numpy_obs(self._stream.obs, self.observation_space)
        self.action_space.allowed = obs["mask"].copy()
        return obs

    def _next_block(self) -> None:
        """Computes the next `BLOCK` rounds of the stream for every action."""
        self._stream, block = _single_block(
            self._stream, self.params, env=self.bandit_env, size=BLOCK
        )
        self._block, self._outs = _unpack_block(block, self.observation_space)
        self._row = 0

    def _step_from_block(
        self, action: int
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """`step` by indexing the block: the same numbers as `_single_step`."""
        reward, expected, optimal, regret = self._outs
        row = self._row
        info = {
            "expected_rewards": np.array(expected[row]),
            "optimal_action": int(optimal[row]),
            "regret": float(regret[row, action]),
        }
        result = float(reward[row, action])
        if row + 1 == BLOCK:
            self._next_block()  # from the stream after the block's last round
        else:
            self._row = row + 1
        return self._observe(), result, False, False, info

    def _masked(self, action: int, allowed: np.ndarray) -> None:
        """Refuses a masked-out action (strict), or warns once and lets it pass."""
        _refuse_or_warn(self, _refuse_masked(action, allowed))


# ---------------------------------------------------------------------------
# Registration


def gym_id(env_id: str) -> str:
    """The Gymnasium id of a registered bandit env, e.g. "bandits/Linear-v0"."""
    return f"{NAMESPACE}/{env_id.removeprefix(NAMESPACE + '/')}"


def register_gym_envs() -> list[str]:
    """Registers every id of `envs.registered()` with Gymnasium as `bandits/<Id>`.

    Idempotent: ids already known to Gymnasium are skipped, so a module that
    registers envs after `import envs` can call this again to expose them.

    Returns:
      The Gymnasium ids added by this call.
    """
    added = []
    for env_id in registered():
        name = gym_id(env_id)
        if name in gymnasium.registry:
            continue
        gymnasium.register(
            id=name,
            entry_point=ENTRY_POINT,
            vector_entry_point=VECTOR_ENTRY_POINT,
            kwargs={"env_id": env_id},
        )
        added.append(name)
    return added
