"""The vector Gymnasium shell: `BanditVectorEnv` (`gymnasium.make_vec(...,
vectorization_mode="vector_entry_point")`), every sub-env one stream of the
single shell's key schedule (`envs.gym`), batched with `jax.vmap`.

A vector env reset with seed `s` gives sub-environment i the stream of a single
env reset with seed `s + i` (Gymnasium's convention for `SyncVectorEnv`). For an
env whose state ignores the action, every sub-env steps from blocks of
`envs.gym.BLOCK` rounds computed ahead, as the single shell does; otherwise each
step is one compiled call for all sub-envs. With a time limit the sub-envs share
one episode clock (they are reset together and truncate together), so a block
ends where the episode does, and the restart step after it is one compiled call.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from bandits.validation import positive_int
from envs.base import make_env
from envs.gym import (
    BLOCK,
    INFO_KEYS,
    _advance,
    _check_env_kwargs,
    _seed_words,
    _single_block,
    _slate_info,
    _start,
    _start_from_words,
    _Stream,
    _unpack_block,
)
from envs.gym_spaces import (
    MaskedMultiDiscrete,
    SlateBatchSpace,
    _action_space,
    _check_slate,
    _numpy_obs,
    _refuse_masked,
    _refuse_or_warn,
    observation_space,
)


@functools.partial(jax.jit, static_argnames=("env", "resample", "size"))
def _vector_block(streams, params, *, env, resample, size):
    """`_single_block` for every sub-env (vmapped; params shared unless
    resampled)."""
    params_axis = 0 if resample else None
    return jax.vmap(
        lambda stream, params: _single_block(stream, params, env=env, size=size),
        in_axes=(0, params_axis),
    )(streams, params)


@functools.partial(jax.jit, static_argnames=("env", "resample"))
def _vector_start(words, params, *, env, resample):
    start = functools.partial(_start_from_words, env, resample)
    out_axes = (0, 0 if resample else None)
    return jax.vmap(start, in_axes=(0, None), out_axes=out_axes)(words, params)


@functools.partial(jax.jit, static_argnames=("env", "resample", "autoreset"))
def _vector_step(streams, params, actions, restart, *, env, resample, autoreset):
    """Steps every sub-env; with `autoreset`, restarts those flagged in `restart`.

    A restarted sub-env ignores its action (next-step autoreset): it returns the
    first observation of a new episode, reward 0, and its stepped continuation is
    discarded. Its new stream is started from its current key.
    """
    params_axis = 0 if resample else None
    advance = functools.partial(_advance, env)
    stepped, out = jax.vmap(advance, in_axes=(0, params_axis, 0))(
        streams, params, actions
    )
    if not autoreset:
        return stepped, params, out
    restart_rows = functools.partial(_restart_rows, env, resample, restart, streams.key)
    return jax.lax.cond(
        jnp.any(restart), restart_rows, lambda x: x, (stepped, params, out)
    )


def _restart_rows(env, resample, restart, keys, operands):
    """Replaces the sub-envs flagged in `restart` by fresh streams started at `keys`."""
    stepped, params, out = operands
    params_axis = 0 if resample else None
    start = functools.partial(_start, env, resample)
    fresh, fresh_params = jax.vmap(
        start, in_axes=(0, params_axis), out_axes=(0, params_axis)
    )(keys, params)
    pick = functools.partial(_select_rows, restart)
    if resample:
        params = jax.tree.map(pick, fresh_params, params)
    out = out._replace(reward=jnp.where(restart, 0.0, out.reward))
    return jax.tree.map(pick, fresh, stepped), params, out


def _select_rows(rows: jax.Array, new: jax.Array, old: jax.Array) -> jax.Array:
    """`new[i]` where `rows[i]` else `old[i]`, for leaves with a leading batch axis."""
    rows = rows.reshape(rows.shape + (1,) * (new.ndim - 1))
    return jnp.where(rows, new, old)


# ---------------------------------------------------------------------------
# Spaces and conversions


class BanditVectorEnv(VectorEnv):
    """`num_envs` copies of one bandit environment, batched with `jax.vmap`.

    Observations are dicts of arrays with a leading (num_envs,) axis; `step` takes
    an int array of shape (num_envs,) and returns rewards, terminations and
    truncations of that shape, and infos whose arrays (`expected_rewards`
    (num_envs, K), `optimal_action`, `regret`) come with Gymnasium's boolean
    `_<key>` masks. Episodes never end unless `max_episode_steps` is given; then
    sub-environments truncate after that many steps and restart on the following
    step (`AutoresetMode.NEXT_STEP`: on that step the action is ignored, the reward
    is 0 and the `_<key>` info masks are False).

    Args:
      env_id: a registered id such as "Linear-v0".
      num_envs: number of sub-environments.
      resample_params: each sub-environment draws its own problem instance at
        every reset; otherwise all share `default_params()`.
      max_episode_steps: optional time limit (None: never truncate).
      strict: refuse an action that its sub-env's current mask forbids
        (`MaskedActionError`, naming the sub-env); False plays it and warns once.
      render_mode: must be None.
      **env_kwargs: passed to `envs.make_env(env_id, ...)`.
    """

    metadata: dict[str, Any] = {  # noqa: RUF012
        "render_modes": [],
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        env_id: str,
        num_envs: int = 1,
        *,
        resample_params: bool = False,
        max_episode_steps: int | None = None,
        strict: bool = True,
        render_mode: str | None = None,
        **env_kwargs: Any,
    ):
        _check_env_kwargs(resample_params, render_mode, strict)
        self.num_envs = positive_int("num_envs", num_envs)
        if max_episode_steps is not None:
            max_episode_steps = positive_int("max_episode_steps", max_episode_steps)
        self.max_episode_steps = max_episode_steps
        self.bandit_env = make_env(env_id, **env_kwargs)
        self.resample_params = resample_params
        self.strict = strict
        self.render_mode = render_mode
        self.single_observation_space: spaces.Dict = observation_space(self.bandit_env)
        self.single_action_space = _action_space(self.bandit_env)
        self.slate_size: int | None = getattr(self.bandit_env, "slate_size", None)
        self.observation_space = batch_space(
            self.single_observation_space, self.num_envs
        )
        self.action_space: MaskedMultiDiscrete | SlateBatchSpace
        if self.slate_size is None:
            self.action_space = MaskedMultiDiscrete(
                np.full(self.num_envs, self.bandit_env.num_arms, dtype=np.int64)
            )
        else:
            self.action_space = SlateBatchSpace(
                self.num_envs, self.bandit_env.num_arms, self.slate_size
            )
        self._default_params = self.bandit_env.default_params()
        self.params = self._default_params
        self._streams: _Stream | None = None
        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self._restart = np.zeros(self.num_envs, dtype=bool)
        self._warned_masked = False
        # Envs whose state ignores the action step every sub-env from blocks
        # computed ahead, as the single shell does.
        self._blocks = (
            bool(getattr(self.bandit_env, "actions_leave_state", False))
            and self.slate_size is None
        )
        self._block: dict[str, Any] | None = None  # (num_envs, BLOCK, ...) obs rows
        self._outs: tuple[np.ndarray, ...] = ()  # reward, expected, optimal, regret
        self._row = 0

    def reset(
        self,
        *,
        seed: int | Sequence[int] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Resets every sub-env; seed s gives sub-env i the stream of seed s + i."""
        seeds = self._seeds(seed)
        super().reset(seed=seeds[0] if seeds is not None else None)
        if seeds is None:
            words = _seed_words(self.np_random, (self.num_envs,))
        else:
            words = np.stack([_seed_words(seeding.np_random(s)[0]) for s in seeds])
        self._streams, self.params = _vector_start(
            words,
            self._default_params,
            env=self.bandit_env,
            resample=self.resample_params,
        )
        self._elapsed[:] = 0
        self._restart[:] = False
        self._block = None
        if self._blocks:
            self._next_block()
        return self._observe(), {}

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict]:
        """Steps every sub-env with its action, shape (num_envs,)."""
        if self._streams is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        actions = self._check_actions(actions)
        restart = self._restart.copy()
        self._check_allowed(actions, restart)
        if self._block is not None:
            return self._step_from_block(actions)
        # One compiled call: an env without blocks, or the restart step after a
        # block's episode was truncated (every sub-env restarts together).
        self._streams, self.params, out = _vector_step(
            self._streams,
            self.params,
            jnp.asarray(actions),
            jnp.asarray(restart),
            env=self.bandit_env,
            resample=self.resample_params,
            autoreset=self.max_episode_steps is not None,
        )
        out = jax.device_get(out)
        self._elapsed = np.where(restart, 0, self._elapsed + 1)
        if self.max_episode_steps is None:
            truncated = np.zeros(self.num_envs, dtype=bool)
        else:
            truncated = self._elapsed >= self.max_episode_steps
        self._restart = truncated.copy()
        has_info = ~restart
        info: dict[str, Any] = {}
        if self.slate_size is None:
            values = {name: np.array(getattr(out, name)) for name in INFO_KEYS}
        else:
            values = _slate_info(out)
        for name, value in values.items():
            info[name] = value
            info[f"_{name}"] = has_info.copy()
        if self._blocks:  # the new episodes continue from blocks
            self._next_block()
        obs = self._observe()
        terminated = np.zeros(self.num_envs, dtype=bool)
        return obs, np.array(out.reward), terminated, truncated, info

    def _observe(self) -> dict[str, np.ndarray]:
        """The current observations; their masks go to the action spaces."""
        if self._block is not None:
            row = self._row
            obs = {name: rows[:, row].copy() for name, rows in self._block.items()}
        else:
            assert self._streams is not None  # reset() came first
            obs = _numpy_obs(self._streams.obs, self.single_observation_space)
        self.action_space.allowed = obs["mask"].copy()
        return obs

    def _next_block(self) -> None:
        """Computes the next `BLOCK` rounds of every sub-env for every action, or
        fewer: a block ends with its episode (the time limit)."""
        size = BLOCK
        if self.max_episode_steps is not None:
            size = min(BLOCK, self.max_episode_steps - int(self._elapsed[0]))
        self._streams, block = _vector_block(
            self._streams,
            self.params,
            env=self.bandit_env,
            resample=self.resample_params,
            size=size,
        )
        self._block, self._outs = _unpack_block(block, self.single_observation_space)
        self._row = 0

    def _step_from_block(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict]:
        """`step` by indexing the block: the same numbers as `_vector_step`."""
        reward, expected, optimal, regret = self._outs
        row, sub = self._row, np.arange(self.num_envs)
        everyone = np.ones(self.num_envs, dtype=bool)
        info: dict[str, Any] = {}
        values = {
            "expected_rewards": np.array(expected[:, row]),
            "optimal_action": np.array(optimal[:, row]),
            "regret": np.array(regret[sub, row, actions]),
        }
        for name, value in values.items():
            info[name] = value
            info[f"_{name}"] = everyone.copy()
        rewards = np.array(reward[sub, row, actions])
        self._elapsed += 1
        never = np.zeros(self.num_envs, dtype=bool)
        truncated = never.copy()
        if self.max_episode_steps is not None:
            truncated = self._elapsed >= self.max_episode_steps
        if truncated.any():
            # The episode's (and the block's) last round: the observation comes
            # from the streams after it, and the next step restarts every sub-env.
            self._block = None
            self._restart = truncated.copy()
        elif row + 1 == reward.shape[1]:
            self._next_block()  # from the streams after the block's last round
        else:
            self._row = row + 1
        return self._observe(), rewards, never, truncated, info

    def _check_allowed(self, actions: np.ndarray, restart: np.ndarray) -> None:
        """Refuses (strict) or warns once about masked-out actions; sub-envs that
        restart on this step ignore their action and are not checked."""
        allowed = self.action_space.allowed
        if allowed is None:
            return
        if self.slate_size is not None:
            return  # a masked item in a slate is never clicked (envs.slate)
        played = allowed[np.arange(self.num_envs), actions] | restart
        if played.all():
            return
        i = int(np.flatnonzero(~played)[0])
        _refuse_or_warn(
            self, _refuse_masked(int(actions[i]), allowed[i], f" of sub-env {i}")
        )

    def _seeds(self, seed: int | Sequence[int] | None) -> list[int] | None:
        if seed is None:
            return None
        if isinstance(seed, bool):
            raise ValueError(f"seed must be an int or a list of ints, got {seed!r}")
        if isinstance(seed, int | np.integer):
            return [int(seed) + i for i in range(self.num_envs)]
        seeds = [int(s) for s in seed]
        if len(seeds) != self.num_envs:
            raise ValueError(
                f"seed must be an int or a list of {self.num_envs} ints (one per "
                f"sub-environment), got {len(seeds)}"
            )
        return seeds

    def _check_actions(self, actions: Any) -> np.ndarray:
        value = np.asarray(actions)
        num_arms = self.bandit_env.num_arms
        if self.slate_size is not None:
            if value.shape != (self.num_envs, self.slate_size):
                raise ValueError(
                    f"actions must be an integer array of shape ({self.num_envs}, "
                    f"{self.slate_size}) (one slate per sub-env), got {actions!r}"
                )
            return np.stack(
                [_check_slate(row, num_arms, self.slate_size) for row in value]
            )
        if (
            value.shape != (self.num_envs,)
            or not np.issubdtype(value.dtype, np.integer)
            or np.any(value < 0)
            or np.any(value >= num_arms)
        ):
            raise ValueError(
                f"actions must be an integer array of shape ({self.num_envs},) with "
                f"values in [0, {num_arms}), got {actions!r}"
            )
        return value.astype(np.int32)
